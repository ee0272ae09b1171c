"""The notebook face of tiering: DataFrames in, DataFrames out, no config file needed.

Every function takes the three input tables as ``transactions=``, ``interactions=`` and
``customers=`` (interactions and customers are optional), each one of: a pandas or polars
DataFrame, a pyarrow Table, an Ibis table, or the path (str or Path) of a Parquet or CSV file.
``mapping`` names, per table, the source column (or arithmetic over source columns) of each
contract column, as ``data.<table>.columns`` does in a config file::

    mapping={"transactions": {"customer_id": "cust", "ordered_at": "ts", "amount": "qty * price"}}

Settings come from ``config`` (a :class:`tiering.Config`, the path of a YAML file, or None for
the built-in defaults; the working directory's configs/base.yaml is *not* read unless passed)
and keyword overrides of any config field by its name (``horizon_days=90``, ``time_unit="W"``,
``timezone="Asia/Shanghai"``) or, where a name is in two sections, ``section__field``
(``features__duckdb_memory_limit="1GB"``). A table left out falls back to the config's
``data.<table>.path`` when one is set.

The work is done by the same functions as the command line, so results equal the CLI's:
validation (:func:`tiering.validation.check_table` per contract: bad rows set aside and counted,
nothing dropped silently), :func:`tiering.features.build_features`, :func:`tiering.train.fit`,
:func:`tiering.backtest.backtest` and :func:`tiering.predict.score`. In-memory frames are
registered on one DuckDB connection (an Ibis table bound to a backend brings its own); nothing
is written to disk unless asked (``quarantine_dir=``, ``out_dir=``, :func:`log_to_mlflow`).
Dates (``as_of``, ``origins``) are always explicit: never taken from the clock.

The public functions live here; the rest in one module per job: ``_settings`` (dates, config, keyword
overrides, mapping), ``_inputs`` (the tables read onto one backend), ``_validated`` (:class:`Validated`),
``_fitted`` (:class:`FittedModel`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tiering.api._fitted import RULE_INPUTS, RULE_THRESHOLDS, FittedModel
from tiering.api._inputs import ACCEPTED, read_tables
from tiering.api._settings import TABLES, as_day
from tiering.api._validated import Validated
from tiering.exceptions import ConfigError, names_resources

if TYPE_CHECKING:
    import pandas as pd

    from tiering.backtest import BacktestResult
    from tiering.config import Config

__all__ = [
    "ACCEPTED",
    "RULE_INPUTS",
    "RULE_THRESHOLDS",
    "TABLES",
    "FittedModel",
    "Validated",
    "backtest",
    "features",
    "fit",
    "log_to_mlflow",
    "validate",
]


@names_resources
def validate(
    transactions: Any = None,
    interactions: Any = None,
    customers: Any = None,
    *,
    mapping: dict | None = None,
    as_of: dt.date | str | None = None,
    config: Config | str | Path | None = None,
    check: bool = True,
    quarantine_dir: str | Path | None = None,
    **overrides: Any,
) -> Validated:
    """Check the tables against their contracts: the report per table and the clean tables.

    Bad rows (missing id, unparseable time, non-finite amount, duplicate line, conflicting order, after
    ``as_of`` when given, ...) are set aside with a reason and counted, never dropped silently; a schema
    problem raises SchemaError naming the table and column. With ``check`` (default, as the CLI) a table
    without usable rows or above ``validation.max_quarantine_share`` raises DataQualityError; pass
    ``check=False`` to inspect it. ``quarantine_dir``: also write the set-aside rows there.
    """
    day = as_day(as_of, "validate", required=False)
    return read_tables(
        transactions,
        interactions,
        customers,
        mapping=mapping,
        config=config,
        overrides=overrides,
        as_of=day,
        check=check,
        quarantine_dir=quarantine_dir,
    )


@names_resources
def features(
    transactions: Any = None,
    interactions: Any = None,
    customers: Any = None,
    *,
    as_of: dt.date | str | None = None,
    mapping: dict | None = None,
    config: Config | str | Path | None = None,
    **overrides: Any,
) -> pd.DataFrame:
    """The feature frame as of a day: one row per customer known at ``as_of`` (joined by then, or with a
    purchase or interaction by then), sorted by customer_id; columns documented in tiering.features.

    Only data up to the end of ``as_of`` is read. ``time_unit`` ('D' or 'W') and ``windows_days`` set the
    spec, as features.time_unit / features.windows_days do in a config file.
    """
    from tiering.train import feature_spec, features_at

    day = as_day(as_of, "features")
    data = read_tables(transactions, interactions, customers, mapping=mapping, config=config, overrides=overrides, as_of=day)
    frame = features_at(data.tables, day, feature_spec(data.config))
    return frame.sort_values("customer_id", kind="stable", ignore_index=True)


@names_resources
def fit(
    transactions: Any = None,
    interactions: Any = None,
    customers: Any = None,
    *,
    as_of: dt.date | str | None = None,
    horizon_days: int | None = None,
    mapping: dict | None = None,
    config: Config | str | Path | None = None,
    progress: bool | None = None,
    **overrides: Any,
) -> FittedModel:
    """Fit every model for scoring at ``as_of`` over the next ``horizon_days`` (default 180) and evaluate
    it out of time (test origin as_of - horizon) beside the baselines, as ``tiering train`` does (without
    logging: see :func:`log_to_mlflow`). Model settings are keyword overrides: ``btyd_model="paretonbd"``,
    ``clv_model="btyd"``, ``propensity_learner="gbm"``, ``seed=1``, ...

    ``progress``: show the steps (spinner, step, elapsed time) on stderr; None (default) only when stderr
    is a terminal or a Jupyter notebook, False never (:mod:`tiering.progress`).
    """
    from tiering.progress import ProgressDisplay
    from tiering.train import fit as fit_tables

    day = as_day(as_of, "fit")
    if horizon_days is not None:
        overrides["horizon_days"] = horizon_days
    with ProgressDisplay(progress) as step:
        step("validating the tables")
        data = read_tables(transactions, interactions, customers, mapping=mapping, config=config, overrides=overrides, as_of=day)
        result = fit_tables(data.tables, as_of=day, cfg=data.config, progress=step)
    return FittedModel(result, data.config, day, data)


@names_resources
def backtest(
    transactions: Any = None,
    interactions: Any = None,
    customers: Any = None,
    *,
    origins: list | tuple | None = None,
    horizon_days: int | None = None,
    variants: list[str] | None = None,
    out_dir: str | Path | None = None,
    mapping: dict | None = None,
    config: Config | str | Path | None = None,
    progress: bool | None = None,
    **overrides: Any,
) -> BacktestResult:
    """Every CLV and churn model fitted at each origin and judged on the ``horizon_days`` after it, as
    ``tiering backtest`` does (without logging). Returns a result with ``.table`` (origin, task, model,
    metric, value) and ``.summary`` (mean over origins). ``variants``: e.g. ["btyd", "naive"] (all by
    default); ``out_dir``: also write the plots and backtest.csv there. ``progress``: as in :func:`fit`.
    """
    from tiering.backtest import backtest as run
    from tiering.progress import ProgressDisplay

    if not origins or isinstance(origins, (str, dt.date)):
        raise ConfigError(f"tg.backtest needs origins=, a list of dates (e.g. ['2024-09-01', '2024-12-01']); got {origins!r}.")
    days = [as_day(o, "backtest", name="origins") for o in origins]
    if horizon_days is not None:
        overrides["horizon_days"] = horizon_days
    with ProgressDisplay(progress) as step:
        step("validating the tables")
        data = read_tables(transactions, interactions, customers, mapping=mapping, config=config, overrides=overrides, as_of=None)
        return run(data.tables, days, data.config, variants=variants, out_dir=out_dir, progress=step)


def log_to_mlflow(
    fitted: FittedModel,
    *,
    tracking_uri: str | None = None,
    artifact_location: str | None = None,
    experiment: str | None = None,
    registered_model: str | None = None,
    register: bool = True,
    run_name: str | None = None,
) -> tuple[str, str | None]:
    """Log a fit as an MLflow run (params, metrics, tags, the bundle as a pyfunc model) and, with
    ``register``, register it as a new version with alias challenger, as ``tiering train`` does.
    Returns (run_id, version); version is None without ``register``.

    ``tracking_uri`` (default the config's, sqlite:///models/mlflow.db) is always explicit; for a SQLite
    file the artifacts go to an ``artifacts`` folder beside it unless ``artifact_location`` says otherwise.
    ``run_name`` defaults to :func:`tiering.tracking.run_name` (``train-2011-06-01-h180-supervised-bgnbd-1a2b3c4d``).
    """
    from tiering.train import log_and_register

    if not isinstance(fitted, FittedModel):
        raise ConfigError(f"log_to_mlflow takes the FittedModel that tg.fit returns; got {type(fitted).__name__}.")
    if tracking_uri and artifact_location is None and tracking_uri.startswith("sqlite:///"):
        artifact_location = str(Path(tracking_uri.removeprefix("sqlite:///")).parent / "artifacts")
    updates = {"uri": tracking_uri, "artifact_location": artifact_location, "experiment": experiment, "registered_model": registered_model}
    tcfg = fitted.config.tracking.model_copy(update={k: v for k, v in updates.items() if v is not None})
    r = fitted.result
    with _quiet_mlflow():
        from tiering import tracking  # mlflow warns about its own internals when this defines the pyfunc class

        name = run_name or tracking.run_name(
            "train", fitted.config, fitted.as_of, r.data_fingerprint.get("hash"), clv_model=fitted.bundle.clv_kind
        )
        log_and_register(
            r, fitted.config, as_of=fitted.as_of, reports=fitted.data.table_reports, tracking_cfg=tcfg, run_name=name, register=register
        )
    fitted.config = fitted.config.model_copy(update={"tracking": tcfg})
    fitted.run_id, fitted.model_uri, fitted.version = r.run_id, r.model_uri, r.version
    assert r.run_id is not None  # log_and_register sets it
    return r.run_id, r.version


# ------------------------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def _quiet_mlflow():
    """MLflow's notices about its own internals (type hints, integer columns, cloudpickle, creating tables) off for
    the duration of a call: nothing a caller can act on. Errors still raise; other libraries' warnings still show."""
    import importlib
    import logging
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="mlflow")
        importlib.import_module("mlflow")  # mlflow configures its loggers on first import: set the level after

        logger = logging.getLogger("mlflow")
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            logger.setLevel(level)
