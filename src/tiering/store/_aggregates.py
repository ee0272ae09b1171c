"""The store's SQL aggregates: the tier mix of a batch and the tier migration between two batches, counted in the
database (a base of millions is never read into memory for them)."""

from __future__ import annotations

import pandas as pd

from tiering.schemas import TIER_RANK, TIERS
from tiering.store._batches import Batch
from tiering.store._open import StoreBase


class Aggregates(StoreBase):
    """The aggregating part of ``ScoresStore``."""

    def tier_counts(self, batch: Batch) -> pd.DataFrame:
        """Per tier: customers, share, mean CLV, mean churn risk (buyers), at-risk count."""
        import sqlalchemy as sa

        s = self.scores
        stmt = (
            sa.select(
                s.c.tier,
                sa.func.count().label("customers"),
                sa.func.avg(s.c.clv).label("mean_clv"),
                sa.func.avg(s.c.churn_risk).label("mean_churn_risk"),
                sa.func.avg(s.c.p_purchase).label("mean_p_purchase"),
                sa.func.sum(sa.case((s.c.at_risk, 1), else_=0)).label("at_risk"),
            )
            .where(s.c.batch_id == batch.batch_id)
            .group_by(s.c.tier)
        )
        df = pd.DataFrame(self._run(stmt))
        df = df.sort_values("tier", key=lambda x: x.map(TIER_RANK)).reset_index(drop=True)
        df["share"] = df["customers"] / df["customers"].sum()
        return df[["tier", "customers", "share", "mean_clv", "mean_churn_risk", "mean_p_purchase", "at_risk"]]

    def migration(self, before: Batch, after: Batch) -> pd.DataFrame:
        """Customers per (tier before, tier after), over customers scored in both batches."""
        import sqlalchemy as sa

        a, b = self.scores.alias("a"), self.scores.alias("b")
        stmt = (
            sa.select(a.c.tier.label("tier_before"), b.c.tier.label("tier_after"), sa.func.count().label("customers"))
            .join(b, a.c.customer_id == b.c.customer_id)
            .where(a.c.batch_id == before.batch_id, b.c.batch_id == after.batch_id)
            .group_by(a.c.tier, b.c.tier)
        )
        df = pd.DataFrame(self._run(stmt))
        if df.empty:
            return pd.DataFrame(0, index=list(TIERS), columns=list(TIERS))
        return (
            df.pivot(index="tier_before", columns="tier_after", values="customers")
            .reindex(index=list(TIERS), columns=list(TIERS))
            .fillna(0)
            .astype(int)
        )
