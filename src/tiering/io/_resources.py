"""What ran out when an engine fails for want of memory or disk: :func:`resource_error`.

DuckDB raises ``OutOfMemoryException`` when a query needs more than its memory limit and cannot spill, and an
``IOException`` (or Python an ``OSError``, errno ENOSPC) when the disk it writes stage files, feature files or
its spill to is full; Spark throws ``java.lang.OutOfMemoryError`` (the JVM's heap) or ``SparkOutOfMemoryError`` (an
operator that cannot get the memory it needs). None of those is a bug in tiering or
bad input: the run needs a larger limit, smaller buckets or another disk. :func:`resource_error` turns them into a
:class:`~tiering.exceptions.ResourceError` that says which, with what the machine has and the setting to change,
so a scheduler can tell "give this job more room" (exit status 4) from "fix the data" (2) and from a bug (1).
"""

from __future__ import annotations

import errno
import re
import shutil
import tempfile
from pathlib import Path

from tiering.exceptions import ResourceError, TieringError

_NO_SPACE = "No space left on device"
# the JVM's heap exhausted; Spark's own, when an operator cannot get the memory it needs (at 1M customers on a 1 GiB
# local driver: "SparkOutOfMemoryError: No enough memory for aggregation")
_SPARK_MEMORY = ("java.lang.OutOfMemoryError", "SparkOutOfMemoryError")
_QUOTED_PATH = re.compile(r"""["']([^"']+)["']""")


def resource_error(exc: BaseException) -> ResourceError | None:
    """The :class:`ResourceError` ``exc`` (or an exception it was raised from) stands for, or None when it is not
    an engine out of memory or a full disk. An error tiering raised on purpose (a TieringError, such as predict's
    message for a full disk under --out, with what happened to the store) keeps its own message: None."""
    if isinstance(exc, TieringError):
        return None
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        found = _classify(e)
        if found is not None:
            return found
        e = e.__cause__ if e.__cause__ is not None else (None if e.__suppress_context__ else e.__context__)  # as a traceback
    return None


def _classify(e: BaseException) -> ResourceError | None:
    text = str(e)
    if (isinstance(e, OSError) and e.errno == errno.ENOSPC) or _NO_SPACE in text:
        return _disk_full(e, text)
    if type(e).__name__ == "OutOfMemoryException" and type(e).__module__.lstrip("_").startswith("duckdb"):
        return _duckdb_memory(text)
    marker = next((m for m in _SPARK_MEMORY if m in text), None)
    if marker is not None:
        return ResourceError(
            f"Spark ran out of memory ({_engine_words(text, marker)}). On a local session "
            "tiering starts, executors share the driver's heap (a quarter of the machine's memory unless set): give "
            "it more with SPARK_DRIVER_MEMORY=8g (or PYSPARK_SUBMIT_ARGS='--driver-memory 8g pyspark-shell'); on a "
            "cluster raise spark.executor.memory "
            "or spark.sql.shuffle.partitions. With `tiering train`, a smaller model.train_sample_customers brings "
            "fewer rows to the driver."
        )
    return None


def _duckdb_memory(text: str) -> ResourceError:
    from tiering.io._engine import machine_memory

    ram = machine_memory()
    has = f"; this machine has {ram / 2**30:.1f} GiB" if ram else ""
    return ResourceError(
        f"DuckDB ran out of memory under its limit ({_engine_words(text, 'Out of Memory Error')}{has}). Raise "
        "features.duckdb_memory_limit (validation and the feature build; predict.duckdb_memory_limit for batch "
        "scoring), e.g. --set features.duckdb_memory_limit=4GB, or lower features.bucket_rows so that each customer "
        "bucket needs less."
    )


def _disk_full(e: BaseException, text: str) -> ResourceError:
    path = getattr(e, "filename", None) or next(iter(_QUOTED_PATH.findall(text)), None)
    where = ""
    if path:
        folder = _existing_parent(Path(str(path)))
        free = f", {_size(shutil.disk_usage(folder).free)} free there now" if folder is not None else ""
        where = f" writing {path}{free}"
    return ResourceError(
        f"The disk is full{where}. Where a run writes: validation's stage files in the system temp folder "
        f"({tempfile.gettempdir()}; set TMPDIR to move them), DuckDB's spill in the working directory, `tiering predict`'s "
        "feature files, scores and spill under predict.work_dir when it is set, and the --out files. Free space there "
        "or point them at a larger disk, and run again (a predict run with predict.work_dir resumes from its last "
        "checkpoint)."
    )


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _existing_parent(path: Path) -> Path | None:
    for p in (path, *path.parents):
        if p.exists():
            return p
    return None


def _engine_words(text: str, marker: str) -> str:
    """What follows ``marker`` on the first line of ``text`` that holds it (the engine's own words for what failed)."""
    line = next((ln.strip() for ln in text.splitlines() if marker in ln), text.strip().splitlines()[0] if text.strip() else "")
    return line.partition(marker)[2].lstrip(": ") or line
