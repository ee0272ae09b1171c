"""A scoring batch as the store records it, and which batch a reader sees.

Several batches can share an as_of (models, versions, a re-run): a reader sees the newest of them, the latest as_of,
then the last finished (a re-run), then the last written. That rule is :func:`newest_batch`, used by the store's
readers and by ``tiering.ops``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Batch:
    batch_id: int
    as_of: dt.date
    model_name: str
    model_version: str
    rows: int
    finished_at: dt.datetime
    # tier changes the hysteresis avoided in this batch (tiering.predict); None: not recorded (an older store or
    # tiering, a run without a previous batch or with margin 0, the Spark engine)
    flips_avoided: int | None = None


def batch_from_row(row) -> Batch:
    """A Batch from a score_batches row (a mapping); a store without flips_avoided reads None."""
    return Batch(
        row["batch_id"], row["as_of"], row["model_name"], row["model_version"], row["rows"], row["finished_at"], row.get("flips_avoided")
    )


def newest_batch(batches: Iterable[Batch]) -> Batch:
    """Of several batches, the one a reader sees: latest as_of, then the last finished (a re-run), then the last written."""
    return max(batches, key=lambda b: (b.as_of, b.finished_at, b.batch_id))


def previous_batch(batches: list[Batch], batch: Batch) -> Batch | None:
    """The batch a reader sees at the scoring date before ``batch``'s; None when there is none."""
    earlier = [b for b in batches if b.as_of < batch.as_of]
    return newest_batch(earlier) if earlier else None
