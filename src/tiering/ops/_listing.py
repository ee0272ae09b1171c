"""A tier's members, one page at a time: the page's rows, the total, and the cursor or offset of the next page.

The rows, their order and their filter are the store's listing SQL (``tiering.store``: ``members``,
``listing_order``, ``keyset_parts``); the CSV export (``tiering.ops._export``) reads the same statements.
"""

from __future__ import annotations

import datetime as dt

from tiering.exceptions import ConfigError
from tiering.ops._cursor import encode_cursor, resolve_listing
from tiering.ops._input import check_flag, check_rows, check_tier
from tiering.ops._records import batch_record, clean
from tiering.store import Batch, ScoresStore, keyset_parts, listing_order, members, read_parts

# columns of a tier listing (page rows and CSV export), in this order
LIST_COLUMNS = (
    "customer_id",
    "tier",
    "clv",
    "churn_risk",
    "p_purchase",
    "p_alive",
    "expected_purchases",
    "expected_spend",
    "engagement_score",
    "next_tier",
    "next_tier_proba",
    "rfm_segment",
    "r_score",
    "f_score",
    "m_score",
    "at_risk",
    "koc_candidate",
    "lapsed_buyer",
    "koc_score",
    "tier_reason",
    # the CLV's 80% interval: added last, so a reader of the CSV by position is not thrown off
    "clv_p10",
    "clv_p90",
)


def check_listing(
    tier: str | None, limit: int | None, offset: int | None, cursor: str | None, lapsed, starts: str
) -> tuple[int, bool | None]:
    """The arguments of a listing checked (ConfigError naming the bad one); the offset (0 for None) and the lapsed flag.
    ``starts``: what the offset or cursor says where it starts ("page", "export")."""
    if tier is not None:
        check_tier(tier)
    check_rows(limit, "limit", minimum=1)
    offset = check_rows(offset, "offset") or 0
    if cursor is not None and offset:
        raise ConfigError(
            f"Give offset or cursor, not both (got offset {offset} and a cursor): a cursor already says where the {starts} starts."
        )
    return offset, check_flag(lapsed, "lapsed")


def tier_select(store: ScoresStore, batch: Batch, tier: str | None, at_risk: bool | None, lapsed: bool | None = None):
    """The LIST_COLUMNS of the members of ``tier`` (every tier: None) in the batch, unordered (the caller picks offset
    or keyset order); ``lapsed`` as in ``tiering.store.members``."""
    import sqlalchemy as sa

    s = store.scores
    # a column an older read-only store lacks (clv_p10, lapsed_buyer, ..) reads as NULL
    cols = [s.c[c] if c in s.c else sa.null().label(c) for c in LIST_COLUMNS]
    return members(sa.select(*cols), s, batch.batch_id, tier, at_risk, lapsed)


def listing_parts(store: ScoresStore, base, offset: int, after: tuple[float | None, str] | None) -> list:
    """The statements of a listing from its start, ``after`` a keyset position, or after ``offset`` rows (one OFFSET
    statement, which reads and skips them)."""
    if offset:
        return [base.order_by(*listing_order(store.scores)).offset(offset)]
    return keyset_parts(base, store.scores, after)


def listing_conn(store: ScoresStore):
    """A connection whose statements share one snapshot (SQLite: its BEGIN; PostgreSQL: REPEATABLE READ), so the parts
    of a keyset read and a page's count see the same rows even when a re-run replaces the batch meanwhile."""
    conn = store.engine.connect()
    if store.dialect == "postgresql":
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
    return conn


def _total(conn, base, cache: dict | None, key: tuple) -> int:
    """The members counted (``base`` is their select), or the count ``cache`` holds for ``key``."""
    import sqlalchemy as sa

    total = cache.get(key) if cache is not None else None
    if total is None:
        total = int(conn.execute(sa.select(sa.func.count()).select_from(base.subquery())).scalar_one())
        if cache is not None:
            if len(cache) >= 256:
                cache.clear()
            cache[key] = total
    return total


def tier_page(
    store: ScoresStore,
    tier: str | None,
    *,
    as_of: dt.date | None = None,
    at_risk: bool | None = None,
    limit: int | None = 50,
    offset: int | None = 0,
    cursor: str | None = None,
    cache: dict | None = None,
    lapsed: bool | None = None,
) -> dict:
    """One page of a tier's members in the listing order, with the total count and how to read the next page.

    ``cursor`` (the ``next_cursor`` of the page before) or ``offset`` (rows to skip) says where the page starts; not
    both. The answer's ``next_cursor`` (None: last page) continues by keyset; ``next_offset`` (offset pages only) by
    offset. ``limit`` None: every row from there on. ``cache``: a dict kept by the caller (the server) for the
    totals: a stored batch never changes, and counting a tier of 550,000 members takes ~0.1 s, a page by cursor
    under 1 ms. ``lapsed``: True lists only the lapsed buyers (the win-back list), False only the others, None all.
    """
    offset, lapsed = check_listing(tier, limit, offset, cursor, lapsed, "page")
    batch, after = resolve_listing(store, tier, as_of=as_of, at_risk=at_risk, cursor=cursor, lapsed=lapsed)
    base = tier_select(store, batch, tier, at_risk, lapsed)
    want = None if limit is None else limit + 1  # one row more than the page: is there a next page?
    key = ("tier_total", batch, tier, at_risk, lapsed)  # the whole Batch record: a re-run that reuses an id differs in finished_at
    try:
        with listing_conn(store) as conn:
            total = _total(conn, base, cache, key)
            rows = read_parts(lambda stmt: conn.execute(stmt).mappings().all(), listing_parts(store, base, offset, after), want)
    except store.db_errors() as exc:
        raise store.read_error(exc) from None
    more = limit is not None and len(rows) > limit  # limit None: want None, every row
    rows = rows[:limit] if more else rows
    last = rows[-1] if (more and rows) else None
    return {
        "tier": tier,
        "at_risk": at_risk,
        "lapsed": lapsed,
        "batch": batch_record(batch),
        "total": total,
        "limit": limit,
        "offset": None if cursor is not None else offset,
        "next_offset": offset + len(rows) if more and cursor is None else None,
        "cursor": cursor,
        "next_cursor": encode_cursor(batch, tier, at_risk, last["clv"], last["customer_id"], lapsed) if last else None,
        "items": [{k: clean(v) for k, v in r.items()} for r in rows],
    }
