"""Opening a scores store: its engine (SQLite pragmas and write locks, PostgreSQL timeouts), its tables and indexes
(created, or added to a store made by an older tiering), and the read path every query goes through.

:class:`StoreBase` is what the reading, aggregating and writing parts of ``ScoresStore`` share.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from tiering.exceptions import ConfigError, StoreError
from tiering.store._faults import db_errors, normalize_url, redact, store_fault
from tiering.store._schema import LISTING_INDEX, LISTING_INDEX_COLUMNS, metadata

if TYPE_CHECKING:
    from sqlalchemy import RowMapping


def _sqlite_files(path: Path) -> list[Path]:
    return [path, *(path.with_name(path.name + sfx) for sfx in ("-wal", "-shm", "-journal"))]


def _sqlite_events(engine, read_only: bool) -> None:
    """SQLite: WAL (readers go on while a batch writes) unless read-only, and transactions begun by tiering, so that a
    writer takes the write lock up front (BEGIN IMMEDIATE, waiting up to the busy timeout) and readers never do."""
    import sqlalchemy as sa

    @sa.event.listens_for(engine, "connect")
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

    @sa.event.listens_for(engine, "begin")
    def _begin(conn):  # pragma: no cover - trivial
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("tiering_write") else "BEGIN")


def _engine(engine_url, url: str, dialect: str, lock_timeout_s: float, read_only: bool):
    """The SQLAlchemy engine of a store; StoreError naming the missing driver or what else failed."""
    import sqlalchemy as sa

    connect_args: dict = {}
    if dialect == "sqlite":
        connect_args = {"timeout": lock_timeout_s}
    elif dialect == "postgresql":
        connect_args = {"connect_timeout": max(1, int(round(min(lock_timeout_s, 10))))}
    try:
        engine = sa.create_engine(engine_url, connect_args=connect_args)
    except ModuleNotFoundError as exc:
        raise StoreError(
            f"The scores store {redact(url)!r} needs the database driver {exc.name!r}: "
            "pip install 'tiering[postgres]' (psycopg 3) for PostgreSQL."
        ) from None
    except Exception as exc:
        raise StoreError(f"Cannot open the scores store {redact(url)!r}: {exc}. Check store.url in the config.") from None
    if dialect == "sqlite":
        _sqlite_events(engine, read_only)
    elif read_only and dialect == "postgresql":
        engine = engine.execution_options(postgresql_readonly=True)
    return engine


class StoreBase:
    """A scores store opened at ``url``, any SQLAlchemy URL (sqlite:///path, postgresql+psycopg://...).

    ``create``: True makes the tables now (if missing), "on_write" a SQLite file only when the first batch is written,
    False opens an existing store (StoreError when there is none). ``lock_timeout_s``: how long a write waits for
    another writer (SQLite's busy timeout) before failing with StoreError; it also bounds the PostgreSQL connect
    timeout. ``read_only``: the store is never written or upgraded (an older store is read without its later columns).
    """

    def __init__(self, url: str, *, create: bool | str = True, lock_timeout_s: float = 30.0, read_only: bool = False):
        import sqlalchemy as sa

        if create not in (True, False, "on_write"):
            raise ConfigError(f"ScoresStore create= must be True, False or 'on_write'; got {create!r}.")
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
                engine_url = sa.engine.URL.create(
                    "sqlite", database="file:" + quote(str(self.path.absolute())), query={"mode": "rw", "uri": "true"}
                )
            self._tables_pending = create == "on_write" and not exists
        self.engine = _engine(engine_url, url, self.dialect, self.lock_timeout_s, read_only)
        self.metadata, self.batches, self.scores = metadata()
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
                missing = {
                    t.name: frozenset(c.name for c in t.columns) - {c["name"] for c in insp.get_columns(t.name)}
                    for t in (self.batches, self.scores)
                }
        except db_errors() as exc:
            raise self.read_error(exc) from None
        missing = {name: cols for name, cols in missing.items() if cols}
        if not missing:
            return
        if self._read_only:
            self.missing_columns = missing
            self.metadata, self.batches, self.scores = metadata(missing)
            return
        try:
            self._add_columns(missing)
        except db_errors() as exc:
            raise self._fault(exc, "Upgrading") from None

    def _add_columns(self, missing: dict[str, frozenset[str]]) -> None:
        """ALTER TABLE ... ADD COLUMN for the columns ``missing`` per table, in one write transaction."""
        import sqlalchemy as sa

        tables = {"score_batches": self.batches, "scores": self.scores}
        prep = self.engine.dialect.identifier_preparer
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
                            raise StoreError(
                                f"The scores store {redact(self.url)!r} lacks the column "
                                f"{name}.{col.name}, which cannot be added to existing rows."
                            )
                        guard = "IF NOT EXISTS " if self.dialect == "postgresql" else ""
                        conn.exec_driver_sql(
                            f"ALTER TABLE {prep.quote(name)} ADD COLUMN {guard}{prep.quote(col.name)} "
                            f"{col.type.compile(dialect=self.engine.dialect)}"
                        )

    def _create_tables(self) -> None:
        """The tables (if missing). A SQLite file this call created is removed again when it fails."""
        new_file = self.path is not None and not self.path.exists()
        try:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self.metadata.create_all(self.engine)
            self._ensure_indexes()
        except db_errors() + (OSError,) as exc:
            if new_file:
                assert self.path is not None  # new_file: a SQLite file
                self.engine.dispose()
                for f in _sqlite_files(self.path):
                    f.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise StoreError(
                    f"Cannot create the scores store {self.url}: {exc.strerror or exc} ({exc.filename}). "
                    "Check store.url and that its folder can be written."
                ) from None
            raise self._fault(exc, "Opening") from None
        self._tables_pending = False

    def _ensure_indexes(self) -> None:
        """The listing index (``LISTING_INDEX``), added to a store made before it when the store is opened for writing:
        looked up first (no write lock when it is there), then created in a write transaction (a few seconds per
        million rows; SQLite readers go on reading meanwhile, PostgreSQL writers of the table wait)."""
        import sqlalchemy as sa

        columns = LISTING_INDEX_COLUMNS.get(self.dialect)
        if columns is None:
            return
        with self.engine.connect() as conn:
            if any(ix["name"] == LISTING_INDEX for ix in sa.inspect(conn).get_indexes("scores")):
                return
        with self.engine.connect() as conn:
            conn = conn.execution_options(tiering_write=True)
            with conn.begin():
                conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {LISTING_INDEX} ON scores ({columns})")

    # ---- errors and the read path --------------------------------------------------------
    def db_errors(self) -> tuple[type[BaseException], ...]:
        """The exception types a database call can raise (for ``except``; then ``read_error``)."""
        return db_errors()

    def _fault(self, exc: BaseException, doing: str, *, after: str = "") -> StoreError:
        """The StoreError (ServiceUnavailableError for a locked or unreachable store) a database error means."""
        return store_fault(exc, doing, url=self.url, path=self.path, lock_timeout_s=self.lock_timeout_s, after=after)

    def read_error(self, exc: BaseException) -> StoreError:
        return self._fault(exc, "Reading")

    def _run(self, stmt) -> Sequence[RowMapping]:
        """The rows of one read statement, as mappings; a database error becomes the StoreError it means."""
        try:
            with self.engine.connect() as conn:
                return conn.execute(stmt).mappings().all()
        except db_errors() as exc:
            raise self.read_error(exc) from None
