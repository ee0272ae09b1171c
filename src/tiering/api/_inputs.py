"""The API's inputs read onto one backend: DataFrames (pandas, polars), pyarrow Tables, Ibis tables and
Parquet/CSV paths become Ibis tables on one connection, then go through validation (:class:`Validated`)."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tiering.api._settings import make_config
from tiering.api._validated import Validated, check_all
from tiering.exceptions import ConfigError, SchemaError

if TYPE_CHECKING:
    import ibis.expr.types as ir

    from tiering.config import Config, SourceConfig

ACCEPTED = "a pandas or polars DataFrame, a pyarrow Table, an Ibis table, or the path (str or Path) of a Parquet or CSV file"
_NAMES = itertools.count()


def read_tables(
    transactions: Any,
    interactions: Any,
    customers: Any,
    *,
    mapping: dict | None,
    config: Any,
    overrides: dict[str, Any],
    as_of: dt.date | None,
    check: bool = True,
    quarantine_dir: str | Path | None = None,
) -> Validated:
    """The validated inputs: a Validated passed in (revalidated when as_of or settings differ), or the tables read."""
    if isinstance(transactions, Validated):
        if interactions is not None or customers is not None:
            raise ConfigError("Pass either a Validated result (from tg.validate) or tables, not both.")
        cfg = make_config(transactions.config if config is None else config, mapping, overrides)
        out = transactions.at(as_of, cfg)
        if quarantine_dir is not None:
            out.write_quarantine(quarantine_dir)
        return out.check() if check else out
    cfg = make_config(config, mapping, overrides)
    values = {"transactions": transactions, "interactions": interactions, "customers": customers}
    con = connection(cfg, values)
    inputs = {name: read_input(con, name, value, cfg) for name, value in values.items()}
    if inputs["transactions"] is None:
        raise ConfigError(f"transactions= is required: {ACCEPTED} (or a config whose data.transactions.path is set).")
    return check_all(cfg, con, inputs, as_of=as_of, check=check, quarantine_dir=quarantine_dir)


def input_kind(value: Any) -> str | None:
    """What an input is ('pandas.DataFrame', 'polars.DataFrame', 'pyarrow.Table', 'ibis table', 'path'), None if unknown."""
    import ibis.expr.types as ir
    import pandas as pd
    import pyarrow as pa

    if isinstance(value, (str, os.PathLike)):
        return "path"
    if isinstance(value, pd.DataFrame):
        return "pandas.DataFrame"
    if isinstance(value, pa.Table):
        return "pyarrow.Table"
    if isinstance(value, ir.Table):
        return "ibis table"
    pl = sys.modules.get("polars")  # only a frame made by an imported polars can be one
    if pl is not None and isinstance(value, (pl.DataFrame, pl.LazyFrame)):
        return f"polars.{type(value).__name__}"
    return None


def bound_backend(table: ir.Table):
    """The backend an Ibis table is bound to, None for an unbound one (ibis.memtable)."""
    from ibis.common.exceptions import IbisError

    try:
        return table._find_backend()
    except IbisError:
        return None


def connection(cfg: Config, values: dict[str, Any]):
    """The one backend every table runs on: that of the Ibis tables passed (all the same), else a new DuckDB."""
    from tiering.io import connect

    backends: list[Any] = []  # Ibis backends
    for name, value in values.items():
        kind = input_kind(value) if value is not None else None
        if value is not None and kind is None:
            raise ConfigError(f"{name}= got {type(value).__module__}.{type(value).__qualname__}; pass {ACCEPTED}.")
        bound = bound_backend(value) if kind == "ibis table" else None
        if bound is not None and all(bound is not b for b in backends):
            backends.append(bound)
    if len(backends) > 1:
        raise ConfigError(
            "The Ibis tables passed live on different backends (connections); put them on one connection, or pass DataFrames or file paths."
        )
    if backends:
        return backends[0]
    return connect(cfg.features.engine, memory_limit=cfg.features.duckdb_memory_limit)


def read_input(con, name: str, value: Any, cfg: Config) -> tuple[ir.Table, SourceConfig, str] | None:
    """One input as an Ibis table on ``con``, with the SourceConfig (mapping, CSV dialect) and a label for the report."""
    from tiering.config import SourceConfig
    from tiering.io import display_path, is_url, read_source

    src = getattr(cfg.data, name) or SourceConfig()
    if value is None:
        return (read_source(con, src, name), src, display_path(src.path)) if src.path else None
    kind = input_kind(value)
    assert kind is not None  # connection refused the values of no known kind
    if kind == "path" and is_url(value):  # read_source looks it up (on Spark: Hadoop's FileSystem) and names it if missing
        src = src.model_copy(update={"path": str(value)})
        return read_source(con, src, name), src, display_path(value)
    if kind == "path":
        path = Path(value)
        if not path.exists():
            raise ConfigError(
                f"{name}={str(value)!r} does not exist (resolved against {Path.cwd()}). Pass an existing "
                "Parquet or CSV file, or a DataFrame."
            )
        src = src.model_copy(update={"path": str(path)})
        return read_source(con, src, name), src, str(path)
    if kind == "ibis table" and bound_backend(value) is con:
        return value, src, kind
    if kind == "polars.LazyFrame":
        value = value.collect()
    try:
        return con.create_table(f"tiering_{name}_{next(_NAMES)}", obj=value, temp=True), src, kind
    except (TypeError, ValueError) as exc:  # pyarrow's ArrowTypeError / ArrowInvalid: a column of mixed types
        raise SchemaError(
            f"The {name} frame cannot be read: {exc}. Give each column one type, e.g. ids as text: "
            "df['customer_id'] = df['customer_id'].astype(str)."
        ) from None
