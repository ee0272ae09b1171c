"""Running an experiment: its data loaded and validated once, every variant backtested at each horizon, compared
with the best baselines and logged as one MLflow run, then results.csv, comparison.csv and results.md written."""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from tiering.config import Config, load_config
from tiering.exceptions import ConfigError
from tiering.experiment._compare import baseline_rows, compare, comparison_frames
from tiering.experiment._markdown import comparison_markdown, to_markdown
from tiering.experiment._spec import (
    SPEC_FILE,
    ExperimentSpec,
    VariantSpec,
    horizons_of,
    origin_split,
    read_spec,
    resolve_origins,
    variant_config,
)

if TYPE_CHECKING:
    from tiering.backtest import BacktestResult
    from tiering.validation import ValidatedTables


def _data_config(spec: ExperimentSpec, base: Config, workdir: Path) -> Config:
    """The base config whose sources are the experiment's data."""
    if spec.data.config:
        return base.model_copy(update={"data": load_config(spec.data.config).data})
    if spec.data.simulate:
        from tiering.datasets import simulate

        s = spec.data.simulate
        simulate(s.customers, s.start, s.end, seed=s.seed).write(workdir / "data")
        return base.with_source_dir(workdir / "data")
    if spec.data.complete_journey:
        from tiering.datasets import load_complete_journey

        cj = load_complete_journey()
        d = workdir / "data"
        d.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name in ("transactions", "interactions", "customers"):
            frame = getattr(cj, name)
            if frame is not None:
                frame.to_parquet(d / f"{name}.parquet", index=False)
                paths[name] = d / f"{name}.parquet"
        cfg = base.with_sources(**paths)
        if "interactions" not in paths:
            cfg.data.interactions = None
        return cfg
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
    table: pd.DataFrame  # variant, horizon_days, origin, split, task, model, metric, value
    run_ids: dict[str, str]
    results_csv: Path
    results_md: Path
    comparison: pd.DataFrame | None = None  # variant, horizon_days, task, metric, model, mean_diff, ci_low, ci_high, ...
    comparison_csv: Path | None = None
    seconds: dict[str, float] | None = None


@dataclass
class ExperimentData:
    """The experiment's data, validated once and shared by every variant."""

    cfg: Config  # the base config on the experiment's sources, logging to its MLflow experiment
    tables: ValidatedTables
    data_hash: str
    first: dt.date  # the days of the first and last transaction
    last: dt.date
    truth: pd.DataFrame | None  # the simulator's latent truth, when the data are simulated
    workdir: Path  # a temporary folder: the data, each run's artifacts


@dataclass
class _VariantRun:
    """One variant at one horizon: its backtest, its tidy rows and comparison, and what results.md says of it."""

    key: str  # the variant's name, with "/h{H}" when the variant runs several horizons
    result: BacktestResult
    table: pd.DataFrame  # the backtest's rows and the extra baselines', with split, variant and horizon_days
    comparison: pd.DataFrame  # against the best baselines on the report origins (empty when there is none)
    splits: dict[dt.date, str]
    hiatus: float | None  # the hiatus chosen on the selection origins
    seconds: float
    run_id: str = ""


def load_data(spec: ExperimentSpec, base: Config, workdir: Path, name: str, step=lambda message: None) -> ExperimentData:
    """The experiment's data as validated tables, with the config that reads them and their span: what every variant
    of ``spec`` is backtested on (``workdir``: a folder for the data a spec simulates and the quarantine; ``name``:
    the experiment's, for ``step``'s progress messages). For scripts that compare variants in other ways than
    :func:`run_experiment` (e.g. experiments/sweep_propensity_online_retail/against_default.py)."""
    from tiering.train import data_fingerprint
    from tiering.validation import load_tables

    cfg = _data_config(spec, base, workdir)
    cfg.validation.quarantine_dir = str(workdir / "quarantine")
    cfg.tracking = base.tracking.model_copy(update={"experiment": spec.mlflow_experiment})  # every variant logs there
    truth = pd.read_parquet(workdir / "data" / "truth.parquet") if spec.data.simulate else None
    step(f"validating the data of {name}")
    tables = load_tables(cfg, as_of=None)
    t = tables.transactions
    agg = t.aggregate(first=t.ordered_at.min(), last=t.ordered_at.max()).to_pandas().iloc[0]
    return ExperimentData(
        cfg, tables, data_fingerprint(tables)["hash"], pd.Timestamp(agg["first"]).date(), pd.Timestamp(agg["last"]).date(), truth, workdir
    )


def _run_variant(spec: ExperimentSpec, data: ExperimentData, cfg: Config, name: str, v: VariantSpec, H: int, key: str, step) -> _VariantRun:
    """Backtest one variant at one horizon and compare its models with the best baseline of each report origin."""
    from tiering.backtest import backtest

    origins = resolve_origins(v.origins or spec.origins, H, data.first, data.last)
    if not origins:
        raise ConfigError(
            f"Variant {name!r}, horizon {H} days: no origin fits the data ({data.first}..{data.last}) with a "
            f"full holdout after it and the history asked for; widen 'origins' or shorten the horizon."
        )
    splits = {o: origin_split(o, H, spec.select_until) for o in origins}
    step(f"variant {key}: backtest at {len(origins)} origins ({origins[0]}..{origins[-1]}), horizon {H} days")
    t0 = time.perf_counter()
    res = backtest(
        data.tables,
        origins,
        cfg,
        horizon_days=H,
        variants=v.models or spec.models,
        out_dir=data.workdir / key,
        keep_predictions=True,
        progress=lambda m: step(f"[{key}] {m}"),
    )
    frames, chosen, notes = comparison_frames(res.predictions, H, splits, spec.hiatus_days, data.truth)
    res.notes += notes
    extra = pd.DataFrame(baseline_rows(frames, splits))
    tab = res.table.assign(split=res.table["origin"].map(splits))
    tab = pd.concat([tab, extra], ignore_index=True) if not extra.empty else tab
    cmp = compare(frames, splits, spec.bootstrap)
    if not cmp.empty:
        cmp.to_csv(data.workdir / key / "comparison.csv", index=False)
        cmp = cmp.assign(variant=name, horizon_days=H)
    return _VariantRun(key, res, tab.assign(variant=name, horizon_days=H), cmp, splits, chosen, round(time.perf_counter() - t0, 1))


def _log_variant(folder: Path, spec: ExperimentSpec, data: ExperimentData, cfg: Config, name: str, v: VariantSpec, run: _VariantRun) -> str:
    """Log one variant's run (the spec travels with it) to the experiment's MLflow experiment; its run id."""
    from tiering.backtest import log_backtest

    shutil.copy(folder / SPEC_FILE, data.workdir / run.key / SPEC_FILE)
    return log_backtest(
        cfg,
        run.result,
        run_name=f"{folder.name}/{run.key}",
        kind="experiment",
        data_hash=data.data_hash,
        params={
            "variant": name,
            "overrides": v.config,
            "models": v.models or spec.models or "all",
            "select_until": str(spec.select_until),
            "hiatus_sel_days": run.hiatus,
            "report_origins": ",".join(str(o) for o, x in run.splits.items() if x == "report"),
        },
        tags={"experiment": folder.name, "variant": name},
        artifacts_dir=data.workdir / run.key,
    )


def _write_results(folder: Path, spec: ExperimentSpec, runs: list[_VariantRun], total_seconds: float) -> ExperimentResult:
    """results.csv (every variant x origin x task x model x metric), comparison.csv and results.md in ``folder``."""
    seconds = {r.key: r.seconds for r in runs} | {"total": total_seconds}
    table = pd.concat([r.table for r in runs], ignore_index=True)
    table = table[["variant", "horizon_days", "origin", "split", "task", "model", "metric", "value"]]
    cmps = [r.comparison for r in runs if not r.comparison.empty]
    comparison = pd.concat(cmps, ignore_index=True) if cmps else pd.DataFrame()
    if not comparison.empty:
        first_cols = ["variant", "horizon_days", "task", "metric", "model"]
        comparison = comparison[first_cols + [c for c in comparison.columns if c not in first_cols]]
    results_csv, results_md, comparison_csv = folder / "results.csv", folder / "results.md", folder / "comparison.csv"
    table.to_csv(results_csv, index=False)
    comparison.to_csv(comparison_csv, index=False)
    lead = comparison_markdown(comparison, spec, {r.key: r.splits for r in runs}, {r.key: r.hiatus for r in runs}, seconds)
    lead += [f"Wall time: {seconds['total']:.0f} s for the whole experiment (data loading, every backtest, bootstrap, MLflow).", ""]
    results_md.write_text(to_markdown({r.key: r.result for r in runs}, spec, lead, table))
    return ExperimentResult(spec, table, {r.key: r.run_id for r in runs}, results_csv, results_md, comparison, comparison_csv, seconds)


def run_experiment(folder: str | Path, base: Config, *, progress=None) -> ExperimentResult:
    """Backtest every variant (and horizon) of the experiment in ``folder``, log each as one MLflow run,
    compare the models with the best baseline on the report origins and write the tables."""
    step = progress or (lambda msg: None)
    folder = Path(folder)
    spec = read_spec(folder)
    if spec.config:
        base = load_config(spec.config)
    runs: list[_VariantRun] = []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        data = load_data(spec, base, Path(tmp), folder.name, step)
        for name, v in spec.variants.items():
            cfg = variant_config(data.cfg, v.config, name)
            horizons = horizons_of(v.horizon_days or spec.horizon_days)
            for H in horizons:
                run = _run_variant(spec, data, cfg, name, v, H, name if len(horizons) == 1 else f"{name}/h{H}", step)
                run.run_id = _log_variant(folder, spec, data, cfg, name, v, run)
                runs.append(run)
    return _write_results(folder, spec, runs, round(time.perf_counter() - t_start, 1))
