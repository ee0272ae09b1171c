"""The ops read model over the scores store: one customer's card, a tier's members, the tier mix and migration.

Read-only, and the one answer the command line (``tiering tiers ...``), the REST API and web page
(``tiering.serve``) and the report give to the same question. Every query is SQLAlchemy Core over the
store's own tables or one of its SQL aggregates (``ScoresStore.tier_counts``, ``ScoresStore.migration``);
values are bound parameters, never formatted into SQL. Batches: the latest complete batch unless an
``as_of`` is given; a store only ever shows complete batches (see ``tiering.store``).

- :func:`resolve_batch`, :func:`previous_batch`: which batch a question is about.
- :func:`customer_card`: one customer's scores, tier label, reason and action, and tier history.
- :func:`tier_page` (a page with its total, next cursor and next offset) and :func:`iter_tier_csv` (a streamed CSV
  export whose text cells go through :func:`csv_cell`, so no spreadsheet runs a formula); both read by keyset
  from a ``cursor`` (:func:`encode_cursor`, :func:`decode_cursor`, :func:`resolve_listing`) or by ``offset``.
- :func:`tier_mix`, :func:`migration` (the record of ``tiering.migration.summarize_counts``, counted in
  the database) and :func:`summary` (both, with the previous scoring date, and the tier changes the
  batch's hysteresis avoided, ``flips_avoided``).

The checks of what a caller passes (:func:`check_customer_id`, :func:`check_tier`, :func:`check_rows`,
:func:`check_format`, :func:`parse_as_of`) live here so the CLI, the API and the page refuse the same
input with the same words.
"""

from __future__ import annotations

import base64
import copy
import csv
import datetime as dt
import functools
import io
import itertools
import json
import math
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from tiering.exceptions import ConfigError, TieringError
from tiering.ladder import TIER_LADDER, WIN_BACK_ACTION, Tier
from tiering.migration import summarize_counts
from tiering.schemas import SCORES_COLUMNS, TIER_PROBA_COLUMNS, TIERS
from tiering.store import ID_MAX_LENGTH, Batch, ScoresStore, _redact, batch_from_row

_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

# what a customer id may be (the store's own column width; see ``tiering.store``): any non-empty text
# without control characters. Ids are compared exactly as stored (Unicode, leading zeros and inner
# spaces kept, so '007' and '7' are two customers); a lookup always binds the id as a parameter.
CUSTOMER_ID_MAX_LENGTH = ID_MAX_LENGTH
# the largest row count, limit or offset a query takes: a signed 64-bit integer (SQLite and PostgreSQL)
MAX_ROWS = 2**63 - 1
FORMATS = ("table", "csv", "json")  # of a tier listing (the API takes json and csv)
# a CSV cell starting with one of these is run as a formula by spreadsheets (OWASP "CSV injection")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

# columns of a tier listing (page rows and CSV export), in this order
LIST_COLUMNS = ("customer_id", "tier", "clv", "churn_risk", "p_purchase", "p_alive", "expected_purchases",
                "expected_spend", "engagement_score", "next_tier", "next_tier_proba", "rfm_segment", "r_score",
                "f_score", "m_score", "at_risk", "koc_candidate", "lapsed_buyer", "koc_score", "tier_reason",
                # the CLV's 80% interval: added last, so a reader of the CSV by position is not thrown off
                "clv_p10", "clv_p90")


class NotFoundError(TieringError, LookupError):
    """The customer, tier or batch asked for is not in the scores store."""


# ---- checks of what a caller passes ----------------------------------------------------------------
def check_customer_id(customer_id: str) -> str:
    """The id as given; ConfigError (bad input) when no stored id can look like it.

    Refused: empty or blank text, more than CUSTOMER_ID_MAX_LENGTH characters, control characters
    (tab, newline, NUL, ...) and text that is not valid Unicode (undecodable bytes on a command line).
    """
    cid = str(customer_id)
    problem = None
    if not cid.strip():
        problem = "it is empty"
    elif len(cid) > CUSTOMER_ID_MAX_LENGTH:
        problem = f"it has {len(cid):,} characters, more than the {CUSTOMER_ID_MAX_LENGTH} an id can have"
    elif bad := next((ch for ch in cid if unicodedata.category(ch) in ("Cc", "Cs")), None):
        problem = f"it contains the control or undecodable character U+{ord(bad):04X}"
    if problem:
        shown = cid if len(cid) <= 80 else cid[:80] + "..."
        raise ConfigError(f"Customer id {shown!r} is not valid: {problem}. An id is 1 to {CUSTOMER_ID_MAX_LENGTH} "
                          "characters of text without control characters, exactly as in the scores store "
                          "(percent-encode it in a URL).")
    return cid


def check_tier(tier: str) -> str:
    if tier not in TIERS:
        raise ConfigError(f"Unknown tier {tier!r}; tiers are {list(TIERS)}.")
    return tier


def check_rows(value: int | None, name: str, *, minimum: int = 0, maximum: int = MAX_ROWS) -> int | None:
    """A limit or offset: None, or a whole number in [minimum, maximum]; ConfigError naming ``name`` otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be a whole number from {minimum} to {maximum:,}; got {value!r}.")
    return value


def _check_flag(value, name: str) -> bool | None:
    """None, True or False (numpy booleans too); anything else is a ConfigError naming ``name``."""
    if value is None or isinstance(value, bool) or type(value).__name__ == "bool_":
        return None if value is None else bool(value)
    raise ConfigError(f"{name} must be true, false or left out; got {value!r}.")


def check_format(fmt: str, name: str = "--format", choices: tuple[str, ...] = FORMATS) -> str:
    if fmt not in choices:
        raise ConfigError(f"{name} must be {', '.join(choices[:-1])} or {choices[-1]}; got {fmt!r}.")
    return fmt


def parse_as_of(value: str | dt.date | None, name: str = "--as-of") -> dt.date | None:
    """A scoring date written YYYY-MM-DD (nothing else: no timestamps, no numbers); None stays None."""
    if value is None or isinstance(value, dt.date):
        return value
    text = str(value)
    if _DATE_RE.fullmatch(text):
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            pass
    shown = text if len(text) <= 40 else text[:40] + "..."
    raise ConfigError(f"{name} must be a date as YYYY-MM-DD; got {shown!r}.")


def csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet cannot run: text starting with = + - @ tab or CR gets a leading ' (OWASP).

    Only text is changed; numbers (a negative CLV, say) stay numbers, None becomes an empty field.
    """
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


# ---- helpers --------------------------------------------------------------------------------------
_PLAIN = frozenset({str, int, bool})  # JSON-ready as they are (the common case, answered first)


def _clean(value: Any) -> Any:
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


def _by_name(ladder: tuple[Tier, ...] | None) -> dict[str, Tier]:
    """Tier texts by name: the given ladder (config overrides applied, see ``tiering.ladder.ladder``) or the defaults."""
    return {t.name: t for t in (ladder or TIER_LADDER)}


def _batch_dict(batch: Batch) -> dict:
    return {"batch_id": batch.batch_id, "as_of": batch.as_of.isoformat(), "model_name": batch.model_name,
            "model_version": batch.model_version, "rows": batch.rows, "finished_at": batch.finished_at.isoformat(),
            "flips_avoided": batch.flips_avoided}


def _newest(batches: Iterable[Batch]) -> Batch:
    """Of several batches, the one a reader sees: latest as_of, then the last finished (a re-run), then the last written."""
    return max(batches, key=lambda b: (b.as_of, b.finished_at, b.batch_id))


def _run(store: ScoresStore, stmt) -> Sequence[Mapping[Any, Any]]:
    return store._run(stmt)  # the store's read path: its connection handling and error messages


# ---- batches --------------------------------------------------------------------------------------
def resolve_batch(store: ScoresStore, as_of: dt.date | None = None, batches: list[Batch] | None = None) -> Batch:
    """The latest complete batch, of ``as_of`` if given. NotFoundError when there is none."""
    batches = store.batches_list() if batches is None else batches
    if not batches:
        raise NotFoundError(f"The scores store {_redact(store.url)} holds no batch yet. Run `tiering predict --as-of DATE` "
                            "(or `tiering demo`) first.")
    if as_of is None:
        return _newest(batches)
    same = [b for b in batches if b.as_of == as_of]
    if not same:
        dates = sorted({b.as_of.isoformat() for b in batches})
        raise NotFoundError(f"The scores store holds no batch as of {as_of.isoformat()}; scoring dates are {dates}.")
    return _newest(same)


def previous_batch(batches: list[Batch], batch: Batch) -> Batch | None:
    """The batch a reader sees at the scoring date before ``batch``'s; None when there is none."""
    earlier = [b for b in batches if b.as_of < batch.as_of]
    return _newest(earlier) if earlier else None


# ---- one customer ---------------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def _customer_statements(batches, scores):
    """Built once per store: the batch list and every stored row of one customer (by the customer_id index)."""
    import sqlalchemy as sa

    return (sa.select(batches),
            sa.select(scores).where(scores.c.customer_id.in_(sa.bindparam("ids", expanding=True))))


@functools.lru_cache(maxsize=16)
def _customer_sqlite_sql(batches, scores, dialect):
    """SQLite: the same two reads as SQL text for the driver, with SQLAlchemy's own converters of each column's type
    (dates, timestamps, booleans), so a card reads the same values while a lookup skips SQLAlchemy's per-statement
    work (connection events, compiled-cache lookup, result metadata: ~0.2 ms of a ~0.35 ms read)."""
    import sqlalchemy as sa

    out = []
    for stmt in (sa.select(batches),
                 sa.select(scores).where(scores.c.customer_id.in_([sa.bindparam("id1"), sa.bindparam("id2")]))):
        compiled = stmt.compile(dialect=dialect)
        cols = list(stmt.selected_columns)
        converters = tuple((i, proc) for i, c in enumerate(cols)
                           if (proc := c.type.dialect_impl(dialect).result_processor(dialect, None)) is not None)
        out.append((compiled.string, tuple(compiled.positiontup or ()), tuple(c.name for c in cols), converters))
    return tuple(out)


def _sqlite_dicts(rows: list, names: tuple[str, ...], converters: tuple) -> list[dict]:
    out = []
    for row in rows:
        values = list(row)
        for i, proc in converters:
            values[i] = proc(values[i])
        out.append(dict(zip(names, values)))
    return out


def _customer_rows(store: ScoresStore, ids: list[str]) -> tuple[list[Batch], Sequence[Mapping[Any, Any]]]:
    """Two indexed reads on one connection, in one read transaction: the batch list, and the rows of these ids
    (one or two spellings of one id) in every batch."""
    try:
        if store.dialect == "sqlite":
            (b_sql, _, b_names, b_conv), (r_sql, r_pos, r_names, r_conv) = _customer_sqlite_sql(
                store.batches, store.scores, store.engine.dialect)
            params = {"id1": ids[0], "id2": ids[-1]}
            raw = store.engine.raw_connection()  # pooled; returned (and rolled back) by close()
            try:
                dbapi = raw.driver_connection
                assert dbapi is not None  # a checked-out pooled connection always holds its DBAPI connection
                cur = raw.cursor()
                cur.execute("BEGIN")  # one snapshot for both reads (the store's connections run in autocommit mode)
                try:
                    batch_rows = cur.execute(b_sql).fetchall()
                    found_rows = cur.execute(r_sql, [params[n] for n in r_pos]).fetchall()
                finally:
                    dbapi.rollback()
                    cur.close()
            finally:
                raw.close()
            batches = [batch_from_row(r) for r in _sqlite_dicts(batch_rows, b_names, b_conv)]
            return batches, _sqlite_dicts(found_rows, r_names, r_conv)
        batches_stmt, rows_stmt = _customer_statements(store.batches, store.scores)
        with store.engine.connect() as conn:
            batches = [batch_from_row(r) for r in conn.execute(batches_stmt).mappings()]
            found = conn.execute(rows_stmt, {"ids": ids}).mappings().all()
    except store.db_errors() as exc:
        raise store.read_error(exc) from None
    return batches, found


def _history(batches: list[Batch], rows: dict) -> list[dict]:
    """The customer's tier at every scoring date: one batch per as_of (the one a reader sees), oldest first."""
    per_date = [_newest(same) for _, same in itertools.groupby(sorted(batches, key=lambda b: b.as_of), key=lambda b: b.as_of)]
    return [{"as_of": b.as_of.isoformat(), "model_version": b.model_version, "tier": rows[b.batch_id]["tier"],
             "churn_risk": _clean(rows[b.batch_id]["churn_risk"]), "clv": _clean(rows[b.batch_id]["clv"]),
             "at_risk": rows[b.batch_id]["at_risk"]} for b in per_date if b.batch_id in rows]


def customer_card(store: ScoresStore, customer_id: str, as_of: dt.date | None = None, *,
                  ladder: tuple[Tier, ...] | None = None) -> dict:
    """One customer in the batch: scores, tier label, description and recommended action, and the tier at every scoring date.

    Two indexed reads on one connection, so a lookup stays cheap on a store of millions of customers.
    """
    cid = check_customer_id(customer_id)
    # the id exactly as given; an id pasted with blanks around it also finds the stored id without them
    ids = list(dict.fromkeys([cid, cid.strip()]))
    batches, found = _customer_rows(store, ids)
    if found:
        cid = cid if any(r["customer_id"] == cid for r in found) else ids[-1]
    rows = {r["batch_id"]: r for r in found if r["customer_id"] == cid}
    batch = resolve_batch(store, as_of, batches)
    if batch.batch_id not in rows:
        raise NotFoundError(f"Customer {cid!r} is not in the scoring batch as of {batch.as_of.isoformat()} "
                            f"({batch.rows:,} customers, model {batch.model_name} v{batch.model_version}). Check the id.")
    row = rows[batch.batch_id]
    texts = _by_name(ladder)
    tier = texts.get(row["tier"])
    # every scores column; one a batch of an older store lacks (lapsed_buyer, koc_score, p_core ..) is None
    card = {k: _clean(row.get(k)) for k in SCORES_COLUMNS}
    lapsed = bool(card["lapsed_buyer"])
    tier_action = tier.action if tier else ""
    card |= {"as_of": batch.as_of.isoformat(), "model_name": batch.model_name, "model_version": batch.model_version,
             "tier_label": tier.label if tier else row["tier"], "tier_description": tier.description if tier else "",
             # a lapsed buyer (bought before, no longer likely to buy) gets the win-back action; its tier's stays
             "action": WIN_BACK_ACTION if lapsed else tier_action, "tier_action": tier_action,
             # P(tier) in ladder order; None for a batch scored before the tier probabilities existed
             "tier_probabilities": {t: card[c] for t, c in zip(TIERS, TIER_PROBA_COLUMNS)},
             "next_tier_label": texts[row["next_tier"]].label if row["next_tier"] in texts else row["next_tier"],
             "history": _history(batches, rows)}
    return card


# ---- a tier's members -----------------------------------------------------------------------------
# The listing order (``tiering.store.listing_order``): highest CLV first, ties by customer_id, customers without a CLV
# (NULL) last, by customer_id; the same on SQLite and PostgreSQL. A page is read either by ``offset`` (kept: it reads
# and skips every row before the page) or by ``cursor``, the ``next_cursor`` of the page before: an opaque, URL-safe
# token holding the batch, the tier and at-risk filter it was given out for, and the last row's exact CLV (as
# float.hex, so no digit is lost) and customer id. A cursor page seeks in the listing index (``keyset_parts``): as
# cheap at row 1,000,000 as at row 1. It also pins its scoring batch, so a walk started before a new batch landed
# ends on the batch it started on.
_CURSOR_VERSION = 1
CURSOR_MAX_LENGTH = 4 * (CUSTOMER_ID_MAX_LENGTH * 4 + 200) // 3  # base64 of an id of 4-byte characters and the rest


def _tier_select(store: ScoresStore, batch: Batch, tier: str | None, at_risk: bool | None, lapsed: bool | None = None):
    """The members of ``tier`` (every tier: None) in the batch, unordered (the caller picks offset or keyset order).

    ``lapsed``: True keeps the lapsed buyers (``lapsed_buyer`` true: bought before, no longer active; the win-back
    list), False the rest (``lapsed_buyer`` false or unknown); a store written before the flag existed has none."""
    import sqlalchemy as sa

    s = store.scores
    # a column an older read-only store lacks (clv_p10, lapsed_buyer, ..) reads as NULL
    cols = [s.c[c] if c in s.c else sa.null().label(c) for c in LIST_COLUMNS]
    stmt = sa.select(*cols).where(s.c.batch_id == batch.batch_id)
    if tier is not None:
        stmt = stmt.where(s.c.tier == check_tier(tier))
    if at_risk is not None:
        stmt = stmt.where(s.c.at_risk == at_risk)
    if lapsed is not None:
        if "lapsed_buyer" not in s.c:
            stmt = stmt.where(sa.false()) if lapsed else stmt
        else:
            flag = s.c.lapsed_buyer
            stmt = stmt.where(flag == sa.true() if lapsed else sa.or_(flag == sa.false(), flag.is_(None)))
    return stmt


def encode_cursor(batch: Batch, tier: str | None, at_risk: bool | None, clv: float | None, customer_id: str,
                  lapsed: bool | None = None) -> str:
    """The cursor of the position just after the row (clv, customer_id) of a listing (see above); the ``lapsed``
    filter rides along as a seventh field only when set (cursors without it are unchanged)."""
    clv_text = None if clv is None else float(clv).hex()
    fields = [_CURSOR_VERSION, batch.batch_id, tier, at_risk, clv_text, customer_id] + ([lapsed] if lapsed is not None else [])
    payload = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(payload.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str, name: str = "cursor") -> tuple[int, str | None, bool | None, tuple[float | None, str]]:
    """(batch_id, tier, at_risk, (clv, customer_id)) of a cursor; ConfigError naming ``name`` when it is not one.
    The lapsed filter it was given out for: :func:`cursor_lapsed`."""
    return _decode_cursor(cursor, name)[:4]


def cursor_lapsed(cursor: str, name: str = "cursor") -> bool | None:
    """The ``lapsed`` filter of the listing a cursor was given out for (None: no filter)."""
    return _decode_cursor(cursor, name)[4]


def _decode_cursor(cursor: str, name: str):
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
        if (version != _CURSOR_VERSION or type(batch_id) is not int or not (tier is None or tier in TIERS)
                or at_risk not in (None, True, False) or not isinstance(cid, str) or not cid
                or len(cid) > CUSTOMER_ID_MAX_LENGTH or not (clv_text is None or isinstance(clv_text, str))):
            raise ValueError
        clv = None if clv_text is None else float.fromhex(clv_text)
        if clv is not None and math.isnan(clv):
            raise ValueError
    except (ValueError, TypeError, UnicodeError, OverflowError):
        raise ConfigError(f"{name} {shown!r} is not a cursor of a tier listing. Pass the next_cursor of the previous "
                          f"page unchanged, or start again without {name}.") from None
    return batch_id, tier, at_risk, (clv, cid), lapsed


def resolve_listing(store: ScoresStore, tier: str | None, *, as_of: dt.date | None = None, at_risk: bool | None = None,
                    cursor: str | None = None, name: str = "cursor", lapsed: bool | None = None
                    ) -> tuple[Batch, tuple[float | None, str] | None]:
    """The batch a listing reads and the keyset position it starts after (None: from its first row).

    Without a cursor: the latest complete batch (of ``as_of``). With one: the cursor's batch, which must still be in
    the store, be of ``as_of`` if given, and have been given out for this tier, at-risk and lapsed filter
    (ConfigError naming ``name`` otherwise).
    """
    if cursor is None:
        return resolve_batch(store, as_of), None
    batch_id, c_tier, c_risk, after, c_lapsed = _decode_cursor(cursor, name)
    if (c_tier, c_risk, c_lapsed) != (tier, at_risk, lapsed):
        def what(t, r, la):
            return (f"tier {t or 'all'!r}" + ("" if r is None else f" with at_risk={str(r).lower()}")
                    + ("" if la is None else f" with lapsed={str(la).lower()}"))

        raise ConfigError(f"{name} was given out for the listing of {what(c_tier, c_risk, c_lapsed)}, not of "
                          f"{what(tier, at_risk, lapsed)}. Pass it with the same tier, at_risk and lapsed, or start "
                          f"again without {name}.")
    batch = next((b for b in store.batches_list() if b.batch_id == batch_id), None)
    if batch is None:
        raise ConfigError(f"{name} belongs to a scoring batch that is no longer in the store (a re-run replaced it). "
                          f"Start the listing again without {name}.")
    if as_of is not None and batch.as_of != as_of:
        raise ConfigError(f"{name} belongs to the scoring batch as of {batch.as_of.isoformat()}, not {as_of.isoformat()}. "
                          f"Pass the same as_of, or start again without {name}.")
    return batch, after


def _listing_conn(store: ScoresStore):
    """A connection whose statements share one snapshot (SQLite: its BEGIN; PostgreSQL: REPEATABLE READ), so the parts
    of a keyset read and a page's count see the same rows even when a re-run replaces the batch meanwhile."""
    conn = store.engine.connect()
    if store.dialect == "postgresql":
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
    return conn


def tier_page(store: ScoresStore, tier: str | None, *, as_of: dt.date | None = None, at_risk: bool | None = None,
              limit: int | None = 50, offset: int | None = 0, cursor: str | None = None, cache: dict | None = None,
              lapsed: bool | None = None) -> dict:
    """One page of a tier's members in the listing order, with the total count and how to read the next page.

    ``cursor`` (the ``next_cursor`` of the page before) or ``offset`` (rows to skip) says where the page starts; not
    both. The answer's ``next_cursor`` (None: last page) continues by keyset; ``next_offset`` (offset pages only) by
    offset. ``limit`` None: every row from there on. ``cache``: a dict kept by the caller (the server) for the
    totals: a stored batch never changes, and counting a tier of 550,000 members takes ~0.1 s, a page by cursor
    under 1 ms. ``lapsed``: True lists only the lapsed buyers (the win-back list), False only the others, None all.
    """
    import sqlalchemy as sa

    from tiering.store import keyset_parts, listing_order

    if tier is not None:
        check_tier(tier)
    check_rows(limit, "limit", minimum=1)
    offset = check_rows(offset, "offset") or 0
    if cursor is not None and offset:
        raise ConfigError(f"Give offset or cursor, not both (got offset {offset} and a cursor): a cursor already says "
                          "where the page starts.")
    lapsed = _check_flag(lapsed, "lapsed")
    batch, after = resolve_listing(store, tier, as_of=as_of, at_risk=at_risk, cursor=cursor, lapsed=lapsed)
    base = _tier_select(store, batch, tier, at_risk, lapsed)
    want = None if limit is None else limit + 1  # one row more than the page: is there a next page?
    key = ("tier_total", batch, tier, at_risk, lapsed)  # the whole Batch record: a re-run that reuses an id differs in finished_at
    try:
        with _listing_conn(store) as conn:
            total = cache.get(key) if cache is not None else None
            if total is None:
                total = int(conn.execute(sa.select(sa.func.count()).select_from(base.subquery())).scalar_one())
                if cache is not None:
                    if len(cache) >= 256:
                        cache.clear()
                    cache[key] = total
            if cursor is None and offset:
                stmt = base.order_by(*listing_order(store.scores)).offset(offset)
                rows = conn.execute(stmt if want is None else stmt.limit(want)).mappings().all()
            else:
                rows = []
                for part in keyset_parts(base, store.scores, after):
                    if want is not None and len(rows) >= want:
                        break
                    rows += conn.execute(part if want is None else part.limit(want - len(rows))).mappings().all()
    except store.db_errors() as exc:
        raise store.read_error(exc) from None
    more = limit is not None and len(rows) > limit  # limit None: want None, every row
    rows = rows[:limit] if more else rows
    last = rows[-1] if (more and rows) else None
    return {"tier": tier, "at_risk": at_risk, "lapsed": lapsed, "batch": _batch_dict(batch), "total": total, "limit": limit,
            "offset": None if cursor is not None else offset,
            "next_offset": offset + len(rows) if more and cursor is None else None,
            "cursor": cursor,
            "next_cursor": encode_cursor(batch, tier, at_risk, last["clv"], last["customer_id"], lapsed) if last else None,
            "items": [{k: _clean(v) for k, v in r.items()} for r in rows]}


def iter_tier_csv(store: ScoresStore, tier: str | None, *, batch: Batch, at_risk: bool | None = None,
                  limit: int | None = None, offset: int = 0, chunk_rows: int = 5_000,
                  cursor: str | None = None, lapsed: bool | None = None) -> Iterator[str]:
    """CSV text of a tier's members (the listing order) in chunks, read from the store as it goes.

    From the first member, after ``cursor`` (a page's ``next_cursor``: an index seek, however deep) or after
    ``offset`` rows (read and skipped); not both. ``batch``: the one to export (``resolve_listing`` gives it; a
    cursor must be of it). The arguments are checked and the query is started when the iterator is created, so bad
    input and an unreadable store raise here, before any text goes out (a server can still answer with an error
    instead of a CSV cut after its header). Text cells go through ``csv_cell`` (no spreadsheet formulas).
    ``lapsed``: as in :func:`tier_page` (a cursor must be of the same filter).
    """
    from tiering.store import keyset_parts, listing_order

    if tier is not None:
        check_tier(tier)
    check_rows(limit, "limit", minimum=1)
    offset = check_rows(offset, "offset") or 0
    check_rows(chunk_rows, "chunk_rows", minimum=1)
    if cursor is not None and offset:
        raise ConfigError(f"Give offset or cursor, not both (got offset {offset} and a cursor): a cursor already says "
                          "where the export starts.")
    lapsed = _check_flag(lapsed, "lapsed")
    after = None
    if cursor is not None:
        batch_id, c_tier, c_risk, after, c_lapsed = _decode_cursor(cursor, "cursor")
        if (c_tier, c_risk, c_lapsed) != (tier, at_risk, lapsed):
            resolve_listing(store, tier, at_risk=at_risk, cursor=cursor, lapsed=lapsed)  # raises, saying what differs
        if batch_id != batch.batch_id:
            raise ConfigError(f"cursor belongs to another scoring batch than the one exported (as of "
                              f"{batch.as_of.isoformat()}). Export the batch the cursor came from "
                              "(ops.resolve_listing gives it), or start again without cursor.")
    base = _tier_select(store, batch, tier, at_risk, lapsed)
    if offset:
        parts = [base.order_by(*listing_order(store.scores)).offset(offset)]
    else:
        parts = keyset_parts(base, store.scores, after)
    conn = _listing_conn(store)
    try:
        streamed = conn.execution_options(stream_results=True, yield_per=chunk_rows)
        first = streamed.execute(parts[0] if limit is None else parts[0].limit(limit))
    except store.db_errors() as exc:
        conn.close()
        raise store.read_error(exc) from None
    except BaseException:
        conn.close()
        raise
    chunks = _csv_chunks(store, conn, streamed, first, parts[1:], limit, batch)
    header = next(chunks)  # started, so closing the iterator unread (a client gone) closes the connection too
    return itertools.chain([header], chunks)


def _csv_chunks(store: ScoresStore, conn, streamed, first, rest: list, limit: int | None, batch: Batch) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*LIST_COLUMNS, "as_of", "model_version"])
    tail = [batch.as_of.isoformat(), csv_cell(batch.model_version)]
    written = 0
    try:
        yield buf.getvalue()
        result = first
        while True:
            for part in result.partitions():
                buf.seek(0)
                buf.truncate()
                writer.writerows([*map(csv_cell, r), *tail] for r in part)
                written += len(part)
                yield buf.getvalue()
            if not rest or (limit is not None and written >= limit):
                break
            stmt, rest = rest[0], rest[1:]  # the next keyset part (customers without a CLV), same snapshot
            result = streamed.execute(stmt if limit is None else stmt.limit(limit - written))
    except store.db_errors() as exc:
        raise store.read_error(exc) from None
    finally:
        conn.close()


# ---- the tier mix and how tiers moved -------------------------------------------------------------
def tier_mix(store: ScoresStore, batch: Batch, *, ladder: tuple[Tier, ...] | None = None) -> list[dict]:
    """Per tier (ladder order, every tier present even when empty): customers, share, means, at-risk count."""
    counts = {r["tier"]: r for r in store.tier_counts(batch).to_dict("records")}
    texts = _by_name(ladder)
    out = []
    for t in TIERS:
        r = counts.get(t, {})
        out.append({"tier": t, "label": texts[t].label, "action": texts[t].action,
                    "customers": int(r.get("customers", 0)), "share": _clean(float(r.get("share", 0.0))),
                    "mean_clv": _clean(r.get("mean_clv")), "mean_churn_risk": _clean(r.get("mean_churn_risk")),
                    "mean_p_purchase": _clean(r.get("mean_p_purchase")), "at_risk": int(r.get("at_risk") or 0)})
    return out


def migration(store: ScoresStore, before: Batch, after: Batch) -> dict:
    """How tiers moved from batch ``before`` to batch ``after``, counted in the database (``ScoresStore.migration``).

    The record of ``tiering.migration.summarize_counts``: the same keys and numbers as
    ``tiering.migration.migration_between`` over the two batches read into memory.
    """
    counts = store.migration(before, after)
    both = int(counts.to_numpy().sum())
    return summarize_counts(counts, entered=after.rows - both, left=before.rows - both,
                            from_as_of=before.as_of.isoformat(), to_as_of=after.as_of.isoformat())


def summary(store: ScoresStore, as_of: dt.date | None = None, *, ladder: tuple[Tier, ...] | None = None,
            cache: dict | None = None) -> dict:
    """Tier mix of the batch (latest unless ``as_of``) and of the previous scoring date, and the migration between them.

    ``cache``: a dict kept by the caller (the server). A stored batch never changes (a re-run replaces it
    with a new batch record), so the answer for a pair of batches is computed once: on a base of millions the
    aggregation and the migration join take seconds, a cached answer microseconds.
    """
    batches = store.batches_list()
    batch = resolve_batch(store, as_of, batches)
    prev = previous_batch(batches, batch)
    dates = sorted({b.as_of.isoformat() for b in batches})
    key = (batch, prev, tuple(ladder or TIER_LADDER))  # whole Batch records: a re-run that reuses an id differs in finished_at
    if cache is not None and key in cache:
        return copy.deepcopy(cache[key]) | {"scoring_dates": dates}
    out: dict[str, Any] = {
        "as_of": batch.as_of.isoformat(), "batch": _batch_dict(batch), "tiers": tier_mix(store, batch, ladder=ladder),
        "previous_as_of": None, "previous_batch": None, "previous": None, "migration": None, "scoring_dates": dates,
        # tier changes the hysteresis avoided when this batch was scored (against the batch of its model before
        # it); None: not recorded (no hysteresis, or a batch of an older tiering)
        "flips_avoided": batch.flips_avoided}
    if prev is not None:
        out |= {"previous_as_of": prev.as_of.isoformat(), "previous_batch": _batch_dict(prev),
                "previous": tier_mix(store, prev, ladder=ladder), "migration": migration(store, prev, batch)}
        prev_share = {r["tier"]: r["share"] for r in out["previous"]}
        for r in out["tiers"]:
            r["share_change"] = r["share"] - prev_share[r["tier"]]
    if cache is not None:
        if len(cache) >= 32:
            cache.clear()
        cache[key] = copy.deepcopy(out)
    return out
