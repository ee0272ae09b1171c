"""Assembling the feature frame at an as_of date, holdout labels after it, and calibration/holdout pairs."""

from __future__ import annotations

import datetime as dt
from typing import Any

import ibis
import ibis.expr.types as ir

from tiering.exceptions import ConfigError
from tiering.features._engagement import interaction_features
from tiering.features._rfm import transaction_features
from tiering.features._spec import (
    LAST_YEAR_WINDOWS_DAYS,
    SOCIAL_WINDOW_DAYS,
    AsOfTable,
    FeatureSpec,
    as_date,
    bound_to_as_of,
    const,
    cutoff,
    epoch_day,
    left_join_on_id,
    money,
)
from tiering.schemas import EVENT_TYPES

_FAR = 10**9  # sentinel day number, larger than any real one


def _outer_join_on_id(left: ir.Table, right: ir.Table) -> ir.Table:
    """Full outer join of two one-row-per-customer tables on customer_id (one id column kept)."""
    left = left.view()  # a join boundary: Ibis cannot chain a join on a computed (coalesced) key
    j = left.outer_join(right, left.customer_id == right.customer_id)
    return j.select(
        ibis.coalesce(left.customer_id, right.customer_id).name("customer_id"),
        *[left[c] for c in left.columns if c != "customer_id"],
        *[right[c] for c in right.columns if c != "customer_id"],
    )


def _customer_bucket(table: ir.Table | None, k: int, buckets: int) -> ir.Table | None:
    """The rows of ``table`` whose customer falls in bucket ``k`` of ``buckets``: a hash of the id as text, so
    a customer's transactions, interactions and join row land in the same bucket."""
    if table is None or buckets == 1:
        return table
    h = table.customer_id.cast("string").hash() % buckets  # signed: a residue may be negative
    return table.filter((h + buckets) % buckets == k)


def build_features(
    transactions: ir.Table,
    interactions: ir.Table | None = None,
    customers: ir.Table | None = None,
    *,
    as_of: dt.date,
    spec: FeatureSpec,
    bucket: tuple[int, int] = (0, 1),
) -> ir.Table:
    """The feature frame (unexecuted Ibis expression): one row per customer known at as_of.

    Every input is first cut to the whole as_of day (time < as_of + 1 day). Customers are those
    with joined_at <= as_of plus anyone with a transaction or interaction at or before as_of.
    Columns: ``spec.feature_columns`` (documented in tiering.features). ``bucket=(k, n)``: only
    the customers of bucket k of n (a hash of the id), exactly their rows of the whole frame.
    """
    transactions, interactions, customers = (_customer_bucket(t, *bucket) for t in (transactions, interactions, customers))
    as_of = as_date(as_of)
    t = _per_customer(transactions, interactions, customers, as_of, spec)
    A = epoch_day(as_of)
    first_activity = ibis.least(_filled(t, "joined_dn", _FAR), _filled(t, "tx_first_dn", _FAR), _filled(t, "ix_first_dn", _FAR))
    t = t.mutate(_tenure=(ibis.literal(A) - first_activity).cast("int64"))
    out: dict[str, Any] = {
        "customer_id": t.customer_id.cast("string"),
        "as_of": ibis.literal(as_of, type="date"),
        "origin_month": const(as_of.month, "int64"),
        **_purchase_columns(t, A, spec),
        **_engagement_columns(t, A, spec, has_interactions=interactions is not None),
    }
    return t.select(**{c: out[c] for c in spec.feature_columns})


def _per_customer(
    transactions: ir.Table, interactions: ir.Table | None, customers: ir.Table | None, as_of: dt.date, spec: FeatureSpec
) -> ir.Table:
    """Transaction features, outer-joined with the interaction features and the customers' first
    joined day (joined_dn) when those inputs are given; every input cut to as_of first."""
    tx_b = bound_to_as_of(transactions, "transactions", "ordered_at", as_of)
    t = transaction_features(tx_b, as_of=as_of, spec=spec)
    if interactions is not None:
        ix_b = bound_to_as_of(interactions, "interactions", "occurred_at", as_of)
        t = _outer_join_on_id(t, interaction_features(ix_b, as_of=as_of, spec=spec))
    if customers is not None:
        cu = bound_to_as_of(customers, "customers", "joined_at", as_of).table
        cuf = cu.group_by(cu.customer_id.cast("string").name("customer_id")).agg(
            joined_dn=cu.joined_at.min().date().epoch_days().cast("int64")
        )
        t = _outer_join_on_id(t, cuf)
    return t


def _filled(t: ir.Table, name: str, default: Any) -> Any:
    """Column ``name`` of ``t`` with nulls as ``default``; the typed constant when ``t`` lacks it."""
    if name in t.columns:
        return t[name].fill_null(default)
    return const(default, "float64" if isinstance(default, float) else "int64")


def _purchase_columns(t: ir.Table, A: int, spec: FeatureSpec) -> dict[str, Any]:
    """The transaction-based output columns and tenure_days (non-buyers get 0, or tenure for the day counts)."""
    buyer = t.tx_first_dn.notnull()
    tenure = t._tenure
    out: dict[str, Any] = {}
    for c in ("frequency", "recency", "T", "monetary_value"):
        out[c] = _filled(t, c, 0.0).cast("float64")
    out["has_purchased"] = buyer.cast("int64")
    out["n_orders"] = _filled(t, "n_orders", 0).cast("int64")
    out["n_refund_orders"] = _filled(t, "n_refund_orders", 0).cast("int64")
    for c in ("total_spend", "net_spend", "refund_share", "avg_order_value"):
        out[c] = _filled(t, c, 0.0).cast("float64")
    out["tenure_days"] = tenure
    out["days_since_last_purchase"] = ibis.ifelse(buyer, ibis.literal(A) - t.tx_last_dn, tenure).cast("int64")
    out["days_since_first_purchase"] = ibis.ifelse(buyer, ibis.literal(A) - t.tx_first_dn, tenure).cast("int64")
    for c in ("ipi_mean_days", "ipi_std_days", "ipi_cv"):
        out[c] = _filled(t, c, 0.0).cast("float64")
    for w in spec.windows_days:
        out[f"orders_{w}d"] = _filled(t, f"orders_{w}d", 0).cast("int64")
    for w in spec.windows_days:
        out[f"spend_{w}d"] = _filled(t, f"spend_{w}d", 0.0).cast("float64")
    out["spend_trend"] = _filled(t, "spend_trend", 0.0).cast("float64")
    for w in LAST_YEAR_WINDOWS_DAYS:
        out[f"spend_ly_{w}d"] = _filled(t, f"spend_ly_{w}d", 0.0).cast("float64")
        out[f"orders_ly_{w}d"] = _filled(t, f"orders_ly_{w}d", 0).cast("int64")
    out["n_products"] = _filled(t, "n_products", 0).cast("int64")
    out["products_per_order"] = _filled(t, "products_per_order", 0.0).cast("float64")
    out["n_channels"] = _filled(t, "n_channels", 0).cast("int64")
    out["top_channel_share"] = _filled(t, "top_channel_share", 0.0).cast("float64")
    return out


def _engagement_columns(t: ir.Table, A: int, spec: FeatureSpec, *, has_interactions: bool) -> dict[str, Any]:
    """The interaction-based output columns (0 without interactions; days since the last one: tenure)."""
    W = spec.max_window_days
    tenure = t._tenure
    out: dict[str, Any] = {}
    for w in spec.windows_days:
        out[f"events_{w}d"] = _filled(t, f"events_{w}d", 0).cast("int64")
    out["events_trend"] = _filled(t, "events_trend", 0.0).cast("float64")
    for e in EVENT_TYPES:
        out[f"n_{e}_{W}d"] = _filled(t, f"n_{e}_{W}d", 0).cast("int64")
    for w in spec.windows_days:
        out[f"active_days_{w}d"] = _filled(t, f"active_days_{w}d", 0).cast("int64")
    if has_interactions:
        out["days_since_last_interaction"] = ibis.ifelse(t.ix_last_dn.notnull(), ibis.literal(A) - t.ix_last_dn, tenure).cast("int64")
    else:
        out["days_since_last_interaction"] = tenure
    out["interaction_rate_per_30d"] = (
        _filled(t, f"events_{W}d", 0).cast("float64") * 30.0 / ibis.least(ibis.literal(W), tenure + 1).cast("float64")
    )
    social = f"social_actions_{SOCIAL_WINDOW_DAYS}d"
    out[social] = _filled(t, social, 0).cast("int64")
    buyer = t.tx_first_dn.notnull()
    out["engaged_no_purchase"] = ((~buyer) & (_filled(t, "ix_events_90d", 0) > 0)).cast("int64")
    out["engagement_score"] = _filled(t, "engagement_score", 0.0).cast("float64") if has_interactions else const(0, "float64")
    return out


def build_labels(transactions: ir.Table, *, as_of: dt.date, horizon_days: int) -> ir.Table:
    """Holdout targets from the days as_of+1 .. as_of+horizon_days inclusive.

    Columns: customer_id, holdout_spend (net amount, refunds included), holdout_orders (orders
    whose net amount in the window is > 0), purchased_in_horizon (1 when holdout_orders > 0).
    Only customers with a transaction in the window; the caller left-joins and fills 0.
    """
    as_of = as_date(as_of)
    if int(horizon_days) <= 0:
        raise ConfigError(f"horizon_days must be a positive number of days; got {horizon_days!r}.")
    if isinstance(transactions, AsOfTable):
        transactions = transactions.table
    start = ibis.literal(cutoff(as_of), type="timestamp")
    end = ibis.literal(cutoff(as_of + dt.timedelta(days=int(horizon_days))), type="timestamp")
    w = transactions.filter((transactions.ordered_at >= start) & (transactions.ordered_at < end))
    orders = w.group_by([w.customer_id.cast("string").name("customer_id"), w.order_id.cast("string").name("order_id")]).agg(
        net=money(w.amount).sum()
    )
    lab = orders.group_by("customer_id").agg(holdout_spend=orders.net.sum(), holdout_orders=orders.count(where=orders.net > 0))
    return lab.select(
        "customer_id",
        holdout_spend=lab.holdout_spend.cast("float64"),
        holdout_orders=lab.holdout_orders.cast("int64"),
        purchased_in_horizon=(lab.holdout_orders > 0).cast("int64"),
    )


def calibration_holdout(
    transactions: ir.Table,
    interactions: ir.Table | None,
    customers: ir.Table | None,
    *,
    origin: dt.date,
    horizon_days: int,
    spec: FeatureSpec,
) -> ir.Table:
    """Features at ``origin`` left-joined with labels from (origin, origin + horizon_days], zeros filled.

    Customers first seen after origin are not in the frame (they have no features at origin).
    """
    origin = as_date(origin)
    feats = build_features(transactions, interactions, customers, as_of=origin, spec=spec)
    labels = build_labels(transactions, as_of=origin, horizon_days=horizon_days)
    j = left_join_on_id(feats, labels)
    return j.select(
        *[j[c] for c in spec.feature_columns],
        holdout_spend=j.holdout_spend.fill_null(0.0).cast("float64"),
        holdout_orders=j.holdout_orders.fill_null(0).cast("int64"),
        purchased_in_horizon=j.purchased_in_horizon.fill_null(0).cast("int64"),
    )
