"""Where a scored batch goes: the ``--out`` file and the scores store.

Called by the predict job (:func:`tiering.predict.predict_and_store`: :func:`check_out` before
anything runs, :class:`StoreRef` and :class:`OutFile` for the run) and by both engine paths, which
stream their part files into the store through :func:`with_out`.

Order of faults: ``--out`` is built in a private folder ``.tiering-out-*`` beside it while the
store's transaction is still open, after the last chunk went in; a failure there (read-only folder,
full disk) rolls the transaction back, so the error (exit 2, naming the path and the OS error)
leaves the store as it was. The built file is moved onto ``--out`` (a rename in the same folder)
after the commit; only that rename can fail after the batch is live, and its error says so.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from tiering.config import Config
from tiering.exceptions import ConfigError
from tiering.io import concat_parts, display_path, is_url
from tiering.scoring.frames import scores_schema
from tiering.scoring.run_folder import OUT_PREFIX, temp_folder
from tiering.store import Batch, ScoresStore

if TYPE_CHECKING:
    from tiering.scoring.job import Job


def check_out(out: str | Path | None) -> Path | None:
    """``--out`` as a Path, refused (ConfigError, nothing written) when its extension is not .parquet or .csv, it
    is a folder, or its nearest existing folder is not a writable folder."""
    if out is None:
        return None
    if is_url(out):  # also s3a:/bucket/key, what pathlib makes of s3a://bucket/key
        raise ConfigError(
            f"--out {display_path(out)!r} is a URL; predict builds --out on the driver's local disk. Give a local path, or "
            "export the batch from the scores store (`tiering tiers list --format csv`). Nothing was written."
        )
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
        raise ConfigError(
            f"Cannot write --out {str(out)!r}: {str(nearest)!r} {why}. Nothing was written. Point --out at a file in a writable folder."
        )
    return out


def _os_error(exc: OSError) -> str:
    import errno

    code = errno.errorcode.get(exc.errno or 0)
    return f"{exc.strerror} ({code})" if exc.strerror and code else str(exc).splitlines()[0]


class OutFile:
    """``--out``: built from the run's part files in a private folder beside it while the store's transaction is
    open (:meth:`build`), moved onto the path after the commit (:meth:`publish`); the folder goes on exit."""

    def __init__(self, path: Path, scores: Path, chunk_rows: int):
        self.path, self._scores, self._chunk_rows = path, scores, chunk_rows
        self._folders = contextlib.ExitStack()
        self._built: Path | None = None

    def __enter__(self) -> OutFile:
        return self

    def __exit__(self, *exc) -> None:
        self._folders.close()

    def build(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            stage = self._folders.enter_context(temp_folder(OUT_PREFIX, self.path.parent))
            concat_parts(self._scores, stage / self.path.name, scores_schema(), self._chunk_rows)
        except OSError as exc:
            raise ConfigError(
                f"Cannot write --out {str(self.path)!r}: {_os_error(exc)}. Nothing was written: the scores store is as it "
                "was (this batch was rolled back). Point --out at a writable folder with free space and run again."
            ) from None
        self._built = stage / self.path.name

    def publish(self, batch: Batch) -> None:
        assert self._built is not None, "publish() comes after build()"
        try:
            os.replace(self._built, self.path)
        except OSError as exc:
            raise ConfigError(
                f"The batch of {batch.as_of} ({batch.model_name} v{batch.model_version}, {batch.rows:,} customers) is "
                f"already live in the scores store, but moving the scores file onto --out {str(self.path)!r} failed: "
                f"{_os_error(exc)}. Export it with `tiering tiers list`, or run predict again with another --out."
            ) from None


def with_out(chunks: Iterable[pd.DataFrame], out_file: OutFile | None, job: Job) -> Iterator[pd.DataFrame]:
    """The chunks, then --out built: inside the store's transaction, so a failure there rolls the batch back."""
    yield from chunks
    if out_file is not None:
        t0 = time.perf_counter()
        job.step(f"writing {out_file.path}")
        out_file.build()
        job.timed("out", t0)


class StoreRef:
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
