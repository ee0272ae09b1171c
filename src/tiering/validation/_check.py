"""Checking one table: map, type and annotate it, compute the annotated rows once per engine, count the rows
set aside per reason; optionally write the quarantine and refuse the table (validate_table)."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path
from typing import TYPE_CHECKING

from tiering.io import is_spark, map_columns, private_folder, unordered_writes
from tiering.schemas import TableContract
from tiering.validation._annotate import annotate
from tiering.validation._reports import TableReport, check_usable, write_quarantine_file
from tiering.validation._rules import REASON, Rules
from tiering.validation._typing import one_of

if TYPE_CHECKING:
    import ibis.expr.types as ir

_MATERIALIZED = itertools.count()


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
    slim = annotated.mutate(**{c: ibis.ifelse(bad, annotated[c], ibis.null("string")) for c in annotated.columns if c.startswith("raw_")})
    path = str(private_folder(backend, "tiering-validated-") / "annotated.parquet")
    with unordered_writes(backend):  # row order carries no meaning here
        slim.to_parquet(path)
    return backend.read_parquet(path, table_name=f"validated_{next(_MATERIALIZED)}")


def _computed_once(annotated: ir.Table) -> ir.Table:
    """The annotated rows computed once for the counts, the quarantine and every feature pass."""
    if is_spark(annotated):
        # Spark would recompute the typing and duplicate ranking (a shuffle) each time: cache it once (memory
        # and disk; released by Ibis when the returned tables are garbage collected).
        return annotated.cache()
    if _is_duckdb(annotated):
        # DuckDB would likewise re-run it (~9 window rankings of the whole table for one feature build)
        return _materialize_duckdb(annotated)
    return annotated


def _count(annotated: ir.Table, table: str, source: str, rules: Rules, event_column: str | None) -> TableReport:
    """The report: rows read, valid, set aside per reason (most first, ties by name: the same order every run) and,
    with an event type column, the rows per unknown event type."""
    counts_df = annotated.group_by(REASON).aggregate(n=annotated.count()).execute()
    counts = {str(r): int(n) for r, n in zip(counts_df[REASON], counts_df["n"]) if r is not None and r == r}
    rows_in = int(counts_df["n"].sum())
    rows_valid = rows_in - sum(counts.values())
    report = TableReport(table, source, rows_in, rows_valid, dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))))
    if event_column is not None:
        report.unknown_event_types = _unknown_event_types(annotated, event_column, rules)
    return report


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
    annotated = _computed_once(annotate(mapped, contract, as_of=as_of, source=source, rules=rules))
    event_column = contract.event_type_column if contract.event_type_column in mapped.columns else None
    report = _count(annotated, contract.name, source, rules, event_column)
    good = annotated.filter(annotated[REASON].isnull()).select(*[c.name for c in contract.columns if c.name in mapped.columns])
    return annotated, good, report


def _unknown_event_types(annotated: ir.Table, column: str, rules: Rules) -> dict[str, int]:
    """Rows per event type outside validation.known_event_types, among rows without another defect."""
    reason = annotated[REASON]
    rows = annotated.filter(
        (reason.isnull() | (reason == "unknown_event_type")) & ~one_of(annotated[column], list(rules.settings.known_event_types))
    )
    df = rows.group_by(column).aggregate(n=rows.count()).execute()
    return {str(k): int(n) for k, n in sorted(zip(df[column], df["n"]), key=lambda kv: (-kv[1], str(kv[0])))}


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
