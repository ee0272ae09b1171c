"""The simulator of private-domain customers: its entry point, its result and reading a written result back."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tiering.datasets._arrays import DAY_S, ids
from tiering.datasets._latent import latent, purchases
from tiering.datasets._tables import customers_table, interactions_table, referrers, transactions_table
from tiering.datasets._truth import truth_table
from tiering.exceptions import ConfigError

_TABLES = ("customers", "transactions", "interactions", "truth")


@dataclass
class SimulatedData:
    """Simulated tables in contract columns plus the latent per-customer truth.

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
    """

    customers: pd.DataFrame
    transactions: pd.DataFrame
    interactions: pd.DataFrame
    truth: pd.DataFrame

    def write(self, out_dir: str | os.PathLike[str]) -> Path:
        """Write the four tables as ``<name>.parquet`` under ``out_dir`` (created); return the folder."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name in _TABLES:
            getattr(self, name).to_parquet(out / f"{name}.parquet", index=False)
        return out


def read_simulated(directory: str | os.PathLike[str]) -> SimulatedData:
    """Read tables written by :meth:`SimulatedData.write`."""
    d = Path(directory)
    missing = [n for n in _TABLES if not (d / f"{n}.parquet").exists()]
    if missing:
        raise ConfigError(
            f"No simulated data in {d}: missing {', '.join(m + '.parquet' for m in missing)}. "
            f"Write it with `tiering simulate --out {d}` or SimulatedData.write()."
        )
    return SimulatedData(**{n: pd.read_parquet(d / f"{n}.parquet") for n in _TABLES})


def _check_arguments(n_customers: int, start: dt.date, end: dt.date, purchase_rate_scale: float, interaction_rate_scale: float) -> None:
    if n_customers < 1:
        raise ConfigError(f"n_customers must be >= 1, got {n_customers}.")
    if end < start:
        raise ConfigError(f"end ({end}) is before start ({start}).")
    if purchase_rate_scale <= 0 or interaction_rate_scale <= 0:
        raise ConfigError(
            f"purchase_rate_scale and interaction_rate_scale must be > 0, got {purchase_rate_scale} and {interaction_rate_scale}."
        )


def simulate(
    n_customers: int, start: dt.date, end: dt.date, seed: int = 0, *, purchase_rate_scale: float = 1.0, interaction_rate_scale: float = 1.0
) -> SimulatedData:
    """Simulate private-domain customers from ``start`` to ``end`` (both days included); the latent truth
    comes with them (:class:`SimulatedData` lists its columns).

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
    - Referrals that bring someone in: a customer acquired through the referral channel has ``referred_by``, the
      member whose referral interaction was the latest in the 14 days before the join (none in the first days);
      the other customers have none. Drawn without random numbers from the interactions above.

    Volume over two years at defaults: ~27% buyers, ~10 transaction rows (orders plus ~0.3
    refunds) and ~10 interactions per customer, so 1M customers give ~10M of each. Transactions
    per customer by ``purchase_rate_scale``: 0.25 -> 3.4 (buyers: mean 12, p99 ~170), 0.5 -> 5.8,
    2 -> 18 (dropout caps the growth); interactions scale linearly with ``interaction_rate_scale``.
    """
    _check_arguments(n_customers, start, end, purchase_rate_scale, interaction_rate_scale)
    rng = np.random.default_rng(seed)
    n = int(n_customers)
    span_s = ((end - start).days + 1) * DAY_S  # events happen in seconds [0, span_s) from start
    lat = latent(rng, n, span_s, purchase_rate_scale, interaction_rate_scale)
    cust_ids = ids("C", n, 7)
    owner, t_ord, dropped = purchases(rng, lat, span_s / DAY_S)
    transactions, stats = transactions_table(rng, lat, owner, t_ord, start, span_s, cust_ids)
    del owner, t_ord
    interactions, eng_end = interactions_table(rng, lat, span_s / DAY_S, start, cust_ids)
    truth = truth_table(lat, dropped, stats, eng_end, start, span_s, cust_ids)
    customers = customers_table(lat, start, cust_ids, referrers(lat, interactions, start, cust_ids))
    return SimulatedData(customers, transactions, interactions, truth)
