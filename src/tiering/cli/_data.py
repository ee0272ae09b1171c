"""The data commands: ``simulate`` (write a simulated base), ``validate`` (the sources against their contracts)
and ``features`` (the feature frame as of a date)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tiering.cli._options import ConfigOpt, CuOpt, IxOpt, JsonOpt, SetOpt, TxOpt, load, parse_date, with_engine
from tiering.cli._output import emit, table


def simulate(
    customers: Annotated[int, typer.Option("--customers", min=1, max=100_000_000, help="Number of customers.")] = 20_000,
    start: Annotated[str, typer.Option(help="First join date, YYYY-MM-DD.")] = "2024-01-01",
    end: Annotated[str, typer.Option(help="Last day simulated, YYYY-MM-DD.")] = "2025-12-31",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    out: Annotated[Path, typer.Option(help="Output folder for the Parquet files.")] = Path("outputs/simulated"),
    as_json: JsonOpt = False,
):
    """Simulate private-domain customers: customers, transactions, interactions and the latent truth as Parquet."""
    from tiering import jobs

    res = jobs.simulate(customers=customers, start=parse_date(start, "--start"), end=parse_date(end, "--end"), seed=seed, out=out)
    emit(as_json, res.to_dict(), lambda c: c.print(f"Wrote {res.rows} to {out}/ (truth.parquet holds the latent rates and true tiers)."))


def validate(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    transactions: TxOpt = None,
    interactions: IxOpt = None,
    customers: CuOpt = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Also set aside rows after this date.")] = None,
    engine: Annotated[str | None, typer.Option(help="duckdb or spark (default from config).")] = None,
    as_json: JsonOpt = False,
):
    """Check the configured sources against the contracts; write the quarantine; print counts per reason."""
    import pandas as pd

    from tiering import jobs

    cfg = with_engine(load(config, transactions, interactions, customers, sets=set_), engine)
    res = jobs.validate(cfg, as_of=parse_date(as_of, "--as-of"))
    reports = res.to_dict()["tables"]

    def render(c):
        rows = [
            {
                "table": r["table"],
                "source": r["source"],
                "rows_in": r["rows_in"],
                "valid": r["rows_valid"],
                "set_aside": r["rows_quarantined"],
            }
            for r in reports
        ]
        c.print(table("Validation", pd.DataFrame(rows), {"rows_in": "{:,}", "valid": "{:,}", "set_aside": "{:,}"}))
        for r in reports:
            if r["quarantined"]:
                reasons = pd.DataFrame([{"reason": k, "rows": v} for k, v in r["quarantined"].items()])
                c.print(table(f"{r['table']}: rows set aside -> {r['quarantine_path']}", reasons, {"rows": "{:,}"}))

    emit(as_json, {"tables": reports}, render)


def features(
    as_of: Annotated[str, typer.Option("--as-of", help="Features use data at or before this date.")],
    out: Annotated[str, typer.Option(help="Output file (.parquet or .csv); on --engine spark also a URL (s3a://, hdfs://, abfss://).")] = (
        "outputs/features.parquet"
    ),
    engine: Annotated[str | None, typer.Option(help="duckdb or spark (default from config).")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    transactions: TxOpt = None,
    interactions: IxOpt = None,
    customers: CuOpt = None,
    as_json: JsonOpt = False,
):
    """Build the feature frame (one row per customer) as of a date."""
    from tiering import jobs

    cfg = with_engine(load(config, transactions, interactions, customers, sets=set_), engine)
    res = jobs.features(cfg, as_of=parse_date(as_of, "--as-of"), out=out)
    emit(
        as_json,
        res.to_dict(),
        lambda c: c.print(f"Wrote features for {res.customers:,} customers ({len(res.columns)} columns) as of {res.as_of} to {res.out}."),
    )
