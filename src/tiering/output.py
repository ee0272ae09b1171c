"""The command line's output contract, for schedulers and scripts that read it.

- stdout carries only the result (a table, CSV or JSON); progress, logs and warnings go to stderr.
  While a command runs, ``sys.stdout`` points at stderr (so no library print can mix into the
  result) and the result is written to ``result_stream()``.
- JSON is strict (RFC 8259): NaN and infinities are null, dates are ``YYYY-MM-DD``, timestamps
  are ISO 8601 with their zone (naive timestamps in tiering's results are UTC, e.g. scored_at,
  and are written with ``+00:00``).
- An error under ``--json`` is a JSON object ``{"error", "kind", "hint", "exit_code"}`` on stdout,
  and the one-line message on stderr as well.
- Exit statuses: 0 ok; 1 a bug (an unexpected exception); 2 bad input or a refused run;
  3 a service (MLflow tracking server, scores database) unavailable or locked: retry later.
- Third-party warnings and INFO logs are silenced unless ``--verbose``; tiering's own warnings
  (tiering.exceptions.TieringWarning) are printed to stderr as ``warning: ...``.
Nothing secret is printed: results and messages pass through tiering.redact.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import json
import logging
import math
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from tiering.exceptions import (
    EXIT_BAD_INPUT,
    EXIT_BUG,
    EXIT_RESOURCES,
    EXIT_UNAVAILABLE,
    ResourceError,
    ServiceUnavailableError,
    TieringError,
    TieringWarning,
)

EXIT_HELP = (
    "Exit status: 0 ok; 1 a bug (please report it, with --verbose output); 2 bad input or a refused run "
    "(the message names the problem and the fix); 3 a service (MLflow tracking server, scores database) "
    "unavailable or locked: retry later; 4 out of memory or disk (the message names the setting to raise or the "
    "folder to free). Results go to stdout, progress and logs to stderr; --json output is "
    "strict JSON, and an error under --json is a JSON object with error, kind and hint."
)

_RESULT: list[TextIO] = []  # the real stdout while a command runs (see redirect)
_THIRD_PARTY_LOGGERS = ("mlflow", "alembic", "py4j", "urllib3", "httpx", "httpcore", "matplotlib", "numexpr", "uvicorn.error")


def result_stream() -> TextIO:
    """Where results go: the process's stdout (also while ``redirect`` points sys.stdout at stderr)."""
    return _RESULT[-1] if _RESULT else sys.stdout


@contextlib.contextmanager
def redirect() -> Iterator[None]:
    """Point sys.stdout at stderr for the duration, keeping the real stdout for the result."""
    _RESULT.append(sys.stdout)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _RESULT.pop()


def jsonable(value: Any) -> Any:
    """``value`` as strict-JSON-ready data (see the module doc for dates, timestamps and NaN)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, str)):
        return value
    if hasattr(value, "item") and not hasattr(value, "__len__"):  # numpy scalars
        value = value.item()
    if isinstance(value, int):
        return value
    if isinstance(value, (float, decimal.Decimal)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, dt.datetime):  # pandas Timestamps too
        if value != value:  # NaT
            return None
        aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        return aware.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (ImportError, TypeError, ValueError):
        pass
    return str(value)


def to_json(payload: Any, secrets: tuple[str, ...] = ()) -> str:
    """Strict JSON text of ``payload``, secrets masked."""
    from tiering.redact import redact

    return json.dumps(redact(jsonable(payload), secrets), indent=2, allow_nan=False, ensure_ascii=False)


def exit_code(exc: BaseException) -> int:
    if isinstance(exc, ServiceUnavailableError):
        return EXIT_UNAVAILABLE
    if isinstance(exc, ResourceError):
        return EXIT_RESOURCES
    if isinstance(exc, TieringError):
        return EXIT_BAD_INPUT
    return EXIT_BUG


def error_payload(exc: BaseException, message: str, code: int) -> dict[str, Any]:
    """The JSON object an error becomes under --json."""
    if isinstance(exc, TieringError):
        kind, hint = type(exc).__name__, exc.hint
    elif code == EXIT_BAD_INPUT:
        kind, hint = "UsageError", "See `tiering COMMAND --help` for the flags and their values."
    else:
        kind, hint = "InternalError", "This is a bug in tiering: rerun with --verbose and report the traceback."
    return {"error": message, "kind": kind, "hint": hint, "exit_code": code}


def quiet_third_party(verbose: bool) -> None:
    """Warnings and INFO logs of other libraries off (unless verbose); tiering's warnings to stderr."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    if verbose:
        return
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")  # read by mlflow when it configures its loggers
    for name in _THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", category=TieringWarning)

    def show(message, category, filename, lineno, file=None, line=None):
        # libraries that force their warnings on (mlflow's "once" filters) still stay quiet
        if issubclass(category, TieringWarning):
            sys.stderr.write(f"warning: {message}\n")

    warnings.showwarning = show
