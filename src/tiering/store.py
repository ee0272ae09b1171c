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
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import numpy as np
import pandas as pd

from tiering.exceptions import ServiceUnavailableError, StoreError
from tiering.schemas import SCORES_COLUMNS, TIER_RANK, TIERS, score_columns_of_kind

if TYPE_CHECKING:
    from sqlalchemy import RowMapping

_FLOAT, _INT, _BOOL = (score_columns_of_kind(k) for k in ("float", "int", "bool"))
_BATCH_KEYS = ("as_of", "model_name", "model_version")
# the width of the customer_id column: the longest id a store holds (and a lookup accepts)
ID_MAX_LENGTH = 200
# the columns of the scores table, in order (the batch carries as_of, model name and version)
ROW_COLUMNS = ("batch_id", *(c for c in SCORES_COLUMNS if c not in _BATCH_KEYS))


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
    return Batch(row["batch_id"], row["as_of"], row["model_name"], row["model_version"], row["rows"],
                 row["finished_at"], row.get("flips_avoided"))


def _column_type(name: str):
    """The SQLAlchemy type of a scores column, from its kind in tiering.schemas.SCORE_COLUMN_KINDS."""
    import sqlalchemy as sa

    if name in _FLOAT:
        return sa.Float
    if name in _INT:
        return sa.Integer
    if name in _BOOL:
        return sa.Boolean
    if name == "scored_at":
        return sa.DateTime
    return sa.String(1000) if name == "tier_reason" else sa.String(ID_MAX_LENGTH)


def _metadata(omit: dict[str, frozenset[str]] | None = None):
    """The store's tables. ``omit``: per table, columns an older store lacks (a read-only store is not upgraded:
    its tables are declared without them, and reads give None for them)."""
    import sqlalchemy as sa

    omit = omit or {}

    md = sa.MetaData()
    batches = sa.Table(
        "score_batches", md,
        sa.Column("batch_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("as_of", sa.Date, nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(50), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=False),
        *([sa.Column("flips_avoided", sa.Integer, nullable=True)] if "flips_avoided" not in omit.get("score_batches", ())
          else []),
        # one batch per (as_of, model, version): a concurrent second writer fails instead of duplicating
        sa.Index("ix_batches_asof", "as_of", "model_name", "model_version", unique=True),
    )
    cols = [sa.Column("batch_id", sa.Integer, sa.ForeignKey("score_batches.batch_id"), nullable=False)]
    cols += [sa.Column(name, _column_type(name)) for name in ROW_COLUMNS[1:] if name not in omit.get("scores", ())]
    scores = sa.Table(
        "scores", md, *cols,
        sa.Index("ix_scores_batch_customer", "batch_id", "customer_id", unique=True),
        # (batch_id, tier, clv DESC, customer_id), the order of a tier listing: created by ``_ensure_indexes`` (its
        # NULLS LAST is PostgreSQL-only syntax); it replaces the (batch_id, tier) index of stores made before it
        sa.Index("ix_scores_customer", "customer_id"),
    )
    return md, batches, scores


# The order of a tier listing (pages, CSV exports, ``ScoresStore.list_tier``): highest CLV first, ties by
# customer_id, and customers without a CLV (NULL) after every customer with one, by customer_id. SQLite sorts NULL
# lowest and PostgreSQL highest, so the order is spelled out (``NULLS LAST``) and both databases agree; customer ids
# compare in the database's collation (SQLite: binary; PostgreSQL: the column's, byte order under C / C.UTF-8).
LISTING_INDEX = "ix_scores_batch_tier_clv"
_LISTING_INDEX_COLUMNS = {"postgresql": "batch_id, tier, clv DESC NULLS LAST, customer_id",
                          "sqlite": "batch_id, tier, clv DESC, customer_id"}  # SQLite's DESC already puts NULL last


def listing_order(scores) -> list:
    """ORDER BY of a tier listing in one statement (see above): an OFFSET page, or a whole export."""
    return [scores.c.clv.desc().nulls_last(), scores.c.customer_id]


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


def normalize_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean psycopg 3 (the driver tiering installs)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        import sqlalchemy as sa

        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__


def _db_errors() -> tuple[type[BaseException], ...]:
    import sqlalchemy as sa

    errors: list[type[BaseException]] = [sa.exc.DBAPIError, sa.exc.TimeoutError, sqlite3.Error]
    try:
        import psycopg

        errors.append(psycopg.Error)
    except ImportError:
        pass
    return tuple(errors)


_CORRUPT = ("file is not a database", "malformed", "corrupt")
_LOCKED = ("database is locked", "database table is locked", "busy")


def _fault_kind(exc: BaseException) -> str:
    """What a database error means for the caller: corrupt, locked, unreachable, not_a_store or other."""
    import sqlalchemy as sa

    orig = getattr(exc, "orig", None) or exc
    text = str(orig).lower()
    if isinstance(orig, sqlite3.DatabaseError) and any(k in text for k in _CORRUPT):
        return "corrupt"
    if any(k in text for k in _LOCKED) or "lock timeout" in text or "could not obtain lock" in text:
        return "locked"
    if "no such table" in text or ("relation" in text and "does not exist" in text):
        return "not_a_store"
    if isinstance(exc, sa.exc.TimeoutError) or getattr(exc, "connection_invalidated", False):
        return "unreachable"
    try:
        import psycopg
    except ImportError:
        return "other"
    return "unreachable" if isinstance(orig, psycopg.OperationalError) else "other"


def _sqlite_files(path: Path) -> list[Path]:
    return [path, *(path.with_name(path.name + sfx) for sfx in ("-wal", "-shm", "-journal"))]


def _column_lists(chunk: pd.DataFrame, scored_at: object, batch_id: int) -> list[list]:
    """One Python list per ROW_COLUMNS entry, NaN/NA as None: the rows of an executemany."""
    n = len(chunk)
    out: list[list] = [[batch_id] * n]
    for name in ROW_COLUMNS[1:]:
        if name == "scored_at":
            out.append([scored_at] * n)
            continue
        s = chunk[name]
        if name in _FLOAT:
            v = s.to_numpy(dtype=float, na_value=np.nan)
            values = v.tolist()
            if np.isnan(v).any():
                values = [None if x != x else x for x in values]
        elif name in _INT:
            values = [None if pd.isna(x) else int(x) for x in s.tolist()] if s.isna().any() else s.astype("int64").tolist()
        elif name in _BOOL:
            values = [None if pd.isna(x) else bool(x) for x in s.tolist()] if s.isna().any() else s.astype(bool).tolist()
        else:
            values = s.astype(object).where(s.notna(), None).tolist()
            values = [None if x is None else str(x) for x in values]
        out.append(values)
    return out


def _csv_chunk(chunk: pd.DataFrame, scored_at: str, batch_id: int) -> bytes:
    """The chunk as CSV for PostgreSQL COPY: every value quoted, NULL as an unquoted empty field."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    n = len(chunk)
    arrays = [pa.array(np.full(n, batch_id, dtype=np.int64))]
    for name in ROW_COLUMNS[1:]:
        if name == "scored_at":
            arrays.append(pa.array([scored_at] * n, pa.string()))
            continue
        s = chunk[name]
        if name in _FLOAT:
            arrays.append(pa.array(s.to_numpy(dtype=float, na_value=np.nan), pa.float64(), from_pandas=True))
        elif name in _INT:
            arrays.append(pa.array(s, pa.int64(), from_pandas=True))
        elif name in _BOOL:
            arrays.append(pa.array(s.astype(object).where(s.notna(), None), pa.bool_(), from_pandas=True))
        else:
            arrays.append(pa.array(s.astype(object).where(s.notna(), None).map(lambda x: x if x is None else str(x)),
                                   pa.string(), from_pandas=True))
    buf = io.BytesIO()
    pacsv.write_csv(pa.Table.from_arrays(arrays, names=list(ROW_COLUMNS)), buf,
                    pacsv.WriteOptions(include_header=False, quoting_style="all_valid"))
    return buf.getvalue()


class ScoresStore:
    """Read and write scoring batches. ``url`` is any SQLAlchemy URL (sqlite:///path, postgresql+psycopg://...).

    ``lock_timeout_s``: how long a write waits for another writer (SQLite's busy timeout) before
    failing with StoreError; it also bounds the PostgreSQL connect timeout.
    """

    def __init__(self, url: str, *, create: bool | str = True, lock_timeout_s: float = 30.0, read_only: bool = False):
        import sqlalchemy as sa

        if create not in (True, False, "on_write"):
            raise ValueError(f"create must be True, False or 'on_write'; got {create!r}")
        url = normalize_url(url)
        self.url = url
        self.lock_timeout_s = float(lock_timeout_s)
        self.dialect = url.split(":", 1)[0].split("+", 1)[0]
        self.path: Path | None = None
        self._tables_pending = False  # create="on_write" on a SQLite file that does not exist yet
        engine_url: str | sa.engine.URL = url
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            self.path = Path(url.removeprefix("sqlite:///"))
            exists = self.path.exists()
            if not create and not exists:
                raise StoreError(f"The scores store {url} does not exist yet. Run `tiering predict` (or `tiering demo`) first.")
            if not create:  # SQLite's URI mode=rw: connecting never creates the file, even if it is removed later
                engine_url = sa.engine.URL.create("sqlite", database="file:" + quote(str(self.path.absolute())),
                                                  query={"mode": "rw", "uri": "true"})
            self._tables_pending = create == "on_write" and not exists
        connect_args: dict = {}
        if self.dialect == "sqlite":
            connect_args = {"timeout": self.lock_timeout_s}
        elif self.dialect == "postgresql":
            connect_args = {"connect_timeout": max(1, int(round(min(self.lock_timeout_s, 10))))}
        try:
            self.engine = sa.create_engine(engine_url, connect_args=connect_args)
        except ModuleNotFoundError as exc:
            raise StoreError(f"The scores store {_redact(url)!r} needs the database driver {exc.name!r}: "
                             "pip install 'tiering[postgres]' (psycopg 3) for PostgreSQL.") from None
        except Exception as exc:
            raise StoreError(f"Cannot open the scores store {_redact(url)!r}: {exc}. Check store.url in the config.") from None
        if self.dialect == "sqlite":
            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(conn, _record):  # pragma: no cover - trivial
                conn.isolation_level = None  # transactions are begun below, so a write can BEGIN IMMEDIATE
                cur = conn.cursor()
                if read_only:
                    cur.execute("PRAGMA query_only = ON")
                else:
                    cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()

            @sa.event.listens_for(self.engine, "begin")
            def _begin(conn):  # pragma: no cover - trivial
                # a writer takes the write lock up front (waiting up to the busy timeout), readers never do
                conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("tiering_write") else "BEGIN")
        elif read_only and self.dialect == "postgresql":
            self.engine = self.engine.execution_options(postgresql_readonly=True)

        self.metadata, self.batches, self.scores = _metadata()
        # columns this tiering declares that the store's tables lack (an older read-only store), per table
        self.missing_columns: dict[str, frozenset[str]] = {}
        self._read_only = read_only
        if create and not self._tables_pending:
            self._create_tables()
            self._upgrade()
        elif not create:
            self._run(sa.select(self.batches.c.batch_id).limit(1))  # a corrupt, foreign or unreachable store fails now
            self._upgrade()

    def _upgrade(self) -> None:
        """A store created by an older tiering lacks later (nullable) columns: a writable store gets them
        (ALTER TABLE ... ADD COLUMN, so its older batches read nulls there); a read-only one is read without them."""
        import sqlalchemy as sa

        try:
            with self.engine.connect() as conn:
                insp = sa.inspect(conn)
                missing = {t.name: frozenset(c.name for c in t.columns) - {c["name"] for c in insp.get_columns(t.name)}
                           for t in (self.batches, self.scores)}
        except _db_errors() as exc:
            raise self.read_error(exc) from None
        missing = {name: cols for name, cols in missing.items() if cols}
        if not missing:
            return
        if self._read_only:
            self.missing_columns = missing
            self.metadata, self.batches, self.scores = _metadata(missing)
            return
        tables = {"score_batches": self.batches, "scores": self.scores}
        prep = self.engine.dialect.identifier_preparer
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(tiering_write=True)
                with conn.begin():
                    # re-read inside the write lock: another writer may have added them meanwhile
                    insp = sa.inspect(conn)
                    for name in missing:
                        have = {c["name"] for c in insp.get_columns(name)}
                        for col in tables[name].columns:
                            if col.name in have:
                                continue
                            if not col.nullable:
                                raise StoreError(f"The scores store {_redact(self.url)!r} lacks the column "
                                                 f"{name}.{col.name}, which cannot be added to existing rows.")
                            guard = "IF NOT EXISTS " if self.dialect == "postgresql" else ""
                            conn.exec_driver_sql(f"ALTER TABLE {prep.quote(name)} ADD COLUMN {guard}{prep.quote(col.name)} "
                                                 f"{col.type.compile(dialect=self.engine.dialect)}")
        except _db_errors() as exc:
            raise self._fault(exc, "Upgrading") from None

    def _create_tables(self) -> None:
        """The tables (if missing). A SQLite file this call created is removed again when it fails."""
        new_file = self.path is not None and not self.path.exists()
        try:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self.metadata.create_all(self.engine)
            self._ensure_indexes()
        except _db_errors() + (OSError,) as exc:
            if new_file:
                assert self.path is not None  # new_file: a SQLite file
                self.engine.dispose()
                for f in _sqlite_files(self.path):
                    f.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise StoreError(f"Cannot create the scores store {self.url}: {exc.strerror or exc} ({exc.filename}). "
                                 "Check store.url and that its folder can be written.") from None
            raise self._fault(exc, "Opening") from None
        self._tables_pending = False

    def _ensure_indexes(self) -> None:
        """The listing index (``LISTING_INDEX``), added to a store made before it when the store is opened for writing:
        looked up first (no write lock when it is there), then created in a write transaction (a few seconds per
        million rows; SQLite readers go on reading meanwhile, PostgreSQL writers of the table wait)."""
        import sqlalchemy as sa

        columns = _LISTING_INDEX_COLUMNS.get(self.dialect)
        if columns is None:
            return
        with self.engine.connect() as conn:
            if any(ix["name"] == LISTING_INDEX for ix in sa.inspect(conn).get_indexes("scores")):
                return
        with self.engine.connect() as conn:
            conn = conn.execution_options(tiering_write=True)
            with conn.begin():
                conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {LISTING_INDEX} ON scores ({columns})")

    # ---- errors ------------------------------------------------------------------------
    def db_errors(self) -> tuple[type[BaseException], ...]:
        """The exception types a database call can raise (for ``except``; then ``read_error``)."""
        return _db_errors()

    def _fault(self, exc: BaseException, doing: str, *, after: str = "") -> StoreError:
        """The StoreError (ServiceUnavailableError for a locked or unreachable store) a database error means."""
        text, kind, where = _first_line(exc), _fault_kind(exc), _redact(self.url)
        if kind == "corrupt":
            path = self.path or where
            return StoreError(f"The scores store file {path} is not a valid SQLite database or is corrupted ({text}); "
                              "it cannot be read or written as it is. Restore it from a backup, or move it aside "
                              f"(mv {path} {path}.corrupt) and re-run `tiering predict --as-of DATE` to build a new store.")
        if kind == "not_a_store":
            return StoreError(f"{doing} the scores store {where!r} failed: {text}. It holds no tiering scores tables "
                              "(an empty file or another application's database). Point store.url at the store "
                              "`tiering predict` writes, or move this one aside and re-run `tiering predict --as-of DATE`.")
        if kind == "locked":
            return ServiceUnavailableError(
                f"{doing} the scores store {where!r} failed: {text}.{after} Another process holds the write lock "
                f"(waited {self.lock_timeout_s:g} s, store.lock_timeout_s); retry when the other writer ends.")
        if kind == "unreachable":
            return ServiceUnavailableError(f"Cannot reach the scores store {where!r}: {text}.{after} Check store.url and that "
                                           "the database is running; retry when it is back.")
        return StoreError(f"{doing} the scores store {where!r} failed: {text}.{after}")

    def read_error(self, exc: BaseException) -> StoreError:
        return self._fault(exc, "Reading")

    # ---- writing -----------------------------------------------------------------------
    def _write_error(self, exc: BaseException) -> StoreError:
        """A failed write: the transaction rolled back, so the earlier scores stand, unless the file is corrupt."""
        intact = " Nothing was written; the previous scores are intact."
        if _fault_kind(exc) != "other":
            return self._fault(exc, "Writing to", after=intact)
        text = _first_line(exc)
        hint = ""
        if "unique" in text.lower() or "duplicate" in text.lower():
            hint = (" A customer appears twice in the batch, or another run wrote the same as_of and model version "
                    "at the same time.")
        return StoreError(f"Writing to the scores store {_redact(self.url)!r} failed: {text}.{intact}{hint}")

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
        except _db_errors() as exc:
            raise self._write_error(exc) from None

    def _check_creatable(self) -> None:
        import os

        assert self.path is not None  # only a SQLite file is created on write
        folder = self.path.absolute().parent
        while not folder.exists():
            folder = folder.parent
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            raise StoreError(f"The scores store {self.path} cannot be created: the folder {folder} cannot be written. "
                             "Check store.url and the folder's permissions.")

    def write_batch(self, scores: pd.DataFrame, *, chunk_rows: int = 100_000) -> Batch:
        """Write one batch atomically; replaces an earlier batch of the same as_of, model and version."""
        missing = [c for c in SCORES_COLUMNS if c not in scores.columns]
        if missing:
            raise StoreError(f"The scores frame lacks columns {missing}; it cannot be written.")
        if scores.empty:
            raise StoreError("The scores frame is empty: nothing to write, the store is left as it was.")
        keys = scores[list(_BATCH_KEYS)].drop_duplicates()
        if len(keys) != 1:
            raise StoreError(f"A batch must hold one as_of, model name and version; got {len(keys)} combinations.")
        as_of, model_name, model_version = keys.iloc[0]
        scored_at = pd.Timestamp(scores["scored_at"].max())
        chunks = (scores.iloc[i:i + chunk_rows] for i in range(0, len(scores), chunk_rows))
        return self.write_chunks(chunks, as_of=pd.Timestamp(as_of).date(), model_name=str(model_name),
                                 model_version=str(model_version), scored_at=scored_at.to_pydatetime())

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
        import sqlalchemy as sa

        model_name, model_version = str(model_name), str(model_version)
        scored = pd.Timestamp(scored_at)
        if scored.tzinfo is not None:
            scored = scored.tz_convert("UTC").tz_localize(None)
        finished = scored.to_pydatetime()
        stamp = finished.strftime("%Y-%m-%d %H:%M:%S.%f")
        written = 0
        chunks = iter(chunks)
        first = next((c for c in chunks if c is not None and len(c) > 0), None)
        if first is None:
            raise StoreError("The scores frame is empty: nothing to write, the store is left as it was.")
        chunks = itertools.chain([first], chunks)
        if self._tables_pending:
            self._create_tables()
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(tiering_write=True)
                with conn.begin():
                    old = conn.execute(sa.select(self.batches.c.batch_id).where(
                        self.batches.c.as_of == as_of, self.batches.c.model_name == model_name,
                        self.batches.c.model_version == model_version)).scalars().all()
                    if old:
                        conn.execute(self.scores.delete().where(self.scores.c.batch_id.in_(old)))
                        conn.execute(self.batches.delete().where(self.batches.c.batch_id.in_(old)))
                    key = conn.execute(self.batches.insert().values(
                        as_of=as_of, model_name=model_name, model_version=model_version, rows=0, finished_at=finished,
                    )).inserted_primary_key
                    assert key is not None  # a single-row INSERT always has one
                    batch_id = int(key[0])
                    dbapi = conn.connection.driver_connection
                    for chunk in chunks:
                        if chunk is None or len(chunk) == 0:
                            continue
                        self._check_chunk(chunk, as_of, model_name, model_version)
                        if self.dialect == "postgresql":
                            self._copy_postgres(dbapi, chunk, stamp, batch_id)
                        elif self.dialect == "sqlite":
                            self._insert_sqlite(dbapi, chunk, stamp, batch_id)
                        else:
                            rows = zip(*_column_lists(chunk, finished, batch_id))
                            conn.execute(self.scores.insert(), [dict(zip(ROW_COLUMNS, r)) for r in rows])
                        written += len(chunk)
                        if on_chunk:
                            on_chunk(written)
                    if written == 0:
                        raise StoreError("The scores frame is empty: nothing to write, the store is left as it was.")
                    flips = flips_avoided() if flips_avoided is not None else None
                    conn.execute(self.batches.update().where(self.batches.c.batch_id == batch_id).values(
                        rows=written, flips_avoided=None if flips is None else int(flips)))
        except _db_errors() as exc:
            raise self._write_error(exc) from None
        return Batch(batch_id, as_of, model_name, model_version, written, finished, flips)

    @staticmethod
    def _check_chunk(chunk: pd.DataFrame, as_of: dt.date, model_name: str, model_version: str) -> None:
        missing = [c for c in SCORES_COLUMNS if c not in chunk.columns]
        if missing:
            raise StoreError(f"The scores frame lacks columns {missing}; it cannot be written.")
        for key, want in (("as_of", as_of), ("model_name", model_name), ("model_version", model_version)):
            got = chunk[key].drop_duplicates().tolist()
            got = [pd.Timestamp(g).date() for g in got] if key == "as_of" else [str(g) for g in got]
            if got != [want]:
                raise StoreError(f"A batch must hold one as_of, model name and version: expected {key} {want!r}, "
                                 f"got {got[:5]}.")

    @staticmethod
    def _insert_sqlite(dbapi, chunk: pd.DataFrame, stamp: str, batch_id: int) -> None:
        cols = ", ".join(ROW_COLUMNS)
        marks = ", ".join("?" * len(ROW_COLUMNS))
        cur = dbapi.cursor()
        try:
            cur.executemany(f"INSERT INTO scores ({cols}) VALUES ({marks})", zip(*_column_lists(chunk, stamp, batch_id)))
        finally:
            cur.close()

    @staticmethod
    def _copy_postgres(dbapi, chunk: pd.DataFrame, stamp: str, batch_id: int) -> None:
        data = _csv_chunk(chunk, stamp, batch_id)
        with dbapi.cursor() as cur, cur.copy(f"COPY scores ({', '.join(ROW_COLUMNS)}) FROM STDIN (FORMAT csv)") as copy:
            copy.write(data)

    # ---- reading -----------------------------------------------------------------------
    def _run(self, stmt) -> Sequence[RowMapping]:

        try:
            with self.engine.connect() as conn:
                return conn.execute(stmt).mappings().all()
        except _db_errors() as exc:
            raise self.read_error(exc) from None

    def batches_list(self) -> list[Batch]:
        import sqlalchemy as sa

        rows = self._run(sa.select(self.batches).order_by(self.batches.c.as_of, self.batches.c.finished_at))
        return [batch_from_row(r) for r in rows]

    def latest_batch(self, as_of: dt.date | None = None) -> Batch:
        """The latest complete batch (of the given as_of, if any)."""
        batches = [b for b in self.batches_list() if as_of is None or b.as_of == as_of]
        if not batches:
            where = f" for as_of {as_of}" if as_of else ""
            raise StoreError(f"The scores store {self.url} holds no batch{where}. Run `tiering predict --as-of DATE` first.")
        return max(batches, key=lambda b: (b.as_of, b.finished_at, b.batch_id))

    def previous_batch(self, batch: Batch) -> Batch | None:
        earlier = [b for b in self.batches_list() if b.as_of < batch.as_of]
        return max(earlier, key=lambda b: (b.as_of, b.finished_at, b.batch_id)) if earlier else None

    def previous_tiers(self, as_of: dt.date, model_name: str) -> tuple[Batch, pd.DataFrame] | None:
        """The latest complete batch of ``model_name`` (any version) with an as_of before ``as_of``, and its
        customer_id and tier per customer; None when there is none (the hysteresis of tiering.predict)."""
        import sqlalchemy as sa

        earlier = [b for b in self.batches_list() if b.as_of < as_of and b.model_name == str(model_name)]
        if not earlier:
            return None
        batch = max(earlier, key=lambda b: (b.as_of, b.finished_at, b.batch_id))
        s = self.scores
        rows = self._run(sa.select(s.c.customer_id, s.c.tier).where(s.c.batch_id == batch.batch_id))
        return batch, pd.DataFrame(rows, columns=["customer_id", "tier"])

    def _frame(self, stmt, batch: Batch | None = None) -> pd.DataFrame:
        df = pd.DataFrame(self._run(stmt))
        if df.empty:
            return pd.DataFrame(columns=list(SCORES_COLUMNS))
        if batch is not None:
            df["as_of"], df["model_name"], df["model_version"] = batch.as_of, batch.model_name, batch.model_version
        return df

    def read_batch(self, batch: Batch) -> pd.DataFrame:
        import sqlalchemy as sa

        df = self._frame(sa.select(self.scores).where(self.scores.c.batch_id == batch.batch_id).order_by(self.scores.c.customer_id), batch)
        return df.reindex(columns=list(SCORES_COLUMNS))  # an older read-only store: None in the columns it lacks

    def get_customer(self, customer_id: str, as_of: dt.date | None = None) -> dict | None:
        import sqlalchemy as sa

        batch = self.latest_batch(as_of)
        rows = self._run(sa.select(self.scores).where(self.scores.c.batch_id == batch.batch_id,
                                                      self.scores.c.customer_id == str(customer_id)))
        if not rows:
            return None
        batch_keys = {"as_of": batch.as_of, "model_name": batch.model_name, "model_version": batch.model_version}
        return dict.fromkeys(self.missing_columns.get("scores", ())) | dict(rows[0]) | batch_keys

    def customer_history(self, customer_id: str) -> pd.DataFrame:
        """The customer's tier at every scoring date (latest batch per as_of)."""
        import sqlalchemy as sa

        b, s = self.batches, self.scores
        stmt = (sa.select(b.c.as_of, b.c.model_version, b.c.finished_at, s.c.tier, s.c.churn_risk, s.c.clv)
                .join(b, b.c.batch_id == s.c.batch_id).where(s.c.customer_id == str(customer_id))
                .order_by(b.c.as_of, b.c.finished_at))
        df = pd.DataFrame(self._run(stmt))
        return df.drop_duplicates("as_of", keep="last").drop(columns="finished_at") if not df.empty else df

    def list_tier(self, tier: str | None = None, *, as_of: dt.date | None = None, at_risk: bool | None = None,
                  limit: int | None = 100, offset: int = 0, after: tuple[float | None, str] | None = None) -> pd.DataFrame:
        """The members of ``tier`` (every tier: None) in the listing order (highest CLV first, ties by id, no CLV last).

        ``after`` = (clv, customer_id) of the last row already read: the rows after it, found by keyset (an index
        seek, however deep) instead of ``offset`` (which reads and skips the rows before); give one or the other.
        """
        import sqlalchemy as sa

        if tier is not None and tier not in TIERS:
            raise StoreError(f"Unknown tier {tier!r}; tiers are {list(TIERS)}.")
        if after is not None and offset:
            raise StoreError("Give list_tier an offset or an `after` position, not both.")
        batch = self.latest_batch(as_of)
        stmt = sa.select(self.scores).where(self.scores.c.batch_id == batch.batch_id)
        if tier is not None:
            stmt = stmt.where(self.scores.c.tier == tier)
        if at_risk is not None:
            stmt = stmt.where(self.scores.c.at_risk == at_risk)
        if after is None:
            stmt = stmt.order_by(*listing_order(self.scores)).offset(offset)
            frame = self._frame(stmt.limit(limit) if limit is not None else stmt, batch)
        else:
            rows: list = []
            for part in keyset_parts(stmt, self.scores, after):
                if limit is not None and len(rows) >= limit:
                    break
                rows += self._run(part.limit(limit - len(rows)) if limit is not None else part)
            frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(SCORES_COLUMNS))
            if rows:
                frame["as_of"], frame["model_name"], frame["model_version"] = batch.as_of, batch.model_name, batch.model_version
        return frame.reindex(columns=list(SCORES_COLUMNS))

    def tier_counts(self, batch: Batch) -> pd.DataFrame:
        """Per tier: customers, share, mean CLV, mean churn risk (buyers), at-risk count."""
        import sqlalchemy as sa

        s = self.scores
        stmt = (sa.select(s.c.tier, sa.func.count().label("customers"), sa.func.avg(s.c.clv).label("mean_clv"),
                          sa.func.avg(s.c.churn_risk).label("mean_churn_risk"), sa.func.avg(s.c.p_purchase).label("mean_p_purchase"),
                          sa.func.sum(sa.case((s.c.at_risk, 1), else_=0)).label("at_risk"))
                .where(s.c.batch_id == batch.batch_id).group_by(s.c.tier))
        df = pd.DataFrame(self._run(stmt))
        df = df.sort_values("tier", key=lambda x: x.map(TIER_RANK)).reset_index(drop=True)
        df["share"] = df["customers"] / df["customers"].sum()
        return df[["tier", "customers", "share", "mean_clv", "mean_churn_risk", "mean_p_purchase", "at_risk"]]

    def migration(self, before: Batch, after: Batch) -> pd.DataFrame:
        """Customers per (tier before, tier after), over customers scored in both batches."""
        import sqlalchemy as sa

        a, b = self.scores.alias("a"), self.scores.alias("b")
        stmt = (sa.select(a.c.tier.label("tier_before"), b.c.tier.label("tier_after"), sa.func.count().label("customers"))
                .join(b, a.c.customer_id == b.c.customer_id)
                .where(a.c.batch_id == before.batch_id, b.c.batch_id == after.batch_id)
                .group_by(a.c.tier, b.c.tier))
        df = pd.DataFrame(self._run(stmt))
        if df.empty:
            return pd.DataFrame(0, index=list(TIERS), columns=list(TIERS))
        return df.pivot(index="tier_before", columns="tier_after", values="customers").reindex(
            index=list(TIERS), columns=list(TIERS)).fillna(0).astype(int)
