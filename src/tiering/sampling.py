"""A seeded, stratified sample of customers, so that training fits in bounded memory on a very large base.

Training builds one pandas frame of the customers at each of several origins (tiering.fitting), so its
memory follows the number of customers. ``model.train_sample_customers`` = n (default 250,000; None: the
whole base) makes `tiering train` fit a base of more than n customers on n drawn here, in the engine (DuckDB
or Spark; nothing of the whole base reaches pandas), while the bundle it registers scores the whole base as
before.

How the sample is drawn (:func:`sample_customers`):

1. The base is every customer known at ``as_of`` (as in tiering.features: joined by then, or with an
   order or interaction by then). Each gets a stratum from what they did by ``as_of``: buyer (an order
   at or before as_of) or never bought; a recency band of days since the last order (buyers) or the last
   interaction or join (the others): 0-30, 31-90, 91-180, 181-365, over 365; and for buyers a band of
   net spend to as_of at the buyers' own quantiles: below the median, median-p90, p90-p99, top 1%. At
   most 5 + 5 x 4 = 25 strata.
2. Proportional allocation: stratum h of N_h customers out of N gets n * N_h / N places, rounded by
   largest remainders (each stratum within one customer of its exact share; the places sum to n).
3. Within a stratum the customers with the smallest keys md5("<seed>:<customer_id>") are taken, ties
   by id: the same ids for the same data and seed, on DuckDB and Spark alike (md5 is the same function
   on both), and a customer's chance of being drawn does not depend on the order of the rows.
4. The transactions, interactions and customers tables are cut to the drawn ids by a semi-join (every
   row of a drawn customer, before and after any origin, ids unchanged) and computed once (``cache``).

Why the learned cut points and calibration still hold: with proportional allocation every customer
is drawn with the same probability n / N (up to the rounding of one place per stratum), so the sample
is self-weighting: any share, rate, quantile or calibration curve computed on it estimates the base's
without weights, for every subset and at every origin, including origins before ``as_of`` (the sample
is a random sample of the customers known then too). Stratifying adds no bias; it fixes the share of
each stratum at the base's instead of leaving it to chance, which is what keeps rare strata such as
recent top-1% spenders, where the core cut point and the CLV ranking are decided, at their share in
every draw. No stratum is over-sampled (that would need weights in every fit). Quantile cut points
learned on m sampled customers are off by about sqrt(p (1 - p) / m) in share: 0.001 at p = 0.8 and
m = 200,000. The out-of-time metrics of a sampled fit are those of the sampled customers (held out by
time as always): an unbiased estimate of the whole base's.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from tiering.exceptions import ConfigError
from tiering.features._spec import cutoff, epoch_day
from tiering.validation import ValidatedTables

if TYPE_CHECKING:
    import ibis.expr.types as ir

RECENCY_BANDS_DAYS = (30, 90, 180, 365)  # upper ends of the recency bands; the last band is over 365 days
SPEND_QUANTILES = (0.5, 0.9, 0.99)  # the buyers' net spend cut at these quantiles: four spend bands
_RECENCY_LABELS = ("0-30d", "31-90d", "91-180d", "181-365d", "over 365d")
_SPEND_LABELS = ("spend below p50", "spend p50-p90", "spend p90-p99", "spend top 1%")


@dataclass(frozen=True)
class CustomerSample:
    """The tables cut to the sampled customers, and how they were drawn.

    ``strata``: one row per stratum (``stratum``, a code; ``buyer``; ``recency_band``; ``spend_band``; ``base``,
    its customers; ``sampled``, those drawn), in code order. ``spend_cuts``: the buyers' net spend at
    SPEND_QUANTILES. ``applied`` is False when the base had at most ``requested`` customers: then
    ``tables`` are the input tables themselves."""

    tables: ValidatedTables
    as_of: dt.date
    seed: int
    requested: int
    base_customers: int
    sampled_customers: int
    strata: pd.DataFrame
    spend_cuts: tuple[float, ...]

    @property
    def applied(self) -> bool:
        return self.sampled_customers < self.base_customers

    @property
    def share(self) -> float:
        return self.sampled_customers / self.base_customers if self.base_customers else 1.0

    def metrics(self) -> dict[str, float]:
        """The sample's size as run metrics (MLflow): requested, drawn, the base, the share drawn, the seed."""
        return {
            "train_sample_requested": float(self.requested),
            "train_sample_customers": float(self.sampled_customers),
            "train_base_customers": float(self.base_customers),
            "train_sample_share": self.share,
            "train_sample_seed": float(self.seed),
        }

    def summary(self) -> str:
        """One sentence: size, share and seed of the sample, or why none was drawn."""
        if not self.applied:
            return (
                f"training sample: not drawn (the base has {self.base_customers:,} customers at {self.as_of}, at most "
                f"model.train_sample_customers = {self.requested:,}); every customer is fitted"
            )
        return (
            f"training sample: {self.sampled_customers:,} of {self.base_customers:,} customers ({self.share:.1%}) known "
            f"at {self.as_of}, seed {self.seed}"
        )

    def describe(self) -> str:
        """The note for the run: the summary, the method and every stratum's customers in the sample and the base."""
        if not self.applied:
            return self.summary()
        cuts = ", ".join(f"p{round(q * 100)} {c:,.2f}" for q, c in zip(SPEND_QUANTILES, self.spend_cuts))
        s = self.strata
        strata = "; ".join(
            f"{_label(b, rb, sb)}: {k:,} of {N:,}" for b, rb, sb, k, N in zip(s.buyer, s.recency_band, s.spend_band, s.sampled, s.base)
        )
        return (
            f"{self.summary()}, stratified (buyer x recency band x spend band as of {self.as_of}; buyers' spend cuts "
            f"{cuts}) with proportional allocation (self-weighting: shares, quantile cut points and calibration are "
            f"the base's); the metrics are out of time on the sampled customers and the data fingerprint is the "
            f"sample's. Strata (sampled of base): {strata}"
        )


def on_driver(sample: CustomerSample, memory_limit: str | None, step) -> tuple[ValidatedTables, float | None]:
    """The sample's tables to fit from: drawn on Spark, its rows collected into DuckDB on the driver (under
    ``memory_limit`` when set; :func:`tiering._spark.collect_to_duckdb`) with the seconds that took, said through
    ``step``; else as drawn."""
    from tiering.io import connect, is_spark

    if not is_spark(sample.tables.transactions):
        return sample.tables, None
    from tiering._spark import collect_to_duckdb

    step(f"collecting the {sample.sampled_customers:,} sampled customers' rows from Spark into DuckDB")
    t0 = time.perf_counter()
    local = collect_to_duckdb(sample.tables, connect("duckdb", memory_limit=memory_limit))
    return local, round(time.perf_counter() - t0, 3)


def _label(buyer: bool, recency_band: int, spend_band: int) -> str:
    if not buyer:
        return f"never bought, last activity {_RECENCY_LABELS[recency_band]}"
    return f"buyer, last order {_RECENCY_LABELS[recency_band]}, {_SPEND_LABELS[spend_band]}"


def sample_customers(tables: ValidatedTables, n: int, *, seed: int = 0, as_of: dt.date) -> CustomerSample:
    """A stratified sample of ``n`` customers of the base known at ``as_of`` (see the module docstring).

    Deterministic for the data and ``seed``; the base itself (``applied`` False, the tables unchanged) when it
    has at most ``n`` customers. Runs in the engine of ``tables``: one pass over the rows makes a profile of one
    row per customer (computed once); the spend cuts, the stratum counts and the draw are queries over it; then one
    semi-join per table."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(
            f"model.train_sample_customers must be a whole number of customers of at least 1; got {n!r}. "
            "Set it to e.g. 200000, or to null to train on the whole base."
        )
    profile = _profile(tables, as_of).cache()
    try:
        cuts = _spend_cuts(profile)
        coded = profile.mutate(stratum=_stratum(profile, cuts))
        counts = coded.group_by("stratum").aggregate(base=coded.count()).to_pandas()
        counts = counts.astype({"stratum": "int64", "base": "int64"}).sort_values("stratum", ignore_index=True)
        base = int(counts["base"].sum())
        counts["sampled"] = _allocate(counts["base"].to_numpy(), n) if base > n else counts["base"]
        strata = counts.assign(
            buyer=counts["stratum"] >= 100, recency_band=counts["stratum"] // 10 % 10, spend_band=counts["stratum"] % 10
        )[["stratum", "buyer", "recency_band", "spend_band", "base", "sampled"]]
        kept = tables
        if base > n:
            kept = _restrict(tables, _draw(coded, strata, seed))
    finally:
        profile.release()
    return CustomerSample(kept, as_of, seed, n, base, int(strata["sampled"].sum()), strata, cuts)


def _profile(tables: ValidatedTables, as_of: dt.date) -> ir.Table:
    """One row per customer known at ``as_of``: buyer, days since the last order (buyers) or the last
    activity (the others), net spend to as_of."""
    import ibis

    end = ibis.literal(cutoff(as_of), type="timestamp")
    tx = tables.transactions.filter(tables.transactions.ordered_at < end)
    parts = [
        tx.group_by("customer_id").aggregate(
            last_order=tx.ordered_at.max().date().epoch_days().cast("int64"),
            spend=tx.amount.sum().cast("float64"),
            last_seen=tx.ordered_at.max().date().epoch_days().cast("int64"),
        )
    ]
    for table, column in ((tables.interactions, "occurred_at"), (tables.customers, "joined_at")):
        if table is not None:
            t = table.filter(table[column] < end)
            parts.append(
                t.group_by("customer_id").aggregate(
                    last_order=ibis.null("int64"), spend=ibis.null("float64"), last_seen=t[column].max().date().epoch_days().cast("int64")
                )
            )
    both = ibis.union(*parts, distinct=False) if len(parts) > 1 else parts[0]
    per = both.group_by(both.customer_id.cast("string").name("customer_id")).aggregate(
        last_order=both.last_order.max(), spend=both.spend.sum(), last_seen=both.last_seen.max()
    )
    buyer = per.last_order.notnull()
    days = ibis.literal(epoch_day(as_of)) - ibis.ifelse(buyer, per.last_order, per.last_seen)
    return per.select("customer_id", buyer=buyer, days=days.cast("int64"), spend=per.spend.fill_null(0.0))


def _spend_cuts(profile: ir.Table) -> tuple[float, ...]:
    """The buyers' net spend at SPEND_QUANTILES (0 each when nobody has bought)."""
    buyers = profile.filter(profile.buyer)
    row = buyers.aggregate(**{f"q{i}": buyers.spend.quantile(q) for i, q in enumerate(SPEND_QUANTILES)}).to_pandas().iloc[0]
    return tuple(float(row[f"q{i}"]) if pd.notna(row[f"q{i}"]) else 0.0 for i in range(len(SPEND_QUANTILES)))


def _stratum(profile: ir.Table, cuts: tuple[float, ...]) -> ir.IntegerValue:
    """The stratum code: 100 for a buyer, plus 10 x the recency band (0-4), plus the spend band (0-3, buyers)."""
    import ibis

    recency = ibis.cases(*((profile.days <= d, i) for i, d in enumerate(RECENCY_BANDS_DAYS)), else_=len(RECENCY_BANDS_DAYS))
    spend = ibis.cases(*((profile.spend >= c, len(cuts) - i) for i, c in enumerate(reversed(cuts))), else_=0)
    return (ibis.ifelse(profile.buyer, 100 + spend, 0) + 10 * recency).cast("int64")


def _allocate(base, n: int):
    """Places per stratum: n * N_h / N rounded down, then one more for the largest remainders (ties: the
    lower stratum code, the order of ``base``) until they sum to n (Hamilton's method)."""
    import numpy as np

    exact = np.asarray(base, dtype=float) * n / float(np.sum(base))
    places = np.floor(exact).astype("int64")
    order = np.argsort(-(exact - places), kind="stable")
    places[order[: n - int(places.sum())]] += 1
    return places


def _draw(coded: ir.Table, strata: pd.DataFrame, seed: int) -> ir.Table:
    """The ids drawn: in each stratum the ``sampled`` customers with the smallest md5("<seed>:<id>")."""
    import ibis

    quota = ibis.cases(*((coded.stratum == int(s), int(k)) for s, k in zip(strata["stratum"], strata["sampled"])), else_=0)
    key = (ibis.literal(f"{seed}:") + coded.customer_id).hexdigest("md5")
    ranked = coded.mutate(quota=quota, rank=ibis.row_number().over(group_by=coded.stratum, order_by=[key, coded.customer_id]))
    return ranked.filter(ranked["rank"] < ranked.quota).select("customer_id")  # row_number counts from 0


def _restrict(tables: ValidatedTables, ids: ir.Table) -> ValidatedTables:
    """``tables`` with every table cut to ``ids`` (semi-joins), each computed once; reports and quarantine stay
    the base's."""
    ids = ids.cache()

    def cut(t: ir.Table) -> ir.Table:
        return t.semi_join(ids, t.customer_id.cast("string") == ids.customer_id).cache()

    try:
        return dataclasses.replace(
            tables,
            transactions=cut(tables.transactions),
            interactions=cut(tables.interactions) if tables.interactions is not None else None,
            customers=cut(tables.customers) if tables.customers is not None else None,
        )
    finally:
        ids.release()
