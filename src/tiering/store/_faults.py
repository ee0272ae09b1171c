"""What a database error means to a user of the store: one StoreError (ServiceUnavailableError when retrying can help)
that names the store (its URL without the password), what failed and what to do.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tiering.exceptions import ServiceUnavailableError, StoreError

_CORRUPT = ("file is not a database", "malformed", "corrupt")
_LOCKED = ("database is locked", "database table is locked", "busy")
_INTACT = " Nothing was written; the previous scores are intact."


def normalize_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean psycopg 3 (the driver tiering installs)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        import sqlalchemy as sa

        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__


def db_errors() -> tuple[type[BaseException], ...]:
    """The exception types a database call can raise (SQLAlchemy's, sqlite3's, psycopg's where installed)."""
    import sqlalchemy as sa

    errors: list[type[BaseException]] = [sa.exc.DBAPIError, sa.exc.TimeoutError, sqlite3.Error]
    try:
        import psycopg

        errors.append(psycopg.Error)
    except ImportError:
        pass
    return tuple(errors)


def fault_kind(exc: BaseException) -> str:
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


def store_fault(exc: BaseException, doing: str, *, url: str, path: Path | None, lock_timeout_s: float, after: str = "") -> StoreError:
    """The StoreError (ServiceUnavailableError for a locked or unreachable store) a database error means.

    ``doing``: what failed ("Reading", "Writing to", ..); ``path``: the SQLite file, if any; ``after``: a sentence
    added to the message (what became of the data)."""
    text, kind, where = first_line(exc), fault_kind(exc), redact(url)
    if kind == "corrupt":
        shown = path or where
        return StoreError(
            f"The scores store file {shown} is not a valid SQLite database or is corrupted ({text}); "
            "it cannot be read or written as it is. Restore it from a backup, or move it aside "
            f"(mv {shown} {shown}.corrupt) and re-run `tiering predict --as-of DATE` to build a new store."
        )
    if kind == "not_a_store":
        return StoreError(
            f"{doing} the scores store {where!r} failed: {text}. It holds no tiering scores tables "
            "(an empty file or another application's database). Point store.url at the store "
            "`tiering predict` writes, or move this one aside and re-run `tiering predict --as-of DATE`."
        )
    if kind == "locked":
        return ServiceUnavailableError(
            f"{doing} the scores store {where!r} failed: {text}.{after} Another process holds the write lock "
            f"(waited {lock_timeout_s:g} s, store.lock_timeout_s); retry when the other writer ends."
        )
    if kind == "unreachable":
        return ServiceUnavailableError(
            f"Cannot reach the scores store {where!r}: {text}.{after} Check store.url and that "
            "the database is running; retry when it is back."
        )
    return StoreError(f"{doing} the scores store {where!r} failed: {text}.{after}")


def write_fault(exc: BaseException, *, url: str, path: Path | None, lock_timeout_s: float) -> StoreError:
    """A failed write: the transaction rolled back, so the earlier scores stand, unless the file is corrupt."""
    if fault_kind(exc) != "other":
        return store_fault(exc, "Writing to", url=url, path=path, lock_timeout_s=lock_timeout_s, after=_INTACT)
    text = first_line(exc)
    hint = ""
    if "unique" in text.lower() or "duplicate" in text.lower():
        hint = " A customer appears twice in the batch, or another run wrote the same as_of and model version at the same time."
    return StoreError(f"Writing to the scores store {redact(url)!r} failed: {text}.{_INTACT}{hint}")
