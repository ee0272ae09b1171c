"""Engines: connecting DuckDB (with an automatic memory limit sized to the machine and the base) or Spark, the
private temporary folders behind lazy tables, and which engine an expression runs on."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tiering.exceptions import ConfigError

if TYPE_CHECKING:
    import ibis.expr.types as ir

# numbers source views (src_<table>_<n>) and temporary write folders: unique per process
NAME_SERIAL = itertools.count()

_MIB = 1 << 20
_AUTO_LIMIT_FLOOR = 1024 * _MIB  # the automatic DuckDB memory limit never goes below 1 GiB (unless RAM/4 is less)
_AUTO_LIMIT_BYTES_PER_ROW = 48  # ... and grows by 48 bytes per input row beyond that (~22M rows)
_AUTO_LIMIT_PER_THREAD = 512 * _MIB  # ... and is at least 512 MiB per DuckDB thread (fewer: many threads only spill)
_AUTO_LIMIT_MIN = 256 * _MIB


def machine_memory() -> int:
    """Physical memory of this machine in bytes (the cgroup limit when a container sets a lower one)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for f in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):
            total = min(total, int(Path(f).read_text().strip()))
    return total


def auto_memory_limit(rows: int | None = None, memory: int | None = None, threads: int | None = None) -> str:
    """DuckDB's memory_limit when the user sets none (``features.duckdb_memory_limit`` /
    ``predict.duckdb_memory_limit`` unset): 48 bytes per input row (transaction + interaction rows, at most one
    customer bucket's ``features.bucket_rows``: the feature build reads a bucket at a time and validation's stages
    spill; unknown: 1 GiB's worth),
    at least 1 GiB and 512 MiB per DuckDB thread (``threads``; None: the cores this process may use), at
    most a quarter of the machine's memory (never below 256 MiB).

    At 1M customers (20M rows) on 2 cores that is 1 GiB: the feature build then peaks at ~1.2 GiB RSS
    instead of ~2 GiB under DuckDB's own default (80% of RAM), for a few percent more time (it spills to
    disk). On 16 cores a 1 GiB limit made every thread past the second only spill (the build took 18.7 s
    against 4.5 s without a limit, benchmarks/results/device_scaling_2026-11-27.txt): hence the per-thread floor.
    """
    memory = machine_memory() if memory is None else memory
    threads = available_cores() if threads is None else max(1, int(threads))
    floor = max(_AUTO_LIMIT_FLOOR, _AUTO_LIMIT_PER_THREAD * threads)
    want = floor if rows is None else max(floor, _AUTO_LIMIT_BYTES_PER_ROW * int(rows))
    limit = max(_AUTO_LIMIT_MIN, min(want, memory // 4))
    return f"{limit // _MIB}MiB"


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one: a container's share)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def set_auto_memory_limit(con, rows: int) -> None:
    """Resize the automatic memory limit of a ``connect("duckdb")`` connection to ``rows`` input rows
    (no-op on Spark and when the user chose a limit)."""
    if getattr(con, "name", None) == "duckdb" and getattr(con, "_tiering_auto_memory_limit", False):
        con.raw_sql(f"SET memory_limit = '{auto_memory_limit(rows, threads=getattr(con, '_tiering_threads', None))}'")


def connect(engine: str = "duckdb", **settings):
    """An Ibis backend: in-process DuckDB by default, a local PySpark session with ``spark``.

    ``settings`` are DuckDB settings, e.g. ``memory_limit="1GB"`` (DuckDB then spills to disk
    instead of growing) or ``threads=2``; ignored for spark. Without a memory_limit, DuckDB gets
    ``auto_memory_limit()`` (memory_limit=None counts as not given; 1 GiB, or a quarter of RAM when that is less; load_tables raises it
    with the base size) instead of DuckDB's own default of 80% of RAM. Without a temp_directory, DuckDB spills
    into a folder of its own in the working directory (./.tmp-duckdb-PID-N), not into DuckDB's default ./.tmp:
    two processes spilling into one folder overwrite each other's temporary files ("Corrupt temporary file").
    """
    import ibis

    if engine == "duckdb":
        auto = settings.get("memory_limit") is None
        if auto:
            settings["memory_limit"] = auto_memory_limit(threads=settings.get("threads"))
        own_spill = settings.get("temp_directory") is None
        if own_spill:  # DuckDB creates it on the first spill (nothing is written otherwise) and removes it on close
            settings["temp_directory"] = f".tmp-duckdb-{os.getpid()}-{next(NAME_SERIAL)}"
        con = ibis.duckdb.connect(**settings)
        con._tiering_own_spill = own_spill
        con._tiering_auto_memory_limit = auto
        con._tiering_threads = settings.get("threads")
        return con
    if engine == "spark":
        from tiering._spark import spark_session

        return ibis.pyspark.connect(spark_session())
    raise ConfigError(f"Unknown engine {engine!r}; use 'duckdb' or 'spark'.")


def private_folder(con, prefix: str) -> Path:
    """A new temporary folder for files behind lazy tables of ``con``, removed when ``con`` is garbage
    collected (or at exit). It is created beside DuckDB's temp_directory when one is set (batch scoring
    points it into its work dir), else in the system temp folder."""
    spill = con.raw_sql("SELECT current_setting('temp_directory')").fetchone()[0] if con.name == "duckdb" else None
    # DuckDB's default, or connect's folder of its own under it: the system temp folder
    base = Path(spill).resolve().parent if spill and spill != ".tmp" and not getattr(con, "_tiering_own_spill", False) else None
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    folder = tempfile.mkdtemp(prefix=prefix, dir=base)
    weakref.finalize(con, shutil.rmtree, folder, True)
    return Path(folder)


def is_spark(expr: ir.Table) -> bool:
    """Whether ``expr`` runs on the PySpark backend."""
    return expr._find_backend(use_default=True).name == "pyspark"


@contextlib.contextmanager
def unordered_writes(duckdb_backend) -> Iterator[None]:
    """DuckDB's preserve_insertion_order off for the block, then as it was: for writes whose row order carries no
    meaning (DuckDB then writes in parallel, with less memory)."""
    before = duckdb_backend.raw_sql("SELECT current_setting('preserve_insertion_order')").fetchone()[0]
    duckdb_backend.raw_sql("SET preserve_insertion_order = false")
    try:
        yield
    finally:
        duckdb_backend.raw_sql(f"SET preserve_insertion_order = {'true' if before else 'false'}")
