"""A tier's members as CSV text, streamed from the store in chunks (the CLI's ``--format csv``, the API's CSV).

Text cells go through :func:`csv_cell`, so no spreadsheet runs a formula.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator
from typing import Any

from tiering.exceptions import ConfigError
from tiering.ops._cursor import check_cursor_filter, read_cursor
from tiering.ops._input import check_rows
from tiering.ops._listing import LIST_COLUMNS, check_listing, listing_conn, listing_parts, tier_select
from tiering.store import Batch, ScoresStore

# a CSV cell starting with one of these is run as a formula by spreadsheets (OWASP "CSV injection")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet cannot run: text starting with = + - @ tab or CR gets a leading ' (OWASP).

    Only text is changed; numbers (a negative CLV, say) stay numbers, None becomes an empty field.
    """
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def iter_tier_csv(
    store: ScoresStore,
    tier: str | None,
    *,
    batch: Batch,
    at_risk: bool | None = None,
    limit: int | None = None,
    offset: int = 0,
    chunk_rows: int = 5_000,
    cursor: str | None = None,
    lapsed: bool | None = None,
) -> Iterator[str]:
    """CSV text of a tier's members (the listing order) in chunks, read from the store as it goes.

    From the first member, after ``cursor`` (a page's ``next_cursor``: an index seek, however deep) or after
    ``offset`` rows (read and skipped); not both. ``batch``: the one to export (``resolve_listing`` gives it; a
    cursor must be of it). The arguments are checked and the query is started when the iterator is created, so bad
    input and an unreadable store raise here, before any text goes out (a server can still answer with an error
    instead of a CSV cut after its header). Text cells go through ``csv_cell`` (no spreadsheet formulas).
    ``lapsed``: as in :func:`tier_page` (a cursor must be of the same filter).
    """
    offset, lapsed = check_listing(tier, limit, offset, cursor, lapsed, "export")
    check_rows(chunk_rows, "chunk_rows", minimum=1)
    after = None
    if cursor is not None:
        batch_id, c_tier, c_risk, after, c_lapsed = read_cursor(cursor, "cursor")
        check_cursor_filter("cursor", (c_tier, c_risk, c_lapsed), (tier, at_risk, lapsed))
        if batch_id != batch.batch_id:
            raise ConfigError(
                f"cursor belongs to another scoring batch than the one exported (as of "
                f"{batch.as_of.isoformat()}). Export the batch the cursor came from "
                "(ops.resolve_listing gives it), or start again without cursor."
            )
    parts = listing_parts(store, tier_select(store, batch, tier, at_risk, lapsed), offset, after)
    conn = listing_conn(store)
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
