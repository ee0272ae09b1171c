"""Holdout labels on boundary days, calibration/holdout frames and the leakage guard."""

import datetime as dt

import ibis
import pandas as pd
import pytest

from tiering.exceptions import LeakageError
from tiering.features import (
    LABEL_COLUMNS,
    FeatureSpec,
    bound_to_as_of,
    build_features,
    build_labels,
    calibration_holdout,
    interaction_features,
    transaction_features,
)

AS_OF = dt.date(2024, 5, 31)
SPEC = FeatureSpec(windows_days=(30, 90))


def ts(*s):
    return pd.to_datetime(list(s), format="ISO8601").astype("datetime64[us]")


def tx_frame():
    return pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "b", "b", "c", "d", "d", "e"],
            "order_id": ["o1", "o2", "o3", "o4", "r4", "o5", "o6", "o6", "o7"],
            "ordered_at": ts(
                "2024-05-31T23:59:59",  # a: as_of day, not in the holdout
                "2024-06-01T00:00",  # a: first holdout day
                "2024-06-10",  # b
                "2024-06-10",  # b
                "2024-06-12",  # b: refund order
                "2024-06-10T23:59:59",  # c: last holdout day (H = 10)
                "2024-06-05",  # d: order with a line and a full refund line
                "2024-06-05",
                "2024-06-11",  # e: first day after the holdout
            ),
            "amount": [5.0, 10.0, 20.0, 30.0, -5.0, 7.0, 50.0, -50.0, 9.0],
        }
    )


def test_labels_boundaries_and_refunds():
    lab = build_labels(ibis.memtable(tx_frame()), as_of=AS_OF, horizon_days=10).to_pandas().set_index("customer_id")
    assert list(lab.columns) == list(LABEL_COLUMNS)
    assert sorted(lab.index) == ["a", "b", "c", "d"]
    assert lab.loc["a"].tolist() == [10.0, 1, 1]
    assert lab.loc["b"].tolist() == [50.0, 2, 1]  # the refund on 06-12 is after the window
    assert lab.loc["c"].tolist() == [7.0, 1, 1]
    assert lab.loc["d"].tolist() == [0.0, 0, 0]  # net 0 order: active, but not a purchase
    lab12 = build_labels(ibis.memtable(tx_frame()), as_of=AS_OF, horizon_days=12).to_pandas().set_index("customer_id")
    assert lab12.loc["b"].tolist() == [45.0, 2, 1] and lab12.loc["e"].tolist() == [9.0, 1, 1]


def test_labels_reject_bad_horizon():
    with pytest.raises(ValueError, match="horizon_days"):
        build_labels(ibis.memtable(tx_frame()), as_of=AS_OF, horizon_days=0)


def test_calibration_holdout_joins_and_fills():
    tx = tx_frame()
    tx.loc[len(tx)] = ["z", "o0", pd.Timestamp("2024-05-01"), 3.0]
    cu = pd.DataFrame({"customer_id": ["n"], "joined_at": ts("2024-05-20")})
    ch = calibration_holdout(ibis.memtable(tx), None, ibis.memtable(cu), origin=AS_OF, horizon_days=10, spec=SPEC)
    df = ch.to_pandas().set_index("customer_id")
    assert list(df.columns) == [*SPEC.feature_columns[1:], *LABEL_COLUMNS]
    assert sorted(df.index) == ["a", "n", "z"]  # b, c, d only appear after the origin
    assert not df.isna().any().any()
    assert df.loc["a", "holdout_spend"] == 10.0 and df.loc["a", "n_orders"] == 1
    assert df.loc["z"].holdout_spend == 0.0 and df.loc["z"].purchased_in_horizon == 0
    assert df.loc["n"].has_purchased == 0 and df.loc["n"].holdout_orders == 0


def test_guard_fires_on_unfiltered_input():
    tx = ibis.memtable(tx_frame())
    with pytest.raises(LeakageError, match=r"transactions.*ordered_at = 2024-06-12"):
        transaction_features(tx, as_of=AS_OF, spec=SPEC)
    ix = ibis.memtable(
        pd.DataFrame({"customer_id": ["a"], "occurred_at": ts("2024-06-01T00:00"), "event_type": ["view"]})
    )
    with pytest.raises(LeakageError, match=r"interactions.*occurred_at.*2024-06-01"):
        interaction_features(ix, as_of=AS_OF, spec=SPEC)
    # a table bounded at a later as_of is not trusted for an earlier one
    later = bound_to_as_of(tx, "transactions", "ordered_at", dt.date(2024, 6, 30))
    with pytest.raises(LeakageError):
        transaction_features(later, as_of=AS_OF, spec=SPEC)
    # data ending on the as_of day passes
    ok = ibis.memtable(tx_frame().iloc[:1])
    assert transaction_features(ok, as_of=AS_OF, spec=SPEC).to_pandas().shape[0] == 1


def test_rows_after_as_of_do_not_change_features():
    tx = tx_frame()
    ix = pd.DataFrame(
        {"customer_id": ["a", "b"], "occurred_at": ts("2024-05-30", "2024-05-31T23:00"), "event_type": ["share", "view"]}
    )
    cu = pd.DataFrame({"customer_id": ["a", "q"], "joined_at": ts("2024-01-01", "2024-05-02")})
    before = tx[tx.ordered_at < pd.Timestamp("2024-06-01")]
    ref = build_features(ibis.memtable(before), ibis.memtable(ix), ibis.memtable(cu), as_of=AS_OF, spec=SPEC)
    ix_more = pd.concat(
        [ix, pd.DataFrame({"customer_id": ["a", "x"], "occurred_at": ts("2024-06-01", "2024-07-01"), "event_type": ["share", "view"]})]
    )
    cu_more = pd.concat([cu, pd.DataFrame({"customer_id": ["y"], "joined_at": ts("2024-06-01")})])
    got = build_features(ibis.memtable(tx), ibis.memtable(ix_more), ibis.memtable(cu_more), as_of=AS_OF, spec=SPEC)
    a = ref.to_pandas().sort_values("customer_id").reset_index(drop=True)
    b = got.to_pandas().sort_values("customer_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert sorted(a.customer_id) == ["a", "b", "q"]
