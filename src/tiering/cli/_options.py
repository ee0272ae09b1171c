"""The options every command shares (--config, --set, --json, the source overrides, --horizon-days, --as-of)
and how their values are read: dates, the config, --engine."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, overload

import typer

from tiering.cli._output import SECRETS
from tiering.config import SET_HELP
from tiering.exceptions import ConfigError

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="Config file (default configs/base.yaml if present, else built-in defaults).")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help=SET_HELP + " Applied over --config, before this command's own options (--horizon-days, --engine, --transactions, ...).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print strict JSON instead of tables (errors too: {error, kind, hint}).")]
# text, not Path: pathlib would make s3a:/bucket/key of s3a://bucket/key (on --engine spark a source may be a URL)
TxOpt = Annotated[str | None, typer.Option("--transactions", help="Transactions file or URL in contract column names (overrides config).")]
IxOpt = Annotated[str | None, typer.Option("--interactions", help="Interactions file or URL in contract column names (overrides config).")]
CuOpt = Annotated[str | None, typer.Option("--customers", help="Customers file or URL in contract column names (overrides config).")]
HorizonOpt = Annotated[
    int | None, typer.Option("--horizon-days", min=1, max=3650, help="Prediction horizon H in days (default from config).")
]
AsOfOpt = Annotated[str | None, typer.Option("--as-of", help="Scoring date YYYY-MM-DD (default: the latest complete batch).")]


@overload
def parse_date(value: str, option: str) -> dt.date: ...


@overload
def parse_date(value: str | None, option: str) -> dt.date | None: ...


def parse_date(value: str | None, option: str) -> dt.date | None:
    """An ISO ``YYYY-MM-DD`` option value as a date (None stays None); a ConfigError naming ``option`` otherwise."""
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{option} must be a date as YYYY-MM-DD; got {value!r}.") from None


def load(config: Path | None, transactions=None, interactions=None, customers=None, *, sets: list[str] | None = None):
    """The config file (--config), then each --set KEY=VALUE in order, then the source options; its secret values
    (and the API token) are masked in everything printed from then on."""
    import os

    from tiering.config import load_config

    cfg = load_config(config, sets or ()).with_sources(transactions, interactions, customers)
    SECRETS.extend(cfg.secret_values() + [os.environ.get("TIERING_API_TOKEN") or ""])
    return cfg


def with_engine(cfg, engine: str | None):
    """``cfg`` with ``--engine`` applied (duckdb or spark), when given."""
    if engine is not None:
        if engine not in ("duckdb", "spark"):
            raise ConfigError(f"--engine must be duckdb or spark; got {engine!r}.")
        cfg.features.engine = engine
    return cfg
