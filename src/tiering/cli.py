"""The `tiering` command line: parses, calls the Python API, prints (rich tables or JSON).

Every command takes --config PATH and --json; source overrides --transactions/--interactions/
--customers PATH replace the configured sources for one run. Bad input exits with status 2
and a one-paragraph message, never a traceback.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from tiering.exceptions import ConfigError, TieringError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Customer tiering: features, churn and CLV models, tiers, MLflow registry, batch scoring.")
tiers_app = typer.Typer(no_args_is_help=True, help="Ops lookups over the scores store.")
app.add_typer(tiers_app, name="tiers")

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="Config file (default configs/base.yaml if present, else built-in defaults).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
TxOpt = Annotated[Path | None, typer.Option("--transactions", help="Transactions file in contract column names (overrides config).")]
IxOpt = Annotated[Path | None, typer.Option("--interactions", help="Interactions file in contract column names (overrides config).")]
CuOpt = Annotated[Path | None, typer.Option("--customers", help="Customers file in contract column names (overrides config).")]


def _console():
    from rich.console import Console

    return Console()


def _date(value: str | None, option: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{option} must be a date as YYYY-MM-DD; got {value!r}.") from None


def _config(config: Path | None, transactions=None, interactions=None, customers=None):
    from tiering.config import load_config

    return load_config(config).with_sources(transactions, interactions, customers)


def _emit(as_json: bool, payload: Any, render) -> None:
    if as_json:
        typer.echo(json.dumps(payload, indent=2, default=str))
    else:
        render(_console())


def _table(title: str, df, formats: dict[str, str] | None = None):
    from rich.table import Table

    t = Table(title=title)
    for c in df.columns:
        t.add_column(str(c), justify="right" if df[c].dtype.kind in "fiu" else "left")
    for row in df.itertuples(index=False):
        cells = []
        for c, v in zip(df.columns, row):
            fmt = (formats or {}).get(c)
            cells.append("" if v is None or v != v else (fmt.format(v) if fmt else str(v)))
        t.add_row(*cells)
    return t


def _progress(console):
    return lambda msg: console.print(f"[dim]- {msg}[/dim]")


# ---------------------------------------------------------------------------------------------
@app.command()
def simulate(
    customers: Annotated[int, typer.Option("--customers", help="Number of customers.")] = 20_000,
    start: Annotated[str, typer.Option(help="First join date, YYYY-MM-DD.")] = "2024-01-01",
    end: Annotated[str, typer.Option(help="Last day simulated, YYYY-MM-DD.")] = "2025-12-31",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    out: Annotated[Path, typer.Option(help="Output folder for the Parquet files.")] = Path("outputs/simulated"),
    as_json: JsonOpt = False,
):
    """Simulate private-domain customers: customers, transactions, interactions and the latent truth as Parquet."""
    from tiering.datasets import simulate as sim

    data = sim(customers, _date(start, "--start"), _date(end, "--end"), seed=seed)
    data.write(out)
    counts = {name: len(getattr(data, name)) for name in ("customers", "transactions", "interactions", "truth")}
    _emit(as_json, {"out": str(out), "rows": counts},
          lambda c: c.print(f"Wrote {counts} to {out}/ (truth.parquet holds the latent rates and true tiers)."))


@app.command()
def validate(
    config: ConfigOpt = None, transactions: TxOpt = None, interactions: IxOpt = None, customers: CuOpt = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Also set aside rows after this date.")] = None,
    as_json: JsonOpt = False,
):
    """Check the configured sources against the contracts; write the quarantine; print counts per reason."""
    import pandas as pd

    from tiering.validation import load_tables

    cfg = _config(config, transactions, interactions, customers)
    tables = load_tables(cfg, as_of=_date(as_of, "--as-of"))
    reports = [r.to_dict() for r in tables.reports]

    def render(c):
        rows = [{"table": r["table"], "source": r["source"], "rows_in": r["rows_in"], "valid": r["rows_valid"],
                 "set_aside": r["rows_quarantined"]} for r in reports]
        c.print(_table("Validation", pd.DataFrame(rows), {"rows_in": "{:,}", "valid": "{:,}", "set_aside": "{:,}"}))
        for r in reports:
            if r["quarantined"]:
                reasons = pd.DataFrame([{"reason": k, "rows": v} for k, v in r["quarantined"].items()])
                c.print(_table(f"{r['table']}: rows set aside -> {r['quarantine_path']}", reasons, {"rows": "{:,}"}))

    _emit(as_json, {"tables": reports}, render)


@app.command()
def features(
    as_of: Annotated[str, typer.Option("--as-of", help="Features use data at or before this date.")],
    out: Annotated[Path, typer.Option(help="Output file (.parquet or .csv).")] = Path("outputs/features.parquet"),
    engine: Annotated[str | None, typer.Option(help="duckdb or spark (default from config).")] = None,
    config: ConfigOpt = None, transactions: TxOpt = None, interactions: IxOpt = None, customers: CuOpt = None,
    as_json: JsonOpt = False,
):
    """Build the feature frame (one row per customer) as of a date."""
    from tiering.features import build_features
    from tiering.train import feature_spec
    from tiering.validation import load_tables

    cfg = _config(config, transactions, interactions, customers)
    if engine:
        cfg.features.engine = engine
    d = _date(as_of, "--as-of")
    tables = load_tables(cfg, as_of=d)
    expr = build_features(tables.transactions, tables.interactions, tables.customers, as_of=d, spec=feature_spec(cfg))
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        expr.to_csv(str(out))
    else:
        expr.to_parquet(str(out))
    n = int(expr.count().to_pandas())
    _emit(as_json, {"out": str(out), "customers": n, "columns": list(expr.columns)},
          lambda c: c.print(f"Wrote features for {n:,} customers ({len(expr.columns)} columns) as of {d} to {out}."))


@app.command()
def train(
    as_of: Annotated[str, typer.Option("--as-of", help="Train on data at or before this date.")],
    horizon_days: Annotated[int | None, typer.Option("--horizon-days", help="Prediction horizon H (default from config).")] = None,
    config: ConfigOpt = None, transactions: TxOpt = None, interactions: IxOpt = None, customers: CuOpt = None,
    as_json: JsonOpt = False,
):
    """Fit every model, evaluate out of time, log to MLflow, register a version with alias challenger."""
    from tiering.train import train_and_register

    cfg = _config(config, transactions, interactions, customers)
    if horizon_days:
        cfg.model.horizon_days = horizon_days
    console = _console()
    result = train_and_register(cfg, as_of=_date(as_of, "--as-of"), progress=None if as_json else _progress(console))
    payload = {"run_id": result.run_id, "model_uri": result.model_uri, "version": result.version,
               "metrics": result.metrics, "fit_seconds": result.fit_seconds, "notes": result.notes}
    _emit(as_json, payload, lambda c: _print_training(c, result))


def _print_training(c, result) -> None:
    import pandas as pd

    m = result.metrics
    rows = [{"metric": k, "value": v} for k, v in m.items() if k.startswith(("clv_", "churn_", "propensity_"))]
    c.print(_table("Out-of-time metrics (test origin = as_of - horizon)", pd.DataFrame(rows), {"value": "{:.4f}"}))
    for n in result.notes:
        c.print(f"[yellow]note:[/yellow] {n}")
    c.print(f"Registered version {result.version} (alias challenger), run {result.run_id}.")


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="Registered version number.")],
    alias: Annotated[str, typer.Option(help="Alias to move.")] = "champion",
    force: Annotated[bool, typer.Option("--force", help="Promote even if its metrics are worse than the holder's.")] = False,
    config: ConfigOpt = None, as_json: JsonOpt = False,
):
    """Move an alias (default champion) to a registered version."""
    from tiering.registry import promote as do_promote

    cfg = _config(config)
    mv = do_promote(version, cfg.tracking, alias=alias, force=force)
    _emit(as_json, {"name": mv.name, "version": mv.version, "alias": alias},
          lambda c: c.print(f"{mv.name} version {mv.version} is now {alias!r}."))


@app.command()
def compare(config: ConfigOpt = None, as_json: JsonOpt = False):
    """Registered versions side by side: metrics, data, as_of, aliases."""
    import pandas as pd

    from tiering.registry import versions

    cfg = _config(config)
    rows = []
    for v in versions(cfg.tracking):
        rows.append({"version": v.version, "aliases": ",".join(v.aliases), "as_of": v.tags.get("as_of", ""),
                     "data_hash": v.tags.get("data_hash", ""),
                     **{k: v.metrics.get(k) for k in ("clv_normalized_gini", "clv_btyd_normalized_gini", "propensity_roc_auc",
                                                      "churn_btyd_roc_auc", "churn_model_brier")}})
    _emit(as_json, rows, lambda c: c.print(_table(f"Versions of {cfg.tracking.registered_model}", pd.DataFrame(rows),
                                                  {k: "{:.4f}" for k in rows[0] if k not in ("version", "aliases", "as_of", "data_hash")} if rows else None)))


@app.command()
def predict(
    as_of: Annotated[str, typer.Option("--as-of", help="Score with data at or before this date.")],
    model: Annotated[str, typer.Option("--model", help="Model URI, version number or alias.")] = "champion",
    out: Annotated[Path | None, typer.Option(help="Also write the scores to this Parquet/CSV file.")] = None,
    engine: Annotated[str | None, typer.Option(help="duckdb or spark (default from config).")] = None,
    config: ConfigOpt = None, transactions: TxOpt = None, interactions: IxOpt = None, customers: CuOpt = None,
    as_json: JsonOpt = False,
):
    """Score the whole customer base with the champion (or --model) into the scores store."""
    from tiering.predict import predict_and_store

    cfg = _config(config, transactions, interactions, customers)
    if engine:
        cfg.features.engine = engine
    console = _console()
    res = predict_and_store(cfg, as_of=_date(as_of, "--as-of"), model=model, out=out,
                            scored_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
                            progress=None if as_json else _progress(console))
    _emit(as_json, res.to_dict(), lambda c: _print_tiers(c, res.summary, f"Scored {res.batch.rows:,} customers as of {res.batch.as_of} "
                                                         f"with {res.batch.model_name} v{res.batch.model_version} -> {cfg.store.url}"))


def _print_tiers(c, summary, title: str) -> None:
    c.print(_table(title, summary, {"customers": "{:,}", "share": "{:.1%}", "mean_clv": "{:,.2f}", "mean_churn_risk": "{:.3f}",
                                    "mean_p_purchase": "{:.3f}", "at_risk": "{:,}"}))


@app.command()
def demo(
    customers: Annotated[int, typer.Option("--customers", help="Simulated customers.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    workdir: Annotated[Path, typer.Option(help="Where the demo writes data, MLflow store and scores store.")] = Path("outputs/demo"),
    as_json: JsonOpt = False,
):
    """The main job end to end on embedded defaults: simulate, train, register, promote, score, print tiers."""
    from tiering.demo import run_demo

    console = _console()
    res = run_demo(n_customers=customers, seed=seed, workdir=workdir, progress=None if as_json else _progress(console))

    def render(c):
        _print_training(c, res.train)
        _print_tiers(c, res.predict.summary, f"Tiers as of {res.predict.batch.as_of} ({res.predict.batch.rows:,} customers)")
        for k, v in res.locations.items():
            c.print(f"{k:>14}: {v}")

    _emit(as_json, {"train": {"metrics": res.train.metrics, "version": res.train.version}, "predict": res.predict.to_dict(),
                    "locations": res.locations}, render)


# --------------------------------------------------------------------------------------------- ops
@tiers_app.command("get")
def tiers_get(customer_id: Annotated[str, typer.Argument(help="Customer id.")],
              as_of: Annotated[str | None, typer.Option("--as-of")] = None, config: ConfigOpt = None, as_json: JsonOpt = False):
    """One customer's tier, reason, action, churn risk, CLV, next tier, RFM segment and tier history."""
    from tiering.models.tiers import TIER_BY_NAME
    from tiering.store import ScoresStore

    cfg = _config(config)
    store = ScoresStore(cfg.store.url, create=False)
    row = store.get_customer(customer_id, _date(as_of, "--as-of"))
    if row is None:
        raise ConfigError(f"Customer {customer_id!r} is not in the latest scoring batch of {cfg.store.url}. Check the id.")
    row["action"] = TIER_BY_NAME[row["tier"]].action
    history = store.customer_history(customer_id)
    row.pop("batch_id", None)
    payload = row | {"history": history.to_dict("records")}

    def render(c):
        for k in ("customer_id", "as_of", "tier", "tier_reason", "action", "churn_risk", "p_purchase", "clv", "next_tier",
                  "next_tier_proba", "rfm_segment", "at_risk", "koc_candidate", "model_version"):
            c.print(f"{k:>16}: {row.get(k)}")
        c.print(_table("History", history))

    _emit(as_json, payload, render)


@tiers_app.command("list")
def tiers_list(
    tier: Annotated[str | None, typer.Option("--tier", help="core, value, seed, new or ordinary.")] = None,
    at_risk: Annotated[bool, typer.Option("--at-risk", help="Only at-risk customers.")] = False,
    limit: Annotated[int, typer.Option(help="Maximum rows.")] = 100,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    as_of: Annotated[str | None, typer.Option("--as-of")] = None,
    config: ConfigOpt = None, as_json: JsonOpt = False,
):
    """The members of a tier, highest CLV first."""
    from tiering.store import ScoresStore

    cfg = _config(config)
    df = ScoresStore(cfg.store.url, create=False).list_tier(tier, as_of=_date(as_of, "--as-of"), at_risk=True if at_risk else None, limit=limit)
    cols = ["customer_id", "tier", "clv", "churn_risk", "p_purchase", "rfm_segment", "at_risk", "tier_reason"]
    if as_json or fmt == "json":
        typer.echo(df.to_json(orient="records", date_format="iso"))
    elif fmt == "csv":
        df.to_csv(sys.stdout, index=False)
    else:
        _console().print(_table(f"Tier {tier or 'all'} ({len(df)} rows)", df[cols], {"clv": "{:,.2f}", "churn_risk": "{:.3f}", "p_purchase": "{:.3f}"}))


@tiers_app.command("summary")
def tiers_summary(as_of: Annotated[str | None, typer.Option("--as-of")] = None, config: ConfigOpt = None, as_json: JsonOpt = False):
    """Counts and shares per tier for the latest and previous as_of, with the migration between them."""
    from tiering.store import ScoresStore

    cfg = _config(config)
    store = ScoresStore(cfg.store.url, create=False)
    latest = store.latest_batch(_date(as_of, "--as-of"))
    prev = store.previous_batch(latest)
    now = store.tier_counts(latest)
    payload = {"as_of": latest.as_of, "tiers": now.to_dict("records")}
    if prev is not None:
        mig = store.migration(prev, latest)
        payload |= {"previous_as_of": prev.as_of, "previous": store.tier_counts(prev).to_dict("records"),
                    "migration": mig.to_dict()}

    def render(c):
        _print_tiers(c, now, f"Tiers as of {latest.as_of}")
        if prev is not None:
            _print_tiers(c, store.tier_counts(prev), f"Tiers as of {prev.as_of}")
            c.print(_table(f"Migration {prev.as_of} (rows) -> {latest.as_of} (columns)", mig.reset_index(names="from")))

    _emit(as_json, payload, render)


def main() -> None:
    try:
        app()
    except TieringError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
