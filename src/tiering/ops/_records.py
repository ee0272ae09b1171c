"""Which batch a question is about, and the JSON-ready pieces every answer of the read model is made of."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from tiering.exceptions import NotFoundError
from tiering.ladder import TIER_LADDER, Tier
from tiering.store import Batch, ScoresStore, newest_batch
from tiering.store._faults import redact

_PLAIN = frozenset({str, int, bool})  # JSON-ready as they are (the common case, answered first)


def clean(value: Any) -> Any:
    """JSON-ready: NaN -> None, dates -> ISO strings, numpy scalars -> Python."""
    if value is None or value.__class__ in _PLAIN:
        return value
    if value.__class__ is float:
        return value if math.isfinite(value) else None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


def tier_texts(ladder: tuple[Tier, ...] | None) -> dict[str, Tier]:
    """Tier texts by name: the given ladder (config overrides applied, see ``tiering.ladder.ladder``) or the defaults."""
    return {t.name: t for t in (ladder or TIER_LADDER)}


def batch_record(batch: Batch) -> dict:
    """A batch as the answers show it (JSON-ready)."""
    return {
        "batch_id": batch.batch_id,
        "as_of": batch.as_of.isoformat(),
        "model_name": batch.model_name,
        "model_version": batch.model_version,
        "rows": batch.rows,
        "finished_at": batch.finished_at.isoformat(),
        "flips_avoided": batch.flips_avoided,
    }


def scoring_dates(batches: list[Batch]) -> list[str]:
    """The dates the store holds batches of, oldest first, as YYYY-MM-DD."""
    return sorted({b.as_of.isoformat() for b in batches})


def resolve_batch(store: ScoresStore, as_of: dt.date | None = None, batches: list[Batch] | None = None) -> Batch:
    """The latest complete batch, of ``as_of`` if given. NotFoundError when there is none."""
    batches = store.batches_list() if batches is None else batches
    if not batches:
        raise NotFoundError(
            f"The scores store {redact(store.url)} holds no batch yet. Run `tiering predict --as-of DATE` (or `tiering demo`) first."
        )
    if as_of is None:
        return newest_batch(batches)
    same = [b for b in batches if b.as_of == as_of]
    if not same:
        raise NotFoundError(f"The scores store holds no batch as of {as_of.isoformat()}; scoring dates are {scoring_dates(batches)}.")
    return newest_batch(same)
