"""Fit the scoring bundle at an as_of, evaluate it out of time, and (optionally) log and register it.

Three origins, one horizon H apart, keep every evaluation out of time:

    as_of - 2H  (eval origin)  propensity and supervised/hybrid CLV models for evaluation are trained here,
                               labels from (as_of-2H, as_of-H]
    as_of - H   (test origin)  evaluation: BTYD fitted on data <= as_of-H, every model scored against (as_of-H, as_of];
                               the final propensity, supervised/hybrid CLV and next-tier models are trained here
    as_of                       the final BTYD models are fitted here; the bundle scores from here on

With ``model.training_origins`` = k > 1 the supervised models stack k training origins, each
``model.training_origin_step_days`` before the previous one (every label window still ends by the
origin they score). Their level is aligned without labels to BTYD fitted at the scoring origin
(tiering.models.propensity, tiering.models.clv). Baselines on the same split: naive (trailing spend
for CLV, recency for propensity) and plain BG/NBD + Gamma-Gamma. When the data do not reach back to
as_of - 2H, the supervised models are not evaluated (reported, not hidden), the chosen CLV
metric falls back to BTYD's and the next-tier model is left out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tiering import __version__
from tiering.config import Config
from tiering.evaluation import clv_metrics, propensity_metrics, ranking_auc
from tiering.exceptions import DataQualityError
from tiering.features import FeatureSpec, build_features, build_labels
from tiering.models.btyd import BetaGeoModel, GammaGammaModel, ParetoNBDModel
from tiering.models.bundle import ScoringBundle, model_features
from tiering.models.clv import BTYD_FEATURES, SpendRegressor
from tiering.models.propensity import PropensityModel
from tiering.models.tiers import NextTierModel, TierPolicy
from tiering.validation import ValidatedTables

LABELS = ("holdout_spend", "holdout_orders", "purchased_in_horizon")


@dataclass
class TrainResult:
    bundle: ScoringBundle
    metrics: dict[str, float]
    fit_seconds: dict[str, float]
    data_fingerprint: dict
    input_example: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    run_id: str | None = None
    model_uri: str | None = None
    version: str | None = None


def feature_spec(cfg: Config) -> FeatureSpec:
    return FeatureSpec(time_unit=cfg.features.time_unit, windows_days=tuple(cfg.features.windows_days))


def features_at(tables: ValidatedTables, as_of: dt.date, spec: FeatureSpec) -> pd.DataFrame:
    return build_features(tables.transactions, tables.interactions, tables.customers, as_of=as_of, spec=spec).to_pandas()


def with_labels(tables: ValidatedTables, features: pd.DataFrame, origin: dt.date, horizon_days: int) -> pd.DataFrame:
    labels = build_labels(tables.transactions, as_of=origin, horizon_days=horizon_days).to_pandas()
    out = features.merge(labels[["customer_id", *LABELS]], on="customer_id", how="left")
    out[list(LABELS)] = out[list(LABELS)].fillna(0)
    return out


def data_fingerprint(tables: ValidatedTables) -> dict:
    """Source paths, row counts, date range and a content hash of the validated transactions."""
    t = tables.transactions
    agg = t.aggregate(rows=t.count(), first=t.ordered_at.min(), last=t.ordered_at.max(),
                      customers=t.customer_id.nunique(), amount=t.amount.sum()).to_pandas().iloc[0]
    summary = {
        "sources": {r.table: r.source for r in tables.reports},
        "rows_valid": {r.table: r.rows_valid for r in tables.reports},
        "rows_quarantined": {r.table: r.rows_quarantined for r in tables.reports},
        "transactions_first": str(agg["first"]), "transactions_last": str(agg["last"]),
        "customers_with_transactions": int(agg["customers"]),
    }
    digest = hashlib.sha256(repr((summary, int(agg["rows"]), round(float(agg["amount"]), 4))).encode()).hexdigest()[:16]
    return summary | {"hash": digest}


def _fit_btyd(features: pd.DataFrame, cfg: Config):
    buyers = features[features["has_purchased"] > 0]
    if len(buyers) < 20:
        raise DataQualityError(
            f"Only {len(buyers)} customers have purchased by {features['as_of'].iloc[0]}; the BTYD models need at least 20. "
            "Use a later as_of or more data."
        )
    cls = ParetoNBDModel if cfg.model.btyd_model == "paretonbd" else BetaGeoModel
    tm = cls(penalizer=cfg.model.penalizer).fit(buyers["frequency"], buyers["recency"], buyers["T"])
    sm = GammaGammaModel(penalizer=cfg.model.penalizer).fit(buyers["frequency"], buyers["monetary_value"])
    return tm, sm


def _bundle(cfg: Config, spec: FeatureSpec, features: pd.DataFrame, as_of: dt.date, tm, sm,
            propensity=None, policy=None, next_tier=None) -> ScoringBundle:
    return ScoringBundle(
        feature_spec=spec.to_dict(), feature_columns=list(features.columns), horizon_days=cfg.model.horizon_days,
        discount_rate_annual=cfg.model.discount_rate_annual, trained_as_of=as_of, transaction_model=tm, spend_model=sm,
        propensity=propensity, tier_policy=policy, next_tier_model=next_tier,
        version=f"{__version__}+{as_of.isoformat()}",
    )


def _policy(cfg: Config) -> TierPolicy:
    m = cfg.model
    return TierPolicy(core_min_p_purchase=m.core_min_p_purchase, core_clv_quantile=m.core_clv_quantile,
                      seed_engagement_quantile=m.seed_engagement_quantile,
                      seed_min_social_actions_90d=m.seed_min_social_actions_90d,
                      new_max_tenure_days=m.new_max_tenure_days, at_risk_min_churn_risk=m.at_risk_min_churn_risk)


@dataclass
class OriginFit:
    """Features at an origin (with labels from its horizon where the data reach), BTYD fitted there, its outputs."""

    origin: dt.date
    frame: pd.DataFrame
    bundle: ScoringBundle
    btyd: pd.DataFrame


def fit_origin(tables: ValidatedTables, origin: dt.date, cfg: Config, spec: FeatureSpec, *, labels: bool = True,
               features: pd.DataFrame | None = None) -> OriginFit:
    """Features at ``origin`` (labels from (origin, origin + H] when ``labels``) and BTYD fitted on them."""
    H = cfg.model.horizon_days
    frame = features if features is not None else features_at(tables, origin, spec)
    if labels:
        frame = with_labels(tables, frame, origin, H)
    # the engine returns rows in any order: sorted, the models trained on them do not depend on it
    frame = frame.sort_values("customer_id", kind="stable", ignore_index=True)
    tm, sm = _fit_btyd(frame, cfg)
    bundle = _bundle(cfg, spec, frame[list(spec.feature_columns)], origin, tm, sm)
    return OriginFit(origin, frame, bundle, bundle.btyd(frame))


def training_origins(origin: dt.date, cfg: Config) -> list[dt.date]:
    """Origins a supervised model scoring at ``origin`` trains on: origin - H - k * step, k < training_origins."""
    H, step = cfg.model.horizon_days, cfg.model.training_origin_step_days
    return [origin - dt.timedelta(days=H + k * step) for k in range(cfg.model.training_origins)]


def usable(fit: OriginFit) -> bool:
    """Enough buyers for BTYD and both outcomes present: a frame a supervised model can learn from."""
    f = fit.frame
    return (f["has_purchased"] > 0).sum() >= 20 and f["purchased_in_horizon"].nunique() == 2


def fit_training_origins(tables: ValidatedTables, origin: dt.date, cfg: Config, spec: FeatureSpec,
                         cache: dict | None = None) -> list[OriginFit]:
    """The usable training frames for a supervised model scoring at ``origin`` (labels end by ``origin``)."""
    fits = []
    for t in training_origins(origin, cfg):
        if cache is not None and t in cache:
            fits.append(cache[t])
            continue
        try:
            f = fit_origin(tables, t, cfg, spec)
        except DataQualityError:  # too few buyers that early: that origin adds nothing
            continue
        if cache is not None:
            cache[t] = f
        fits.append(f)
    return [f for f in fits if usable(f)]


def _stacked(fits: list[OriginFit], columns) -> tuple[pd.DataFrame, pd.DataFrame]:
    X = pd.concat([columns(f) for f in fits], ignore_index=True)
    y = pd.concat([f.frame[list(LABELS)] for f in fits], ignore_index=True)
    return X, y


def fit_propensity(fits: list[OriginFit], cfg: Config, score_at: OriginFit | None = None) -> PropensityModel:
    """Propensity model trained on ``fits``, its level aligned (no labels) to BTYD on ``score_at``'s base."""
    X, y = _stacked(fits, lambda f: f.bundle.propensity_input(f.frame[f.bundle.feature_columns], f.btyd))
    model = PropensityModel(learner=cfg.model.propensity_learner, btyd_weight=cfg.model.propensity_btyd_weight,
                            random_state=cfg.model.seed).fit(X, y["purchased_in_horizon"])
    if score_at is not None:
        model.align_level(score_at.bundle.propensity_input(score_at.frame[score_at.bundle.feature_columns], score_at.btyd))
    return model


def clv_columns(fit: OriginFit, kind: str) -> pd.DataFrame:
    X = fit.bundle.clv_input(fit.frame[fit.bundle.feature_columns], fit.btyd)
    return X if kind == "hybrid" else X.drop(columns=list(BTYD_FEATURES))


def fit_clv(kind: str, fits: list[OriginFit], cfg: Config, score_at: OriginFit | None = None) -> SpendRegressor:
    """Supervised (features) or hybrid (features + BTYD outputs) spend model trained on ``fits``;
    its level aligned (no labels) to BTYD's total CLV over ``score_at``'s buyers."""
    X, y = _stacked(fits, lambda f: clv_columns(f, kind))
    model = SpendRegressor(random_state=cfg.model.seed).fit(X, y["holdout_spend"])
    if score_at is not None:
        buyer = score_at.frame["has_purchased"].to_numpy() > 0
        model.align_level(clv_columns(score_at, kind)[buyer], float(np.nansum(score_at.btyd["btyd_clv"].to_numpy()[buyer])))
    return model


def fit(tables: ValidatedTables, *, as_of: dt.date, cfg: Config, progress=None) -> TrainResult:
    """Fit every model for scoring at ``as_of``, with out-of-time metrics beside the baselines."""
    step = progress or (lambda msg: None)
    H = cfg.model.horizon_days
    spec = feature_spec(cfg)
    test_origin = as_of - dt.timedelta(days=H)
    eval_origin = as_of - dt.timedelta(days=2 * H)
    seconds: dict[str, float] = {}
    notes: list[str] = []
    metrics: dict[str, float] = {}

    def timed(name, fn, *a, **kw):
        t0 = time.perf_counter()
        out = fn(*a, **kw)
        seconds[name] = round(time.perf_counter() - t0, 3)
        return out

    step(f"features and BTYD at {test_origin} and the training origins before it (evaluation)")
    feats_now = timed("features_as_of", features_at, tables, as_of, spec)
    test = timed("fit_test_origin", fit_origin, tables, test_origin, cfg, spec)
    cache: dict = {}
    eval_fits = timed("fit_eval_origins", fit_training_origins, tables, test_origin, cfg, spec, cache)
    has_eval = bool(eval_fits) and eval_fits[0].origin == eval_origin
    if not has_eval:
        notes.append(f"data before {eval_origin} too thin: the propensity and supervised CLV models are not evaluated, "
                     "the chosen CLV metric is BTYD's and no next-tier model is fitted")

    # --- evaluation at the test origin: BTYD fitted on data <= test_origin --------------------------
    feats_test, b_test, test_bundle = test.frame, test.btyd, test.bundle
    buyer = feats_test["has_purchased"].to_numpy() > 0
    y_spend, y_buy = feats_test["holdout_spend"].to_numpy(float), feats_test["purchased_in_horizon"].to_numpy(int)
    largest = max(spec.windows_days)
    for name, pred in (("btyd", b_test["btyd_clv"].to_numpy()), ("naive", feats_test[f"spend_{largest}d"].to_numpy(float))):
        for k, v in clv_metrics(y_spend[buyer], pred[buyer]).items():
            metrics[f"clv_{name}_{k}"] = v
    for k, v in propensity_metrics(y_buy[buyer], 1 - b_test["btyd_p_no_purchase"].to_numpy()[buyer]).items():
        metrics[f"churn_btyd_{k}"] = v
    naive_rank = -feats_test["days_since_last_purchase"].to_numpy(float)
    metrics["churn_naive_roc_auc"] = ranking_auc(y_buy[buyer], naive_rank[buyer])
    metrics["clv_normalized_gini"] = metrics["clv_btyd_normalized_gini"]

    if has_eval:
        eval_bundle, feats_eval = eval_fits[0].bundle, eval_fits[0].frame
        step(f"propensity and CLV models fitted at {', '.join(str(f.origin) for f in eval_fits)}, scored at {test_origin} (evaluation)")
        prop_eval = timed("propensity_fit_eval", fit_propensity, eval_fits, cfg, test)
        test_bundle.propensity = prop_eval
        p_test = prop_eval.predict_purchase(test_bundle.propensity_input(feats_test[test_bundle.feature_columns], b_test))
        for k, v in propensity_metrics(y_buy[buyer], p_test[buyer]).items():
            metrics[f"churn_model_{k}"] = v
        for k, v in propensity_metrics(y_buy, p_test).items():
            metrics[f"propensity_all_{k}"] = v
        metrics["propensity_roc_auc"] = metrics["churn_model_roc_auc"]
        for kind in ("supervised", "hybrid"):
            clv_eval = timed(f"clv_{kind}_fit_eval", fit_clv, kind, eval_fits, cfg, test)
            pred = clv_eval.predict(clv_columns(test, kind))
            for k, v in clv_metrics(y_spend[buyer], pred[buyer]).items():
                metrics[f"clv_{kind}_{k}"] = v
            if kind == cfg.model.clv_model:  # tiers at the test origin use the chosen CLV model, as the bundle will
                test_bundle.clv_kind, test_bundle.clv_model = kind, clv_eval
        metrics["clv_normalized_gini"] = metrics[f"clv_{cfg.model.clv_model}_normalized_gini"]

    # --- final models -----------------------------------------------------------------------------
    step(f"BTYD fit at {as_of}; propensity and CLV models fitted at {test_origin} and before")
    now = timed("btyd_fit", fit_origin, tables, as_of, cfg, spec, labels=False, features=feats_now)
    bundle = now.bundle
    cache[test_origin] = test
    train_fits = fit_training_origins(tables, as_of, cfg, spec, cache)
    if not train_fits:
        raise DataQualityError(
            f"No customer base before {as_of} to train the propensity model on: at {test_origin} fewer than 20 customers "
            f"had purchased or the {H}-day outcome took one value only. Use a later as_of or a shorter horizon."
        )
    bundle.propensity = timed("propensity_fit", fit_propensity, train_fits, cfg, now)
    bundle.clv_kind = cfg.model.clv_model
    if cfg.model.clv_model != "btyd":
        bundle.clv_model = timed("clv_fit", fit_clv, cfg.model.clv_model, train_fits, cfg, now)

    step("tier policy and next-tier model")
    bundle.tier_policy = _policy(cfg).fit(_scored_inputs(bundle, feats_now))
    if has_eval:
        test_bundle.tier_policy = _policy(cfg).fit(_scored_inputs(test_bundle, feats_test))
        tier_then = test_bundle.predict(feats_test[test_bundle.feature_columns])["tier"]
        tier_now = bundle.predict(feats_now[bundle.feature_columns])[["customer_id", "tier"]]
        pair = feats_test[bundle.feature_columns].assign(tier_then=tier_then.to_numpy()).merge(tier_now, on="customer_id")
        X = model_features(pair[bundle.feature_columns])
        bundle.next_tier_model = timed("next_tier_fit", NextTierModel(random_state=cfg.model.seed).fit,
                                       X, pair["tier_then"], pair["tier"])
        metrics["next_tier_train_stay_share"] = float((pair["tier_then"] == pair["tier"]).mean())
        from tiering.tier_eval import next_tier_backtest  # out of time: fit eval->test origin, score test origin->as_of

        metrics |= timed("next_tier_eval", next_tier_backtest, eval_bundle, prop_eval, feats_eval, pair,
                         test_bundle.tier_policy, random_state=cfg.model.seed)
    bundle.metrics = metrics
    return TrainResult(bundle, metrics, seconds, data_fingerprint(tables), feats_now.head(5), notes)


def _scored_inputs(bundle: ScoringBundle, features: pd.DataFrame) -> pd.DataFrame:
    """Features joined to the bundle's predictions: what the tier policy is fitted on."""
    return pd.concat([features, bundle.predictions(features[bundle.feature_columns])], axis=1)


def train_and_register(cfg: Config, *, as_of: dt.date, progress=None) -> TrainResult:
    """Validate the sources, fit at ``as_of``, log the run and register a version with alias challenger."""
    from tiering import registry, tracking
    from tiering.validation import load_tables

    step = progress or (lambda msg: None)
    step("validating sources")
    tables = load_tables(cfg, as_of=as_of)
    result = fit(tables, as_of=as_of, cfg=cfg, progress=progress)
    step("logging to MLflow and registering")
    result.run_id, result.model_uri = tracking.log_training_run(
        result.bundle,
        cfg=cfg.tracking,
        run_name=f"train-{as_of}",
        params={"config": cfg.model_dump(mode="json"), "as_of": as_of.isoformat(), "horizon_days": cfg.model.horizon_days},
        metrics=result.metrics | {f"fit_seconds_{k}": v for k, v in result.fit_seconds.items()},
        tags={"as_of": as_of.isoformat(), "horizon_days": str(cfg.model.horizon_days), "data_hash": result.data_fingerprint["hash"],
              "tiering_version": result.bundle.version, "code_version": tracking.code_version(), "kind": "train"},
        input_example=result.input_example,
        artifacts={"config.json": cfg.model_dump(mode="json"), "data_fingerprint.json": result.data_fingerprint, "validation.json": [r.to_dict() for r in tables.reports],
                   "notes.json": result.notes},
    )
    result.version = registry.register(result.model_uri, cfg.tracking)
    return result
