"""The tier policy and the next-tier model fitted for a bundle, and the ladder a bundle assigns at a past origin.

train fits the bundle's tier policy (its value floors learned on the out-of-time test origin) and the next-tier
model here; the backtest builds, at each origin, the bundle train would have fitted there and judges its ladder
by what the customers did next (:func:`evaluate_ladder`). One definition of each for both.
"""

from __future__ import annotations

import copy
import datetime as dt
import re

import numpy as np
import pandas as pd

from tiering.config import Config
from tiering.exceptions import ModelError
from tiering.fitting import LABELS, OriginFit, fit_clv, fit_propensity
from tiering.models.bundle import ScoringBundle, model_features
from tiering.models.propensity import PropensityModel
from tiering.models.tiers import REQUIRED_COLUMNS, NextTierModel, TierPolicy
from tiering.schemas import REFERRAL_LABEL
from tiering.validation import ValidatedTables

__all__ = [
    "FLOORS",
    "HOLDOUT_COLUMNS",
    "evaluate_ladder",
    "fit_next_tier",
    "holdout_frame",
    "ladder_bundle",
    "ladder_holdout",
    "scored_inputs",
    "seed_referral_metrics",
    "tier_policy",
    "tier_outcome_metrics",
    "tier_policy_metrics",
]


FLOORS = ("value_min_p_purchase", "value_min_p_alive", "value_max_gap_ratio")


def tier_policy(cfg: Config, floors: TierPolicy | None = None) -> TierPolicy:
    """The tier policy of the config; with ``floors`` (a fitted policy), its value floors and at-risk cut fixed (not relearned)."""
    m = cfg.model
    learned = (*FLOORS, "at_risk_min_churn_risk")
    fixed = {k: getattr(floors, k + "_") for k in learned} if floors is not None else {k: getattr(m, k) for k in learned}
    return TierPolicy(
        core_min_p_purchase=m.core_min_p_purchase,
        core_clv_quantile=m.core_clv_quantile,
        seed_engagement_quantile=m.seed_engagement_quantile,
        seed_min_social_actions_90d=m.seed_min_social_actions_90d,
        new_max_tenure_days=m.new_max_tenure_days,
        value_grace_gap_ratio=m.value_grace_gap_ratio,
        seed_min_koc_score=m.seed_min_koc_score,
        koc_ranking=m.koc_ranking,
        proba_sd=m.tier_proba_sd,
        **fixed,
    )


def tier_policy_metrics(policy: TierPolicy) -> dict[str, float]:
    """The policy's value floors (NaN: that test is off) and where each came from (1: learned out of time), its seed,
    core and at-risk cuts, and the at-risk rule tried on the holdout (share of active buyers flagged there and the
    realised churn of the flagged, the other active and the lapsed buyers; NaN without one)."""
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
    # which ranked the seeds (1: the referral propensity, 0: the KOC mixture; policy.koc_ranking_note_ says why) and the
    # customers who brought someone in over the holdout's horizon (NaN: no referral outcomes in the data)
    out["tier_koc_ranking_referral"] = float(policy.koc_ranking_ == "referral_propensity")
    out["tier_referral_positives"] = float("nan") if policy.referral_positives_ is None else float(policy.referral_positives_)
    out["tier_at_risk_min_churn_risk"] = policy.at_risk_min_churn_risk_
    out["tier_at_risk_min_churn_risk_learned"] = float(policy.threshold_source_["at_risk_min_churn_risk"] == "learned")
    check = policy.at_risk_holdout_ or {}
    for k in ("at_risk_share", "at_risk_churn", "active_churn", "lapsed_churn"):
        out[f"tier_at_risk_holdout_{k}"] = check.get(k, float("nan"))
    return out


def scored_inputs(bundle: ScoringBundle, features: pd.DataFrame) -> pd.DataFrame:
    """Features joined to the bundle's predictions: what the tier policy is fitted on."""
    return pd.concat([features, bundle.predictions(features[bundle.feature_columns])], axis=1)


def fit_next_tier(
    bundle: ScoringBundle,
    feats_now: pd.DataFrame,
    test: OriginFit,
    eval_propensity: PropensityModel,
    eval_fit: OriginFit,
    cfg: Config,
    timed,
    fallbacks: list[str],
) -> dict[str, float]:
    """The next-tier model (tiers at the test origin -> tiers at as_of, set on ``bundle``) and its out-of-time check
    (``eval_propensity``: the propensity model fitted at the eval origin ``eval_fit``)."""
    from tiering.tier_eval import next_tier_backtest  # out of time: fit eval->test origin, score test origin->as_of

    test_bundle, feats_test = test.bundle, test.frame
    test_bundle.tier_policy = tier_policy(cfg, floors=bundle.tier_policy).fit(scored_inputs(test_bundle, feats_test))
    tier_then = test_bundle.predict(feats_test[test_bundle.feature_columns])["tier"]
    tier_now = bundle.predict(feats_now[bundle.feature_columns])[["customer_id", "tier"]]
    pair = feats_test[bundle.feature_columns].assign(tier_then=tier_then.to_numpy()).merge(tier_now, on="customer_id")
    model = timed(
        "next_tier_fit",
        NextTierModel(random_state=cfg.model.seed, threads=cfg.model.threads).fit,
        model_features(pair[bundle.feature_columns]),
        pair["tier_then"],
        pair["tier"],
    )
    fallbacks += model.fallbacks_
    bundle.next_tier_model = model
    metrics = {"next_tier_train_stay_share": float((pair["tier_then"] == pair["tier"]).mean()) if len(pair) else float("nan")}
    return metrics | timed(
        "next_tier_eval",
        next_tier_backtest,
        eval_fit.bundle,
        eval_propensity,
        eval_fit.frame,
        pair,
        test_bundle.tier_policy,
        random_state=cfg.model.seed,
        fallbacks=fallbacks,
    )


def tier_outcome_metrics(tables: ValidatedTables, test: OriginFit, cfg: Config) -> dict[str, float]:
    """The ladder at the test origin judged by what its customers did in the horizon after it (tier_eval).

    The value floors are learned on these same outcomes (three numbers), the rest of the models out of time."""
    from tiering.tier_eval import social_actions_between, tier_outcomes

    tiers = test.bundle.predict(test.frame[test.bundle.feature_columns])
    outcomes = test.frame[["customer_id", "holdout_spend", "purchased_in_horizon"]]
    if tables.interactions is not None:
        social = social_actions_between(tables.interactions, test.origin, cfg.model.horizon_days)
        outcomes = outcomes.merge(social, on="customer_id", how="left").fillna({"social_actions_next": 0})
    return tier_outcomes(tiers, outcomes)[1]


# what a later origin's tier policy learns its value floors and referral propensity from (TierPolicy's inputs and the
# outcomes), with the KOC counts of the frame (_KOC_COLUMN)
HOLDOUT_COLUMNS = (*REQUIRED_COLUMNS, "p_alive", "ipi_mean_days", "purchased_in_horizon", REFERRAL_LABEL, "days_since_last_interaction")
_KOC_COLUMN = re.compile(r"^(n_share|n_referral|events)_\d+d$")  # the KOC counts per window


def holdout_frame(scored: pd.DataFrame) -> pd.DataFrame:
    """The columns of a scored base a later origin's tier policy learns from (HOLDOUT_COLUMNS and the KOC counts)."""
    koc = [c for c in scored.columns if _KOC_COLUMN.match(c)]
    return scored[[c for c in HOLDOUT_COLUMNS if c in scored.columns] + koc]


def ladder_bundle(
    test: OriginFit, train_fits: list[OriginFit], cfg: Config, clv_kind: str, fitted: dict | None = None, notes: list[str] | None = None
):
    """A copy of ``test``'s bundle (BTYD at the origin) with the propensity and the ``clv_kind`` CLV model the
    origin fitted (``fitted``, from evaluate_origin) or, where it did not, fitted here on ``train_fits``, as
    train.fit fits the bundle's. A CLV model that cannot be fitted leaves BTYD's CLV (noted)."""
    notes = notes if notes is not None else []
    fitted = fitted or {}
    o = test.origin
    prop = fitted.get("propensity")
    if prop is None:
        prop = fit_propensity(train_fits, cfg, test)
        notes += [f"{o}: ladder: {s}" for s in prop.fallbacks_]
    model = None
    if clv_kind != "btyd":
        model = fitted.get("clv", {}).get(clv_kind)
        if model is None and train_fits:
            try:
                model = fit_clv(clv_kind, train_fits, cfg, test)
            except ModelError as exc:
                notes.append(f"{o}: ladder: the {clv_kind} CLV model is not fitted ({exc}); BTYD's CLV stands in")
        elif model is None:
            notes.append(f"{o}: ladder: no labelled training origin for the {clv_kind} CLV model; BTYD's CLV stands in")
    bundle = copy.copy(test.bundle)
    bundle.propensity, bundle.clv_model = prop, model
    bundle.clv_kind = clv_kind if model is not None else "btyd"
    # no policy yet (fitted on the ladder later); ScoringBundle (models/bundle.py) types tier_policy for a finished bundle
    bundle.tier_policy, bundle.next_tier_model, bundle.clv_interval = None, None, None
    return bundle


def ladder_holdout(
    test: OriginFit, train_fits: list[OriginFit], cfg: Config, earlier: dict[dt.date, pd.DataFrame], refit=None
) -> tuple[pd.DataFrame | None, str]:
    """Where the tier policy at ``test.origin`` learns its value floors: a base scored out of time whose outcomes
    are known by the origin, and a sentence saying which.

    ``earlier``: the scored frames (HOLDOUT_COLUMNS) of the ladders at earlier backtest origins; the latest one
    whose horizon had ended by the origin is used (as auto picks its CLV model; no refit). Without one, the
    latest training origin ``train_fits[0]`` (labels end by the origin), scored with a propensity model trained
    on its own training origins (``refit(origin)`` returns them), or where none is usable with BTYD alone (fitted
    on the history up to that origin, so still out of time): at the first 180-day origins of Online Retail II no
    origin before the training one has labels, and the default floors (no probability floor) left 54-60% of the
    base in value, a quarter of it predicted to churn more surely than the lapsed buyers."""
    H = dt.timedelta(days=cfg.model.horizon_days)
    done = [d for d in earlier if d + H <= test.origin]
    if done:
        d = max(done)
        return earlier[d], f"the ladder at {d} and what its customers did by {d + H}"
    if not train_fits or refit is None:
        return None, "none (no labelled origin before it): the default floors"
    h = train_fits[0]
    fits = refit(h.origin)
    b = copy.copy(h.bundle)
    b.propensity, b.clv_kind, b.clv_model = fit_propensity(fits, cfg, h), "btyd", None
    scored = scored_inputs(b, h.frame)
    by = f"a propensity model trained by {fits[0].origin}" if fits else f"BTYD alone (no usable training origin before {h.origin})"
    where = f"the base at {h.origin} scored by {by}, its outcomes by {h.origin + H}"
    return holdout_frame(scored), where


def evaluate_ladder(
    test: OriginFit, bundle, cfg: Config, holdout: pd.DataFrame | None, interactions=None
) -> tuple[dict[str, float], pd.DataFrame, pd.DataFrame]:
    """Tier ``test``'s base with ``bundle`` and a tier policy fitted as train fits it (value floors from ``holdout``)
    and judge the ladder by what its customers did in the horizon after the origin (tiering.tier_eval).

    Returns the metrics (tier_eval.ladder_metrics, plus ``value_min_p_purchase``, ``value_floors_learned``,
    ``core_clv_cut`` and ``at_risk_cut`` of the policy; where the frames carry referral outcomes, ``koc_ranking_referral``
    and :func:`seed_referral_metrics`), the tiers (customer_id, tier, lapsed_buyer, at_risk, aligned to ``test.frame``)
    and the scored frame (:func:`holdout_frame`: a later origin's holdout)."""
    from tiering.tier_eval import horizon_outcomes, ladder_metrics

    f = test.frame
    scored = scored_inputs(bundle, f)
    policy = tier_policy(cfg).fit(scored.drop(columns=[c for c in LABELS if c in scored.columns]), holdout=holdout)
    assigned = policy.assign(scored)
    tiers = pd.concat([f[["customer_id"]].astype(str), assigned[["tier", "lapsed_buyer", "at_risk"]]], axis=1)
    outcomes = horizon_outcomes(f, interactions, test.origin, cfg.model.horizon_days)
    metrics = ladder_metrics(tiers, outcomes, f[["customer_id", "has_purchased"]])
    pm = tier_policy_metrics(policy)
    metrics["value_min_p_purchase"] = pm["tier_value_min_p_purchase"]
    metrics["value_floors_learned"] = pm["tier_value_min_p_purchase_learned"]
    metrics["core_clv_cut"] = pm["tier_core_clv_cut"]
    metrics["at_risk_cut"] = pm["tier_at_risk_min_churn_risk"]
    if policy.referral_positives_ is not None:  # the data link referrals to customers: which ranked the seeds, and how they did
        metrics["koc_ranking_referral"] = pm["tier_koc_ranking_referral"]
        metrics |= seed_referral_metrics(tiers["tier"].to_numpy(), f)
    return ({k: v for k, v in metrics.items() if np.isfinite(v)}, tiers, holdout_frame(scored))


def seed_referral_metrics(tier: np.ndarray, frame: pd.DataFrame) -> dict[str, float]:
    """What the seeds did for the referral programme over the horizon, where the data link referrals to customers:
    the share of seeds and of the other customers who had not bought (new and ordinary) who brought in at least one
    new customer (seed_referral_rate, rest_referral_rate); empty without referral outcomes."""
    if REFERRAL_LABEL not in frame.columns:
        return {}
    referred = frame[REFERRAL_LABEL].fillna(0).to_numpy(float) > 0
    seed, rest = tier == "seed", np.isin(tier, ("new", "ordinary"))
    return {
        "seed_referral_rate": float(referred[seed].mean()) if seed.any() else float("nan"),
        "rest_referral_rate": float(referred[rest].mean()) if rest.any() else float("nan"),
    }
