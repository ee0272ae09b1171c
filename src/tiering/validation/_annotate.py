"""Every row annotated: the typed contract columns, the raw values as text, and a reason (null for good rows),
with orders naming several customers, referrers naming no customer (or the row itself) and repeated lines marked among
the otherwise good rows.

The rows are annotated in stages, each computed once by ``stage`` (check_table passes a Parquet write on DuckDB;
without one the plan stays lazy): the typed rows with their raw values; the few orders that name more than one
customer; the few hashes of key tuples that more than one good row shares. The annotated rows then come in two
parts, each one pass over the typed rows joined with those small tables: the rows outside every group of repeated
keys, and the rows of such groups ranked by a window. At 1M customers under a 1 GiB DuckDB limit this took a
prototype of the transaction lines from 73 to 39 CPU s (peak RSS 1.16 -> 0.94 GiB): the former plan materialised
every row three times (one CTE per reuse) and grouped all seven line keys as text."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING

from tiering.schemas import TableContract
from tiering.validation._rules import REASON, Rules
from tiering.validation._time import day_after
from tiering.validation._typing import coerce

if TYPE_CHECKING:
    import ibis.expr.types as ir

Stage = Callable[["ir.Table"], "ir.Table"]


def _lazy(t: ir.Table) -> ir.Table:
    return t


def annotate(
    mapped: ir.Table, contract: TableContract, *, as_of: dt.date | None = None, source: str = "", rules: Rules | None = None
) -> ir.Table:
    """The typed contract columns, the raw values as text, and a ``reason`` (null for good rows), as one lazy table."""
    single, multi = annotated_parts(mapped, contract, as_of=as_of, source=source, rules=rules)
    return single.union(multi, distinct=False)


def annotated_parts(
    mapped: ir.Table,
    contract: TableContract,
    *,
    as_of: dt.date | None = None,
    source: str = "",
    rules: Rules | None = None,
    stage: Stage = _lazy,
) -> tuple[ir.Table, ir.Table]:
    """The annotated rows in two parts (together every row once): the rows outside any group of repeated keys,
    and the rows of such groups. ``stage`` computes the typed rows and the two small tables of marks once."""
    import ibis

    typed, reasons = coerce(mapped, contract, source, rules or Rules())
    if as_of is not None:
        reasons.append((typed[contract.time_column] >= day_after(as_of), "after_as_of"))
    case = ibis.cases(*reasons, else_=ibis.null("string"))
    # raw values keep their source type through the duplicate ranking (text casts of every
    # timestamp and amount made the window carry twice the bytes); cast to text after it
    t = stage(mapped.select(**typed, **{f"raw_{c}": _raw_unless_typed(mapped[c], typed[c]) for c in typed}, **{REASON: case}))
    if contract.order_column in typed:
        t = _mark_conflicting_orders(t, contract, stage)
    if contract.referrer_column in typed:
        t = _mark_bad_referrers(t, contract, stage)
    # duplicates are judged among rows that are otherwise good
    if contract.unique_key == (contract.id_column,):
        order = [contract.time_column, contract.id_column]
        dup_reason = "duplicate_customer"
    else:
        order = None  # the rows of a group are equal on every ordering key anyway
        dup_reason = "duplicate_line"
    parts = _mark_duplicates(t, [k for k in contract.unique_key if k in typed], order, dup_reason, stage)
    return tuple(p.mutate(**{f"raw_{c}": _raw_text(p[f"raw_{c}"], p[c]) for c in typed}) for p in parts)  # type: ignore[return-value]


def _raw_unless_typed(raw: ir.Value, value: ir.Value) -> ir.Value:
    """The raw value, or null where it equals its typed value of the same type (a clean source's every value).

    The typed rows are written whole once and read by every later stage; a clean source's raw columns then cost no
    bytes. Measured at 1M customers (9.9M transaction lines, 10M interactions; medians of 4 alternated with the code
    before, in two sessions): validation 9-24% less wall and CPU time, 1.47-1.66x -> 1.26-1.35x the hand-written query
    (benchmarks/README.md)."""
    import ibis

    if raw.type().copy(nullable=True) != value.type().copy(nullable=True):
        return raw
    return ibis.ifelse(raw == value, ibis.null(raw.type()), raw)


def _raw_text(raw: ir.Value, value: ir.Value) -> ir.StringValue:
    """The raw value as text, restored from the typed one where _raw_unless_typed left it out: typing maps a null
    to a null (tiering.validation._typing), so a null raw value beside a typed one was left out, and equal values of
    one type have the same text."""
    return raw.cast("string").coalesce(value.cast("string"))


def _key_hash(t: ir.Table, keys: list[str]) -> ir.IntegerValue:
    import ibis

    return t[keys[0]].hash() if len(keys) == 1 else ibis.struct({k: t[k] for k in keys}).hash()


def _mark_duplicates(t: ir.Table, keys: list[str], order: list[str] | None, dup_reason: str, stage: Stage) -> tuple[ir.Table, ir.Table]:
    """Every otherwise good row but the first of its group of equal ``keys`` (nulls equal) gets ``dup_reason``;
    returned as (the rows of no group, the rows of groups).

    The candidate groups are the 64-bit hashes of the keys that more than one good row shares (one aggregation of
    an integer instead of all the key columns; computed once by ``stage``, a few rows). The rows outside them are
    kept by a left join on the hash, the good rows in them taken by a semi-join; the row-number window,
    partitioned by the keys themselves, runs over those rows alone, so two tuples sharing a hash are still told
    apart (each stays first of its own group). Ranking every row (a window partitioned by all the key columns,
    carrying every column) was the largest cost of validation."""
    import ibis

    good = t[REASON].isnull()
    g = t.filter(good)
    dups = stage(g.group_by(_h=_key_hash(g, keys)).agg(_n=ibis._.count()).filter(ibis._._n > 1).select("_h", _dup=ibis.literal(True)))
    # the join condition holds the hash alone (a hash join); 'good' in it made DuckDB plan a nested-loop join,
    # quadratic in the duplicate groups (2M lines with 1% repeated: 158 CPU s against 7 without repeats)
    j = t.left_join(dups, _key_hash(t, keys) == dups._h)
    j = j.select(*[j[c] for c in t.columns], _dup=ibis.ifelse(good, j._dup, ibis.null("boolean")))
    single = j.filter(j._dup.isnull()).drop("_dup")
    # the good rows of candidate groups by a semi-join, which DuckDB skips when no key repeats (the left join above,
    # filtered through the ifelse, still read every typed row: ~0.7 s per table of 10M rows at 1M customers)
    gh = g.mutate(_h=_key_hash(g, keys))
    multi = gh.semi_join(dups, gh._h == dups._h).drop("_h")
    rank = ibis.row_number().over(group_by=[multi[k] for k in keys], order_by=order and [multi[o] for o in order])
    multi = multi.mutate(**{REASON: ibis.ifelse(rank > 0, ibis.literal(dup_reason), multi[REASON])})
    return single, multi.select(*t.columns)


def _mark_conflicting_orders(t: ir.Table, contract: TableContract, stage: Stage) -> ir.Table:
    """Every otherwise good row of an order_id that names more than one customer_id (tiering.validation docstring, "Orders")."""
    import ibis

    order, cid = contract.order_column, contract.id_column
    good = t[REASON].isnull()
    # the candidates are the 64-bit hashes of orders whose good rows' customer hashes differ (one aggregation of
    # integers), then the conflicting orders among their rows alone (text min/max of a few rows), computed once and
    # marked by a join. Grouping text did not fit: a min/max of the customer per order (DuckDB cannot spill text
    # min/max states) and the distinct (order, customer) pairs both ran out of memory at 10M customers under 1 GiB;
    # a min/max window over every row sorted all rows with all their columns. Two orders sharing a hash only add a
    # candidate; a conflict hides only if two customer ids of one order share a 64-bit hash.
    g = t.filter(good)
    per = g.group_by(_h=g[order].hash()).agg(_lo=g[cid].hash().min(), _hi=g[cid].hash().max())
    candidates = per.filter(per._lo != per._hi).select("_h")
    keyed = g.select(order, cid, _h=g[order].hash())
    rows = keyed.semi_join(candidates, "_h")
    exact = rows.group_by(rows[order]).agg(_lo=rows[cid].min(), _hi=rows[cid].max())
    bad = stage(exact.filter(exact._lo != exact._hi).select(order, _conflict=ibis.literal(True)))
    j = t.left_join(bad, [t[order] == bad[order]])  # 'good' outside the join condition: see _mark_duplicates
    conflict = j._conflict.notnull() & good
    return j.select(
        *[j[c] for c in t.columns if c != REASON], **{REASON: ibis.ifelse(conflict, ibis.literal("conflicting_order_customer"), j[REASON])}
    ).select(*t.columns)


def _mark_bad_referrers(t: ir.Table, contract: TableContract, stage: Stage) -> ir.Table:
    """Every otherwise good row whose referrer (customers.referred_by) is its own id gets ``self_referral``, and one whose
    referrer is no id of the table ``unknown_referrer``; a null referrer is no referral and is fine.

    Known ids are every id the table names, whatever else is wrong with their rows: a referrer whose own row is set
    aside (a missing joined_at) still exists, and its referrals are not set aside with it. The unknown referrers (the
    referrers named, less the ids: a few values, computed once by ``stage``) are marked by a join. The row goes to
    the quarantine rather than losing its referrer silently: a referral link is the evidence the referral propensity
    learns from, and a source whose column is mis-mapped (every value unknown) is then refused by the quarantine
    share guard instead of passing with no referral at all."""
    import ibis

    ref, cid = contract.referrer_column, contract.id_column
    assert ref is not None  # the caller checked
    good = t[REASON].isnull()
    named = t.filter(t[ref].notnull()).select(_ref=t[ref]).distinct()
    ids = t.filter(t[cid].notnull()).select(_id=t[cid]).distinct()
    unknown = stage(named.anti_join(ids, named._ref == ids._id).select("_ref", _unknown=ibis.literal(True)))
    j = t.left_join(unknown, t[ref] == unknown._ref)  # 'good' outside the join condition: see _mark_duplicates
    reason = ibis.cases((good & (j[ref] == j[cid]), "self_referral"), (good & j._unknown.notnull(), "unknown_referrer"), else_=j[REASON])
    return j.select(*[j[c] for c in t.columns if c != REASON], **{REASON: reason}).select(*t.columns)
