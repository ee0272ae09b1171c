"""Fit the scoring bundle at an as_of, evaluate it out of time, and (optionally) log and register it.

Three origins, one horizon H apart, keep every evaluation out of time:

    as_of - 2H  (eval origin)  propensity model for evaluation is trained here, labels from (as_of-2H, as_of-H]
    as_of - H   (test origin)  evaluation: BTYD fitted on data <= as_of-H, every model scored against (as_of-H, as_of];
                               the final propensity and next-tier models are trained here
    as_of                       the final BTYD models are fitted here; the bundle scores from here on

Baselines on the same split: naive (trailing spend for CLV, recency for propensity) and
plain BG/NBD + Gamma-Gamma. When the data do not reach back to as_of - 2H, the propensity model
is not evaluated (reported, not hidden) and the next-tier model is left out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from dataclasses import dataclass, field

import pandas as pd

from tiering import __version__
from tiering.config import Config
from tiering.evaluation import clv_metrics, propensity_metrics, ranking_auc
from tiering.exceptions import DataQualityError
from tiering.features import FeatureSpec, build_features, build_labels
from tiering.models.btyd import BetaGeoModel, GammaGammaModel, ParetoNBDModel
from tiering.models.bundle import ScoringBundle, model_features
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


def _fit_propensity(bundle: ScoringBundle, train: pd.DataFrame, cfg: Config) -> PropensityModel:
    X = bundle.propensity_input(train[bundle.feature_columns], bundle.btyd(train))
    return PropensityModel(random_state=cfg.model.seed).fit(X, train["purchased_in_horizon"])


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

    step(f"features at {as_of}, {test_origin} and {eval_origin}")
    feats_now = timed("features_as_of", features_at, tables, as_of, spec)
    feats_test = timed("features_test_origin", with_labels, tables, features_at(tables, test_origin, spec), test_origin, H)
    feats_eval = with_labels(tables, features_at(tables, eval_origin, spec), eval_origin, H)
    has_eval = (feats_eval["has_purchased"] > 0).sum() >= 20 and feats_eval["purchased_in_horizon"].nunique() == 2
    if not has_eval:
        notes.append(f"data before {eval_origin} too thin: the propensity model is not evaluated and no next-tier model is fitted")

    # --- evaluation at the test origin: BTYD fitted on data <= test_origin --------------------------
    step(f"BTYD fit at {test_origin} (evaluation)")
    tm_test, sm_test = timed("btyd_fit_test", _fit_btyd, feats_test, cfg)
    test_bundle = _bundle(cfg, spec, feats_now, test_origin, tm_test, sm_test)
    b_test = test_bundle.btyd(feats_test)
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
    metrics["clv_normalized_gini"] = metrics["clv_btyd_normalized_gini"]  # the chosen CLV model is BTYD for now

    if has_eval:
        step(f"propensity fit at {eval_origin}, scored at {test_origin} (evaluation)")
        tm_e, sm_e = _fit_btyd(feats_eval, cfg)
        eval_bundle = _bundle(cfg, spec, feats_now, eval_origin, tm_e, sm_e)
        prop_eval = timed("propensity_fit_eval", _fit_propensity, eval_bundle, feats_eval, cfg)
        test_bundle.propensity = prop_eval
        p_test = prop_eval.predict_purchase(test_bundle.propensity_input(feats_test[test_bundle.feature_columns], b_test))
        for k, v in propensity_metrics(y_buy[buyer], p_test[buyer]).items():
            metrics[f"churn_model_{k}"] = v
        for k, v in propensity_metrics(y_buy, p_test).items():
            metrics[f"propensity_all_{k}"] = v
        metrics["propensity_roc_auc"] = metrics["churn_model_roc_auc"]

    # --- final models -----------------------------------------------------------------------------
    step(f"BTYD fit at {as_of}; propensity fit at {test_origin}")
    tm, sm = timed("btyd_fit", _fit_btyd, feats_now, cfg)
    bundle = _bundle(cfg, spec, feats_now, as_of, tm, sm)
    bundle.propensity = timed("propensity_fit", _fit_propensity, test_bundle, feats_test, cfg)

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
