"""Referral links (customers.referred_by): the contract and its quarantine, the simulator's referrers, and the referral
label per customer (customers brought in over the horizon after an origin)."""

import datetime as dt

import ibis
import numpy as np
import pandas as pd
import pytest

from tiering.datasets import simulate
from tiering.exceptions import DataQualityError
from tiering.features import referral_labels
from tiering.io import connect
from tiering.schemas import CUSTOMERS, REFERRAL_LABEL
from tiering.validation import validate_table


def _customers(referred_by, ids=None):
    ids = ids or [f"c{i}" for i in range(len(referred_by))]
    return pd.DataFrame({"customer_id": ids, "joined_at": pd.to_datetime(["2024-01-01"] * len(ids)), "referred_by": referred_by})


def _validate(df, **kw):
    con = connect()
    kw.setdefault("max_quarantine_share", 0.9)
    return validate_table(con.create_table("raw", df, overwrite=True), CUSTOMERS, source="customers.csv", **kw)


# ------------------------------------------------------------------------------------------ contract


def test_a_referrer_naming_no_customer_or_the_customer_themself_is_quarantined(tmp_path):
    df = _customers(["", "c0", "c2", "zz", None, "7", "c0"], ids=["c0", "c1", "c2", "c3", "c4", "007", "c6"])
    good, report = _validate(df, quarantine_dir=tmp_path)
    assert report.quarantined == {"unknown_referrer": 2, "self_referral": 1}
    assert report.rows_valid == 4
    out = good.to_pandas().set_index("customer_id")["referred_by"]
    assert out["c1"] == "c0" and out["c6"] == "c0" and out[["c0", "c4"]].isna().all()  # a blank referrer is no referral
    q = pd.read_parquet(tmp_path / "customers.parquet").set_index("raw_customer_id")
    assert q.loc["c2", "reason"] == "self_referral"
    assert q.loc["c3", ["reason", "raw_referred_by"]].tolist() == ["unknown_referrer", "zz"]
    assert q.loc["007", ["reason", "raw_referred_by"]].tolist() == ["unknown_referrer", "7"]  # ids keep their identity, as text


def test_a_referrer_whose_own_row_is_set_aside_still_counts_as_known():
    df = _customers(["c1", None])
    df.loc[1, "joined_at"] = pd.NaT  # c1's only row set aside: c0's link to c1 is no unknown referrer
    _, report = _validate(df)
    assert report.quarantined == {"missing_time": 1}


def test_integer_ids_with_a_float_referrer_column_match():
    df = pd.DataFrame({"customer_id": [1, 2, 3], "joined_at": pd.to_datetime(["2024-01-01"] * 3), "referred_by": [np.nan, 1.0, np.nan]})
    good, report = _validate(df)
    assert report.quarantined == {}
    assert good.to_pandas().set_index("customer_id").loc["2", "referred_by"] == "1"


def test_a_mis_mapped_referrer_column_is_refused_not_silently_dropped():
    df = _customers([None] + [f"1380000{i}" for i in range(9)])  # phone numbers mapped as referrers
    with pytest.raises(DataQualityError, match=r"90% of the customers rows .* set aside as defective \(\{'unknown_referrer': 9\}\)"):
        _validate(df, max_quarantine_share=0.5)


# ------------------------------------------------------------------------------------------ simulator


@pytest.fixture(scope="module")
def sim():
    return simulate(6000, dt.date(2024, 1, 1), dt.date(2025, 6, 30), seed=5)


def test_simulated_referrers_made_a_referral_shortly_before_the_join(sim):
    cu, ix, truth = sim.customers, sim.interactions, sim.truth.set_index("customer_id")
    referred = cu[cu["referred_by"].notna()]
    assert (referred["acquisition_channel"] == "referral").all()
    via_referral = cu[cu["acquisition_channel"] == "referral"]
    late = via_referral["joined_at"] > pd.Timestamp("2024-01-15")
    assert referred.index.isin(via_referral.index).all() and via_referral.loc[late, "referred_by"].notna().mean() > 0.98
    joined = cu.set_index("customer_id")["joined_at"]
    assert (joined.loc[referred["referred_by"]].to_numpy() < referred["joined_at"].to_numpy()).all()
    refs = ix[ix["event_type"] == "referral"]
    pairs = referred[["customer_id", "joined_at", "referred_by"]].merge(refs, left_on="referred_by", right_on="customer_id")
    before = pairs[(pairs["occurred_at"] < pairs["joined_at"]) & (pairs["occurred_at"] > pairs["joined_at"] - pd.Timedelta(days=14))]
    assert before["customer_id_x"].nunique() == len(referred)  # each referrer made a referral in the 14 days before the join
    assert truth.loc[referred["referred_by"], "is_seed"].mean() > 0.8  # mostly the latent KOCs


def test_the_referrer_column_moves_no_other_simulated_table():
    """referred_by is drawn without random numbers: the other tables of a seed are those before it existed (pinned)."""
    s = simulate(300, dt.date(2024, 1, 1), dt.date(2024, 12, 31), seed=11)
    assert list(s.customers.columns) == ["customer_id", "joined_at", "acquisition_channel", "referred_by"]
    digest = [int(pd.util.hash_pandas_object(t, index=False).sum()) for t in (s.customers.iloc[:, :3], s.transactions, s.interactions)]
    # pandas' row hashes of the three tables simulated by the code before referred_by (commit f1a6168)
    assert digest == [1788327477592574745, 1491274817929701892, 11409896336210607130]


# ------------------------------------------------------------------------------------------ features and labels


@pytest.fixture()
def linked():
    cu = pd.DataFrame(
        {
            "customer_id": list("abcdef"),
            "joined_at": pd.to_datetime(
                ["2024-01-01 00:00", "2024-03-01 00:00", "2024-05-30 00:00", "2024-06-01 23:00", "2024-06-02 00:00", "2024-08-31 00:00"]
            ),
            "referred_by": [None, "a", "a", "b", "a", "a"],
        }
    )
    return ibis.duckdb.connect().create_table("customers", cu)


def test_the_referral_label_counts_joins_in_the_horizon_only(linked):
    lab = referral_labels(linked, as_of=dt.date(2024, 6, 1), horizon_days=90).to_pandas()
    assert lab.to_dict("records") == [{"customer_id": "a", REFERRAL_LABEL: 1}]  # 2024-06-02 in; 2024-08-31 is day 91
