"""Reading scoring batches: the batch list, which batch a reader sees, a batch's rows, one customer, a tier listing.

Readers always see the latest complete batch (``newest_batch``) unless they ask for an as_of.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from tiering.exceptions import StoreError
from tiering.schemas import SCORES_COLUMNS, TIERS
from tiering.store._batches import Batch, batch_from_row, newest_batch
from tiering.store._batches import previous_batch as previous_of
from tiering.store._listing import keyset_parts, listing_order, members, read_parts
from tiering.store._open import StoreBase


def _frame(rows, batch: Batch | None = None) -> pd.DataFrame:
    """Scores rows as a frame with the batch's keys (as_of, model name and version); no rows: every column, empty."""
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=list(SCORES_COLUMNS))
    if batch is not None:
        df["as_of"], df["model_name"], df["model_version"] = batch.as_of, batch.model_name, batch.model_version
    return df


class BatchReader(StoreBase):
    """The reading part of ``ScoresStore``."""

    def batches_list(self) -> list[Batch]:
        import sqlalchemy as sa

        rows = self._run(sa.select(self.batches).order_by(self.batches.c.as_of, self.batches.c.finished_at))
        return [batch_from_row(r) for r in rows]

    def latest_batch(self, as_of: dt.date | None = None) -> Batch:
        """The latest complete batch (of the given as_of, if any)."""
        batches = [b for b in self.batches_list() if as_of is None or b.as_of == as_of]
        if not batches:
            where = f" for as_of {as_of}" if as_of else ""
            raise StoreError(f"The scores store {self.url} holds no batch{where}. Run `tiering predict --as-of DATE` first.")
        return newest_batch(batches)

    def previous_batch(self, batch: Batch) -> Batch | None:
        """The batch a reader sees at the scoring date before ``batch``'s; None when there is none."""
        return previous_of(self.batches_list(), batch)

    def previous_tiers(self, as_of: dt.date, model_name: str) -> tuple[Batch, pd.DataFrame] | None:
        """The latest complete batch of ``model_name`` (any version) with an as_of before ``as_of``, and its
        customer_id and tier per customer; None when there is none (the hysteresis of tiering.predict)."""
        import sqlalchemy as sa

        earlier = [b for b in self.batches_list() if b.as_of < as_of and b.model_name == str(model_name)]
        if not earlier:
            return None
        batch = newest_batch(earlier)
        s = self.scores
        rows = self._run(sa.select(s.c.customer_id, s.c.tier).where(s.c.batch_id == batch.batch_id))
        return batch, pd.DataFrame(rows, columns=["customer_id", "tier"])

    def read_batch(self, batch: Batch) -> pd.DataFrame:
        import sqlalchemy as sa

        s = self.scores
        df = _frame(self._run(sa.select(s).where(s.c.batch_id == batch.batch_id).order_by(s.c.customer_id)), batch)
        return df.reindex(columns=list(SCORES_COLUMNS))  # an older read-only store: None in the columns it lacks

    def get_customer(self, customer_id: str, as_of: dt.date | None = None) -> dict | None:
        import sqlalchemy as sa

        batch = self.latest_batch(as_of)
        rows = self._run(
            sa.select(self.scores).where(self.scores.c.batch_id == batch.batch_id, self.scores.c.customer_id == str(customer_id))
        )
        if not rows:
            return None
        batch_keys = {"as_of": batch.as_of, "model_name": batch.model_name, "model_version": batch.model_version}
        return dict.fromkeys(self.missing_columns.get("scores", ())) | dict(rows[0]) | batch_keys

    def customer_history(self, customer_id: str) -> pd.DataFrame:
        """The customer's tier at every scoring date (the batch a reader sees per as_of, ``newest_batch``'s rule)."""
        import sqlalchemy as sa

        b, s = self.batches, self.scores
        stmt = (
            sa.select(b.c.as_of, b.c.model_version, b.c.finished_at, s.c.tier, s.c.churn_risk, s.c.clv)
            .join(b, b.c.batch_id == s.c.batch_id)
            .where(s.c.customer_id == str(customer_id))
            .order_by(b.c.as_of, b.c.finished_at, b.c.batch_id)
        )
        df = pd.DataFrame(self._run(stmt))
        return df.drop_duplicates("as_of", keep="last").drop(columns="finished_at") if not df.empty else df

    def list_tier(
        self,
        tier: str | None = None,
        *,
        as_of: dt.date | None = None,
        at_risk: bool | None = None,
        limit: int | None = 100,
        offset: int = 0,
        after: tuple[float | None, str] | None = None,
    ) -> pd.DataFrame:
        """The members of ``tier`` (every tier: None) in the listing order (highest CLV first, ties by id, no CLV last).

        ``after`` = (clv, customer_id) of the last row already read: the rows after it, found by keyset (an index
        seek, however deep) instead of ``offset`` (which reads and skips the rows before); give one or the other.
        """
        import sqlalchemy as sa

        if tier is not None and tier not in TIERS:
            raise StoreError(f"Unknown tier {tier!r}; tiers are {list(TIERS)}.")
        if after is not None and offset:
            raise StoreError("Give list_tier an offset or an `after` position, not both.")
        batch = self.latest_batch(as_of)
        stmt = members(sa.select(self.scores), self.scores, batch.batch_id, tier, at_risk)
        if after is None:
            parts = [stmt.order_by(*listing_order(self.scores)).offset(offset)]
        else:
            parts = keyset_parts(stmt, self.scores, after)
        return _frame(read_parts(self._run, parts, limit), batch).reindex(columns=list(SCORES_COLUMNS))
