"""The simulator's observable tables, drawn from the latent process: customers, transactions (orders and
refunds) and interactions, in contract columns and time order."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tiering.datasets._arrays import DAY_S, ids, pick, str_take, timestamps, to_seconds
from tiering.datasets._latent import Latent
from tiering.datasets._params import (
    ACQUISITION_CHANNELS,
    EVENT_CHANNEL_P,
    GG_P,
    MIX_REGULAR,
    MIX_SEED,
    N_PRODUCTS,
    ORDER_CHANNEL_P,
    ORDER_CHANNELS,
    REFERRAL_WINDOW_DAYS,
    REFUND_SHARE,
)
from tiering.schemas import EVENT_TYPES


def customers_table(lat: Latent, start: dt.date, cust_ids: pd.api.extensions.ExtensionArray, referrer: np.ndarray) -> pd.DataFrame:
    """The customers table: id, join time, acquisition channel and the referrer's id (``referrer``: its customer index,
    -1 for none; :func:`referrers`)."""
    return pd.DataFrame(
        {
            "customer_id": pd.Series(cust_ids, copy=False),
            "joined_at": timestamps(start, lat.join_s),
            "acquisition_channel": str_take(pd.array(list(ACQUISITION_CHANNELS), dtype="str"), lat.acq),
            "referred_by": pd.Series(cust_ids.take(referrer, allow_fill=True), copy=False),
        }
    )


def referrers(lat: Latent, interactions: pd.DataFrame, start: dt.date, cust_ids: pd.api.extensions.ExtensionArray) -> np.ndarray:
    """Per customer, the index of the member who brought them in, -1 for none: a customer acquired through the
    ``referral`` channel followed the latest referral interaction made in the REFERRAL_WINDOW_DAYS before their join
    (by someone who joined before them: a member's interactions start at their own join); none when there was no
    such referral (the first days). Drawn from the tables already simulated, without random numbers, so every other
    table stays as it was for a seed. Referrals are mostly the latent KOCs' (their mix holds 23 times the share of
    referrals), so the referral outcomes follow the KOCs still interacting."""
    ref = interactions["event_type"].to_numpy() == "referral"
    owner = pd.Index(cust_ids).get_indexer(interactions.loc[ref, "customer_id"])
    ev_s = (interactions.loc[ref, "occurred_at"].to_numpy() - np.datetime64(start, "us")) // np.timedelta64(1, "s")
    order = np.argsort(ev_s, kind="stable")
    ev_s, owner = ev_s[order], owner[order]
    out = np.full(len(lat.buyer), -1, dtype=np.int64)
    joiner = np.flatnonzero(lat.acq == ACQUISITION_CHANNELS.index("referral"))
    last = np.searchsorted(ev_s, lat.join_s[joiner], side="left") - 1  # the latest referral strictly before the join
    ok = last >= 0
    ok[ok] = ev_s[last[ok]] > lat.join_s[joiner[ok]] - REFERRAL_WINDOW_DAYS * DAY_S
    out[joiner[ok]] = owner[last[ok]]
    return out


@dataclass
class _Orders:
    """One element per order, in time order: its customer index, second from start and line values."""

    owner: np.ndarray
    seconds: np.ndarray
    values: np.ndarray
    quantity: np.ndarray
    product: np.ndarray
    channel: np.ndarray


def _orders(rng: np.random.Generator, lat: Latent, owner: np.ndarray, t_ord: np.ndarray) -> _Orders:
    """Order times with a diurnal time of day, Gamma-Gamma values, quantities, Zipf-like products and channels
    (each customer mostly orders through a preferred one)."""
    ord_s = to_seconds(rng, t_ord, lat.join_s[owner])
    order = np.argsort(ord_s, kind="stable")
    owner, ord_s = owner[order], ord_s[order]
    n_ord = len(owner)
    nu = lat.nu[owner]
    values = np.maximum(np.round(rng.gamma(GG_P, 1.0 / nu), 2), 1.0)
    quantity = 1 + rng.poisson(0.5 + 0.002 * np.minimum(GG_P / nu, 1000.0)).astype(np.int64)
    del nu
    zipf_w = 1.0 / np.arange(1, N_PRODUCTS + 1) ** 1.1
    product = rng.permutation(N_PRODUCTS)[rng.choice(N_PRODUCTS, size=n_ord, p=zipf_w / zipf_w.sum())]
    pref_channel = rng.choice(len(ORDER_CHANNELS), size=len(lat.buyer), p=ORDER_CHANNEL_P)
    channel = np.where(rng.random(n_ord) < 0.7, pref_channel[owner], rng.choice(len(ORDER_CHANNELS), size=n_ord, p=ORDER_CHANNEL_P))
    return _Orders(owner, ord_s, values, quantity, product, channel)


def _refunds(rng: np.random.Generator, ord_s: np.ndarray, span_s: int) -> tuple[np.ndarray, np.ndarray]:
    """The refunded orders (indices) and their refund seconds: a share of orders, 1 hour to ~2 weeks later,
    dropped when that falls after the end."""
    ref = np.flatnonzero(rng.random(len(ord_s)) < REFUND_SHARE)
    ref_s = ord_s[ref] + 3600 + (rng.exponential(5.0, size=len(ref)) * DAY_S).astype(np.int64)
    keep = ref_s < span_s
    return ref[keep], ref_s[keep]


def _order_ids(n_ord: int, ref: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """Order ids ("O000000001", ...) followed by the refund rows' ids ("R" + the refunded order's id)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    order_ids = ids("O", n_ord, 9)
    ref_ids = pc.binary_join_element_wise(pa.scalar("R"), pa.array(order_ids.take(ref)).cast(pa.string()), "")
    return pd.array(pa.concat_arrays([pa.array(order_ids).cast(pa.string()), ref_ids]), dtype="str")


def _order_stats(orders: _Orders, ref: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Per customer: orders, refunds, spend net of refunds, first and last order second."""
    owner, values = orders.owner, orders.values
    stats = {
        "n_orders": np.bincount(owner, minlength=n).astype(np.int64),
        "n_refunds": np.bincount(owner[ref], minlength=n).astype(np.int64),
        "total_spend": np.round(
            np.bincount(owner, weights=values, minlength=n) - np.bincount(owner[ref], weights=values[ref], minlength=n), 2
        ),
        "first_s": np.full(n, np.iinfo(np.int64).max),
        "last_s": np.full(n, -1, dtype=np.int64),
    }
    np.minimum.at(stats["first_s"], owner, orders.seconds)
    np.maximum.at(stats["last_s"], owner, orders.seconds)
    return stats


def transactions_table(
    rng: np.random.Generator,
    lat: Latent,
    owner: np.ndarray,
    t_ord: np.ndarray,
    start: dt.date,
    span_s: int,
    cust_ids: pd.api.extensions.ExtensionArray,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The transactions table (orders and refunds, in time order) and per-customer order statistics."""
    orders = _orders(rng, lat, owner, t_ord)
    ref, ref_s = _refunds(rng, orders.seconds, span_s)
    all_ids = _order_ids(len(orders.owner), ref)
    stats = _order_stats(orders, ref, len(lat.buyer))
    tx_order = np.argsort(np.concatenate([orders.seconds, ref_s]), kind="stable")

    def col(a: np.ndarray, sign: int = 1) -> np.ndarray:
        return np.concatenate([a, sign * a[ref]])[tx_order]

    transactions = pd.DataFrame(
        {
            "customer_id": str_take(cust_ids, col(orders.owner)),
            "order_id": str_take(all_ids, tx_order),
            "ordered_at": timestamps(start, np.concatenate([orders.seconds, ref_s])[tx_order]),
            "amount": col(orders.values, -1).astype(np.float64),
            "channel": str_take(pd.array(list(ORDER_CHANNELS), dtype="str"), col(orders.channel)),
            "quantity": col(orders.quantity, -1).astype(np.int64),
            "product_id": str_take(ids("P", N_PRODUCTS, 4), col(orders.product)),
        }
    )
    return transactions, stats


def _group_joins(rng: np.random.Generator, lat: Latent, span: float) -> tuple[np.ndarray, np.ndarray]:
    """group_join events (customer index, day): at most once per customer, within days of joining; likelier for
    the engaged and seeds."""
    gj_p = np.minimum(0.35 + 0.3 * (lat.z_eng > 0) + 0.25 * lat.is_seed, 0.95)
    gj = np.flatnonzero(rng.random(len(lat.buyer)) < gj_p)
    gj_t = lat.join_t[gj] + rng.exponential(3.0, size=len(gj))
    return gj[gj_t < span], gj_t[gj_t < span]


def interactions_table(
    rng: np.random.Generator, lat: Latent, span: float, start: dt.date, cust_ids: pd.api.extensions.ExtensionArray
) -> tuple[pd.DataFrame, np.ndarray]:
    """The interactions table (in time order) and each customer's engagement end (days from start)."""
    n = len(lat.buyer)
    join_t = lat.join_t
    eng_end = np.minimum(join_t + rng.exponential(np.where(lat.buyer, 240.0, 120.0)), span)
    active = eng_end - join_t
    n_ev = rng.poisson(lat.eng * active).astype(np.int64)
    ev_owner = np.repeat(np.arange(n), n_ev)
    ev_t = join_t[ev_owner] + rng.random(len(ev_owner)) * active[ev_owner]
    mixes = np.array([[MIX_REGULAR[e] for e in EVENT_TYPES], [MIX_SEED[e] for e in EVENT_TYPES]])
    ev_type = pick(rng, mixes / mixes.sum(axis=1, keepdims=True), lat.is_seed[ev_owner].astype(np.int64))
    gj, gj_t = _group_joins(rng, lat, span)
    ev_owner = np.concatenate([ev_owner, gj])
    ev_s = to_seconds(rng, np.concatenate([ev_t, gj_t]), lat.join_s[ev_owner])
    del ev_t
    ev_type = np.concatenate([ev_type, np.full(len(gj), EVENT_TYPES.index("group_join"))])
    ch_p = np.array([EVENT_CHANNEL_P[e] for e in EVENT_TYPES])
    ev_channel = pick(rng, ch_p / ch_p.sum(axis=1, keepdims=True), ev_type)
    live = ev_type == EVENT_TYPES.index("live_watch")
    ev_value = np.ones(len(ev_owner))
    ev_value[live] = np.round(np.minimum(rng.lognormal(np.log(8.0), 1.0, size=int(live.sum())), 240.0), 1)
    o = np.argsort(ev_s, kind="stable")
    interactions = pd.DataFrame(
        {
            "customer_id": str_take(cust_ids, ev_owner[o]),
            "occurred_at": timestamps(start, ev_s[o]),
            "event_type": str_take(pd.array(list(EVENT_TYPES), dtype="str"), ev_type[o]),
            "channel": str_take(pd.array(list(ORDER_CHANNELS), dtype="str"), ev_channel[o]),
            "value": ev_value[o],
        }
    )
    return interactions, eng_end
