"""The Spark path of batch scoring: features on Spark, scores by ``mlflow.pyfunc.spark_udf``, streamed writes.

Called by :func:`tiering.predict.predict_and_store` when ``features.engine`` is spark. :func:`run_on_spark`
validates the sources on Spark, builds the feature frame there (cached, never collected to the
driver), applies the same checks as the DuckDB path (:meth:`tiering.scoring.job.Job.accept`, the
as_of gap by :data:`tiering.scoring.as_of.GAP_DAYS_SQL`), scores it with the registered model as a
Spark UDF into the run folder's part files (Spark writing them), and streams those into the store in
one transaction (and --out). There is no resume and no hysteresis on this path.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pandas as pd

from tiering.config import Config
from tiering.exceptions import ConfigError
from tiering.features import FeatureSpec, build_features
from tiering.models.bundle import ScoringBundle
from tiering.schemas import SCORES_COLUMNS
from tiering.scoring.as_of import GAP_DAYS_SQL
from tiering.scoring.frames import BOOL, FLOAT, INT, check_frame_columns, read_chunks
from tiering.scoring.job import Job
from tiering.scoring.output import OutFile, StoreRef, with_out
from tiering.scoring.run_folder import RunFolder
from tiering.store import Batch
from tiering.validation import TableReport, ValidatedTables


def run_on_spark(
    job: Job, run: RunFolder, bundle: ScoringBundle, spec: FeatureSpec, model: str, store: StoreRef, out_file: OutFile | None, **finish
) -> tuple[Batch, list[TableReport]]:
    """Validate, build features and check them on Spark, then score with mlflow.pyfunc.spark_udf into the run's
    part files, and stream those into the store (and --out)."""
    from tiering.io import connect

    tables = job.validated(connect("spark"))
    t0 = time.perf_counter()
    job.step("building features and scoring on Spark (mlflow spark_udf)")
    features, rows, gap = spark_features(tables, spec, bundle, job.as_of)
    try:
        job.accept(tables, gap, bundle, list(features.columns))
        writable = store.get()
        spark_scores(features, bundle, model, job.cfg, as_of=job.as_of, scores_dir=run.scores, **finish)
        check_scores_visible(run.scores, rows)
    finally:
        features.unpersist()
    job.timed("features_and_score", t0)
    job.tick("score", rows, rows)
    t0 = time.perf_counter()
    job.step(f"writing {rows:,} scores to the store in one transaction")
    batch = writable.write_chunks(
        with_out(read_chunks(run.scores, job.cfg.predict.chunk_rows), out_file, job),
        as_of=job.as_of,
        on_chunk=lambda n: job.tick("write", n, rows),
        **finish,
    )
    job.timings["write"] = round(time.perf_counter() - t0 - job.timings.get("out", 0.0), 3)
    return batch, tables.reports


def check_scores_visible(scores_dir: Path, rows: int) -> None:
    """Refuse (before the store is written) when the driver does not see every score Spark wrote: on a cluster whose
    default file system is not the driver's disk (HDFS, DBFS), a plain run-folder path is written there."""
    import pyarrow.parquet as pq

    seen = sum(pq.ParquetFile(str(f)).metadata.num_rows for f in scores_dir.glob("*.parquet"))
    if seen != rows:
        raise ConfigError(
            f"Spark wrote {rows:,} scores, but the driver sees {seen:,} of them in {scores_dir}. Set predict.work_dir to a "
            "folder that the driver and every executor see at the same path (a Unity Catalog volume on Databricks, a shared "
            "mount elsewhere). Nothing was written to the store."
        )


def spark_features(tables: ValidatedTables, spec: FeatureSpec, bundle: ScoringBundle, as_of: dt.date):
    """The feature frame on Spark (cached; the caller unpersists it), its rows and the days from the latest event
    to as_of (:data:`GAP_DAYS_SQL`). Nothing of the base is collected to the driver."""
    import pyspark.sql.functions as F

    con = tables.con
    expr = build_features(tables.transactions, tables.interactions, tables.customers, as_of=as_of, spec=spec)
    check_frame_columns(bundle, list(expr.columns))
    features = con._session.sql(str(con.compile(expr))).select(*bundle.feature_columns).cache()
    stats = features.agg(F.count(F.lit(1)).alias("rows"), F.expr(GAP_DAYS_SQL).alias("gap")).collect()[0]
    rows, gap = int(stats["rows"]), stats["gap"]
    return features, rows, (int(gap) if rows and gap is not None else None)


def spark_scores(
    features,
    bundle: ScoringBundle,
    model: str,
    cfg: Config,
    *,
    as_of: dt.date,
    model_name: str,
    model_version: str,
    scored_at: dt.datetime,
    scores_dir: Path,
) -> None:
    """Score the feature frame with mlflow.pyfunc.spark_udf; Spark writes the scores as Parquet part files."""
    import pyspark.sql.functions as F

    from tiering.registry import spark_scoring_udf

    spark = features.sparkSession
    uri = f"models:/{model_name}/{model_version}" if model_version else model  # the version loaded, not a moving alias
    udf = spark_scoring_udf(spark, uri, cfg.tracking, spark_result_type())
    cols = bundle.feature_columns
    scored = features.select(udf(F.struct(*[F.col(c) for c in cols])).alias("s")).select("s.*")
    scored = (
        scored.withColumn("as_of", F.to_date(F.lit(as_of.isoformat())))
        .withColumn("model_name", F.lit(model_name))
        .withColumn("model_version", F.lit(str(model_version)))
        .withColumn("scored_at", F.lit(pd.Timestamp(scored_at).to_pydatetime()).cast("timestamp_ntz"))
        .select(*SCORES_COLUMNS)
        .orderBy("customer_id")
    )
    scored.write.mode("overwrite").parquet(str(scores_dir))


def spark_result_type() -> str:
    """The UDF's struct: the scores frame less the columns added afterwards (as_of, model, scored_at)."""
    kinds = {c: "double" for c in FLOAT} | {c: "long" for c in INT} | {c: "boolean" for c in BOOL}
    skip = ("as_of", "model_name", "model_version", "scored_at")
    return ", ".join(f"{c} {kinds.get(c, 'string')}" for c in SCORES_COLUMNS if c not in skip)
