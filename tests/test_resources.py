"""An engine out of memory or disk is named, with the setting to change, and exits 4 (not "a bug", exit 1)."""

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tiering.datasets import simulate
from tiering.exceptions import ResourceError, StoreError
from tiering.io import resource_error

ROOT = Path(__file__).resolve().parents[1]
FULL = Path("/dev/full")  # Linux: every write fails with ENOSPC, as on a full disk


def test_duckdb_out_of_memory_on_the_command_line_names_the_limit_and_exits_4(tmp_path):
    data = simulate(2000, dt.date(2024, 1, 1), dt.date(2025, 6, 30), seed=1)
    for name in ("transactions", "interactions", "customers"):
        getattr(data, name).to_parquet(tmp_path / f"{name}.parquet", index=False)
    args = ["features", "--as-of", "2025-06-30", "--out", str(tmp_path / "f.parquet"), "--json"]
    args += [f"--{n}={tmp_path / f'{n}.parquet'}" for n in ("transactions", "interactions", "customers")]
    r = subprocess.run(
        [sys.executable, "-m", "tiering", *args, "--set", "features.duckdb_memory_limit=1MB"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 4, r.stderr
    payload = json.loads(r.stdout)
    assert payload["kind"] == "ResourceError" and payload["exit_code"] == 4
    assert payload["error"].startswith("DuckDB ran out of memory under its limit (could not allocate block")
    assert "features.duckdb_memory_limit" in payload["error"] and "features.bucket_rows" in payload["error"]
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    assert not (tmp_path / "f.parquet").exists()


@pytest.mark.skipif(not FULL.exists(), reason="needs Linux's /dev/full")
def test_a_full_disk_under_duckdb_names_the_file_and_where_runs_write():
    with pytest.raises(duckdb.IOException) as raised:
        duckdb.sql(f"COPY (SELECT range AS x FROM range(100000)) TO '{FULL}' (FORMAT parquet)")
    err = resource_error(raised.value)
    assert isinstance(err, ResourceError)
    message = str(err)
    assert message.startswith(f"The disk is full writing {FULL}, ") and " free there now" in message
    assert "TMPDIR" in message and "predict.work_dir" in message


@pytest.mark.skipif(not FULL.exists(), reason="needs Linux's /dev/full")
def test_a_full_disk_in_python_is_found_through_the_exception_chain():
    def write():
        with open(FULL, "w") as f:
            f.write("x" * 100)

    with pytest.raises(RuntimeError) as raised:
        try:
            write()
        except OSError as e:
            raise RuntimeError("writing the scores file failed") from e
    err = resource_error(raised.value)
    assert isinstance(err, ResourceError) and str(err).startswith("The disk is full.")


def test_other_errors_are_not_resource_errors():
    assert resource_error(ValueError("column 'amount' holds text")) is None
    try:  # tiering's own message for a full disk (predict's --out: the batch rolled back) is kept
        try:
            raise OSError(28, "No space left on device")
        except OSError as e:
            raise StoreError("Cannot write --out 'x.parquet': No space left on device (ENOSPC).") from e
    except StoreError as e:
        assert resource_error(e) is None
    assert resource_error(duckdb.BinderException("Referenced column x not found")) is None
    assert resource_error(PermissionError(13, "Permission denied", "/root/x")) is None


def test_spark_out_of_memory_names_the_driver_memory():
    py4j = "An error occurred while calling o123.collectToPython.\n: java.lang.OutOfMemoryError: Java heap space"
    err = resource_error(RuntimeError(py4j))
    assert isinstance(err, ResourceError)
    assert "Java heap space" in str(err) and "--driver-memory" in str(err) and "model.train_sample_customers" in str(err)
    # Spark's own, as at 1M customers on a 1 GiB local driver (py4j's text of it)
    py4j = (
        "An error occurred while calling o84.collectToPython.\n: org.apache.spark.SparkException: Job aborted due to stage "
        "failure: ... org.apache.spark.memory.SparkOutOfMemoryError: No enough memory for aggregation\n\tat ..."
    )
    err = resource_error(RuntimeError(py4j))
    assert isinstance(err, ResourceError)
    assert str(err).startswith("Spark ran out of memory (No enough memory for aggregation")


def test_exit_status_4_is_documented():
    readme = (ROOT / "README.md").read_text()
    assert "4 out of memory or disk" in readme
    env = {**os.environ, "COLUMNS": "200"}
    r = subprocess.run([sys.executable, "-m", "tiering", "--help"], capture_output=True, text=True, timeout=120, env=env)
    assert "4 out of memory or disk" in " ".join(r.stdout.split())


def test_the_python_api_names_an_engine_out_of_memory_and_keeps_the_engines_error_as_its_cause():
    import inspect

    import tiering as tg

    data = simulate(2000, dt.date(2024, 1, 1), dt.date(2025, 6, 30), seed=1)
    with pytest.raises(ResourceError) as raised:
        tg.features(data.transactions, data.interactions, data.customers, as_of="2025-06-30", features__duckdb_memory_limit="1MB")
    assert str(raised.value).startswith("DuckDB ran out of memory under its limit (could not allocate block")
    assert "features.duckdb_memory_limit" in str(raised.value)
    assert type(raised.value.__cause__).__name__ == "OutOfMemoryException"  # the engine's own, for a traceback
    assert isinstance(raised.value, RuntimeError)  # code that caught the engine's RuntimeError-like errors still does
    assert "as_of" in inspect.signature(tg.features).parameters  # the wrapper keeps the documented signature
    with pytest.raises(tg.ConfigError):  # other errors pass through as they were
        tg.features(data.transactions, as_of="2025-13-01")
