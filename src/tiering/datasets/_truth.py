"""The simulator's latent truth, one row per customer: the draws behind the tables, and the tier each
customer truly belongs in at the end, so that model and tier recovery can be checked."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from tiering.datasets._arrays import DAY_S, str_take, timestamps
from tiering.datasets._latent import Latent
from tiering.datasets._params import ACQUISITION_CHANNELS, NEW_DAYS
from tiering.schemas import TIERS


def _ladder(conditions: list[np.ndarray]) -> pd.api.extensions.ExtensionArray:
    """Per customer, the first tier whose condition holds, highest first (schemas.TIERS); the lowest tier where
    none does. ``conditions``: one per tier above the lowest, in ladder order (np.select refuses another count)."""
    return pd.array(np.select(conditions, TIERS[:-1], default=TIERS[-1]), dtype="str")


def true_tiers(lat: Latent, dropped: np.ndarray, span_s: int) -> tuple[pd.api.extensions.ExtensionArray, ...]:
    """The true tier at the end by two ladders (SimulatedData's truth columns true_tier_at_end, true_tier_active)."""
    buyer = lat.buyer
    alive = lat.will_convert & ~dropped
    value_score = lat.lam * lat.mean_spend
    core_cut = np.quantile(value_score[buyer & alive], 0.8) if (buyer & alive).any() else np.inf
    nonbuyer = ~buyer
    seed_cut = np.quantile(lat.eng[nonbuyer], 0.8) if nonbuyer.any() else np.inf
    core = buyer & alive & (value_score >= core_cut)
    new = lat.join_s > span_s - NEW_DAYS * DAY_S
    at_end = _ladder([core, buyer, lat.is_seed | (nonbuyer & (lat.eng >= seed_cut)), new])
    # the ladder where value means paying now and seed means KOC: a dropped-out buyer is lapsed and falls through
    active = _ladder([core, buyer & alive, lat.is_seed, new])
    return at_end, active


def truth_table(
    lat: Latent,
    dropped: np.ndarray,
    stats: dict[str, np.ndarray],
    eng_end: np.ndarray,
    start: dt.date,
    span_s: int,
    cust_ids: pd.api.extensions.ExtensionArray,
) -> pd.DataFrame:
    """One row per customer: the latent draws, what they led to by the end, and the true tiers."""

    def _ts(sec: np.ndarray, valid: np.ndarray) -> pd.Series:
        return pd.Series(timestamps(start, np.where(valid, sec, 0))).where(valid)

    tier_at_end, tier_active = true_tiers(lat, dropped, span_s)
    return pd.DataFrame(
        {
            "customer_id": pd.Series(cust_ids, copy=False),
            "joined_at": timestamps(start, lat.join_s),
            "acquisition_channel": str_take(pd.array(list(ACQUISITION_CHANNELS), dtype="str"), lat.acq),
            "is_seed": lat.is_seed,
            "will_convert": lat.will_convert,
            "is_buyer": lat.buyer,
            "first_purchase_at": _ts(stats["first_s"], lat.buyer),
            "lambda_per_day": lat.lam,
            "p_dropout": lat.p_drop,
            "dropout_at": _ts(stats["last_s"], dropped),
            "alive_at_end": lat.will_convert & ~dropped,
            "mean_spend": lat.mean_spend,
            "engagement_rate": lat.eng,
            "engagement_end_at": _ts(np.floor(eng_end * DAY_S).astype(np.int64), np.ones(len(lat.buyer), dtype=bool)),
            "n_orders": stats["n_orders"],
            "n_refunds": stats["n_refunds"],
            "total_spend": stats["total_spend"],
            "true_tier_at_end": tier_at_end,
            "true_tier_active": tier_active,
        }
    )
