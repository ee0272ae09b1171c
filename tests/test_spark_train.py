"""`tiering train --engine spark`: validation and the stratified sample on Spark (local[2]), the sample's rows
collected into DuckDB (tiering._spark.collect_to_duckdb), the fit as on DuckDB.

One simulated base of 1,200 customers, a sample of 400 (seed 0): the Spark-trained version (through the command
line) against the DuckDB-trained one (the same command, --engine duckdb), both registered in one MLflow store."""

import datetime as dt
import json
import math
import subprocess
import sys
from types import SimpleNamespace

import pandas as pd
import pytest

from tiering.config import Config, TrackingConfig
from tiering.datasets import simulate

pytestmark = pytest.mark.spark

START, END, AS_OF = dt.date(2024, 1, 1), dt.date(2025, 12, 31), dt.date(2025, 9, 30)
N, SAMPLE = 1200, 400
METRIC_RTOL = 1e-9  # the same rows fitted the same way; only the order of float sums may differ
TIER_SHARE_MARGIN = 1 / N  # each tier's share of the whole base: at most one customer on the other side of a cut


@pytest.fixture(scope="module")
def base(tmp_path_factory, spark_engine):
    """(root, cfg with the sample set, the --set options that give the CLI the same config)."""
    root = tmp_path_factory.mktemp("spark_train")
    simulate(N, START, END, seed=7).write(root / "data")
    cfg = Config().with_source_dir(root / "data")
    settings = {
        "validation.quarantine_dir": str(root / "quarantine"),
        "model.horizon_days": 90,
        "model.threads": 1,
        "model.training_origins": 1,
        "model.clv_model": "hybrid",
        "model.train_sample_customers": SAMPLE,
        "tracking.uri": f"sqlite:///{root}/mlflow.db",
        "tracking.artifact_location": str(root / "artifacts"),
    }
    cfg.validation.quarantine_dir = settings["validation.quarantine_dir"]
    cfg.model.horizon_days, cfg.model.threads, cfg.model.training_origins, cfg.model.clv_model = 90, 1, 1, "hybrid"
    cfg.model.train_sample_customers = SAMPLE
    cfg.tracking = TrackingConfig(uri=settings["tracking.uri"], artifact_location=settings["tracking.artifact_location"])
    sets = [a for k, v in settings.items() for a in ("--set", f"{k}={v}")]
    return root, cfg, sets


@pytest.fixture(scope="module")
def trained(base):
    """`tiering train --engine duckdb --json` and `tiering train --engine spark --json` on the same data and config,
    each a fresh process (Spark's with its own JVM)."""
    root, _, sets = base
    data = [f"--{t}={root}/data/{t}.parquet" for t in ("transactions", "interactions", "customers")]
    out = {}
    for engine in ("duckdb", "spark"):
        r = subprocess.run([sys.executable, "-m", "tiering", "train", "--as-of", str(AS_OF), "--engine", engine, *sets, *data, "--json"],
                           cwd=root, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr[-3000:]
        out[engine] = json.loads(r.stdout)
        collected = "collecting the 400 sampled customers' rows from Spark into DuckDB" in r.stderr
        assert collected == (engine == "spark"), r.stderr[-3000:]
    return out["duckdb"], out["spark"]


def test_spark_bundle_has_the_duckdb_metrics(trained):
    duck, spark = trained
    assert spark["version"] != duck["version"] and set(spark["metrics"]) == set(duck["metrics"])
    for key, value in duck["metrics"].items():
        got = spark["metrics"][key]
        same = (value is None or math.isnan(value)) and (got is None or math.isnan(got))
        assert same or got == pytest.approx(value, rel=METRIC_RTOL, abs=1e-12), key
    assert spark["metrics"]["train_sample_customers"] == SAMPLE and spark["fit_seconds"]["collect_sample"] > 0
    assert "collect_sample" not in duck["fit_seconds"]
    assert spark["notes"][0] == duck["notes"][0]  # the sample's description: every stratum's count, drawn and base


def test_same_sample_and_the_same_tiers_on_the_whole_base(base, trained):
    import mlflow

    from tiering.fitting import feature_spec, features_at
    from tiering.registry import load_bundle
    from tiering.tracking import configure
    from tiering.validation import load_tables

    _, cfg, _ = base
    duck, spark = trained
    configure(cfg.tracking)
    tags = [mlflow.get_run(run["run_id"]).data.tags for run in (duck, spark)]
    assert tags[0]["data_hash"] == tags[1]["data_hash"]  # the fitted rows' fingerprint: the same customers, every row
    whole = cfg.model_copy(update={"model": cfg.model.model_copy(update={"train_sample_customers": None})})
    tables = load_tables(whole, as_of=AS_OF)
    frame = features_at(tables, AS_OF, feature_spec(whole))
    bundles = [load_bundle(str(version), cfg.tracking)[0] for version in (duck["version"], spark["version"])]
    assert type(bundles[0]) is type(bundles[1]) and bundles[0].feature_columns == bundles[1].feature_columns
    scores = [b.predict(frame[b.feature_columns]) for b in bundles]
    shares = pd.concat([s["tier"].value_counts(normalize=True) for s in scores], axis=1).fillna(0)
    assert len(shares) >= 3 and (shares.iloc[:, 0] - shares.iloc[:, 1]).abs().max() <= TIER_SHARE_MARGIN, shares
    assert scores[1]["p_purchase"].to_numpy() == pytest.approx(scores[0]["p_purchase"].to_numpy(), rel=1e-6, abs=1e-9)


def test_collected_sample_is_the_duckdb_sample_row_for_row(base):
    """collect_to_duckdb: the Spark sample's rows in DuckDB, the same rows and column types as DuckDB's own draw."""
    from tiering._spark import _to_arrow, collect_to_duckdb
    from tiering.sampling import sample_customers
    from tiering.validation import load_tables

    _, cfg, _ = base
    duck = sample_customers(load_tables(cfg, as_of=AS_OF), SAMPLE, seed=0, as_of=AS_OF)
    on_spark = cfg.model_copy(update={"features": cfg.features.model_copy(update={"engine": "spark"})})
    spark = sample_customers(load_tables(on_spark, as_of=AS_OF), SAMPLE, seed=0, as_of=AS_OF)
    collected = collect_to_duckdb(spark.tables)
    assert collected.con.name == "duckdb" and collected.reports == spark.tables.reports
    for name, key in (("transactions", ["customer_id", "order_id"]), ("interactions", ["customer_id", "occurred_at", "event_type"]),
                      ("customers", ["customer_id"])):
        got, want = getattr(collected, name), getattr(duck.tables, name)
        assert got.schema() == want.schema(), name
        pd.testing.assert_frame_equal(got.to_pandas().sort_values(key, ignore_index=True),
                                      want.to_pandas().sort_values(key, ignore_index=True), check_exact=False, rtol=1e-12)
    # pyspark 3.5 has no DataFrame.toArrow: the batches it collects make the same table
    frame = spark.tables.con._session.sql(str(spark.tables.con.compile(spark.tables.transactions)))
    old_pyspark = SimpleNamespace(_collect_as_arrow=frame._collect_as_arrow, schema=frame.schema)
    every = [(c, "ascending") for c in frame.columns]
    assert _to_arrow(old_pyspark).sort_by(every).equals(frame.toArrow().sort_by(every))
