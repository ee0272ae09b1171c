"""Hysteresis in batch scoring: the previous batch's tiers, applied to each scored chunk.

The DuckDB path (:mod:`tiering.scoring.duckdb_path`) loads one :class:`Hysteresis` per run from the
scores store and applies it to every chunk before its part file is written; the rule itself (who
is near a threshold and keeps their tier) is ``tiering.models.tiers.apply_hysteresis``. The Spark
path scores without it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from tiering.models.tiers import apply_hysteresis
from tiering.store import Batch, ScoresStore


@dataclass
class Hysteresis:
    """The previous batch's tiers and the margin: applied to each scored chunk (:meth:`apply`), which keeps a
    customer near a threshold in the tier they held (``tiering.models.tiers.apply_hysteresis``). A margin of 0 is
    no hysteresis at all (:meth:`load` gives None then)."""

    previous: pd.DataFrame  # customer_id, tier of the previous batch
    margin: float
    from_batch: Batch

    @classmethod
    def load(cls, store: ScoresStore | None, *, as_of: dt.date, model_name: str, margin: float) -> Hysteresis | None:
        """The previous complete batch of this model name (any version) before as_of; None when there is none,
        or the margin is 0."""
        if margin <= 0 or store is None:
            return None
        found = store.previous_tiers(as_of, model_name)
        if found is None:
            return None
        batch, tiers = found
        return cls(tiers.astype({"customer_id": str}), float(margin), batch)

    def apply(self, scores: pd.DataFrame) -> tuple[pd.DataFrame, int]:
        """The scores with held customers back in their previous tier (the rule tier and its reason kept in
        tier_reason), and how many tier changes that avoided."""
        tiers, flips = apply_hysteresis(self.previous, scores, self.margin)
        held = (tiers != scores["tier"]).to_numpy()
        if not held.any():
            return scores, flips
        out = scores.copy()
        rule_tier, reason = out.loc[held, "tier"].astype(str), out.loc[held, "tier_reason"].fillna("").astype(str)
        out.loc[held, "tier_reason"] = (
            "kept in " + tiers[held].astype(str) + " (hysteresis): the rules alone give " + rule_tier + ": " + reason
        ).str.slice(0, 1000)  # the store's column width
        out.loc[held, "tier"] = tiers[held]
        return out, flips
