"""Bad and degenerate input to `tiering train`: per case the exit status and the message naming the problem.

Degenerate but valid bases (10 customers, one day of history, no repeat buyers, no interactions, a
constant spend, a horizon longer than the history) train, register a version and say which simpler
model stood in (the run's notes); invalid flags and an as_of before the data exit 2 with a message.
MLflow goes to the default SQLite store under the working directory (built-in defaults, no config).
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

START = dt.date(2024, 1, 1)
AS_OF = "2024-12-31"


def _tx(cust, days, amounts, start=START) -> pd.DataFrame:
    cust = np.asarray(cust)
    return pd.DataFrame({
        "customer_id": [f"c{c:03d}" for c in cust],
        "order_id": [f"o{i:05d}" for i in range(len(cust))],
        "ordered_at": (pd.Timestamp(start) + pd.to_timedelta(np.asarray(days, float), unit="D")).astype("datetime64[us]"),
        "amount": np.asarray(amounts, float),
    })


def _bases() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(11)
    return {
        "ten_customers": _tx(rng.integers(0, 10, 60), rng.uniform(0, 360, 60), rng.gamma(2, 20, 60)),
        "one_day": _tx(np.arange(40), rng.uniform(0, 0.9, 40), rng.gamma(2, 20, 40), start=dt.date(2024, 12, 31)),
        "no_repeat": _tx(np.arange(150), rng.uniform(0, 360, 150), rng.gamma(2, 20, 150)),
        "base": _tx(rng.integers(0, 120, 600), rng.uniform(0, 360, 600), rng.gamma(2, 20, 600)),
        "constant_spend": _tx(rng.integers(0, 120, 600), rng.uniform(0, 360, 600), np.full(600, 25.0)),
    }


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One working directory for the module: its MLflow store is created once; each base is a Parquet file."""
    root = tmp_path_factory.mktemp("train-corpus")
    for name, frame in _bases().items():
        frame.to_parquet(root / f"{name}.parquet", index=False)
    return root


def _train(cli, workdir, base: str, *extra: str):
    res = cli("train", "--as-of", AS_OF, "--transactions", str(workdir / f"{base}.parquet"), "--json", *extra, cwd=workdir)
    return res, (json.loads(res.stdout) if res.returncode == 0 else None)


@pytest.mark.parametrize(("base", "horizon", "note"), [
    ("ten_customers", "90", "BetaGeoModel not fitted (only 10 buyers (the 4-parameter model needs 20))"),
    ("one_day", "90", "no customer had purchased by the test origin 2024-10-02"),
    ("no_repeat", "90", "no customer has a repeat purchase"),
    ("no_repeat", "90", "Gamma-Gamma not fitted"),
    ("base", "400", "no customer had purchased by the test origin 2023-11-27 (as_of - 400 days)"),
])
def test_degenerate_base_trains_and_names_its_fallback(cli, workdir, base, horizon, note):
    res, out = _train(cli, workdir, base, "--horizon-days", horizon)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert any(note in n for n in out["notes"]), out["notes"]
    assert out["metrics"]["fallback_count"] >= 1 and out["version"]


def test_no_interactions_and_constant_spend_train_cleanly(cli, workdir):
    res, out = _train(cli, workdir, "constant_spend", "--horizon-days", "90")  # no --interactions, one order value
    assert res.returncode == 0, res.stderr
    m = out["metrics"]
    assert np.isfinite(m["churn_btyd_roc_auc"]) and np.isfinite(m["clv_btyd_normalized_gini"]) and out["version"]
    assert len(out["notes"]) >= m["fallback_count"]


@pytest.mark.parametrize(("args", "needle"), [
    (("--horizon-days", "-5"), "Invalid value for '--horizon-days'"),
    (("--horizon-days", "0"), "Invalid value for '--horizon-days'"),
    (("--horizon-days", "ninety"), "'--horizon-days'"),
])
def test_bad_horizon_exits_2_naming_the_flag(cli, workdir, args, needle):
    res = cli("train", "--as-of", AS_OF, "--transactions", str(workdir / "base.parquet"), *args, cwd=workdir)
    assert res.returncode == 2 and needle in res.stderr and "Traceback" not in res.stderr
    assert args[1] in res.stderr  # the value found


def test_as_of_before_the_data_exits_2_with_the_first_date(cli, workdir):
    res = cli("train", "--as-of", "2023-06-30", "--transactions", str(workdir / "base.parquet"), cwd=workdir)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "2023-06-30" in res.stderr and "on or after 2024-01-0" in res.stderr


def test_bad_as_of_date_exits_2(cli, workdir):
    res = cli("train", "--as-of", "2024-13-01", "--transactions", str(workdir / "base.parquet"), cwd=workdir)
    assert res.returncode == 2 and "--as-of" in res.stderr and "2024-13-01" in res.stderr


def test_missing_transactions_file_exits_2_naming_it(cli, workdir):
    res = cli("train", "--as-of", AS_OF, "--transactions", str(workdir / "nowhere.parquet"), cwd=workdir)
    assert res.returncode == 2 and "nowhere.parquet" in res.stderr and "Traceback" not in res.stderr
