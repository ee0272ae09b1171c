"""The SQL of a tier listing: its order, its filter, and reading it by offset or by keyset.

The order (pages, CSV exports, ``ScoresStore.list_tier``, ``tiering.ops``): highest CLV first, ties by customer_id,
and customers without a CLV (NULL) after every customer with one, by customer_id. SQLite sorts NULL lowest and
PostgreSQL highest, so the order is spelled out (``NULLS LAST``) and both databases agree; customer ids compare in
the database's collation (SQLite: binary; PostgreSQL: the column's, byte order under C / C.UTF-8). The index that
serves it is ``LISTING_INDEX`` (``tiering.store._schema``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def listing_order(scores) -> list:
    """ORDER BY of a tier listing in one statement (see above): an OFFSET page, or a whole export."""
    return [scores.c.clv.desc().nulls_last(), scores.c.customer_id]


def members(stmt, scores, batch_id: int, tier: str | None = None, at_risk: bool | None = None, lapsed: bool | None = None):
    """``stmt`` (a select of scores rows) narrowed to the members of ``tier`` (every tier: None) in one batch.

    ``at_risk``: True or False keeps the customers with that flag, None all. ``lapsed``: True keeps the lapsed buyers
    (``lapsed_buyer`` true: bought before, no longer active; the win-back list), False the rest (``lapsed_buyer``
    false or unknown), None all; a store written before the flag existed has no lapsed buyers.
    """
    import sqlalchemy as sa

    s = scores
    stmt = stmt.where(s.c.batch_id == batch_id)
    if tier is not None:
        stmt = stmt.where(s.c.tier == tier)
    if at_risk is not None:
        stmt = stmt.where(s.c.at_risk == at_risk)
    if lapsed is not None:
        if "lapsed_buyer" not in s.c:
            stmt = stmt.where(sa.false()) if lapsed else stmt
        else:
            flag = s.c.lapsed_buyer
            stmt = stmt.where(flag == sa.true() if lapsed else sa.or_(flag == sa.false(), flag.is_(None)))
    return stmt


def keyset_parts(stmt, scores, after: tuple[float | None, str] | None = None) -> list:
    """``stmt`` (a select of scores rows with its WHERE) as the statements whose results, one after the other, are the
    listing order (see above) from just after the row ``after`` = (clv, customer_id) on; every row from the start when
    ``after`` is None.

    Keyset pagination: each part seeks in the listing index instead of reading and skipping the rows before it (an
    OFFSET reads them all). The rows with a CLV come first (``clv <= c AND (clv < c OR customer_id > id)``: a range on
    the index, the tie rule on top), then the rows without one (``clv IS NULL AND customer_id > id``): two index
    seeks on SQLite and PostgreSQL alike, where one statement would need an OR that no index range serves.
    """
    import sqlalchemy as sa

    s = scores
    # each part orders by the whole listing order although it has one kind of clv: PostgreSQL uses the index's order
    # for an ORDER BY that matches it term by term (its NULLS LAST included), not for one that is merely equivalent
    valued = stmt.where(s.c.clv.is_not(None)).order_by(*listing_order(s))
    nulls = stmt.where(s.c.clv.is_(None)).order_by(*listing_order(s))  # = by customer_id, in the index's own terms
    if after is None:
        return [valued, nulls]
    clv, cid = after
    if clv is None:
        return [nulls.where(s.c.customer_id > cid)]
    return [valued.where(s.c.clv <= clv, sa.or_(s.c.clv < clv, s.c.customer_id > cid)), nulls]


def read_parts(execute: Callable[[object], Sequence], parts: list, limit: int | None) -> list:
    """The rows of ``parts`` (an OFFSET statement, or the keyset parts) one after the other, at most ``limit``
    (None: all): each part is asked only for the rows still missing, and not run at all once there are enough.
    ``execute(stmt)`` runs one statement and gives its rows."""
    rows: list = []
    for part in parts:
        if limit is not None and len(rows) >= limit:
            break
        rows += execute(part if limit is None else part.limit(limit - len(rows)))
    return rows
