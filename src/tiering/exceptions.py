"""One exception tree. Every error is also a builtin so callers can catch either."""

from __future__ import annotations


class TieringError(Exception):
    """Base of every error raised on purpose by tiering."""


class ConfigError(TieringError, ValueError):
    """The configuration file or a command-line option is wrong."""


class SchemaError(TieringError, ValueError):
    """An input table does not match its contract (missing column, wrong type)."""


class DataQualityError(TieringError, ValueError):
    """Too many rows of an input table are unusable, or a table is empty."""


class LeakageError(TieringError, RuntimeError):
    """A feature would read data after its as_of date."""


class ModelError(TieringError, RuntimeError):
    """A model could not be fitted, loaded or applied."""


class TrackingError(TieringError, RuntimeError):
    """The MLflow tracking server or registry cannot do what was asked."""


class StoreError(TieringError, RuntimeError):
    """The scores store cannot be read or written."""
