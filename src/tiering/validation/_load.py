"""Validating every input of a run: read the configured sources (or take tables already read), check each
against its contract, write the quarantine, refuse unusable tables and an as_of before all the data."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from tiering.config import Config, SourceConfig
from tiering.exceptions import DataQualityError, TieringError
from tiering.io import connect, display_path, explain_read_error, read_source, set_auto_memory_limit
from tiering.schemas import CONTRACTS
from tiering.validation._check import check_table
from tiering.validation._reports import TableReport, ValidatedTables, check_usable
from tiering.validation._rules import REASON, Rules

if TYPE_CHECKING:
    import ibis.expr.types as ir


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


def check_tables(raws: dict[str, tuple[ir.Table, SourceConfig, str]], config: Config, *, as_of: dt.date | None, con) -> ValidatedTables:
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
            annotated[name], good[name], report = check_table(
                raw, contract, src.columns, as_of=as_of, source=label, rules=replace(rules, timestamp_format=src.timestamp_format)
            )
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
        con = connect(config.features.engine, memory_limit=config.features.duckdb_memory_limit)
    raws: dict[str, tuple[ir.Table, SourceConfig, str]] = {}
    for name in CONTRACTS:
        src: SourceConfig | None = getattr(config.data, name)
        if src is None or not src.path:
            if name == "transactions":
                read_source(con, src or SourceConfig(), name)  # raises the "no path" message
            continue
        with _read_errors(src, name):
            raws[name] = read_source(con, src, name), src, display_path(src.path)  # a URL's secrets masked
    rows = _auto_limited_rows(con, raws)
    if rows is not None:  # the feature build reads one customer bucket at a time; validation's stages all spill
        set_auto_memory_limit(con, min(rows, config.features.bucket_rows))
    tables = check_tables(raws, config, as_of=as_of, con=con)
    if write_quarantine:
        tables.write_quarantine(config.validation.quarantine_dir)
    for report in tables.reports:
        check_usable(report, config.validation.max_quarantine_share)
    return tables


def _auto_limited_rows(con, raws: dict) -> int | None:
    """The transaction + interaction rows read (a Parquet footer count) when DuckDB's memory limit is the automatic one
    (tiering.io.auto_memory_limit, sized to one feature bucket of them), else None.

    Validation runs under that limit too: its stages are aggregations of integers, joins with small tables and
    Parquet writes, which all spill (tiering.validation._annotate). Before they were, it failed at 10M customers (200M
    rows) under 1 GiB with DuckDB's "could not allocate block" (materialised CTEs, then text min/max and DISTINCT
    states), and was sized to every row (6 GiB here, a 6.9 GiB peak)."""
    if getattr(con, "name", None) != "duckdb" or not getattr(con, "_tiering_auto_memory_limit", False):
        return None
    return sum(int(raws[n][0].count().execute()) for n in ("transactions", "interactions") if n in raws)


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
