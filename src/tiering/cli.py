"""The `tiering` command line: parses, calls one job (tiering.jobs; the ops lookups: tiering.ops), prints
(rich tables or JSON).

Every command takes --config PATH and --json; source overrides --transactions/--interactions/
--customers PATH replace the configured sources for one run. The output contract (results on
stdout, progress and logs on stderr, strict JSON, exit statuses 0/1/2/3, nothing secret printed)
lives in tiering.output.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
from pathlib import Path
from typing import Annotated, Any, overload

import typer

from tiering.config import SET_HELP
from tiering.exceptions import ConfigError
from tiering.output import EXIT_HELP, result_stream, to_json
from tiering.schemas import tier_list_text

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, epilog=EXIT_HELP,
                  help="Customer tiering: features, churn and CLV models, tiers, MLflow registry, batch scoring.\n\n"
                       "Every command that reads a config takes --config PATH and --set KEY=VALUE (repeatable), a dotted "
                       "config key set over the file for one run: --set model.horizon_days=120 --set features.windows_days=[30,90].")
tiers_app = typer.Typer(no_args_is_help=True, help="Ops lookups over the scores store.", epilog=EXIT_HELP)
app.add_typer(tiers_app, name="tiers")
experiment_app = typer.Typer(no_args_is_help=True, help="Comparisons of model variants, each a folder with spec.yaml.", epilog=EXIT_HELP)
app.add_typer(experiment_app, name="experiment")

ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help="Config file (default configs/base.yaml if present, else built-in defaults).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", metavar="KEY=VALUE", help=SET_HELP + " Applied over --config, "
                                                   "before this command's own options (--horizon-days, --engine, --transactions, ...).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print strict JSON instead of tables (errors too: {error, kind, hint}).")]
TxOpt = Annotated[Path | None, typer.Option("--transactions", help="Transactions file in contract column names (overrides config).")]
IxOpt = Annotated[Path | None, typer.Option("--interactions", help="Interactions file in contract column names (overrides config).")]
CuOpt = Annotated[Path | None, typer.Option("--customers", help="Customers file in contract column names (overrides config).")]
HorizonOpt = Annotated[int | None, typer.Option(
    "--horizon-days", min=1, max=3650, help="Prediction horizon H in days (default from config).")]
_MAX_ROWS = 2**63 - 1  # what the stores' signed 64-bit LIMIT/OFFSET take (tiering.ops.MAX_ROWS)
# secret values of the config read by this command (and the API token): masked in everything printed
_SECRETS: list[str] = []


def _version(value: bool) -> None:
    if value:
        from tiering import __version__

        result_stream().write(f"tiering {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_version, help="Print the version and exit.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show third-party warnings and INFO logs, and tracebacks of bugs "
                                                      "(on any command, anywhere on the line).")] = False,
) -> None:
    """Customer tiering: features, churn and CLV models, tiers, MLflow registry, batch scoring."""


def _console():
    """The result console: stdout (tables); progress goes to stderr (_steps)."""
    from rich.console import Console

    return Console(file=result_stream())


@overload
def _date(value: str, option: str) -> dt.date: ...


@overload
def _date(value: str | None, option: str) -> dt.date | None: ...


def _date(value: str | None, option: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{option} must be a date as YYYY-MM-DD; got {value!r}.") from None


def _config(config: Path | None, transactions=None, interactions=None, customers=None, *, sets: list[str] | None = None):
    """The config file (--config), then each --set KEY=VALUE in order, then the source options."""
    import os

    from tiering.config import load_config

    cfg = load_config(config, sets or ()).with_sources(transactions, interactions, customers)
    _SECRETS.extend(cfg.secret_values() + [os.environ.get("TIERING_API_TOKEN") or ""])
    return cfg


def _engine(cfg, engine: str | None):
    """``cfg`` with ``--engine`` applied (duckdb or spark), when given."""
    if engine is not None:
        if engine not in ("duckdb", "spark"):
            raise ConfigError(f"--engine must be duckdb or spark; got {engine!r}.")
        cfg.features.engine = engine
    return cfg


def _safe(text: str) -> str:
    """Printed text with every secret masked (URL passwords, the config's secret values)."""
    from tiering.redact import redact_text

    return redact_text(text, _SECRETS)


def _emit(as_json: bool, payload: Any, render) -> None:
    if as_json:
        result_stream().write(to_json(payload, tuple(_SECRETS)) + "\n")
    else:
        render(_console())


def _table(title: str, df, formats: dict[str, str] | None = None):
    from rich.table import Table

    t = Table(title=title)
    for c in df.columns:  # overflow="fold": a long cell wraps onto more lines, it is never cut with "…"
        t.add_column(str(c), justify="right" if df[c].dtype.kind in "fiu" else "left", overflow="fold")
    for row in df.itertuples(index=False):
        t.add_row(*_cells(df.columns, row, formats))
    return t


def _cells(columns, row, formats: dict[str, str] | None) -> list[str]:
    out = []
    for c, v in zip(columns, row):
        fmt = (formats or {}).get(c)
        out.append("" if v is None or v != v else (fmt.format(v) if fmt else str(v)))
    return out


def _show(c, title: str, df, formats: dict[str, str] | None = None, *, key: str) -> None:
    """A table when it fits the console's width; otherwise one small field/value table per row, titled by
    its ``key`` column (a narrow terminal, or 80 columns when stdout is not a terminal)."""
    from rich.table import Table

    widths = [max([len(str(col))] + [len(s) for s in col_cells]) for col, col_cells in
              zip(df.columns, zip(*[_cells(df.columns, r, formats) for r in df.itertuples(index=False)]))]
    if sum(widths) + 3 * len(widths) + 1 <= c.width:
        c.print(_table(title, df, formats))
        return
    c.print(f"[bold]{title}[/bold]")
    for row in df.itertuples(index=False):
        values = dict(zip(df.columns, _cells(df.columns, row, formats)))
        t = Table(title=f"{key} {values[key]}", show_header=False, title_justify="left")
        t.add_column("field", style="dim", no_wrap=True)
        t.add_column("value", overflow="fold")
        for field, value in values.items():
            if field != key:
                t.add_row(str(field), value)
        c.print(t)


def _steps():
    """Progress on stderr for one command's job (under --json too: stdout holds only the result): a spinner with
    the step and its elapsed time on a terminal, one line per step otherwise (tiering.progress)."""
    from tiering.progress import ProgressDisplay

    return ProgressDisplay(True, redact=_safe)


# ---------------------------------------------------------------------------------------------
@app.command()
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

    res = jobs.simulate(customers=customers, start=_date(start, "--start"), end=_date(end, "--end"), seed=seed, out=out)
    _emit(as_json, res.to_dict(),
          lambda c: c.print(f"Wrote {res.rows} to {out}/ (truth.parquet holds the latent rates and true tiers)."))


@app.command()
def validate(
    config: ConfigOpt = None, set_: SetOpt = None, transactions: TxOpt = None, interactions: IxOpt = None, customers: CuOpt = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Also set aside rows after this date.")] = None,
    as_json: JsonOpt = False,
):
    """Check the configured sources against the contracts; write the quarantine; print counts per reason."""
    import pandas as pd

    from tiering import jobs

    cfg = _config(config, transactions, interactions, customers, sets=set_)
    res = jobs.validate(cfg, as_of=_date(as_of, "--as-of"))
    reports = res.to_dict()["tables"]

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
    config: ConfigOpt = None, set_: SetOpt = None, transactions: TxOpt = None, interactions: IxOpt = None, customers: CuOpt = None,
    as_json: JsonOpt = False,
):
    """Build the feature frame (one row per customer) as of a date."""
    from tiering import jobs

    cfg = _engine(_config(config, transactions, interactions, customers, sets=set_), engine)
    res = jobs.features(cfg, as_of=_date(as_of, "--as-of"), out=out)
    _emit(as_json, res.to_dict(), lambda c: c.print(
        f"Wrote features for {res.customers:,} customers ({len(res.columns)} columns) as of {res.as_of} to {res.out}."))


@app.command()
def train(
    as_of: Annotated[str, typer.Option("--as-of", help="Train on data at or before this date.")],
    horizon_days: HorizonOpt = None,
    config: ConfigOpt = None, set_: SetOpt = None, transactions: TxOpt = None, interactions: IxOpt = None, customers: CuOpt = None,
    as_json: JsonOpt = False,
):
    """Fit every model, evaluate out of time, log to MLflow, register a version with alias challenger."""
    from tiering import jobs

    cfg = _config(config, transactions, interactions, customers, sets=set_)
    with _steps() as step:
        result = jobs.train(cfg, as_of=_date(as_of, "--as-of"), horizon_days=horizon_days, progress=step)
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
    c.print(f"CLV model (the clv column): {result.bundle.clv_kind}; clv_normalized_gini is its metric.")
    c.print(f"Registered version {result.version} (alias challenger), run {result.run_id}.")


@app.command()
def backtest(
    origins: Annotated[str, typer.Option("--origins", help="Comma-separated origin dates, YYYY-MM-DD,YYYY-MM-DD,...")],
    horizon_days: HorizonOpt = None,
    out: Annotated[Path, typer.Option(help="Folder for the plots and backtest.csv.")] = Path("outputs/backtest"),
    config: ConfigOpt = None, set_: SetOpt = None, transactions: TxOpt = None, interactions: IxOpt = None, customers: CuOpt = None,
    as_json: JsonOpt = False,
):
    """Fit every CLV and churn model at each origin, judge it on the horizon after, log one MLflow run."""
    from tiering import jobs

    cfg = _config(config, transactions, interactions, customers, sets=set_)
    dates = [_date(o.strip(), "--origins") for o in origins.split(",") if o.strip()]
    with _steps() as step:
        run = jobs.backtest(cfg, dates, horizon_days=horizon_days, out=out, progress=step)
    res = run.result

    def render(c):
        for task, part in run.summary.groupby("task", sort=False):
            wide = part.pivot_table(index="model", columns="metric", values="mean", sort=False).reset_index()
            c.print(_table(f"{task}: mean over {len(run.origins)} origins, horizon {res.horizon_days} days", wide,
                           {k: "{:.4f}" for k in wide.columns if k != "model"}))
        for n in res.notes:
            c.print(f"[yellow]note:[/yellow] {n}")
        c.print(f"Per-origin table and plots in {out}/; MLflow run {run.run_id}.")

    _emit(as_json, run.to_dict(), render)


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="Registered version number.")],
    alias: Annotated[str, typer.Option(help="Alias to move.")] = "champion",
    force: Annotated[bool, typer.Option("--force", help="Promote even if its metrics are worse than the holder's or were "
                                                  "measured on another horizon.")] = False,
    config: ConfigOpt = None, set_: SetOpt = None, as_json: JsonOpt = False,
):
    """Move an alias (default champion) to a registered version."""
    from tiering.registry import promote as do_promote

    cfg = _config(config, sets=set_)
    mv = do_promote(version, cfg.tracking, alias=alias, force=force)
    _emit(as_json, {"name": mv.name, "version": mv.version, "alias": alias},
          lambda c: c.print(f"{mv.name} version {mv.version} is now {alias!r}."))


_COMPARE_METRICS = ("clv_normalized_gini", "clv_btyd_normalized_gini", "propensity_roc_auc", "churn_btyd_roc_auc",
                    "churn_model_brier", "churn_btyd_brier")


@app.command()
def compare(
    only: Annotated[list[str] | None, typer.Argument(metavar="[VERSION]...", help="Registered versions to compare (default: all).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="Most recent runs to show.")] = 20,
    config: ConfigOpt = None, set_: SetOpt = None, as_json: JsonOpt = False,
):
    """Registered versions and recent runs side by side (metrics, data, as_of, horizon, aliases), and the
    settings (params, data fingerprint, horizon, as_of) that differ between the versions shown."""
    import pandas as pd

    from tiering.registry import comparison

    cfg = _config(config, sets=set_)
    payload = comparison(cfg.tracking, limit=limit, only=only or None)

    def render(c):
        fmt = {k: "{:.4f}" for k in _COMPARE_METRICS}
        rows = [{"version": v["version"], "aliases": ", ".join(v["aliases"]), "run_id": v["run_id"], "as_of": v["as_of"],
                 "horizon_days": v["horizon_days"], "data_hash": v["data_hash"], **{k: v["metrics"].get(k) for k in _COMPARE_METRICS}}
                for v in payload["versions"]]
        if not rows:
            c.print(f"No registered versions of {cfg.tracking.registered_model} yet: run `tiering train`.")
        else:
            _show(c, f"Versions of {cfg.tracking.registered_model}", pd.DataFrame(rows), fmt, key="version")
        if payload["differs"]:
            diff = pd.DataFrame([{"setting": k, **{f"version {ver}": "(none)" if val is None else val for ver, val in vals.items()}}
                                 for k, vals in payload["differs"].items()])
            _show(c, "Settings that differ between these versions", diff, key="setting")
        elif len(rows) > 1:
            c.print("These versions share every setting (params, as_of, horizon, data).")
        flat = [{"run_id": r["run_id"], "name": r["run_name"], "kind": r["kind"], "started": r["started"], "as_of": r["as_of"],
                 "horizon_days": r["horizon_days"], "data_hash": r["data_hash"], "code": r["code_version"],
                 **{k: r["metrics"].get(k) for k in _COMPARE_METRICS}} for r in payload["runs"]]
        if flat:
            _show(c, f"Runs in experiment {cfg.tracking.experiment} (newest first)", pd.DataFrame(flat), fmt, key="run_id")

    _emit(as_json, payload, render)


@app.command()
def predict(
    as_of: Annotated[str, typer.Option("--as-of", help="Score with data at or before this date.")],
    model: Annotated[str, typer.Option("--model", help="Model URI, version number or alias.")] = "champion",
    out: Annotated[Path | None, typer.Option(help="Also write the scores to this Parquet/CSV file.")] = None,
    engine: Annotated[str | None, typer.Option(help="duckdb or spark (default from config).")] = None,
    chunk_rows: Annotated[int | None, typer.Option("--chunk-rows", min=1, help="Customers per chunk (default predict.chunk_rows).")] = None,
    work_dir: Annotated[Path | None, typer.Option("--work-dir", help="Keep the run's files here; the same command resumes "
                                                  "an interrupted run (default predict.work_dir).")] = None,
    config: ConfigOpt = None, set_: SetOpt = None, transactions: TxOpt = None, interactions: IxOpt = None, customers: CuOpt = None,
    as_json: JsonOpt = False,
):
    """Score the whole customer base with the champion (or --model) into the scores store."""
    from tiering import jobs

    cfg = _engine(_config(config, transactions, interactions, customers, sets=set_), engine)
    scored_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)  # the CLI edge: recorded on every row and on the batch
    with _steps() as step:
        res = jobs.predict(cfg, as_of=_date(as_of, "--as-of"), model=model, out=out, scored_at=scored_at,
                           chunk_rows=chunk_rows, work_dir=work_dir, progress=step, on_chunk=step.chunk)

    def render(c):
        _print_tiers(c, res.summary, f"Scored {res.batch.rows:,} customers as of {res.batch.as_of} with {res.batch.model_name} "
                                     f"v{res.batch.model_version} -> {_safe(cfg.store.url)}")
        if res.flips_avoided:
            c.print(f"Hysteresis (margin {cfg.model.tier_hysteresis_margin}) kept {res.flips_avoided:,} customers near a threshold "
                    "in their previous tier.")

    _emit(as_json, res.to_dict(), render)


def _print_tiers(c, summary, title: str) -> None:
    c.print(_table(title, summary, {"customers": "{:,}", "share": "{:.1%}", "mean_clv": "{:,.2f}", "mean_churn_risk": "{:.3f}",
                                    "mean_p_purchase": "{:.3f}", "at_risk": "{:,}"}))


@app.command()
def demo(
    customers: Annotated[int, typer.Option("--customers", min=10, max=10_000_000, help="Simulated customers.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    workdir: Annotated[Path, typer.Option(help="Where the demo writes data, MLflow store and scores store.")] = Path("outputs/demo"),
    as_json: JsonOpt = False,
):
    """The main job end to end on embedded defaults: simulate, train, register, promote, score, print tiers."""
    from tiering import jobs

    with _steps() as step:
        res = jobs.demo(customers=customers, seed=seed, workdir=workdir, progress=step)

    def render(c):
        _print_training(c, res.train)
        _print_tiers(c, res.predict.summary, f"Tiers as of {res.predict.batch.as_of} ({res.predict.batch.rows:,} customers)")
        for k, v in res.locations.items():
            c.print(f"{k:>14}: {_safe(str(v))}")

    _emit(as_json, {"train": {"metrics": res.train.metrics, "version": res.train.version}, "predict": res.predict.to_dict(),
                    "locations": res.locations}, render)


# --------------------------------------------------------------------------------------------- ops
AsOfOpt = Annotated[str | None, typer.Option("--as-of", help="Scoring date YYYY-MM-DD (default: the latest complete batch).")]


def _ops_store(cfg):
    from tiering.store import ScoresStore

    return ScoresStore(cfg.store.url, create=False, read_only=True, lock_timeout_s=cfg.store.lock_timeout_s)


def _ladder(cfg):
    from tiering.ladder import ladder

    return ladder(cfg.tiers)


@tiers_app.command("get")
def tiers_get(customer_id: Annotated[str, typer.Argument(help="Customer id.")], as_of: AsOfOpt = None,
              config: ConfigOpt = None, set_: SetOpt = None, as_json: JsonOpt = False):
    """One customer's tier, reason, action, churn risk, CLV, next tier, RFM segment and tier history."""
    import pandas as pd

    from tiering.ops import customer_card

    cfg = _config(config, sets=set_)
    card = customer_card(_ops_store(cfg), customer_id, _date(as_of, "--as-of"), ladder=_ladder(cfg))

    def pct(x):
        return "n/a" if x is None else f"{x:.1%}"

    def render(c):
        flags = "".join(f"  [bold red]{f}[/bold red]" for f, on in (("AT RISK", card["at_risk"]),
                                                                     ("LAPSED BUYER", card.get("lapsed_buyer")),
                                                                        ("KOC candidate", card["koc_candidate"])) if on)
        c.print(f"[bold]Customer {card['customer_id']}[/bold]: [bold]{card['tier_label']}[/bold] ({card['tier']}){flags}"
                f"  [dim]as of {card['as_of']}, model {card['model_name']} v{card['model_version']}[/dim]")
        churn = pct(card["churn_risk"]) + (" (no purchase yet)" if card["churn_risk"] is None else "")
        clv = "n/a" if card["clv"] is None else f"{card['clv']:,.2f}"
        probs = card.get("tier_probabilities") or {}
        lines = [("why", card["tier_reason"]), ("action", card["action"])]
        if card.get("lapsed_buyer"):
            lines.append(("tier action", card["tier_action"]))
        lines += [("churn risk", churn), (f"P(buy in {card['horizon_days']}d)", pct(card["p_purchase"])), ("CLV", clv),
                  ("next tier", f"{card['next_tier_label']} ({pct(card['next_tier_proba'])})"),
                  ("RFM segment", f"{card['rfm_segment']} (R{card['r_score']} F{card['f_score']} M{card['m_score']})"),
                  ("KOC score", "n/a" if card.get("koc_score") is None else f"{card['koc_score']:.3f}"),
                  ("P(tier)", ", ".join(f"{t} {pct(p)}" for t, p in probs.items()) if probs and None not in probs.values() else "n/a")]
        for k, v in lines:
            c.print(f"{k:>16}: {v}")
        hist = pd.DataFrame(card["history"], columns=["as_of", "tier", "churn_risk", "clv", "at_risk", "model_version"])
        c.print(_table("Tier history", hist, {"churn_risk": "{:.1%}", "clv": "{:,.2f}"}))

    _emit(as_json, card, render)


@tiers_app.command("list")
def tiers_list(
    tier: Annotated[str | None, typer.Option("--tier", help=f"{tier_list_text()} (default: every tier).")] = None,
    at_risk: Annotated[bool, typer.Option("--at-risk", help="Only at-risk customers.")] = False,
    limit: Annotated[int, typer.Option(
        min=0, max=_MAX_ROWS, help="Maximum rows; 0 for every member (e.g. a campaign export with --format csv).")] = 100,
    offset: Annotated[int, typer.Option(min=0, max=_MAX_ROWS, help="Rows to skip (paging).")] = 0,
    lapsed: Annotated[bool, typer.Option("--lapsed", help="Only lapsed buyers (the win-back list).")] = False,
    cursor: Annotated[str | None, typer.Option(help="Start after this cursor: the next_cursor of a --json page "
                                                     "(no rows skipped on the way, however deep; not with --offset).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    as_of: AsOfOpt = None, config: ConfigOpt = None, set_: SetOpt = None, as_json: JsonOpt = False,
):
    """The members of a tier, highest CLV first: a table, CSV (streamed, every column) or JSON."""
    import pandas as pd

    from tiering.ops import check_format, check_tier, iter_tier_csv, resolve_listing, tier_page

    fmt = check_format("json" if as_json else fmt.lower())
    if tier is not None:
        check_tier(tier)
    cfg = _config(config, sets=set_)
    store = _ops_store(cfg)
    d = _date(as_of, "--as-of")
    risk, lap = (True if at_risk else None), (True if lapsed else None)
    if fmt == "csv":
        batch, _ = resolve_listing(store, tier, as_of=d, at_risk=risk, cursor=cursor, name="--cursor", lapsed=lap)
        for text in iter_tier_csv(store, tier, batch=batch, at_risk=risk, limit=limit or None, offset=offset, cursor=cursor,
                                  lapsed=lap):
            result_stream().write(text)
        return
    page = tier_page(store, tier, as_of=d, at_risk=risk, limit=limit or None, offset=offset, cursor=cursor, lapsed=lap)
    if fmt == "json":
        _emit(True, page, None)
        return
    cols = {"customer_id": "customer", "tier": "tier", "clv": "CLV", "churn_risk": "churn", "p_purchase": "P(buy)",
            "next_tier": "next tier", "rfm_segment": "RFM segment", "at_risk": "at risk", "lapsed_buyer": "lapsed"}
    if tier is not None:
        cols.pop("tier")
    df = pd.DataFrame(page["items"], columns=list(cols)).rename(columns=cols)
    start = f"rows {offset + 1:,}-{offset + len(df):,}" if page.get("offset") is not None else f"{len(df):,} rows after the cursor"
    shown = f"{start} of {page['total']:,}" if len(df) else f"none of {page['total']:,}"
    which = f"Tier {tier or 'all'}{' (at risk)' if at_risk else ''}{' (lapsed buyers)' if lapsed else ''}"
    _console().print(_table(f"{which} as of {page['batch']['as_of']}: {shown}, highest CLV first",
                            df, {"CLV": "{:,.2f}", "churn": "{:.3f}", "P(buy)": "{:.3f}"}))


@tiers_app.command("summary")
def tiers_summary(as_of: AsOfOpt = None, config: ConfigOpt = None, set_: SetOpt = None, as_json: JsonOpt = False):
    """Counts and shares per tier for the latest and previous as_of, with the migration between them."""
    import pandas as pd

    from tiering.ops import summary

    cfg = _config(config, sets=set_)
    s = summary(_ops_store(cfg), _date(as_of, "--as-of"), ladder=_ladder(cfg))

    def render(c):
        cols = ["tier", "customers", "share", "mean_clv", "mean_churn_risk", "mean_p_purchase", "at_risk"]
        now = pd.DataFrame(s["tiers"])
        if s["previous"] is not None:
            now["previous_share"] = [r["share"] for r in s["previous"]]
            cols.insert(3, "previous_share")
        names = {"customers": "customers", "share": "share", "previous_share": "before",
                 "mean_clv": "mean CLV", "mean_churn_risk": "churn", "mean_p_purchase": "P(buy)", "at_risk": "at risk"}
        fmt = {"customers": "{:,}", "share": "{:.1%}", names["previous_share"]: "{:.1%}", "mean CLV": "{:,.2f}", "churn": "{:.3f}",
               "P(buy)": "{:.3f}", "at risk": "{:,}"}
        title = f"Tiers as of {s['as_of']} ({s['batch']['rows']:,} customers, model v{s['batch']['model_version']})"
        if s["previous"] is not None:
            title += f"; share before: as of {s['previous_as_of']}"
        c.print(_table(title, now[cols].rename(columns=names), fmt))
        m = s["migration"]
        if m is None:
            c.print("No earlier scoring date in the store: no migration to show.")
            return
        mat = pd.DataFrame(m["counts"], index=m["tiers"], columns=m["tiers"]).reset_index(names=f"from {m['from_as_of']}")
        c.print(_table(f"Migration {m['from_as_of']} (rows) -> {m['to_as_of']} (columns), customers", mat,
                       {t: "{:,}" for t in m["tiers"]}))
        stay = "n/a" if m["share_staying"] is None else f"{m['share_staying']:.1%}"
        c.print(f"{m['customers_in_both']:,} customers scored on both dates: {stay} kept their tier, "
                f"{m['moved_up']:,} moved up, {m['moved_down']:,} moved down.")

    _emit(as_json, s, render)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default serve.host, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port (default serve.port, 8000).")] = None,
    workers: Annotated[int | None, typer.Option(min=1, max=64, help="uvicorn worker processes (default serve.workers, 1).")] = None,
    access_log: Annotated[bool, typer.Option("--access-log/--no-access-log", help="Log every request.")] = True,
    config: ConfigOpt = None, set_: SetOpt = None, as_json: JsonOpt = False,
):
    """REST API and ops web page over the scores store (read-only); needs a token (TIERING_API_TOKEN) off loopback."""
    from tiering import jobs

    cfg = _config(config, sets=set_)
    plan = jobs.serve_plan(cfg, host=host, port=port, workers=workers)  # token, store and port checked before it prints
    _emit(as_json, plan.to_dict(), lambda c: c.print(f"Serving the ops page at {plan.url} (API {plan.api}, reference {plan.docs}); "
                                                     f"authentication: {plan.auth}; {plan.workers} worker(s). Ctrl+C stops."))
    jobs.serve(cfg, plan, access_log=access_log, config_path=config, config_changed=bool(set_))


@app.command()
def report(
    as_of: Annotated[str, typer.Option("--as-of", help="Scoring date of the batch to report on, YYYY-MM-DD.")],
    out: Annotated[Path, typer.Option(help="Output HTML file (self-contained, opens offline).")] = Path("outputs/report.html"),
    config: ConfigOpt = None, set_: SetOpt = None, transactions: TxOpt = None, interactions: IxOpt = None, customers: CuOpt = None,
    as_json: JsonOpt = False,
):
    """HTML report: tier mix and migration, CLV/churn per tier, gain and calibration, funnel per cohort and channel."""
    from tiering import jobs

    cfg = _config(config, transactions, interactions, customers, sets=set_)
    with _steps() as step:
        res = jobs.report(cfg, as_of=_date(as_of, "--as-of"), out=out, progress=step)
    _emit(as_json, res.to_dict(), lambda c: c.print(
        f"Wrote the report on {res.customers:,} customers as of {res.as_of} to {res.out} "
        f"(migration from {res.previous_as_of or 'no earlier batch'}; realised outcomes: {res.outcomes})."))


@experiment_app.command("run")
def experiment_run(
    folder: Annotated[Path, typer.Argument(help="Experiment folder holding spec.yaml, e.g. experiments/clv_online_retail.")],
    config: ConfigOpt = None, set_: SetOpt = None, as_json: JsonOpt = False,
):
    """Backtest every variant of an experiment, log each as an MLflow run, write results.csv and results.md."""
    from tiering.experiment import run_experiment

    cfg = _config(config, sets=set_)
    with _steps() as step:
        res = run_experiment(folder, cfg, progress=step)
    comparison = res.comparison
    payload = {"experiment": res.spec.mlflow_experiment, "runs": res.run_ids, "results_csv": str(res.results_csv),
               "results_md": str(res.results_md), "results": res.table.assign(origin=res.table["origin"].astype(str)).to_dict("records"),
               "comparison": None if comparison is None else comparison.to_dict("records")}

    def render(c):
        if comparison is not None and len(comparison):
            cols = ["variant", "horizon_days", "task", "metric", "model", "origins", "model_mean", "best_baseline_mean",
                    "mean_diff", "ci_low", "ci_high", "share_won", "verdict"]
            fmt = {"model_mean": "{:.4f}", "best_baseline_mean": "{:.4f}", "mean_diff": "{:+.4f}", "ci_low": "{:+.4f}",
                   "ci_high": "{:+.4f}", "share_won": "{:.0%}"}
            _show(c, "Models against the best baseline, report origins (diff = model - best baseline; 90% interval)",
                  comparison[[k for k in cols if k in comparison.columns]], fmt, key="model")
        c.print(f"Logged {len(res.run_ids)} runs to MLflow experiment {res.spec.mlflow_experiment!r}; every table in {res.results_md} "
                f"and {res.results_csv}.")

    _emit(as_json, payload, render)


def main(argv: list[str] | None = None) -> None:
    """`tiering ...`: runs one command under the output contract (tiering.output) and exits with its status."""
    try:
        from typer._click import exceptions as cx  # typer 0.2x carries its own click
    except ImportError:  # older typer runs on click itself
        from click import exceptions as cx  # type: ignore[no-redef]  # the fallback of the import above: same API

    from tiering.output import error_payload, exit_code, quiet_third_party, redirect

    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in args
    args = [a for a in args if a != "--verbose"]  # accepted anywhere on the line, not only before the command
    as_json = "--json" in args
    quiet_third_party(verbose)
    code = 0
    exc: Exception | None = None
    with contextlib.nullcontext() if "--help" in args else redirect():  # help is the result: stdout
        try:
            code = app(args=[*(["--verbose"] if verbose else []), *args], prog_name="tiering", standalone_mode=False) or 0
        except typer.Exit as e:
            code = e.exit_code
        except (KeyboardInterrupt, typer.Abort):
            sys.stderr.write("interrupted\n")
            code = 130
        except cx.NoArgsIsHelpError as e:
            sys.stderr.write(e.ctx.get_help() + "\n")
            code = 2
        except cx.ClickException as e:
            exc, code, message = e, e.exit_code, e.format_message()
            cause = getattr(e.__cause__, "errors", None)  # typer's range checks: name the value found
            if callable(cause) and cause() and "input" in cause()[0]:
                message += f" (got {cause()[0]['input']})"
        except Exception as e:  # noqa: BLE001 - the edge: every error becomes a message and an exit status
            exc, code = e, exit_code(e)
            message = str(e) if code != 1 else f"internal error ({type(e).__name__}: {e})"
            if code == 1 and verbose:
                import traceback

                traceback.print_exc()
    if exc is not None:
        message = _safe(message)
        sys.stderr.write(f"error: {message}\n")
        if as_json:
            result_stream().write(to_json(error_payload(exc, message, code), tuple(_SECRETS)) + "\n")
    sys.stdout.flush()
    sys.exit(code)
