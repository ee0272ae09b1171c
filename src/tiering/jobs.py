"""Jobs: one function per command that does work, ``job(cfg, ...) -> result``.

The command line (cli.py) parses its options, calls one job and prints the result; nothing in it
reads sources, builds features or touches a model. The jobs are the callers of the layers below
(validation, features, io, models, tracking, store): validate and features here; train, backtest,
predict and report over their modules (train.train_and_register, backtest.backtest_and_log,
predict.predict_and_store, report.build_report); simulate, demo and the serve checks too. Each
takes a loaded Config (what ``--config``/``--set``/the source options made of it) and leaves it as
it was: an option that overrides one setting (``horizon_days``, ``chunk_rows``, ...) applies to a copy.

The wrapped functions are looked up when a job runs (``from tiering.train import ...`` in its body): the
command line does not load model code it does not use, and a test that replaces one of them sees the
command call it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tiering.config import Config
from tiering.validation import TableReport

if TYPE_CHECKING:
    from tiering.backtest import BacktestResult
    from tiering.demo import DemoResult
    from tiering.experiment import ExperimentResult
    from tiering.predict import ChunkCallback, PredictResult
    from tiering.report import ReportResult
    from tiering.train import TrainResult

Progress = Callable[[str], None]


def _with(cfg: Config, section: str, **values) -> Config:
    """A copy of ``cfg`` with ``values`` set in one section (those that are None left as they are)."""
    values = {k: v for k, v in values.items() if v is not None}
    if not values:
        return cfg
    return cfg.model_copy(update={section: getattr(cfg, section).model_copy(update=values)})


@dataclass(frozen=True)
class SimulateResult:
    """What `tiering simulate` wrote: rows per table."""

    out: str
    rows: dict[str, int]

    def to_dict(self) -> dict:
        return {"out": self.out, "rows": self.rows}


@dataclass(frozen=True)
class ValidateResult:
    """What `tiering validate` found: one report per configured table."""

    reports: list[TableReport]

    def to_dict(self) -> dict:
        return {"tables": [r.to_dict() for r in self.reports]}


@dataclass(frozen=True)
class FeaturesResult:
    """What `tiering features` wrote."""

    out: str
    as_of: dt.date
    customers: int
    columns: list[str]

    def to_dict(self) -> dict:
        return {"out": self.out, "as_of": self.as_of, "customers": self.customers, "columns": self.columns}


def validate(cfg: Config, *, as_of: dt.date | None = None) -> ValidateResult:
    """Check the configured sources against the contracts and write the quarantine files."""
    from tiering.validation import load_tables

    return ValidateResult(load_tables(cfg, as_of=as_of).reports)


def features(cfg: Config, *, as_of: dt.date, out: str | Path) -> FeaturesResult:
    """Validate the sources and write the feature frame as of ``as_of`` to one Parquet or CSV file.

    On DuckDB a base of more than ``features.bucket_rows`` valid rows is built bucket by bucket into
    sorted parts, then written as one file (memory follows the bucket, not the base)."""
    from tiering.features import build_features
    from tiering.io import write_sorted_parts, write_table
    from tiering.train import feature_spec
    from tiering.validation import bucket_count, load_tables

    tables = load_tables(cfg, as_of=as_of)
    buckets = bucket_count(tables, cfg.features.bucket_rows)

    def build(k: int = 0):
        return build_features(
            tables.transactions, tables.interactions, tables.customers, as_of=as_of, spec=feature_spec(cfg), bucket=(k, buckets)
        )

    expr = build()
    if buckets == 1:
        n = write_table(expr, out)  # one file on either engine; rows counted from the file, not by a second build
    else:
        Path(out).resolve().parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="tiering-features-", dir=Path(out).resolve().parent) as tmp:
            write_sorted_parts((build(k) for k in range(buckets)), Path(tmp), "customer_id")
            n = write_table(tables.con.read_parquet(f"{tmp}/*.parquet"), out)  # the same writer as one pass
    return FeaturesResult(str(out), as_of, n, list(expr.columns))


def simulate(*, customers: int, start: dt.date, end: dt.date, seed: int = 0, out: str | Path) -> SimulateResult:
    """Simulate private-domain customers and write customers, transactions, interactions and truth as Parquet."""
    from tiering.datasets import simulate as sim

    data = sim(customers, start, end, seed=seed)
    data.write(out)
    return SimulateResult(str(out), {name: len(getattr(data, name)) for name in ("customers", "transactions", "interactions", "truth")})


# ------------------------------------------------------------------------------------------------ models
def train(cfg: Config, *, as_of: dt.date, horizon_days: int | None = None, progress: Progress | None = None, con=None) -> TrainResult:
    """Validate the sources, fit every model at ``as_of``, evaluate out of time, log the run to MLflow and
    register a version with alias challenger (``horizon_days`` overrides ``model.horizon_days``).

    With ``model.train_sample_customers`` (default 250,000) a larger base is fitted on a seeded (``model.seed``),
    stratified sample of that many customers drawn after validation (tiering.sampling); the run records its size,
    seed and strata (the metrics ``train_sample_*`` and a note) and the bundle scores the whole base as any other. On
    ``features.engine: spark`` (`tiering train --engine spark`), or on ``con`` (an Ibis backend, e.g.
    ``ibis.pyspark.connect(your_session)``), validation and the draw run there and only the sample's rows come
    to the driver (tiering.train.train_and_register)."""
    from tiering.train import train_and_register

    return train_and_register(_with(cfg, "model", horizon_days=horizon_days), as_of=as_of, progress=progress, con=con)


def promote(cfg: Config, version: str, *, alias: str = "champion", force: bool = False):
    """Move ``alias`` to a registered version (refused when its metrics are worse than the holder's or measured on
    another horizon, unless ``force``); the registry's ModelVersion."""
    from tiering.registry import promote as move_alias

    return move_alias(version, cfg.tracking, alias=alias, force=force)


def compare(cfg: Config, *, limit: int = 20, only: list[str] | None = None) -> dict:
    """Registered versions and the ``limit`` most recent runs side by side, and the settings that differ between
    the versions (tiering.registry.comparison)."""
    from tiering.registry import comparison

    return comparison(cfg.tracking, limit=limit, only=only or None)


def experiment(cfg: Config, folder: str | Path, *, progress: Progress | None = None) -> ExperimentResult:
    """Backtest every variant of the experiment in ``folder`` (its spec.yaml), log each as an MLflow run and write
    results.csv and results.md there."""
    from tiering.experiment import run_experiment

    return run_experiment(folder, cfg, progress=progress)


@dataclass
class BacktestRun:
    """What `tiering backtest` did: the per-origin table and its summary, the MLflow run, the folder."""

    result: BacktestResult
    run_id: str
    origins: list[dt.date]  # sorted, each once
    out: str

    @property
    def summary(self):
        return self.result.summary

    def to_dict(self) -> dict:
        res = self.result
        return {
            "run_id": self.run_id,
            "horizon_days": res.horizon_days,
            "origins": [str(d) for d in self.origins],
            "mean": res.summary.to_dict("records"),
            "table": res.table.assign(origin=res.table["origin"].astype(str)).to_dict("records"),
            "plots": [str(p) for p in res.plots],
            "notes": res.notes,
        }


def backtest(
    cfg: Config,
    origins: Iterable[dt.date],
    *,
    horizon_days: int | None = None,
    out: str | Path = "outputs/backtest",
    progress: Progress | None = None,
) -> BacktestRun:
    """Fit every CLV and churn model at each origin, judge it on the horizon after, log one MLflow run and
    write the plots and backtest.csv to ``out``."""
    from tiering.backtest import backtest_and_log

    origins = list(origins)
    res, run_id = backtest_and_log(cfg, origins, horizon_days=horizon_days, out_dir=out, progress=progress)
    return BacktestRun(res, run_id, sorted(set(origins)), str(out))


def predict(
    cfg: Config,
    *,
    as_of: dt.date,
    scored_at: dt.datetime,
    model: str = "champion",
    out: str | Path | None = None,
    chunk_rows: int | None = None,
    work_dir: str | Path | None = None,
    progress: Progress | None = None,
    on_chunk: ChunkCallback | None = None,
) -> PredictResult:
    """Score the whole base with ``model`` (a version, an alias or a URI) into the scores store and, with
    ``out``, a file. ``chunk_rows`` and ``work_dir`` override ``predict.chunk_rows`` and ``predict.work_dir``;
    ``scored_at`` is the caller's clock (library code never reads it)."""
    from tiering.predict import predict_and_store

    cfg = _with(cfg, "predict", chunk_rows=chunk_rows or None, work_dir=str(work_dir) if work_dir else None)
    return predict_and_store(cfg, as_of=as_of, model=model, out=out, scored_at=scored_at, progress=progress, on_chunk=on_chunk)


def report(cfg: Config, *, as_of: dt.date, out: str | Path, progress: Progress | None = None) -> ReportResult:
    """The HTML report on the batch scored at ``as_of``: tier mix and migration, CLV and churn per tier,
    realised outcomes, the funnel per cohort and channel."""
    from tiering.report import build_report

    return build_report(cfg, as_of=as_of, out=out, progress=progress)


def demo(*, customers: int = 20_000, seed: int = 0, workdir: str | Path = "outputs/demo", progress: Progress | None = None) -> DemoResult:
    """The main job end to end on built-in defaults: simulate, train, register, promote, score."""
    from tiering.demo import run_demo

    return run_demo(n_customers=customers, seed=seed, workdir=Path(workdir), progress=progress)


# ------------------------------------------------------------------------------------------------ serve
@dataclass(frozen=True)
class ServePlan:
    """Where and how `tiering serve` will listen, every check passed (nothing bound yet)."""

    host: str
    port: int
    workers: int
    token: str | None
    url: str
    api: str
    docs: str

    @property
    def auth(self) -> str:
        return "bearer token" if self.token else "none (loopback only)"

    def to_dict(self) -> dict:
        return {"url": self.url, "api": self.api, "docs": self.docs, "auth": self.auth, "workers": self.workers}


def serve_plan(cfg: Config, *, host: str | None = None, port: int | None = None, workers: int | None = None) -> ServePlan:
    """The server's address, workers and token (options over ``serve.*``), checked before anything starts:
    a token off loopback, a readable scores store, a free port."""
    from tiering.exceptions import ConfigError
    from tiering.serve import check_bind, check_port_free, resolve_token
    from tiering.store import ScoresStore

    host = host or cfg.serve.host
    port = cfg.serve.port if port is None else port
    workers = cfg.serve.workers if workers is None else workers
    if not 1 <= port <= 65535 or workers < 1:
        raise ConfigError(f"--port must be 1..65535 and --workers at least 1; got --port {port} --workers {workers}.")
    token = resolve_token(cfg.serve.token)
    check_bind(host, token)
    ScoresStore(cfg.store.url, create=False, read_only=True, lock_timeout_s=cfg.store.lock_timeout_s)  # a missing store fails now
    check_port_free(host, port)
    base = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    return ServePlan(host, port, workers, token, f"{base}/", f"{base}/api", f"{base}/docs")


def serve(
    cfg: Config, plan: ServePlan, *, access_log: bool = True, config_path: str | Path | None = None, config_changed: bool = False
) -> None:
    """Run the ops server until interrupted. Worker processes (``plan.workers`` > 1) re-read the config from
    ``config_path``; ``config_changed`` (e.g. by ``--set``): they read ``cfg`` itself, from a private copy."""
    from tiering.serve import run_server

    resolved = _resolved_config_file(cfg) if config_changed and plan.workers > 1 else contextlib.nullcontext(config_path)
    with resolved as path:
        run_server(
            cfg,
            host=plan.host,
            port=plan.port,
            workers=plan.workers,
            token=plan.token,
            access_log=access_log,
            config_path=str(path) if path else None,
        )


@contextlib.contextmanager
def _resolved_config_file(cfg: Config) -> Iterator[Path]:
    """The config as a private YAML file, for worker processes that re-read their config (removed after).
    The token is left out: it reaches the workers through TIERING_API_TOKEN (tiering.serve.run_server)."""
    import os

    import yaml

    data = cfg.model_dump(mode="json")
    data["serve"]["token"] = None
    with tempfile.TemporaryDirectory(prefix="tiering-serve-") as folder:  # mode 0700: only this user reads it
        path = Path(folder) / "config.yaml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yaml.safe_dump(data, f, sort_keys=False)
        yield path
