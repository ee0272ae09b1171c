"""The scores store: every scoring batch, kept per as_of and model version, through SQLAlchemy.

SQLite (WAL, so ops can read while a batch writes) by default, PostgreSQL by URL
(``postgresql+psycopg://user:password@host:5432/db``; ``postgresql://`` is read as psycopg 3).

A batch is written in one transaction: its rows and its ``score_batches`` row appear together
at commit, a re-run of the same (as_of, model name, model version) replaces the earlier batch in
that same transaction, and an interrupted run (an exception or a kill mid-write) leaves the
previous scores untouched. Readers always see the latest complete batch unless they ask for an
as_of. Rows go in through the fastest path of each database: ``executemany`` of prepared tuples
on SQLite, ``COPY ... FROM STDIN`` (CSV) through psycopg on PostgreSQL. A batch can be written
from one frame (:meth:`ScoresStore.write_batch`) or streamed in chunks
(:meth:`ScoresStore.write_chunks`), so memory is set by the chunk, not by the base.

The parts, one job each: ``_schema`` (the tables), ``_batches`` (a batch record, which batch a reader sees),
``_listing`` (the SQL of a tier listing: order, filter, keyset), ``_faults`` (database errors as StoreError),
``_open`` (engine, tables, upgrades), ``_rows`` and ``_writer`` (writing), ``_reader`` and ``_aggregates`` (reading).
"""

from tiering.store._aggregates import Aggregates
from tiering.store._batches import Batch, batch_from_row, newest_batch, previous_batch
from tiering.store._faults import normalize_url
from tiering.store._listing import keyset_parts, listing_order, members, read_parts
from tiering.store._reader import BatchReader
from tiering.store._rows import column_lists as _column_lists  # noqa: F401 (benchmarks/bench_predict.py times it)
from tiering.store._schema import ID_MAX_LENGTH, LISTING_INDEX, ROW_COLUMNS
from tiering.store._schema import metadata as _metadata  # noqa: F401 (tests build an older store's tables with it)
from tiering.store._writer import BatchWriter


class ScoresStore(BatchReader, Aggregates, BatchWriter):
    """Read and write scoring batches. ``url`` is any SQLAlchemy URL (sqlite:///path, postgresql+psycopg://...).

    ``lock_timeout_s``: how long a write waits for another writer (SQLite's busy timeout) before
    failing with StoreError; it also bounds the PostgreSQL connect timeout.
    """


__all__ = [
    "ID_MAX_LENGTH",
    "LISTING_INDEX",
    "ROW_COLUMNS",
    "Batch",
    "ScoresStore",
    "batch_from_row",
    "keyset_parts",
    "listing_order",
    "members",
    "newest_batch",
    "normalize_url",
    "previous_batch",
    "read_parts",
]
