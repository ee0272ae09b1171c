"""Bad-input corpus for `tiering predict`: wrong dates, models, options, outputs and sources.

One small model is trained and promoted once for the module (1,000 simulated customers, as in
tests/test_predict.py); each case runs `tiering predict` in its own folder with a config whose scores
store, quarantine and outputs live there. Per case: the exit status, the message naming the flag or
value and the fix, no traceback, and, for a refusal, nothing written (no store, no quarantine, no --out).
A run that goes through reports rows_in = rows_valid + rows_quarantined for every table.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.badinput.conftest import assert_rows_kept
from tiering.datasets import simulate

START, END = dt.date(2024, 1, 1), dt.date(2025, 12, 31)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The simulated sources and an MLflow store with a champion trained at END."""
    from tiering.config import load_config
    from tiering.registry import promote
    from tiering.train import train_and_register

    root = tmp_path_factory.mktemp("predict-corpus")
    simulate(1000, START, END, seed=7).write(root / "data")
    (root / "train.yaml").write_text(yaml.safe_dump(_raw(root, root)))
    cfg = load_config(root / "train.yaml")
    result = train_and_register(cfg, as_of=END)
    promote(result.version, cfg.tracking, force=True)
    return root


def _raw(root: Path, here: Path) -> dict:
    return {
        "data": {t: {"path": str(root / f"data/{t}.parquet")} for t in ("transactions", "interactions", "customers")},
        "validation": {"quarantine_dir": str(here / "quarantine")},
        "tracking": {"uri": f"sqlite:///{root}/mlflow.db", "artifact_location": str(root / "artifacts")},
        "store": {"url": f"sqlite:///{here}/scores.db"},
        "predict": {"chunk_rows": 400},
    }


@pytest.fixture
def predict(trained, cli, tmp_path):
    """`tiering predict --config <this test's config> ARGS` in tmp_path."""
    config = tmp_path / "tiering.yaml"
    config.write_text(yaml.safe_dump(_raw(trained, tmp_path)))
    return lambda *args: cli("predict", "--config", config, *args)


def _refused(res, tmp_path: Path, code: int = 2, keep: tuple[str, ...] = ()) -> str:
    """The message of a refused run, checked: exit status, no traceback, nothing written."""
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr and "error: " in res.stderr, res.stderr
    inputs = ("tiering.yaml", "tx.csv", "tx.parquet", "a-file", *keep)
    written = sorted(p.name for p in tmp_path.iterdir() if p.name not in inputs)
    assert written == [], written  # no scores.db, no quarantine, no --out
    return res.stderr


# --- dates --------------------------------------------------------------------------------------------
def test_as_of_before_the_data(predict, tmp_path):
    msg = _refused(predict("--as-of", "2023-06-01"), tmp_path)
    assert "No valid transaction" in msg and "at or before as_of 2023-06-01" in msg
    assert "(the first on 2024-01-22). Choose an as_of on or after 2024-01-22. Nothing was written." in msg


def test_as_of_too_far_after_the_data(predict, tmp_path):
    msg = _refused(predict("--as-of", "2026-02-15"), tmp_path)
    assert "--as-of 2026-02-15 is 46 days after the latest transaction, interaction or join in the sources (2025-12-31)" in msg
    assert "raise predict.max_days_after_data (now 7)" in msg


def test_as_of_not_a_date(predict, tmp_path):
    msg = _refused(predict("--as-of", "2025-13-01"), tmp_path)
    assert "--as-of must be a date as YYYY-MM-DD; got '2025-13-01'" in msg


def test_as_of_missing(predict, tmp_path):
    msg = _refused(predict(), tmp_path)
    assert "--as-of" in msg


# --- model ------------------------------------------------------------------------------------------
def test_unknown_model_version(predict, tmp_path):
    msg = _refused(predict("--as-of", str(END), "--model", "99"), tmp_path)
    assert "Cannot load model 'models:/customer-tiering/99'" in msg and "tiering train" in msg


def test_unknown_model_alias(predict, tmp_path):
    msg = _refused(predict("--as-of", str(END), "--model", "nosuchalias"), tmp_path)
    assert "Cannot load model 'models:/customer-tiering@nosuchalias'" in msg


# --- options ----------------------------------------------------------------------------------------
def test_unknown_engine(predict, tmp_path):
    msg = _refused(predict("--as-of", str(END), "--engine", "pandas"), tmp_path)
    assert "--engine must be duckdb or spark; got 'pandas'." in msg


@pytest.mark.parametrize("rows", ["0", "-5"])
def test_chunk_rows_not_positive(predict, tmp_path, rows):
    msg = _refused(predict("--as-of", str(END), "--chunk-rows", rows), tmp_path)
    assert "--chunk-rows" in msg and rows in msg


def test_chunk_rows_not_a_number(predict, tmp_path):
    msg = _refused(predict("--as-of", str(END), "--chunk-rows", "many"), tmp_path)
    assert "--chunk-rows" in msg and "many" in msg


# --- --out ------------------------------------------------------------------------------------------
def test_out_with_an_unknown_extension(predict, tmp_path):
    msg = _refused(predict("--as-of", str(END), "--out", "scores.xlsx"), tmp_path)
    assert "--out must end in .parquet or .csv; got 'scores.xlsx'." in msg


def test_out_under_a_file(predict, tmp_path):
    (tmp_path / "a-file").write_text("x")
    msg = _refused(predict("--as-of", str(END), "--out", "a-file/scores.csv"), tmp_path)
    assert "Cannot write --out 'a-file/scores.csv'" in msg and "a-file' is a file, not a folder" in msg


def test_out_in_a_read_only_folder(predict, tmp_path):
    import os

    if os.geteuid() == 0:
        ro = Path("/proc/tiering-out")  # a folder root cannot create: /proc takes no new entries
    else:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
    msg = _refused(predict("--as-of", str(END), "--out", str(ro / "scores.parquet")), tmp_path, keep=("ro",))
    assert f"Cannot write --out '{ro / 'scores.parquet'}'" in msg and "is not writable (" in msg
    assert "Nothing was written. Point --out at a file in a writable folder." in msg


def test_out_is_a_folder(predict, tmp_path):
    (tmp_path / "dir.csv").mkdir()
    msg = _refused(predict("--as-of", str(END), "--out", "dir.csv"), tmp_path, keep=("dir.csv",))
    assert "--out 'dir.csv' is a folder; give a file name ending in .parquet or .csv." in msg


# --- sources ----------------------------------------------------------------------------------------
def test_missing_transactions_file(predict, tmp_path):
    msg = _refused(predict("--as-of", str(END), "--transactions", str(tmp_path / "nope.parquet")), tmp_path)
    assert "nope.parquet" in msg and "transactions" in msg


def test_header_only_transactions(predict, tmp_path):
    (tmp_path / "tx.csv").write_text("customer_id,order_id,ordered_at,amount\n")
    msg = _refused(predict("--as-of", str(END), "--transactions", "tx.csv"), tmp_path)
    assert "transactions" in msg and "tx.csv" in msg


def test_transactions_missing_a_column(trained, predict, tmp_path):
    pd.read_parquet(trained / "data/transactions.parquet").drop(columns="amount").to_parquet(tmp_path / "tx.parquet")
    msg = _refused(predict("--as-of", str(END), "--transactions", "tx.parquet"), tmp_path)
    assert "missing column 'amount'" in msg and "data.transactions.columns" in msg


def test_missing_config_file(cli, tmp_path):
    res = cli("predict", "--as-of", str(END), "--config", "nope.yaml")
    assert res.returncode == 2 and "nope.yaml" in res.stderr and "Traceback" not in res.stderr
    assert list(tmp_path.iterdir()) == []


# --- runs that go through ----------------------------------------------------------------------------
def test_a_good_run_keeps_every_row_and_writes_its_outputs(predict, tmp_path):
    res = predict("--as-of", "2025-12-01", "--out", "out/scores.csv", "--json")
    assert res.returncode == 0, res.stderr
    payload = json.loads(res.stdout)
    for report in payload["validation"]:
        assert_rows_kept(report)
    assert payload["validation"][0]["quarantined"].get("after_as_of", 0) > 0
    assert payload["warnings"] == [w for w in payload["warnings"] if "is in-sample" in w] and len(payload["warnings"]) == 1
    assert len(pd.read_csv(tmp_path / "out/scores.csv")) == payload["batch"]["rows"]
    assert (tmp_path / "scores.db").exists() and (tmp_path / "quarantine/transactions.parquet").exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["scores.csv"]  # no staging folder, no .partial


def test_json_error_is_a_json_object(predict, tmp_path):
    res = predict("--as-of", "2026-02-15", "--json")
    assert res.returncode == 2
    payload = json.loads(res.stdout)
    assert "46 days after the latest transaction" in payload["error"]
