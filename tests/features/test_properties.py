"""Properties of the feature frame on random data: no look-ahead, subset invariance, a pandas reference."""

import datetime as dt

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pytest

from tiering.features import FeatureSpec, build_features, build_labels, calibration_holdout
from tiering.schemas import EVENT_TYPES

START = pd.Timestamp("2023-01-01")


def _random_data(seed: int = 0, n: int = 120) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ids = [f"c{i:03d}" for i in range(n)]
    rows = []
    for k in range(900):
        cust = ids[rng.integers(n)]
        when = START + pd.Timedelta(seconds=int(rng.integers(0, 700 * 86400)))
        channel = rng.choice(["app", "shop", "wechat", None])
        for line in range(int(rng.integers(1, 4))):
            amount = float(np.round(rng.gamma(2.0, 20.0), 2))
            if rng.random() < 0.1:
                amount = -amount  # refund line
            rows.append((cust, f"o{k}", when, amount, channel, f"p{rng.integers(30)}"))
        if rng.random() < 0.05:  # a later refund of the same order
            rows.append((cust, f"o{k}", when + pd.Timedelta(days=int(rng.integers(1, 40))), -5.0, channel, "p0"))
    tx = pd.DataFrame(rows, columns=["customer_id", "order_id", "ordered_at", "amount", "channel", "product_id"])
    tx["ordered_at"] = tx["ordered_at"].astype("datetime64[us]")
    types = [*EVENT_TYPES, "Share", "unknown_event"]
    ix = pd.DataFrame(
        {
            "customer_id": [ids[i] for i in rng.integers(0, n + 20, 2000) % (n + 20) if i < n]
            + [f"x{i}" for i in range(20)],
        }
    )
    ix["occurred_at"] = (START + pd.to_timedelta(rng.integers(0, 700 * 86400, len(ix)), unit="s")).astype(
        "datetime64[us]"
    )
    ix["event_type"] = rng.choice(types, len(ix))
    cu = pd.DataFrame({"customer_id": [*ids[: n // 2], "n1", "n2"]})
    cu["joined_at"] = (START - pd.Timedelta(days=30) + pd.to_timedelta(rng.integers(0, 600, len(cu)), unit="D")).astype(
        "datetime64[us]"
    )
    return tx, ix, cu


def _frame(tx, ix, cu, as_of, spec) -> pd.DataFrame:
    e = build_features(
        ibis.memtable(tx), None if ix is None else ibis.memtable(ix), None if cu is None else ibis.memtable(cu),
        as_of=as_of, spec=spec,
    )
    return e.to_pandas().sort_values("customer_id").reset_index(drop=True)


@pytest.fixture(scope="module")
def data():
    return _random_data()


@pytest.mark.parametrize("as_of", [dt.date(2023, 9, 13), dt.date(2024, 4, 7)])  # a Wednesday, a Sunday
@pytest.mark.parametrize("unit", ["D", "W"])
def test_rows_after_as_of_change_nothing(data, as_of, unit):
    tx, ix, cu = data
    end = pd.Timestamp(as_of) + pd.Timedelta(days=1)
    spec = FeatureSpec(time_unit=unit, windows_days=(30, 90, 180))
    full = _frame(tx, ix, cu, as_of, spec)
    cut = _frame(tx[tx.ordered_at < end], ix[ix.occurred_at < end], cu[cu.joined_at < end], as_of, spec)
    pd.testing.assert_frame_equal(full, cut)
    assert not full.isna().any().any()
    assert list(full.columns) == list(spec.feature_columns)


def test_subset_of_customers_gets_the_same_rows(data):
    tx, ix, cu = data
    as_of, spec = dt.date(2024, 1, 31), FeatureSpec()
    full = _frame(tx, ix, cu, as_of, spec).set_index("customer_id")
    keep = {f"c{i:03d}" for i in range(0, 120, 7)}
    sub = _frame(
        tx[tx.customer_id.isin(keep)], ix[ix.customer_id.isin(keep)], cu[cu.customer_id.isin(keep)], as_of, spec
    ).set_index("customer_id")
    assert set(sub.index) <= keep
    pd.testing.assert_frame_equal(sub, full.loc[sub.index])


def test_matches_a_pandas_reference(data):
    tx, ix, cu = data
    as_of = dt.date(2024, 2, 29)
    spec = FeatureSpec(windows_days=(30, 180))
    got = _frame(tx, ix, cu, as_of, spec).set_index("customer_id")
    end = pd.Timestamp(as_of) + pd.Timedelta(days=1)
    t = tx[tx.ordered_at < end].assign(day=lambda d: d.ordered_at.dt.floor("D"))
    A = pd.Timestamp(as_of)
    orders = t.groupby(["customer_id", "order_id"]).agg(net=("amount", "sum"), day=("day", "min"))
    purchases = orders[orders.net > 0].reset_index()
    bought = t[(t.amount > 0) & t.product_id.notna()]
    products = bought.groupby(["customer_id", "order_id"]).product_id.nunique()  # per order that bought one
    daily = t.groupby(["customer_id", "day"]).amount.sum().reset_index()
    year_ago = A - pd.Timedelta(days=365)
    assert (got.origin_month == 2).all()
    for cid, g in t.groupby("customer_id"):
        row = got.loc[cid]
        assert row.net_spend == pytest.approx(g.amount.sum())
        assert row.total_spend == pytest.approx(g.amount.clip(lower=0).sum())
        p = purchases[purchases.customer_id == cid]
        assert row.n_orders == len(p)
        assert row.n_refund_orders == (orders.loc[cid].net < 0).sum()
        days = np.sort(daily[daily.customer_id == cid].day.unique())
        gaps = np.diff(days).astype("timedelta64[D]").astype(float)
        assert row.ipi_std_days == pytest.approx(gaps.std() if len(gaps) else 0.0)
        assert row.ipi_cv == pytest.approx(gaps.std() / gaps.mean() if len(gaps) else 0.0)
        for w in (90, 180):
            in_ly = lambda d: (d > year_ago) & (d <= year_ago + pd.Timedelta(days=w))  # noqa: E731
            assert row[f"spend_ly_{w}d"] == pytest.approx(g.amount[in_ly(g.day)].sum())
            assert row[f"orders_ly_{w}d"] == in_ly(p.day).sum()
        n_prod = products.loc[cid] if cid in products.index.get_level_values(0) else pd.Series(dtype=float)
        assert row.products_per_order == pytest.approx(n_prod.mean() if len(n_prod) else 0.0)
        assert row.days_since_last_purchase == (A - days[-1]).days
        for w in spec.windows_days:
            lo = A - pd.Timedelta(days=w - 1)
            assert row[f"orders_{w}d"] == (p.day >= lo).sum()
            assert row[f"spend_{w}d"] == pytest.approx(g.amount[g.day >= lo].sum())
        assert row.n_products == g[g.amount > 0].product_id.nunique()
    i = ix[ix.occurred_at < end].assign(day=lambda d: d.occurred_at.dt.floor("D"), et=lambda d: d.event_type.str.lower())
    for cid, g in i.groupby("customer_id"):
        row = got.loc[cid]
        for w in spec.windows_days:
            r = g[g.day >= A - pd.Timedelta(days=w - 1)]
            assert row[f"events_{w}d"] == len(r) and row[f"active_days_{w}d"] == r.day.nunique()
        recent = (g.day >= A - pd.Timedelta(days=29)).sum() / 30
        prior = ((g.day >= A - pd.Timedelta(days=179)) & (g.day < A - pd.Timedelta(days=29))).sum() / 150
        assert row.events_trend == pytest.approx((recent - prior) / (recent + prior) if recent + prior else 0.0)
        r = g[g.day >= A - pd.Timedelta(days=179)]
        for e in EVENT_TYPES:
            assert row[f"n_{e}_180d"] == (r.et == e).sum()
        r90 = g[g.day >= A - pd.Timedelta(days=89)]
        assert row.social_actions_90d == r90.et.isin(["share", "referral"]).sum()
        assert row.engaged_no_purchase == int(row.has_purchased == 0 and len(r90) > 0)
        assert row.days_since_last_interaction == (A - g.day.max()).days
    assert got.engagement_score.between(0, 1, inclusive="left").all()
    assert got.refund_share.between(0, 1).all() and got.top_channel_share.between(0, 1).all()
    assert got.spend_trend.between(-1, 1).all() and got.events_trend.between(-1, 1).all()
    assert (got.ipi_cv >= 0).all() and (got.products_per_order >= 0).all()
    assert (got.orders_ly_90d > 0).any() and (got.events_trend != 0).any()  # the windows hold data


def test_expressions_are_lazy_and_compile_without_data():
    tx = ibis.table(
        {"customer_id": "string", "order_id": "string", "ordered_at": "timestamp", "amount": "float64",
         "channel": "string", "quantity": "float64", "product_id": "string"},
        name="transactions",
    )
    ix = ibis.table({"customer_id": "string", "occurred_at": "timestamp", "event_type": "string"}, name="interactions")
    cu = ibis.table({"customer_id": "string", "joined_at": "timestamp"}, name="customers")
    spec = FeatureSpec(time_unit="W")
    f = build_features(tx, ix, cu, as_of=dt.date(2024, 1, 1), spec=spec)
    lab = build_labels(tx, as_of=dt.date(2024, 1, 1), horizon_days=90)
    ch = calibration_holdout(tx, ix, cu, origin=dt.date(2024, 1, 1), horizon_days=90, spec=spec)
    for e in (f, lab, ch):
        assert isinstance(e, ir.Table)
        assert "SELECT" in ibis.to_sql(e, dialect="duckdb")
    assert tuple(f.columns) == spec.feature_columns
