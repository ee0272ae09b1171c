"""The command line contract: clear messages and exit status 2 on bad input, no traceback."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def tiering(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "tiering", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_missing_column_is_one_clear_message(tmp_path):
    path = tmp_path / "tx.csv"
    pd.DataFrame({"cust": ["a"], "ts": ["2024-01-01"], "amt": [1.0], "order_id": ["o"]}).to_csv(path, index=False)
    r = tiering("validate", "--transactions", str(path), cwd=tmp_path)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "error: The transactions table is missing column 'customer_id'. Got columns ['cust', 'ts', 'amt', 'order_id']" in r.stderr


def test_text_in_amount_is_one_clear_message(tmp_path):
    path = tmp_path / "tx.csv"
    pd.DataFrame({"customer_id": ["a", "b"], "order_id": ["o1", "o2"], "ordered_at": ["2024-01-01", "2024-01-02"],
                  "amount": ["twelve", "n/a"]}).to_csv(path, index=False)
    r = tiering("validate", "--transactions", str(path), cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "column 'amount' holds text that does not parse as numbers; e.g. ['twelve', 'n/a']" in r.stderr


def test_bad_date_and_missing_config(tmp_path):
    r = tiering("features", "--as-of", "2024-13-01", cwd=tmp_path)
    assert r.returncode == 2 and "error: --as-of must be a date as YYYY-MM-DD; got '2024-13-01'." in r.stderr
    r = tiering("validate", "--config", "nope.yaml", cwd=tmp_path)
    assert r.returncode == 2 and "error: Config file 'nope.yaml' does not exist" in r.stderr


def test_validate_json_counts_and_quarantine(tmp_path):
    path = tmp_path / "tx.parquet"
    pd.DataFrame({"customer_id": ["a", None, "b"], "order_id": ["o1", "o2", "o3"],
                  "ordered_at": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]), "amount": [1.0, 2.0, -3.0]}).to_parquet(path)
    r = tiering("validate", "--transactions", str(path), "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (report,) = json.loads(r.stdout)["tables"]
    assert report["quarantined"] == {"missing_customer_id": 1} and report["rows_valid"] == 2
    assert (tmp_path / "outputs/quarantine/transactions.parquet").exists()
