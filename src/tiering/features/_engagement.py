"""Interaction (engagement) features per customer: first/last day over all rows, the rest from the
look-back horizon grouped once by (customer, day); and the referral label (customers brought in over a horizon)
where the customers table names referrers."""

from __future__ import annotations

import datetime as dt
from typing import Any

import ibis
import ibis.expr.types as ir

from tiering.features._spec import (
    ACTIVE_DAYS_WEIGHT,
    EVENT_WEIGHTS,
    SCORE_RECENT_DAYS,
    SCORE_SCALE,
    SOCIAL_WINDOW_DAYS,
    FeatureSpec,
    cutoff,
    day_number,
    epoch_day,
    guard_as_of,
    left_join_on_id,
    trend,
)
from tiering.schemas import CUSTOMERS, EVENT_TYPES, REFERRAL_LABEL

assert CUSTOMERS.referrer_column is not None
REFERRER_COLUMN: str = CUSTOMERS.referrer_column  # customers: the customer_id of the member who brought this customer in


def engagement_score(counts_90d: dict[str, Any], active_days_30d: Any) -> Any:
    """1 - exp(-z / 4), z = sum_e weight_e * log1p(n_e over 90 days) + 0.5 * log1p(active days in 30).

    Data-independent (no quantiles, no fitted scale), in [0, 1), 0 without interactions. Works on
    Ibis numeric expressions and on numpy arrays / floats.
    """
    import numpy as np

    is_expr = isinstance(active_days_30d, ir.Value)
    log1p = (lambda x: (x + 1).ln()) if is_expr else np.log1p
    z = ACTIVE_DAYS_WEIGHT * log1p(active_days_30d)
    for e, w in EVENT_WEIGHTS.items():
        z = z + w * log1p(counts_90d[e])
    if is_expr:
        return 1 - (-z / SCORE_SCALE).exp()
    return 1 - np.exp(-z / SCORE_SCALE)


def interaction_features(interactions: Any, *, as_of: dt.date, spec: FeatureSpec) -> ir.Table:
    """One row per customer with an interaction at or before as_of.

    Columns: events_{w}d, events_trend, n_{event}_{W}d (W = largest window), active_days_{w}d,
    social_actions_90d, engagement_score, and helpers ix_first_dn, ix_last_dn (day numbers) and
    ix_events_90d (events of any type over the last 90 days).
    An event type outside EVENT_TYPES counts in events_{w}d and active days only.

    Plan: first/last interaction day from a narrow pass over all rows; everything else is
    windowed, so it comes from the rows of the look-back horizon only (largest window, or 90
    days or events_trend's span if longer), grouped once by (customer, day) with one count per event type.
    """
    ix = guard_as_of(interactions, "interactions", "occurred_at", as_of)
    cf = left_join_on_id(_interaction_span(ix), _interaction_windows(ix, as_of, spec))
    return cf.select(**_interaction_columns(cf, spec))


def _interaction_span(ix: ir.Table) -> ir.Table:
    """Per customer: ix_first_dn, ix_last_dn, the first and last interaction day over all rows
    (times turned into day numbers after the group-by, once per customer)."""
    cid = ix.customer_id.cast("string").name("customer_id")
    span = ix.group_by(cid).agg(_first=ix.occurred_at.min(), _last=ix.occurred_at.max())
    return span.select("customer_id", ix_first_dn=day_number(span._first), ix_last_dn=day_number(span._last))


def _interaction_windows(ix: ir.Table, as_of: dt.date, spec: FeatureSpec) -> ir.Table:
    """Per customer, the windowed sums from the rows of the look-back horizon grouped by (customer, day):
    events_{w}d, _e_prior (events_trend's prior span), n_{event}_{W}d, active_days_{w}d, and the
    engagement score's inputs _s_{event} (90 days), _s_active (active days in 30), _s_n (events in 90)."""
    A = epoch_day(as_of)
    windows = spec.windows_days
    W = spec.max_window_days
    short, long_ = spec.trend_days
    horizon = max(W, long_, SOCIAL_WINDOW_DAYS, SCORE_RECENT_DAYS)
    start = ibis.literal(dt.datetime.combine(as_of - dt.timedelta(days=horizon - 1), dt.time()), type="timestamp")
    rx = ix.filter(ix.occurred_at >= start)
    et = rx.event_type.cast("string").lower()
    aggs: dict[str, Any] = {"n": rx.count()}
    for e in EVENT_TYPES:
        aggs[f"c_{e}"] = rx.count(where=et == e)
    daily = rx.group_by([rx.customer_id.cast("string").name("customer_id"), rx.occurred_at.date().name("day")]).agg(**aggs)

    # sums of BIGINT counts are HUGEINT/DECIMAL in some engines (slow to fetch): sum as double, cast back;
    # the day numbered per (customer, day) row, not per event
    daily = daily.select("customer_id", dn=day_number(daily.day), **{c: daily[c].cast("float64") for c in aggs})

    # the daily rows are already cut to the horizon: a window as long as it needs no filter
    in_w = {w: (daily.dn > A - w) if w < horizon else None for w in (*windows, SOCIAL_WINDOW_DAYS, SCORE_RECENT_DAYS)}
    c_aggs: dict[str, Any] = {}
    for w in windows:
        c_aggs[f"events_{w}d"] = daily.n.sum(where=in_w[w])
    c_aggs["_e_prior"] = daily.n.sum(where=(daily.dn > A - long_) & (daily.dn <= A - short))
    for e in EVENT_TYPES:
        c_aggs[f"n_{e}_{W}d"] = daily[f"c_{e}"].sum(where=in_w[W])
    for w in windows:
        c_aggs[f"active_days_{w}d"] = daily.count(where=in_w[w])
    for e in EVENT_TYPES:
        c_aggs[f"_s_{e}"] = daily[f"c_{e}"].sum(where=in_w[SOCIAL_WINDOW_DAYS])
    c_aggs["_s_active"] = daily.count(where=in_w[SCORE_RECENT_DAYS])
    c_aggs["_s_n"] = daily.n.sum(where=in_w[SOCIAL_WINDOW_DAYS])
    return daily.group_by("customer_id").agg(**c_aggs)


def _interaction_columns(cf: ir.Table, spec: FeatureSpec) -> dict[str, Any]:
    """The output columns of interaction_features from the joined per-customer table, typed, nulls filled."""
    W = spec.max_window_days
    short, long_ = spec.trend_days
    counts90 = {e: cf[f"_s_{e}"].fill_null(0).cast("float64") for e in EVENT_TYPES}
    cols: dict[str, Any] = {
        "customer_id": cf.customer_id,
        "ix_first_dn": cf.ix_first_dn.cast("int64"),
        "ix_last_dn": cf.ix_last_dn.cast("int64"),
        "ix_events_90d": cf._s_n.fill_null(0).cast("int64"),
    }
    for w in spec.windows_days:
        cols[f"events_{w}d"] = cf[f"events_{w}d"].fill_null(0).cast("int64")
    cols["events_trend"] = trend(cf[f"events_{short}d"], cf._e_prior, (short, long_)).cast("float64")
    for e in EVENT_TYPES:
        cols[f"n_{e}_{W}d"] = cf[f"n_{e}_{W}d"].fill_null(0).cast("int64")
    for w in spec.windows_days:
        cols[f"active_days_{w}d"] = cf[f"active_days_{w}d"].fill_null(0).cast("int64")
    cols[f"social_actions_{SOCIAL_WINDOW_DAYS}d"] = (cf["_s_share"].fill_null(0) + cf["_s_referral"].fill_null(0)).cast("int64")
    cols["engagement_score"] = engagement_score(counts90, cf._s_active.fill_null(0).cast("float64")).cast("float64")
    return cols


def referral_labels(customers: Any, *, as_of: dt.date, horizon_days: int) -> ir.Table:
    """Per referrer (customer_id): referred_in_horizon (schemas.REFERRAL_LABEL), the customers who name them in
    customers.referred_by and joined on days as_of+1 .. as_of+horizon_days: whether a customer brought anyone in
    after the origin. Only referrers with such a join appear; the caller left-joins and fills 0."""
    ref = customers.filter(customers[REFERRER_COLUMN].notnull())
    start = ibis.literal(cutoff(as_of), type="timestamp")
    end = ibis.literal(cutoff(as_of + dt.timedelta(days=int(horizon_days))), type="timestamp")
    w = ref.filter((ref.joined_at >= start) & (ref.joined_at < end))
    lab = w.group_by(w[REFERRER_COLUMN].cast("string").name("customer_id")).agg(n=w.count())
    return lab.select("customer_id", **{REFERRAL_LABEL: lab.n.cast("int64")})
