"""A local PySpark session for the spark engine (pyspark is the optional extra ``tiering[spark]``).

``tiering.io.connect("spark")`` wraps this session in Ibis. On a cluster, build your own session
and pass ``ibis.pyspark.connect(session)`` as ``con`` instead; nothing here is then used.
"""

from __future__ import annotations

import os
import shutil
import sys

from tiering.exceptions import ConfigError


def spark_session(master: str = "local[2]", shuffle_partitions: int = 8):
    """Get or create the Spark session; binds to loopback unless SPARK_LOCAL_IP says otherwise.

    Settings for one machine: UTC session time zone (timestamps without a zone keep their
    wall-clock value), no web UI, few shuffle partitions (adaptive execution still coalesces
    them), Parquet timestamps written as microseconds (not INT96), Spark's own log at ERROR.
    An existing session (getOrCreate) keeps its settings except the SQL ones set here.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigError("The spark engine needs pyspark and Java: pip install 'tiering[spark]'.") from None
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise ConfigError("The spark engine needs Java (a JDK 17 or 21): install one and put `java` on PATH or set JAVA_HOME.")
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Python workers (UDFs such as mlflow's spark_udf) run this interpreter and its packages, unless set otherwise
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master(master)
        .appName("tiering")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    for key, value in (
        ("spark.sql.session.timeZone", "UTC"),
        ("spark.sql.shuffle.partitions", str(shuffle_partitions)),
        ("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS"),
    ):
        session.conf.set(key, value)
    session.sparkContext.setLogLevel("ERROR")
    return session
