"""The folders of a scoring run: the run folder and its checkpoint (resume), locks, stale folders, SIGTERM.

Called by the predict job (:func:`tiering.predict.predict_and_store`), which holds one
:func:`run_folder` for the run, and by :mod:`tiering.scoring.output` (the ``--out`` staging folder is
a :func:`temp_folder` too).

Resume: without ``predict.work_dir`` the run folder is temporary. With it (DuckDB engine), the run
keeps its files in ``work_dir/run-<key>/``, the key a hash of everything that determines them (as_of,
model version, feature spec, chunk_rows, engine, data and validation config, and the size and
mtime of every source file, see :func:`run_inputs`). Each file is written under a temporary name
and renamed when complete, so a file that exists is complete: a run that fails keeps its folder,
and the next run with the same inputs skips validation and features when the features folder is
there, scores only the chunks without a part file, writes the store, and removes the folder. It
scores with the scored_at of the first attempt (manifest.json), so one batch has one scored_at.
Two runs with the same inputs are kept apart by a lock (:func:`exclusive`); a refused run (bad
data, schema or model) removes its checkpoint folder, a crash or a service fault keeps it.

Temporary folders: the run folder (``tiering-predict-*`` in the system temp folder, or in
``predict.work_dir``) holds DuckDB's spill files and validation's materialised tables too; it
and the ``.tiering-out-*`` folder are removed on every exit path (exceptions, KeyboardInterrupt,
SystemExit, and SIGTERM, which a run started in the main thread turns into SystemExit,
:func:`sigterm_as_exit`). Each holds a ``.lock`` file locked (flock) while its run lives; folders of
these names older than :data:`STALE_AFTER_S` whose lock nobody holds are what a killed run
(kill -9) left, and each run removes them at its start (:func:`clean_stale_folders`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from tiering.config import Config, SourceConfig
from tiering.exceptions import DataQualityError, ModelError, SchemaError, StoreError
from tiering.features import FeatureSpec
from tiering.io import atomic_path
from tiering.validation import TableReport

TEMP_PREFIX, OUT_PREFIX = "tiering-predict-", ".tiering-out-"
STALE_AFTER_S = 3600  # a folder of a run older than this whose lock nobody holds was left by a killed run


class RunFolder:
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
    def checkpoint(cls, work_dir: Path, key: str, inputs: dict, scored_at: dt.datetime) -> RunFolder:
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


def source_fingerprint(path: str) -> list[list]:
    """[resolved file, size, mtime_ns] of a source file, or of every file under a source folder; [] when missing."""
    root = Path(path).resolve()
    files = sorted(f for f in root.rglob("*") if f.is_file()) if root.is_dir() else [root] if root.exists() else []
    return [[str(f), st.st_size, st.st_mtime_ns] for f in files for st in (f.stat(),)]


def run_inputs(cfg: Config, *, as_of: dt.date, model: str, name: str, version: str, spec: FeatureSpec) -> dict:
    """Everything that determines a run's files: the same inputs find the same checkpoint folder."""
    sources = {table: source_fingerprint(src.path) for table, src in cfg.data if isinstance(src, SourceConfig) and src.path}
    return {
        "as_of": as_of.isoformat(),
        "model": model,
        "model_name": name,
        "model_version": str(version),
        "feature_spec": spec.to_dict(),
        "chunk_rows": cfg.predict.chunk_rows,
        "engine": cfg.features.engine,
        "tier_hysteresis_margin": cfg.model.tier_hysteresis_margin,
        "data": cfg.data.model_dump(mode="json"),
        "validation": cfg.validation.model_dump(mode="json"),
        "sources": sources,
    }


@contextlib.contextmanager
def run_folder(cfg: Config, scored_at: dt.datetime, **inputs) -> Iterator[RunFolder]:
    """The run's folder: a checkpoint folder with ``predict.work_dir`` (DuckDB engine), removed when the run
    succeeds or is refused, kept after a crash or a service fault (to resume); else a temporary folder (under
    work_dir when set), always removed. ``inputs``: of :func:`run_inputs`."""
    work_dir = cfg.predict.work_dir
    if work_dir:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    if not work_dir or cfg.features.engine == "spark":  # Spark scores in one job: nothing to resume
        with temp_folder(TEMP_PREFIX, work_dir) as tmp:
            yield RunFolder(tmp, scored_at)
        return
    key_inputs = run_inputs(cfg, **inputs)
    key = RunFolder.key(key_inputs)
    with exclusive(Path(work_dir) / f"run-{key}.lock"):
        run = RunFolder.checkpoint(Path(work_dir), key, key_inputs, scored_at)
        try:
            yield run
        except (DataQualityError, SchemaError, ModelError):
            shutil.rmtree(run.path, ignore_errors=True)  # a refusal keeps nothing
            raise
        shutil.rmtree(run.path)  # not reached when the run fails: the folder stays for the next attempt


@contextlib.contextmanager
def exclusive(lock: Path) -> Iterator[None]:
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


@contextlib.contextmanager
def temp_folder(prefix: str, parent: str | Path | None) -> Iterator[Path]:
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


def clean_stale_folders(*parents: str | Path | None, max_age_s: float = STALE_AFTER_S, now: float | None = None) -> list[Path]:
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
            if (
                folder.is_dir()
                and not folder.is_symlink()
                and st.st_uid == os.getuid()
                and now - st.st_mtime > max_age_s
                and _lock_free(folder)
            ):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
    return removed


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
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
