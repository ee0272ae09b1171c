"""Batch scoring: read, validate, build features with the model's own feature spec, score in chunks, write.

The bundle decides the features: its stored spec rebuilds exactly the frame it was trained on,
and a model whose spec or columns do not match is refused before anything is written.

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
   is there, so the write (one database thread) overlaps the models: 1M customers end to end
   62.4 s -> 55.9 s (benchmarks/README.md);
4. out (optional): the part files are written to ``--out`` as one Parquet or CSV file, inside the
   store's transaction, before it commits (see "Order of faults").

Resume: without ``predict.work_dir`` the run folder is temporary. With it (DuckDB engine), the run
keeps its files in ``work_dir/run-<key>/``, the key a hash of everything that determines them (as_of,
model version, feature spec, chunk_rows, engine, data and validation config, and the size and
mtime of every source file, see :func:`_run_inputs`). Each file is written under a temporary name
and renamed when complete, so a file that exists is complete: a run that fails keeps its folder,
and the next run with the same inputs skips validation and features when the features folder is
there, scores only the chunks without a part file, writes the store, and removes the folder. It
scores with the scored_at of the first attempt (manifest.json), so one batch has one scored_at.

Safety rules, each a clear error before anything is written: the model's feature spec must be
the one this package builds and must produce every column the model was trained on; the as_of
must have data (validation stops when no transaction is at or before it) and may be at most
``predict.max_days_after_data`` days after the latest transaction, interaction or join at or
before it (later, the gap would read as inactivity); the base must not be empty; the store must
be reachable and not locked by another writer; ``--out`` must end in .parquet or .csv and its
folder (or the nearest existing folder above it) must take a new file.

Refusals write nothing: validation runs without writing its quarantine, the checks above run,
and only then are the quarantine files written and the store opened (an existing store is probed
for locks at the start; a new SQLite file is created only after the checks). A refused run with
``predict.work_dir`` removes its checkpoint folder (a crash or a locked store keeps it, to resume).
Scoring before the model's training as_of is allowed but warned about (``PredictResult.warnings``,
and a TieringWarning, which the CLI prints to stderr): outcomes after such an as_of overlap the data
the model was fitted on, so accuracy measured on them is in-sample (the report says so).

Order of faults: ``--out`` is built in a private folder ``.tiering-out-*`` beside it while the
store's transaction is still open, after the last chunk went in; a failure there (read-only folder,
full disk) rolls the transaction back, so the error (exit 2, naming the path and the OS error)
leaves the store as it was. The built file is moved onto ``--out`` (a rename in the same folder)
after the commit; only that rename can fail after the batch is live, and its error says so.

Temporary folders: the run folder (``tiering-predict-*`` in the system temp folder, or in
``predict.work_dir``) holds DuckDB's spill files and validation's materialised tables too; it
and the ``.tiering-out-*`` folder are removed on every exit path (exceptions, KeyboardInterrupt,
SystemExit, and SIGTERM, which a run started in the main thread turns into SystemExit). Each holds
a ``.lock`` file locked (flock) while its run lives; folders of these names older than
:data:`STALE_AFTER_S` whose lock nobody holds are what a killed run (kill -9) left, and each run
removes them at its start (:func:`clean_stale_folders`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from tiering.config import Config, SourceConfig
from tiering.exceptions import ConfigError, DataQualityError, ModelError, SchemaError, StoreError, TieringWarning
from tiering.features import FeatureSpec, build_features
from tiering.io import atomic_path, concat_parts, parquet_batches, write_sorted_parts
from tiering.models import thread_limits
from tiering.models.bundle import ScoringBundle
from tiering.models.tiers import apply_hysteresis
from tiering.schemas import SCORES_COLUMNS, score_columns_of_kind
from tiering.store import Batch, ScoresStore
from tiering.validation import TableReport, ValidatedTables, bucket_count

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import ibis.expr.types as ir
    import pyarrow as pa

# on_chunk(stage, done, total): stage is "score" or "write", done/total count customers
ChunkCallback = Callable[[str, int, int], None]

_FLOAT, _INT, _BOOL = (score_columns_of_kind(k) for k in ("float", "int", "bool"))

TEMP_PREFIX, OUT_PREFIX = "tiering-predict-", ".tiering-out-"
STALE_AFTER_S = 3600  # a folder of a run older than this whose lock nobody holds was left by a killed run


def scores_schema() -> pa.Schema:
    """The Arrow schema of the scores frame (DESIGN.md), as written to files."""
    import pyarrow as pa

    types = {"as_of": pa.date32(), "scored_at": pa.timestamp("us")}
    types |= {c: pa.float64() for c in _FLOAT} | {c: pa.int64() for c in _INT} | {c: pa.bool_() for c in _BOOL}
    return pa.schema([(c, types.get(c, pa.string())) for c in SCORES_COLUMNS])


def check_model_spec(bundle: ScoringBundle) -> FeatureSpec:
    """The bundle's feature spec, refused when this package cannot rebuild the frame the model was trained on."""
    spec = FeatureSpec.from_dict(bundle.feature_spec)
    current = FeatureSpec().version
    if spec.version != current:
        raise ModelError(
            f"The model was trained on feature spec version {spec.version}; this tiering builds version {current}. "
            "Retrain the model (`tiering train`) and promote it, or score with a tiering release of that spec version."
        )
    built = set(spec.feature_columns)
    missing = [c for c in bundle.feature_columns if c not in built]
    if missing:
        raise ModelError(
            f"The model's feature spec (time_unit {spec.time_unit}, windows_days {list(spec.windows_days)}, version "
            f"{spec.version}) does not build columns the model was trained on: {missing[:8]}"
            f"{' ...' if len(missing) > 8 else ''}. The model is inconsistent; retrain it with `tiering train`."
        )
    return spec


def _check_frame_columns(bundle: ScoringBundle, columns: list[str]) -> None:
    bundle.check_features(pd.DataFrame(columns=columns))


def _check_as_of(gap_days: int | None, as_of: dt.date, max_days_after_data: int) -> None:
    """The as_of rule: at most ``max_days_after_data`` days after the latest event at or before it."""
    if gap_days is None:
        raise DataQualityError(f"No customer is known at {as_of}: the base is empty, nothing was scored or written.")
    if gap_days > max_days_after_data:
        latest = as_of - dt.timedelta(days=gap_days)
        raise DataQualityError(
            f"--as-of {as_of} is {gap_days} days after the latest transaction, interaction or join in the sources "
            f"({latest}); scoring there would read those {gap_days} days as inactivity. Score at {latest} or earlier, "
            f"refresh the sources, or raise predict.max_days_after_data (now {max_days_after_data}) in the config."
        )


def training_date_warning(bundle: ScoringBundle, as_of: dt.date, model: str) -> str | None:
    """The warning for an as_of before the model's training as_of (None when after it, or not recorded).

    Scoring at the training as_of itself is out of time (the model saw data up to that day only);
    before it, the outcomes after as_of overlap what the model was fitted on.
    """
    trained = getattr(bundle, "trained_as_of", None)  # an older pickle may lack it: no warning then
    if trained is None or as_of >= trained:
        return None
    return (f"--as-of {as_of} is before the training as_of of model {model} ({trained}): the model was fitted on "
            f"outcomes up to {trained}, so accuracy measured on outcomes after {as_of} is in-sample. Score at "
            f"{trained} or later for out-of-time results, or use a model trained at or before {as_of}.")


def _gap_days_sql(path: str) -> str:
    """Days between as_of and the latest event of anyone: the smallest of days since last purchase (buyers),
    days since last interaction and tenure (each falls back to tenure, i.e. the first activity, when absent)."""
    return (f"SELECT min(least(days_since_last_purchase, days_since_last_interaction, tenure_days)) "
            f"FROM read_parquet('{path.replace(chr(39), chr(39) * 2)}')")


def _finish(scores: pd.DataFrame, model_name: str, model_version: str, scored_at: dt.datetime) -> pd.DataFrame:
    scores["model_name"] = model_name
    scores["model_version"] = str(model_version)
    scores["scored_at"] = pd.Timestamp(scored_at)
    return scores[list(SCORES_COLUMNS)]


def score_frames(
    frames: Iterable[pd.DataFrame], bundle: ScoringBundle, *, model_name: str, model_version: str,
    scored_at: dt.datetime,
) -> Iterator[pd.DataFrame]:
    """Score feature frames one by one: the scores frames, with model name, version and scored_at."""
    for features in frames:
        yield _finish(bundle.predict(features), model_name, model_version, scored_at)


@dataclass
class Hysteresis:
    """The previous batch's tiers and the margin: applied to each scored chunk (:meth:`apply`), which keeps a
    customer near a threshold in the tier they held (``tiering.models.tiers.apply_hysteresis``). A margin of 0 is
    no hysteresis at all (:meth:`load` gives None then)."""

    previous: pd.DataFrame  # customer_id, tier of the previous batch
    margin: float
    from_batch: Batch

    @classmethod
    def load(cls, store: ScoresStore | None, *, as_of: dt.date, model_name: str, margin: float) -> Hysteresis | None:
        """The previous complete batch of this model name (any version) before as_of; None when there is none,
        or the margin is 0."""
        if margin <= 0 or store is None:
            return None
        found = store.previous_tiers(as_of, model_name)
        if found is None:
            return None
        batch, tiers = found
        return cls(tiers.astype({"customer_id": str}), float(margin), batch)

    def apply(self, scores: pd.DataFrame) -> tuple[pd.DataFrame, int]:
        """The scores with held customers back in their previous tier (the rule tier and its reason kept in
        tier_reason), and how many tier changes that avoided."""
        tiers, flips = apply_hysteresis(self.previous, scores, self.margin)
        held = (tiers != scores["tier"]).to_numpy()
        if not held.any():
            return scores, flips
        out = scores.copy()
        rule_tier, reason = out.loc[held, "tier"].astype(str), out.loc[held, "tier_reason"].fillna("").astype(str)
        out.loc[held, "tier_reason"] = ("kept in " + tiers[held].astype(str) + " (hysteresis): the rules alone give "
                                        + rule_tier + ": " + reason).str.slice(0, 1000)  # the store's column width
        out.loc[held, "tier"] = tiers[held]
        return out, flips


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
        parts.append(bundle.predict(features.iloc[start:start + chunk_rows]))
        if on_chunk:
            on_chunk(min(start + chunk_rows, len(features)), len(features))
    return _finish(pd.concat(parts, ignore_index=True), model_name, model_version, scored_at)


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
        return {"batch": asdict(self.batch), "tiers": self.summary.to_dict("records"),
                "validation": [r.to_dict() for r in self.reports], "out": self.out, "engine": self.engine,
                "seconds": self.timings, "resumed": self.resumed, "warnings": list(self.warnings),
                "flips_avoided": self.flips_avoided}


def _read_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """A Parquet file or folder of files, ``chunk_rows`` rows at a time, as pandas."""
    for rb in parquet_batches(path, chunk_rows):
        yield rb.to_pandas()


def _connect(engine: str, cfg: Config, work_dir: Path):
    """The engine connection; DuckDB streams the feature file in any row order, within its memory limit."""
    from tiering.io import connect

    if engine == "spark":
        return connect(engine)
    settings: dict = {"preserve_insertion_order": False, "temp_directory": str(work_dir / "duckdb_spill")}
    limit = cfg.predict.duckdb_memory_limit or cfg.features.duckdb_memory_limit
    if limit:
        settings["memory_limit"] = limit
    return connect(engine, **settings)


def _features_duckdb(tables: ValidatedTables, spec: FeatureSpec, as_of: dt.date, path: Path, buckets: int) -> None:
    """Write the feature table to the folder ``path`` (atomic): one Parquet file per customer bucket, in id order
    (the store's index inserts go ~2x faster); see build_features(bucket=...) and io.write_sorted_parts."""
    def bucket(k: int) -> ir.Table:
        return build_features(tables.transactions, tables.interactions, tables.customers, as_of=as_of, spec=spec,
                              bucket=(k, buckets))

    with atomic_path(path) as tmp:
        write_sorted_parts((bucket(k) for k in range(buckets)), tmp, "customer_id")


def _feature_file_stats(path: Path) -> tuple[int, int | None, list[str]]:
    """(rows, days from the latest event to as_of, columns) of the feature folder."""
    import duckdb
    import pyarrow.parquet as pq

    files = sorted(path.glob("*.parquet"))
    rows = sum(pq.ParquetFile(str(f)).metadata.num_rows for f in files)
    gap = duckdb.connect().execute(_gap_days_sql(str(path / "*.parquet"))).fetchone()[0] if rows else None
    return rows, (int(gap) if gap is not None else None), pq.read_schema(str(files[0])).names


def _write_scores_file(chunks: Iterable[pd.DataFrame], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = scores_schema()
    with pq.ParquetWriter(str(path), schema) as writer:
        for chunk in chunks:
            writer.write_table(pa.Table.from_pandas(chunk, schema=schema, preserve_index=False))


# --------------------------------------------------------------------------------------------- run folder

class _RunFolder:
    """The files of one run, each complete once it exists (written through :func:`tiering.io.atomic_path`).

    ``manifest.json`` (checkpoint folders only: the run's inputs and the scored_at of its first
    attempt), ``reports.json`` (the validation reports), ``features/`` (a part file per customer bucket) and
    ``scores/part-NNNNN.parquet``, one part file per chunk of the feature file.
    """

    def __init__(self, path: Path, scored_at: dt.datetime):
        self.path = path
        self.scored_at = scored_at
        self.features = path / "features"
        self.scores = path / "scores"
        self._reports = path / "reports.json"

    @staticmethod
    def key(inputs: dict) -> str:
        return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def checkpoint(cls, work_dir: Path, key: str, inputs: dict, scored_at: dt.datetime) -> _RunFolder:
        """The folder ``work_dir/run-<key>`` of these inputs: created with its manifest, or found with the
        scored_at of its first attempt."""
        path = work_dir / f"run-{key}"
        manifest = path / "manifest.json"
        if manifest.exists():
            return cls(path, dt.datetime.fromisoformat(json.loads(manifest.read_text())["scored_at"]))
        path.mkdir(parents=True, exist_ok=True)
        with atomic_path(manifest) as tmp:
            tmp.write_text(json.dumps(inputs | {"scored_at": scored_at.isoformat()}, indent=2, sort_keys=True))
        return cls(path, scored_at)

    def part(self, chunk: int) -> Path:
        return self.scores / f"part-{chunk:05d}.parquet"

    def flips(self, chunk: int) -> Path:
        """The chunk's count of tier changes the hysteresis avoided, written before its part file."""
        return self.scores / f"part-{chunk:05d}.flips.json"

    def chunks(self, chunk_rows: int) -> int:
        """How many chunks the feature files make (a chunk never spans two files)."""
        import pyarrow.parquet as pq

        return sum(-(-pq.ParquetFile(str(f)).metadata.num_rows // chunk_rows) for f in sorted(self.features.glob("*.parquet")))

    def parts_done(self) -> int:
        return len(list(self.scores.glob("part-*.parquet")))

    def save_reports(self, reports: list[TableReport]) -> None:
        with atomic_path(self._reports) as tmp:
            tmp.write_text(json.dumps([asdict(r) for r in reports], indent=2))

    def has_reports(self) -> bool:
        return self._reports.exists()

    def load_reports(self) -> list[TableReport]:
        return [TableReport(**d) for d in json.loads(self._reports.read_text())]

    def score(self, bundle: ScoringBundle, chunk_rows: int, on_part: Callable[[Path, int, int | None], None],
              stop: threading.Event, hysteresis: Hysteresis | None = None, **finish) -> None:
        """Score the feature file chunk by chunk, one part file each, skipping the chunks whose part file exists.

        ``hysteresis``: applied to each scored chunk before its part file is written. ``on_part(part, rows_done,
        flips_avoided)`` after each chunk (flips_avoided: of that chunk, None when a resumed chunk did not record
        it); returns early once ``stop`` is set; ``finish``: model_name, model_version, scored_at.
        """
        self.scores.mkdir(exist_ok=True)
        done = 0
        for chunk, rb in enumerate(parquet_batches(self.features, chunk_rows)):
            if stop.is_set():
                return
            part, flips_file = self.part(chunk), self.flips(chunk)
            if not part.exists():
                scores = next(score_frames([rb.to_pandas()], bundle, **finish))
                flips = 0
                if hysteresis is not None:
                    scores, flips = hysteresis.apply(scores)
                with atomic_path(flips_file) as tmp:
                    tmp.write_text(json.dumps(flips))
                with atomic_path(part) as tmp:
                    _write_scores_file([scores], tmp)
            else:
                flips = json.loads(flips_file.read_text()) if flips_file.exists() else None
            done += rb.num_rows
            on_part(part, done, flips)


class _BackgroundScorer:
    """Scores a run's chunks in a thread while the caller streams the finished part files into the store.

    The store write (one database thread) then overlaps the models instead of following them. A
    scoring error is raised from :meth:`parts`, inside the write's transaction, which rolls back.
    :meth:`close` either stops the scoring after its current chunk or lets it finish (after a
    failed write: the next run then only writes), and waits for the thread.
    """

    def __init__(self, run: _RunFolder, bundle: ScoringBundle, chunk_rows: int, model_threads: int | None,
                 on_rows: Callable[[int], None], hysteresis: Hysteresis | None = None, **finish):
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

        def work() -> None:
            try:
                with thread_limits(model_threads, "openmp"):  # OpenMP limits are per thread: set them in this one
                    run.score(bundle, chunk_rows, on_part, self._stop, hysteresis, **finish)
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


def _source_fingerprint(path: str) -> list[list]:
    """[resolved file, size, mtime_ns] of a source file, or of every file under a source folder; [] when missing."""
    root = Path(path).resolve()
    files = sorted(f for f in root.rglob("*") if f.is_file()) if root.is_dir() else [root] if root.exists() else []
    return [[str(f), st.st_size, st.st_mtime_ns] for f in files for st in (f.stat(),)]


def _run_inputs(cfg: Config, *, as_of: dt.date, model: str, name: str, version: str, spec: FeatureSpec) -> dict:
    """Everything that determines a run's files: the same inputs find the same checkpoint folder."""
    sources = {table: _source_fingerprint(src.path) for table, src in cfg.data
               if isinstance(src, SourceConfig) and src.path}
    return {"as_of": as_of.isoformat(), "model": model, "model_name": name, "model_version": str(version),
            "feature_spec": spec.to_dict(), "chunk_rows": cfg.predict.chunk_rows, "engine": cfg.features.engine,
            "tier_hysteresis_margin": cfg.model.tier_hysteresis_margin,
            "data": cfg.data.model_dump(mode="json"), "validation": cfg.validation.model_dump(mode="json"),
            "sources": sources}


@contextlib.contextmanager
def _run_folder(cfg: Config, scored_at: dt.datetime, **inputs) -> Iterator[_RunFolder]:
    """The run's folder: a checkpoint folder with ``predict.work_dir`` (DuckDB engine), removed when the run
    succeeds or is refused, kept after a crash or a service fault (to resume); else a temporary folder (under
    work_dir when set), always removed. ``inputs``: of _run_inputs."""
    work_dir = cfg.predict.work_dir
    if work_dir:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    if not work_dir or cfg.features.engine == "spark":  # Spark scores in one job: nothing to resume
        with _temp_folder(TEMP_PREFIX, work_dir) as tmp:
            yield _RunFolder(tmp, scored_at)
        return
    run_inputs = _run_inputs(cfg, **inputs)
    key = _RunFolder.key(run_inputs)
    with _exclusive(Path(work_dir) / f"run-{key}.lock"):
        run = _RunFolder.checkpoint(Path(work_dir), key, run_inputs, scored_at)
        try:
            yield run
        except (DataQualityError, SchemaError, ModelError):
            shutil.rmtree(run.path, ignore_errors=True)  # a refusal keeps nothing
            raise
        shutil.rmtree(run.path)  # not reached when the run fails: the folder stays for the next attempt


@contextlib.contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock`` (POSIX flock; released when the process ends, however it ends).

    Two runs with the same inputs would share one checkpoint folder: the second is refused.
    """
    import fcntl

    while True:
        fh = open(lock, "a+")  # noqa: SIM115 (closed below, after the unlink)
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise StoreError(
                f"Another `tiering predict` with the same inputs is running (it holds {lock}). Wait for it to finish; "
                "it writes the same batch."
            ) from None
        if lock.exists() and os.stat(lock).st_ino == os.fstat(fh.fileno()).st_ino:
            break
        fh.close()  # the holder before us removed the file after we opened it: lock the new one
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        fh.close()


# --------------------------------------------------------------------------------------------- temporary folders

@contextlib.contextmanager
def _temp_folder(prefix: str, parent: str | Path | None) -> Iterator[Path]:
    """A new private folder ``prefix*`` under ``parent`` (default: the system temp folder), its ``.lock``
    held while the block runs, removed however the block ends."""
    import fcntl

    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        with open(path / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _lock_free(folder: Path) -> bool:
    """True when no live process holds the folder's ``.lock`` (a killed process's lock went with it)."""
    import fcntl

    try:
        with open(folder / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when the file closes
    except OSError:  # BlockingIOError: a live run holds it; others: not ours to judge
        return False
    return True


def clean_stale_folders(*parents: str | Path | None, max_age_s: float = STALE_AFTER_S,
                        now: float | None = None) -> list[Path]:
    """Remove what killed runs left directly under ``parents``: run folders (``tiering-predict-*``) and --out
    staging folders (``.tiering-out-*``) of this user, last modified more than ``max_age_s`` seconds before
    ``now`` (default: the clock) and whose lock nobody holds. Returns the folders removed."""
    now = time.time() if now is None else now
    removed = []
    for parent in dict.fromkeys(Path(p) for p in parents if p):
        try:
            candidates = [c for c in parent.iterdir() if c.name.startswith((TEMP_PREFIX, OUT_PREFIX))]
        except OSError:
            continue
        for folder in candidates:
            try:
                st = folder.lstat()
            except OSError:
                continue
            if (folder.is_dir() and not folder.is_symlink() and st.st_uid == os.getuid()
                    and now - st.st_mtime > max_age_s and _lock_free(folder)):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
    return removed


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """SIGTERM (a scheduler stopping the job) raises SystemExit(143), so the run's folders are removed; only in
    the main thread and where SIGTERM has its default action, which is restored afterwards."""
    import signal

    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


# --------------------------------------------------------------------------------------------- --out and the store

def check_out(out: str | Path | None) -> Path | None:
    """``--out`` as a Path, refused (ConfigError, nothing written) when its extension is not .parquet or .csv, it
    is a folder, or its nearest existing folder is not a writable folder."""
    if out is None:
        return None
    out = Path(out)
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise ConfigError(f"--out must end in .parquet or .csv; got {str(out)!r}.")
    if out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a folder; give a file name ending in .parquet or .csv.")
    parent = out.absolute().parent
    nearest = next(p for p in (parent, *parent.parents) if p.exists())
    why = "is a file, not a folder" if not nearest.is_dir() else None
    if why is None:
        try:  # a real probe (root passes os.access on read-only folders and mounts): a file created and gone
            with tempfile.TemporaryFile(dir=nearest):
                pass
        except OSError as exc:
            why = f"is not writable ({_os_error(exc)})"
    if why:
        raise ConfigError(f"Cannot write --out {str(out)!r}: {str(nearest)!r} {why}. Nothing was written. "
                          "Point --out at a file in a writable folder.")
    return out


def _os_error(exc: OSError) -> str:
    import errno

    code = errno.errorcode.get(exc.errno or 0)
    return f"{exc.strerror} ({code})" if exc.strerror and code else str(exc).splitlines()[0]


class _OutFile:
    """``--out``: built from the run's part files in a private folder beside it while the store's transaction is
    open (:meth:`build`), moved onto the path after the commit (:meth:`publish`); the folder goes on exit."""

    def __init__(self, path: Path, scores: Path, chunk_rows: int):
        self.path, self._scores, self._chunk_rows = path, scores, chunk_rows
        self._folders = contextlib.ExitStack()
        self._built: Path | None = None

    def __enter__(self) -> _OutFile:
        return self

    def __exit__(self, *exc) -> None:
        self._folders.close()

    def build(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            stage = self._folders.enter_context(_temp_folder(OUT_PREFIX, self.path.parent))
            concat_parts(self._scores, stage / self.path.name, scores_schema(), self._chunk_rows)
        except OSError as exc:
            raise ConfigError(
                f"Cannot write --out {str(self.path)!r}: {_os_error(exc)}. Nothing was written: the scores store is as it "
                "was (this batch was rolled back). Point --out at a writable folder with free space and run again."
            ) from None
        self._built = stage / self.path.name

    def publish(self, batch: Batch) -> None:
        try:
            os.replace(self._built, self.path)
        except OSError as exc:
            raise ConfigError(
                f"The batch of {batch.as_of} ({batch.model_name} v{batch.model_version}, {batch.rows:,} customers) is "
                f"already live in the scores store, but moving the scores file onto --out {str(self.path)!r} failed: "
                f"{_os_error(exc)}. Export it with `tiering tiers list`, or run predict again with another --out."
            ) from None


def _with_out(chunks: Iterable[pd.DataFrame], out_file: _OutFile | None, job: _Job) -> Iterator[pd.DataFrame]:
    """The chunks, then --out built: inside the store's transaction, so a failure there rolls the batch back."""
    yield from chunks
    if out_file is not None:
        t0 = time.perf_counter()
        job.step(f"writing {out_file.path}")
        out_file.build()
        job.timed("out", t0)


class _StoreRef:
    """The scores store: an existing one is opened and probed now (unreachable, locked or read-only fails before
    the long part); a SQLite file not there yet is created by :meth:`get`, once the run's checks have passed."""

    def __init__(self, cfg: Config):
        from tiering.store import normalize_url

        self._cfg = cfg.store
        url = normalize_url(cfg.store.url)
        new_sqlite = url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists()
        self._store = None if new_sqlite else self._open()

    def _open(self) -> ScoresStore:
        store = ScoresStore(self._cfg.url, lock_timeout_s=self._cfg.lock_timeout_s)
        store.check_writable()
        return store

    def get(self) -> ScoresStore:
        if self._store is None:
            self._store = self._open()
        return self._store


# --------------------------------------------------------------------------------------------- the job

@dataclass
class _Job:
    """What every stage of one run shares: the config, as_of, progress callbacks and the timings."""

    cfg: Config
    as_of: dt.date
    step: Callable[[str], None]
    tick: ChunkCallback
    timings: dict[str, float] = field(default_factory=dict)

    def timed(self, name: str, t0: float) -> None:
        self.timings[name] = round(time.perf_counter() - t0, 3)

    def validated(self, con) -> ValidatedTables:
        """The sources validated at as_of; the quarantine is not written yet (see :meth:`accept`)."""
        from tiering.validation import load_tables

        t0 = time.perf_counter()
        self.step(f"validating sources at {self.as_of} ({self.cfg.features.engine})")
        tables = load_tables(self.cfg, as_of=self.as_of, con=con, write_quarantine=False)
        self.timed("validate", t0)
        return tables

    def accept(self, tables: ValidatedTables, gap: int | None, bundle: ScoringBundle, columns: list[str]) -> None:
        """The refusal checks on the feature frame (as_of gap, empty base, columns), then the quarantine written."""
        _check_as_of(gap, self.as_of, self.cfg.predict.max_days_after_data)
        _check_frame_columns(bundle, columns)
        if self.cfg.validation.quarantine_dir:
            tables.write_quarantine(self.cfg.validation.quarantine_dir)


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

    job = _Job(cfg, as_of, progress or (lambda msg: None), on_chunk or (lambda stage, done, total: None))
    out = check_out(out)
    for folder in clean_stale_folders(tempfile.gettempdir(), cfg.predict.work_dir, out.absolute().parent if out else None):
        log.info("removed %s, left by a killed run", folder)
    t0 = time.perf_counter()
    store = _StoreRef(cfg)
    job.step(f"loading model {model}")
    bundle, name, version = load_bundle(model, cfg.tracking)
    spec = check_model_spec(bundle)
    job.timed("load_model", t0)
    notes = [w for w in [training_date_warning(bundle, as_of, f"{name} v{version}" if version else model)] if w]

    resumed = None
    with (_sigterm_as_exit(),
          _run_folder(cfg, scored_at, as_of=as_of, model=model, name=name, version=version, spec=spec) as run,
          _OutFile(out, run.scores, cfg.predict.chunk_rows) if out else contextlib.nullcontext() as out_file):
        finish = {"model_name": name, "model_version": version, "scored_at": run.scored_at}  # resumed: the first's
        if cfg.features.engine == "spark":
            batch, reports = _spark_run(job, run, bundle, spec, model, store, out_file, **finish)
        else:
            reports, rows, resumed = _duckdb_features(job, run, bundle, spec)
            batch = _duckdb_score_and_write(job, run, bundle, store.get(), out_file, rows, **finish)
        if out_file is not None:
            out_file.publish(batch)
    summary = store.get().tier_counts(batch)
    for note in notes:  # once the batch is in: a refused run has no results to warn about
        warnings.warn(note, TieringWarning, stacklevel=2)  # the CLI prints it to stderr as "warning: ..."
    return PredictResult(batch, summary, reports, str(out) if out else None, job.timings, cfg.features.engine, resumed,
                         notes, batch.flips_avoided)


def _duckdb_features(job: _Job, run: _RunFolder, bundle: ScoringBundle,
                     spec: FeatureSpec) -> tuple[list[TableReport], int, dict | None]:
    """The feature files (built, or found complete from an earlier attempt), checked: (reports, rows, resumed)."""
    chunk_rows = job.cfg.predict.chunk_rows
    if run.features.exists() and run.has_reports():  # reports.json comes last: that attempt passed its checks
        rows, gap, columns = _feature_file_stats(run.features)
        _check_as_of(gap, job.as_of, job.cfg.predict.max_days_after_data)
        _check_frame_columns(bundle, columns)
        resumed = {"features": True, "chunks_done": run.parts_done(), "chunks_total": run.chunks(chunk_rows)}
        job.step(f"resuming {run.path}: features done, {resumed['chunks_done']}/{resumed['chunks_total']} chunks "
                 "already scored")
        return run.load_reports(), rows, resumed
    shutil.rmtree(run.scores, ignore_errors=True)  # part files of an earlier feature file
    tables = job.validated(_connect("duckdb", job.cfg, run.path))
    t0 = time.perf_counter()
    job.step(f"building features with spec {spec.to_dict()}")
    _features_duckdb(tables, spec, job.as_of, run.features, bucket_count(tables, job.cfg.features.bucket_rows))
    job.timed("features", t0)
    rows, gap, columns = _feature_file_stats(run.features)
    job.accept(tables, gap, bundle, columns)
    tables.con.disconnect()  # before its spill folder goes
    run.save_reports(tables.reports)
    return tables.reports, rows, None


def _duckdb_score_and_write(job: _Job, run: _RunFolder, bundle: ScoringBundle, store: ScoresStore,
                            out_file: _OutFile | None, rows: int, **finish) -> Batch:
    """Score the chunks in a background thread while their part files stream into the store, then build --out,
    then commit."""
    chunk_rows = job.cfg.predict.chunk_rows
    job.step(f"scoring {rows:,} customers in chunks of {chunk_rows:,} and writing them to the store in one "
             "transaction")
    hysteresis = Hysteresis.load(store, as_of=job.as_of, model_name=finish["model_name"],
                                 margin=job.cfg.model.tier_hysteresis_margin)
    if hysteresis is not None:
        job.step(f"hysteresis against the batch of {hysteresis.from_batch.as_of} ({hysteresis.from_batch.model_name} "
                 f"v{hysteresis.from_batch.model_version}), margin {hysteresis.margin:g}")
    scorer = _BackgroundScorer(run, bundle, chunk_rows, job.cfg.predict.model_threads,
                               lambda done: job.tick("score", done, rows), hysteresis, **finish)
    chunks = (c for part in scorer.parts() for c in _read_chunks(part, chunk_rows))
    fail = False
    try:
        batch = store.write_chunks(_with_out(chunks, out_file, job), as_of=job.as_of,
                                   on_chunk=lambda n: job.tick("write", n, rows), flips_avoided=scorer.flips_avoided,
                                   **finish)
    except Exception:
        fail = True  # the scoring goes on to the end, so that the next run only writes
        raise
    finally:
        scorer.close(finish=fail)
    # the write overlaps the scoring: "write" is the part of it left after the last chunk was scored, less --out
    job.timings["score"] = round(scorer.finished - scorer.started, 3)
    job.timings["write"] = round(time.perf_counter() - scorer.finished - job.timings.get("out", 0.0), 3)
    return batch


# --------------------------------------------------------------------------------------------- spark

def _spark_run(job: _Job, run: _RunFolder, bundle: ScoringBundle, spec: FeatureSpec, model: str, store: _StoreRef,
               out_file: _OutFile | None, **finish) -> tuple[Batch, list[TableReport]]:
    """Validate, build features and check them on Spark, then score with mlflow.pyfunc.spark_udf into the run's
    part files, and stream those into the store (and --out)."""
    tables = job.validated(_connect("spark", job.cfg, run.path))
    t0 = time.perf_counter()
    job.step("building features and scoring on Spark (mlflow spark_udf)")
    features, rows, gap = _spark_features(tables, spec, bundle, job.as_of)
    try:
        job.accept(tables, gap, bundle, list(features.columns))
        writable = store.get()
        _spark_scores(features, bundle, model, job.cfg, as_of=job.as_of, scores_dir=run.scores, **finish)
    finally:
        features.unpersist()
    job.timed("features_and_score", t0)
    job.tick("score", rows, rows)
    t0 = time.perf_counter()
    job.step(f"writing {rows:,} scores to the store in one transaction")
    batch = writable.write_chunks(_with_out(_read_chunks(run.scores, job.cfg.predict.chunk_rows), out_file, job),
                                  as_of=job.as_of, on_chunk=lambda n: job.tick("write", n, rows), **finish)
    job.timings["write"] = round(time.perf_counter() - t0 - job.timings.get("out", 0.0), 3)
    return batch, tables.reports


def _spark_features(tables: ValidatedTables, spec: FeatureSpec, bundle: ScoringBundle, as_of: dt.date):
    """The feature frame on Spark (cached; the caller unpersists it), its rows and the days from the latest event
    to as_of. Nothing of the base is collected to the driver."""
    import pyspark.sql.functions as F

    con = tables.con
    expr = build_features(tables.transactions, tables.interactions, tables.customers, as_of=as_of, spec=spec)
    _check_frame_columns(bundle, list(expr.columns))
    features = con._session.sql(str(con.compile(expr))).select(*bundle.feature_columns).cache()
    stats = features.agg(F.count(F.lit(1)).alias("rows"), F.min(F.least(
        "days_since_last_purchase", "days_since_last_interaction", "tenure_days")).alias("gap")).collect()[0]
    rows, gap = int(stats["rows"]), stats["gap"]
    return features, rows, (int(gap) if rows and gap is not None else None)


def _spark_scores(features, bundle: ScoringBundle, model: str, cfg: Config, *, as_of: dt.date, model_name: str,
                  model_version: str, scored_at: dt.datetime, scores_dir: Path) -> None:
    """Score the feature frame with mlflow.pyfunc.spark_udf; Spark writes the scores as Parquet part files."""
    import pyspark.sql.functions as F

    from tiering.registry import spark_scoring_udf

    spark = features.sparkSession
    uri = f"models:/{model_name}/{model_version}" if model_version else model  # the version loaded, not a moving alias
    udf = spark_scoring_udf(spark, uri, cfg.tracking, _spark_result_type())
    cols = bundle.feature_columns
    scored = features.select(udf(F.struct(*[F.col(c) for c in cols])).alias("s")).select("s.*")
    scored = (scored.withColumn("as_of", F.to_date(F.lit(as_of.isoformat())))
              .withColumn("model_name", F.lit(model_name)).withColumn("model_version", F.lit(str(model_version)))
              .withColumn("scored_at", F.lit(pd.Timestamp(scored_at).to_pydatetime()).cast("timestamp_ntz"))
              .select(*SCORES_COLUMNS).orderBy("customer_id"))
    scored.write.mode("overwrite").parquet(str(scores_dir))


def _spark_result_type() -> str:
    """The UDF's struct: the scores frame less the columns added afterwards (as_of, model, scored_at)."""
    kinds = {c: "double" for c in _FLOAT} | {c: "long" for c in _INT} | {c: "boolean" for c in _BOOL}
    skip = ("as_of", "model_name", "model_version", "scored_at")
    return ", ".join(f"{c} {kinds.get(c, 'string')}" for c in SCORES_COLUMNS if c not in skip)
