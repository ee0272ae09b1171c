"""The tier ladder as a fitted policy, plus standard RFM segments and operator flags.

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
    defaults apply: no p_purchase or P(alive) floor (nothing says how the propensity model is calibrated),
    gap ratio ``DEFAULT_GAP_RATIO``; ``threshold_source_`` says which applied.

KOC score
    A two-component multinomial mixture over each customer's interactions in the largest feature window,
    split into shares, referrals and all other events, fitted by EM on the base at fit time; the KOC
    component is the one with the larger share + referral rate. ``koc_score`` is a customer's posterior
    probability of that component: many shares and referrals among few other events score high, and views,
    likes or messages lower it; a customer with no share or referral scores 0 (browsing alone never makes
    a seed). The seed cut (``seed_min_koc_score``; None learns it) maximises the expected F1 of the KOC class
    computed from the posteriors themselves (no labels; for calibrated posteriors the best cut sits near
    half the best attainable F1). Without any share or referral in the base no mixture is fitted and nobody is a seed. A frame
    without the per-type counts (``n_share_{W}d``, ``n_referral_{W}d``, ``events_{W}d``) falls back to the
    rule "shares + referrals in 90 days >= seed_min_social_actions_90d" (koc_score 1 or 0).
    The input contract links no referral to the customer it brought in, so no referral-outcome
    propensity can be fitted; a source that adds that link would add it here.

Tier probabilities
    ``p_core`` .. ``p_ordinary`` replace each hard comparison of the ladder by a normal CDF on the
    comparison's natural scale (logit for probabilities, log for CLV and the gap ratio) with standard
    deviation ``proba_sd``, chained in ladder order (first match wins), so they sum to 1 and a customer far
    from every threshold has probability ~1 for its tier. :func:`apply_hysteresis` uses them to keep a
    customer near a threshold in its previous tier.

Cut points (CLV, value floors, KOC mixture, RFM quintile edges) are learned once in ``fit`` and stored,
so scoring ten customers gives the same tiers as scoring the whole base. Labels, descriptions and actions
come from the ``tiers`` section of the config (:func:`ladder` merges them over the defaults of DESIGN.md).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from tiering.exceptions import ModelError
from tiering.ladder import TIER_BY_NAME, TIER_LADDER, TIER_NAMES, WIN_BACK_ACTION, Tier, ladder  # noqa: F401  (re-exported)
from tiering.models import thread_limits

# (R score, F score) -> segment, the standard RFM segment map
_SEGMENTS = {
    "Hibernating": ((1, 2), (1, 2)),
    "At Risk": ((1, 2), (3, 4)),
    "Can't Lose": ((1, 2), (5,)),
    "About to Sleep": ((3,), (1, 2)),
    "Need Attention": ((3,), (3,)),
    "Loyal": ((3, 4), (4, 5)),
    "Promising": ((4,), (1,)),
    "New": ((5,), (1,)),
    "Potential Loyalists": ((4, 5), (2, 3)),
    "Champions": ((5,), (4, 5)),
}
SEGMENT_TABLE = np.empty((6, 6), dtype=object)
for _name, (_rs, _fs) in _SEGMENTS.items():
    for _r in _rs:
        for _f in _fs:
            SEGMENT_TABLE[_r, _f] = _name
NO_PURCHASE_SEGMENT = "No Purchase"

REQUIRED_COLUMNS = (
    "has_purchased", "p_purchase", "churn_risk", "clv", "engagement_score", "social_actions_90d",
    "tenure_days", "days_since_last_purchase", "n_orders", "net_spend",
)
# read when present: p_alive (P(alive) floor), ipi_mean_days (own gap), n_share_{W}d / n_referral_{W}d /
# events_{W}d (KOC mixture); without them that part of the ladder is off or falls back (see above)
PROBA_COLUMNS = tuple(f"p_{t}" for t in TIER_NAMES)
MIN_HOLDOUT_BUYERS = 20
MIN_J_GAIN = 0.005
DEFAULT_GAP_RATIO = 3.0
_W_RE = re.compile(r"^n_share_(\d+)d$")


def _quintile_edges(values: np.ndarray) -> np.ndarray:
    return np.quantile(values, [0.2, 0.4, 0.6, 0.8]) if len(values) else np.zeros(4)


def _score(values: np.ndarray, edges: np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    s = 1 + np.searchsorted(edges, values, side="left" if higher_is_better else "right")
    return s if higher_is_better else 6 - s


def _col(f: pd.DataFrame, name: str, default: float = np.nan) -> np.ndarray:
    return f[name].to_numpy(float) if name in f.columns else np.full(len(f), default)


# ------------------------------------------------------------------------------------- value floors

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
    ipi = _col(frame, "ipi_mean_days")
    ipi = ipi[(frame["has_purchased"].to_numpy() > 0) & (ipi > 0)]
    return float(np.median(ipi)) if len(ipi) else float("nan")


def youden_j(active: np.ndarray, purchased: np.ndarray) -> float:
    """True-positive rate minus false-positive rate of ``active`` as a forecast of ``purchased``."""
    a, y = np.asarray(active, dtype=bool), np.asarray(purchased, dtype=bool)
    return float((a & y).sum() / max(y.sum(), 1) - (a & ~y).sum() / max((~y).sum(), 1))


def learn_value_floors(holdout: pd.DataFrame, *, p_purchase: float | None = None, p_alive: float | None = None,
                       gap_ratio_cap: float | None = None, grace_gap_ratio: float = 1.0) -> dict[str, float] | None:
    """The value floors that best separate the buyers of ``holdout`` who purchased in the horizon from the rest.

    Greedy on Youden's J of the whole value test (a buyer within ``grace_gap_ratio`` of their own gap is active
    whatever the floors): the p_purchase floor (``p_purchase`` if given) at the J-optimal cut, stored as the
    holdout's calibrated purchase rate there; then a P(alive) floor and a gap-ratio cap, each kept only where
    it raises J by more than MIN_J_GAIN (0 and inf: off). None when the holdout cannot tell (fewer than
    MIN_HOLDOUT_BUYERS buyers or one outcome only).
    Keys: value_min_p_purchase, value_min_p_alive, value_max_gap_ratio, j, buyers, purchase_rate.
    """
    from sklearn.metrics import roc_curve

    b = holdout[holdout["has_purchased"].to_numpy() > 0]
    if "purchased_in_horizon" not in b.columns or len(b) < MIN_HOLDOUT_BUYERS:
        return None
    y = b["purchased_in_horizon"].to_numpy(float) > 0
    if y.all() or not y.any():
        return None
    p = np.nan_to_num(b["p_purchase"].to_numpy(float), nan=0.0)
    ratio = gap_ratio(_col(b, "days_since_last_purchase"), _col(b, "ipi_mean_days"), population_gap(b))
    grace = (np.nan_to_num(ratio, nan=np.inf) <= grace_gap_ratio) & (grace_gap_ratio > 0)

    def J(rule: np.ndarray) -> float:
        return youden_j(grace | rule, y)

    if p_purchase is None:
        from sklearn.isotonic import IsotonicRegression

        rest = ~grace
        cut = 0.0
        if (rest & y).any() and (rest & ~y).any():
            fpr, tpr, thr = roc_curve(y[rest], p[rest])
            P, N = y.sum(), (~y).sum()
            j = ((grace & y).sum() + tpr * (rest & y).sum()) / P - ((grace & ~y).sum() + fpr * (rest & ~y).sum()) / N
            i = int(np.argmax(j))
            cut = float(min(thr[i], 1.0)) if np.isfinite(thr[i]) else 1.0
        # the floor in calibrated probability: the holdout's P(purchase | p_purchase) at the J-optimal cut (J is
        # rank-based, the stored floor is not: a model miscalibrated at the earlier origin must not move it)
        iso = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(p, y.astype(float))
        rule = p >= cut
        p_purchase = float(iso.predict([cut])[0]) if cut > 0 else 0.0
    else:
        rule = p >= p_purchase
    best = J(rule)

    pa = _col(b, "p_alive")
    if p_alive is None:
        p_alive = 0.0
        if np.isfinite(pa).any():
            pa0 = np.nan_to_num(pa, nan=1.0)
            for c in np.unique(np.quantile(pa0, np.linspace(0.01, 0.6, 60))):
                j = J(rule & (pa0 >= c))
                if j > best + MIN_J_GAIN:
                    best, p_alive = j, float(c)
    rule &= ~(np.nan_to_num(pa, nan=1.0) < p_alive)
    best = J(rule)

    if gap_ratio_cap is None:
        gap_ratio_cap = float("inf")
        if np.isfinite(ratio).any():
            r0 = np.nan_to_num(ratio, nan=0.0)
            for c in np.unique(np.quantile(r0[np.isfinite(ratio)], np.linspace(0.4, 0.995, 60))):
                j = J(rule & (r0 <= c))
                if j > best + MIN_J_GAIN:
                    best, gap_ratio_cap = j, float(c)
    rule &= ~(np.nan_to_num(ratio, nan=0.0) > gap_ratio_cap)
    return {"value_min_p_purchase": float(p_purchase), "value_min_p_alive": float(p_alive),
            "value_max_gap_ratio": float(gap_ratio_cap), "j": J(rule), "buyers": float(len(b)),
            "purchase_rate": float(y.mean())}


# ------------------------------------------------------------------------------------------- KOC score

def _koc_window(frame: pd.DataFrame) -> int | None:
    ws = [int(m.group(1)) for c in frame.columns if (m := _W_RE.match(c))]
    ws = [w for w in ws if f"n_referral_{w}d" in frame.columns and f"events_{w}d" in frame.columns]
    return max(ws) if ws else None


def _koc_counts(frame: pd.DataFrame, w: int) -> np.ndarray:
    """n x 3: shares, referrals and other events in the last ``w`` days."""
    s = np.nan_to_num(frame[f"n_share_{w}d"].to_numpy(float))
    r = np.nan_to_num(frame[f"n_referral_{w}d"].to_numpy(float))
    o = np.maximum(np.nan_to_num(frame[f"events_{w}d"].to_numpy(float)) - s - r, 0.0)
    return np.stack([s, r, o], axis=1)


def fit_koc_mixture(counts: np.ndarray, max_iter: int = 300, tol: float = 1e-9) -> tuple[np.ndarray, np.ndarray] | None:
    """EM for a two-component multinomial mixture over (shares, referrals, other) counts per customer.

    Returns (theta: 2 x 3 event-type probabilities, pi: 2 weights), component 1 the KOC (the larger share +
    referral rate), or None when no customer has a share or referral."""
    C = np.asarray(counts, dtype=float)
    C = C[C.sum(axis=1) > 0]
    if len(C) == 0 or C[:, :2].sum() == 0:
        return None
    overall = C.sum(axis=0) / C.sum()
    s1, r1 = min(10 * overall[0] + 0.02, 0.5), min(10 * overall[1] + 0.01, 0.3)
    theta = np.array([overall, [s1, r1, 1 - s1 - r1]])
    theta = np.clip(theta, 1e-6, None)
    theta /= theta.sum(axis=1, keepdims=True)
    pi = np.array([0.95, 0.05])
    prev = -np.inf
    for _ in range(max_iter):
        ll = C @ np.log(theta).T + np.log(pi)
        top = ll.max(axis=1, keepdims=True)
        w = np.exp(ll - top)
        total = w.sum(axis=1, keepdims=True)
        post = w / total
        loglik = float((np.log(total) + top).sum())
        pi = np.clip(post.mean(axis=0), 1e-6, 1 - 1e-6)
        theta = post.T @ C + 1e-3  # a small smoothing keeps every rate positive
        theta /= theta.sum(axis=1, keepdims=True)
        if loglik - prev < tol * max(abs(loglik), 1.0):
            break
        prev = loglik
    order = np.argsort(theta[:, 0] + theta[:, 1])  # component 1: the larger share + referral rate
    return theta[order], pi[order] / pi[order].sum()


def expected_f1_cut(posterior: np.ndarray) -> float:
    """The posterior cut that maximises the expected F1 of "posterior >= cut" as a forecast of the KOC class,
    computed from the posteriors themselves (no labels): E[F1] ~ 2 * sum of the selected posteriors /
    (selected + sum of all posteriors). 0.5 when no customer has a positive posterior."""
    q = np.sort(np.asarray(posterior, dtype=float))[::-1]
    total = q.sum()
    if total <= 0:
        return 0.5
    k = np.arange(1, len(q) + 1)
    f1 = 2 * np.cumsum(q) / (k + total)
    return float(q[int(np.argmax(f1))])


def koc_posterior(counts: np.ndarray, theta: np.ndarray, pi: np.ndarray) -> np.ndarray:
    """P(KOC component | counts); 0 for a customer with no share or referral."""
    C = np.asarray(counts, dtype=float)
    logit = np.log(pi[1]) - np.log(pi[0]) + C @ (np.log(theta[1]) - np.log(theta[0]))
    post = 1.0 / (1.0 + np.exp(-np.clip(logit, -700, 700)))
    return np.where(C[:, 0] + C[:, 1] > 0, post, 0.0)


# ------------------------------------------------------------------------------------ soft thresholds

def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def _above(x: np.ndarray, cut: float, sd: float, scale: str) -> np.ndarray:
    """P(x >= cut) under noise ``sd`` on the ``scale`` ("logit" or "log") of the comparison; NaN x -> 0."""
    from scipy.special import ndtr

    x = np.asarray(x, dtype=float)
    if scale == "logit":
        z = (_logit(x) - _logit(np.full(1, cut))) / sd
    else:
        z = (np.log(np.maximum(x, 0) + 1e-9) - np.log(max(cut, 0) + 1e-9)) / sd
    return np.where(np.isnan(x), 0.0, ndtr(z))


class TierPolicy(BaseEstimator):
    """Assigns tiers, tier probabilities, RFM segments and flags; cut points are learned by ``fit``.

    ``value_min_p_purchase``, ``value_min_p_alive``, ``value_max_gap_ratio``: None (default) learns them
    from ``fit``'s holdout; a number wins. ``seed_engagement_quantile`` is accepted for configs written
    before the KOC score and no longer used (browsing alone does not make a seed).
    """

    def __init__(self, core_min_p_purchase: float = 0.6, core_clv_quantile: float = 0.8,
                 seed_engagement_quantile: float = 0.8, seed_min_social_actions_90d: int = 3,
                 new_max_tenure_days: int = 30, at_risk_min_churn_risk: float = 0.5,
                 value_min_p_purchase: float | None = None, value_min_p_alive: float | None = None,
                 value_max_gap_ratio: float | None = None, value_grace_gap_ratio: float = 1.0,
                 seed_min_koc_score: float | None = None, proba_sd: float = 0.5):
        self.core_min_p_purchase = core_min_p_purchase
        self.core_clv_quantile = core_clv_quantile
        self.seed_engagement_quantile = seed_engagement_quantile
        self.seed_min_social_actions_90d = seed_min_social_actions_90d
        self.new_max_tenure_days = new_max_tenure_days
        self.at_risk_min_churn_risk = at_risk_min_churn_risk
        self.value_min_p_purchase = value_min_p_purchase
        self.value_min_p_alive = value_min_p_alive
        self.value_max_gap_ratio = value_max_gap_ratio
        self.value_grace_gap_ratio = value_grace_gap_ratio
        self.seed_min_koc_score = seed_min_koc_score
        self.proba_sd = proba_sd

    @staticmethod
    def _check(frame: pd.DataFrame) -> None:
        missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
        if missing:
            raise ModelError(f"The tier policy needs columns {missing}; got {list(frame.columns)}.")

    def fit(self, frame: pd.DataFrame, holdout: pd.DataFrame | None = None) -> TierPolicy:
        """Learn the cut points on a scored base (predictions joined to features).

        ``holdout``: the base scored at an earlier origin with ``purchased_in_horizon`` (what its buyers did
        next), from which the value floors are learned; without it the explicit or default floors apply."""
        self._check(frame)
        buyer = frame["has_purchased"].to_numpy() > 0
        if not buyer.any():
            raise ModelError("The tier policy cannot be fitted: no customer in the base has purchased.")
        explicit = {"value_min_p_purchase": self.value_min_p_purchase, "value_min_p_alive": self.value_min_p_alive,
                    "value_max_gap_ratio": self.value_max_gap_ratio}
        learned = None
        if holdout is not None:
            self._check(holdout)
            learned = learn_value_floors(holdout, p_purchase=self.value_min_p_purchase, p_alive=self.value_min_p_alive,
                                         gap_ratio_cap=self.value_max_gap_ratio, grace_gap_ratio=self.value_grace_gap_ratio)
        # nothing out of time says how the propensity model is calibrated: no probability floor, only the gap test
        defaults = {"value_min_p_purchase": 0.0, "value_min_p_alive": 0.0, "value_max_gap_ratio": DEFAULT_GAP_RATIO}
        self.threshold_source_ = {}
        for k, v in explicit.items():
            if v is not None:
                value, source = float(v), "config"
            elif learned is not None:
                value, source = learned[k], "learned"
            else:
                value, source = defaults[k], "default"
            setattr(self, k + "_", value)
            self.threshold_source_[k] = source
        self.value_floor_j_ = float(learned["j"]) if learned else float("nan")
        self.holdout_buyers_ = int(learned["buyers"]) if learned else 0
        self.holdout_purchase_rate_ = float(learned["purchase_rate"]) if learned else float("nan")
        self.population_gap_days_ = population_gap(frame)

        active = self._active(frame)
        pool = frame[active] if active.any() else frame[buyer]
        self.core_clv_cut_ = float(np.quantile(pool["clv"].fillna(0), self.core_clv_quantile))
        buyers = frame[buyer]
        self.recency_edges_ = _quintile_edges(buyers["days_since_last_purchase"].to_numpy(float))
        self.frequency_edges_ = _quintile_edges(buyers["n_orders"].to_numpy(float))
        self.monetary_edges_ = _quintile_edges(buyers["net_spend"].to_numpy(float))
        self.koc_window_days_ = _koc_window(frame)
        mix = fit_koc_mixture(_koc_counts(frame, self.koc_window_days_)) if self.koc_window_days_ else None
        self.koc_theta_: np.ndarray | None = mix[0] if mix is not None else None
        self.koc_pi_: np.ndarray | None = mix[1] if mix is not None else None
        if self.seed_min_koc_score is not None:
            self.seed_min_koc_score_, self.threshold_source_["seed_min_koc_score"] = float(self.seed_min_koc_score), "config"
        elif mix is not None:
            assert self.koc_window_days_ is not None  # mix is fitted only with a KOC window
            self.seed_min_koc_score_ = expected_f1_cut(koc_posterior(_koc_counts(frame, self.koc_window_days_), *mix))
            self.threshold_source_["seed_min_koc_score"] = "learned"
        else:
            self.seed_min_koc_score_, self.threshold_source_["seed_min_koc_score"] = 0.5, "default"
        self.n_fit_ = int(len(frame))
        return self

    # fitted before the value floors and the KOC score existed: every buyer active, the social rule for seeds
    def _learned(self, name: str, default):
        return getattr(self, name, default)

    def _ratio(self, f: pd.DataFrame) -> np.ndarray:
        return gap_ratio(_col(f, "days_since_last_purchase"), _col(f, "ipi_mean_days"),
                         self._learned("population_gap_days_", float("nan")))

    def _lapse_tests(self, f: pd.DataFrame, ratio: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row: p_purchase below its floor, P(alive) below its floor, gap ratio above its cap."""
        ratio = self._ratio(f) if ratio is None else ratio
        low_p = ~(np.nan_to_num(f["p_purchase"].to_numpy(float), nan=-1.0) >= self._learned("value_min_p_purchase_", 0.0))
        low_alive = np.nan_to_num(_col(f, "p_alive"), nan=1.0) < self._learned("value_min_p_alive_", 0.0)
        overdue = np.nan_to_num(ratio, nan=0.0) > self._learned("value_max_gap_ratio_", float("inf"))
        return low_p, low_alive, overdue

    def _grace(self, f: pd.DataFrame, ratio: np.ndarray | None = None) -> np.ndarray:
        """Last order within ``value_grace_gap_ratio`` times the customer's own gap: paying now, whatever the floors."""
        cut = getattr(self, "value_grace_gap_ratio", 0.0)  # 0 (or a policy fitted before it existed): off
        ratio = self._ratio(f) if ratio is None else ratio
        return (np.nan_to_num(ratio, nan=np.inf) <= cut) & (cut > 0)

    def _active(self, f: pd.DataFrame, ratio: np.ndarray | None = None, lapse_tests=None) -> np.ndarray:
        ratio = self._ratio(f) if ratio is None else ratio
        low_p, low_alive, overdue = self._lapse_tests(f, ratio) if lapse_tests is None else lapse_tests
        return (f["has_purchased"].to_numpy() > 0) & (self._grace(f, ratio) | (~low_p & ~low_alive & ~overdue))

    def koc_score(self, f: pd.DataFrame) -> np.ndarray:
        """The KOC score per row (see the module doc)."""
        w = self._learned("koc_window_days_", None)
        theta = self._learned("koc_theta_", None)
        if w is not None and all(c in f.columns for c in (f"n_share_{w}d", f"n_referral_{w}d", f"events_{w}d")):
            if theta is None:
                return np.zeros(len(f))
            assert self.koc_pi_ is not None  # fitted with koc_theta_
            return koc_posterior(_koc_counts(f, w), theta, self.koc_pi_)
        return (f["social_actions_90d"].to_numpy(float) >= self.seed_min_social_actions_90d).astype(float)

    def _koc_cut(self) -> float:
        default = 0.5 if self.seed_min_koc_score is None else self.seed_min_koc_score
        return self._learned("seed_min_koc_score_", default)

    def _core_floor(self) -> float:
        return max(self.core_min_p_purchase, self._learned("value_min_p_purchase_", 0.0))

    def assign(self, frame: pd.DataFrame) -> pd.DataFrame:
        """tier, tier_reason, rfm_segment, r/f/m scores, koc_candidate, at_risk, lapsed_buyer, koc_score and
        p_core .. p_ordinary, aligned to ``frame``."""
        self._check(frame)
        return pd.DataFrame(self._assign(frame), index=frame.index)

    def _assign(self, f) -> dict[str, np.ndarray]:
        """``assign``'s columns as arrays, for a DataFrame or the bundle's columns (``f[name].to_numpy()``,
        ``name in f.columns``, ``len(f)``); each shared term (gap ratio, lapse tests, KOC score) computed once."""
        buyer = f["has_purchased"].to_numpy() > 0
        p = f["p_purchase"].to_numpy(float)
        clv = f["clv"].to_numpy(float)
        tenure = f["tenure_days"].to_numpy(float)
        koc = self.koc_score(f)
        ratio = self._ratio(f)
        lapse_tests = self._lapse_tests(f, ratio)

        active = self._active(f, ratio, lapse_tests)
        lapsed = buyer & ~active
        is_core = active & (p >= self._core_floor()) & (clv >= self.core_clv_cut_)
        koc_hit = koc >= self._koc_cut()
        is_seed = ~active & koc_hit
        is_new = ~active & ~is_seed & (tenure < self.new_max_tenure_days)
        tier = np.select([is_core, active, is_seed, is_new], ["core", "value", "seed", "new"], "ordinary").astype(object)
        reason = _reasons(self, f, tier, buyer, lapsed, is_core, koc, lapse_tests=lapse_tests, ratio=ratio)

        r = np.where(buyer, _score(f["days_since_last_purchase"].to_numpy(float), self.recency_edges_, higher_is_better=False), 0)
        fs = np.where(buyer, _score(f["n_orders"].to_numpy(float), self.frequency_edges_), 0)
        m = np.where(buyer, _score(f["net_spend"].to_numpy(float), self.monetary_edges_), 0)
        segment = np.where(buyer, SEGMENT_TABLE[r, fs], NO_PURCHASE_SEGMENT)
        churn = f["churn_risk"].to_numpy(float)
        out = {
            "tier": tier,
            "tier_reason": reason,
            "rfm_segment": segment.astype(object),
            "r_score": r.astype("int64"),
            "f_score": fs.astype("int64"),
            "m_score": m.astype("int64"),
            "koc_candidate": koc_hit,
            "at_risk": active & (np.nan_to_num(churn) >= self.at_risk_min_churn_risk),
            "lapsed_buyer": lapsed,
            "koc_score": koc,
        }
        proba = self._tier_proba(f, koc, ratio)
        for j, name in enumerate(PROBA_COLUMNS):
            out[name] = proba[:, j]
        return out

    def tier_proba(self, f: pd.DataFrame, koc: np.ndarray | None = None) -> np.ndarray:
        """n x 5 tier probabilities in ladder order (see the module doc); rows sum to 1."""
        return self._tier_proba(f, self.koc_score(f) if koc is None else koc, self._ratio(f))

    def _tier_proba(self, f, koc: np.ndarray, ratio: np.ndarray) -> np.ndarray:
        sd = self.proba_sd
        buyer = (f["has_purchased"].to_numpy() > 0).astype(float)
        p = f["p_purchase"].to_numpy(float)
        rest = np.ones(len(f))
        pa_floor = self._learned("value_min_p_alive_", 0.0)
        if pa_floor > 0:
            pa = _col(f, "p_alive")
            rest *= np.where(np.isnan(pa), 1.0, _above(pa, pa_floor, sd, "logit"))
        cap = self._learned("value_max_gap_ratio_", float("inf"))
        if np.isfinite(cap):
            rest *= np.where(np.isnan(ratio), 1.0, 1.0 - _above(ratio, cap, sd, "log"))
        floor = self._learned("value_min_p_purchase_", 0.0)
        grace_cut = getattr(self, "value_grace_gap_ratio", 0.0)
        g = np.where(np.isnan(ratio), 0.0, 1.0 - _above(ratio, grace_cut, sd, "log")) if grace_cut > 0 else np.zeros(len(f))
        p_active = buyer * (g + (1 - g) * rest * (_above(p, floor, sd, "logit") if floor > 0 else (~np.isnan(p)).astype(float)))
        p_core = buyer * (g + (1 - g) * rest) * _above(p, self._core_floor(), sd, "logit") \
            * _above(f["clv"].to_numpy(float), self.core_clv_cut_, sd, "log")
        p_core = np.minimum(p_core, p_active)
        p_value = p_active - p_core
        left = 1.0 - p_active
        p_koc = np.where(koc > 0, _above(koc, self._koc_cut(), sd, "logit"), 0.0)
        p_seed = left * p_koc
        young = (f["tenure_days"].to_numpy(float) < self.new_max_tenure_days).astype(float)
        p_new = left * (1 - p_koc) * young
        p_ord = left * (1 - p_koc) * (1 - young)
        return np.stack([p_core, p_value, p_seed, p_new, p_ord], axis=1)


def _fmt_values(values, spec: str) -> np.ndarray:
    """``spec.format`` of each value, as an object array of str: each distinct value is formatted once (the text
    of a value is that of ``Series.map(spec.format)``; -0.0, which sorts with 0.0, is formatted apart)."""
    v = np.asarray(values)
    if len(v) == 0:
        return np.empty(0, dtype=object)
    uniq, inverse = np.unique(v, return_inverse=True)
    table = np.empty(len(uniq), dtype=object)
    table[:] = [spec.format(x) for x in uniq.tolist()]
    out = table[inverse.reshape(-1)]
    if v.dtype.kind == "f":
        negative_zero = (v == 0) & np.signbit(v)
        if negative_zero.any():
            out[negative_zero] = spec.format(-0.0)
    return out


def _join(n: int, *pieces) -> np.ndarray:
    """Row-wise concatenation of ``pieces`` (object arrays of str of length n, or one str for every row)."""
    if n == 0:
        return np.empty(0, dtype=object)
    cols = [p if isinstance(p, np.ndarray) else [p] * n for p in pieces]
    out = np.empty(n, dtype=object)
    out[:] = ["".join(t) for t in zip(*cols)]
    return out


def _reasons(pol: TierPolicy, f, tier: np.ndarray, buyer, lapsed, is_core, koc, lapse_tests=None,
             ratio=None) -> np.ndarray:
    """The rule that fired, in operator words, with the customer's values and the thresholds (object array of str).

    Each text is built only for the rows its rule covers, and each number is formatted once per distinct value
    (per-row formatting of every number was most of batch scoring's tier time). ``f``: a DataFrame or the
    bundle's columns (anything with ``f[name].to_numpy()``, ``name in f.columns`` and ``len(f)``).
    """
    p_min, clv_cut = pol._core_floor(), pol.core_clv_cut_
    top_clv = f"{1 - pol.core_clv_quantile:.0%}"
    v_floor = pol._learned("value_min_p_purchase_", 0.0)
    a_floor = pol._learned("value_min_p_alive_", 0.0)
    cap = pol._learned("value_max_gap_ratio_", float("inf"))
    koc_cut = pol._koc_cut()
    w = pol._learned("koc_window_days_", None)
    has_counts = w is not None and all(c in f.columns for c in (f"n_share_{w}d", f"n_referral_{w}d", f"events_{w}d"))
    n = len(f)
    cache: dict[str, np.ndarray] = {}

    def col(name: str) -> np.ndarray:
        if name not in cache:
            cache[name] = f[name].to_numpy()
        return cache[name]

    def filled(name: str) -> np.ndarray:  # Series.fillna(0)
        v = col(name)
        return np.where(np.isnan(v), 0.0, v) if v.dtype.kind == "f" else v

    koc_r = np.asarray(koc, dtype=float)
    if lapse_tests is None:
        lapse_tests = pol._lapse_tests(f)
    if ratio is None:
        ratio = pol._ratio(f)

    def P(m):
        return _fmt_values(filled("p_purchase")[m], "{:.0%}")

    def C(m):
        return _fmt_values(filled("clv")[m], "{:,.2f}")

    def N(m):
        v = col("n_orders")[m]
        return _join(int(m.sum()), _fmt_values(v, "{:,.0f}"), " order", np.where(v == 1, "", "s").astype(object))

    def S(m):
        return _fmt_values(col("net_spend")[m], "{:,.2f}")

    def T(m):
        return _fmt_values(col("tenure_days")[m], "{:.0f}")

    def K(m):
        return _fmt_values(koc_r[m], "{:.2f}")

    def social(m):
        if has_counts:
            return (_fmt_values(filled(f"n_share_{w}d")[m], "{:.0f}"), " shares and ",
                    _fmt_values(filled(f"n_referral_{w}d")[m], "{:.0f}"), " referrals among ",
                    _fmt_values(filled(f"events_{w}d")[m], "{:.0f}"), f" interactions in {w} days")
        return _fmt_values(col("social_actions_90d")[m], "{:.0f}"), " shares or referrals in 90 days"

    def when(flag: np.ndarray, *pieces) -> np.ndarray:
        """The text where ``flag``, else ""."""
        out = np.full(len(flag), "", dtype=object)
        if flag.any():
            out[flag] = _join(int(flag.sum()), *(p[flag] if isinstance(p, np.ndarray) else p for p in pieces))
        return out

    def core(m):
        return _join(int(m.sum()), "bought ", N(m), "; ", P(m), f" likely to buy within the horizon (core needs {p_min:.0%}) and "
                     "predicted value ", C(m), f" is in the top {top_clv} of buyers (core cut {clv_cut:,.2f})")

    def value(m):
        k = int(m.sum())
        low_p = ~(col("p_purchase")[m].astype(float) >= p_min)  # NaN fails the rule too
        low_clv = ~(col("clv")[m].astype(float) >= clv_cut)
        why_p = when(low_p, "only ", P(m), f" likely to buy within the horizon (core needs {p_min:.0%})")
        why_c = when(low_clv, "predicted value ", C(m), f" is below the core cut {clv_cut:,.2f} (top {top_clv} of buyers)")
        sep = np.where(low_p & low_clv, " and ", "").astype(object)
        return _join(k, "bought ", N(m), ", net spend ", S(m), "; not core: ", why_p, sep, why_c)

    def lapsed_prefix(m):
        k = int(m.sum())
        low_p, low_alive, overdue = (np.asarray(x)[m] for x in lapse_tests)
        why_p = when(low_p, P(m), f" likely to buy within the horizon (value needs {v_floor:.0%})")
        pa = filled("p_alive")[m] if "p_alive" in f.columns else np.zeros(k)
        why_a = when(low_alive, "P(alive) ", _fmt_values(pa, "{:.0%}"), f" (value needs {a_floor:.0%})")
        why_o = when(overdue, "last order ", _fmt_values(col("days_since_last_purchase")[m], "{:.0f}"), " days ago, ",
                     _fmt_values(ratio[m], "{:.1f}"), f"x the usual gap between orders (value allows {cap:.1f}x)")
        parts = np.empty(k, dtype=object)
        parts[:] = ["; ".join(x for x in t if x) for t in zip(why_p, why_a, why_o)]
        return _join(k, "lapsed buyer (win-back): bought ", N(m), ", net spend ", S(m), "; ", parts, "; now ")

    def seed(m):
        return _join(int(m.sum()), "KOC score ", K(m), f" (seed needs {koc_cut:.2f}): ", *social(m))

    def new(m):
        return _join(int(m.sum()), "joined ", T(m), f" days ago (new means under {pol.new_max_tenure_days} days)")

    def ordinary(m):
        return _join(int(m.sum()), "KOC score ", K(m), f" below the seed cut {koc_cut:.2f} (", *social(m), "), member for ",
                     T(m), " days")

    lapsed = np.asarray(lapsed, dtype=bool)
    nonbuyer = ~np.asarray(buyer, dtype=bool)
    reason = np.full(n, "", dtype=object)
    for mask, text in ((is_core, core), (tier == "value", value)):
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            reason[mask] = text(mask)
    prefix = np.full(n, "", dtype=object)
    if lapsed.any():
        prefix[lapsed] = lapsed_prefix(lapsed)
    prefix[nonbuyer] = "no purchase yet; "
    for name, text in (("seed", seed), ("new", new), ("ordinary", ordinary)):
        mask = tier == name
        if mask.any():
            # a lapsed buyer's reason reads "lapsed buyer (win-back): ...; now <tier>: <why>"
            head = _join(int(mask.sum()), prefix[mask], np.where(lapsed[mask], name + ": ", "").astype(object))
            reason[mask] = _join(int(mask.sum()), head, text(mask))
    return reason


def apply_hysteresis(previous: pd.DataFrame, current: pd.DataFrame, margin: float) -> tuple[pd.Series, int]:
    """Tiers for ``current`` that keep a customer near a threshold in the tier of the previous batch.

    ``previous``: customer_id and tier of the previous batch; ``current``: the current scores (customer_id,
    tier and the tier probabilities p_core .. p_ordinary). A customer whose tier changed keeps the previous
    tier unless the current tier's probability exceeds the previous tier's by more than ``margin`` (0: no
    hysteresis, the rules' tiers as they are); customers new to this batch, and tiers that cannot hold (a previous tier with probability 0
    now, e.g. "new" after 30 days), take the current tier. Returns (tiers aligned to ``current``, the number
    of tier changes avoided). Pure: neither frame is modified.
    """
    if margin < 0:
        raise ValueError(f"the hysteresis margin must be >= 0; got {margin}")
    missing = [c for c in ("customer_id", "tier", *PROBA_COLUMNS) if c not in current.columns]
    if missing:
        raise ModelError(f"apply_hysteresis needs the current scores' columns {missing}; got {list(current.columns)}.")
    prev = previous[["customer_id", "tier"]].drop_duplicates("customer_id")
    prev_tier = (current[["customer_id"]].astype({"customer_id": str})
                 .merge(prev.astype({"customer_id": str}).rename(columns={"tier": "_prev"}), on="customer_id", how="left")["_prev"]
                 .to_numpy(dtype=object))
    now = current["tier"].to_numpy(dtype=object)
    proba = current[list(PROBA_COLUMNS)].to_numpy(float)
    col = {t: j for j, t in enumerate(TIER_NAMES)}
    known = np.array([t in col for t in prev_tier], dtype=bool)
    changed = known & (prev_tier != now)
    idx = np.flatnonzero(changed)
    p_prev = proba[idx, [col[t] for t in prev_tier[idx]]]
    p_now = proba[idx, [col[t] for t in now[idx]]]
    hold = (p_prev > 0) & (p_now - p_prev <= margin) & (margin > 0)  # a margin of 0 holds no one
    out = now.copy()
    out[idx[hold]] = prev_tier[idx[hold]]
    return pd.Series(out, index=current.index, name="tier", dtype=object), int(hold.sum())


class NextTierModel(BaseEstimator):
    """Predicts the tier a customer will hold one horizon later, with class probabilities.

    Gradient boosting on the feature frame plus the current tier (one-hot). Trained on
    features at an earlier origin against the policy's tiers at the later origin.

    Fallbacks (each recorded as a sentence in ``fallbacks_``; ``mode_`` says which model predicts):

    - ``mode_ = "stay"``: no training pairs at all: the "stays in its tier" rule, the current
      tier with probability 1;
    - ``mode_ = "constant"``: one next tier only among the pairs: that tier with certainty;
    - ``mode_ = "model"`` with the number of rounds chosen without the tiny classes: when the
      smallest next-tier class has fewer than ``min_class_for_early_stopping`` members, the
      stratified validation split of early stopping cannot hold it (scikit-learn refuses a class
      with one member); early stopping then runs on the pairs of the well-populated classes only
      and the booster is refitted on every pair for the rounds it chose;
    - ``mode_ = "model"`` without early stopping: fewer than 100 pairs, or fewer than two classes
      with ``min_class_for_early_stopping`` members: the booster runs ``max_iter`` rounds.
    """

    def __init__(self, max_iter: int = 200, learning_rate: float = 0.1, random_state: int = 0,
                 min_class_for_early_stopping: int = 10, threads: int | None = None):
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.random_state = random_state
        self.min_class_for_early_stopping = min_class_for_early_stopping
        self.threads = threads  # cap on the booster's threads in fit and predict (None: the library default)

    @staticmethod
    def _design(X: pd.DataFrame, tier: pd.Series | np.ndarray) -> np.ndarray:
        t = np.asarray(tier, dtype=object)
        onehot = np.stack([(t == x.name) for x in TIER_LADDER], axis=1).astype(float)
        return np.hstack([X.to_numpy(dtype=float), onehot])

    def fit(self, X: pd.DataFrame, current_tier, next_tier) -> NextTierModel:
        from sklearn.ensemble import HistGradientBoostingClassifier

        y = np.asarray(next_tier, dtype=object)
        if len(y) != len(X) or len(np.asarray(current_tier)) != len(X):
            raise ModelError(f"NextTierModel fit got {len(X)} feature rows, {len(np.asarray(current_tier))} current "
                             f"tiers and {len(y)} next tiers; they must match.")
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.model_ = None
        self.fallbacks_: list[str] = []
        classes, counts = np.unique(y, return_counts=True) if len(y) else (np.array([], dtype=object), np.array([]))
        if len(classes) == 0:
            self.mode_, self.classes_ = "stay", np.asarray(TIER_NAMES, dtype=object)
            self.fallbacks_.append("next tier: no training pairs; the 'stays in its tier' rule predicts the current tier")
            return self
        if len(classes) == 1:
            self.mode_, self.classes_ = "constant", classes.astype(object)
            self.fallbacks_.append(f"next tier: every training pair ends in tier {classes[0]!r}; that tier is predicted "
                                   "with certainty")
            return self
        design = self._design(X, current_tier)
        with thread_limits(self.threads):
            self.model_ = HistGradientBoostingClassifier(
                max_iter=self._rounds(design, y, classes, counts), learning_rate=self.learning_rate,
                early_stopping=not self.fallbacks_, random_state=self.random_state,
            ).fit(design, y)
        self.mode_ = "model"
        self.classes_ = self.model_.classes_
        return self

    def _rounds(self, design: np.ndarray, y: np.ndarray, classes: np.ndarray, counts: np.ndarray) -> int:
        """max_iter, or the rounds early stopping picks on the well-populated classes (a fallback, noted)."""
        from sklearn.ensemble import HistGradientBoostingClassifier

        big = classes[counts >= self.min_class_for_early_stopping]
        smallest = int(counts.min())
        if smallest >= self.min_class_for_early_stopping and len(y) >= 100:
            return self.max_iter
        tiny = f"smallest next-tier class {classes[counts.argmin()]!r} has {smallest} member{'s' if smallest != 1 else ''} " \
               f"of {len(y)} pairs"
        keep = np.isin(y, big)
        if len(big) < 2 or keep.sum() < 100:
            self.fallbacks_.append(f"next tier: no early stopping ({tiny}); the booster runs {self.max_iter} rounds")
            return self.max_iter
        probe = HistGradientBoostingClassifier(max_iter=self.max_iter, learning_rate=self.learning_rate, early_stopping=True,
                                               random_state=self.random_state).fit(design[keep], y[keep])
        self.fallbacks_.append(f"next tier: early stopping without the tiny classes ({tiny}): {probe.n_iter_} rounds chosen "
                               f"on the {int(keep.sum())} pairs of classes with {self.min_class_for_early_stopping}+ members, "
                               "then refitted on every pair")
        return int(probe.n_iter_)

    def predict_proba(self, X: pd.DataFrame, current_tier) -> np.ndarray:
        """Probabilities over ``classes_`` (the current tier one-hot under the "stay" rule)."""
        if getattr(self, "mode_", None) == "stay":
            return np.stack([np.asarray(current_tier, dtype=object) == c for c in self.classes_], axis=1).astype(float)
        if self.model_ is None:
            return np.ones((len(X), 1))
        with thread_limits(getattr(self, "threads", None)):  # bundles pickled before `threads` existed
            return self.model_.predict_proba(self._design(X[list(self.feature_names_in_)], current_tier))

    def predict_proba_ladder(self, X: pd.DataFrame, current_tier) -> np.ndarray:
        """Probabilities over all five tiers in ladder order (TIER_NAMES); 0 for a tier never seen in training."""
        proba = self.predict_proba(X, current_tier)
        out = np.zeros((len(X), len(TIER_NAMES)))
        for j, c in enumerate(self.classes_):
            out[:, TIER_NAMES.index(c)] = proba[:, j]
        return out

    def _predict_columns(self, column, n_rows: int, current_tier) -> tuple[np.ndarray, np.ndarray]:
        """``predict`` from columns by name (``column(name)``: a float array of n_rows): the scoring bundle's path,
        the booster run on the codes of its inputs (``tiering.models.clv.hgb_raw_predictions``)."""
        from tiering.models.clv import hgb_predict_proba, hgb_raw_predictions

        if getattr(self, "mode_", None) != "model" or self.model_ is None:
            X = pd.DataFrame({c: column(c) for c in self.feature_names_in_}) if n_rows else pd.DataFrame(
                columns=list(self.feature_names_in_))
            return self.predict(X, current_tier)
        t = np.asarray(current_tier, dtype=object)
        onehot = {("tier", x.name): (t == x.name).astype(float) for x in TIER_LADDER}
        keys = [*self.feature_names_in_, *onehot]
        with thread_limits(getattr(self, "threads", None)):
            (raw,) = hgb_raw_predictions([(self.model_, keys)], lambda k: onehot[k] if k in onehot else column(k), n_rows)
        return self._best(hgb_predict_proba(self.model_, raw))

    def predict(self, X: pd.DataFrame, current_tier) -> tuple[np.ndarray, np.ndarray]:
        """(next_tier, its probability) per row."""
        return self._best(self.predict_proba(X, current_tier))

    def _best(self, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        best = proba.argmax(axis=1)
        return self.classes_[best], proba[np.arange(len(best)), best]
