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
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from tiering.choice import choose_clv, guard_propensity, heldout_if_thin
from tiering.config import Config
from tiering.evaluation import clv_metrics
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
    training_origins,
    try_fit_origin,
    usable,
    with_labels,
)
from tiering.holdout import evaluate_origin, flat_metrics, metrics_or_nan
from tiering.models.bundle import ScoringBundle
from tiering.models.clv import LevelAligned
from tiering.tier_fitting import FLOORS, fit_next_tier, scored_inputs, tier_outcome_metrics, tier_policy, tier_policy_metrics
from tiering.validation import ValidatedTables, data_fingerprint

__all__ = [
    "LABELS",
    "LEARNED_CLV",
    "MIN_BTYD_BUYERS",
    "OriginFit",
    "TrainResult",
    "choose_clv",
    "clv_columns",
    "data_fingerprint",
    "feature_spec",
    "features_at",
    "fit",
    "fit_clv",
    "fit_interval",
    "fit_origin",
    "fit_propensity",
    "fit_training_origins",
    "log_and_register",
    "tier_policy_metrics",
    "train_and_register",
    "training_origins",
    "usable",
    "with_labels",
]


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


@dataclass
class _Steps:
    """A fit's bookkeeping: progress messages, timings per step, fallbacks and notes."""

    progress: Callable[[str], None] | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    fallbacks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def step(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)

    def timed(self, name: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        self.seconds[name] = round(time.perf_counter() - t0, 3)
        return out


def _try_fit_clv(kind: str, fits: list[OriginFit], cfg: Config, score_at: OriginFit, fallbacks: list[str]) -> LevelAligned | None:
    """The final CLV model, or None (with a fallback note: BTYD's CLV stands in) when it cannot be fitted."""
    if not fits:
        fallbacks.append(f"CLV final: no labelled training origin; the {kind} CLV model is not fitted and BTYD's discounted CLV stands in")
        return None
    try:
        return fit_clv(kind, fits, cfg, score_at)
    except ModelError as exc:
        fallbacks.append(f"CLV final: the {kind} model is not fitted ({exc}); BTYD's discounted CLV stands in")
        return None


# every model train judges at its test origin (tiering.holdout), baselines included
_EVALUATED = {"clv": CLV_CANDIDATES, "churn": ("naive", "btyd", "model"), "propensity": ("model",), "interval": ("cqr",)}


@dataclass
class _Evaluation:
    """The out-of-time evaluation at the test origin: its metrics and the models fitted at the eval origins."""

    test: OriginFit | None
    eval_fits: list[OriginFit]
    metrics: dict[str, float]
    fitted: dict = field(default_factory=dict)

    @property
    def has_models(self) -> bool:  # the learned models were fitted at the eval origin (as_of - 2H) and judged
        return bool(self.eval_fits)


def _evaluation_metrics(test: OriginFit, eval_fits: list[OriginFit], cfg: Config, s: _Steps) -> tuple[dict[str, float], dict]:
    """tiering.holdout.evaluate_origin at the test origin, as flat metric names, and what it fitted; its failures
    and the evaluation propensity model's fallbacks become fallbacks."""
    fitted: dict = {}
    rows, _, _, _ = s.timed("evaluate_test_origin", evaluate_origin, test, eval_fits, cfg, _EVALUATED, fitted=fitted)
    metrics = flat_metrics(rows)
    if not eval_fits:
        return metrics, fitted
    s.fallbacks.extend(f"evaluation {f}" for f in fitted["propensity"].fallbacks_)
    metrics["propensity_roc_auc"] = metrics["churn_model_roc_auc"]
    errors = fitted.get("errors", {})
    for kind in LEARNED_CLV:
        if f"clv:{kind}" in errors:
            s.fallbacks.append(f"CLV evaluation: the {kind} model is not fitted ({errors[f'clv:{kind}']}); BTYD's discounted CLV stands in")
            metrics |= {f"clv_{kind}_{k}": float("nan") for k in metrics_or_nan(clv_metrics, [], [])}
    if "interval" in errors:
        s.fallbacks.append(f"evaluation: the CLV interval is not evaluated ({errors['interval']})")
    return metrics, fitted


def _evaluate(tables: ValidatedTables, as_of: dt.date, cfg: Config, spec: FeatureSpec, cache: dict, s: _Steps) -> _Evaluation:
    """Fit and judge every model at the test origin as_of - H, trained at the eval origin as_of - 2H and before."""
    H = cfg.model.horizon_days
    test_origin, eval_origin = as_of - dt.timedelta(days=H), as_of - dt.timedelta(days=2 * H)
    s.step(f"features and BTYD at {test_origin} and the training origins before it (evaluation)")
    test = s.timed("fit_test_origin", try_fit_origin, tables, test_origin, cfg, spec)
    if test is None:
        s.fallbacks.append(
            f"evaluation: no customer had purchased by the test origin {test_origin} (as_of - {H} days); "
            "nothing is evaluated out of time and every evaluation metric is NaN"
        )
        metrics = {
            k: float("nan") for k in ("clv_btyd_normalized_gini", "clv_naive_normalized_gini", "churn_btyd_roc_auc", "churn_naive_roc_auc")
        }
        return _Evaluation(None, [], metrics | {"clv_normalized_gini": float("nan"), "propensity_roc_auc": float("nan")})
    s.fallbacks.extend(test.fallbacks)
    eval_fits = s.timed("fit_eval_origins", fit_training_origins, tables, test_origin, cfg, spec, cache)
    if eval_fits and eval_fits[0].origin == eval_origin:
        s.fallbacks.extend(eval_fits[0].fallbacks)
        s.step(f"propensity and CLV models fitted at {', '.join(str(f.origin) for f in eval_fits)}, scored at {test_origin} (evaluation)")
    else:
        eval_fits = []
        s.notes.append(
            f"data before {eval_origin} too thin: the propensity and supervised CLV models are not evaluated "
            "(propensity_roc_auc is NaN), the chosen CLV metric is BTYD's and no next-tier model is fitted "
            "(each customer is predicted to stay in its tier)"
        )
    got, fitted = _evaluation_metrics(test, eval_fits, cfg, s)  # propensity_roc_auc among them when evaluated
    metrics = {"propensity_roc_auc": float("nan")} | got | {"clv_normalized_gini": got["clv_btyd_normalized_gini"]}
    return _Evaluation(test, eval_fits, metrics, fitted)


def _ship_test_bundle(ev: _Evaluation, chosen: str, cfg: Config) -> None:
    """The test origin's bundle with the chosen CLV model as fitted there (the tier policy's holdout uses it);
    ``clv_normalized_gini`` becomes that model's."""
    assert ev.test is not None  # has_models: there is a test origin
    bundle = ev.test.bundle
    bundle.propensity = ev.fitted["propensity"]
    bundle.clv_kind, bundle.clv_model = chosen, ev.fitted.get("clv", {}).get(chosen)
    if chosen == "naive":
        bundle.clv_model = fit_clv("naive", ev.eval_fits, cfg, ev.test)
    if bundle.clv_model is None:
        bundle.clv_kind = "btyd"  # BTYD's where the chosen model could not be fitted
    ev.metrics["clv_normalized_gini"] = ev.metrics[f"clv_{bundle.clv_kind}_normalized_gini"]


def _fit_final_models(
    train_fits: list[OriginFit], as_of: dt.date, cfg: Config, now: OriginFit, ev: _Evaluation, chosen: str, s: _Steps
) -> None:
    """The bundle's propensity, CLV and interval models, trained on ``train_fits`` (the test origin and before), scored
    from as_of."""
    test, bundle = ev.test, now.bundle
    s.step(f"propensity and CLV models fitted at {as_of - dt.timedelta(days=cfg.model.horizon_days)} and before")
    if not train_fits:
        train_fits = [test] if test is not None else []
        s.fallbacks.append(
            f"final models: no usable training origin (at least {MIN_BTYD_BUYERS} buyers and both outcomes) at or "
            f"before {as_of - dt.timedelta(days=cfg.model.horizon_days)}; the propensity model trains on "
            + (f"the {len(test.frame):,} customers at {test.origin}" if test is not None else "no labels (a constant rate aligned to BTYD)")
        )
    bundle.propensity = s.timed("propensity_fit", fit_propensity, train_fits, cfg, now)
    s.fallbacks.extend(bundle.propensity.fallbacks_)
    note = guard_propensity(bundle.propensity, ev.metrics, cfg)
    if note:
        s.notes.append(note)
    bundle.clv_kind = chosen
    if chosen != "btyd":
        bundle.clv_model = s.timed("clv_fit", _try_fit_clv, chosen, train_fits, cfg, now, s.fallbacks)
        if bundle.clv_model is None:
            bundle.clv_kind = "btyd"
    try:
        bundle.clv_interval = s.timed("clv_interval_fit", fit_interval, train_fits, cfg)
    except ModelError as exc:
        s.fallbacks.append(f"CLV interval: not fitted ({exc}); clv_p10 and clv_p90 are empty")


def _fit_tiers(
    tables: ValidatedTables, feats_now: pd.DataFrame, now: OriginFit, ev: _Evaluation, cfg: Config, s: _Steps
) -> dict[str, float]:
    """The tier policy (value floors learned on the out-of-time test origin) and the next-tier model."""
    s.step("tier policy and next-tier model")
    bundle = now.bundle
    holdout = scored_inputs(ev.test.bundle, ev.test.frame) if ev.has_models and ev.test is not None else None
    bundle.tier_policy = s.timed("tier_policy_fit", tier_policy(cfg).fit, scored_inputs(bundle, feats_now), holdout=holdout)
    s.notes.append(bundle.tier_policy.koc_ranking_note_)
    defaults = [k for k, v in bundle.tier_policy.threshold_source_.items() if v == "default" and k in FLOORS]
    if defaults:
        test_origin = now.origin - dt.timedelta(days=cfg.model.horizon_days)
        s.fallbacks.append(
            f"tiers: {', '.join(defaults)} not learned ("
            + (
                f"no propensity model evaluated out of time at {test_origin}"
                if holdout is None
                else f"the buyers at {test_origin} do not tell who returns"
            )
            + "); the defaults apply (no p_purchase or P(alive) floor; a buyer lapses when the last order is "
            "over 3x their own gap between orders)"
        )
    metrics = tier_policy_metrics(bundle.tier_policy)
    if ev.has_models and ev.test is not None:
        metrics |= fit_next_tier(bundle, feats_now, ev.test, ev.fitted["propensity"], ev.eval_fits[0], cfg, s.timed, s.fallbacks)
        metrics |= tier_outcome_metrics(tables, ev.test, cfg)
    return metrics


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
    s = _Steps(progress)
    spec = feature_spec(cfg)
    s.step(f"BTYD fit at {as_of}")
    feats_now = s.timed("features_as_of", features_at, tables, as_of, spec)
    # engines return rows in any order: sorted (as fit_origin's frames), the tier policy fitted on it does not depend on it
    feats_now = feats_now.sort_values("customer_id", kind="stable", ignore_index=True)
    now = s.timed("btyd_fit", fit_origin, tables, as_of, cfg, spec, labels=False, features=feats_now)
    s.fallbacks.extend(now.fallbacks)
    cache: dict = {}
    ev = _evaluate(tables, as_of, cfg, spec, cache, s)
    if ev.test is not None:
        cache[ev.test.origin] = ev.test  # the final models' latest training origin is the test origin
    s.step(f"features and BTYD at {as_of - dt.timedelta(days=cfg.model.horizon_days)} and the training origins before it (final models)")
    train_fits = fit_training_origins(tables, as_of, cfg, spec, cache)  # the CLV choice and the final models
    chosen, why = choose_clv(ev.metrics, cfg, s.timed("clv_heldout", heldout_if_thin, ev.eval_fits, train_fits, cfg))
    s.notes.append(why)
    if ev.has_models:
        _ship_test_bundle(ev, chosen, cfg)
    _fit_final_models(train_fits, as_of, cfg, now, ev, chosen, s)
    metrics = ev.metrics | _fit_tiers(tables, feats_now, now, ev, cfg, s)
    metrics["fallback_count"] = float(len(s.fallbacks))
    now.bundle.metrics = metrics
    return TrainResult(
        now.bundle, metrics, s.seconds, data_fingerprint(tables), feats_now.head(5), s.notes + s.fallbacks, fallbacks=s.fallbacks
    )


def train_and_register(cfg: Config, *, as_of: dt.date, progress=None, con=None) -> TrainResult:
    """Validate the sources, fit at ``as_of``, log the run and register a version with alias challenger.

    With ``model.train_sample_customers`` the fit runs on a seeded (``model.seed``), stratified sample drawn after
    validation (tiering.sampling; metrics ``train_sample_*`` and a first note); the bundle scores the whole base.
    On Spark (``features.engine: spark`` or ``con``) validation and the draw run there and only the sample's rows
    come to the driver (:func:`tiering.sampling.on_driver`; metric ``fit_seconds_collect_sample``): the fit DuckDB
    makes of the same rows. Without a sample each origin's feature frame is built on Spark, the frame pulled whole."""
    from tiering.validation import load_tables

    step = progress or (lambda msg: None)
    step("validating sources" + (" on Spark" if cfg.features.engine == "spark" and con is None else ""))
    tables = load_tables(cfg, as_of=as_of, con=con)
    n = cfg.model.train_sample_customers
    if n is None:
        result = fit(tables, as_of=as_of, cfg=cfg, progress=progress)
    else:
        from tiering.sampling import on_driver, sample_customers

        step(f"drawing a stratified sample of {n:,} customers (seed {cfg.model.seed}) if the base has more")
        sample = sample_customers(tables, n, seed=cfg.model.seed, as_of=as_of)
        step(sample.summary())
        fitted, collect_seconds = on_driver(sample, cfg.features.duckdb_memory_limit, step)
        result = fit(fitted, as_of=as_of, cfg=cfg, progress=progress)
        if collect_seconds is not None:
            result.fit_seconds = {"collect_sample": collect_seconds} | result.fit_seconds
        result.metrics |= sample.metrics()
        result.notes.insert(0, sample.describe())
    step("logging to MLflow and registering")
    log_and_register(result, cfg, as_of=as_of, reports=tables.reports)
    return result


def log_and_register(
    result: TrainResult, cfg: Config, *, as_of: dt.date, reports, tracking_cfg=None, run_name: str | None = None, register: bool = True
) -> None:
    """Log a fit as one MLflow run (redacted config, metrics, fit times, tags, validation reports, notes, the
    bundle as a pyfunc model) into ``tracking_cfg`` (default cfg.tracking) and, with ``register``, register
    it with alias challenger; sets result.run_id, model_uri and version. `tiering train` and tg.log_to_mlflow."""
    from tiering import registry, tracking

    tcfg = tracking_cfg or cfg.tracking
    day, config = as_of.isoformat(), cfg.redacted()
    result.run_id, result.model_uri = tracking.log_training_run(
        result.bundle,
        cfg=tcfg,
        run_name=run_name or tracking.run_name("train", cfg, as_of, result.data_fingerprint["hash"], clv_model=result.bundle.clv_kind),
        params={"config": config, "as_of": day, "horizon_days": cfg.model.horizon_days},
        metrics=result.metrics | {f"fit_seconds_{k}": v for k, v in result.fit_seconds.items()},
        tags={
            "as_of": day,
            "horizon_days": str(cfg.model.horizon_days),
            "data_hash": result.data_fingerprint["hash"],
            "tiering_version": result.bundle.version,
            "code_version": tracking.code_version(),
            "kind": "train",
            "clv_model": result.bundle.clv_kind,
            "fallbacks": "; ".join(result.fallbacks)[:5000] or "none",
        },
        input_example=result.input_example,
        artifacts={
            "config.json": config,
            "data_fingerprint.json": result.data_fingerprint,
            "validation.json": [r.to_dict() for r in reports],
            "notes.json": result.notes,
        },
    )
    result.version = registry.register(result.model_uri, tcfg) if register else None
