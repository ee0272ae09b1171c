"""A local PySpark session for the spark engine (pyspark is the optional extra ``tiering[spark]``)."""

from __future__ import annotations

import os

from tiering.exceptions import ConfigError


def spark_session(master: str = "local[2]"):
    """Get or create the Spark session; binds to loopback unless SPARK_LOCAL_IP says otherwise."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigError("The spark engine needs pyspark and Java: pip install 'tiering[spark]'.") from None
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    return (SparkSession.builder.master(master).appName("tiering")
            .config("spark.sql.session.timeZone", "UTC").config("spark.ui.enabled", "false").getOrCreate())
