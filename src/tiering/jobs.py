"""Jobs: one function per command that reads sources or writes results, ``job(cfg, ...) -> result``.

The command line (cli.py) parses, calls one job and prints its result; the layers below (validation,
features, io, models, tracking, store) are called from here and from the modules these jobs wrap
(train.train_and_register, backtest.backtest_and_log, predict.predict_and_store, report.build_report).
"""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tiering.config import Config
from tiering.validation import TableReport


@dataclass(frozen=True)
class ValidateResult:
    """What `tiering validate` found: one report per configured table."""

    reports: list[TableReport]

    def to_dict(self) -> dict:
        return {"tables": [r.to_dict() for r in self.reports]}


@dataclass(frozen=True)
class FeaturesResult:
    """What `tiering features` wrote."""

    out: str
    as_of: dt.date
    customers: int
    columns: list[str]

    def to_dict(self) -> dict:
        return {"out": self.out, "as_of": self.as_of, "customers": self.customers, "columns": self.columns}


def validate(cfg: Config, *, as_of: dt.date | None = None) -> ValidateResult:
    """Check the configured sources against the contracts and write the quarantine files."""
    from tiering.validation import load_tables

    return ValidateResult(load_tables(cfg, as_of=as_of).reports)


def features(cfg: Config, *, as_of: dt.date, out: str | Path) -> FeaturesResult:
    """Validate the sources and write the feature frame as of ``as_of`` to one Parquet or CSV file.

    On DuckDB a base of more than ``features.bucket_rows`` valid rows is built bucket by bucket into
    sorted parts, then written as one file (memory follows the bucket, not the base)."""
    from tiering.features import build_features
    from tiering.io import write_sorted_parts, write_table
    from tiering.train import feature_spec
    from tiering.validation import bucket_count, load_tables

    tables = load_tables(cfg, as_of=as_of)
    buckets = bucket_count(tables, cfg.features.bucket_rows)

    def build(k: int = 0):
        return build_features(tables.transactions, tables.interactions, tables.customers, as_of=as_of,
                              spec=feature_spec(cfg), bucket=(k, buckets))

    expr = build()
    if buckets == 1:
        n = write_table(expr, out)  # one file on either engine; rows counted from the file, not by a second build
    else:
        Path(out).resolve().parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="tiering-features-", dir=Path(out).resolve().parent) as tmp:
            write_sorted_parts((build(k) for k in range(buckets)), Path(tmp), "customer_id")
            n = write_table(tables.con.read_parquet(f"{tmp}/*.parquet"), out)  # the same writer as one pass
    return FeaturesResult(str(out), as_of, n, list(expr.columns))
