"""`tiering demo`: the main job end to end on embedded defaults, no server to start.

Simulate private-domain customers (2024-01-01 .. 2025-12-31), validate, fit every model as of
the last day, log and register the bundle in the local MLflow store, promote it to champion,
score the whole base into the scores store and return the tier table: the train and predict jobs
(tiering.jobs) in a row, on simulated data.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from tiering import jobs
from tiering.config import Config, ValidationConfig
from tiering.predict import PredictResult
from tiering.registry import promote
from tiering.train import TrainResult

START, END = dt.date(2024, 1, 1), dt.date(2025, 12, 31)


@dataclass
class DemoResult:
    train: TrainResult
    predict: PredictResult
    locations: dict[str, str]


def run_demo(
    *,
    n_customers: int = 20_000,
    seed: int = 0,
    workdir: Path = Path("outputs/demo"),
    cfg: Config | None = None,
    scored_at: dt.datetime | None = None,
    progress=None,
) -> DemoResult:
    """Run the demo; ``cfg`` defaults to the built-in defaults (stores under models/)."""
    from tiering.datasets import simulate

    step = progress or (lambda msg: None)
    workdir = Path(workdir)
    data_dir = workdir / "data"
    step(f"simulating {n_customers:,} customers {START}..{END} (seed {seed}) into {data_dir}")
    simulate(n_customers, START, END, seed=seed).write(data_dir)
    cfg = (cfg or Config()).with_source_dir(data_dir)
    cfg = cfg.model_copy(update={"validation": ValidationConfig(quarantine_dir=str(workdir / "quarantine"))})
    trained = jobs.train(cfg, as_of=END, progress=progress)
    assert trained.version is not None  # jobs.train registers a version
    step(f"promoting version {trained.version} to champion")
    promote(trained.version, cfg.tracking, force=True)  # the demo's fresh model is the one to show
    scored = jobs.predict(
        cfg,
        as_of=END,
        model="champion",
        out=workdir / "scores.parquet",
        scored_at=scored_at or dt.datetime(END.year, END.month, END.day, 23, 59),
        progress=progress,
    )
    locations = {
        "data": str(data_dir),
        "mlflow": cfg.tracking.uri,
        "model": f"models:/{cfg.tracking.registered_model}@champion (version {trained.version})",
        "scores store": cfg.store.url,
        "scores file": str(workdir / "scores.parquet"),
    }
    return DemoResult(trained, scored, locations)
