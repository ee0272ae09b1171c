"""The spark engine gives the same validation and feature frame as DuckDB on the same input.

One local Spark session for the module (tiering._spark, local[2], SPARK_LOCAL_IP=127.0.0.1);
few builds, small data: simulated customers (Parquet + a CSV, with bad rows) through the CLI, and
a slice of Online Retail II through the committed config mapping and the Python API.
Frames are compared sorted by customer_id: same ids, integer columns exact, floats within 1e-9
relative (1e-9 absolute where a sum cancels to ~0: engines add in different orders).
"""

import datetime as dt
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from typer.testing import CliRunner

from tiering.cli import app
from tiering.config import SourceConfig, load_config
from tiering.datasets import simulate
from tiering.features import FeatureSpec, build_features
from tiering.io import connect, read_source, write_table
from tiering.validation import load_tables

import test_retail_features as rf  # tests/features is on sys.path (pytest's rootdir-less import mode)

pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parents[2]
RETAIL = ROOT / "data" / "online_retail_ii.parquet"
AS_OF = dt.date(2024, 10, 31)


@pytest.fixture(scope="module")
def spark_con(spark_engine):
    """The module's one Spark session, wrapped in Ibis (the CLI's connect('spark') gets the same session).

    Without pyspark or Java the tests skip, or fail when TIERING_REQUIRE_SERVICES=1 (CI).
    """
    return connect("spark")


@pytest.fixture(scope="module")
def sim_files(tmp_path_factory):
    """Simulated customers written as the CLI reads them, with rows validation must set aside."""
    d = tmp_path_factory.mktemp("sim")
    data = simulate(400, dt.date(2023, 7, 1), dt.date(2024, 12, 31), seed=11)  # rows after AS_OF too; a year before it
    tx = data.transactions
    bad = tx.iloc[:3].copy()
    bad.loc[bad.index[0], "customer_id"] = None  # missing id
    tx = pd.concat([tx, bad.iloc[:1], tx.iloc[5:7]], ignore_index=True)  # + two exact duplicate lines
    tx.to_parquet(d / "transactions.parquet", index=False)
    data.interactions.to_csv(d / "interactions.csv", index=False)  # CSV: each engine infers the types
    data.customers.to_parquet(d / "customers.parquet", index=False)
    return d


def assert_same_frame(a: pd.DataFrame, b: pd.DataFrame) -> None:
    a = a.sort_values("customer_id").reset_index(drop=True)
    b = b.sort_values("customer_id").reset_index(drop=True)
    assert list(a.columns) == list(b.columns)
    assert a["customer_id"].tolist() == b["customer_id"].tolist()
    for c in a.columns:
        if c == "customer_id":
            continue
        if c == "as_of":
            assert (pd.to_datetime(a[c]) == pd.to_datetime(b[c])).all()
            continue
        assert a[c].dtype == b[c].dtype, (c, a[c].dtype, b[c].dtype)
        if a[c].dtype.kind in "iu":
            np.testing.assert_array_equal(a[c].to_numpy(), b[c].to_numpy(), err_msg=c)
        else:
            np.testing.assert_allclose(a[c].to_numpy(float), b[c].to_numpy(float), rtol=1e-9, atol=1e-9, err_msg=c)


def test_cli_features_spark_equals_duckdb(spark_con, sim_files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/base.yaml here: built-in defaults, outputs/ under tmp_path
    runner = CliRunner()
    frames, quarantines, payloads, reports = {}, {}, {}, {}
    for engine in ("duckdb", "spark"):
        out = tmp_path / f"features_{engine}.parquet"
        r = runner.invoke(app, [
            "features", "--as-of", AS_OF.isoformat(), "--out", str(out), "--engine", engine, "--json",
            "--transactions", str(sim_files / "transactions.parquet"),
            "--interactions", str(sim_files / "interactions.csv"),
            "--customers", str(sim_files / "customers.parquet"),
        ])
        assert r.exit_code == 0, r.output
        payloads[engine] = json.loads(r.stdout)
        assert out.is_file()  # one file, not a Spark folder of part files
        frames[engine] = pd.read_parquet(out)
        q = pd.read_parquet(tmp_path / "outputs" / "quarantine" / "transactions.parquet")
        quarantines[engine] = q["reason"].value_counts().to_dict()
        r = runner.invoke(app, [  # `tiering validate --engine` on the same sources
            "validate", "--as-of", AS_OF.isoformat(), "--engine", engine, "--json",
            "--transactions", str(sim_files / "transactions.parquet"),
            "--interactions", str(sim_files / "interactions.csv"),
            "--customers", str(sim_files / "customers.parquet"),
        ])
        assert r.exit_code == 0, r.output
        reports[engine] = {t["table"]: t["quarantined"] for t in json.loads(r.stdout)["tables"]}
    assert quarantines["duckdb"] == quarantines["spark"]
    assert reports["duckdb"] == reports["spark"] and reports["spark"]["transactions"] == quarantines["spark"]
    assert quarantines["spark"]["missing_customer_id"] == 1 and quarantines["spark"]["duplicate_line"] == 2
    assert quarantines["spark"]["after_as_of"] > 0
    assert payloads["duckdb"]["customers"] == payloads["spark"]["customers"] == len(frames["spark"]) > 300
    assert list(frames["spark"].columns) == list(FeatureSpec().feature_columns)
    assert frames["spark"]["events_365d"].sum() > 0 and frames["spark"]["has_purchased"].sum() > 0
    assert (frames["spark"][["orders_ly_90d", "orders_ly_180d"]].sum() > 0).all()  # last year's windows hold data
    assert (frames["spark"][["products_per_order", "ipi_cv"]] > 0).any().all() and (frames["spark"].events_trend != 0).any()
    assert not frames["spark"].isna().any().any()
    assert_same_frame(frames["duckdb"], frames["spark"])


@pytest.fixture(scope="module")
def retail_slice(tmp_path_factory):
    """Online Retail II invoice lines of 2010-09-01 .. 2010-11-30 in their source column names."""
    if not RETAIL.exists():
        pytest.skip(f"{RETAIL} not present")
    t = pq.read_table(RETAIL)
    ts = t["InvoiceDate"]
    start, end = (pa.scalar(dt.datetime(2010, m, 1), type=ts.type) for m in (9, 12))
    t = t.filter(pc.and_(pc.greater_equal(ts, start), pc.less(ts, end)))
    path = tmp_path_factory.mktemp("retail") / "retail.parquet"
    pq.write_table(t, path)
    return path


def test_online_retail_slice_through_config_mapping(spark_con, retail_slice, tmp_path):
    """configs/base.yaml's mapping (backticked names, Quantity * Price) validated and featurized on both engines, in weeks."""
    cfg = load_config(ROOT / "configs" / "base.yaml")
    cfg.data.transactions.path = str(retail_slice)
    cfg.validation.quarantine_dir = str(tmp_path / "q")
    as_of = dt.date(2010, 11, 15)
    spec = FeatureSpec(time_unit="W", windows_days=(30, 60))
    frames, reports = {}, {}
    for engine, con in (("duckdb", connect("duckdb")), ("spark", spark_con)):
        tables = load_tables(cfg, as_of=as_of, con=con, write_quarantine=False)
        reports[engine] = [(r.rows_in, r.rows_valid, r.quarantined) for r in tables.reports]
        frames[engine] = build_features(tables.transactions, as_of=as_of, spec=spec).to_pandas()
    assert reports["duckdb"] == reports["spark"]
    ((rows_in, rows_valid, quarantined),) = reports["spark"]
    assert rows_valid < rows_in and {"missing_customer_id", "after_as_of"} <= set(quarantined)
    assert len(frames["spark"]) > 1000 and (frames["spark"]["frequency"] > 0).any()
    assert_same_frame(frames["duckdb"], frames["spark"])


def test_spark_reads_do_not_replace_each_other(spark_con, sim_files, retail_slice, tmp_path):
    """Two reads of the same table name on one session stay two tables (each read gets its own view)."""
    first = read_source(spark_con, SourceConfig(path=str(sim_files / "transactions.parquet")), "transactions")
    second = read_source(spark_con, SourceConfig(path=str(retail_slice)), "transactions")
    assert "Invoice" in second.columns and "Invoice" not in first.columns
    n = write_table(first.select("customer_id", "amount"), tmp_path / "first.csv")
    assert n == pq.ParquetFile(sim_files / "transactions.parquet").metadata.num_rows


def test_known_truth_of_the_retail_features_on_spark(spark_con, tmp_path):
    """Last year's windows, ipi_cv, products_per_order, events_trend and origin_month on test_retail_features'
    hand-made tables: the same known answers on Spark as on DuckDB. Read from Parquet, as the engine reads
    data (handed a pandas frame, Spark read the missing product id as a product of its own)."""
    rf.tx_frame().to_parquet(tmp_path / "tx.parquet", index=False)
    rf.ix_frame().to_parquet(tmp_path / "ix.parquet", index=False)
    tx = spark_con.read_parquet(str(tmp_path / "tx.parquet"))
    ix = spark_con.read_parquet(str(tmp_path / "ix.parquet"))
    rf.check_known_truth(build_features(tx, ix, as_of=rf.AS_OF, spec=rf.SPEC).to_pandas())


def test_spark_sets_aside_the_same_rows_for_the_same_reasons_as_duckdb(spark_con, tmp_path):
    """Validation on Spark caches each stage of the annotation (typed rows, conflicting orders, repeated keys) as it
    first computes it; the rows set aside, their reasons and the good rows are DuckDB's: a missing id, a non-finite
    amount, an order naming two customers, a line repeated three times, a row after as_of."""
    from tiering.schemas import TRANSACTIONS
    from tiering.validation import validate_table

    df = pd.DataFrame(
        {
            "customer_id": ["a", None, "x", "y", "c", "d", "d", "d", "e", "f"],
            "order_id": ["o1", "o2", "o7", "o7", "o4", "o5", "o5", "o5", "o6", "o9"],
            "ordered_at": pd.to_datetime(
                ["2024-01-01 00:00", "2024-01-02 00:00", "2024-01-02 00:00", "2024-01-03 00:00", "2024-01-04 00:00"]
                + ["2024-01-08 10:30"] * 3
                + ["2024-01-09 00:00", "2025-03-01 00:00"]
            ),
            "amount": [10.0, 1.0, 1.5, 2.0, float("inf"), 40.0, 40.0, 40.0, -5.0, 7.0],
        }
    )
    seen = {}
    for name, con in (("duckdb", connect()), ("spark", spark_con)):
        df.to_parquet(tmp_path / "messy.parquet", index=False)
        raw = con.read_parquet(str(tmp_path / "messy.parquet"))
        good, report = validate_table(
            raw, TRANSACTIONS, as_of=dt.date(2024, 12, 31), source="messy", quarantine_dir=tmp_path / name, max_quarantine_share=0.9
        )
        q = pd.read_parquet(tmp_path / name / "transactions.parquet")
        seen[name] = (
            report.quarantined,
            report.rows_valid,
            sorted(zip(q["reason"], q["raw_customer_id"].fillna("<null>"), q["raw_order_id"])),
            sorted(good.to_pandas()["order_id"]),
        )
    assert seen["spark"] == seen["duckdb"]
    assert seen["duckdb"][0] == {
        "duplicate_line": 2, "conflicting_order_customer": 2, "missing_customer_id": 1, "non_finite_amount": 1, "after_as_of": 1
    }
    assert seen["duckdb"][3] == ["o1", "o5", "o6"]


def test_a_local_session_takes_every_core_and_a_heap_sized_from_the_machine(spark_con):
    """The session tiering starts on one machine: local[cores], and the driver's JVM (which runs the executors too)
    started with a quarter of the machine's memory, not Spark's default 1 GiB (the heap validation at 1M customers
    ran out of with its stages in memory)."""
    from tiering._spark import local_driver_memory
    from tiering.io import available_cores

    assert local_driver_memory(4 * 2**30) == "1024m"  # never below Spark's default
    assert local_driver_memory(24 * 2**30) == "6144m"
    assert local_driver_memory(2**40) == f"{31 * 1024}m"  # compressed object pointers stop at 32 GiB
    session = spark_con._session
    conf = session.sparkContext.getConf()
    assert conf.get("spark.master") == f"local[{available_cores()}]"
    assert int(session.conf.get("spark.sql.shuffle.partitions")) == max(8, 2 * available_cores())
    if not os.environ.get("SPARK_DRIVER_MEMORY"):
        assert conf.get("spark.driver.memory") == local_driver_memory()
        heap = session.sparkContext._jvm.java.lang.Runtime.getRuntime().maxMemory()
        assert heap > 0.8 * int(local_driver_memory()[:-1]) * 2**20  # the JVM really started with it


def test_the_driver_memory_a_user_chose_is_left_alone(tmp_path, monkeypatch):
    """SPARK_DRIVER_MEMORY, --driver-memory in PYSPARK_SUBMIT_ARGS or spark.driver.memory in spark-defaults.conf:
    the user's choice, which tiering's automatic size must not override (a --conf from the builder would)."""
    from tiering._spark import _driver_memory_set

    for name in ("SPARK_DRIVER_MEMORY", "PYSPARK_SUBMIT_ARGS", "SPARK_CONF_DIR", "SPARK_HOME"):
        monkeypatch.delenv(name, raising=False)
    assert not _driver_memory_set()
    monkeypatch.setenv("PYSPARK_SUBMIT_ARGS", "--master local[4] pyspark-shell")
    assert not _driver_memory_set()
    monkeypatch.setenv("PYSPARK_SUBMIT_ARGS", "--driver-memory 8g pyspark-shell")
    assert _driver_memory_set()
    monkeypatch.delenv("PYSPARK_SUBMIT_ARGS")
    monkeypatch.setenv("SPARK_DRIVER_MEMORY", "8g")
    assert _driver_memory_set()
    monkeypatch.delenv("SPARK_DRIVER_MEMORY")
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    (tmp_path / "spark-defaults.conf").write_text("spark.driver.maxResultSize 2g\n# spark.driver.memory 4g\n")
    assert not _driver_memory_set()  # another setting, and a comment
    for line in ("spark.driver.memory 4g", "spark.driver.memory=4g", "  spark.driver.memory\t4g"):
        (tmp_path / "spark-defaults.conf").write_text(f"spark.master local[2]\n{line}\n")
        assert _driver_memory_set(), line
