"""Operators' funnel per monthly cohort and acquisition channel (:func:`funnel_metrics`), its roll-ups and the
optional reach table.

A cohort = customers who joined in a calendar month through an acquisition channel, each followed for
``window_days`` after joining (data up to ``as_of``):

- diversion_rate: members / people reached on public platforms (needs the optional reach table
  ``month, acquisition_channel, reached``; NaN without it);
- first_purchase_conversion: members whose first purchase order falls within the window / members;
- repurchase_ratio: purchase orders within the window / members who bought within it (1.0 = one
  order each);
- interaction_rate: members with at least one interaction other than group_join in the window / members;
- share_rate: members who shared or referred in the window / members.

A cohort is complete when the window of its last day ends by ``as_of``; incomplete cohorts are
flagged and left out of roll-ups asked for complete cohorts only. Without a customers table a customer's
join is their first transaction, the channel is "unknown" and first-purchase conversion is NaN
(join_known False); without interactions the interaction and share rates are NaN, not 0.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from tiering.exceptions import ConfigError
from tiering.validation import ValidatedTables

FUNNEL_COUNTS = ("members", "reached", "converted", "orders_in_window", "interacted", "shared")
FUNNEL_RATES = ("diversion_rate", "first_purchase_conversion", "repurchase_ratio", "interaction_rate", "share_rate")


def _cut(as_of: dt.date) -> dt.datetime:
    return dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time())


def _members(tables: ValidatedTables, tx, cut):
    """Who joined before ``cut``: customer_id, joined_at, acquisition_channel and join month, from the customers
    table; without one, each customer of ``tx`` joins with their first transaction through channel "unknown"."""
    import ibis

    if tables.customers is not None:
        c = tables.customers.filter(tables.customers.joined_at < cut)
        channel = (
            c.acquisition_channel.cast("string").fill_null("unknown") if "acquisition_channel" in c.columns else ibis.literal("unknown")
        )
        members = c.select(customer_id=c.customer_id.cast("string"), joined_at=c.joined_at, acquisition_channel=channel)
    else:
        first = tx.group_by(customer_id=tx.customer_id.cast("string")).agg(joined_at=tx.ordered_at.min())
        members = first.mutate(acquisition_channel=ibis.literal("unknown"))
    return members.mutate(month=members.joined_at.truncate("M").date())


def funnel_metrics(tables: ValidatedTables, *, as_of: dt.date, window_days: int = 30, reach: pd.DataFrame | None = None) -> pd.DataFrame:
    """Funnel counts and rates per (join month, acquisition channel), from data at or before ``as_of``.

    Columns: month (YYYY-MM), acquisition_channel, the counts of FUNNEL_COUNTS, the rates of
    FUNNEL_RATES and window_complete. Aggregated in the engine (Ibis); only the small table
    comes back.
    """
    import ibis

    cut = ibis.literal(_cut(as_of), type="timestamp")
    window = ibis.interval(days=int(window_days))
    tx = tables.transactions.filter(tables.transactions.ordered_at < cut)
    orders = tx.group_by(customer_id=tx.customer_id.cast("string"), order_id=tx.order_id.cast("string")).agg(
        net=tx.amount.sum(), at=tx.ordered_at.min()
    )
    orders = orders.filter(orders.net > 0)
    members = _members(tables, tx, cut)
    o = members.join(orders, "customer_id").filter(lambda t: t.at < t.joined_at + window)
    per_buyer = o.group_by("customer_id").agg(orders_in_window=o.count())
    m = members.left_join(per_buyer, "customer_id").select(members, per_buyer.orders_in_window)
    if tables.interactions is not None:
        ix = tables.interactions.filter(tables.interactions.occurred_at < cut)
        ix = ix.select(
            customer_id=ix.customer_id.cast("string"), occurred_at=ix.occurred_at, event_type=ix.event_type.cast("string").lower()
        )
        e = members.select("customer_id", "joined_at").join(ix, "customer_id")
        e = e.filter(e.occurred_at < e.joined_at + window)
        per_ix = e.group_by("customer_id").agg(
            n_interactions=e.count(where=e.event_type != "group_join"), n_social=e.count(where=e.event_type.isin(["share", "referral"]))
        )
        m = m.left_join(per_ix, "customer_id").select(m, per_ix.n_interactions, per_ix.n_social)
    else:
        m = m.mutate(n_interactions=ibis.literal(0), n_social=ibis.literal(0))
    agg = (
        m.group_by("month", "acquisition_channel")
        .agg(
            members=m.count(),
            converted=m.count(where=m.orders_in_window.fill_null(0) > 0),
            orders_in_window=m.orders_in_window.fill_null(0).sum(),
            interacted=m.count(where=m.n_interactions.fill_null(0) > 0),
            shared=m.count(where=m.n_social.fill_null(0) > 0),
        )
        .to_pandas()
    )
    agg["month"] = pd.to_datetime(agg["month"]).dt.strftime("%Y-%m")
    agg["reached"] = np.nan
    if tables.interactions is None:  # unknown, not zero
        agg["interacted"], agg["shared"] = np.nan, np.nan
    agg["join_known"] = tables.customers is not None  # else joined = first purchase: conversion 100% by construction
    if reach is not None:
        agg = _with_reach(agg, reach)
    month_end = (pd.to_datetime(agg["month"]) + pd.offsets.MonthEnd(0)).dt.date
    agg["window_complete"] = [d + dt.timedelta(days=int(window_days)) <= as_of for d in month_end]
    agg = agg.sort_values(["month", "acquisition_channel"]).reset_index(drop=True)
    return _rates(agg)[["month", "acquisition_channel", *FUNNEL_COUNTS, *FUNNEL_RATES, "window_complete", "join_known"]]


def _with_reach(agg: pd.DataFrame, reach: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("month", "acquisition_channel", "reached") if c not in reach.columns]
    if missing:
        raise ConfigError(
            f"The reach table lacks columns {missing}; got {list(reach.columns)}. It needs month (YYYY-MM), "
            "acquisition_channel and reached (people reached on the public platform that month)."
        )
    r = reach.assign(
        month=pd.to_datetime(reach["month"].astype(str)).dt.strftime("%Y-%m"), acquisition_channel=reach["acquisition_channel"].astype(str)
    )
    r = r.groupby(["month", "acquisition_channel"], as_index=False)["reached"].sum()
    return agg.drop(columns="reached").merge(r, on=["month", "acquisition_channel"], how="left")


def _rates(t: pd.DataFrame) -> pd.DataFrame:
    t = t.copy()
    members = t["members"].where(t["members"] > 0)
    t["diversion_rate"] = t["members"] / t["reached"].where(t["reached"] > 0)
    t["first_purchase_conversion"] = (t["converted"] / members).where(t["join_known"])
    t["repurchase_ratio"] = t["orders_in_window"] / t["converted"].where(t["converted"] > 0)
    t["interaction_rate"] = t["interacted"] / members
    t["share_rate"] = t["shared"] / members
    return t


def funnel_rollup(table: pd.DataFrame, by: str, *, complete_only: bool = False) -> pd.DataFrame:
    """Sum the funnel counts over ``by`` ('month' or 'acquisition_channel') and recompute the rates."""
    t = table[table["window_complete"]] if complete_only else table
    agg = t.groupby(by, as_index=False).agg(
        **{c: (c, lambda x: x.sum() if x.notna().all() else np.nan) for c in FUNNEL_COUNTS},  # unknown stays unknown
        window_complete=("window_complete", "all"),
        join_known=("join_known", "all"),
    )
    return _rates(agg)[[by, *FUNNEL_COUNTS, *FUNNEL_RATES, "window_complete", "join_known"]]


def read_reach(path: str | Path) -> pd.DataFrame:
    """The reach table (month, acquisition_channel, reached: people reached on the public platform) from a CSV or
    Parquet file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            f"report.reach_path '{p}' does not exist (looked in {Path.cwd()}). Point it at a CSV or Parquet file "
            "with columns month, acquisition_channel, reached, or remove it to leave the diversion rate out."
        )
    return pd.read_csv(p) if p.suffix.lower() == ".csv" else pd.read_parquet(p)
