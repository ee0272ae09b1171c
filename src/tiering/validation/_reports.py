"""What validation hands on: per table the report (counts per reason, the quarantine file), the validated
tables, the quarantine written from the annotated rows, and the guard that refuses a table without enough
usable rows."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tiering.exceptions import DataQualityError
from tiering.io import display_path, is_spark, join_path, remove_output, write_table
from tiering.validation._rules import REASON

if TYPE_CHECKING:
    import ibis.expr.types as ir


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


def write_quarantine_file(annotated: ir.Table, report: TableReport, quarantine_dir: str | Path) -> None:
    """The bad rows (reason and raw values) to ``quarantine_dir/<table>.parquet`` when there is any, else a
    stale file of the table is removed; sets report.quarantine_path. On Spark ``quarantine_dir`` may be a URL
    (s3a://, hdfs://, abfss://: tiering.io.write_table)."""
    path = join_path(quarantine_dir, f"{report.table}.parquet")
    if report.quarantined:
        bad = annotated.filter(annotated[REASON].notnull())
        write_table(bad.select(REASON, *[c for c in bad.columns if c.startswith("raw_")]), path)
        report.quarantine_path = display_path(path)
    else:
        remove_output(path, annotated._find_backend(use_default=True))


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


def data_fingerprint(tables: ValidatedTables) -> dict:
    """Source paths, row counts, date range and a content hash of the validated transactions."""
    t = tables.transactions
    agg = (
        t.aggregate(
            rows=t.count(), first=t.ordered_at.min(), last=t.ordered_at.max(), customers=t.customer_id.nunique(), amount=t.amount.sum()
        )
        .to_pandas()
        .iloc[0]
    )
    summary = {
        "sources": {r.table: r.source for r in tables.reports},
        "rows_valid": {r.table: r.rows_valid for r in tables.reports},
        "rows_quarantined": {r.table: r.rows_quarantined for r in tables.reports},
        "transactions_first": str(agg["first"]),
        "transactions_last": str(agg["last"]),
        "customers_with_transactions": int(agg["customers"]),
    }
    digest = hashlib.sha256(repr((summary, int(agg["rows"]), round(float(agg["amount"]), 4))).encode()).hexdigest()[:16]
    return summary | {"hash": digest}
