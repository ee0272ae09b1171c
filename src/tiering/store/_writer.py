"""Writing scoring batches: one transaction per batch, streamed in chunks.

A batch's rows and its ``score_batches`` row appear together at commit; a re-run of the same (as_of, model name,
model version) replaces the earlier batch in that same transaction, and an interrupted run (an exception or a kill
mid-write) leaves the previous scores untouched.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
from collections.abc import Callable, Iterable, Iterator

import pandas as pd

from tiering.exceptions import StoreError
from tiering.schemas import SCORES_COLUMNS
from tiering.store._batches import Batch
from tiering.store._faults import db_errors, write_fault
from tiering.store._open import StoreBase
from tiering.store._rows import check_chunk, column_lists, copy_postgres, insert_sqlite
from tiering.store._schema import BATCH_KEYS, ROW_COLUMNS

_EMPTY = "The scores frame is empty: nothing to write, the store is left as it was."


def _naive_utc(scored_at: dt.datetime) -> dt.datetime:
    """``scored_at`` as a naive UTC timestamp (the store's DateTime columns hold no zone)."""
    scored = pd.Timestamp(scored_at)
    if scored.tzinfo is not None:
        scored = scored.tz_convert("UTC").tz_localize(None)
    return scored.to_pydatetime()


def _non_empty(chunks: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """The chunks from the first non-empty one on; StoreError (nothing written) when every chunk is empty."""
    chunks = iter(chunks)
    first = next((c for c in chunks if c is not None and len(c) > 0), None)
    if first is None:
        raise StoreError(_EMPTY)
    return itertools.chain([first], chunks)


class BatchWriter(StoreBase):
    """The writing part of ``ScoresStore``."""

    def _write_error(self, exc: BaseException) -> StoreError:
        """A failed write: the transaction rolled back, so the earlier scores stand, unless the file is corrupt."""
        return write_fault(exc, url=self.url, path=self.path, lock_timeout_s=self.lock_timeout_s)

    def check_writable(self) -> None:
        """Fail now, with StoreError, if a batch could not be written (unreachable, locked, read-only, corrupt).

        A store still to be created on write (``create="on_write"``) is checked for a folder it can be created in.
        """
        import sqlalchemy as sa

        if self._tables_pending:
            return self._check_creatable()
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(tiering_write=True)
                with conn.begin() as tx:
                    conn.execute(sa.select(sa.func.count()).select_from(self.batches))  # SQLite: the write lock is held here
                    tx.rollback()
        except db_errors() as exc:
            raise self._write_error(exc) from None

    def _check_creatable(self) -> None:
        assert self.path is not None  # only a SQLite file is created on write
        folder = self.path.absolute().parent
        while not folder.exists():
            folder = folder.parent
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            raise StoreError(
                f"The scores store {self.path} cannot be created: the folder {folder} cannot be written. "
                "Check store.url and the folder's permissions."
            )

    def write_batch(self, scores: pd.DataFrame, *, chunk_rows: int = 100_000) -> Batch:
        """Write one batch atomically; replaces an earlier batch of the same as_of, model and version."""
        missing = [c for c in SCORES_COLUMNS if c not in scores.columns]
        if missing:
            raise StoreError(f"The scores frame lacks columns {missing}; it cannot be written.")
        if scores.empty:
            raise StoreError(_EMPTY)
        keys = scores[list(BATCH_KEYS)].drop_duplicates()
        if len(keys) != 1:
            raise StoreError(f"A batch must hold one as_of, model name and version; got {len(keys)} combinations.")
        as_of, model_name, model_version = keys.iloc[0]
        scored_at = pd.Timestamp(scores["scored_at"].max())
        chunks = (scores.iloc[i : i + chunk_rows] for i in range(0, len(scores), chunk_rows))
        return self.write_chunks(
            chunks,
            as_of=pd.Timestamp(as_of).date(),
            model_name=str(model_name),
            model_version=str(model_version),
            scored_at=scored_at.to_pydatetime(),
        )

    def write_chunks(
        self,
        chunks: Iterable[pd.DataFrame],
        *,
        as_of: dt.date,
        model_name: str,
        model_version: str,
        scored_at: dt.datetime,
        on_chunk: Callable[[int], None] | None = None,
        flips_avoided: Callable[[], int | None] | None = None,
    ) -> Batch:
        """Stream a batch in chunks (scores frames of DESIGN.md) inside one transaction.

        The batch becomes visible only when the last chunk is in; an exception raised by the
        iterator or by the database rolls everything back (the previous batch of the same as_of
        and version stays). ``on_chunk(rows_so_far)`` is called after each chunk. Every chunk
        must carry this batch's as_of, model name and version; ``scored_at`` is recorded on every
        row and as the batch's ``finished_at``. ``flips_avoided()``, called once the last chunk is in, gives the
        tier changes the hysteresis avoided in the batch (recorded on it; None or no callable: not recorded).
        """
        model_name, model_version = str(model_name), str(model_version)
        finished = _naive_utc(scored_at)
        chunks = _non_empty(chunks)
        if self._tables_pending:
            self._create_tables()
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(tiering_write=True)
                with conn.begin():
                    batch_id = self._replace_batch(conn, as_of, model_name, model_version, finished)
                    written = self._write_rows(conn, batch_id, chunks, (as_of, model_name, model_version), finished, on_chunk)
                    flips = flips_avoided() if flips_avoided is not None else None
                    conn.execute(
                        self.batches.update()
                        .where(self.batches.c.batch_id == batch_id)
                        .values(rows=written, flips_avoided=None if flips is None else int(flips))
                    )
        except db_errors() as exc:
            raise self._write_error(exc) from None
        return Batch(batch_id, as_of, model_name, model_version, written, finished, flips)

    def _replace_batch(self, conn, as_of: dt.date, model_name: str, model_version: str, finished: dt.datetime) -> int:
        """In the write transaction: drop an earlier batch of the same as_of, model and version, record the new one
        (0 rows until its last chunk is in) and give its batch_id."""
        import sqlalchemy as sa

        b = self.batches
        old = (
            conn.execute(
                sa.select(b.c.batch_id).where(b.c.as_of == as_of, b.c.model_name == model_name, b.c.model_version == model_version)
            )
            .scalars()
            .all()
        )
        if old:
            conn.execute(self.scores.delete().where(self.scores.c.batch_id.in_(old)))
            conn.execute(b.delete().where(b.c.batch_id.in_(old)))
        key = conn.execute(
            b.insert().values(
                as_of=as_of,
                model_name=model_name,
                model_version=model_version,
                rows=0,
                finished_at=finished,
            )
        ).inserted_primary_key
        assert key is not None  # a single-row INSERT always has one
        return int(key[0])

    def _write_rows(
        self,
        conn,
        batch_id: int,
        chunks: Iterable[pd.DataFrame],
        keys: tuple[dt.date, str, str],
        finished: dt.datetime,
        on_chunk: Callable[[int], None] | None,
    ) -> int:
        """In the write transaction: every chunk's rows (each checked against the batch ``keys``); the rows written."""
        stamp = finished.strftime("%Y-%m-%d %H:%M:%S.%f")
        dbapi = conn.connection.driver_connection
        written = 0
        for chunk in chunks:
            if chunk is None or len(chunk) == 0:
                continue
            check_chunk(chunk, *keys)
            if self.dialect == "postgresql":
                copy_postgres(dbapi, chunk, stamp, batch_id)
            elif self.dialect == "sqlite":
                insert_sqlite(dbapi, chunk, stamp, batch_id)
            else:
                rows = zip(*column_lists(chunk, finished, batch_id))
                conn.execute(self.scores.insert(), [dict(zip(ROW_COLUMNS, r)) for r in rows])
            written += len(chunk)
            if on_chunk:
                on_chunk(written)
        return written
