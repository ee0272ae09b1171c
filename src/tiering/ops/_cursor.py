"""The cursor of a tier listing: where the next page starts, and which listing it belongs to.

The listing order (``tiering.store.listing_order``): highest CLV first, ties by customer_id, customers without a CLV
(NULL) last, by customer_id; the same on SQLite and PostgreSQL. A page is read either by ``offset`` (kept: it reads
and skips every row before the page) or by ``cursor``, the ``next_cursor`` of the page before: an opaque, URL-safe
token holding the batch, the tier and at-risk filter it was given out for, and the last row's exact CLV (as
float.hex, so no digit is lost) and customer id. A cursor page seeks in the listing index (``keyset_parts``): as
cheap at row 1,000,000 as at row 1. It also pins its scoring batch, so a walk started before a new batch landed
ends on the batch it started on.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import re

from tiering.exceptions import ConfigError
from tiering.ops._input import CUSTOMER_ID_MAX_LENGTH
from tiering.ops._records import resolve_batch
from tiering.schemas import TIERS
from tiering.store import Batch, ScoresStore

_CURSOR_VERSION = 1
CURSOR_MAX_LENGTH = 4 * (CUSTOMER_ID_MAX_LENGTH * 4 + 200) // 3  # base64 of an id of 4-byte characters and the rest


def encode_cursor(
    batch: Batch, tier: str | None, at_risk: bool | None, clv: float | None, customer_id: str, lapsed: bool | None = None
) -> str:
    """The cursor of the position just after the row (clv, customer_id) of a listing (see above); the ``lapsed``
    filter rides along as a seventh field only when set (cursors without it are unchanged)."""
    clv_text = None if clv is None else float(clv).hex()
    fields = [_CURSOR_VERSION, batch.batch_id, tier, at_risk, clv_text, customer_id] + ([lapsed] if lapsed is not None else [])
    payload = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(payload.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str, name: str = "cursor") -> tuple[int, str | None, bool | None, tuple[float | None, str]]:
    """(batch_id, tier, at_risk, (clv, customer_id)) of a cursor; ConfigError naming ``name`` when it is not one.
    The lapsed filter it was given out for: :func:`cursor_lapsed`."""
    return read_cursor(cursor, name)[:4]


def cursor_lapsed(cursor: str, name: str = "cursor") -> bool | None:
    """The ``lapsed`` filter of the listing a cursor was given out for (None: no filter)."""
    return read_cursor(cursor, name)[4]


def read_cursor(cursor: str, name: str):
    """(batch_id, tier, at_risk, (clv, customer_id), lapsed) of a cursor; ConfigError naming ``name`` when it is not one."""
    text = str(cursor)
    shown = text if len(text) <= 60 else text[:60] + "..."
    try:
        if not text or len(text) > CURSOR_MAX_LENGTH or not re.fullmatch(r"[A-Za-z0-9_-]+", text):
            raise ValueError
        fields = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(fields, list) or len(fields) not in (6, 7):
            raise ValueError
        version, batch_id, tier, at_risk, clv_text, cid = fields[:6]
        lapsed = fields[6] if len(fields) == 7 else None
        if len(fields) == 7 and type(lapsed) is not bool:
            raise ValueError
        if (
            version != _CURSOR_VERSION
            or type(batch_id) is not int
            or not (tier is None or tier in TIERS)
            or at_risk not in (None, True, False)
            or not isinstance(cid, str)
            or not cid
            or len(cid) > CUSTOMER_ID_MAX_LENGTH
            or not (clv_text is None or isinstance(clv_text, str))
        ):
            raise ValueError
        clv = None if clv_text is None else float.fromhex(clv_text)
        if clv is not None and math.isnan(clv):
            raise ValueError
    except (ValueError, TypeError, UnicodeError, OverflowError):
        raise ConfigError(
            f"{name} {shown!r} is not a cursor of a tier listing. Pass the next_cursor of the previous "
            f"page unchanged, or start again without {name}."
        ) from None
    return batch_id, tier, at_risk, (clv, cid), lapsed


def check_cursor_filter(name: str, given_for: tuple, asked: tuple) -> None:
    """ConfigError naming ``name`` unless the cursor was ``given_for`` the listing ``asked`` for: the same
    (tier, at_risk, lapsed)."""
    if given_for == asked:
        return

    def what(t, r, la):
        return (
            f"tier {t or 'all'!r}"
            + ("" if r is None else f" with at_risk={str(r).lower()}")
            + ("" if la is None else f" with lapsed={str(la).lower()}")
        )

    raise ConfigError(
        f"{name} was given out for the listing of {what(*given_for)}, not of "
        f"{what(*asked)}. Pass it with the same tier, at_risk and lapsed, or start "
        f"again without {name}."
    )


def resolve_listing(
    store: ScoresStore,
    tier: str | None,
    *,
    as_of: dt.date | None = None,
    at_risk: bool | None = None,
    cursor: str | None = None,
    name: str = "cursor",
    lapsed: bool | None = None,
) -> tuple[Batch, tuple[float | None, str] | None]:
    """The batch a listing reads and the keyset position it starts after (None: from its first row).

    Without a cursor: the latest complete batch (of ``as_of``). With one: the cursor's batch, which must still be in
    the store, be of ``as_of`` if given, and have been given out for this tier, at-risk and lapsed filter
    (ConfigError naming ``name`` otherwise).
    """
    if cursor is None:
        return resolve_batch(store, as_of), None
    batch_id, c_tier, c_risk, after, c_lapsed = read_cursor(cursor, name)
    check_cursor_filter(name, (c_tier, c_risk, c_lapsed), (tier, at_risk, lapsed))
    batch = next((b for b in store.batches_list() if b.batch_id == batch_id), None)
    if batch is None:
        raise ConfigError(
            f"{name} belongs to a scoring batch that is no longer in the store (a re-run replaced it). "
            f"Start the listing again without {name}."
        )
    if as_of is not None and batch.as_of != as_of:
        raise ConfigError(
            f"{name} belongs to the scoring batch as of {batch.as_of.isoformat()}, not {as_of.isoformat()}. "
            f"Pass the same as_of, or start again without {name}."
        )
    return batch, after
