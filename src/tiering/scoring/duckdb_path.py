"""The DuckDB path of batch scoring: feature files per customer bucket, chunks scored in a thread, streamed writes.

Called by :func:`tiering.predict.predict_and_store` when ``features.engine`` is duckdb (the
default), in two steps:

1. :func:`feature_files`: validate the sources and write the Ibis feature table to Parquet files
   in the run folder, one per customer bucket of about ``features.bucket_rows`` input rows (memory
   follows the bucket; nothing of it is held in pandas), then check them (as_of gap, columns). A
   resumed run (:mod:`tiering.scoring.run_folder`) finds them complete and skips this.
2. :func:`score_and_write`: the files are read back ``predict.chunk_rows`` customers at a time, each
   chunk scored by the bundle (with the previous batch's hysteresis, :mod:`tiering.scoring.hysteresis`)
   into its own part file ``scores/part-NNNNN.parquet`` in a background thread
   (:class:`BackgroundScorer`), while each part file is written to the store as soon as it is there,
   in one transaction, so the write (one database thread) overlaps the models: 1M customers end to
   end 62.4 s -> 55.9 s (benchmarks/README.md).
"""

from __future__ import annotations

import datetime as dt
import json
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tiering.config import Config
from tiering.features import FeatureSpec, build_features
from tiering.io import atomic_path, available_cores, connect, parquet_batches, write_sorted_parts
from tiering.models import thread_limits
from tiering.models.bundle import ScoringBundle
from tiering.scoring.as_of import gap_days_sql
from tiering.scoring.frames import read_chunks, score_frames, write_scores_file
from tiering.scoring.hysteresis import Hysteresis
from tiering.scoring.job import Job
from tiering.scoring.output import OutFile, with_out
from tiering.scoring.run_folder import RunFolder
from tiering.store import Batch, ScoresStore
from tiering.validation import TableReport, ValidatedTables, bucket_count

if TYPE_CHECKING:
    import ibis.expr.types as ir


def open_duckdb(cfg: Config, work_dir: Path):
    """The DuckDB connection; it streams the feature file in any row order, within its memory limit, spilling
    into the run folder."""
    settings: dict = {"preserve_insertion_order": False, "temp_directory": str(work_dir / "duckdb_spill")}
    limit = cfg.predict.duckdb_memory_limit or cfg.features.duckdb_memory_limit
    if limit:
        settings["memory_limit"] = limit
    return connect("duckdb", **settings)


def write_features(tables: ValidatedTables, spec: FeatureSpec, as_of: dt.date, path: Path, buckets: int) -> None:
    """Write the feature table to the folder ``path`` (atomic): one Parquet file per customer bucket, in id order
    (the store's index inserts go ~2x faster); see build_features(bucket=...) and io.write_sorted_parts."""

    def bucket(k: int) -> ir.Table:
        return build_features(tables.transactions, tables.interactions, tables.customers, as_of=as_of, spec=spec, bucket=(k, buckets))

    with atomic_path(path) as tmp:
        write_sorted_parts((bucket(k) for k in range(buckets)), tmp, "customer_id")


def feature_file_stats(path: Path) -> tuple[int, int | None, list[str]]:
    """(rows, days from the latest event to as_of, columns) of the feature folder."""
    import duckdb
    import pyarrow.parquet as pq

    files = sorted(path.glob("*.parquet"))
    rows = sum(pq.ParquetFile(str(f)).metadata.num_rows for f in files)
    gap = None
    if rows:
        row = duckdb.connect().execute(gap_days_sql(str(path / "*.parquet"))).fetchone()
        assert row is not None  # an aggregate query returns one row
        gap = row[0]
    return rows, (int(gap) if gap is not None else None), pq.read_schema(str(files[0])).names


def feature_files(job: Job, run: RunFolder, bundle: ScoringBundle, spec: FeatureSpec) -> tuple[list[TableReport], int, dict | None]:
    """The feature files (built, or found complete from an earlier attempt), checked: (reports, rows, resumed)."""
    chunk_rows = job.cfg.predict.chunk_rows
    if run.features.exists() and run.has_reports():  # reports.json comes last: that attempt passed its checks
        rows, gap, columns = feature_file_stats(run.features)
        job.check(gap, bundle, columns)
        resumed = {"features": True, "chunks_done": run.parts_done(), "chunks_total": run.chunks(chunk_rows)}
        job.step(f"resuming {run.path}: features done, {resumed['chunks_done']}/{resumed['chunks_total']} chunks already scored")
        return run.load_reports(), rows, resumed
    shutil.rmtree(run.scores, ignore_errors=True)  # part files of an earlier feature file
    tables = job.validated(open_duckdb(job.cfg, run.path))
    t0 = time.perf_counter()
    job.step(f"building features with spec {spec.to_dict()}")
    write_features(tables, spec, job.as_of, run.features, bucket_count(tables, job.cfg.features.bucket_rows))
    job.timed("features", t0)
    rows, gap, columns = feature_file_stats(run.features)
    job.accept(tables, gap, bundle, columns)
    tables.con.disconnect()  # before its spill folder goes
    run.save_reports(tables.reports)
    return tables.reports, rows, None


def score_parts(
    run: RunFolder,
    bundle: ScoringBundle,
    chunk_rows: int,
    on_part: Callable[[Path, int, int | None], None],
    stop: threading.Event,
    hysteresis: Hysteresis | None = None,
    **finish,
) -> None:
    """Score the run's feature files chunk by chunk, one part file each, skipping the chunks whose part file exists.

    ``hysteresis``: applied to each scored chunk before its part file is written. ``on_part(part, rows_done,
    flips_avoided)`` after each chunk (flips_avoided: of that chunk, None when a resumed chunk did not record
    it); returns early once ``stop`` is set; ``finish``: model_name, model_version, scored_at.
    """
    run.scores.mkdir(exist_ok=True)
    done = 0
    for chunk, rb in enumerate(parquet_batches(run.features, chunk_rows)):
        if stop.is_set():
            return
        part, flips_file = run.part(chunk), run.flips(chunk)
        if not part.exists():
            scores = next(score_frames([rb.to_pandas()], bundle, **finish))
            flips: int | None = 0
            if hysteresis is not None:
                scores, flips = hysteresis.apply(scores)
            with atomic_path(flips_file) as tmp:
                tmp.write_text(json.dumps(flips))
            with atomic_path(part) as tmp:
                write_scores_file([scores], tmp)
        else:
            flips = json.loads(flips_file.read_text()) if flips_file.exists() else None
        done += rb.num_rows
        on_part(part, done, flips)


class BackgroundScorer:
    """Scores a run's chunks in a thread while the caller streams the finished part files into the store.

    The store write (one database thread) then overlaps the models instead of following them. A
    scoring error is raised from :meth:`parts`, inside the write's transaction, which rolls back.
    :meth:`close` either stops the scoring after its current chunk or lets it finish (after a
    failed write: the next run then only writes), and waits for the thread.
    """

    def __init__(
        self,
        run: RunFolder,
        bundle: ScoringBundle,
        chunk_rows: int,
        model_threads: int | None,
        on_rows: Callable[[int], None],
        hysteresis: Hysteresis | None = None,
        **finish,
    ):
        self._ready: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self.started = time.perf_counter()
        self.finished: float | None = None
        self._hysteresis = hysteresis is not None
        self._flips: int | None = 0  # None once a chunk's count is unknown (resumed from an older run)

        def on_part(part: Path, done: int, flips: int | None) -> None:
            self._flips = None if self._flips is None or flips is None else self._flips + flips
            on_rows(done)
            self._ready.put(part)  # after the count: a part handed out is counted

        # unset: every core but one, which the store's writer (the caller's thread) needs beside the models. On 2 cores
        # at 1M customers, alternated: 98.6 / 101.3 s end to end with 1 model thread, 114.2 / 113.9 s with 2
        threads = model_threads if model_threads is not None else max(1, available_cores() - 1)

        def work() -> None:
            try:
                with thread_limits(threads, "openmp"):  # OpenMP limits are per thread: set them in this one
                    score_parts(run, bundle, chunk_rows, on_part, self._stop, hysteresis, **finish)
                self.finished = time.perf_counter()
                self._ready.put(None)
            except BaseException as exc:  # handed to the writer, which raises it
                self._ready.put(exc)

        self._thread = threading.Thread(target=work, name="tiering-score", daemon=True)
        self._thread.start()

    def parts(self) -> Iterator[Path]:
        """The part files in chunk order, each as soon as it is written."""
        while (item := self._ready.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    def flips_avoided(self) -> int | None:
        """Tier changes the hysteresis avoided over the parts handed out so far; None without hysteresis."""
        return self._flips if self._hysteresis else None

    def close(self, *, finish: bool = False) -> None:
        if not finish:
            self._stop.set()
        self._thread.join()


def _load_hysteresis(job: Job, store: ScoresStore, model_name: str) -> Hysteresis | None:
    hysteresis = Hysteresis.load(store, as_of=job.as_of, model_name=model_name, margin=job.cfg.model.tier_hysteresis_margin)
    if hysteresis is not None:
        job.step(
            f"hysteresis against the batch of {hysteresis.from_batch.as_of} ({hysteresis.from_batch.model_name} "
            f"v{hysteresis.from_batch.model_version}), margin {hysteresis.margin:g}"
        )
    return hysteresis


def score_and_write(
    job: Job, run: RunFolder, bundle: ScoringBundle, store: ScoresStore, out_file: OutFile | None, rows: int, **finish
) -> Batch:
    """Score the chunks in a background thread while their part files stream into the store, then build --out,
    then commit."""
    chunk_rows = job.cfg.predict.chunk_rows
    job.step(f"scoring {rows:,} customers in chunks of {chunk_rows:,} and writing them to the store in one transaction")
    hysteresis = _load_hysteresis(job, store, finish["model_name"])
    scorer = BackgroundScorer(
        run, bundle, chunk_rows, job.cfg.predict.model_threads, lambda done: job.tick("score", done, rows), hysteresis, **finish
    )
    chunks = (c for part in scorer.parts() for c in read_chunks(part, chunk_rows))
    fail = False
    try:
        batch = store.write_chunks(
            with_out(chunks, out_file, job),
            as_of=job.as_of,
            on_chunk=lambda n: job.tick("write", n, rows),
            flips_avoided=scorer.flips_avoided,
            **finish,
        )
    except Exception:
        fail = True  # the scoring goes on to the end, so that the next run only writes
        raise
    finally:
        scorer.close(finish=fail)
    assert scorer.finished is not None  # the writer took every part, so the scoring thread finished
    # the write overlaps the scoring: "write" is the part of it left after the last chunk was scored, less --out
    job.timings["score"] = round(scorer.finished - scorer.started, 3)
    job.timings["write"] = round(time.perf_counter() - scorer.finished - job.timings.get("out", 0.0), 3)
    return batch
