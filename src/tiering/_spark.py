"""The PySpark session for the spark engine (pyspark is the optional extra ``tiering[spark]``), and the way
training brings a bounded set of rows from Spark to the driver.

``tiering.io.connect("spark")`` wraps :func:`spark_session` in Ibis: a local session on one machine (every core
this process may use, the driver's heap sized from the machine's memory); under
spark-submit (or wherever a session is already running, as in a Databricks job) the cluster's session, its
master and settings as submitted. From Python, pass ``ibis.pyspark.connect(your_session)`` as ``con`` instead.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import shutil
import sys
import weakref
from typing import TYPE_CHECKING

from tiering.exceptions import ConfigError

if TYPE_CHECKING:
    import ibis.expr.types as ir

    from tiering.validation import ValidatedTables

_COLLECTED = itertools.count()  # names of the DuckDB tables collect_to_duckdb creates
_ON_DISK = itertools.count()  # names of the views persisted_on_disk creates


def spark_session(master: str | None = None, shuffle_partitions: int | None = None):
    """Get or create the Spark session; binds to loopback unless SPARK_LOCAL_IP says otherwise.

    ``master`` (default ``local[N]``, N the cores this process may use) and the driver's memory apply only to a
    session started here: a process launched by spark-submit (PYSPARK_GATEWAY_PORT set) keeps the submitted
    ``--master`` and ``--conf`` settings, and an active session is returned as it is but for the SQL settings
    below. Settings for one machine: UTC session time zone (timestamps without a zone keep their wall-clock
    value), no web UI, few shuffle partitions (``shuffle_partitions``, default twice the cores and at least 8;
    adaptive execution still coalesces them), Parquet timestamps written as microseconds (not INT96), Spark's
    own log at ERROR, and the driver's heap (which in local mode holds the executors too) from
    :func:`local_driver_memory` unless the user set it (SPARK_DRIVER_MEMORY, ``--driver-memory`` in
    PYSPARK_SUBMIT_ARGS, or spark.driver.memory in spark-defaults.conf). A submitted or active session keeps its
    UI and its ``spark.sql.shuffle.partitions``.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigError("The spark engine needs pyspark and Java: pip install 'tiering[spark]'.") from None
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise ConfigError("The spark engine needs Java (a JDK 17 or 21): install one and put `java` on PATH or set JAVA_HOME.")
    from tiering.io import available_cores

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Python workers (UDFs such as mlflow's spark_udf) run this interpreter and its packages, unless set otherwise
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ or SparkSession.getActiveSession() is not None
    cores = available_cores()
    builder = SparkSession.builder.appName("tiering")
    if not submitted:  # spark-submit's --master and the cluster's UI stay as the user set them
        builder = builder.master(master or f"local[{cores}]").config("spark.ui.enabled", "false")
        builder = builder.config("spark.ui.showConsoleProgress", "false")
        if not _driver_memory_set():  # read when the driver's JVM starts, so only by the session that starts it
            builder = builder.config("spark.driver.memory", local_driver_memory())
    session = builder.getOrCreate()
    settings = [("spark.sql.session.timeZone", "UTC"), ("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")]
    if not submitted:  # a cluster keeps its own (or Spark's default 200; adaptive execution coalesces them)
        settings.append(("spark.sql.shuffle.partitions", str(shuffle_partitions or max(8, 2 * cores))))
    for key, value in settings:
        session.conf.set(key, value)
    session.sparkContext.setLogLevel("ERROR")
    return session


def _driver_memory_set() -> bool:
    """Whether the user chose the driver's memory where spark-submit reads it: SPARK_DRIVER_MEMORY, ``--driver-memory``
    in PYSPARK_SUBMIT_ARGS, or spark.driver.memory in the spark-defaults.conf of SPARK_CONF_DIR (or SPARK_HOME/conf)."""
    if os.environ.get("SPARK_DRIVER_MEMORY") or "--driver-memory" in os.environ.get("PYSPARK_SUBMIT_ARGS", ""):
        return True
    conf_dir = os.environ.get("SPARK_CONF_DIR") or (
        os.path.join(os.environ["SPARK_HOME"], "conf") if os.environ.get("SPARK_HOME") else None
    )
    if conf_dir is None:
        return False
    try:
        with open(os.path.join(conf_dir, "spark-defaults.conf"), encoding="utf-8") as f:
            return any(re.match(r"\s*spark\.driver\.memory\s*[=:\s]", line) for line in f)  # Java properties
    except OSError:
        return False


def local_driver_memory(memory: int | None = None) -> str:
    """The heap of a local session's driver JVM (which runs the executors too): a quarter of the machine's memory
    (``memory`` bytes; default :func:`tiering.io.machine_memory`), at least Spark's default 1 GiB and at most
    31 GiB (past that the JVM's object pointers double in size). The JVM takes it as needed, not at start."""
    from tiering.io import machine_memory

    memory = machine_memory() if memory is None else memory
    return f"{max(1024, min(31 * 1024, memory // 4 // 2**20))}m"


def collect_to_duckdb(tables: ValidatedTables, con=None) -> ValidatedTables:
    """``tables`` (validated, on Spark) collected to the driver as Arrow and loaded into an in-process DuckDB.

    Training calls it on the stratified sample (tiering.sampling), a bounded number of customers' rows: every
    later query of the fit (features and labels at five or more origins, the tier outcomes) then runs in
    DuckDB on the driver instead of as a Spark job each, with the same rows and column types, so the fit is
    the one DuckDB would make. ``con``: the DuckDB backend to load them into (default ``connect("duckdb")``,
    its memory limit sized to the rows). The reports, and the annotated rows the quarantine came from, stay
    Spark's."""
    from ibis.formats.pyarrow import PyArrowData

    from tiering.io import connect, set_auto_memory_limit

    spark = tables.con
    local = con if con is not None else connect("duckdb")
    rows = 0

    def pull(name: str, table):
        nonlocal rows
        if table is None:
            return None
        arrow = _to_arrow(spark._session.sql(str(spark.compile(table))))
        rows += arrow.num_rows
        set_auto_memory_limit(local, rows)
        return local.create_table(f"collected_{name}_{next(_COLLECTED)}", PyArrowData.convert_table(arrow, table.schema()))

    return dataclasses.replace(
        tables,
        transactions=pull("transactions", tables.transactions),
        interactions=pull("interactions", tables.interactions),
        customers=pull("customers", tables.customers),
        con=local,
    )


def persisted_on_disk(table: ir.Table) -> ir.Table:
    """``table`` (PySpark backend) as a view of its rows computed once, where a plan first needs them, and kept on
    the executors' local disks (StorageLevel.DISK_ONLY), released when the returned table's node is garbage
    collected. Ibis's ``cache()`` keeps them in memory first (MEMORY_AND_DISK): validation's typed rows cached so
    took the heap from the aggregations after them ("No enough memory for aggregation" at 1M customers in a 1 GiB
    local driver), where on disk they do not."""
    from pyspark import StorageLevel

    backend = table._find_backend(use_default=True)
    frame = backend._session.sql(str(backend.compile(table))).persist(StorageLevel.DISK_ONLY)
    name = f"tiering_on_disk_{os.getpid()}_{next(_ON_DISK)}"
    frame.createOrReplaceTempView(name)
    out = backend.table(name)
    weakref.finalize(out.op(), _release, backend._session, name, frame)
    return out


def _release(session, name: str, frame) -> None:
    if sys.is_finalizing():
        return
    try:
        session.catalog.dropTempView(name)
        frame.unpersist()
    except Exception:  # noqa: BLE001 - the session (or its JVM) is gone: nothing is left to release
        pass


def _to_arrow(frame):
    """A Spark DataFrame collected to the driver as one Arrow table (the executors' Arrow batches, no pandas)."""
    if hasattr(frame, "toArrow"):  # pyspark >= 4.0
        return frame.toArrow()
    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_schema

    return pa.Table.from_batches(frame._collect_as_arrow(), schema=to_arrow_schema(frame.schema))  # pyspark 3.5
