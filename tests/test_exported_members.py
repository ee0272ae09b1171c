"""The public face of `import tiering as tg` is pinned: a name added, removed or renamed fails here
(as httpx's tests/test_exported_members.py does), every public name is documented, and importing
the package stays light."""

import subprocess
import sys
import types

import pytest

import tiering as tg

EXPECTED = [
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


def test_all_is_pinned():
    assert tg.__all__ == EXPECTED


def test_public_names_are_exactly_all():
    """Every public attribute (submodules aside) is in __all__, and every name in __all__ resolves."""
    public = {n for n in dir(tg) if not n.startswith("_") and not isinstance(getattr(tg, n), types.ModuleType)}
    assert public | {"__version__"} == set(tg.__all__)
    for name in tg.__all__:
        assert getattr(tg, name) is not None


@pytest.mark.parametrize("name", [n for n in EXPECTED if n != "__version__"])
def test_every_public_name_is_documented(name):
    obj = getattr(tg, name)
    assert obj.__module__.startswith("tiering")
    assert (obj.__doc__ or "").strip(), f"tg.{name} has no docstring"


def test_api_functions_survive_importing_modules_of_the_same_name():
    """tiering.features (features package) and tiering.backtest (module) stay importable by import; the
    attribute is the API function either way."""
    from tiering.backtest import backtest as backtest_tables  # noqa: F401
    from tiering.features import build_features  # noqa: F401

    assert tg.features.__module__ == "tiering.api" and tg.backtest.__module__ == "tiering.api"
    assert "tiering.features" in sys.modules and "tiering.backtest" in sys.modules


def test_import_is_light_and_without_side_effects():
    code = ("import sys, warnings, logging; before = list(warnings.filters); import tiering as tg; "
            "heavy = [m for m in ('pandas', 'numpy', 'ibis', 'pydantic', 'mlflow', 'sklearn', 'duckdb', 'polars') "
            "if m in sys.modules]; "
            "assert not heavy, heavy; assert warnings.filters == before; assert not logging.getLogger().handlers; "
            "tg.Config; assert 'pydantic' in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
