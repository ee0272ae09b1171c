"""tiering: customer tiering for private-domain retail.

Importing the package has no side effects; heavy libraries load where they are used.
"""

from tiering.exceptions import (
    ConfigError,
    DataQualityError,
    LeakageError,
    ModelError,
    SchemaError,
    StoreError,
    TieringError,
    TrackingError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataQualityError",
    "LeakageError",
    "ModelError",
    "SchemaError",
    "StoreError",
    "TieringError",
    "TrackingError",
    "__version__",
]
