"""The ops read model over the scores store: one customer's card, a tier's members, the tier mix and migration.

Read-only, and the one answer the command line (``tiering tiers ...``), the REST API and web page
(``tiering.serve``) and the report give to the same question. Every query is SQLAlchemy Core over the
store's own tables or one of its SQL aggregates (``ScoresStore.tier_counts``, ``ScoresStore.migration``);
values are bound parameters, never formatted into SQL. Batches: the latest complete batch unless an
``as_of`` is given; a store only ever shows complete batches (see ``tiering.store``).

- :func:`resolve_batch`, :func:`previous_batch`: which batch a question is about.
- :func:`customer_card`: one customer's scores, tier label, reason and action, and tier history.
- :func:`tier_page` (a page with its total and next offset) and :func:`iter_tier_csv` (a streamed CSV
  export whose text cells go through :func:`csv_cell`, so no spreadsheet runs a formula).
- :func:`tier_mix`, :func:`migration` (the record of ``tiering.migration.summarize_counts``, counted in
  the database) and :func:`summary` (both, with the previous scoring date, and the tier changes the
  batch's hysteresis avoided, ``flips_avoided``).

The checks of what a caller passes (:func:`check_customer_id`, :func:`check_tier`, :func:`check_rows`,
:func:`check_format`, :func:`parse_as_of`) live here so the CLI, the API and the page refuse the same
input with the same words.
"""

from __future__ import annotations

import copy
import csv
import datetime as dt
import functools
import io
import itertools
import math
import re
import unicodedata
from collections.abc import Iterable, Iterator
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
                "f_score", "m_score", "at_risk", "koc_candidate", "lapsed_buyer", "koc_score", "tier_reason")


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
def _clean(value: Any) -> Any:
    """JSON-ready: NaN -> None, dates -> ISO strings, numpy scalars -> Python."""
    if value is None:
        return None
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


def _run(store: ScoresStore, stmt) -> list:
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


def _customer_rows(store: ScoresStore, ids: list[str]) -> tuple[list[Batch], list]:
    """Two indexed reads on one connection: the batch list, and the rows of these ids in every batch."""
    batches_stmt, rows_stmt = _customer_statements(store.batches, store.scores)
    try:
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
def _tier_select(store: ScoresStore, batch: Batch, tier: str | None, at_risk: bool | None):
    """The members of ``tier`` (every tier: None) in the batch, highest CLV first (ties by id)."""
    import sqlalchemy as sa

    s = store.scores
    stmt = sa.select(*[s.c[c] for c in LIST_COLUMNS]).where(s.c.batch_id == batch.batch_id)
    if tier is not None:
        stmt = stmt.where(s.c.tier == check_tier(tier))
    if at_risk is not None:
        stmt = stmt.where(s.c.at_risk == at_risk)
    return stmt.order_by(s.c.clv.desc(), s.c.customer_id)


def tier_page(store: ScoresStore, tier: str | None, *, as_of: dt.date | None = None, at_risk: bool | None = None,
              limit: int = 50, offset: int = 0) -> dict:
    """One page of a tier's members, highest CLV first, with the total count and the next page's offset (None: last page)."""
    import sqlalchemy as sa

    if tier is not None:
        check_tier(tier)
    check_rows(limit, "limit", minimum=1)
    check_rows(offset, "offset")
    batch = resolve_batch(store, as_of)
    base = _tier_select(store, batch, tier, at_risk)
    total = int(next(iter(_run(store, sa.select(sa.func.count()).select_from(base.order_by(None).subquery()))[0].values())))
    items = [{k: _clean(v) for k, v in r.items()} for r in _run(store, base.limit(limit).offset(offset))]
    nxt = offset + len(items)
    return {"tier": tier, "at_risk": at_risk, "batch": _batch_dict(batch), "total": total, "limit": limit,
            "offset": offset, "next_offset": nxt if nxt < total else None, "items": items}


def iter_tier_csv(store: ScoresStore, tier: str | None, *, batch: Batch, at_risk: bool | None = None,
                  limit: int | None = None, offset: int = 0, chunk_rows: int = 5_000) -> Iterator[str]:
    """CSV text of a tier's members (highest CLV first) in chunks, read from the store as it goes.

    The arguments are checked and the query is started when the iterator is created, so bad input and
    an unreadable store raise here, before any text goes out (a server can still answer with an error
    instead of a CSV cut after its header). Text cells go through ``csv_cell`` (no spreadsheet formulas).
    """
    if tier is not None:
        check_tier(tier)
    check_rows(limit, "limit", minimum=1)
    check_rows(offset, "offset")
    check_rows(chunk_rows, "chunk_rows", minimum=1)
    stmt = _tier_select(store, batch, tier, at_risk).offset(offset)
    if limit is not None:
        stmt = stmt.limit(limit)
    conn = store.engine.connect()
    try:
        result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(stmt)
    except store.db_errors() as exc:
        conn.close()
        raise store.read_error(exc) from None
    except BaseException:
        conn.close()
        raise
    chunks = _csv_chunks(store, conn, result, batch)
    header = next(chunks)  # started, so closing the iterator unread (a client gone) closes the connection too
    return itertools.chain([header], chunks)


def _csv_chunks(store: ScoresStore, conn, result, batch: Batch) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*LIST_COLUMNS, "as_of", "model_version"])
    tail = [batch.as_of.isoformat(), csv_cell(batch.model_version)]
    try:
        yield buf.getvalue()
        for part in result.partitions():
            buf.seek(0)
            buf.truncate()
            writer.writerows([*map(csv_cell, r), *tail] for r in part)
            yield buf.getvalue()
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
    out = {"as_of": batch.as_of.isoformat(), "batch": _batch_dict(batch), "tiers": tier_mix(store, batch, ladder=ladder),
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
