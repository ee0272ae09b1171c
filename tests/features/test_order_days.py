"""An order's day is its first line's, and basket breadth counts distinct (order, product) pairs.

A hand-made order straddles midnight at the edge of the 30-day window: it counts in the window's
orders only by its first line's day, while its later line's amount counts in the window's spend (a
day-based total). The same product twice in one order is one pair; in two orders, two.
"""

import datetime as dt

import ibis
import pandas as pd
import pytest

from tiering.features import FeatureSpec, build_features

AS_OF = dt.date(2024, 6, 30)  # 30-day window: 2024-06-01 .. 2024-06-30


@pytest.fixture(scope="module")
def row() -> pd.Series:
    tx = pd.DataFrame(
        [  # order, time, amount, product
            ("o1", "2024-05-31T23:30", 20.0, "pA"),  # first line the day before the window
            ("o1", "2024-06-01T00:10", 7.0, "pB"),  # second line inside it
            ("o2", "2024-06-01T00:00", 10.0, "p1"),  # p1 twice in one order: one pair
            ("o2", "2024-06-01T00:00", 5.0, "p1"),
            ("o3", "2024-06-15T12:00", 3.0, "p1"),  # p1 again in another order: another pair
            ("o3", "2024-06-15T12:00", 4.0, "p2"),
            ("o4", "2024-07-01T00:00", 99.0, "p9"),  # after as_of: ignored
        ],
        columns=["order_id", "ordered_at", "amount", "product_id"],
    ).assign(customer_id="a", ordered_at=lambda d: pd.to_datetime(d.ordered_at))
    out = build_features(ibis.memtable(tx), as_of=AS_OF, spec=FeatureSpec(windows_days=(30,))).to_pandas()
    assert len(out) == 1
    return out.iloc[0]


def test_an_order_is_in_a_window_by_its_first_line(row):
    assert row["n_orders"] == 3
    assert row["orders_30d"] == 2  # o1 began on 2024-05-31
    assert row["spend_30d"] == pytest.approx(7.0 + 15.0 + 7.0)  # o1's second line is inside the window


def test_days_are_calendar_days_of_the_lines(row):
    assert (row["frequency"], row["recency"], row["T"]) == (2.0, 15.0, 30.0)  # days 05-31, 06-01, 06-15
    assert (row["days_since_first_purchase"], row["days_since_last_purchase"]) == (30, 15)


def test_products_and_pairs(row):
    assert row["n_products"] == 4  # pA, pB, p1, p2
    assert row["products_per_order"] == pytest.approx(5 / 3)  # pairs: o1 2, o2 1, o3 2
