"""data.timezone: naive timestamps are read in it, aware ones converted to it, and as_of days follow it.

The same purchases, localised to UTC or to Asia/Shanghai, give the same features once data.timezone
says which zone they were recorded in; a naive file read with Asia/Shanghai equals the aware one.
"""

import datetime as dt

import pandas as pd
import pytest

from tiering.config import Config, ConfigError, load_config
from tiering.features import FeatureSpec, build_features
from tiering.validation import load_tables

AS_OF = dt.date(2024, 3, 31)
# wall-clock times chosen around midnight so that reading them in another zone moves days and the as_of cut
WALL = pd.to_datetime([
    "2024-01-01 00:30", "2024-01-20 23:45", "2024-02-10 07:59", "2024-03-31 23:30", "2024-04-01 00:10",
    "2024-01-05 12:00", "2024-03-01 00:05", "2024-03-31 08:00",
])


def _purchases(stamps) -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": ["a", "a", "a", "a", "a", "b", "b", "b"],
        "order_id": [f"o{i}" for i in range(8)],
        "ordered_at": stamps,
        "amount": [10.0, 20.0, 15.0, 30.0, 99.0, 5.0, 7.0, 9.0],
    })


def _features(tmp_path, name: str, df: pd.DataFrame, zone: str) -> pd.DataFrame:
    path = tmp_path / f"{name}.parquet"
    df.to_parquet(path)
    cfg = Config().with_sources(transactions=path)
    cfg.data.timezone = zone
    cfg.validation.quarantine_dir = str(tmp_path / f"q_{name}")
    tables = load_tables(cfg, as_of=AS_OF)
    feats = build_features(tables.transactions, as_of=AS_OF, spec=FeatureSpec()).to_pandas()
    return feats.sort_values("customer_id").reset_index(drop=True)


def test_same_purchases_in_two_zones_give_the_same_features(tmp_path):
    utc = _features(tmp_path, "utc", _purchases(WALL.tz_localize("UTC")), "UTC")
    shanghai = _features(tmp_path, "sh", _purchases(WALL.tz_localize("Asia/Shanghai")), "Asia/Shanghai")
    pd.testing.assert_frame_equal(utc, shanghai)
    # the 2024-03-31 23:30 purchase is in, the 2024-04-01 00:10 one is not: the as_of day is the zone's day
    assert utc.set_index("customer_id").loc["a", "frequency"] == 3  # repeat days before as_of: 4 days, first one excluded


def test_aware_timestamps_read_in_the_wrong_zone_differ(tmp_path):
    # the guard of the test above: without the declaration the shanghai file is read as UTC and days move
    utc = _features(tmp_path, "utc", _purchases(WALL.tz_localize("UTC")), "UTC")
    undeclared = _features(tmp_path, "sh", _purchases(WALL.tz_localize("Asia/Shanghai")), "UTC")
    assert not utc.equals(undeclared)


def test_naive_file_read_in_shanghai_equals_the_aware_one(tmp_path):
    aware = _features(tmp_path, "aware", _purchases(WALL.tz_localize("Asia/Shanghai")), "Asia/Shanghai")
    naive = _features(tmp_path, "naive", _purchases(WALL), "Asia/Shanghai")
    pd.testing.assert_frame_equal(aware, naive)


def test_text_with_mixed_offsets_is_converted_value_by_value(tmp_path):
    # one instant written three ways, plus naive text (read as Shanghai wall-clock time)
    texts = ["2024-03-31T15:30:00Z", "2024-03-31 23:30:00+08:00", "2024-03-31T10:30:00-05:00", "2024-03-31 23:30:00"]
    df = pd.DataFrame({"customer_id": ["a", "b", "c", "d"], "order_id": ["1", "2", "3", "4"], "ordered_at": texts,
                       "amount": ["1", "2", "3", "4"]})
    path = tmp_path / "tx.csv"
    df.to_csv(path, index=False)
    cfg = Config().with_sources(transactions=path)
    cfg.data.timezone = "Asia/Shanghai"
    tables = load_tables(cfg, as_of=AS_OF, write_quarantine=False)
    got = tables.transactions.to_pandas()["ordered_at"]
    assert set(got) == {pd.Timestamp("2024-03-31 23:30:00")}
    assert tables.reports[0].rows_valid == 4  # all on the as_of day in Shanghai; in UTC text +08:00 would be too


def test_timezone_must_be_an_iana_name(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data:\n  timezone: China/Beijing-ish\n")
    with pytest.raises(ConfigError, match=r"data\.timezone: Value error, unknown time zone 'China/Beijing-ish'; use an IANA name"):
        load_config(p)
