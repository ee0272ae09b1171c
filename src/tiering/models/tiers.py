"""The tier ladder as a fitted policy, plus standard RFM segments and operator flags.

Rules run from the top, first match wins (docs/design.md):

    core      has purchased, p_purchase >= core_min_p_purchase and CLV at or above the
              core_clv_quantile of buyers' CLV (cut learned at fit time)
    value     has purchased
    seed      engagement_score at or above its seed_engagement_quantile (learned at fit time),
              or shares + referrals in 90 days >= seed_min_social_actions_90d
    new       tenure below new_max_tenure_days
    ordinary  everyone else

Quantile cut points (CLV, engagement, RFM quintile edges) are learned once in ``fit`` and
stored, so scoring ten customers gives the same tiers as scoring the whole base. A customer with
no interactions at all (engagement score 0) is never a seed by engagement, even when the learned
cut is 0 (a base without interaction data).

The thresholds come from the ``model`` section of the config; labels, descriptions and actions
from its ``tiers`` section (:func:`ladder` merges them over the defaults of DESIGN.md).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from tiering.exceptions import ModelError
from tiering.ladder import TIER_BY_NAME, TIER_LADDER, TIER_NAMES, Tier, ladder  # noqa: F401  (re-exported)


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


def _quintile_edges(values: np.ndarray) -> np.ndarray:
    return np.quantile(values, [0.2, 0.4, 0.6, 0.8]) if len(values) else np.zeros(4)


def _score(values: np.ndarray, edges: np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    s = 1 + np.searchsorted(edges, values, side="left" if higher_is_better else "right")
    return s if higher_is_better else 6 - s


def _fmt(x: pd.Series, spec: str = "{:.2f}") -> pd.Series:
    return x.map(spec.format)


class TierPolicy(BaseEstimator):
    """Assigns tiers, RFM segments and flags; cut points are learned by ``fit``."""

    def __init__(self, core_min_p_purchase: float = 0.6, core_clv_quantile: float = 0.8,
                 seed_engagement_quantile: float = 0.8, seed_min_social_actions_90d: int = 3,
                 new_max_tenure_days: int = 30, at_risk_min_churn_risk: float = 0.5):
        self.core_min_p_purchase = core_min_p_purchase
        self.core_clv_quantile = core_clv_quantile
        self.seed_engagement_quantile = seed_engagement_quantile
        self.seed_min_social_actions_90d = seed_min_social_actions_90d
        self.new_max_tenure_days = new_max_tenure_days
        self.at_risk_min_churn_risk = at_risk_min_churn_risk

    @staticmethod
    def _check(frame: pd.DataFrame) -> None:
        missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
        if missing:
            raise ModelError(f"The tier policy needs columns {missing}; got {list(frame.columns)}.")

    def fit(self, frame: pd.DataFrame) -> TierPolicy:
        """Learn the quantile cut points on a scored base (predictions joined to features)."""
        self._check(frame)
        buyers = frame[frame["has_purchased"] > 0]
        if buyers.empty:
            raise ModelError("The tier policy cannot be fitted: no customer in the base has purchased.")
        self.core_clv_cut_ = float(np.quantile(buyers["clv"], self.core_clv_quantile))
        self.seed_engagement_cut_ = float(np.quantile(frame["engagement_score"], self.seed_engagement_quantile))
        self.recency_edges_ = _quintile_edges(buyers["days_since_last_purchase"].to_numpy(float))
        self.frequency_edges_ = _quintile_edges(buyers["n_orders"].to_numpy(float))
        self.monetary_edges_ = _quintile_edges(buyers["net_spend"].to_numpy(float))
        self.n_fit_ = int(len(frame))
        return self

    def assign(self, frame: pd.DataFrame) -> pd.DataFrame:
        """tier, tier_reason, rfm_segment, r/f/m scores, koc_candidate and at_risk, aligned to ``frame``."""
        self._check(frame)
        f = frame
        buyer = f["has_purchased"].to_numpy() > 0
        p = f["p_purchase"].to_numpy(float)
        clv = f["clv"].to_numpy(float)
        eng = f["engagement_score"].to_numpy(float)
        social = f["social_actions_90d"].to_numpy(float)
        tenure = f["tenure_days"].to_numpy(float)

        is_core = buyer & (p >= self.core_min_p_purchase) & (clv >= self.core_clv_cut_)
        eng_hit = (eng >= self.seed_engagement_cut_) & (eng > 0)
        social_hit = social >= self.seed_min_social_actions_90d
        is_seed = ~buyer & (eng_hit | social_hit)
        is_new = ~buyer & ~is_seed & (tenure < self.new_max_tenure_days)
        tier = np.select([is_core, buyer, is_seed, is_new], ["core", "value", "seed", "new"], "ordinary").astype(object)
        reason = _reasons(self, f, tier, buyer, is_core, eng_hit, social_hit)

        r = np.where(buyer, _score(f["days_since_last_purchase"].to_numpy(float), self.recency_edges_, higher_is_better=False), 0)
        fs = np.where(buyer, _score(f["n_orders"].to_numpy(float), self.frequency_edges_), 0)
        m = np.where(buyer, _score(f["net_spend"].to_numpy(float), self.monetary_edges_), 0)
        segment = np.where(buyer, SEGMENT_TABLE[r, fs], NO_PURCHASE_SEGMENT)
        churn = f["churn_risk"].to_numpy(float)
        return pd.DataFrame(
            {
                "tier": tier,
                "tier_reason": reason.to_numpy(),
                "rfm_segment": segment.astype(object),
                "r_score": r.astype("int64"),
                "f_score": fs.astype("int64"),
                "m_score": m.astype("int64"),
                "koc_candidate": social_hit,
                "at_risk": buyer & (np.nan_to_num(churn) >= self.at_risk_min_churn_risk),
            },
            index=f.index,
        )


def _reasons(pol: TierPolicy, f: pd.DataFrame, tier: np.ndarray, buyer, is_core, eng_hit, social_hit) -> pd.Series:
    """The rule that fired, in operator words, with the customer's values and the thresholds.

    Each text is formatted only for the rows its rule covers (formatting every number of every
    row for every rule was a quarter of batch scoring's model time).
    """
    p_min, clv_cut, eng_cut = pol.core_min_p_purchase, pol.core_clv_cut_, pol.seed_engagement_cut_
    top_clv, top_eng = f"{1 - pol.core_clv_quantile:.0%}", f"{1 - pol.seed_engagement_quantile:.0%}"
    seed_social = pol.seed_min_social_actions_90d

    def P(g):
        return _fmt(g["p_purchase"].fillna(0), "{:.0%}")

    def C(g):
        return _fmt(g["clv"].fillna(0), "{:,.2f}")

    def N(g):
        return g["n_orders"].map(lambda n: f"{n:,.0f} order" + ("" if n == 1 else "s"))

    def S(g):
        return _fmt(g["social_actions_90d"], "{:.0f}")

    def T(g):
        return _fmt(g["tenure_days"], "{:.0f}")

    def E(g):
        return _fmt(g["engagement_score"], "{:.3f}")

    def core(g):
        return ("bought " + N(g) + "; " + P(g) + f" likely to buy within the horizon (core needs {p_min:.0%}) and "
                "predicted value " + C(g) + f" is in the top {top_clv} of buyers (core cut {clv_cut:,.2f})")

    def value(g):
        low_p = ~(g["p_purchase"].to_numpy(float) >= p_min)  # NaN fails the rule too
        low_clv = ~(g["clv"].to_numpy(float) >= clv_cut)
        why_p = ("only " + P(g) + f" likely to buy within the horizon (core needs {p_min:.0%})").where(low_p, "")
        why_c = ("predicted value " + C(g) + f" is below the core cut {clv_cut:,.2f} (top {top_clv} of buyers)").where(low_clv, "")
        why = why_p + np.where(low_p & low_clv, " and ", "") + why_c
        return "bought " + N(g) + ", net spend " + _fmt(g["net_spend"], "{:,.2f}") + "; not core: " + why

    def engaged_seed(g):
        social = (" and " + S(g) + " shares or referrals in 90 days").where(social_hit[g.index], "")
        return ("no purchase yet; engagement score " + E(g) + f" is in the top {top_eng} of members "
                f"(seed cut {eng_cut:.3f})" + social)

    def social_seed(g):
        return "no purchase yet; " + S(g) + f" shares or referrals in the last 90 days (seed needs {seed_social})"

    def new(g):
        return "no purchase yet; joined " + T(g) + f" days ago (new means under {pol.new_max_tenure_days} days)"

    def ordinary(g):
        engaged = g["engagement_score"].to_numpy(float) > 0
        why_not_seed = ("engagement score " + E(g) + f" below the seed cut {eng_cut:.3f}").where(engaged, "no recent interactions")
        return ("no purchase; " + why_not_seed + ", " + S(g) + f" shares or referrals in 90 days (seed needs {seed_social}), "
                "member for " + T(g) + " days")

    f = f.reset_index(drop=True)
    social_hit = np.asarray(social_hit, dtype=bool)
    reason = np.full(len(f), "", dtype=object)
    for mask, text in ((is_core, core), (buyer & ~is_core, value), (~buyer & eng_hit, engaged_seed),
                       (~buyer & ~eng_hit & social_hit, social_seed), (tier == "new", new), (tier == "ordinary", ordinary)):
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            reason[mask] = text(f[mask]).to_numpy(dtype=object)
    return pd.Series(reason, dtype=object)


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
                 min_class_for_early_stopping: int = 10):
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.random_state = random_state
        self.min_class_for_early_stopping = min_class_for_early_stopping

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
        return self.model_.predict_proba(self._design(X[list(self.feature_names_in_)], current_tier))

    def predict_proba_ladder(self, X: pd.DataFrame, current_tier) -> np.ndarray:
        """Probabilities over all five tiers in ladder order (TIER_NAMES); 0 for a tier never seen in training."""
        proba = self.predict_proba(X, current_tier)
        out = np.zeros((len(X), len(TIER_NAMES)))
        for j, c in enumerate(self.classes_):
            out[:, TIER_NAMES.index(c)] = proba[:, j]
        return out

    def predict(self, X: pd.DataFrame, current_tier) -> tuple[np.ndarray, np.ndarray]:
        """(next_tier, its probability) per row."""
        proba = self.predict_proba(X, current_tier)
        best = proba.argmax(axis=1)
        return self.classes_[best], proba[np.arange(len(best)), best]
