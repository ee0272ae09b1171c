"""`tiering experiment run experiments/NAME`: one comparison, every variant backtested and logged.

An experiment is a folder with a ``spec.yaml``::

    description: BTYD vs supervised vs hybrid CLV on Online Retail II
    mlflow_experiment: exp-clv-online-retail     # every variant is one run in this MLflow experiment
    data:                                        # one of:
      config: configs/base.yaml                  #   the sources of a config file (relative to the cwd)
      # simulate: {customers: 20000, start: 2024-01-01, end: 2025-12-31, seed: 0}
      # cdnow: true                              #   CDNOW's 23,570 customers, from the lifetimes package
    origins: [2010-09-01, 2010-12-01, 2011-03-01, 2011-06-01]
    horizon_days: 180
    models: [naive, btyd]                        # optional: the backtest models to fit (default: all)
    variants:                                    # name -> config overrides, optionally models/origins/horizon_days
      bgnbd: {}
      paretonbd: {config: {model: {btyd_model: paretonbd}}}
      weeks_26: {config: {features: {time_unit: W}}, origins: [2011-03-01], horizon_days: 182}

Each variant runs the backtest (every model and baseline fitted at each origin, judged on the
holdout that follows it) and logs one MLflow run with spec.yaml, the resolved config, the data
fingerprint, the metrics per origin and averaged, and the plots. The tidy table of every
variant x origin x task x model x metric goes to ``results.csv`` in the experiment folder and the
averages over origins to ``results.md`` (the table the experiment's README quotes).
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tiering.config import Config, load_config
from tiering.exceptions import ConfigError

if TYPE_CHECKING:
    from tiering.backtest import BacktestResult

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

    @model_validator(mode="after")
    def _one(self) -> DataSpec:
        given = [k for k in ("config", "simulate", "cdnow") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"give exactly one of config, simulate, cdnow; got {given or 'none'}")
        return self


class VariantSpec(_Strict):
    """One variant: config overrides, and optionally its own models, origins or horizon."""

    config: dict[str, Any] = Field(default_factory=dict)
    models: list[str] | None = None
    origins: list[dt.date] | None = None
    horizon_days: int | None = Field(None, gt=0)


class ExperimentSpec(_Strict):
    description: str = ""
    mlflow_experiment: str
    data: DataSpec
    origins: list[dt.date] = Field(min_length=1)
    horizon_days: int = Field(gt=0)
    config: str | None = None  # base config for the models and tracking (default: the --config in use)
    # which backtest models to fit (e.g. [btyd, "clv:naive"]); all of them when left out
    models: list[str] | None = None
    variants: dict[str, VariantSpec] = Field(min_length=1)


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
            exc = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
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


def _data_config(spec: ExperimentSpec, base: Config, workdir: Path) -> Config:
    """The base config whose sources are the experiment's data."""
    if spec.data.config:
        return base.model_copy(update={"data": load_config(spec.data.config).data})
    if spec.data.simulate:
        from tiering.datasets import simulate

        s = spec.data.simulate
        simulate(s.customers, s.start, s.end, seed=s.seed).write(workdir / "data")
        return base.with_source_dir(workdir / "data")
    from tiering.datasets import load_cdnow

    tx = load_cdnow()
    path = workdir / "data" / "cdnow_transactions.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    tx.to_parquet(path, index=False)
    cfg = base.with_sources(transactions=path)
    cfg.data.interactions = cfg.data.customers = None
    return cfg


@dataclass
class ExperimentResult:
    spec: ExperimentSpec
    table: pd.DataFrame  # variant, origin, task, model, metric, value
    run_ids: dict[str, str]
    results_csv: Path
    results_md: Path


_KEY_METRICS = ("normalized_gini", "roc_auc", "brier")


def to_markdown(results: dict[str, BacktestResult], spec: ExperimentSpec) -> str:
    """Per variant, the backtest's mean-over-origins tables, then the key metrics per origin."""
    from tiering.backtest import to_markdown as backtest_markdown

    lines = [f"# Results: {spec.description or spec.mlflow_experiment}", "",
             "Written by `tiering experiment run`; do not edit by hand.", ""]
    for name, res in results.items():
        origins = sorted({str(o) for o in res.table["origin"]})
        lines += [f"## {name}: mean over {len(origins)} origins ({', '.join(origins)}), horizon {res.horizon_days} days", "",
                  backtest_markdown(res.summary, digits=4)]
    key = pd.concat([r.table.assign(variant=n) for n, r in results.items()], ignore_index=True)
    key = key[key["metric"].isin(_KEY_METRICS)]
    wide = key.pivot_table(index=["variant", "task", "model", "metric"], columns="origin", values="value", sort=False)
    lines += ["## Per origin: normalized Gini (clv), ROC-AUC and Brier (churn, propensity)", "",
              "| variant | task | model | metric | " + " | ".join(str(c) for c in wide.columns) + " |",
              "|---|---|---|---|" + "---:|" * len(wide.columns)]
    lines += ["| " + " | ".join(idx) + " | " + " | ".join("" if pd.isna(v) else f"{v:.4f}" for v in row) + " |"
              for idx, row in wide.iterrows()]
    return "\n".join(lines) + "\n"


def run_experiment(folder: str | Path, base: Config, *, progress=None) -> ExperimentResult:
    """Backtest every variant of the experiment in ``folder`` and log each as one MLflow run."""
    from tiering.backtest import backtest, log_backtest
    from tiering.train import data_fingerprint
    from tiering.validation import load_tables

    step = progress or (lambda msg: None)
    folder = Path(folder)
    spec = read_spec(folder)
    if spec.config:
        base = load_config(spec.config)
    tracking = base.tracking.model_copy(update={"experiment": spec.mlflow_experiment})
    results, run_ids = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        data_cfg = _data_config(spec, base, workdir)
        data_cfg.validation.quarantine_dir = str(workdir / "quarantine")
        data_cfg.tracking = tracking  # every variant logs to the spec's MLflow experiment
        step(f"validating the data of {folder.name}")
        tables = load_tables(data_cfg, as_of=None)
        fingerprint = data_fingerprint(tables)
        for name, v in spec.variants.items():
            cfg = variant_config(data_cfg, v.config, name)
            origins, horizon, models = v.origins or spec.origins, v.horizon_days or spec.horizon_days, v.models or spec.models
            step(f"variant {name}: backtest at {len(origins)} origins, horizon {horizon} days")
            res = backtest(tables, origins, cfg, horizon_days=horizon, variants=models, out_dir=workdir / name)
            results[name] = res
            shutil.copy(folder / SPEC_FILE, workdir / name / SPEC_FILE)  # the spec travels with every run
            run_ids[name] = log_backtest(
                cfg, res, run_name=f"{folder.name}/{name}", kind="experiment",
                data_hash=fingerprint["hash"], params={"variant": name, "overrides": v.config, "models": models or "all"},
                tags={"experiment": folder.name, "variant": name}, artifacts_dir=workdir / name,
            )
    table = pd.concat([r.table.assign(variant=name) for name, r in results.items()], ignore_index=True)
    table = table[["variant", "origin", "task", "model", "metric", "value"]]
    results_csv, results_md = folder / "results.csv", folder / "results.md"
    table.to_csv(results_csv, index=False)
    results_md.write_text(to_markdown(results, spec))
    return ExperimentResult(spec, table, run_ids, results_csv, results_md)
