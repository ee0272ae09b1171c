"""Fitting at an origin: what train and backtest both do at a date, written once.

At an origin t: the feature frame at t (``features_at``), the labels of the horizon after it where the
data reach (``with_labels``: spend, orders and whether the customer bought in (t, t + H]), BTYD fitted
on the buyers at t with its fallbacks for thin data (``fit_origin`` -> ``OriginFit``). A model that
scores at an origin o is trained on earlier origins whose labels end by o (``training_origins``:
o - H - k * step; ``fit_training_origins`` keeps those with enough buyers and both outcomes), stacked:
the propensity model (``fit_propensity``), the CLV models (``fit_clv``: naive, supervised, hybrid,
hurdle; their level aligned without labels to BTYD at the scoring origin) and the CLV interval
(``fit_interval``: fitted on all but the latest training origin, conformalized on the latest).

tiering.train fits a bundle from these (an out-of-time test origin, then the final models);
tiering.backtest judges them at many origins. Neither re-implements any of it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tiering import __version__
from tiering.config import Config
from tiering.exceptions import DataQualityError, ModelError
from tiering.features import REFERRER_COLUMN, FeatureSpec, build_features, build_labels, referral_labels
from tiering.models import BetaGeoModel, GammaGammaModel, MeanSpendModel, ParetoNBDModel, PooledNBDModel
from tiering.models.bundle import ScoringBundle
from tiering.models.clv import BTYD_FEATURES, LevelAligned, PastSpend, SpendRegressor
from tiering.models.hurdle import HurdleSpend
from tiering.models.intervals import SpendInterval
from tiering.models.propensity import PropensityModel
from tiering.schemas import LABEL_COLUMNS, REFERRAL_LABEL
from tiering.validation import ValidatedTables

LABELS = LABEL_COLUMNS  # the labels of a horizon, named in tiering.schemas


def feature_spec(cfg: Config) -> FeatureSpec:
    return FeatureSpec(time_unit=cfg.features.time_unit, windows_days=tuple(cfg.features.windows_days))


def features_at(tables: ValidatedTables, as_of: dt.date, spec: FeatureSpec) -> pd.DataFrame:
    return build_features(tables.transactions, tables.interactions, tables.customers, as_of=as_of, spec=spec).to_pandas()


def with_labels(tables: ValidatedTables, features: pd.DataFrame, origin: dt.date, horizon_days: int) -> pd.DataFrame:
    labels = build_labels(tables.transactions, as_of=origin, horizon_days=horizon_days).to_pandas()
    out = features.merge(labels[["customer_id", *LABELS]], on="customer_id", how="left")
    out[list(LABELS)] = out[list(LABELS)].fillna(0)
    cu = tables.customers
    if cu is not None and REFERRER_COLUMN in cu.columns:  # referral outcomes: the customers each brought in over the horizon
        ref = referral_labels(cu, as_of=origin, horizon_days=horizon_days).to_pandas()
        out = out.merge(ref, on="customer_id", how="left")
        out[REFERRAL_LABEL] = out[REFERRAL_LABEL].fillna(0).astype("int64")
    return out


MIN_BTYD_BUYERS = 20  # fewer buyers: the pooled NBD stands in for BG/NBD or Pareto/NBD


def _fit_btyd(features: pd.DataFrame, cfg: Config, origin: dt.date) -> tuple[object, object, list[str]]:
    """Transaction and spend models on the buyers of ``features``, and the fallbacks taken.

    No buyer at all: DataQualityError (nothing to learn from). Fewer than MIN_BTYD_BUYERS buyers, no
    repeat buyer, every T 0 or a fit that does not converge: PooledNBDModel instead of BG/NBD or
    Pareto/NBD. A fit on the boundary of the parameter space whose predictions over the horizon are
    not finite for every buyer is refitted with penalizer 0.01 (noted), and replaced by the pooled NBD
    if that does not help either. Fewer than 2 repeat buyers with positive spend or a Gamma-Gamma fit
    that fails (q <= 1): MeanSpendModel. Each fallback is one sentence in the list returned."""
    buyers = features[features["has_purchased"] > 0]
    if buyers.empty:
        raise DataQualityError(
            f"No customer has purchased by {origin}, so there is nothing to learn purchase or spend rates from. "
            "Use a later --as-of (on or after the first order date) or check the transactions source."
        )
    fallbacks: list[str] = []
    cls = ParetoNBDModel if cfg.model.btyd_model == "paretonbd" else BetaGeoModel
    x, rec, T = buyers["frequency"], buyers["recency"], buyers["T"]
    why = f"only {len(buyers)} buyers (the 4-parameter model needs {MIN_BTYD_BUYERS})" if len(buyers) < MIN_BTYD_BUYERS else None
    tm = None
    t = cfg.model.horizon_days / (7.0 if cfg.features.time_unit == "W" else 1.0)
    for penalizer in dict.fromkeys((cfg.model.penalizer, max(cfg.model.penalizer, 1e-2))) if why is None else ():
        try:
            tm = cls(penalizer=penalizer).fit(x, rec, T)
        except ModelError as exc:
            why = str(exc).split(". ")[0]
            break
        with np.errstate(all="ignore"):
            finite = np.isfinite(tm.expected_purchases(t, x, rec, T)).all() and np.isfinite(tm.p_no_purchase(t, x, rec, T)).all()
        if finite:
            if penalizer != cfg.model.penalizer:
                fallbacks.append(
                    f"BTYD at {origin}: {cls.__name__} refitted with penalizer {penalizer} (the unpenalised "
                    f"fit, {why}, predicts non-finite purchases)"
                )
            break
        why = "parameters " + ", ".join(f"{k}={v:.3g}" for k, v in tm.params_.items()) + " on the boundary"
        tm = None
    if tm is None:
        tm = PooledNBDModel().fit(x, rec, T)
        fallbacks.append(
            f"BTYD at {origin}: {cls.__name__} not fitted ({why}); the pooled NBD model (no dropout, "
            f"one smoothed purchase rate) predicts purchases"
        )
    try:
        sm = GammaGammaModel(penalizer=cfg.model.penalizer).fit(x, buyers["monetary_value"])
    except ModelError as exc:
        orders = buyers["n_orders"].to_numpy(float)
        sm = MeanSpendModel().fit(buyers["net_spend"].to_numpy(float) / np.maximum(orders, 1), np.maximum(orders, 1))
        fallbacks.append(
            f"BTYD at {origin}: Gamma-Gamma not fitted ({str(exc).split('. ')[0]}); one mean order value "
            f"({sm.params_['mean']:.4g}) predicts spend"
        )
    return tm, sm, fallbacks


def _bundle(
    cfg: Config, spec: FeatureSpec, features: pd.DataFrame, as_of: dt.date, tm, sm, propensity=None, policy=None, next_tier=None
) -> ScoringBundle:
    return ScoringBundle(
        feature_spec=spec.to_dict(),
        feature_columns=list(features.columns),
        horizon_days=cfg.model.horizon_days,
        discount_rate_annual=cfg.model.discount_rate_annual,
        trained_as_of=as_of,
        transaction_model=tm,
        spend_model=sm,
        propensity=propensity,
        tier_policy=policy,
        next_tier_model=next_tier,
        version=f"{__version__}+{as_of.isoformat()}",
    )


@dataclass
class OriginFit:
    """Features at an origin (with labels from its horizon where the data reach), BTYD fitted there, its outputs."""

    origin: dt.date
    frame: pd.DataFrame
    bundle: ScoringBundle
    btyd: pd.DataFrame
    fallbacks: list[str] = field(default_factory=list)


def fit_origin(
    tables: ValidatedTables, origin: dt.date, cfg: Config, spec: FeatureSpec, *, labels: bool = True, features: pd.DataFrame | None = None
) -> OriginFit:
    """Features at ``origin`` (labels from (origin, origin + H] when ``labels``) and BTYD fitted on them."""
    H = cfg.model.horizon_days
    frame = features if features is not None else features_at(tables, origin, spec)
    if labels:
        frame = with_labels(tables, frame, origin, H)
    # the engine returns rows in any order: sorted, the models trained on them do not depend on it
    frame = frame.sort_values("customer_id", kind="stable", ignore_index=True)
    tm, sm, fallbacks = _fit_btyd(frame, cfg, origin)
    bundle = _bundle(cfg, spec, frame[list(spec.feature_columns)], origin, tm, sm)
    return OriginFit(origin, frame, bundle, bundle.btyd(frame), fallbacks)


def training_origins(origin: dt.date, cfg: Config) -> list[dt.date]:
    """Origins a supervised model scoring at ``origin`` trains on: origin - H - k * step, k < training_origins."""
    H, step = cfg.model.horizon_days, cfg.model.training_origin_step_days
    return [origin - dt.timedelta(days=H + k * step) for k in range(cfg.model.training_origins)]


def usable(fit: OriginFit) -> bool:
    """Enough buyers for BTYD and both outcomes present: a frame a supervised model can learn from."""
    f = fit.frame
    return (f["has_purchased"] > 0).sum() >= MIN_BTYD_BUYERS and f["purchased_in_horizon"].nunique() == 2


def try_fit_origin(tables: ValidatedTables, origin: dt.date, cfg: Config, spec: FeatureSpec) -> OriginFit | None:
    """``fit_origin``, or None when nobody had purchased by ``origin`` (that origin cannot be fitted or judged)."""
    try:
        return fit_origin(tables, origin, cfg, spec)
    except DataQualityError:
        return None


def fit_training_origins(
    tables: ValidatedTables, origin: dt.date, cfg: Config, spec: FeatureSpec, cache: dict | None = None
) -> list[OriginFit]:
    """The usable training frames for a supervised model scoring at ``origin`` (labels end by ``origin``)."""
    fits = []
    for t in training_origins(origin, cfg):
        if cache is not None and t in cache:
            fits.append(cache[t])
            continue
        f = try_fit_origin(tables, t, cfg, spec)
        if f is None:  # nobody had bought that early: that origin adds nothing
            continue
        if cache is not None:
            cache[t] = f
        fits.append(f)
    return [f for f in fits if usable(f)]


def stacked(fits: list[OriginFit], columns) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every fit's rows stacked: the inputs ``columns(fit)`` and the labels (LABELS)."""
    X = pd.concat([columns(f) for f in fits], ignore_index=True)
    y = pd.concat([f.frame[list(LABELS)] for f in fits], ignore_index=True)
    return X, y


def _propensity_inputs(f: OriginFit) -> pd.DataFrame:
    return f.bundle.propensity_input(f.frame[f.bundle.feature_columns], f.btyd)


def _fit_aligned_propensity(fits: list[OriginFit], cfg: Config, score_at: OriginFit | None) -> PropensityModel:
    if fits:
        X, y = stacked(fits, _propensity_inputs)
    else:
        assert score_at is not None, "without training frames the columns come from score_at"
        X, y = _propensity_inputs(score_at).iloc[:0], pd.DataFrame({"purchased_in_horizon": np.zeros(0, dtype=int)})
    model = PropensityModel(
        learner=cfg.model.propensity_learner,
        btyd_weight=cfg.model.propensity_btyd_weight,
        random_state=cfg.model.seed,
        threads=cfg.model.threads,
    ).fit(X, y["purchased_in_horizon"])
    if score_at is not None:
        model.align_level(_propensity_inputs(score_at))
    return model


def fit_propensity(fits: list[OriginFit], cfg: Config, score_at: OriginFit | None = None) -> PropensityModel:
    """Propensity model trained on ``fits``, its level aligned (no labels) to BTYD on ``score_at``'s base.

    Without any training frame (``fits`` empty) it is PropensityModel's constant fallback (no labels:
    rate 0.5), aligned to BTYD's mean over ``score_at``'s buyers: buyers are ranked by BTYD alone.
    With ``model.propensity_calibration: platt`` and two or more frames, it is also recalibrated out of time: the
    same pipeline trained on every frame but the latest, aligned and scored on the latest, whose outcomes give the
    Platt maps (as ``fit_interval`` conformalizes on the latest origin)."""
    model = _fit_aligned_propensity(fits, cfg, score_at)
    if cfg.model.propensity_calibration == "platt" and len(fits) >= 2:
        earlier = _fit_aligned_propensity(fits[1:], cfg, fits[0])
        earlier.recalibrate(_propensity_inputs(fits[0]), fits[0].frame["purchased_in_horizon"])
        model.platt_ = earlier.platt_
    return model


LEARNED_CLV = ("supervised", "hybrid", "hurdle")  # CLV models trained on labelled origins (naive and btyd are not)
CLV_CANDIDATES = ("naive", "btyd", *LEARNED_CLV)  # simplest first: a tie keeps the simpler model


def clv_columns(fit: OriginFit, kind: str) -> pd.DataFrame:
    """Inputs of a CLV model of ``kind``: the features, and the BTYD outputs for "hybrid", "hurdle" (and intervals)."""
    X = fit.bundle.clv_input(fit.frame[fit.bundle.feature_columns], fit.btyd)
    return X if kind in ("hybrid", "hurdle", "interval") else X.drop(columns=list(BTYD_FEATURES))


def clv_estimator(kind: str, cfg: Config) -> LevelAligned:
    """The unfitted CLV model ``kind`` (naive, supervised, hybrid or hurdle) as the config sets it."""
    if kind == "naive":
        return PastSpend(f"spend_{max(cfg.features.windows_days)}d")
    if kind == "hurdle":
        return HurdleSpend(random_state=cfg.model.seed, threads=cfg.model.threads)
    if kind in ("supervised", "hybrid"):
        return SpendRegressor(random_state=cfg.model.seed, threads=cfg.model.threads)
    raise ModelError(f"Unknown CLV model {kind!r}: use naive, supervised, hybrid or hurdle (btyd needs no training).")


def fit_clv(kind: str, fits: list[OriginFit], cfg: Config, score_at: OriginFit | None = None) -> LevelAligned:
    """The CLV model of ``kind`` (naive past spend; supervised on the features; hybrid and hurdle on the features and
    BTYD outputs) trained on ``fits``; its level aligned (no labels) to BTYD's total CLV over ``score_at``'s buyers."""
    X, y = stacked(fits, lambda f: clv_columns(f, kind))
    model = clv_estimator(kind, cfg).fit(X, y["holdout_spend"])
    if score_at is not None:
        buyer = score_at.frame["has_purchased"].to_numpy() > 0
        model.align_level(clv_columns(score_at, kind)[buyer], float(np.nansum(score_at.btyd["btyd_clv"].to_numpy()[buyer])))
    return model


def fit_interval(fits: list[OriginFit], cfg: Config) -> SpendInterval:
    """clv_p10 .. clv_p90: quantile models trained on every frame of ``fits`` but the latest, conformalized on the
    latest (its labels are later than any the quantile models saw: an out-of-time calibration split)."""
    if len(fits) < 2:
        raise ModelError(f"the interval needs two labelled training origins (one to fit, a later one to calibrate); got {len(fits)}")
    X, y = stacked(fits[1:], lambda f: clv_columns(f, "interval"))
    model = SpendInterval(coverage=cfg.model.clv_interval_coverage, random_state=cfg.model.seed, threads=cfg.model.threads).fit(
        X, y["holdout_spend"]
    )
    return model.conformalize(clv_columns(fits[0], "interval"), fits[0].frame["holdout_spend"])
