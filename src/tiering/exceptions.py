"""One exception tree. Every error is also a builtin so callers can catch either.

::

    TieringError                                  tiering raised it on purpose; .hint says what to do
    +-- ConfigError            (ValueError)       a config key, flag or argument is wrong             exit 2
    +-- SchemaError            (ValueError)       an input table breaks its contract (column, type)   exit 2
    +-- DataQualityError       (ValueError)       too many unusable rows, an empty table, no buyer    exit 2
    +-- LeakageError           (RuntimeError)     a feature would read data after as_of               exit 2
    +-- ModelError             (RuntimeError)     a model cannot be fitted, loaded or applied         exit 2
    +-- NotFoundError          (LookupError)      the customer, tier or batch is not in the store     exit 2
    +-- TrackingError          (RuntimeError)     MLflow tracking or the registry refused             exit 2
    |   +-- ServiceUnavailableError               ... unreachable or locked: retry later               exit 3
    +-- StoreError             (RuntimeError)     the scores store cannot be read or written          exit 2
    |   +-- ServiceUnavailableError               (also a TrackingError)                              exit 3
    +-- ResourceError          (RuntimeError)     the engine ran out of memory or disk (give it more)  exit 4

    TieringWarning (UserWarning)                  worth knowing, does not stop the run (stderr)

Anything else that escapes is a bug (exit 1; ``--verbose`` prints its traceback). Pydantic validators raise
ValueError by pydantic's contract; :mod:`tiering.config` turns them into ConfigError.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

_P = ParamSpec("_P")
_R = TypeVar("_R")


class TieringError(Exception):
    """Base of every error raised on purpose by tiering."""

    hint = "See the message above."


class ConfigError(TieringError, ValueError):
    """The configuration file or a command-line option is wrong."""

    hint = "Fix the flag or the config key named above; `tiering COMMAND --help` lists the flags."


class SchemaError(TieringError, ValueError):
    """An input table does not match its contract (missing column, wrong type)."""

    hint = "Fix the source file, or how it is read and mapped under data.<table> in the config (README: Input contracts)."


class DataQualityError(TieringError, ValueError):
    """Too many rows of an input table are unusable, or a table is empty."""

    hint = "Run `tiering validate` to see the rows set aside per reason and the quarantine files."


class LeakageError(TieringError, RuntimeError):
    """A feature would read data after its as_of date."""

    hint = "Build features only from data at or before as_of."


class ModelError(TieringError, RuntimeError):
    """A model could not be fitted, loaded or applied."""

    hint = "Train a model on this data (`tiering train`) or pass another --model."


class NotFoundError(TieringError, LookupError):
    """The customer, tier or batch asked for is not in the scores store."""

    hint = "Check the id, tier or --as-of; `tiering tiers summary` lists the tiers and scoring dates."


class TrackingError(TieringError, RuntimeError):
    """The MLflow tracking server or registry cannot do what was asked."""

    hint = "Check tracking.uri in the config and the registered versions (`tiering compare`)."


class StoreError(TieringError, RuntimeError):
    """The scores store cannot be read or written."""

    hint = "Check store.url in the config; `tiering predict` writes a batch into it."


class ServiceUnavailableError(TrackingError, StoreError):
    """A service the run needs (MLflow tracking server, scores store database) cannot be reached or is
    locked by another writer: the input may be fine, try again later (exit status 3). Also a
    TrackingError and a StoreError, so callers catching either keep working."""

    hint = "The service is down, unreachable or busy: check it and retry later (exit status 3)."


class TieringWarning(UserWarning):
    """Something the user should know that does not stop the run (e.g. scoring on or before the model's
    training date). The command line prints these to stderr; third-party warnings stay silent."""


class ResourceError(TieringError, RuntimeError):
    """The engine ran out of memory or disk: the run needs more room, not other data (tiering.io.resource_error names
    which, and the setting to change)."""

    hint = "Give the run more memory or disk, or smaller buckets: the message names the setting (exit status 4)."


def names_resources(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """``fn``, raising :class:`ResourceError` (from the engine's own exception) where an engine ran out of memory or
    disk: what the command line's edge does, for the Python API's entry points (``tg.validate``, ``tg.features``,
    ``tg.fit``, ``tg.backtest``, ``FittedModel.score``)."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            from tiering.io import resource_error  # here: the engines' modules stay out of `import tiering`

            found = resource_error(e)
            if found is None:
                raise
            raise found from e

    return wrapper


# exit statuses of the command line (README, `tiering --help`)
EXIT_OK, EXIT_BUG, EXIT_BAD_INPUT, EXIT_UNAVAILABLE, EXIT_RESOURCES = 0, 1, 2, 3, 4
