"""Checking one table: map, type and annotate it, compute the annotated rows once per engine, count the rows
set aside per reason; optionally write the quarantine and refuse the table (validate_table)."""

from __future__ import annotations

import datetime as dt
import itertools
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from tiering.io import is_spark, map_columns, private_folder, unordered_writes
from tiering.schemas import TableContract
from tiering.validation._annotate import annotate, annotated_parts
from tiering.validation._reports import TableReport, check_usable, write_quarantine_file
from tiering.validation._rules import REASON, Rules
from tiering.validation._typing import one_of

if TYPE_CHECKING:
    import ibis.expr.types as ir

_MATERIALIZED = itertools.count()


def _is_duckdb(expr: ir.Table) -> bool:
    return getattr(expr._find_backend(use_default=True), "name", None) == "duckdb"


def _slim(t: ir.Table) -> ir.Table:
    """The annotated rows with their raw_* text kept for bad rows only (null for good ones, so that storing them
    costs next to nothing): only the quarantine reads it."""
    import ibis

    bad = t[REASON].notnull()
    return t.mutate(**{c: ibis.ifelse(bad, t[c], ibis.null("string")) for c in t.columns if c.startswith("raw_")})


def _parquet(backend, path: Path, t: ir.Table, slim: bool = False) -> ir.Table:
    """``t`` written once to the Parquet file ``path`` and read back (a scan of that file). ``slim``: see :func:`_slim`."""
    if slim:
        t = _slim(t)
    with unordered_writes(backend):  # row order carries no meaning here
        t.to_parquet(str(path))
    return backend.read_parquet(str(path), table_name=f"validated_{next(_MATERIALIZED)}")


def _annotated_duckdb(mapped: ir.Table, contract: TableContract, **kwargs) -> ir.Table:
    """The annotated rows computed once into Parquet files, returned as a scan of those files.

    Each stage of the annotation (the typed rows, the conflicting orders, the repeated key hashes) is written once
    and read back by the next (tiering.validation._annotate); the stage files are removed once the two parts of
    the annotated rows are written. The files live in a private folder beside DuckDB's temp_directory when one is
    set (batch scoring points it into its work dir), else in the system temp folder; the folder is removed when
    the connection is garbage collected, or at exit. Measured at 1M customers (9.9M transactions, 10M
    interactions, 1GB DuckDB limit): validate + build features 63 s -> 31 s against re-running the annotation
    for every pass, peak RSS 1.3 -> 1.5 GiB (benchmarks/README.md, "Feature build").
    """
    backend = mapped._find_backend(use_default=True)
    folder = private_folder(backend, "tiering-validated-")
    stages = folder / "stages"
    stages.mkdir()
    serial = itertools.count()
    parts = annotated_parts(mapped, contract, stage=lambda t: _parquet(backend, stages / f"{next(serial)}.parquet", t), **kwargs)
    paths = [folder / f"annotated-{i}.parquet" for i in range(len(parts))]
    for path, part in zip(paths, parts):
        _parquet(backend, path, part, slim=True)
    shutil.rmtree(stages)
    return backend.read_parquet([str(p) for p in paths], table_name=f"validated_{next(_MATERIALIZED)}")


def _annotated_once(mapped: ir.Table, contract: TableContract, **kwargs) -> ir.Table:
    """The annotated rows computed once for the counts, the quarantine and every feature pass."""
    if _is_duckdb(mapped):
        # DuckDB would otherwise re-run the typing, the groupings and the ranking for each of them
        return _annotated_duckdb(mapped, contract, **kwargs)
    if is_spark(mapped):
        return _annotated_spark(mapped, contract, **kwargs)
    return annotate(mapped, contract, **kwargs)


def _annotated_spark(mapped: ir.Table, contract: TableContract, **kwargs) -> ir.Table:
    """Spark: each stage of the annotation (the typed rows, the small tables of marks) kept on the executors'
    disks as the plan first computes it (tiering._spark.persisted_on_disk), so that the later stages read the
    typed rows instead of scanning and typing the source again for each of them; the annotated rows cached (slim,
    as DuckDB's Parquet: raw text for bad rows only) for the counts, the quarantine and every feature pass (Spark
    would recompute the typing and the duplicate ranking, a shuffle, each time). Released when the returned tables
    are garbage collected. At 1M customers validation took 3.6x less CPU than the plan without the stages, and the
    slim cache took 11-18% off `tiering features` at 100k (benchmarks/README.md, "Spark end to end")."""
    from tiering._spark import persisted_on_disk

    single, multi = annotated_parts(mapped, contract, stage=persisted_on_disk, **kwargs)
    return _slim(single.union(multi, distinct=False)).cache()


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
    annotated = _annotated_once(mapped, contract, as_of=as_of, source=source, rules=rules)
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
