"""The tier ladder as a fitted policy: tiers, tier probabilities, RFM segments and operator flags.

The ladder, its thresholds and what each learns are described in :mod:`tiering.models.tiers`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from tiering.exceptions import ConfigError, ModelError
from tiering.ladder import TIER_NAMES
from tiering.models.koc_ranking import KocRanking
from tiering.models.rfm import NO_PURCHASE_SEGMENT, SEGMENT_TABLE, quintile_edges, quintile_score
from tiering.models.tier_reasons import ReasonWriter
from tiering.models.tier_thresholds import (
    AT_RISK_POSITION,
    DEFAULT_GAP_RATIO,
    at_risk_cut,
    column,
    gap_ratio,
    learn_at_risk_cut,
    learn_value_floors,
    population_gap,
    unlabelled_p_floor,
)

REQUIRED_COLUMNS = (
    "has_purchased",
    "p_purchase",
    "churn_risk",
    "clv",
    "engagement_score",
    "social_actions_90d",
    "tenure_days",
    "days_since_last_purchase",
    "n_orders",
    "net_spend",
)
# read when present: p_alive (P(alive) floor), ipi_mean_days (own gap), n_share_{W}d / n_referral_{W}d /
# events_{W}d (KOC mixture); without them that part of the ladder is off or falls back (see above)
PROBA_COLUMNS = tuple(f"p_{t}" for t in TIER_NAMES)
DEFAULT_AT_RISK = 0.5  # the at-risk cut where the base has no active and lapsed buyers to place one between


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


class TierPolicy(KocRanking, BaseEstimator):
    """Assigns tiers, tier probabilities, RFM segments and flags; cut points are learned by ``fit``.

    ``value_min_p_purchase``, ``value_min_p_alive`` and ``value_max_gap_ratio``: None (default) learns them from
    ``fit``'s holdout (without one, the p_purchase floor is the buyers' mean p_purchase); a number wins.
    ``at_risk_min_churn_risk``: None places the at-risk cut two thirds of the way from the base's active buyers' mean
    predicted churn to the lapsed ones' (``DEFAULT_AT_RISK`` without both groups); a number wins.
    ``seed_engagement_quantile`` is accepted for configs written before the KOC score and no longer used (browsing
    alone does not make a seed). ``koc_ranking``: "auto" ranks the seeds by the KOC mixture's posterior blended with a
    referral propensity fitted on ``fit``'s holdout where it has referral outcomes enough, else by the KOC mixture;
    "mixture" always by the mixture (:mod:`tiering.models.koc_ranking`).
    """

    def __init__(
        self,
        core_min_p_purchase: float = 0.6,
        core_clv_quantile: float = 0.8,
        seed_engagement_quantile: float = 0.8,
        seed_min_social_actions_90d: int = 3,
        new_max_tenure_days: int = 30,
        at_risk_min_churn_risk: float | None = None,
        value_min_p_purchase: float | None = None,
        value_min_p_alive: float | None = None,
        value_max_gap_ratio: float | None = None,
        value_grace_gap_ratio: float = 1.0,
        seed_min_koc_score: float | None = None,
        proba_sd: float = 0.5,
        koc_ranking: str = "auto",
    ):
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
        self.koc_ranking = koc_ranking

    @staticmethod
    def _check(frame: pd.DataFrame) -> None:
        missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
        if missing:
            raise ModelError(f"The tier policy needs columns {missing}; got {list(frame.columns)}.")

    def fit(self, frame: pd.DataFrame, holdout: pd.DataFrame | None = None) -> TierPolicy:
        """Learn the cut points on a scored base (predictions joined to features).

        ``holdout``: the base scored at an earlier origin with ``purchased_in_horizon`` (what its buyers did
        next), from which the value floors and the at-risk cut are learned; without it the explicit or default
        ones apply."""
        self._check(frame)
        buyer = frame["has_purchased"].to_numpy() > 0
        if not buyer.any():
            raise ModelError("The tier policy cannot be fitted: no customer in the base has purchased.")
        self.threshold_source_: dict[str, str] = {}
        self._fit_value_floors(frame, holdout)
        self._fit_at_risk(frame, holdout)
        active = self._active(frame)
        pool = frame[active] if active.any() else frame[buyer]
        self.core_clv_cut_ = float(np.quantile(pool["clv"].fillna(0), self.core_clv_quantile))
        buyers = frame[buyer]
        self.recency_edges_ = quintile_edges(buyers["days_since_last_purchase"].to_numpy(float))
        self.frequency_edges_ = quintile_edges(buyers["n_orders"].to_numpy(float))
        self.monetary_edges_ = quintile_edges(buyers["net_spend"].to_numpy(float))
        self._fit_koc(frame, holdout)
        self.n_fit_ = int(len(frame))
        return self

    def _fit_value_floors(self, frame: pd.DataFrame, holdout: pd.DataFrame | None) -> None:
        """The value floors: explicit ones win, else learned from ``holdout``, else the defaults (noted per floor)."""
        explicit = {
            "value_min_p_purchase": self.value_min_p_purchase,
            "value_min_p_alive": self.value_min_p_alive,
            "value_max_gap_ratio": self.value_max_gap_ratio,
        }
        learned = None
        if holdout is not None:
            self._check(holdout)
            learned = learn_value_floors(
                holdout,
                p_purchase=self.value_min_p_purchase,
                p_alive=self.value_min_p_alive,
                gap_ratio_cap=self.value_max_gap_ratio,
                grace_gap_ratio=self.value_grace_gap_ratio,
            )
        # no outcome to learn from: the p_purchase floor where J peaks if the predictions are calibrated
        defaults = {"value_min_p_purchase": unlabelled_p_floor(frame), "value_min_p_alive": 0.0, "value_max_gap_ratio": DEFAULT_GAP_RATIO}
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

    def _fit_at_risk(self, frame: pd.DataFrame, holdout: pd.DataFrame | None) -> None:
        """The at-risk cut on churn risk: explicit; else learned on ``frame``, two thirds of the way from the mean
        predicted churn of its active buyers to that of its lapsed ones (:func:`at_risk_cut` at ``AT_RISK_POSITION``;
        the groups the value test as fitted makes); else DEFAULT_AT_RISK without both groups. On ``holdout`` the same
        rule is tried and how its flagged buyers churned kept (``at_risk_holdout_``, :func:`learn_at_risk_cut`; None
        without outcomes): the out-of-time check the training run logs."""
        self.at_risk_holdout_: dict[str, float] | None = None
        if holdout is not None and "purchased_in_horizon" in holdout.columns:
            b = holdout["has_purchased"].to_numpy() > 0
            self.at_risk_holdout_ = learn_at_risk_cut(
                holdout["purchased_in_horizon"].to_numpy(float)[b], self._active(holdout)[b], holdout["churn_risk"].to_numpy(float)[b]
            )
        cut = at_risk_cut(AT_RISK_POSITION, frame["churn_risk"].to_numpy(float), self._active(frame), frame["has_purchased"].to_numpy() > 0)
        if self.at_risk_min_churn_risk is not None:
            cut, source = float(self.at_risk_min_churn_risk), "config"
        elif cut is not None:
            source = "learned"
        else:
            cut, source = DEFAULT_AT_RISK, "default"
        self.at_risk_min_churn_risk_, self.threshold_source_["at_risk_min_churn_risk"] = cut, source

    def _at_risk_cut(self) -> float:
        """The learned cut; a policy fitted before it was learned keeps its parameter."""
        fixed = self.at_risk_min_churn_risk
        return self._learned("at_risk_min_churn_risk_", DEFAULT_AT_RISK if fixed is None else fixed)

    def _ratio(self, f: pd.DataFrame) -> np.ndarray:
        return gap_ratio(
            column(f, "days_since_last_purchase"), column(f, "ipi_mean_days"), self._learned("population_gap_days_", float("nan"))
        )

    def _lapse_tests(self, f: pd.DataFrame, ratio: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row: p_purchase below its floor, P(alive) below its floor, gap ratio above its cap."""
        ratio = self._ratio(f) if ratio is None else ratio
        low_p = ~(np.nan_to_num(f["p_purchase"].to_numpy(float), nan=-1.0) >= self._learned("value_min_p_purchase_", 0.0))
        low_alive = np.nan_to_num(column(f, "p_alive"), nan=1.0) < self._learned("value_min_p_alive_", 0.0)
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

    def _core_floor(self) -> float:
        return max(self.core_min_p_purchase, self._learned("value_min_p_purchase_", 0.0))

    def _thresholds(self) -> dict:
        """The cut points by name, as the tier reasons quote them."""
        return {
            "core_floor": self._core_floor(),
            "core_clv_cut": self.core_clv_cut_,
            "core_top": f"{1 - self.core_clv_quantile:.0%}",
            "value_floor": self._learned("value_min_p_purchase_", 0.0),
            "alive_floor": self._learned("value_min_p_alive_", 0.0),
            "gap_cap": self._learned("value_max_gap_ratio_", float("inf")),
            "koc_cut": self._koc_cut(),
            # the seeds' score in words: with a referral propensity, the mixture's posterior blended with it (koc_ranking.blend_koc_score)
            "koc_label": "KOC score (with referral propensity) " if self._learned("referral_model_", None) is not None else "KOC score ",
            "koc_window": self._learned("koc_window_days_", None),
            "new_days": self.new_max_tenure_days,
        }

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
        reason = ReasonWriter(self._thresholds(), f, koc, lapse_tests, ratio).write(tier, buyer, lapsed, is_core)

        r = np.where(buyer, quintile_score(f["days_since_last_purchase"].to_numpy(float), self.recency_edges_, higher_is_better=False), 0)
        fs = np.where(buyer, quintile_score(f["n_orders"].to_numpy(float), self.frequency_edges_), 0)
        m = np.where(buyer, quintile_score(f["net_spend"].to_numpy(float), self.monetary_edges_), 0)
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
            "at_risk": active & (np.nan_to_num(churn) >= self._at_risk_cut()),
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
            pa = column(f, "p_alive")
            rest *= np.where(np.isnan(pa), 1.0, _above(pa, pa_floor, sd, "logit"))
        cap = self._learned("value_max_gap_ratio_", float("inf"))
        if np.isfinite(cap):
            rest *= np.where(np.isnan(ratio), 1.0, 1.0 - _above(ratio, cap, sd, "log"))
        floor = self._learned("value_min_p_purchase_", 0.0)
        grace_cut = getattr(self, "value_grace_gap_ratio", 0.0)
        g = np.where(np.isnan(ratio), 0.0, 1.0 - _above(ratio, grace_cut, sd, "log")) if grace_cut > 0 else np.zeros(len(f))
        p_active = buyer * (g + (1 - g) * rest * (_above(p, floor, sd, "logit") if floor > 0 else (~np.isnan(p)).astype(float)))
        p_core = (
            buyer
            * (g + (1 - g) * rest)
            * _above(p, self._core_floor(), sd, "logit")
            * _above(f["clv"].to_numpy(float), self.core_clv_cut_, sd, "log")
        )
        p_core = np.minimum(p_core, p_active)
        p_value = p_active - p_core
        left = 1.0 - p_active
        p_koc = np.where(koc > 0, _above(koc, self._koc_cut(), sd, "logit"), 0.0)
        p_seed = left * p_koc
        young = (f["tenure_days"].to_numpy(float) < self.new_max_tenure_days).astype(float)
        p_new = left * (1 - p_koc) * young
        p_ord = left * (1 - p_koc) * (1 - young)
        return np.stack([p_core, p_value, p_seed, p_new, p_ord], axis=1)


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
        raise ConfigError(f"the hysteresis margin must be >= 0; got {margin}")
    missing = [c for c in ("customer_id", "tier", *PROBA_COLUMNS) if c not in current.columns]
    if missing:
        raise ModelError(f"apply_hysteresis needs the current scores' columns {missing}; got {list(current.columns)}.")
    prev = previous[["customer_id", "tier"]].drop_duplicates("customer_id")
    prev_tier = (
        current[["customer_id"]]
        .astype({"customer_id": str})
        .merge(prev.astype({"customer_id": str}).rename(columns={"tier": "_prev"}), on="customer_id", how="left")["_prev"]
        .to_numpy(dtype=object)
    )
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
