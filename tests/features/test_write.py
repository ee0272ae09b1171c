"""Writing the feature frame to one file: the file's column types are the frame's schema, rows are counted."""

import datetime as dt

import ibis
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tiering.exceptions import ConfigError
from tiering.features import FeatureSpec, build_features
from tiering.io import connect, write_table

AS_OF = dt.date(2024, 5, 31)


def _tables(con):
    tx = pd.DataFrame({
        "customer_id": ["a", "a", "a", "b"],
        "order_id": ["o1", "o1", "o2", "o3"],
        "ordered_at": pd.to_datetime(["2024-05-01", "2024-05-01", "2024-05-20", "2024-04-02"]).astype("datetime64[us]"),
        "amount": [10.0, 5.0, 20.0, -3.0],
        "channel": ["app", "shop", "app", "app"],  # with channels, order counts are summed per channel
    })
    ix = pd.DataFrame({"customer_id": ["a", "c"], "occurred_at": pd.to_datetime(["2024-05-30", "2024-05-02"]).astype("datetime64[us]"),
                       "event_type": ["share", "view"]})
    return con.create_table("tx", tx), con.create_table("ix", ix)


def test_parquet_types_are_the_frame_schema_and_rows_are_counted(tmp_path):
    con = connect("duckdb")
    tx, ix = _tables(con)
    expr = build_features(tx, ix, as_of=AS_OF, spec=FeatureSpec(windows_days=(30, 90)))
    n = write_table(expr, tmp_path / "f.parquet")
    assert n == 3
    # DuckDB sums BIGINT counts to HUGEINT, which Parquet would store as double: every count must stay int64
    written = {f.name: str(f.type).replace("large_", "") for f in pq.read_schema(tmp_path / "f.parquet")}
    expected = {f.name: str(f.type).replace("large_", "") for f in expr.schema().to_pyarrow()}
    assert written == expected
    df = pd.read_parquet(tmp_path / "f.parquet").set_index("customer_id")
    assert df.loc["a", "n_orders"] == 2 and df["n_orders"].dtype == "int64" and df.loc["b", "n_refund_orders"] == 1
    assert write_table(expr, tmp_path / "f.csv") == 3
    assert len(pd.read_csv(tmp_path / "f.csv")) == 3
    assert con.raw_sql("SELECT current_setting('preserve_insertion_order')").fetchone()[0] is True  # restored


def test_a_folder_is_not_an_output_file(tmp_path):
    (tmp_path / "out.parquet").mkdir()
    with pytest.raises(ConfigError, match="is a folder"):
        write_table(ibis.memtable({"customer_id": ["a"]}), tmp_path / "out.parquet")


def test_types_hold_without_optional_inputs_and_columns(tmp_path):
    """Zeros for absent interactions, channels and products are typed like the columns they stand for."""
    con = connect("duckdb")
    tx, _ = _tables(con)
    expr = build_features(tx.drop("channel"), as_of=AS_OF, spec=FeatureSpec(windows_days=(30, 90)))
    write_table(expr, tmp_path / "f.parquet")
    written = {f.name: str(f.type).replace("large_", "") for f in pq.read_schema(tmp_path / "f.parquet")}
    assert written == {f.name: str(f.type).replace("large_", "") for f in expr.schema().to_pyarrow()}
    assert written["engagement_score"] == "double" and written["n_products"] == "int64"


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_cli_features_in_customer_buckets_write_the_same_file(tmp_path, monkeypatch, suffix):
    """A base above features.bucket_rows is built bucket by bucket into one file, equal to the one-pass build."""
    import json

    import yaml
    from typer.testing import CliRunner

    from tiering.cli import app
    from tiering.datasets import simulate

    data = simulate(300, dt.date(2024, 1, 1), dt.date(2024, 6, 30), seed=5)
    data.write(tmp_path / "sim")
    monkeypatch.chdir(tmp_path)
    frames = {}
    for label, bucket_rows in (("whole", 20_000_000), ("buckets", 500)):
        config = tmp_path / f"{label}.yaml"
        config.write_text(yaml.safe_dump({
            "data": {t: {"path": str(tmp_path / "sim" / f"{t}.parquet")} for t in ("transactions", "interactions", "customers")},
            "features": {"bucket_rows": bucket_rows},
        }))
        out = tmp_path / f"{label}{suffix}"
        r = CliRunner().invoke(app, ["features", "--as-of", "2024-06-30", "--out", str(out), "--config", str(config), "--json"])
        assert r.exit_code == 0, r.output
        frames[label] = (pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)).sort_values("customer_id")
        assert json.loads(r.stdout)["customers"] == len(frames[label])
    rows = len(data.transactions) + len(data.interactions)
    assert rows > 5 * 500  # so the second build ran in at least 5 buckets
    assert len(frames["whole"]) > 250
    pd.testing.assert_frame_equal(frames["whole"].reset_index(drop=True), frames["buckets"].reset_index(drop=True),
                                  check_exact=False, rtol=1e-9)
