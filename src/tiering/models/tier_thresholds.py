"""The tier ladder's thresholds learned out of time: the value floors (who is paying now).

``holdout`` below is the base scored at an earlier origin joined to what its buyers did next
(``purchased_in_horizon``). The p_purchase floor is the cut with the largest Youden's J (true-positive
rate minus false-positive rate of "active" as a forecast of a purchase in the horizon) over the holdout's
buyers; then, greedily, a P(alive) floor and a cap on the gap ratio (days since the last order / own mean
gap) are added only where each raises J of the combined rule by more than ``MIN_J_GAIN``. The floor is
stored in calibrated probability: the holdout's observed purchase rate at the J-optimal cut (isotonic
regression of outcome on p_purchase), so that a propensity model miscalibrated at the earlier origin does
not move it (on Online Retail II fitted at 2011-06-01 the raw cut was 0.74 while the holdout's buyers
returned at 0.46). A buyer whose last order is within ``grace_gap_ratio`` times their own gap is active
whatever the floors, and J is that of the whole test. Youden's J rather than max F1: F1 depends on the
share of buyers who return and, where most return, favours calling nearly everyone active; J weighs both
errors alike whatever that share.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MIN_HOLDOUT_BUYERS = 20
AT_RISK_POSITION = 2 / 3  # the at-risk cut: two thirds of the way from the active buyers' mean predicted churn (0) to the lapsed ones' (1)
MIN_J_GAIN = 0.005
DEFAULT_GAP_RATIO = 3.0


def column(f: pd.DataFrame, name: str, default: float = np.nan) -> np.ndarray:
    """``f[name]`` as floats, or ``default`` in every row where the column is absent."""
    return f[name].to_numpy(float) if name in f.columns else np.full(len(f), default)


def gap_ratio(days_since_last_purchase, ipi_mean_days, population_gap_days: float) -> np.ndarray:
    """Days since the last order over the customer's own mean gap between orders (the base's median gap
    ``population_gap_days`` for one-order buyers); NaN where no gap is known."""
    dsl = np.asarray(days_since_last_purchase, dtype=float)
    own = np.asarray(ipi_mean_days, dtype=float)
    gap = np.where(own > 0, own, population_gap_days)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(gap > 0, dsl / gap, np.nan)


def population_gap(frame: pd.DataFrame) -> float:
    """The median of repeat buyers' mean gap between orders (days); NaN without repeat buyers."""
    ipi = column(frame, "ipi_mean_days")
    ipi = ipi[(frame["has_purchased"].to_numpy() > 0) & (ipi > 0)]
    return float(np.median(ipi)) if len(ipi) else float("nan")


def youden_j(active: np.ndarray, purchased: np.ndarray) -> float:
    """True-positive rate minus false-positive rate of ``active`` as a forecast of ``purchased``."""
    a, y = np.asarray(active, dtype=bool), np.asarray(purchased, dtype=bool)
    return float((a & y).sum() / max(y.sum(), 1) - (a & ~y).sum() / max((~y).sum(), 1))


def _p_purchase_floor(p: np.ndarray, y: np.ndarray, grace: np.ndarray) -> tuple[float, float]:
    """(floor, cut): the J-optimal p_purchase ``cut`` of the whole value test (grace rows active whatever the cut)
    and the ``floor`` stored for it, the holdout's calibrated purchase rate there (J is rank-based, the stored
    floor is not: a model miscalibrated at the earlier origin must not move it); (0, 0) where no cut helps."""
    from sklearn.isotonic import IsotonicRegression
    from sklearn.metrics import roc_curve

    rest = ~grace
    cut = 0.0
    if (rest & y).any() and (rest & ~y).any():
        fpr, tpr, thr = roc_curve(y[rest], p[rest])
        P, N = y.sum(), (~y).sum()
        j = ((grace & y).sum() + tpr * (rest & y).sum()) / P - ((grace & ~y).sum() + fpr * (rest & ~y).sum()) / N
        i = int(np.argmax(j))
        cut = float(min(thr[i], 1.0)) if np.isfinite(thr[i]) else 1.0
    if cut <= 0:
        return 0.0, 0.0
    iso = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(p, y.astype(float))
    return float(iso.predict([cut])[0]), cut


def _greedy_cut(J, rule: np.ndarray, values: np.ndarray, grid: np.ndarray, keep_above: bool, off: float) -> float:
    """The cut on ``values`` (a floor when ``keep_above``, else a cap) that most raises J of ``rule`` and the cut,
    if by more than MIN_J_GAIN; ``off`` otherwise."""
    best, chosen = J(rule), off
    for c in np.unique(grid):
        j = J(rule & ((values >= c) if keep_above else (values <= c)))
        if j > best + MIN_J_GAIN:
            best, chosen = j, float(c)
    return chosen


def learn_value_floors(
    holdout: pd.DataFrame,
    *,
    p_purchase: float | None = None,
    p_alive: float | None = None,
    gap_ratio_cap: float | None = None,
    grace_gap_ratio: float = 1.0,
) -> dict[str, float] | None:
    """The value floors that best separate the buyers of ``holdout`` who purchased in the horizon from the rest.

    Greedy on Youden's J of the whole value test (a buyer within ``grace_gap_ratio`` of their own gap is active
    whatever the floors): the p_purchase floor (``p_purchase`` if given) at the J-optimal cut, stored as the
    holdout's calibrated purchase rate there; then a P(alive) floor and a gap-ratio cap, each kept only where
    it raises J by more than MIN_J_GAIN (0 and inf: off). None when the holdout cannot tell (fewer than
    MIN_HOLDOUT_BUYERS buyers, one outcome only, or no test with J above MIN_J_GAIN: CDNOW scored one day into
    its data, where every buyer looks alike, learned no floor at all and called 93% of the base value six months on).
    Keys: value_min_p_purchase, value_min_p_alive, value_max_gap_ratio, j, buyers, purchase_rate.
    """
    b = holdout[holdout["has_purchased"].to_numpy() > 0]
    if "purchased_in_horizon" not in b.columns or len(b) < MIN_HOLDOUT_BUYERS:
        return None
    y = b["purchased_in_horizon"].to_numpy(float) > 0
    if y.all() or not y.any():
        return None
    p = np.nan_to_num(b["p_purchase"].to_numpy(float), nan=0.0)
    ratio = gap_ratio(column(b, "days_since_last_purchase"), column(b, "ipi_mean_days"), population_gap(b))
    grace = (np.nan_to_num(ratio, nan=np.inf) <= grace_gap_ratio) & (grace_gap_ratio > 0)

    def J(rule: np.ndarray) -> float:
        return youden_j(grace | rule, y)

    if p_purchase is None:
        p_purchase, cut = _p_purchase_floor(p, y, grace)
        rule = p >= cut
    else:
        rule = p >= p_purchase
    pa = np.nan_to_num(column(b, "p_alive"), nan=1.0)
    if p_alive is None:
        p_alive = 0.0
        if np.isfinite(column(b, "p_alive")).any():
            p_alive = _greedy_cut(J, rule, pa, np.quantile(pa, np.linspace(0.01, 0.6, 60)), True, 0.0)
    rule &= ~(pa < p_alive)
    r0 = np.nan_to_num(ratio, nan=0.0)
    if gap_ratio_cap is None:
        gap_ratio_cap = float("inf")
        if np.isfinite(ratio).any():
            grid = np.quantile(r0[np.isfinite(ratio)], np.linspace(0.4, 0.995, 60))
            gap_ratio_cap = _greedy_cut(J, rule, r0, grid, False, float("inf"))
    rule &= ~(r0 > gap_ratio_cap)
    if J(rule) <= MIN_J_GAIN:  # no better than calling every buyer active (CDNOW one day in: BTYD ranks no one)
        return None
    return {
        "value_min_p_purchase": float(p_purchase),
        "value_min_p_alive": float(p_alive),
        "value_max_gap_ratio": float(gap_ratio_cap),
        "j": J(rule),
        "buyers": float(len(b)),
        "purchase_rate": float(y.mean()),
    }


def unlabelled_p_floor(frame: pd.DataFrame) -> float:
    """The p_purchase floor where no outcome is known yet: the buyers' mean p_purchase (0 without buyers).

    Youden's J of a calibrated score peaks at the cut where P(buy | p) equals the share who buy (there the
    outcome's likelihood ratio crosses 1), and the buyers' mean p_purchase estimates that share; so this is the
    floor the holdout would teach if the predictions are calibrated. Without any floor CDNOW's first origin
    (1997-04-01, its whole cohort joined in the first quarter) kept 59% of the base in value on the gap test alone,
    buyers who came back within 90 days at 28%, hardly above all buyers' 23%; at this floor (0.24) value holds 32%
    and they came back at 36%."""
    p = frame.loc[frame["has_purchased"].to_numpy() > 0, "p_purchase"].to_numpy(float)
    p = p[np.isfinite(p)]
    return float(p.mean()) if len(p) else 0.0


def learn_at_risk_cut(purchased: np.ndarray, active: np.ndarray, churn_risk: np.ndarray) -> dict[str, float] | None:
    """The at-risk rule tried on a holdout's buyers: ``purchased`` (bought in the horizon), ``active`` (kept by the
    value test, the rest lapsed) and their predicted ``churn_risk``; what the policy logs to show the flag out of time.

    The rule (:func:`at_risk_cut` at ``AT_RISK_POSITION``): an active buyer whose predicted churn is at least twice as
    near the lapsed buyers' mean as the active buyers' is expected to behave clearly more like a lapsed buyer than like
    an active one: worth a retention action before they lapse. Halfway (merely nearer the lapsed) flagged over a third
    of value at the first origins of CDNOW, whose predicted churn sits in a narrow band (one cohort, three months of
    history): 34% at 1997-04-01 and 42% at 1997-05-01 at 90 days, the second with floors learned; two thirds flags 9%
    and 27% there, and its flagged buyers came back less often than the rest of value at every origin of the three
    rolling_ladder experiments but two simulated 180-day ones (1-5 buyers flagged there). It is placed on each base's
    own predictions and not moved by outcomes: the realised midpoint between the groups, read on a holdout's predicted
    churn, is the predicted midpoint plus the holdout's calibration error there, which belongs to the holdout's season
    and model. On Online Retail II at 180 days (the holdout six months before the origin) positions learned that way ran
    opposite to each origin's own: 0.47 to 1.10 from 2010-12-01 to 2011-06-01 while the origins' own fell from 1.23 to
    0.50, and 2011-06-01 flagged 0.2% of value. None where either group has fewer than MIN_HOLDOUT_BUYERS buyers. Keys:
    at_risk_cut and at_risk_share (of the active buyers) on the holdout, and the realised churn of the active buyers it
    flags (at_risk_churn), of the active ones it does not (active_churn) and of the lapsed (lapsed_churn).
    """
    y = np.asarray(purchased, dtype=float) > 0
    a = np.asarray(active, dtype=bool)
    risk = np.asarray(churn_risk, dtype=float)
    if a.sum() < MIN_HOLDOUT_BUYERS or (~a).sum() < MIN_HOLDOUT_BUYERS:
        return None
    cut = at_risk_cut(AT_RISK_POSITION, risk, a, np.ones(len(a), dtype=bool))
    assert cut is not None  # both groups have buyers
    flagged = a & (np.nan_to_num(risk) >= cut)
    return {
        "at_risk_cut": cut,
        "at_risk_share": float(flagged[a].mean()),
        "at_risk_churn": float(1 - y[flagged].mean()) if flagged.any() else float("nan"),
        "active_churn": float(1 - y[a & ~flagged].mean()) if (a & ~flagged).any() else float("nan"),
        "lapsed_churn": float(1 - y[~a].mean()),
    }


def at_risk_cut(position: float, churn_risk: np.ndarray, active: np.ndarray, buyer: np.ndarray) -> float | None:
    """The churn-risk cut at ``position`` between the mean predicted churn of a base's active buyers (0) and of its
    lapsed buyers (1), clipped to [0, 1]; None without both groups."""
    risk = np.asarray(churn_risk, dtype=float)
    a, lapsed = np.asarray(active, dtype=bool), np.asarray(buyer, dtype=bool) & ~np.asarray(active, dtype=bool)
    if not a.any() or not lapsed.any():
        return None
    lo, hi = float(np.nanmean(risk[a])), float(np.nanmean(risk[lapsed]))
    return float(np.clip(lo + position * (hi - lo), 0.0, 1.0))
