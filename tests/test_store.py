"""The scores store: atomic batches, replacement of a re-run, reads of the latest complete batch."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from tiering.exceptions import StoreError
from tiering.schemas import SCORES_COLUMNS, TIERS
from tiering.store import ScoresStore


def scores_frame(n=500, as_of=dt.date(2025, 1, 1), version="1", seed=0):
    rng = np.random.default_rng(seed)
    tiers = rng.choice(list(TIERS), n)
    df = pd.DataFrame({
        "customer_id": [f"C{i:05d}" for i in range(n)], "as_of": as_of, "horizon_days": 180,
        "p_purchase": rng.random(n), "churn_risk": rng.random(n), "p_alive": rng.random(n),
        "expected_purchases": rng.random(n) * 3, "expected_spend": rng.random(n) * 50, "clv": rng.random(n) * 500,
        "engagement_score": rng.random(n), "tier": tiers, "tier_reason": "because", "next_tier": tiers,
        "next_tier_proba": rng.random(n), "rfm_segment": "Champions", "r_score": 5, "f_score": 4, "m_score": 3,
        "koc_candidate": rng.random(n) < 0.1, "at_risk": rng.random(n) < 0.2, "model_name": "customer-tiering",
        "model_version": version, "scored_at": pd.Timestamp("2025-01-02 03:00"),
    })
    df.loc[0, "churn_risk"] = np.nan
    return df[list(SCORES_COLUMNS)]


@pytest.fixture
def store(tmp_path):
    return ScoresStore(f"sqlite:///{tmp_path}/scores.db")


def test_round_trip_and_latest(store):
    df = scores_frame()
    batch = store.write_batch(df)
    assert batch.rows == 500
    back = store.read_batch(store.latest_batch())
    assert list(back.columns) == list(SCORES_COLUMNS)
    assert back["customer_id"].tolist() == df["customer_id"].tolist()
    np.testing.assert_allclose(back["clv"], df["clv"])
    assert back["churn_risk"].isna().sum() == 1
    row = store.get_customer("C00003")
    assert row["tier"] == df.loc[3, "tier"] and row["model_version"] == "1"
    assert store.get_customer("nobody") is None


def test_rerun_replaces_and_history_keeps_other_dates(store):
    store.write_batch(scores_frame(as_of=dt.date(2024, 12, 1)))
    store.write_batch(scores_frame())
    store.write_batch(scores_frame(seed=5))  # same as_of and version: replaces
    assert [(b.as_of, b.rows) for b in store.batches_list()] == [(dt.date(2024, 12, 1), 500), (dt.date(2025, 1, 1), 500)]
    assert len(store.customer_history("C00001")) == 2
    np.testing.assert_allclose(store.read_batch(store.latest_batch())["clv"], scores_frame(seed=5)["clv"])


def test_failed_write_leaves_previous_batch(store):
    store.write_batch(scores_frame())
    bad = scores_frame(seed=9)
    bad.loc[10, "customer_id"] = bad.loc[11, "customer_id"]  # violates the unique index mid-batch
    with pytest.raises(Exception):
        store.write_batch(bad)
    np.testing.assert_allclose(store.read_batch(store.latest_batch())["clv"], scores_frame()["clv"])
    assert len(store.batches_list()) == 1


def test_lists_counts_and_migration(store):
    a = scores_frame(as_of=dt.date(2024, 12, 1))
    b = scores_frame(seed=1)
    store.write_batch(a)
    store.write_batch(b)
    latest = store.latest_batch()
    core = store.list_tier("core", limit=None)
    assert len(core) == (b["tier"] == "core").sum() and core["clv"].is_monotonic_decreasing
    assert len(store.list_tier("core", at_risk=True, limit=None)) == ((b["tier"] == "core") & b["at_risk"]).sum()
    counts = store.tier_counts(latest)
    assert counts["customers"].sum() == 500 and counts["share"].sum() == pytest.approx(1)
    mig = store.migration(store.previous_batch(latest), latest)
    assert mig.to_numpy().sum() == 500
    assert mig.loc["core", "value"] == ((a["tier"] == "core") & (b["tier"] == "value")).sum()


def test_clear_errors(store, tmp_path):
    with pytest.raises(StoreError, match=r"holds no batch\. Run `tiering predict --as-of DATE` first"):
        store.latest_batch()
    with pytest.raises(StoreError, match=r"Unknown tier 'gold'; tiers are \['core', 'value', 'seed', 'new', 'ordinary'\]"):
        store.write_batch(scores_frame()) and store.list_tier("gold")
    with pytest.raises(StoreError, match=r"The scores frame is empty: nothing to write"):
        store.write_batch(scores_frame().iloc[:0])
    with pytest.raises(StoreError, match=r"does not exist yet\. Run `tiering predict`"):
        ScoresStore(f"sqlite:///{tmp_path}/none.db", create=False)
