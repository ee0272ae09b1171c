"""Every row annotated: the typed contract columns, the raw values as text, and a reason (null for good rows),
with orders naming several customers and repeated lines marked among the otherwise good rows."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from tiering.schemas import TableContract
from tiering.validation._rules import REASON, Rules
from tiering.validation._time import day_after
from tiering.validation._typing import coerce

if TYPE_CHECKING:
    import ibis.expr.types as ir


def annotate(
    mapped: ir.Table, contract: TableContract, *, as_of: dt.date | None = None, source: str = "", rules: Rules | None = None
) -> ir.Table:
    """The typed contract columns, the raw values as text, and a ``reason`` (null for good rows)."""
    import ibis

    typed, reasons = coerce(mapped, contract, source, rules or Rules())
    if as_of is not None:
        reasons.append((typed[contract.time_column] >= day_after(as_of), "after_as_of"))
    case = ibis.cases(*reasons, else_=ibis.null("string"))
    # raw values keep their source type through the duplicate ranking (text casts of every
    # timestamp and amount made the window carry twice the bytes); cast to text after it
    t = mapped.select(
        **typed,
        **{f"raw_{c}": mapped[c] for c in typed},
        **{REASON: case},
    )
    if contract.order_column in typed:
        t = _mark_conflicting_orders(t, contract)
    # duplicates are judged among rows that are otherwise good
    if contract.unique_key == (contract.id_column,):
        order = [t[contract.time_column], t[contract.id_column]]
        dup_reason = "duplicate_customer"
    else:
        order = None  # the rows of a group are equal on every ordering key anyway
        dup_reason = "duplicate_line"
    ranked = _mark_duplicates(t, [k for k in contract.unique_key if k in typed], order, dup_reason)
    return ranked.mutate(**{f"raw_{c}": ranked[f"raw_{c}"].cast("string") for c in typed})


def _mark_duplicates(t: ir.Table, keys: list[str], order: list | None, dup_reason: str) -> ir.Table:
    """Every otherwise good row but the first of its group of equal ``keys`` (nulls equal) gets ``dup_reason``.

    Only the rows of duplicate groups are ranked: the groups of more than one good row are found with
    a GROUP BY ... HAVING count > 1 (one hash aggregation of the key columns), the rows are marked by a
    left join on those few keys (null-safe), and the row-number window runs over the marked rows
    alone. Ranking every row (a window partitioned by all the key columns, carrying every column) was
    the largest cost of validation (8 of ~40 CPU s for 2M transactions under load).
    """
    import ibis

    good = t[REASON].isnull()
    dups = t.filter(good).group_by(keys).agg(_n=ibis._.count()).filter(ibis._._n > 1).select(*keys, _dup=ibis.literal(True))
    # the join condition holds the keys alone (a hash join); 'good' in it made DuckDB plan a nested-loop join,
    # quadratic in the duplicate groups (2M lines with 1% repeated: 158 CPU s against 7 without repeats)
    j = t.left_join(dups, [t[k].identical_to(dups[k]) for k in keys])
    j = j.select(*[j[c] for c in t.columns], _dup=ibis.ifelse(good, j._dup, ibis.null("boolean")))
    single = j.filter(j._dup.isnull()).drop("_dup")
    multi = j.filter(j._dup.notnull()).drop("_dup")
    rank = ibis.row_number().over(group_by=[multi[k] for k in keys], order_by=order and [multi[o.get_name()] for o in order])
    multi = multi.mutate(**{REASON: ibis.ifelse(rank > 0, ibis.literal(dup_reason), multi[REASON])})
    return single.union(multi.select(*t.columns), distinct=False)


def _mark_conflicting_orders(t: ir.Table, contract: TableContract) -> ir.Table:
    """Every otherwise good row of an order_id that names more than one customer_id (tiering.validation docstring, "Orders")."""
    import ibis

    order, cid = contract.order_column, contract.id_column
    good = t[REASON].isnull()
    # one group-by of the good rows' (order, customer) instead of a min/max window over every row (which
    # sorted all rows with all their columns): the few conflicting orders are then marked by a join
    g = t.filter(good)
    per = g.group_by(g[order]).agg(_lo=g[cid].min(), _hi=g[cid].max())
    bad = per.filter(per._lo != per._hi).select(order, _conflict=ibis.literal(True))
    j = t.left_join(bad, [t[order] == bad[order]])  # 'good' outside the join condition: see _mark_duplicates
    conflict = j._conflict.notnull() & good
    return j.select(
        *[j[c] for c in t.columns if c != REASON], **{REASON: ibis.ifelse(conflict, ibis.literal("conflicting_order_customer"), j[REASON])}
    ).select(*t.columns)
