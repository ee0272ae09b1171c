"""Fit the scoring bundle at an as_of, evaluate it out of time, and (optionally) log and register it.

Three origins, one horizon H apart, keep every evaluation out of time:

    as_of - 2H  (eval origin)  propensity, CLV (supervised, hybrid, hurdle) and interval models for evaluation
                               are trained here and before, labels from (as_of-2H, as_of-H]
    as_of - H   (test origin)  evaluation: BTYD fitted on data <= as_of-H, every model scored against (as_of-H, as_of];
                               the CLV model to ship is chosen here (``model.clv_model: auto``: the best normalized
                               Gini, baselines included, :func:`choose_clv`); the final propensity, CLV, interval and
                               next-tier models are trained here and before
    as_of                       the final BTYD models are fitted here; the bundle scores from here on

Fitting at an origin (features, labels, BTYD, the stacked training origins, each learned model) lives in
tiering.fitting, shared with the backtest. With ``model.training_origins`` = k > 1 the learned models
stack k training origins, each ``model.training_origin_step_days`` before the previous one (every label
window still ends by the origin they score). Their level is aligned without labels to BTYD fitted at
the scoring origin (tiering.models.propensity, tiering.models.clv). Baselines on the same split: naive
(trailing spend for CLV, recency for propensity) and plain BG/NBD + Gamma-Gamma. When the data do not
reach back to as_of - 2H, the learned models are not evaluated (reported, not hidden), auto chooses
between the baselines and the next-tier model is left out. Thin or degenerate data (10
customers, one day of history, no repeat buyer, a horizon longer than the history, a class of one)
never crash a fit: each stage falls back to a simpler model and says so (``TrainResult.fallbacks``,
the notes, the metric ``fallback_count`` and the MLflow tag ``fallbacks``); see :func:`fit`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tiering.config import Config
from tiering.evaluation import clv_metrics, propensity_metrics, ranking_auc
from tiering.exceptions import ModelError
from tiering.features import FeatureSpec
from tiering.fitting import (  # re-exported: tiering.train was their home, callers import them from here
    CLV_CANDIDATES,
    LABELS,
    LEARNED_CLV,
    MIN_BTYD_BUYERS,
    OriginFit,
    clv_columns,
    feature_spec,
    features_at,
    fit_clv,
    fit_interval,
    fit_origin,
    fit_propensity,
    fit_training_origins,
    pick_clv,
    training_origins,
    try_fit_origin,
    usable,
    with_labels,
)
from tiering.models.bundle import ScoringBundle, model_features
from tiering.models.clv import LevelAligned
from tiering.models.intervals import interval_metrics
from tiering.models.propensity import PropensityModel
from tiering.models.tiers import NextTierModel, TierPolicy
from tiering.validation import ValidatedTables

__all__ = ["LABELS", "LEARNED_CLV", "MIN_BTYD_BUYERS", "OriginFit", "TrainResult", "choose_clv", "clv_columns",
           "data_fingerprint", "feature_spec", "features_at", "fit", "fit_clv", "fit_interval", "fit_origin",
           "fit_propensity", "fit_training_origins", "log_and_register", "tier_policy_metrics", "train_and_register",
           "training_origins", "usable", "with_labels"]


@dataclass
class TrainResult:
    bundle: ScoringBundle
    metrics: dict[str, float]
    fit_seconds: dict[str, float]
    data_fingerprint: dict
    input_example: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    run_id: str | None = None
    fallbacks: list[str] = field(default_factory=list)  # the simpler models used, one sentence each (also in notes)
    model_uri: str | None = None
    version: str | None = None


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


FLOORS = ("value_min_p_purchase", "value_min_p_alive", "value_max_gap_ratio")


def _policy(cfg: Config, floors: TierPolicy | None = None) -> TierPolicy:
    """The tier policy of the config; with ``floors`` (a fitted policy), its value floors fixed (not relearned)."""
    m = cfg.model
    fixed = {k: getattr(floors, k + "_") for k in FLOORS} if floors is not None else {k: getattr(m, k) for k in FLOORS}
    return TierPolicy(core_min_p_purchase=m.core_min_p_purchase, core_clv_quantile=m.core_clv_quantile,
                      seed_engagement_quantile=m.seed_engagement_quantile,
                      seed_min_social_actions_90d=m.seed_min_social_actions_90d,
                      new_max_tenure_days=m.new_max_tenure_days, at_risk_min_churn_risk=m.at_risk_min_churn_risk,
                      value_grace_gap_ratio=m.value_grace_gap_ratio, seed_min_koc_score=m.seed_min_koc_score,
                      proba_sd=m.tier_proba_sd, **fixed)


def tier_policy_metrics(policy: TierPolicy) -> dict[str, float]:
    """The policy's value floors (NaN: that test is off) and where each came from (1: learned out of time)."""
    out = {}
    for k in FLOORS:
        v = float(getattr(policy, k + "_"))
        off = (k == "value_min_p_alive" and v <= 0) or (k == "value_max_gap_ratio" and not np.isfinite(v))
        out[f"tier_{k}"] = float("nan") if off else v
        out[f"tier_{k}_learned"] = float(policy.threshold_source_[k] == "learned")
    out["tier_seed_min_koc_score"] = policy.seed_min_koc_score_
    out["tier_seed_min_koc_score_learned"] = float(policy.threshold_source_["seed_min_koc_score"] == "learned")
    out["tier_value_floor_youden_j"] = policy.value_floor_j_
    out["tier_core_clv_cut"] = policy.core_clv_cut_
    out["tier_koc_mixture_fitted"] = float(policy.koc_theta_ is not None)
    return out


def _metrics_or_nan(fn, actual, predicted) -> dict[str, float]:
    """``fn``'s metrics, or the same keys as NaN when fewer than 2 rows make them undefined."""
    actual, predicted = np.asarray(actual, dtype=float), np.asarray(predicted, dtype=float)
    if len(actual) >= 2:
        return fn(actual, predicted)
    return dict.fromkeys(fn(np.array([0.0, 1.0]), np.array([0.0, 1.0])), float("nan"))


def _try_fit_clv(kind: str, fits: list[OriginFit], cfg: Config, score_at: OriginFit, fallbacks: list[str],
                 where: str) -> LevelAligned | None:
    """fit_clv, or None (with a fallback note: BTYD's CLV stands in) when no frame or too few spenders."""
    if not fits:
        fallbacks.append(f"CLV {where}: no labelled training origin; the {kind} CLV model is not fitted and BTYD's "
                         "discounted CLV stands in")
        return None
    try:
        return fit_clv(kind, fits, cfg, score_at)
    except ModelError as exc:
        fallbacks.append(f"CLV {where}: the {kind} model is not fitted ({exc}); BTYD's discounted CLV stands in")
        return None


def _baseline_metrics(test: OriginFit, spec: FeatureSpec) -> dict[str, float]:
    """BTYD and naive CLV and churn metrics at the test origin, over its buyers."""
    f, b = test.frame, test.btyd
    buyer = f["has_purchased"].to_numpy() > 0
    y_spend, y_buy = f["holdout_spend"].to_numpy(float)[buyer], f["purchased_in_horizon"].to_numpy(int)[buyer]
    largest = max(spec.windows_days)
    metrics: dict[str, float] = {}
    for name, pred in (("btyd", b["btyd_clv"].to_numpy()), ("naive", f[f"spend_{largest}d"].to_numpy(float))):
        for k, v in _metrics_or_nan(clv_metrics, y_spend, pred[buyer]).items():
            metrics[f"clv_{name}_{k}"] = v
    for k, v in _metrics_or_nan(propensity_metrics, y_buy, 1 - b["btyd_p_no_purchase"].to_numpy()[buyer]).items():
        metrics[f"churn_btyd_{k}"] = v
    naive = -f["days_since_last_purchase"].to_numpy(float)[buyer]
    metrics["churn_naive_roc_auc"] = ranking_auc(y_buy, naive) if len(y_buy) >= 2 else float("nan")
    return metrics


@dataclass
class _Evaluation:
    """What the out-of-time evaluation leaves for the final fit: the test bundle with its models."""

    metrics: dict[str, float]
    propensity: PropensityModel | None = None
    clv_models: dict[str, LevelAligned | None] = field(default_factory=dict)


def choose_clv(metrics: dict[str, float], cfg: Config) -> tuple[str, str]:
    """The CLV model to ship and why: ``cfg.model.clv_model``, or with "auto" :func:`tiering.fitting.pick_clv` on the
    normalized Gini of every candidate at the test origin."""
    m = cfg.model
    if m.clv_model != "auto":
        return m.clv_model, f"CLV model {m.clv_model} (set in the config)"
    ginis = {k: metrics.get(f"clv_{k}_normalized_gini", float("nan")) for k in CLV_CANDIDATES}
    chosen = pick_clv(ginis, m.clv_auto_prefer, m.clv_auto_margin)
    if chosen is None:
        return "btyd", "CLV model btyd (auto: nothing could be evaluated out of time)"
    scores = ", ".join(f"{k} {v:.4f}" for k, v in sorted(ginis.items(), key=lambda kv: -kv[1]) if np.isfinite(v))
    rule = (f"kept {m.clv_auto_prefer} within {m.clv_auto_margin:g} of the best" if chosen == m.clv_auto_prefer
            else f"{m.clv_auto_prefer} " + ("not evaluated" if not np.isfinite(ginis.get(m.clv_auto_prefer, np.nan))
                                             else f"behind by more than {m.clv_auto_margin:g}"))
    return chosen, f"CLV model {chosen} (auto: {rule}; normalized Gini at the test origin: {scores})"


def _evaluate_models(test: OriginFit, eval_fits: list[OriginFit], cfg: Config, timed, fallbacks: list[str]) -> _Evaluation:
    """Propensity and supervised/hybrid CLV trained at the eval origins, scored at the test origin."""
    f, b, bundle = test.frame, test.btyd, test.bundle
    buyer = f["has_purchased"].to_numpy() > 0
    y_spend, y_buy = f["holdout_spend"].to_numpy(float), f["purchased_in_horizon"].to_numpy(int)
    metrics: dict[str, float] = {}
    prop = timed("propensity_fit_eval", fit_propensity, eval_fits, cfg, test)
    fallbacks += [f"evaluation {s}" for s in prop.fallbacks_]
    bundle.propensity = prop
    p_test = prop.predict_purchase(bundle.propensity_input(f[bundle.feature_columns], b))
    for k, v in _metrics_or_nan(propensity_metrics, y_buy[buyer], p_test[buyer]).items():
        metrics[f"churn_model_{k}"] = v
    for k, v in _metrics_or_nan(propensity_metrics, y_buy, p_test).items():
        metrics[f"propensity_all_{k}"] = v
    metrics["propensity_roc_auc"] = metrics["churn_model_roc_auc"]
    models: dict[str, LevelAligned | None] = {}
    for kind in LEARNED_CLV:
        models[kind] = model = timed(f"clv_{kind}_fit_eval", _try_fit_clv, kind, eval_fits, cfg, test, fallbacks, "evaluation")
        pred = model.predict(clv_columns(test, kind)) if model is not None else np.full(len(f), np.nan)
        for k, v in _metrics_or_nan(clv_metrics, y_spend[buyer], pred[buyer]).items():
            metrics[f"clv_{kind}_{k}"] = v if model is not None else float("nan")
    try:
        interval = timed("clv_interval_fit_eval", fit_interval, eval_fits, cfg)
        lo, hi = interval.predict(clv_columns(test, "interval"))
        metrics |= {f"clv_interval_{k}": v for k, v in interval_metrics(y_spend, lo, hi).items()}
    except ModelError as exc:
        fallbacks.append(f"evaluation: the CLV interval is not evaluated ({exc})")
    return _Evaluation(metrics, prop, models)


def _fit_next_tier(bundle: ScoringBundle, feats_now: pd.DataFrame, test: OriginFit, evaluation: _Evaluation,
                   eval_fit: OriginFit, cfg: Config, timed, fallbacks: list[str]) -> dict[str, float]:
    """The next-tier model (tiers at the test origin -> tiers at as_of) and its out-of-time check."""
    from tiering.tier_eval import next_tier_backtest  # out of time: fit eval->test origin, score test origin->as_of

    test_bundle, feats_test = test.bundle, test.frame
    test_bundle.tier_policy = _policy(cfg, floors=bundle.tier_policy).fit(_scored_inputs(test_bundle, feats_test))
    tier_then = test_bundle.predict(feats_test[test_bundle.feature_columns])["tier"]
    tier_now = bundle.predict(feats_now[bundle.feature_columns])[["customer_id", "tier"]]
    pair = feats_test[bundle.feature_columns].assign(tier_then=tier_then.to_numpy()).merge(tier_now, on="customer_id")
    model = timed("next_tier_fit", NextTierModel(random_state=cfg.model.seed, threads=cfg.model.threads).fit,
                  model_features(pair[bundle.feature_columns]), pair["tier_then"], pair["tier"])
    fallbacks += model.fallbacks_
    bundle.next_tier_model = model
    metrics = {"next_tier_train_stay_share": float((pair["tier_then"] == pair["tier"]).mean()) if len(pair) else float("nan")}
    return metrics | timed("next_tier_eval", next_tier_backtest, eval_fit.bundle, evaluation.propensity, eval_fit.frame,
                           pair, test_bundle.tier_policy, random_state=cfg.model.seed, fallbacks=fallbacks)


def fit(tables: ValidatedTables, *, as_of: dt.date, cfg: Config, progress=None) -> TrainResult:
    """Fit every model for scoring at ``as_of``, with out-of-time metrics beside the baselines.

    Never fails on thin or degenerate data once someone has purchased by ``as_of`` (no buyer at all is a
    DataQualityError); it falls back instead, and each fallback is one sentence in the result's
    ``fallbacks`` (also in ``notes``), counted in the metric ``fallback_count``:

    - BTYD at any origin: the pooled NBD model and/or one mean order value (see ``tiering.fitting._fit_btyd``);
    - no buyer by the test origin as_of - H (a horizon longer than the history, one day of data): no
      out-of-time evaluation; every evaluation metric is NaN;
    - no usable eval origin (20 buyers and both outcomes at as_of - 2H): the propensity and CLV models
      are not evaluated (their metrics NaN; clv_normalized_gini is BTYD's) and no next-tier model is
      fitted: the bundle predicts that each customer stays in its tier;
    - no usable training origin for the final models: the propensity model trains on the test origin's
      labelled frame however small, or, without one, is PropensityModel's constant rate aligned to
      BTYD; the supervised/hybrid CLV model falls back to BTYD's CLV (``bundle.clv_kind = "btyd"``);
    - PropensityModel and NextTierModel add their own (one outcome, tiny classes: see their docs).
    """
    step = progress or (lambda msg: None)
    H = cfg.model.horizon_days
    spec = feature_spec(cfg)
    test_origin = as_of - dt.timedelta(days=H)
    eval_origin = as_of - dt.timedelta(days=2 * H)
    seconds: dict[str, float] = {}
    notes: list[str] = []
    fallbacks: list[str] = []

    def timed(name, fn, *a, **kw):
        t0 = time.perf_counter()
        out = fn(*a, **kw)
        seconds[name] = round(time.perf_counter() - t0, 3)
        return out

    step(f"BTYD fit at {as_of}")
    feats_now = timed("features_as_of", features_at, tables, as_of, spec)
    now = timed("btyd_fit", fit_origin, tables, as_of, cfg, spec, labels=False, features=feats_now)
    fallbacks += now.fallbacks
    bundle = now.bundle

    step(f"features and BTYD at {test_origin} and the training origins before it (evaluation)")
    test = timed("fit_test_origin", try_fit_origin, tables, test_origin, cfg, spec)
    cache: dict = {}
    eval_fits = timed("fit_eval_origins", fit_training_origins, tables, test_origin, cfg, spec, cache) if test else []
    has_eval = bool(eval_fits) and eval_fits[0].origin == eval_origin
    if test is None:
        fallbacks.append(f"evaluation: no customer had purchased by the test origin {test_origin} (as_of - {H} days); "
                         "nothing is evaluated out of time and every evaluation metric is NaN")
        metrics = {k: float("nan") for k in ("clv_btyd_normalized_gini", "clv_naive_normalized_gini",
                                            "churn_btyd_roc_auc", "churn_naive_roc_auc")}
    else:
        fallbacks += test.fallbacks
        metrics = _baseline_metrics(test, spec)
    metrics |= {"clv_normalized_gini": metrics["clv_btyd_normalized_gini"], "propensity_roc_auc": float("nan")}
    evaluation = None
    if has_eval:
        fallbacks += eval_fits[0].fallbacks
        step(f"propensity and CLV models fitted at {', '.join(str(f.origin) for f in eval_fits)}, scored at {test_origin} (evaluation)")
        evaluation = _evaluate_models(test, eval_fits, cfg, timed, fallbacks)
        metrics |= evaluation.metrics
    elif test is not None:
        notes.append(f"data before {eval_origin} too thin: the propensity and supervised CLV models are not evaluated "
                     "(propensity_roc_auc is NaN), the chosen CLV metric is BTYD's and no next-tier model is fitted "
                     "(each customer is predicted to stay in its tier)")

    chosen, why = choose_clv(metrics, cfg)
    notes.append(why)
    if has_eval:  # the test origin's tiers (the tier policy's holdout) use the chosen CLV model, as fitted there
        assert evaluation is not None  # has_eval: evaluated above
        test.bundle.clv_kind, test.bundle.clv_model = chosen, evaluation.clv_models.get(chosen)
        if chosen == "naive":
            test.bundle.clv_model = fit_clv("naive", eval_fits, cfg, test)
        if test.bundle.clv_model is None:
            test.bundle.clv_kind = "btyd"  # BTYD's where the chosen model could not be fitted
        metrics["clv_normalized_gini"] = metrics[f"clv_{test.bundle.clv_kind}_normalized_gini"]

    step(f"propensity and CLV models fitted at {test_origin} and before")
    if test is not None:
        cache[test_origin] = test
    train_fits = fit_training_origins(tables, as_of, cfg, spec, cache)
    if not train_fits:
        train_fits = [test] if test is not None else []
        fallbacks.append(
            f"final models: no usable training origin (at least {MIN_BTYD_BUYERS} buyers and both outcomes) at or "
            f"before {test_origin}; the propensity model trains on "
            + (f"the {len(test.frame):,} customers at {test_origin}" if test is not None
               else "no labels (a constant rate aligned to BTYD)"))
    bundle.propensity = timed("propensity_fit", fit_propensity, train_fits, cfg, now)
    fallbacks += bundle.propensity.fallbacks_
    bundle.clv_kind = chosen
    if chosen != "btyd":
        bundle.clv_model = timed("clv_fit", _try_fit_clv, chosen, train_fits, cfg, now, fallbacks, "final")
        if bundle.clv_model is None:
            bundle.clv_kind = "btyd"
    try:
        bundle.clv_interval = timed("clv_interval_fit", fit_interval, train_fits, cfg)
    except ModelError as exc:
        fallbacks.append(f"CLV interval: not fitted ({exc}); clv_p10 and clv_p90 are empty")

    step("tier policy and next-tier model")
    # value floors: learned where they separate what buyers did next, on the out-of-time test origin
    holdout = _scored_inputs(test.bundle, test.frame) if has_eval else None
    bundle.tier_policy = timed("tier_policy_fit", _policy(cfg).fit, _scored_inputs(bundle, feats_now), holdout=holdout)
    defaults = [k for k, s in bundle.tier_policy.threshold_source_.items() if s == "default" and k in FLOORS]
    if defaults:
        fallbacks.append(f"tiers: {', '.join(defaults)} not learned (" + ("no propensity model evaluated out of time at "
                         f"{test_origin}" if holdout is None else f"the buyers at {test_origin} do not tell who returns")
                         + "); the defaults apply (no p_purchase or P(alive) floor; a buyer lapses when the last order is "
                         "over 3x their own gap between orders)")
    metrics |= tier_policy_metrics(bundle.tier_policy)
    if has_eval:
        assert evaluation is not None  # has_eval: evaluated above
        metrics |= _fit_next_tier(bundle, feats_now, test, evaluation, eval_fits[0], cfg, timed, fallbacks)
        metrics |= _tier_outcome_metrics(tables, test, cfg)
    metrics["fallback_count"] = float(len(fallbacks))
    bundle.metrics = metrics
    return TrainResult(bundle, metrics, seconds, data_fingerprint(tables), feats_now.head(5), notes + fallbacks, fallbacks=fallbacks)


def _tier_outcome_metrics(tables: ValidatedTables, test: OriginFit, cfg: Config) -> dict[str, float]:
    """The ladder at the test origin judged by what its customers did in the horizon after it (tier_eval).

    The value floors are learned on these same outcomes (three numbers), the rest of the models out of time."""
    from tiering.tier_eval import social_actions_between, tier_outcomes

    tiers = test.bundle.predict(test.frame[test.bundle.feature_columns])
    outcomes = test.frame[["customer_id", "holdout_spend", "purchased_in_horizon"]]
    if tables.interactions is not None:
        social = social_actions_between(tables.interactions, test.origin, cfg.model.horizon_days)
        outcomes = outcomes.merge(social, on="customer_id", how="left").fillna({"social_actions_next": 0})
    return tier_outcomes(tiers, outcomes)[1]


def _scored_inputs(bundle: ScoringBundle, features: pd.DataFrame) -> pd.DataFrame:
    """Features joined to the bundle's predictions: what the tier policy is fitted on."""
    return pd.concat([features, bundle.predictions(features[bundle.feature_columns])], axis=1)


def train_and_register(cfg: Config, *, as_of: dt.date, progress=None) -> TrainResult:
    """Validate the sources, fit at ``as_of``, log the run and register a version with alias challenger."""
    from tiering.validation import load_tables

    step = progress or (lambda msg: None)
    step("validating sources")
    tables = load_tables(cfg, as_of=as_of)
    result = fit(tables, as_of=as_of, cfg=cfg, progress=progress)
    step("logging to MLflow and registering")
    log_and_register(result, cfg, as_of=as_of, reports=tables.reports)
    return result


def log_and_register(result: TrainResult, cfg: Config, *, as_of: dt.date, reports, tracking_cfg=None,
                     run_name: str | None = None, register: bool = True) -> None:
    """Log a fit as one MLflow run (redacted config, metrics, fit times, tags, validation reports, notes, the
    bundle as a pyfunc model) into ``tracking_cfg`` (default cfg.tracking) and, with ``register``, register
    it with alias challenger; sets result.run_id, model_uri and version. `tiering train` and tg.log_to_mlflow."""
    from tiering import registry, tracking

    tcfg = tracking_cfg or cfg.tracking
    day, config = as_of.isoformat(), cfg.redacted()
    result.run_id, result.model_uri = tracking.log_training_run(
        result.bundle,
        cfg=tcfg,
        run_name=run_name or tracking.run_name("train", cfg, as_of, result.data_fingerprint["hash"],
                                               clv_model=result.bundle.clv_kind),
        params={"config": config, "as_of": day, "horizon_days": cfg.model.horizon_days},
        metrics=result.metrics | {f"fit_seconds_{k}": v for k, v in result.fit_seconds.items()},
        tags={"as_of": day, "horizon_days": str(cfg.model.horizon_days), "data_hash": result.data_fingerprint["hash"],
              "tiering_version": result.bundle.version, "code_version": tracking.code_version(), "kind": "train",
              "clv_model": result.bundle.clv_kind,
              "fallbacks": "; ".join(result.fallbacks)[:5000] or "none"},
        input_example=result.input_example,
        artifacts={"config.json": config, "data_fingerprint.json": result.data_fingerprint,
                   "validation.json": [r.to_dict() for r in reports], "notes.json": result.notes},
    )
    result.version = registry.register(result.model_uri, tcfg) if register else None

