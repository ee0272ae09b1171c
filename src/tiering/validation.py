"""Checking input tables against their contracts, and setting bad rows aside.

Two kinds of problem, two behaviours:
- a schema problem (a missing column, a column of the wrong type, a column in which not one
  value parses) stops the run with a SchemaError naming the table, the column, what was found
  and the config key to fix;
- a row problem goes to the quarantine Parquet file of its table with a ``reason`` column and
  is counted. Reasons, first match wins: missing_customer_id, missing_order_id, missing_time,
  unparseable_time, missing_<number>, unparseable_<number>, non_finite_<number>,
  missing_event_type, after_as_of (only when an as_of is given), duplicate_line (an exact
  repeat of an earlier row over the contract columns), duplicate_customer (customers: a second
  row for an id; the earliest joined_at is kept).

Refunds and cancellations (negative amounts) are valid rows: they are netted later, never
dropped. Everything stays in the engine (DuckDB by default); nothing is pulled into pandas. The
typed, annotated rows are computed once per table: cached on Spark, written to a temporary
Parquet file on DuckDB (see _materialize_duckdb); the good rows returned are a lazy scan of it.
"""

from __future__ import annotations

import datetime as dt
import itertools
import shutil
import tempfile
import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tiering.config import Config, SourceConfig
from tiering.exceptions import DataQualityError, SchemaError
from tiering.io import connect, is_spark, map_columns, read_source, write_table
from tiering.schemas import CONTRACTS, TableContract

if TYPE_CHECKING:
    import ibis.expr.types as ir

REASON = "reason"
_MATERIALIZED = itertools.count()


@dataclass
class TableReport:
    """What validation did to one table."""

    table: str
    source: str
    rows_in: int
    rows_valid: int
    quarantined: dict[str, int] = field(default_factory=dict)
    quarantine_path: str | None = None

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
    con: object = None


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


def _coerce(mapped: ir.Table, contract: TableContract, source: str) -> tuple[dict, list]:
    """Typed contract columns, and (condition, reason) pairs in priority order.

    A column whose type can never hold its kind raises SchemaError; a text column that should
    be a number or a timestamp is parsed value by value, unparseable values become reasons.
    """
    import ibis

    typed: dict[str, ir.Value] = {}
    reasons: list[tuple[ir.BooleanValue, str]] = []
    to_check: list[tuple[str, ir.Value, ir.Value]] = []  # (column, raw, parsed) for text-typed columns
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

        if col.kind == "id":
            if t.is_string():
                value = raw.strip().nullif("")
            elif t.is_integer():
                value = raw.cast("string")
            elif t.is_floating():  # ids read as float (e.g. 13085.0 from a CSV with blanks)
                value = raw.cast("int64").cast("string")
            else:
                raise wrong("an identifier (text or integer)")
            typed[col.name] = value
            if col.required:
                reasons.append((value.isnull(), f"missing_{col.name}"))
        elif col.kind == "timestamp":
            missing = raw.isnull()
            if t.is_timestamp():
                value = raw
            elif t.is_date():
                value = raw.cast("timestamp")
            elif t.is_string():
                blank = raw.strip().nullif("")
                missing = blank.isnull()
                value = blank.try_cast("timestamp")
                to_check.append((col.name, raw, value))
            else:
                raise wrong("a timestamp (or ISO text such as 2024-05-01 13:45:00)")
            typed[col.name] = value
            reasons.append((missing, "missing_time"))
            reasons.append((value.isnull(), "unparseable_time"))
        elif col.kind == "number":
            missing = raw.isnull()
            if t.is_numeric():
                value = raw.cast("float64")
                parse_failed = ibis.literal(False)
            elif t.is_string():
                blank = raw.strip().nullif("")
                missing = blank.isnull()
                value = blank.try_cast("float64")
                parse_failed = blank.notnull() & value.isnull()
                to_check.append((col.name, raw, value))
            else:
                raise wrong("a number")
            typed[col.name] = value
            if col.required:
                reasons.append((missing, f"missing_{col.name}"))
                reasons.append((parse_failed, f"unparseable_{col.name}"))
                reasons.append((value.isnan() | value.isinf(), f"non_finite_{col.name}"))
        else:
            value = raw.cast("string")
            typed[col.name] = value
            if col.required:
                reasons.append((value.isnull(), f"missing_{col.name}"))
    _check_parseable(mapped, contract, source, to_check)
    return typed, reasons


def _check_parseable(mapped: ir.Table, contract: TableContract, source: str, to_check: list) -> None:
    """A text column in which not a single value parses is a mapping error, not bad rows."""
    if not to_check:
        return
    aggs = {}
    for name, raw, parsed in to_check:
        aggs[f"{name}__present"] = raw.count()
        aggs[f"{name}__parsed"] = parsed.count()
    counts = mapped.aggregate(**aggs).execute().iloc[0]
    for name, raw, _ in to_check:
        if counts[f"{name}__present"] > 0 and counts[f"{name}__parsed"] == 0:
            examples = mapped.select(v=raw).filter(raw.notnull()).limit(3).execute()["v"].tolist()
            kind = contract.column(name).kind
            expected = "numbers" if kind == "number" else "timestamps such as 2024-05-01 13:45:00"
            raise SchemaError(
                f"The {contract.name} table column '{name}' holds text that does not parse as {expected}; "
                f"e.g. {examples}. Fix the source '{source}' or map another column under "
                f"data.{contract.name}.columns.{name} in the config."
            )


def annotate(mapped: ir.Table, contract: TableContract, *, as_of: dt.date | None = None, source: str = "") -> ir.Table:
    """The typed contract columns, the raw values as text, and a ``reason`` (null for good rows)."""
    import ibis

    typed, reasons = _coerce(mapped, contract, source)
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
    # duplicates are judged among rows that are otherwise good
    if contract.unique_key == (contract.id_column,):
        order = [t[contract.time_column], t[contract.id_column]]
        dup_reason = "duplicate_customer"
    else:
        order = None  # the rows of a group are equal on every ordering key anyway
        dup_reason = "duplicate_line"
    keys = [t[k] for k in contract.unique_key if k in typed] + [t[REASON].isnull()]
    rank = ibis.row_number().over(group_by=keys, order_by=order)
    ranked = t.mutate(**{REASON: ibis.ifelse(t[REASON].isnull() & (rank > 0), ibis.literal(dup_reason), t[REASON])})
    return ranked.mutate(**{f"raw_{c}": ranked[f"raw_{c}"].cast("string") for c in typed})


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
    spill = backend.raw_sql("SELECT current_setting('temp_directory')").fetchone()[0]
    base = Path(spill).resolve().parent if spill and spill != ".tmp" else None  # ".tmp": DuckDB's default
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    folder = tempfile.mkdtemp(prefix="tiering-validated-", dir=base)
    weakref.finalize(backend, shutil.rmtree, folder, True)
    path = str(Path(folder) / "annotated.parquet")
    before = backend.raw_sql("SELECT current_setting('preserve_insertion_order')").fetchone()[0]
    backend.raw_sql("SET preserve_insertion_order = false")  # row order carries no meaning here
    try:
        slim.to_parquet(path)
    finally:
        backend.raw_sql(f"SET preserve_insertion_order = {str(bool(before)).lower()}")
    return backend.read_parquet(path, table_name=f"validated_{next(_MATERIALIZED)}")


def validate_table(
    raw: ir.Table,
    contract: TableContract,
    mapping: dict[str, str] | None = None,
    *,
    as_of: dt.date | None = None,
    source: str = "",
    quarantine_dir: str | Path | None = None,
    max_quarantine_share: float = 0.5,
) -> tuple[ir.Table, TableReport]:
    """Map, type and check one table. Returns the good rows (lazy) and the report.

    The quarantine (bad rows with their raw values and reason) is written to
    ``quarantine_dir/<table>.parquet`` when there is any, and a stale file is removed when not.
    """
    mapped = map_columns(raw, contract, mapping or {})
    annotated = annotate(mapped, contract, as_of=as_of, source=source)
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
    if quarantine_dir is not None:
        path = Path(quarantine_dir) / f"{contract.name}.parquet"
        if counts:
            path.parent.mkdir(parents=True, exist_ok=True)
            bad = annotated.filter(annotated[REASON].notnull())
            write_table(bad.select(REASON, *[c for c in bad.columns if c.startswith("raw_")]), path)
            report.quarantine_path = str(path)
        elif path.is_dir() and (path / "_SUCCESS").exists():  # a stale Spark output folder
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    if rows_in == 0 or rows_valid == 0:
        raise DataQualityError(
            f"The {contract.name} table from '{source}' has no usable rows ({rows_in} read, set aside: {counts or 'none'}). "
            "Check the source path, its column mapping and the as_of date."
        )
    # rows after as_of are data for a later date, not defects: they do not count toward the guard
    later = counts.get("after_as_of", 0)
    share = (rows_in - rows_valid - later) / max(rows_in - later, 1)
    if share > max_quarantine_share:
        raise DataQualityError(
            f"{share:.0%} of the {contract.name} rows from '{source}' were set aside as defective ({counts}), above "
            f"validation.max_quarantine_share = {max_quarantine_share}. The column mapping is probably wrong; "
            f"see the quarantine at {report.quarantine_path}, or raise the limit in the config."
        )
    good = annotated.filter(annotated[REASON].isnull()).select(*[c.name for c in contract.columns if c.name in mapped.columns])
    return good, report


def load_tables(
    config: Config,
    *,
    as_of: dt.date | None = None,
    con=None,
    write_quarantine: bool = True,
) -> ValidatedTables:
    """Read every configured source, validate it, and return the good rows and the reports.

    Transactions are required; interactions and customers are optional (None when not configured).
    """
    if con is None:
        limit = config.features.duckdb_memory_limit
        con = connect(config.features.engine, **({"memory_limit": limit} if limit else {}))
    out: dict[str, ir.Table | None] = {}
    reports = []
    for name, contract in CONTRACTS.items():
        src: SourceConfig | None = getattr(config.data, name)
        if src is None or not src.path:
            if name == "transactions":
                read_source(con, src or SourceConfig(), name)  # raises the "no path" message
            out[name] = None
            continue
        raw = read_source(con, src, name)
        good, report = validate_table(
            raw,
            contract,
            src.columns,
            as_of=as_of,
            source=src.path,
            quarantine_dir=config.validation.quarantine_dir if write_quarantine else None,
            max_quarantine_share=config.validation.max_quarantine_share,
        )
        out[name] = good
        reports.append(report)
    return ValidatedTables(out["transactions"], out["interactions"], out["customers"], reports, con)
