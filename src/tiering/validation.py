"""Checking input tables against their contracts, and setting bad rows aside.

Two kinds of problem, two behaviours:
- a schema problem (a missing column, a column of the wrong type, a column in which not one
  value parses) stops the run with a SchemaError naming the table, the column, what was found
  and the config key to fix;
- a row problem goes to the quarantine Parquet file of its table with a ``reason`` column and
  is counted. Reasons, first match wins: missing_customer_id, missing_order_id, missing_time,
  unparseable_time, missing_<number>, unparseable_<number>, non_finite_<number>,
  implausible_<number> (|amount| > validation.max_abs_amount), missing_event_type,
  unknown_event_type (only with validation.unknown_event_types: quarantine), after_as_of (only
  when an as_of is given), conflicting_order_customer, duplicate_line (an exact repeat of an
  earlier row over the contract columns), duplicate_customer (customers: a second row for an id;
  the earliest joined_at is kept).

Identity: ids are text exactly as given (trimmed of surrounding blanks): ``007`` and ``7`` are two
customers, non-ASCII ids are kept. Integer ids become their decimal text. A float id column (a
warehouse or pandas export of integer ids with gaps) is read as integers without '.0' when every
value is integral, and refused with a SchemaError naming examples when not; a text id column in
which every value is written like that (13085.0, a CSV export of such a column) is read the same
way, while a column mixing '12' and '12.0' keeps both as written (two ids). Any value in
validation.null_tokens (default: empty, NULL, null, None, nan, NaN, N/A) is a missing value in
every contract column, so such an id is missing_customer_id, never a customer called 'NULL'.

Orders: an order has many lines (Online Retail II: one row per invoice line), so an order_id
repeated with other amounts or products is normal. Only an order_id whose otherwise good rows
name more than one customer_id is a defect: every row of it is set aside as
conflicting_order_customer (which customer is right cannot be told). An exact repeat of a line
is duplicate_line.

Event types: interactions whose event_type is not in validation.known_event_types (default the
DESIGN list, which the simulator emits) are counted per type in the report's
``unknown_event_types`` and kept (default) or quarantined, as validation.unknown_event_types says.

Time zones: data.timezone (an IANA name, default UTC) is the zone of the typed columns. A naive
timestamp (a Parquet timestamp without zone, text without an offset) is read as wall-clock time
in that zone, unchanged. An aware one (a Parquet timestamp with zone, text ending in Z or an
offset such as +08:00) is converted to that zone's wall-clock time, value by value, so a column
whose offsets differ row to row is still read consistently. The typed columns are naive, and
as_of days (00:00 to 24:00) are days in data.timezone. Example: with data.timezone
Asia/Shanghai, '2024-05-01T23:30:00+00:00' is 2024-05-02 07:30 and counts for as_of 2024-05-02.
On the spark engine only UTC is supported (ConfigError otherwise).

Refunds and cancellations (negative amounts) are valid rows: they are netted later, never
dropped. Everything stays in the engine (DuckDB by default); nothing is pulled into pandas. The
typed, annotated rows are computed once per table: cached on Spark, written to a temporary
Parquet file on DuckDB (see _materialize_duckdb); the good rows returned are a lazy scan of it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tiering.config import Config, SourceConfig, ValidationConfig
from tiering.exceptions import ConfigError, DataQualityError, SchemaError, TieringError
from tiering.io import (
    connect,
    explain_read_error,
    is_spark,
    map_columns,
    private_folder,
    read_source,
    set_auto_memory_limit,
    trim_text,
    write_table,
)
from tiering.schemas import CONTRACTS, TableContract

if TYPE_CHECKING:
    import ibis.expr.types as ir

REASON = "reason"
_MATERIALIZED = itertools.count()
# text that carries its own UTC offset: a time of day followed by Z or +hh[:mm] / -hh[:mm]
_OFFSET = r"\d{2}:\d{2}(:\d{2}(\.\d+)?)?\s*([Zz]|[+-]\d{2}(:?\d{2})?)$"
_HEAD_ROWS = 10_000  # rows _check_parseable asks first
_MAX_EXACT_ID = 2**53  # floats above it no longer hold every integer
# a text id column in which every value looks like this was a float column once (13085.0): read as 13085
_FLOAT_TEXT, _FLOAT_TEXT_TAIL = r"^[+-]?\d+\.0+$", r"\.0+$"


@dataclass(frozen=True)
class Rules:
    """What validation checks beyond the contract: validation.* settings and data.timezone."""

    settings: ValidationConfig = field(default_factory=ValidationConfig)
    timezone: str = "UTC"
    timestamp_format: str | None = None  # of text times in this source (data.<table>.timestamp_format); None: ISO 8601

    @classmethod
    def from_config(cls, config: Config) -> Rules:
        return cls(config.validation, config.data.timezone)


@dataclass
class TableReport:
    """What validation did to one table."""

    table: str
    source: str
    rows_in: int
    rows_valid: int
    quarantined: dict[str, int] = field(default_factory=dict)
    quarantine_path: str | None = None
    # interactions: rows per event type outside validation.known_event_types (kept or quarantined)
    unknown_event_types: dict[str, int] = field(default_factory=dict)

    @property
    def rows_quarantined(self) -> int:
        return sum(self.quarantined.values())

    def to_dict(self) -> dict:
        return asdict(self) | {"rows_quarantined": self.rows_quarantined}


@dataclass
class ValidatedTables:
    """The contract tables with bad rows removed (lazy Ibis expressions) and the reports."""

    transactions: ir.Table
    interactions: ir.Table | None
    customers: ir.Table | None
    reports: list[TableReport]
    con: Any = None  # the Ibis backend that read them (DuckDB or PySpark; None: not known)
    # per table: every row typed, with its reason (null for good rows); what write_quarantine writes
    annotated: dict[str, ir.Table] = field(default_factory=dict, repr=False)

    def write_quarantine(self, quarantine_dir: str | Path) -> None:
        """Write each table's set-aside rows to ``quarantine_dir/<table>.parquet`` (a stale file of a table
        without bad rows is removed) and set each report's quarantine_path. Call it once a run is accepted."""
        for report in self.reports:
            write_quarantine_file(self.annotated[report.table], report, quarantine_dir)


def bucket_count(tables: ValidatedTables, bucket_rows: int) -> int:
    """Customer buckets for a feature build of about ``bucket_rows`` valid transaction + interaction rows
    each (features.bucket_rows); 1 on Spark, which scales by itself."""
    if is_spark(tables.transactions):
        return 1
    rows = sum(r.rows_valid for r in tables.reports if r.table in ("transactions", "interactions"))
    return max(1, -(-rows // bucket_rows))


def _day_after(as_of: dt.date):
    import ibis

    return ibis.timestamp(dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time()))


def _coerce(mapped: ir.Table, contract: TableContract, source: str, rules: Rules) -> tuple[dict, list]:
    """Typed contract columns, and (condition, reason) pairs in priority order.

    A column whose type can never hold its kind raises SchemaError; a text column that should
    be a number or a timestamp is parsed value by value, unparseable values become reasons.
    """
    typed: dict[str, ir.Value] = {}
    reasons: list[tuple[ir.BooleanValue, str]] = []
    to_check: list[tuple[str, ir.Value, ir.Value]] = []  # (column, raw, parsed) for text-typed columns
    ids_as_text: list[tuple[str, ir.StringValue]] = []
    for col in contract.columns:
        if col.name not in mapped.columns:
            continue
        raw = mapped[col.name]
        t = raw.type()

        def wrong(expected: str, col=col, t=t) -> SchemaError:
            return SchemaError(
                f"The {contract.name} table column '{col.name}' has type {t}; expected {expected}. "
                f"Fix the source '{source}' or map another column under data.{contract.name}.columns.{col.name}."
            )

        text = _blank_to_null(raw, rules) if t.is_string() else None
        if col.kind == "id":
            if t.is_string():
                assert text is not None  # a text column
                value = text
                ids_as_text.append((col.name, text))
            elif t.is_integer():
                value = raw.cast("string")
            elif t.is_floating():  # ids read as float (e.g. 13085.0 from an export with blanks)
                _check_integral(mapped, contract, col.name, source)
                value = _finite(raw).cast("int64").cast("string")
            else:
                raise wrong("an identifier (text or integer)")
            typed[col.name] = value
            if col.required:
                reasons.append((value.isnull(), f"missing_{col.name}"))
        elif col.kind == "timestamp":
            missing = raw.isnull()
            if t.is_timestamp():
                value = _to_zone(raw, rules.timezone) if t.timezone is not None else raw
            elif t.is_date():
                value = raw.cast("timestamp")
            elif t.is_string():
                assert text is not None  # a text column
                missing = text.isnull()
                value = _parse_time(text, rules.timezone, rules.timestamp_format)
                to_check.append((col.name, raw, value))
            else:
                raise wrong("a timestamp (or ISO text such as 2024-05-01 13:45:00)")
            typed[col.name] = value
            reasons.append((missing, "missing_time"))
            reasons.append((value.isnull(), "unparseable_time"))
        elif col.kind == "number":
            value, more = _number(raw, text, col.name, wrong, rules)
            typed[col.name] = value
            if text is not None:
                to_check.append((col.name, raw, value))
            if col.required:
                reasons.extend(more)
        else:
            value = text if text is not None else _blank_to_null(raw.cast("string"), rules)
            typed[col.name] = value
            if col.required:
                reasons.append((value.isnull(), f"missing_{col.name}"))
            if col.name == contract.event_type_column and rules.settings.unknown_event_types == "quarantine":
                reasons.append((~_one_of(value, list(rules.settings.known_event_types)), "unknown_event_type"))
    for name in _check_parseable(mapped, contract, source, to_check, ids_as_text):
        typed[name] = typed[name].re_replace(_FLOAT_TEXT_TAIL, "")
    return typed, reasons


def _number(raw: ir.Value, text: ir.Value | None, name: str, wrong, rules: Rules) -> tuple[ir.Value, list]:
    """A number column typed, and its reasons: missing, unparseable, non-finite, implausible."""
    import ibis

    t = raw.type()
    if t.is_numeric():
        value, missing, parse_failed = raw.cast("float64"), raw.isnull(), ibis.literal(False)
    elif text is not None:
        value = text.try_cast("float64")
        missing, parse_failed = text.isnull(), text.notnull() & value.isnull()
    else:
        raise wrong("a number")
    non_finite = value.isnan() | value.isinf()
    return value, [
        (missing, f"missing_{name}"),
        (parse_failed, f"unparseable_{name}"),
        (non_finite, f"non_finite_{name}"),
        (value.abs() > rules.settings.max_abs_amount, f"implausible_{name}"),
    ]


def _blank_to_null(text: ir.StringValue, rules: Rules) -> ir.StringValue:
    """Text trimmed; blank and every validation.null_tokens value (NULL, None, N/A, ...) become null."""
    import ibis

    trimmed = trim_text(text)
    tokens = sorted({tok.strip() for tok in rules.settings.null_tokens} | {""})
    return ibis.ifelse(_one_of(trimmed, tokens), ibis.null("string"), trimmed)


def _one_of(value: ir.Value, options: list[str]) -> ir.BooleanValue:
    """``value.isin(options)`` written as equalities joined by OR: DuckDB plans a literal IN list as a
    hash (MARK) join per use, which cost more than the rest of the typing (2 s per id column per 2M rows)."""
    import functools
    import operator

    if not options or len(options) > 32:
        return value.isin(options)
    return functools.reduce(operator.or_, [value == o for o in options])


def _finite(raw: ir.FloatingValue) -> ir.FloatingValue:
    import ibis

    return ibis.ifelse(raw.isnan() | raw.isinf(), ibis.null("float64"), raw)


def _check_integral(mapped: ir.Table, contract: TableContract, name: str, source: str) -> None:
    """A float id column is read as integers only when every value is one (13085.0 -> '13085')."""
    raw = _finite(mapped[name])
    bad = raw.notnull() & ((raw != raw.floor()) | (raw.abs() >= _MAX_EXACT_ID))
    wrong = mapped.filter(bad | (mapped[name].notnull() & raw.isnull()))
    n = int(wrong.count().execute())
    if n:
        examples = wrong.select(v=wrong[name]).limit(3).execute()["v"].tolist()
        raise SchemaError(
            f"The {contract.name} table column '{name}' holds ids as floating-point numbers and {n:,} of them are not "
            f"whole numbers below 2**53 (e.g. {examples}), so the original ids cannot be recovered. Export the ids as "
            f"text from '{source}', or map another column under data.{contract.name}.columns.{name}."
        )


def _to_zone(aware: ir.TimestampValue, zone: str) -> ir.TimestampValue:
    """An instant as naive wall-clock time in ``zone``."""
    import ibis.expr.datatypes as dt

    if aware._find_backend(use_default=True).name == "pyspark":
        if zone != "UTC":
            raise ConfigError(f"data.timezone = {zone!r} is supported on the duckdb engine only; the spark engine reads UTC.")
        return aware.cast(dt.Timestamp())
    return _duckdb_timezone(zone, aware)


def _duckdb_timezone(zone: str, ts: ir.TimestampValue) -> ir.TimestampValue:
    """DuckDB's timezone(zone, timestamptz): the naive local time of an instant in ``zone``."""
    import ibis
    import ibis.expr.datatypes as idt

    def timezone(zone, ts): ...

    # types set directly: this module's postponed annotations would resolve `dt` to the datetime module
    timezone.__annotations__ = {"zone": idt.string, "ts": idt.Timestamp(timezone="UTC"), "return": idt.timestamp}
    return ibis.udf.scalar.builtin(timezone, name="timezone")(zone, ts)


def _duckdb_try_strptime(text: ir.StringValue, fmt: str) -> ir.TimestampValue:
    """DuckDB's try_strptime(text, format): null where the text does not match."""
    import ibis
    import ibis.expr.datatypes as idt

    def try_strptime(text, fmt): ...

    try_strptime.__annotations__ = {"text": idt.string, "fmt": idt.string, "return": idt.timestamp}
    return ibis.udf.scalar.builtin(try_strptime, name="try_strptime")(text, fmt)


def _parse_time(text: ir.StringValue, zone: str, fmt: str | None = None) -> ir.TimestampValue:
    """Text as naive wall-clock time in ``zone``: with an offset (Z, +08:00), converted; without, as written.
    With ``fmt`` (a strftime format), parsed by it instead (null where a value does not match)."""
    import ibis
    import ibis.expr.datatypes as dt

    if fmt is not None:
        if text._find_backend(use_default=True).name != "duckdb":
            raise ConfigError("data.<table>.timestamp_format is supported on the duckdb engine only; write ISO 8601 "
                              "times (2024-05-01 13:45:00) for the spark engine.")
        return _duckdb_try_strptime(text, fmt)

    aware = _to_zone(text.try_cast(dt.Timestamp(timezone="UTC")), zone)
    return ibis.ifelse(text.re_search(_OFFSET), aware, text.try_cast("timestamp"))


def _check_parseable(mapped: ir.Table, contract: TableContract, source: str, to_check: list, ids_as_text: list) -> list[str]:
    """A text column in which not a single value parses is a mapping error, not bad rows. Returns the text id
    columns written as floats (every value like 13085.0: an export of a float column), read without '.0'.

    Each question is whether some row satisfies a condition; all of them are first asked of the first
    rows only (one query over a LIMIT): on ordinary data those answer every question (an id without
    '.', a value that parses), so the table is not scanned; a question they leave open is asked of the
    whole table (a query that stops at its first match). A full-table aggregate of every text column
    here had cost a tenth of validation.
    """
    import ibis

    if not to_check and not ids_as_text:
        return []
    conds: dict[str, ir.BooleanValue] = {}
    for name, text in ids_as_text:
        conds[f"{name}__id"] = text.notnull()
        # floaty needs every id written like 13085.0 (the regex only where a '.' is)
        conds[f"{name}__plain"] = text.notnull() & ~ibis.ifelse(text.contains("."), text.re_search(_FLOAT_TEXT), False)
    for name, raw, parsed in to_check:
        conds[f"{name}__present"] = raw.notnull()
        conds[f"{name}__parsed"] = parsed.notnull()
    head = mapped.select(**conds).limit(_HEAD_ROWS)
    seen = head.aggregate(**{k: head[k].any() for k in conds}).execute().iloc[0]
    found = {k: bool(seen[k]) for k in conds}

    def exists(key: str) -> bool:
        if not found[key]:
            cond = conds[key]
            found[key] = int(mapped.filter(cond).select(_x=cond).limit(1).count().execute()) > 0
        return found[key]

    floaty = [name for name, _ in ids_as_text if not exists(f"{name}__plain") and exists(f"{name}__id")]
    for name, raw, _ in to_check:
        if not exists(f"{name}__parsed") and exists(f"{name}__present"):
            examples = mapped.select(v=raw).filter(raw.notnull()).limit(3).execute()["v"].tolist()
            kind = contract.column(name).kind
            expected = "numbers" if kind == "number" else (
                "timestamps such as 2024-05-01 13:45:00 (ISO 8601; for another layout set "
                f"data.{contract.name}.timestamp_format, e.g. '%m/%d/%Y %H:%M')")
            raise SchemaError(
                f"The {contract.name} table column '{name}' holds text that does not parse as {expected}; "
                f"e.g. {examples}. Fix the source '{source}' or map another column under "
                f"data.{contract.name}.columns.{name} in the config."
            )
    return floaty


def annotate(
    mapped: ir.Table, contract: TableContract, *, as_of: dt.date | None = None, source: str = "", rules: Rules | None = None
) -> ir.Table:
    """The typed contract columns, the raw values as text, and a ``reason`` (null for good rows)."""
    import ibis

    typed, reasons = _coerce(mapped, contract, source, rules or Rules())
    if as_of is not None:
        reasons.append((typed[contract.time_column] >= _day_after(as_of), "after_as_of"))
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
    dups = (
        t.filter(good)
        .group_by(keys)
        .agg(_n=ibis._.count())
        .filter(ibis._._n > 1)
        .select(*keys, _dup=ibis.literal(True))
    )
    j = t.left_join(dups, [t[k].identical_to(dups[k]) for k in keys] + [good])
    j = j.select(*[j[c] for c in t.columns], _dup=j._dup)
    single = j.filter(j._dup.isnull()).drop("_dup")
    multi = j.filter(j._dup.notnull()).drop("_dup")
    rank = ibis.row_number().over(group_by=[multi[k] for k in keys], order_by=order and [multi[o.get_name()] for o in order])
    multi = multi.mutate(**{REASON: ibis.ifelse(rank > 0, ibis.literal(dup_reason), multi[REASON])})
    return single.union(multi.select(*t.columns), distinct=False)


def _mark_conflicting_orders(t: ir.Table, contract: TableContract) -> ir.Table:
    """Every otherwise good row of an order_id that names more than one customer_id (module docstring)."""
    import ibis

    order, cid = contract.order_column, contract.id_column
    good = t[REASON].isnull()
    # one group-by of the good rows' (order, customer) instead of a min/max window over every row (which
    # sorted all rows with all their columns): the few conflicting orders are then marked by a join
    g = t.filter(good)
    per = g.group_by(g[order]).agg(_lo=g[cid].min(), _hi=g[cid].max())
    bad = per.filter(per._lo != per._hi).select(order, _conflict=ibis.literal(True))
    j = t.left_join(bad, [t[order] == bad[order], good])
    conflict = j._conflict.notnull()
    return j.select(*[j[c] for c in t.columns if c != REASON], **{
        REASON: ibis.ifelse(conflict, ibis.literal("conflicting_order_customer"), j[REASON])
    }).select(*t.columns)


def _is_duckdb(expr: ir.Table) -> bool:
    return getattr(expr._find_backend(use_default=True), "name", None) == "duckdb"


def _materialize_duckdb(annotated: ir.Table) -> ir.Table:
    """The annotated table computed once into a Parquet file, returned as a scan of that file.

    The raw_* text is kept for bad rows only (null for good ones, so it costs next to nothing).
    The file lives in a private folder beside DuckDB's temp_directory when one is set (batch
    scoring points it into its work dir), else in the system temp folder; the folder is removed
    when the connection is garbage collected, or at exit. Measured at 1M customers (9.9M
    transactions, 10M interactions, 1GB DuckDB limit): validate + build features 63 s -> 31 s,
    peak RSS 1.3 -> 1.5 GiB (benchmarks/README.md, "Feature build").
    """
    import ibis

    backend = annotated._find_backend(use_default=True)
    bad = annotated[REASON].notnull()
    slim = annotated.mutate(
        **{c: ibis.ifelse(bad, annotated[c], ibis.null("string")) for c in annotated.columns if c.startswith("raw_")}
    )
    path = str(private_folder(backend, "tiering-validated-") / "annotated.parquet")
    before = backend.raw_sql("SELECT current_setting('preserve_insertion_order')").fetchone()[0]
    backend.raw_sql("SET preserve_insertion_order = false")  # row order carries no meaning here
    try:
        slim.to_parquet(path)
    finally:
        backend.raw_sql(f"SET preserve_insertion_order = {str(bool(before)).lower()}")
    return backend.read_parquet(path, table_name=f"validated_{next(_MATERIALIZED)}")


def check_table(
    raw: ir.Table,
    contract: TableContract,
    mapping: dict[str, str] | None = None,
    *,
    as_of: dt.date | None = None,
    source: str = "",
    rules: Rules | None = None,
) -> tuple[ir.Table, ir.Table, TableReport]:
    """Map, type and check one table; write nothing, refuse nothing. Returns the annotated rows (every
    row with its reason), the good rows (lazy) and the report."""
    rules = rules or Rules()
    mapped = map_columns(raw, contract, mapping or {})
    annotated = annotate(mapped, contract, as_of=as_of, source=source, rules=rules)
    if is_spark(annotated):
        # Spark would recompute the typing and duplicate ranking (a shuffle) for the counts, the
        # quarantine and every feature pass: cache it once (memory and disk; released by Ibis
        # when the returned tables are garbage collected).
        annotated = annotated.cache()
    elif _is_duckdb(annotated):
        # DuckDB would likewise re-run it for the counts, the quarantine and every feature pass
        # (~9 window rankings of the whole table for one feature build): compute it once
        annotated = _materialize_duckdb(annotated)
    counts_df = annotated.group_by(REASON).aggregate(n=annotated.count()).execute()
    counts = {str(r): int(n) for r, n in zip(counts_df[REASON], counts_df["n"]) if r is not None and r == r}
    rows_in = int(counts_df["n"].sum())
    rows_valid = rows_in - sum(counts.values())
    report = TableReport(contract.name, source, rows_in, rows_valid, dict(sorted(counts.items(), key=lambda kv: -kv[1])))
    if contract.event_type_column is not None and contract.event_type_column in mapped.columns:
        report.unknown_event_types = _unknown_event_types(annotated, contract.event_type_column, rules)
    good = annotated.filter(annotated[REASON].isnull()).select(*[c.name for c in contract.columns if c.name in mapped.columns])
    return annotated, good, report


def _unknown_event_types(annotated: ir.Table, column: str, rules: Rules) -> dict[str, int]:
    """Rows per event type outside validation.known_event_types, among rows without another defect."""
    reason = annotated[REASON]
    rows = annotated.filter((reason.isnull() | (reason == "unknown_event_type"))
                            & ~_one_of(annotated[column], list(rules.settings.known_event_types)))
    df = rows.group_by(column).aggregate(n=rows.count()).execute()
    return {str(k): int(n) for k, n in sorted(zip(df[column], df["n"]), key=lambda kv: (-kv[1], str(kv[0])))}


def write_quarantine_file(annotated: ir.Table, report: TableReport, quarantine_dir: str | Path) -> None:
    """The bad rows (reason and raw values) to ``quarantine_dir/<table>.parquet`` when there is any, else a
    stale file of the table is removed; sets report.quarantine_path."""
    path = Path(quarantine_dir) / f"{report.table}.parquet"
    if report.quarantined:
        path.parent.mkdir(parents=True, exist_ok=True)
        bad = annotated.filter(annotated[REASON].notnull())
        write_table(bad.select(REASON, *[c for c in bad.columns if c.startswith("raw_")]), path)
        report.quarantine_path = str(path)
    elif path.is_dir() and (path / "_SUCCESS").exists():  # a stale Spark output folder
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def check_usable(report: TableReport, max_quarantine_share: float) -> None:
    """Refuse a table without usable rows, or with more defective rows than the configured share."""
    counts, rows_in, rows_valid = report.quarantined, report.rows_in, report.rows_valid
    if rows_in == 0 or rows_valid == 0:
        raise DataQualityError(
            f"The {report.table} table from '{report.source}' has no usable rows ({rows_in} read, set aside: {counts or 'none'}). "
            "Check the source path, its column mapping and the as_of date."
        )
    # rows after as_of are data for a later date, not defects: they do not count toward the guard
    later = counts.get("after_as_of", 0)
    share = (rows_in - rows_valid - later) / max(rows_in - later, 1)
    if share > max_quarantine_share:
        raise DataQualityError(
            f"{share:.0%} of the {report.table} rows from '{report.source}' were set aside as defective ({counts}), above "
            f"validation.max_quarantine_share = {max_quarantine_share}. The column mapping is probably wrong; "
            f"see the quarantine at {report.quarantine_path}, or raise the limit in the config."
        )


def validate_table(
    raw: ir.Table,
    contract: TableContract,
    mapping: dict[str, str] | None = None,
    *,
    as_of: dt.date | None = None,
    source: str = "",
    quarantine_dir: str | Path | None = None,
    max_quarantine_share: float = 0.5,
    rules: Rules | None = None,
) -> tuple[ir.Table, TableReport]:
    """Map, type and check one table. Returns the good rows (lazy) and the report.

    The quarantine (bad rows with their raw values and reason) is written to
    ``quarantine_dir/<table>.parquet`` when there is any, and a stale file is removed when not;
    then a table without usable rows, or above ``max_quarantine_share``, is refused.
    """
    annotated, good, report = check_table(raw, contract, mapping, as_of=as_of, source=source, rules=rules)
    if quarantine_dir is not None:
        write_quarantine_file(annotated, report, quarantine_dir)
    check_usable(report, max_quarantine_share)
    return good, report


@contextlib.contextmanager
def _read_errors(source: SourceConfig, table: str) -> Iterator[None]:
    """A source file the engine cannot parse (ragged line, bad bytes) as a SchemaError naming the line."""
    try:
        yield
    except TieringError:
        raise
    except Exception as exc:
        text = str(exc)
        if "CSV Error" in text or "unicode" in text.lower() or "sniffing file" in text:
            raise explain_read_error(exc, table, source) from None
        raise


def check_tables(raws: dict[str, tuple[ir.Table, SourceConfig, str]], config: Config, *, as_of: dt.date | None,
                 con) -> ValidatedTables:
    """Tables already read (name -> (raw table, its SourceConfig for mapping and reading rules, the source's
    label in reports)) through check_table; writes nothing. Refuses (DataQualityError) when ``as_of`` is given
    and no valid transaction is at or before it. Shared by load_tables and the Python API (tiering.api)."""
    rules = Rules.from_config(config)
    good: dict[str, ir.Table | None] = dict.fromkeys(CONTRACTS)
    annotated: dict[str, ir.Table] = {}
    reports = []
    for name, contract in CONTRACTS.items():
        if name not in raws:
            continue
        raw, src, label = raws[name]
        with _read_errors(src, name):
            annotated[name], good[name], report = check_table(raw, contract, src.columns, as_of=as_of, source=label,
                                                              rules=replace(rules, timestamp_format=src.timestamp_format))
        reports.append(report)
    if as_of is not None:
        _refuse_as_of_before_data(annotated["transactions"], reports[0], as_of)
    return ValidatedTables(good["transactions"], good["interactions"], good["customers"], reports, con, annotated)


def load_tables(
    config: Config,
    *,
    as_of: dt.date | None = None,
    con=None,
    write_quarantine: bool = True,
) -> ValidatedTables:
    """Read every configured source, validate it, and return the good rows and the reports.

    Transactions are required; interactions and customers are optional (None when not configured).
    With ``write_quarantine`` (the default) the quarantine files are written before the usability
    checks (a refused table's bad rows can be inspected); without it nothing is written: call
    ``tables.write_quarantine(config.validation.quarantine_dir)`` once the run is accepted. Either
    way, when ``as_of`` is given and no valid transaction is at or before it, the run is refused
    (DataQualityError) before anything is written.
    """
    if con is None:
        limit = config.features.duckdb_memory_limit
        con = connect(config.features.engine, **({"memory_limit": limit} if limit else {}))
    raws: dict[str, tuple[ir.Table, SourceConfig, str]] = {}
    for name in CONTRACTS:
        src: SourceConfig | None = getattr(config.data, name)
        if src is None or not src.path:
            if name == "transactions":
                read_source(con, src or SourceConfig(), name)  # raises the "no path" message
            continue
        with _read_errors(src, name):
            raws[name] = read_source(con, src, name), src, src.path
    _size_memory_limit(con, raws, config.features.bucket_rows)
    tables = check_tables(raws, config, as_of=as_of, con=con)
    if write_quarantine:
        tables.write_quarantine(config.validation.quarantine_dir)
    for report in tables.reports:
        check_usable(report, config.validation.max_quarantine_share)
    return tables


def _size_memory_limit(con, raws: dict, bucket_rows: int) -> None:
    """With no DuckDB memory limit configured, size the automatic one (tiering.io.auto_memory_limit) to the
    base: the transaction + interaction rows read (a Parquet footer count), at most one bucket's worth."""
    if getattr(con, "name", None) != "duckdb" or not getattr(con, "_tiering_auto_memory_limit", False):
        return
    rows = sum(int(raws[n][0].count().execute()) for n in ("transactions", "interactions") if n in raws)
    set_auto_memory_limit(con, min(rows, bucket_rows))


def _refuse_as_of_before_data(annotated: ir.Table, report: TableReport, as_of: dt.date) -> None:
    """No valid transaction at or before as_of, but some after it: the date is wrong, not the data."""
    later = report.quarantined.get("after_as_of", 0)
    if report.rows_valid or not later:
        return
    rows = annotated.filter(annotated[REASON] == "after_as_of")
    first = rows.aggregate(first=rows["ordered_at"].min()).execute()["first"].iloc[0]
    raise DataQualityError(
        f"No valid transaction in '{report.source}' is at or before as_of {as_of}: all {later:,} otherwise valid rows "
        f"are later (the first on {first:%Y-%m-%d}). Choose an as_of on or after {first:%Y-%m-%d}. Nothing was written."
    )
