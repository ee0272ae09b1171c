"""An experiment's spec (``spec.yaml``): its data, origins, horizons, selection/report split and variants, parsed
with one clear message per problem, and the helpers that resolve it (origins per horizon, a variant's config)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tiering.config import Config
from tiering.exceptions import ConfigError

SPEC_FILE = "spec.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SimulateSpec(_Strict):
    customers: int = Field(20_000, gt=0)
    start: dt.date
    end: dt.date
    seed: int = 0


class DataSpec(_Strict):
    config: str | None = None
    simulate: SimulateSpec | None = None
    cdnow: bool = False
    complete_journey: bool = False

    @model_validator(mode="after")
    def _one(self) -> DataSpec:
        given = [k for k in ("config", "simulate", "cdnow", "complete_journey") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"give exactly one of config, simulate, cdnow, complete_journey; got {given or 'none'}")
        return self


class RollingOrigins(_Strict):
    """The 1st of every month from ``from`` to ``to`` that has a full horizon after it inside the data
    and at least ``min_history_days`` of data before it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    every: Literal["month"] = "month"
    start: dt.date = Field(alias="from")
    to: dt.date
    min_history_days: int = Field(180, ge=0)

    @model_validator(mode="after")
    def _order(self) -> RollingOrigins:
        if self.to < self.start:
            raise ValueError(f"'to' ({self.to}) is before 'from' ({self.start})")
        return self


class BootstrapSpec(_Strict):
    replicates: int = Field(500, ge=20)
    seed: int = 0
    level: float = Field(0.90, gt=0, lt=1)


Origins = list[dt.date] | RollingOrigins
Horizons = int | list[int]


def monthly_origins(
    start: dt.date, to: dt.date, *, first: dt.date, last: dt.date, horizon_days: int, min_history_days: int = 180
) -> list[dt.date]:
    """The 1st of every month in [start, to] with a full ``horizon_days`` holdout inside the data
    (o + H <= ``last``, the day of the last transaction) and ``min_history_days`` of data before it
    (o - ``first`` >= min_history_days, and o after ``first``)."""
    out = []
    o = dt.date(start.year, start.month, 1)
    if o < start:
        o = dt.date(o.year + (o.month == 12), o.month % 12 + 1, 1)
    while o <= to:
        if o + dt.timedelta(days=horizon_days) <= last and o > first and (o - first).days >= min_history_days:
            out.append(o)
        o = dt.date(o.year + (o.month == 12), o.month % 12 + 1, 1)
    return out


def origin_split(origin: dt.date, horizon_days: int, select_until: dt.date | None) -> str:
    """``select`` (holdout ends by select_until), ``report`` (after it) or ``gap`` (straddles it).
    Without a split every origin is ``report``."""
    if select_until is None or origin > select_until:
        return "report"
    return "select" if origin + dt.timedelta(days=horizon_days) <= select_until else "gap"


class VariantSpec(_Strict):
    """One variant: config overrides, and optionally its own models, origins or horizon."""

    config: dict[str, Any] = Field(default_factory=dict)
    models: list[str] | None = None
    origins: Origins | None = None
    horizon_days: Horizons | None = None


class ExperimentSpec(_Strict):
    description: str = ""
    mlflow_experiment: str
    data: DataSpec
    origins: Origins
    horizon_days: Horizons
    select_until: dt.date | None = None  # origins with o + H <= it choose, origins after it are reported
    hiatus_days: list[int] = Field(default_factory=lambda: [273])  # fixed hiatus rules (273 days: 9 months)
    bootstrap: BootstrapSpec = Field(default_factory=BootstrapSpec)
    config: str | None = None  # base config for the models and tracking (default: the --config in use)
    # which backtest models to fit (e.g. [btyd, "clv:naive"]); all of them when left out
    models: list[str] | None = None
    variants: dict[str, VariantSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> ExperimentSpec:
        for where, o, h in [("", self.origins, self.horizon_days)] + [
            (f"variants.{n}.", v.origins, v.horizon_days) for n, v in self.variants.items()
        ]:
            if isinstance(o, list) and not o:
                raise ValueError(f"{where}origins: give at least one origin date or {{every: month, from: D, to: D}}")
            hs = h if isinstance(h, list) else [h] if h is not None else []
            if isinstance(h, list) and not h or any(x <= 0 for x in hs):
                raise ValueError(f"{where}horizon_days: give one or more positive day counts; got {h}")
        if any(x <= 0 for x in self.hiatus_days):
            raise ValueError(f"hiatus_days must be positive day counts; got {self.hiatus_days}")
        return self


def read_spec(folder: str | Path) -> ExperimentSpec:
    """Parse ``folder/spec.yaml`` with one clear message per problem."""
    import yaml

    path = Path(folder) / SPEC_FILE
    if not path.exists():
        raise ConfigError(f"No experiment spec at '{path}'. An experiment is a folder holding {SPEC_FILE} (see experiments/README.md).")
    try:
        return ExperimentSpec.model_validate(yaml.safe_load(path.read_text()) or {})
    except (yaml.YAMLError, ValidationError) as exc:
        if isinstance(exc, ValidationError):
            exc = "; ".join((f"{'.'.join(str(x) for x in e['loc'])}: " if e["loc"] else "") + e["msg"] for e in exc.errors())
        raise ConfigError(f"Experiment spec '{path}' is invalid: {exc}.") from None


def _merge(base: dict, over: dict, where: str = "") -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            out[k] = _merge(base[k], v, f"{where}{k}.")
        else:
            out[k] = v
    return out


def variant_config(base: Config, overrides: dict[str, Any], name: str) -> Config:
    """The base config with one variant's overrides merged in (validated like a config file)."""
    try:
        return Config.model_validate(_merge(base.model_dump(mode="json"), overrides))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"Variant {name!r} of the experiment has invalid overrides: {problems}.") from None


def horizons_of(h) -> list[int]:
    """A spec's ``horizon_days`` (one or a list) as a list of days."""
    return [int(x) for x in (h if isinstance(h, list) else [h])]


def resolve_origins(origins: Origins, horizon_days: int, first: dt.date, last: dt.date) -> list[dt.date]:
    """The origins of a spec for one horizon: the explicit list, or the rolling monthly ones."""
    if isinstance(origins, RollingOrigins):
        return monthly_origins(
            origins.start, origins.to, first=first, last=last, horizon_days=horizon_days, min_history_days=origins.min_history_days
        )
    return sorted(set(origins))
