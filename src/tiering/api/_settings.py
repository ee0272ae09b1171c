"""How the API functions read their settings: a day from what the caller passed (never the clock), and the
config from ``config=`` (object, YAML path or None), keyword overrides of its fields and ``mapping=``."""

from __future__ import annotations

import datetime as dt
import os
from typing import TYPE_CHECKING, Any, Literal, overload

from tiering.exceptions import ConfigError

if TYPE_CHECKING:
    from tiering.config import Config

TABLES = ("transactions", "interactions", "customers")


@overload
def as_day(value: Any, fn: str, *, required: Literal[True] = True, name: str = "as_of") -> dt.date: ...


@overload
def as_day(value: Any, fn: str, *, required: bool, name: str = "as_of") -> dt.date | None: ...


def as_day(value: Any, fn: str, *, required: bool = True, name: str = "as_of") -> dt.date | None:
    """A day from a date, a midnight datetime/Timestamp or ISO text; never the clock."""
    hint = f"e.g. {name}='2025-06-30' or datetime.date(2025, 6, 30)"
    if value is None:
        if required:
            raise ConfigError(f"tg.{fn} needs {name}=, the day the data are cut at ({hint}); it is never taken from the clock.")
        return None
    if isinstance(value, dt.datetime):
        if value.time() != dt.time() or value.tzinfo is not None:
            raise ConfigError(f"{name} is a day; got the time {value!r}. Pass the date alone ({hint}).")
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            raise ConfigError(f"{name} must be a date as YYYY-MM-DD; got {value!r}.") from None
    raise ConfigError(f"{name} must be a date ({hint}); got {type(value).__name__} {value!r}.")


def make_config(config: Any, mapping: dict | None, overrides: dict[str, Any]) -> Config:
    """The config object: ``config`` (object, YAML path or None for the defaults), keyword overrides, mapping."""
    from tiering.config import Config, load_config

    if config is None:
        cfg = Config()
    elif isinstance(config, Config):
        cfg = config
    elif isinstance(config, (str, os.PathLike)):
        cfg = load_config(config)
    else:
        raise ConfigError(
            f"config= got {type(config).__name__}; pass a tiering.Config, the path of a YAML config file, "
            "or None for the built-in defaults."
        )
    return with_mapping(override(cfg, overrides), mapping)


def override(cfg: Config, overrides: dict[str, Any]) -> Config:
    """``cfg`` with config fields set by name (``horizon_days=90``) or ``section__field``; validated as a file is."""
    if not overrides:
        return cfg
    from pydantic import BaseModel, ValidationError

    from tiering.config import Config

    sections = {s: type(getattr(cfg, s)).model_fields for s in type(cfg).model_fields if isinstance(getattr(cfg, s), BaseModel)}
    owners: dict[str, list[str]] = {}
    for s, fields in sections.items():
        for f in fields:
            owners.setdefault(f, []).append(s)
    raw = cfg.model_dump()
    for key, value in overrides.items():
        section, _, name = key.rpartition("__")
        if not section:
            found = owners.get(key, [])
            if len(found) > 1:
                raise ConfigError(
                    f"Setting {key!r} is in several config sections ({', '.join(found)}); write "
                    f"{' or '.join(f'{s}__{key}=' for s in found)}."
                )
            if not found or found == ["data"] and key in TABLES:
                known = sorted(f for f, ss in owners.items() if len(ss) == 1 and f not in TABLES)
                raise ConfigError(
                    f"Unknown keyword {key}={value!r}. Keyword settings are config fields, e.g. horizon_days, "
                    f"time_unit, windows_days, btyd_model, clv_model, timezone; all: {', '.join(known)} "
                    "(or section__field). Tables go in transactions=, interactions=, customers=."
                )
            section, name = found[0], key
        elif section not in sections or name not in sections[section]:
            raise ConfigError(f"Unknown setting {key}={value!r}: the config has no field {section}.{name}.")
        raw[section][name] = value
    try:
        new = Config.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']} (got {e.get('input')!r})" for e in exc.errors())
        raise ConfigError(f"Invalid setting: {problems}.") from None
    new.source_path = cfg.source_path
    return new


def with_mapping(cfg: Config, mapping: dict | None) -> Config:
    """``cfg`` with ``mapping`` (table -> {contract column: source column or expression}) merged into data.<table>.columns."""
    if not mapping:
        return cfg
    from tiering.config import SourceConfig

    example = "e.g. mapping={'transactions': {'customer_id': 'cust', 'amount': 'qty * price'}}"
    if not isinstance(mapping, dict) or set(mapping) - set(TABLES):
        found = sorted(mapping) if isinstance(mapping, dict) else type(mapping).__name__
        raise ConfigError(
            f"mapping= must map table names ({', '.join(TABLES)}) to {{contract column: source column}}; got {found}. {example}."
        )
    data = cfg.data.model_copy()
    for table, columns in mapping.items():
        if not isinstance(columns, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in columns.items()):
            raise ConfigError(
                f"mapping[{table!r}] must be a dict of contract column -> source column or expression (text); got {columns!r}. {example}."
            )
        src = getattr(data, table) or SourceConfig()
        setattr(data, table, src.model_copy(update={"columns": {**src.columns, **columns}}))
    return cfg.model_copy(update={"data": data})
