"""Seasonality, regularity, basket and engagement-trend features on a hand-made table with known answers.

The same frames and expectations serve DuckDB here and Spark in test_spark.py (``check_known_truth``).
as_of 2025-03-31: a year earlier (365 days, no 29 February between) is 2024-03-31, so last year's
90-day window is 2024-04-01 .. 2024-06-29 and the 180-day one 2024-04-01 .. 2024-09-27.
"""

import datetime as dt

import ibis
import numpy as np
import pandas as pd
import pytest

from tiering.features import FeatureSpec, build_features

AS_OF = dt.date(2025, 3, 31)
SPEC = FeatureSpec(windows_days=(30, 90))
NEW_COLUMNS = (
    "origin_month", "ipi_cv", "spend_ly_90d", "orders_ly_90d", "spend_ly_180d", "orders_ly_180d",
    "products_per_order", "events_trend",
)
# the default spec's columns before these were added (spec version "1"): bundles trained then select these
V1_DEFAULT_COLUMNS = (
    "customer_id", "as_of", "frequency", "recency", "T", "monetary_value", "has_purchased", "n_orders",
    "n_refund_orders", "total_spend", "net_spend", "refund_share", "avg_order_value", "tenure_days",
    "days_since_last_purchase", "days_since_first_purchase", "ipi_mean_days", "ipi_std_days",
    "orders_30d", "orders_90d", "orders_180d", "orders_365d", "spend_30d", "spend_90d", "spend_180d", "spend_365d",
    "spend_trend", "n_products", "n_channels", "top_channel_share", "events_30d", "events_90d", "events_180d",
    "events_365d", "n_view_365d", "n_message_365d", "n_like_365d", "n_comment_365d", "n_share_365d",
    "n_referral_365d", "n_group_join_365d", "n_coupon_claim_365d", "n_live_watch_365d", "active_days_30d",
    "active_days_90d", "active_days_180d", "active_days_365d", "days_since_last_interaction",
    "interaction_rate_per_30d", "social_actions_90d", "engaged_no_purchase", "engagement_score",
)


def day(k: int, time: str = "12:00") -> pd.Timestamp:
    """The timestamp ``time`` on as_of - k days."""
    return pd.Timestamp(f"{AS_OF - dt.timedelta(days=k)}T{time}")


def tx_frame() -> pd.DataFrame:
    """s: orders around last year's windows (k = days before as_of); r: three days 10 and 20 days apart;
    two: two days; one: a single order."""
    rows = [  # customer, order, days before as_of (and time), amount, product
        ("s", "s1", day(365, "23:59:59"), 100.0, "p0"),  # a year ago to the day: outside both windows
        ("s", "s2", day(364, "00:00"), 10.0, "p1"),  # first day of both windows
        ("s", "s2", day(364, "00:00"), 20.0, "p2"),
        ("s", "s3", day(275), 5.0, "p1"),  # last day of the 90-day window; p1 twice: 1 distinct product
        ("s", "s3", day(275), 5.0, "p1"),
        ("s", "s4", day(274), 40.0, "p3"),  # 180-day window only; a returned line in the same order
        ("s", "s4", day(274), -10.0, "p3"),
        ("s", "r1", day(200), -7.0, "p9"),  # a refund order: spend, not an order
        ("s", "s5", day(185), 50.0, "p4"),  # last day of the 180-day window
        ("s", "s5", day(185), 8.0, "p5"),
        ("s", "s6", day(184), 60.0, "p6"),  # one day after it
        ("s", "s7", day(0, "23:59:59"), 5.0, None),  # no product id: 0 products
        ("r", "r-a", day(30), 10.0, "p1"),
        ("r", "r-b", day(20), 10.0, "p1"),
        ("r", "r-c", day(0), 10.0, "p1"),
        ("two", "t-a", day(50), 10.0, "p1"),
        ("two", "t-b", day(10), 10.0, "p2"),
        ("one", "o-a", day(400), 10.0, "p1"),
        ("one", "o-a", day(400), 10.0, "p2"),
        ("s", "late", day(-1), 999.0, "p7"),  # after as_of: ignored
    ]
    df = pd.DataFrame(rows, columns=["customer_id", "order_id", "ordered_at", "amount", "product_id"])
    df["ordered_at"] = df["ordered_at"].astype("datetime64[us]")
    df["channel"] = np.where(df.customer_id == "s", "shop", "app")
    return df


def ix_frame() -> pd.DataFrame:
    """s: 3 events in the last 30 days, 3 in the 60 days before, 1 just outside 90 days; v (no purchases):
    events only 31..90 days back; w: one 100 days back (inside a 60-day single window's prior 60 days)."""
    rows = [
        ("s", day(0), "view"), ("s", day(5), "view"), ("s", day(5), "like"),  # recent: days 0 .. 29 back
        ("s", day(30), "view"), ("s", day(30), "share"), ("s", day(89), "view"),  # prior: 30 .. 89 back
        ("s", day(90), "view"),  # 90 days back: outside both
        ("v", day(40), "view"), ("v", day(60), "like"),
        ("w", day(100), "view"), ("w", day(3), "view"),
        ("s", day(-1), "view"),  # after as_of: ignored
    ]
    df = pd.DataFrame(rows, columns=["customer_id", "occurred_at", "event_type"])
    df["occurred_at"] = df["occurred_at"].astype("datetime64[us]")
    return df


def gaps_cv(gaps: list[float]) -> float:
    g = np.asarray(gaps, dtype=float)
    return float(g.std() / g.mean())


EXPECTED = {  # customer -> column -> value, for SPEC at AS_OF
    "s": {
        "origin_month": 3,
        "spend_ly_90d": 10 + 20 + 5 + 5, "orders_ly_90d": 2,
        "spend_ly_180d": 40 + 30 - 7 + 58, "orders_ly_180d": 4,
        # days 365, 364, 275, 274, 200, 185, 184, 0 before as_of
        "ipi_cv": gaps_cv([1, 89, 1, 74, 15, 1, 184]),
        # 7 purchase orders; 6 bought an identified product: 1, 2, 1, 1, 2, 1 distinct ones (s7 has no id)
        "n_orders": 7, "n_products": 7, "products_per_order": 8 / 6,
        # r = 3 / 30 a day, p = 3 / 60 a day
        "events_trend": (3 / 30 - 3 / 60) / (3 / 30 + 3 / 60),
    },
    "r": {"ipi_cv": 5 / 15, "products_per_order": 1.0, "spend_ly_90d": 0.0, "orders_ly_180d": 0, "events_trend": 0.0},
    "two": {"ipi_cv": 0.0, "ipi_mean_days": 40.0},  # one gap: no spread
    "one": {"ipi_cv": 0.0, "ipi_mean_days": 0.0, "products_per_order": 2.0, "orders_ly_90d": 0},  # one day
    "v": {"events_trend": -1.0, "ipi_cv": 0.0, "products_per_order": 0.0, "spend_ly_180d": 0.0, "origin_month": 3},
    "w": {"events_trend": 1.0},  # its 100-days-back view is outside the 90-day window
}


def check_known_truth(df: pd.DataFrame) -> None:
    """``df``: the frame of tx_frame() and ix_frame() at AS_OF with SPEC, from any engine."""
    df = df.set_index("customer_id")
    assert sorted(df.index) == sorted(EXPECTED)
    assert not df.isna().any().any()
    for cid, cols in EXPECTED.items():
        for c, v in cols.items():
            assert df.loc[cid, c] == pytest.approx(v, rel=1e-12), (cid, c)
    for c in ("origin_month", "orders_ly_90d", "orders_ly_180d"):
        assert df[c].dtype == np.int64, c
    for c in ("ipi_cv", "spend_ly_90d", "spend_ly_180d", "products_per_order", "events_trend"):
        assert df[c].dtype == np.float64, c


def frame(tx: pd.DataFrame, ix: pd.DataFrame | None, spec: FeatureSpec = SPEC, as_of: dt.date = AS_OF) -> pd.DataFrame:
    e = build_features(ibis.memtable(tx), None if ix is None else ibis.memtable(ix), as_of=as_of, spec=spec)
    return e.to_pandas().sort_values("customer_id").reset_index(drop=True)


def test_known_truth_on_duckdb():
    check_known_truth(frame(tx_frame(), ix_frame()))


def test_without_channel_and_in_weeks_the_same():
    """The order pass without channels, and time_unit 'W', give the same new columns."""
    ref = frame(tx_frame(), ix_frame()).set_index("customer_id")[list(NEW_COLUMNS)]
    no_channel = frame(tx_frame().drop(columns="channel"), ix_frame()).set_index("customer_id")[list(NEW_COLUMNS)]
    weeks = frame(tx_frame(), ix_frame(), FeatureSpec(time_unit="W", windows_days=(30, 90))).set_index("customer_id")
    pd.testing.assert_frame_equal(no_channel, ref)
    pd.testing.assert_frame_equal(weeks[list(NEW_COLUMNS)], ref)


def test_without_product_column_products_per_order_is_zero():
    df = frame(tx_frame().drop(columns="product_id"), None).set_index("customer_id")
    assert (df.products_per_order == 0.0).all() and (df.n_products == 0).all()
    assert (df.events_trend == 0.0).all()  # no interactions
    assert df.loc["s", "spend_ly_90d"] == 40.0


def test_single_window_trend_reads_the_previous_window():
    """windows (60,): recent = the last 60 days, prior = the 60 before (beyond the 90-day horizon of
    the other engagement features); w's view 100 days back is in the prior window."""
    df = frame(tx_frame(), ix_frame(), FeatureSpec(windows_days=(60,))).set_index("customer_id")
    assert df.loc["w", "events_trend"] == 0.0  # one event in each
    assert df.loc["s", "events_trend"] == pytest.approx((5 - 2) / (5 + 2))  # 5 in 0..59 back, 2 in 60..119
    assert df.loc["v", "events_trend"] == 0.0  # 40 days back in the recent window, 60 in the prior


def test_origin_month_follows_as_of():
    for as_of, month in ((dt.date(2024, 12, 1), 12), (dt.date(2025, 1, 31), 1)):
        df = frame(tx_frame(), None, as_of=as_of)
        assert (df.origin_month == month).all()


def test_spec_version_1_still_builds_older_bundles_columns():
    """New columns are additions: the version stays, and the columns a version-1 bundle selects are all built."""
    spec = FeatureSpec.from_dict({"time_unit": "D", "windows_days": [30, 90, 180, 365], "version": "1"})
    assert spec == FeatureSpec() and spec.version == "1"
    assert set(V1_DEFAULT_COLUMNS) <= set(spec.feature_columns)
    assert [c for c in spec.feature_columns if c in V1_DEFAULT_COLUMNS] == list(V1_DEFAULT_COLUMNS)  # same order
    assert set(spec.feature_columns) - set(V1_DEFAULT_COLUMNS) == set(NEW_COLUMNS)
