"""Extended and engagement features on small hand-made tables with known answers."""

import datetime as dt
import math

import ibis
import numpy as np
import pandas as pd
import pytest

from tiering.features import FeatureSpec, build_features, engagement_score
from tiering.schemas import EVENT_TYPES

AS_OF = dt.date(2024, 5, 31)
SPEC = FeatureSpec(windows_days=(30, 90))


def ts(*s):
    return pd.to_datetime(list(s), format="ISO8601").astype("datetime64[us]")


def tx_frame():
    # a: orders on 01-01 (2 lines), 03-05, 05-20 (refund order 05-25)
    # b: one order on the as_of day at 23:59 (counts) and one the day after (ignored)
    # c: only a refund
    return pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a", "a", "b", "b", "c"],
            "order_id": ["o1", "o1", "o2", "o3", "r1", "o4", "o5", "r2"],
            "ordered_at": ts(
                "2024-01-01T10:00", "2024-01-01T10:05", "2024-03-05", "2024-05-20", "2024-05-25",
                "2024-05-31T23:59:59", "2024-06-01T00:00", "2024-04-01",
            ),
            "amount": [10.0, 5.0, 20.0, 40.0, -15.0, 30.0, 99.0, -8.0],
            "channel": ["shop", "shop", "app", "shop", "shop", "app", "app", None],
            "product_id": ["p1", "p2", "p1", "p3", "p3", "p9", "p9", "p1"],
        }
    )


def ix_frame():
    return pd.DataFrame(
        {
            "customer_id": ["a", "a", "d", "d", "d", "d", "a"],
            "occurred_at": ts(
                "2024-05-30", "2024-05-30T12:00", "2024-02-01", "2024-05-10", "2024-05-10", "2024-05-31T20:00", "2024-06-02"
            ),
            "event_type": ["share", "view", "referral", "like", "Share", "view", "share"],
        }
    )


def cu_frame():
    return pd.DataFrame(
        {
            "customer_id": ["a", "b", "e", "late"],
            "joined_at": ts("2023-12-15", "2024-05-01", "2024-04-01", "2024-06-01"),
        }
    )


@pytest.fixture(scope="module")
def feats():
    df = build_features(
        ibis.memtable(tx_frame()), ibis.memtable(ix_frame()), ibis.memtable(cu_frame()), as_of=AS_OF, spec=SPEC
    ).to_pandas()
    return df.set_index("customer_id")


def test_columns_rows_and_no_nan(feats):
    assert ["customer_id", *feats.columns] == list(SPEC.feature_columns)
    assert sorted(feats.index) == ["a", "b", "c", "d", "e"]  # 'late' joined after as_of
    assert not feats.isna().any().any()
    assert (pd.to_datetime(feats["as_of"]).dt.date == AS_OF).all()


def test_buyer_a(feats):
    a = feats.loc["a"]
    assert a.has_purchased == 1
    assert (a.frequency, a.recency, a["T"]) == (3.0, 145.0, 151.0)  # days 01-01, 03-01, 05-20, 05-25
    assert a.monetary_value == pytest.approx((20 + 40 - 15) / 3)
    assert a.n_orders == 3 and a.n_refund_orders == 1  # the refund order r1 counts apart
    assert a.total_spend == 75.0 and a.net_spend == 60.0
    assert a.refund_share == pytest.approx(15 / 75)
    assert a.avg_order_value == pytest.approx(75 / 3)
    assert a.tenure_days == (AS_OF - dt.date(2023, 12, 15)).days
    assert a.days_since_last_purchase == 6 and a.days_since_first_purchase == 151
    gaps = np.array([64, 76, 5], dtype=float)
    assert a.ipi_mean_days == pytest.approx(gaps.mean())
    assert a.ipi_std_days == pytest.approx(gaps.std())
    assert (a.orders_30d, a.orders_90d) == (1, 2)  # the 90-day window is 03-03 .. 05-31
    assert (a.spend_30d, a.spend_90d) == (25.0, 45.0)
    # gross per day: last 30 days 40/30, days 31..90 back 20/60
    r, p = 40 / 30, 20 / 60
    assert a.spend_trend == pytest.approx((r - p) / (r + p))
    assert a.n_products == 3 and a.n_channels == 2
    assert a.top_channel_share == pytest.approx(55 / 75)
    assert a.ipi_cv == pytest.approx(gaps.std() / gaps.mean())
    assert a.products_per_order == pytest.approx((2 + 1 + 1) / 3)  # o1: p1, p2; o2: p1; o3: p3; r1 bought nothing
    assert a.spend_ly_90d == a.spend_ly_180d == 0.0 and a.orders_ly_180d == 0  # nothing a year back
    assert a.origin_month == 5 and a.events_trend == 1.0  # both events in the last 30 days


def test_as_of_day_included_next_day_excluded(feats):
    b = feats.loc["b"]
    assert b.has_purchased == 1 and b.n_orders == 1 and b.total_spend == 30.0
    assert b.days_since_last_purchase == 0 and b.frequency == 0 and b.monetary_value == 0
    assert b.spend_trend == 1.0 and b.tenure_days == 30


def test_refund_only_customer(feats):
    c = feats.loc["c"]
    assert c.has_purchased == 1 and c.n_orders == 0 and c.n_refund_orders == 1 and c.total_spend == 0 and c.net_spend == -8.0
    assert c.refund_share == 1.0 and c.avg_order_value == 0.0
    assert c.n_channels == 0 and c.top_channel_share == 0.0 and c.n_products == 0
    assert c.products_per_order == 0.0 and c.ipi_cv == 0.0 and c.spend_ly_180d == 0.0


def test_non_buyer_without_interactions(feats):
    e = feats.loc["e"]
    assert e.tenure_days == 60
    assert e.has_purchased == 0 and e.n_orders == 0 and e.n_refund_orders == 0 and e.total_spend == 0
    assert (e.frequency, e.recency, e["T"], e.monetary_value) == (0, 0, 0, 0)
    assert e.days_since_last_purchase == 60 and e.days_since_first_purchase == 60
    assert e.days_since_last_interaction == 60 and e.events_90d == 0 and e.engagement_score == 0.0
    assert e.engaged_no_purchase == 0


def test_engagement(feats):
    d, a = feats.loc["d"], feats.loc["a"]
    assert d.tenure_days == (AS_OF - dt.date(2024, 2, 1)).days  # no customers row: first activity
    assert (d.events_30d, d.events_90d) == (3, 3)  # the 02-01 referral is older than 90 days
    assert (d.n_view_90d, d.n_like_90d, d.n_share_90d, d.n_referral_90d) == (1, 1, 1, 0)
    assert (d.active_days_30d, d.active_days_90d) == (2, 2)
    assert d.days_since_last_interaction == 0
    assert d.social_actions_90d == 1
    assert d.engaged_no_purchase == 1 and d.has_purchased == 0
    assert d.interaction_rate_per_30d == pytest.approx(3 * 30 / 90)
    assert a.events_30d == 2 and a.active_days_30d == 1 and a.days_since_last_interaction == 1  # 06-02 ignored
    counts = {e: 0.0 for e in EVENT_TYPES} | {"view": 1.0, "like": 1.0, "share": 1.0}
    assert d.engagement_score == pytest.approx(float(engagement_score(counts, 2.0)))
    z = 0.2 * math.log(2) + 0.3 * math.log(2) + 1.0 * math.log(2) + 0.5 * math.log(3)
    assert d.engagement_score == pytest.approx(1 - math.exp(-z / 4))
    assert 0 <= feats.engagement_score.min() and feats.engagement_score.max() < 1


def test_engagement_score_independent_of_other_customers():
    ix = ix_frame()
    full = build_features(ibis.memtable(tx_frame()), ibis.memtable(ix), None, as_of=AS_OF, spec=SPEC).to_pandas()
    sub = build_features(
        ibis.memtable(tx_frame().query("customer_id == 'b'")), ibis.memtable(ix[ix.customer_id == "d"]), None, as_of=AS_OF, spec=SPEC
    ).to_pandas()
    assert sub.set_index("customer_id").loc["d", "engagement_score"] == full.set_index("customer_id").loc["d", "engagement_score"]


def test_optional_inputs_and_columns_missing():
    tx = tx_frame()[["customer_id", "order_id", "ordered_at", "amount"]]
    df = build_features(ibis.memtable(tx), as_of=AS_OF, spec=SPEC).to_pandas().set_index("customer_id")
    assert sorted(df.index) == ["a", "b", "c"]
    assert not df.isna().any().any()
    assert (df.n_products == 0).all() and (df.n_channels == 0).all() and (df.top_channel_share == 0).all()
    assert (df.events_90d == 0).all() and (df.engagement_score == 0).all()
    assert df.loc["a", "tenure_days"] == 151 and df.loc["a", "days_since_last_interaction"] == 151


def test_single_window_and_weeks():
    spec = FeatureSpec(time_unit="W", windows_days=(60,))
    df = build_features(ibis.memtable(tx_frame()), as_of=AS_OF, spec=spec).to_pandas().set_index("customer_id")
    assert list(df.columns) == list(spec.feature_columns)[1:]
    # a: weeks of 2024-01-01 (Mon), 03-04, 05-20 and 05-20 again (05-25 is a Saturday); as_of week 05-27
    a = df.loc["a"]
    assert (a.frequency, a.recency, a["T"]) == (2.0, 20.0, 21.0)
    assert a.monetary_value == pytest.approx((20 + 25) / 2)
    # single window: prior period is the previous 60 days (gross 20 on 03-05), recent 40
    assert a.spend_trend == pytest.approx((40 - 20) / (40 + 20))



def test_spec_round_trip_and_validation():
    spec = FeatureSpec(time_unit="W", windows_days=(90, 30, 30), version="2")
    assert spec.windows_days == (30, 90)
    assert FeatureSpec.from_dict(spec.to_dict()) == spec
    assert "n_share_90d" in spec.feature_columns and "orders_30d" in spec.feature_columns
    with pytest.raises(ValueError, match="time_unit"):
        FeatureSpec(time_unit="M")
    with pytest.raises(ValueError, match="windows_days"):
        FeatureSpec(windows_days=(0, 30))


def test_money_totals_are_the_same_on_every_run_and_thread_count():
    # 600k lines of 50 customers on 4 threads: each customer's lines meet in a different order from run to run.
    # Float sums then differed in the last bits (hundreds of feature values per rebuild, enough to move a
    # rounded tree input across a split); exact decimal sums give the same frame on every build.
    rng = np.random.default_rng(0)
    n = 600_000
    tx = pd.DataFrame(
        {
            "customer_id": rng.integers(0, 50, n).astype(str),
            "order_id": np.arange(n).astype(str),
            "ordered_at": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 150 * 24 * 3600, n), unit="s"),
            "amount": rng.lognormal(3, 1, n) * rng.choice([1, -1], n, p=[0.95, 0.05]),
            "channel": rng.choice(["shop", "app"], n),
        }
    )
    frames = []
    for threads in (4, 4, 4, 1):
        t = ibis.duckdb.connect(threads=threads).create_table("tx", tx)
        f = build_features(t, None, None, as_of=AS_OF, spec=SPEC).to_pandas()
        frames.append(f.sort_values("customer_id").reset_index(drop=True))
    for f in frames[1:]:
        pd.testing.assert_frame_equal(f, frames[0], check_exact=True)
    # each line's amount counts to a millionth of the currency unit (features._spec.MONEY), then the sum is exact
    bounded = tx[tx.ordered_at < pd.Timestamp(AS_OF) + pd.Timedelta(days=1)]
    spend = bounded.amount.round(6).groupby(bounded.customer_id).sum()
    np.testing.assert_allclose(frames[0].set_index("customer_id").net_spend.loc[spend.index], spend, rtol=1e-11)
