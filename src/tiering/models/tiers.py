"""The tier ladder as a fitted policy, plus standard RFM segments and operator flags: the public face.

The code lives in one module per job: :mod:`tiering.models.tier_policy` (TierPolicy, hysteresis),
:mod:`tiering.models.tier_thresholds` (thresholds learned out of time), :mod:`tiering.models.koc` (the KOC
score), :mod:`tiering.models.tier_reasons` (reasons in operator words), :mod:`tiering.models.rfm` and
:mod:`tiering.models.next_tier` (the next-period tier classifier); every name is re-exported here.

Rules run from the top, first match wins (DESIGN.md):

    core      an active buyer (below) with p_purchase >= max(core_min_p_purchase, the value floor) and
              CLV at or above the core_clv_quantile of active buyers' CLV (cut learned at fit time)
    value     an active buyer: has purchased and has not lapsed, i.e. the last order is within
              value_grace_gap_ratio (1) times the customer's own mean gap between orders (the base's median
              gap for one-order buyers), or else p_purchase >= the value floor, P(alive) >= its floor and
              the last order no older than value_max_gap_ratio times that gap
    seed      koc_score >= the seed cut: a KOC by share and referral behaviour (below)
    new       tenure below new_max_tenure_days
    ordinary  everyone else

A buyer who fails the value test is a *lapsed buyer*: ``lapsed_buyer`` is true, the tier reason starts
with "lapsed buyer (win-back)" and says which test failed, and the customer falls through to seed, new or
ordinary (the ladder's win-back action, :data:`tiering.ladder.WIN_BACK_ACTION`, applies).

Value floors, learned at fit time from out-of-time outcomes
    ``fit(frame, holdout=...)``: ``holdout`` is the base scored at an earlier origin joined to what its
    buyers did next (``purchased_in_horizon``). The p_purchase floor is the cut with the largest Youden's J
    (true-positive rate minus false-positive rate of "active" as a forecast of a purchase in the horizon)
    over the holdout's buyers; then, greedily, a P(alive) floor and a cap on the gap ratio (days since the
    last order / own mean gap) are added only where each raises J of the combined rule by more than
    ``MIN_J_GAIN``. The floor is stored in calibrated probability: the holdout's observed purchase rate at
    the J-optimal cut (isotonic regression of outcome on p_purchase), so that a propensity model
    miscalibrated at the earlier origin does not move it (on Online Retail II fitted at 2011-06-01 the raw
    cut was 0.74 while the holdout's buyers returned at 0.46). A buyer whose last order is within
    ``value_grace_gap_ratio`` times their own gap is active whatever the floors, and J is that of the whole test.
    Youden's J rather than max F1: F1 depends on the share of buyers who return and, where most return,
    favours calling nearly everyone active; J weighs both errors alike whatever that share.
    A threshold given explicitly (not None) wins over the learned one, and the others are learned given it.
    Without usable outcomes (no holdout, fewer than ``MIN_HOLDOUT_BUYERS`` buyers, or one outcome only) the
    defaults apply: the p_purchase floor at the base's buyers' mean p_purchase (where J peaks if the predictions
    are calibrated: :func:`unlabelled_p_floor`), no P(alive) floor, gap ratio ``DEFAULT_GAP_RATIO``;
    ``threshold_source_`` says which applied.

At risk, placed at fit time between the base's active and lapsed buyers
    ``at_risk`` flags a core or value customer whose churn risk is at or above ``at_risk_min_churn_risk`` (None
    learns it): two thirds of the way from the mean predicted churn of the buyers the fitted value test keeps
    active to that of those it calls lapsed, on the fitted base's own predictions (``AT_RISK_POSITION``,
    ``TierPolicy._fit_at_risk``): a buyer predicted at least twice as near the lapsed as the active. The
    holdout's outcomes set the two groups (the value floors) and check the flag out of time
    (:func:`learn_at_risk_cut`), but do not move it: read on the holdout's predictions, the realised midpoint
    carries the holdout's calibration error, which at 180 days ran opposite to each origin's own. Without both
    groups, ``DEFAULT_AT_RISK`` (0.5).

KOC score
    A two-component mixture over each customer's interactions in the largest feature window, split into
    shares, referrals and all other events, fitted by EM on the base at fit time; the KOC component is the
    one with the larger share + referral rate. The event types are multinomial given the number of events
    and that number is negative binomial per component, so how much a customer interacts counts too
    (:mod:`tiering.models.koc`). ``koc_score`` is a customer's posterior
    probability of that component: many shares and referrals among few other events score high, and views,
    likes or messages lower it; a customer with no share or referral scores 0 (browsing alone never makes
    a seed), and so does one no longer interacting at the origin (:func:`sharing_now`: last interaction more than
    30 days or five of their own mean gaps between interactions ago; a dormant former sharer is no seed to invite).
    The seed cut (``seed_min_koc_score``; None learns it) maximises the expected F1 of the KOC class computed
    from the scores themselves (no labels; for calibrated posteriors the best cut sits near half the best
    attainable F1). Without any share or referral in the base no mixture is fitted and nobody is a seed. A frame
    without the per-type counts (``n_share_{W}d``, ``n_referral_{W}d``, ``events_{W}d``) falls back to the
    rule "shares + referrals in 90 days >= seed_min_social_actions_90d" (koc_score 1 or 0).
    Where customers.referred_by links referrals to the customers they brought in, the mixture's posterior blended with
    a referral propensity fitted out of time ranks the seeds and the mixture sizes them (:mod:`tiering.models.koc_ranking`).

Tier probabilities
    ``p_core`` .. ``p_ordinary`` replace each hard comparison of the ladder by a normal CDF on the
    comparison's natural scale (logit for probabilities, log for CLV and the gap ratio) with standard
    deviation ``proba_sd``, chained in ladder order (first match wins), so they sum to 1 and a customer far
    from every threshold has probability ~1 for its tier. :func:`apply_hysteresis` uses them to keep a
    customer near a threshold in its previous tier.

Cut points (CLV, value floors, at-risk cut, KOC mixture, RFM quintile edges) are learned once in ``fit`` and stored,
so scoring ten customers gives the same tiers as scoring the whole base. Labels, descriptions and actions
come from the ``tiers`` section of the config (:func:`ladder` merges them over the defaults of DESIGN.md).
"""

from __future__ import annotations

from tiering.ladder import TIER_BY_NAME, TIER_LADDER, TIER_NAMES, WIN_BACK_ACTION, Tier, ladder
from tiering.models.koc import expected_f1_cut, fit_koc_mixture, fit_koc_volume_mixture, koc_posterior, sharing_now
from tiering.models.next_tier import NextTierModel  # moved; pickled bundles unpickle it by this path
from tiering.models.rfm import NO_PURCHASE_SEGMENT, SEGMENT_TABLE
from tiering.models.tier_policy import (  # TierPolicy moved too: pickled bundles unpickle it by this path
    DEFAULT_AT_RISK,
    PROBA_COLUMNS,
    REQUIRED_COLUMNS,
    TierPolicy,
    apply_hysteresis,
)
from tiering.models.tier_thresholds import (
    DEFAULT_GAP_RATIO,
    MIN_HOLDOUT_BUYERS,
    MIN_J_GAIN,
    gap_ratio,
    learn_at_risk_cut,
    learn_value_floors,
    population_gap,
    unlabelled_p_floor,
    youden_j,
)

__all__ = [
    "DEFAULT_AT_RISK",
    "DEFAULT_GAP_RATIO",
    "MIN_HOLDOUT_BUYERS",
    "MIN_J_GAIN",
    "NO_PURCHASE_SEGMENT",
    "PROBA_COLUMNS",
    "REQUIRED_COLUMNS",
    "SEGMENT_TABLE",
    "TIER_BY_NAME",
    "TIER_LADDER",
    "TIER_NAMES",
    "WIN_BACK_ACTION",
    "NextTierModel",
    "Tier",
    "TierPolicy",
    "apply_hysteresis",
    "expected_f1_cut",
    "fit_koc_mixture",
    "fit_koc_volume_mixture",
    "gap_ratio",
    "koc_posterior",
    "ladder",
    "learn_at_risk_cut",
    "learn_value_floors",
    "population_gap",
    "sharing_now",
    "unlabelled_p_floor",
    "youden_j",
]
