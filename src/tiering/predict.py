"""The predict job: read, validate, build features with the model's own feature spec, score in chunks, write.

:func:`predict_and_store` serves ``tiering predict`` (and the demo, the benchmarks); :func:`score`
scores small bases in memory (the Python API, the report's tests). The mechanics live in
:mod:`tiering.scoring`, one job a module; this module orchestrates them.

The bundle decides the features: its stored spec rebuilds exactly the frame it was trained on,
and a model whose spec or columns do not match is refused before anything is written
(:func:`tiering.scoring.frames.check_model_spec`).

Memory is bounded by the chunk, not by the base. :func:`predict_and_store` runs in stages, each
timed:

1. features: the engine (DuckDB by default, Spark with ``features.engine: spark``) writes the
   Ibis feature table to Parquet files in the run folder, one per customer bucket of about
   ``features.bucket_rows`` input rows (DuckDB; memory follows the bucket); nothing of it
   is held in pandas;
2. score: the files are read back ``predict.chunk_rows`` customers at a time, each chunk scored
   by the bundle into its own part file ``scores/part-NNNNN.parquet`` (Spark: by
   ``mlflow.pyfunc.spark_udf`` over the whole frame, Spark writing the part files);
3. write: the part files are streamed into the scores store in one transaction, so the batch
   becomes visible to readers only when it is complete, and replaces an earlier run of the same
   as_of and model version; a failure anywhere leaves the store as it was. On DuckDB the chunks
   are scored in a background thread and each part file is written to the store as soon as it
   is there (:mod:`tiering.scoring.duckdb_path`; Spark: :mod:`tiering.scoring.spark_path`);
4. out (optional): the part files are written to ``--out`` as one Parquet or CSV file, inside the
   store's transaction, before it commits (order of faults: :mod:`tiering.scoring.output`).

Resume: with ``predict.work_dir`` (DuckDB engine) a failed run keeps its checkpoint folder and the
next run with the same inputs takes over its feature files and scored chunks, with the scored_at of
the first attempt (:mod:`tiering.scoring.run_folder`, which also removes the temporary folders on
every exit path, SIGTERM included, and what killed runs left).

Safety rules, each a clear error before anything is written: the model's feature spec must be
the one this package builds and must produce every column the model was trained on; the as_of
must have data (validation stops when no transaction is at or before it) and may be at most
``predict.max_days_after_data`` days after the latest transaction, interaction or join at or
before it (later, the gap would read as inactivity: :mod:`tiering.scoring.as_of`); the base must
not be empty; the store must be reachable and not locked by another writer; ``--out`` must end in
.parquet or .csv and its folder (or the nearest existing folder above it) must take a new file.

Refusals write nothing: validation runs without writing its quarantine, the checks above run,
and only then are the quarantine files written and the store opened (an existing store is probed
for locks at the start; a new SQLite file is created only after the checks). A refused run with
``predict.work_dir`` removes its checkpoint folder (a crash or a locked store keeps it, to resume).
Scoring before the model's training as_of is allowed but warned about (``PredictResult.warnings``,
and a TieringWarning, which the CLI prints to stderr): outcomes after such an as_of overlap the data
the model was fitted on, so accuracy measured on them is in-sample (the report says so).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from tiering.config import Config
from tiering.exceptions import DataQualityError, TieringWarning
from tiering.features import build_features
from tiering.models.bundle import ScoringBundle
from tiering.scoring import duckdb_path, spark_path
from tiering.scoring.as_of import training_date_warning
from tiering.scoring.frames import check_model_spec, finish_scores, score_frames, scores_schema
from tiering.scoring.hysteresis import Hysteresis
from tiering.scoring.job import ChunkCallback, Job
from tiering.scoring.output import OutFile, StoreRef, check_out
from tiering.scoring.run_folder import STALE_AFTER_S, clean_stale_folders, run_folder, sigterm_as_exit
from tiering.store import Batch
from tiering.validation import ValidatedTables

__all__ = [
    "STALE_AFTER_S",
    "ChunkCallback",
    "Hysteresis",
    "PredictResult",
    "check_model_spec",
    "check_out",
    "clean_stale_folders",
    "predict_and_store",
    "score",
    "score_frames",
    "scores_schema",
    "training_date_warning",
]

log = logging.getLogger(__name__)


def score(
    tables: ValidatedTables,
    bundle: ScoringBundle,
    *,
    as_of: dt.date,
    model_name: str,
    model_version: str,
    scored_at: dt.datetime,
    chunk_rows: int = 100_000,
    on_chunk: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """The scores frame of every customer known at ``as_of``, in memory (small bases; see predict_and_store)."""
    spec = check_model_spec(bundle)
    features = build_features(tables.transactions, tables.interactions, tables.customers, as_of=as_of, spec=spec).to_pandas()
    if features.empty:
        raise DataQualityError(f"No customer is known at {as_of}: the base is empty, nothing was scored or written.")
    bundle.check_features(features)
    parts = []
    for start in range(0, len(features), chunk_rows):
        parts.append(bundle.predict(features.iloc[start : start + chunk_rows]))
        if on_chunk:
            on_chunk(min(start + chunk_rows, len(features)), len(features))
    return finish_scores(pd.concat(parts, ignore_index=True), model_name, model_version, scored_at)


@dataclass
class PredictResult:
    batch: Batch
    summary: pd.DataFrame
    reports: list
    out: str | None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    engine: str = "duckdb"
    # what was taken over from an interrupted run: {"features": True, "chunks_done": k, "chunks_total": n}
    resumed: dict | None = None
    warnings: list[str] = field(default_factory=list)  # e.g. scored before the model's training as_of
    # tier changes the hysteresis avoided against the previous batch; None: no hysteresis (no previous batch of
    # this model name, margin 0, or the Spark engine)
    flips_avoided: int | None = None

    def to_dict(self) -> dict:
        return {
            "batch": asdict(self.batch),
            "tiers": self.summary.to_dict("records"),
            "validation": [r.to_dict() for r in self.reports],
            "out": self.out,
            "engine": self.engine,
            "seconds": self.timings,
            "resumed": self.resumed,
            "warnings": list(self.warnings),
            "flips_avoided": self.flips_avoided,
        }


def predict_and_store(
    cfg: Config,
    *,
    as_of: dt.date,
    model: str = "champion",
    out: str | Path | None = None,
    scored_at: dt.datetime,
    progress: Callable[[str], None] | None = None,
    on_chunk: ChunkCallback | None = None,
) -> PredictResult:
    """Load the model, validate the sources at ``as_of``, score everyone in chunks, write ``out`` and the store.

    ``model``: a version number, an alias (default champion) or a full model URI. ``scored_at`` is
    recorded on every row and as the batch's finished_at. The engine is ``cfg.features.engine``.
    A refused run writes nothing; see the module docstring for the order of faults.
    """
    from tiering.registry import load_bundle

    job = Job(cfg, as_of, progress or (lambda msg: None), on_chunk or (lambda stage, done, total: None))
    out = check_out(out)
    for folder in clean_stale_folders(tempfile.gettempdir(), cfg.predict.work_dir, out.absolute().parent if out else None):
        log.info("removed %s, left by a killed run", folder)
    t0 = time.perf_counter()
    store = StoreRef(cfg)
    job.step(f"loading model {model}")
    bundle, name, version = load_bundle(model, cfg.tracking)
    spec = check_model_spec(bundle)
    job.timed("load_model", t0)
    notes = [w for w in [training_date_warning(bundle, as_of, f"{name} v{version}" if version else model)] if w]

    resumed = None
    with (
        sigterm_as_exit(),
        run_folder(cfg, scored_at, as_of=as_of, model=model, name=name, version=version, spec=spec) as run,
        OutFile(out, run.scores, cfg.predict.chunk_rows) if out else contextlib.nullcontext() as out_file,
    ):
        done = {"model_name": name, "model_version": version, "scored_at": run.scored_at}  # resumed: the first's
        if cfg.features.engine == "spark":
            batch, reports = spark_path.run_on_spark(job, run, bundle, spec, model, store, out_file, **done)
        else:
            reports, rows, resumed = duckdb_path.feature_files(job, run, bundle, spec)
            batch = duckdb_path.score_and_write(job, run, bundle, store.get(), out_file, rows, **done)
        if out_file is not None:
            out_file.publish(batch)
    summary = store.get().tier_counts(batch)
    for note in notes:  # once the batch is in: a refused run has no results to warn about
        warnings.warn(note, TieringWarning, stacklevel=2)  # the CLI prints it to stderr as "warning: ..."
    return PredictResult(
        batch, summary, reports, str(out) if out else None, job.timings, cfg.features.engine, resumed, notes, batch.flips_avoided
    )
