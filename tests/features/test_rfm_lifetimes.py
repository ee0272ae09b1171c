"""The RFM summary equals lifetimes' summary_data_from_transaction_data (CDNOW, Online Retail II)."""

import datetime as dt
import importlib.resources
from pathlib import Path

import ibis
import numpy as np
import pandas as pd
import pytest
from lifetimes.utils import summary_data_from_transaction_data

from tiering.features import FeatureSpec, bound_to_as_of, build_features, rfm_summary

ROOT = Path(__file__).resolve().parents[2]
RETAIL = ROOT / "data" / "online_retail_ii.parquet"
RFM = ["frequency", "recency", "T", "monetary_value"]


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    path = importlib.resources.files("lifetimes") / "datasets" / "CDNOW_master.txt"
    with importlib.resources.as_file(path) as p:
        raw = pd.read_csv(p, sep=r"\s+", header=0, names=["id", "date", "n_cds", "dollars"], dtype={"id": str, "date": str})
    return pd.DataFrame(
        {
            "customer_id": raw["id"].astype(str),
            "order_id": [f"o{i}" for i in range(len(raw))],
            "ordered_at": pd.to_datetime(raw["date"], format="%Y%m%d"),
            "amount": raw["dollars"].astype("float64"),
        }
    )


@pytest.fixture(scope="module")
def retail() -> pd.DataFrame:
    if not RETAIL.exists():
        pytest.skip(f"{RETAIL} not present")
    raw = pd.read_parquet(RETAIL)
    raw = raw[raw["Customer ID"].notna()]
    return pd.DataFrame(
        {
            "customer_id": raw["Customer ID"].astype("int64").astype(str).to_numpy(),
            "order_id": raw["Invoice"].astype(str).to_numpy(),
            "ordered_at": pd.to_datetime(raw["InvoiceDate"]).astype("datetime64[us]").to_numpy(),
            "amount": (raw["Quantity"].astype("float64") * raw["Price"].astype("float64")).to_numpy(),
            "product_id": raw["StockCode"].astype(str).to_numpy(),
        }
    )


def _expected(df: pd.DataFrame, as_of: dt.date, freq: str) -> pd.DataFrame:
    # lifetimes truncates at the start of as_of's period; we give it only rows up to the as_of day
    # (for weeks it would otherwise read the days after as_of in the same week)
    upto = df[df["ordered_at"] < pd.Timestamp(as_of) + pd.Timedelta(days=1)]
    exp = summary_data_from_transaction_data(
        upto, "customer_id", "ordered_at", monetary_value_col="amount", observation_period_end=pd.Timestamp(as_of), freq=freq
    )
    exp.index = exp.index.astype(str)
    return exp.sort_index()


def _assert_same(got: pd.DataFrame, exp: pd.DataFrame) -> None:
    got = got.set_index("customer_id").sort_index()
    assert list(got.index) == list(exp.index)
    for c in ("frequency", "recency", "T"):
        np.testing.assert_array_equal(got[c].to_numpy(float), exp[c].to_numpy(float), err_msg=c)
    np.testing.assert_allclose(got["monetary_value"].to_numpy(float), exp["monetary_value"].to_numpy(float), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("freq", ["D", "W"])
@pytest.mark.parametrize("as_of", [dt.date(1997, 9, 30), dt.date(1998, 6, 30)])
def test_cdnow_matches_lifetimes(cdnow, as_of, freq):
    exp = _expected(cdnow, as_of, freq)
    feats = build_features(ibis.memtable(cdnow), as_of=as_of, spec=FeatureSpec(time_unit=freq)).to_pandas()
    assert len(feats) == len(exp)  # no customers table: the base is the buyers
    _assert_same(feats[feats["has_purchased"] == 1][["customer_id", *RFM]], exp)


@pytest.mark.parametrize("freq", ["D", "W"])
def test_cdnow_rfm_summary_matches_lifetimes(cdnow, freq):
    as_of = dt.date(1997, 9, 30)
    t = bound_to_as_of(ibis.memtable(cdnow), "transactions", "ordered_at", as_of)
    _assert_same(rfm_summary(t, as_of=as_of, time_unit=freq).to_pandas(), _expected(cdnow, as_of, freq))


@pytest.mark.parametrize("freq", ["D", "W"])
def test_online_retail_matches_lifetimes(retail, freq):
    as_of = dt.date(2011, 6, 1)
    exp = _expected(retail, as_of, freq)
    feats = build_features(ibis.memtable(retail), as_of=as_of, spec=FeatureSpec(time_unit=freq)).to_pandas()
    assert feats.notna().all().all()
    _assert_same(feats[["customer_id", *RFM]], exp)
