"""tiering: customer tiering for private-domain retail.

In a notebook::

    import tiering as tg

    checked = tg.validate(transactions=tx, interactions=ix, customers=cu)   # reports + clean tables
    feats = tg.features(checked, as_of="2025-06-30")                        # one row per customer
    model = tg.fit(checked, as_of="2025-06-30", horizon_days=90)            # out-of-time metrics in model.metrics
    scores = model.score()                                                  # tiers, churn risk, CLV per customer
    model.explain("c000042")                                                # why that tier

Tables may be pandas or polars DataFrames, pyarrow Tables, Ibis tables or Parquet/CSV paths; see
:mod:`tiering.api`. Importing the package has no side effects; heavy libraries load where used
(the names below resolve on first access).

``tg.features`` and ``tg.backtest`` are the API functions; the modules of the same names stay
importable as ever (``from tiering.features import build_features``), but the attribute
``tiering.features`` is the function, so reach the modules by import, not by attribute.
"""

import sys as _sys
import types as _types
from typing import TYPE_CHECKING as _TYPE_CHECKING

from tiering.exceptions import (
    ConfigError,
    DataQualityError,
    LeakageError,
    ModelError,
    ResourceError,
    SchemaError,
    ServiceUnavailableError,
    StoreError,
    TieringError,
    TieringWarning,
    TrackingError,
)

if _TYPE_CHECKING:
    from tiering.api import FittedModel, Validated, backtest, features, fit, log_to_mlflow, validate
    from tiering.config import Config, load_config

__version__ = "0.1.0"

# public name -> module that defines it, imported on first access (keeps `import tiering` light)
_LAZY = {
    "Config": "tiering.config",
    "load_config": "tiering.config",
    "FittedModel": "tiering.api",
    "Validated": "tiering.api",
    "backtest": "tiering.api",
    "features": "tiering.api",
    "fit": "tiering.api",
    "log_to_mlflow": "tiering.api",
    "validate": "tiering.api",
}

__all__ = [
    "Config",
    "ConfigError",
    "DataQualityError",
    "FittedModel",
    "LeakageError",
    "ModelError",
    "ResourceError",
    "SchemaError",
    "ServiceUnavailableError",
    "StoreError",
    "TieringError",
    "TieringWarning",
    "TrackingError",
    "Validated",
    "__version__",
    "backtest",
    "features",
    "fit",
    "load_config",
    "log_to_mlflow",
    "validate",
]


class _Package(_types.ModuleType):
    """The tiering module: importing a submodule named like an API function (tiering.features,
    tiering.backtest) must not replace the function; the submodule stays in sys.modules."""

    def __setattr__(self, name: str, value) -> None:
        if name in _LAZY and isinstance(value, _types.ModuleType):
            return
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tiering' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
