"""The model commands: ``train``, ``backtest``, ``promote``, ``compare``, ``predict``, ``demo`` and
``experiment run``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from tiering.cli._options import ConfigOpt, CuOpt, HorizonOpt, IxOpt, JsonOpt, SetOpt, TxOpt, load, parse_date, with_engine
from tiering.cli._output import emit, safe, show, steps, table


def train(
    as_of: Annotated[str, typer.Option("--as-of", help="Train on data at or before this date.")],
    horizon_days: HorizonOpt = None,
    engine: Annotated[
        str | None,
        typer.Option(help="duckdb or spark (default from config): where validation and the training sample run; see README 'Spark'."),
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    transactions: TxOpt = None,
    interactions: IxOpt = None,
    customers: CuOpt = None,
    as_json: JsonOpt = False,
):
    """Fit every model, evaluate out of time, log to MLflow, register a version with alias challenger."""
    from tiering import jobs

    cfg = with_engine(load(config, transactions, interactions, customers, sets=set_), engine)
    with steps() as step:
        result = jobs.train(cfg, as_of=parse_date(as_of, "--as-of"), horizon_days=horizon_days, progress=step)
    payload = {
        "run_id": result.run_id,
        "model_uri": result.model_uri,
        "version": result.version,
        "metrics": result.metrics,
        "fit_seconds": result.fit_seconds,
        "notes": result.notes,
    }
    emit(as_json, payload, lambda c: _print_training(c, result))


def _print_training(c, result) -> None:
    """A training result: its out-of-time metrics, notes, CLV model and registered version."""
    import pandas as pd

    m = result.metrics
    rows = [{"metric": k, "value": v} for k, v in m.items() if k.startswith(("clv_", "churn_", "propensity_"))]
    c.print(table("Out-of-time metrics (test origin = as_of - horizon)", pd.DataFrame(rows), {"value": "{:.4f}"}))
    for n in result.notes:
        c.print(f"[yellow]note:[/yellow] {n}")
    c.print(f"CLV model (the clv column): {result.bundle.clv_kind}; clv_normalized_gini is its metric.")
    c.print(f"Registered version {result.version} (alias challenger), run {result.run_id}.")


def backtest(
    origins: Annotated[str, typer.Option("--origins", help="Comma-separated origin dates, YYYY-MM-DD,YYYY-MM-DD,...")],
    horizon_days: HorizonOpt = None,
    out: Annotated[Path, typer.Option(help="Folder for the plots and backtest.csv.")] = Path("outputs/backtest"),
    config: ConfigOpt = None,
    set_: SetOpt = None,
    transactions: TxOpt = None,
    interactions: IxOpt = None,
    customers: CuOpt = None,
    as_json: JsonOpt = False,
):
    """Fit every CLV and churn model at each origin, judge it on the horizon after, log one MLflow run."""
    from tiering import jobs

    cfg = load(config, transactions, interactions, customers, sets=set_)
    dates = [parse_date(o.strip(), "--origins") for o in origins.split(",") if o.strip()]
    with steps() as step:
        run = jobs.backtest(cfg, dates, horizon_days=horizon_days, out=out, progress=step)
    res = run.result

    def render(c):
        for task, part in run.summary.groupby("task", sort=False):
            wide = part.pivot_table(index="model", columns="metric", values="mean", sort=False).reset_index()
            c.print(
                table(
                    f"{task}: mean over {len(run.origins)} origins, horizon {res.horizon_days} days",
                    wide,
                    {k: "{:.4f}" for k in wide.columns if k != "model"},
                )
            )
        for n in res.notes:
            c.print(f"[yellow]note:[/yellow] {n}")
        c.print(f"Per-origin table and plots in {out}/; MLflow run {run.run_id}.")

    emit(as_json, run.to_dict(), render)


def promote(
    version: Annotated[str, typer.Argument(help="Registered version number.")],
    alias: Annotated[str, typer.Option(help="Alias to move.")] = "champion",
    force: Annotated[
        bool, typer.Option("--force", help="Promote even if its metrics are worse than the holder's or were measured on another horizon.")
    ] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
):
    """Move an alias (default champion) to a registered version."""
    from tiering import jobs

    cfg = load(config, sets=set_)
    mv = jobs.promote(cfg, version, alias=alias, force=force)
    emit(
        as_json,
        {"name": mv.name, "version": mv.version, "alias": alias},
        lambda c: c.print(f"{mv.name} version {mv.version} is now {alias!r}."),
    )


_COMPARE_METRICS = (
    "clv_normalized_gini",
    "clv_btyd_normalized_gini",
    "propensity_roc_auc",
    "churn_btyd_roc_auc",
    "churn_model_brier",
    "churn_btyd_brier",
)


def _render_comparison(c, payload: dict, cfg) -> None:
    """Versions, the settings that differ between them and the recent runs, as tables."""
    import pandas as pd

    fmt = {k: "{:.4f}" for k in _COMPARE_METRICS}
    rows = [
        {
            "version": v["version"],
            "aliases": ", ".join(v["aliases"]),
            "run_id": v["run_id"],
            "as_of": v["as_of"],
            "horizon_days": v["horizon_days"],
            "data_hash": v["data_hash"],
            **{k: v["metrics"].get(k) for k in _COMPARE_METRICS},
        }
        for v in payload["versions"]
    ]
    if not rows:
        c.print(f"No registered versions of {cfg.tracking.registered_model} yet: run `tiering train`.")
    else:
        show(c, f"Versions of {cfg.tracking.registered_model}", pd.DataFrame(rows), fmt, key="version")
    if payload["differs"]:
        diff = pd.DataFrame(
            [
                {"setting": k, **{f"version {ver}": "(none)" if val is None else val for ver, val in vals.items()}}
                for k, vals in payload["differs"].items()
            ]
        )
        show(c, "Settings that differ between these versions", diff, key="setting")
    elif len(rows) > 1:
        c.print("These versions share every setting (params, as_of, horizon, data).")
    flat = [
        {
            "run_id": r["run_id"],
            "name": r["run_name"],
            "kind": r["kind"],
            "started": r["started"],
            "as_of": r["as_of"],
            "horizon_days": r["horizon_days"],
            "data_hash": r["data_hash"],
            "code": r["code_version"],
            **{k: r["metrics"].get(k) for k in _COMPARE_METRICS},
        }
        for r in payload["runs"]
    ]
    if flat:
        show(c, f"Runs in experiment {cfg.tracking.experiment} (newest first)", pd.DataFrame(flat), fmt, key="run_id")


def compare(
    only: Annotated[list[str] | None, typer.Argument(metavar="[VERSION]...", help="Registered versions to compare (default: all).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="Most recent runs to show.")] = 20,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
):
    """Registered versions and recent runs side by side (metrics, data, as_of, horizon, aliases), and the
    settings (params, data fingerprint, horizon, as_of) that differ between the versions shown."""

    from tiering import jobs

    cfg = load(config, sets=set_)
    payload = jobs.compare(cfg, limit=limit, only=only)

    emit(as_json, payload, lambda c: _render_comparison(c, payload, cfg))


def predict(
    as_of: Annotated[str, typer.Option("--as-of", help="Score with data at or before this date.")],
    model: Annotated[str, typer.Option("--model", help="Model URI, version number or alias.")] = "champion",
    out: Annotated[Path | None, typer.Option(help="Also write the scores to this Parquet/CSV file.")] = None,
    engine: Annotated[str | None, typer.Option(help="duckdb or spark (default from config).")] = None,
    chunk_rows: Annotated[int | None, typer.Option("--chunk-rows", min=1, help="Customers per chunk (default predict.chunk_rows).")] = None,
    work_dir: Annotated[
        Path | None,
        typer.Option(
            "--work-dir", help="Keep the run's files here; the same command resumes an interrupted run (default predict.work_dir)."
        ),
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    transactions: TxOpt = None,
    interactions: IxOpt = None,
    customers: CuOpt = None,
    as_json: JsonOpt = False,
):
    """Score the whole customer base with the champion (or --model) into the scores store."""
    from tiering import jobs

    cfg = with_engine(load(config, transactions, interactions, customers, sets=set_), engine)
    scored_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)  # the CLI edge: recorded on every row and on the batch
    with steps() as step:
        res = jobs.predict(
            cfg,
            as_of=parse_date(as_of, "--as-of"),
            model=model,
            out=out,
            scored_at=scored_at,
            chunk_rows=chunk_rows,
            work_dir=work_dir,
            progress=step,
            on_chunk=step.chunk,
        )

    def render(c):
        _print_tiers(
            c,
            res.summary,
            f"Scored {res.batch.rows:,} customers as of {res.batch.as_of} with {res.batch.model_name} "
            f"v{res.batch.model_version} -> {safe(cfg.store.url)}",
        )
        if res.flips_avoided:
            c.print(
                f"Hysteresis (margin {cfg.model.tier_hysteresis_margin}) kept {res.flips_avoided:,} customers near a threshold "
                "in their previous tier."
            )

    emit(as_json, res.to_dict(), render)


def _print_tiers(c, summary, title: str) -> None:
    """A scored batch's tier summary (customers, share, mean CLV and churn, at risk per tier)."""
    c.print(
        table(
            title,
            summary,
            {
                "customers": "{:,}",
                "share": "{:.1%}",
                "mean_clv": "{:,.2f}",
                "mean_churn_risk": "{:.3f}",
                "mean_p_purchase": "{:.3f}",
                "at_risk": "{:,}",
            },
        )
    )


def demo(
    customers: Annotated[int, typer.Option("--customers", min=10, max=10_000_000, help="Simulated customers.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    workdir: Annotated[Path, typer.Option(help="Where the demo writes data, MLflow store and scores store.")] = Path("outputs/demo"),
    as_json: JsonOpt = False,
):
    """The main job end to end on embedded defaults: simulate, train, register, promote, score, print tiers."""
    from tiering import jobs

    with steps() as step:
        res = jobs.demo(customers=customers, seed=seed, workdir=workdir, progress=step)

    def render(c):
        _print_training(c, res.train)
        _print_tiers(c, res.predict.summary, f"Tiers as of {res.predict.batch.as_of} ({res.predict.batch.rows:,} customers)")
        for k, v in res.locations.items():
            c.print(f"{k:>14}: {safe(str(v))}")

    emit(
        as_json,
        {
            "train": {"metrics": res.train.metrics, "version": res.train.version},
            "predict": res.predict.to_dict(),
            "locations": res.locations,
        },
        render,
    )


def experiment_run(
    folder: Annotated[Path, typer.Argument(help="Experiment folder holding spec.yaml, e.g. experiments/clv_online_retail.")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
):
    """Backtest every variant of an experiment, log each as an MLflow run, write results.csv and results.md."""
    from tiering import jobs

    cfg = load(config, sets=set_)
    with steps() as step:
        res = jobs.experiment(cfg, folder, progress=step)
    comparison = res.comparison
    payload = {
        "experiment": res.spec.mlflow_experiment,
        "runs": res.run_ids,
        "results_csv": str(res.results_csv),
        "results_md": str(res.results_md),
        "results": res.table.assign(origin=res.table["origin"].astype(str)).to_dict("records"),
        "comparison": None if comparison is None else comparison.to_dict("records"),
    }

    def render(c):
        if comparison is not None and len(comparison):
            cols = [
                "variant",
                "horizon_days",
                "task",
                "metric",
                "model",
                "origins",
                "model_mean",
                "best_baseline_mean",
                "mean_diff",
                "ci_low",
                "ci_high",
                "share_won",
                "verdict",
            ]
            fmt = {
                "model_mean": "{:.4f}",
                "best_baseline_mean": "{:.4f}",
                "mean_diff": "{:+.4f}",
                "ci_low": "{:+.4f}",
                "ci_high": "{:+.4f}",
                "share_won": "{:.0%}",
            }
            show(
                c,
                "Models against the best baseline, report origins (diff = model - best baseline; 90% interval)",
                comparison[[k for k in cols if k in comparison.columns]],
                fmt,
                key="model",
            )
        c.print(
            f"Logged {len(res.run_ids)} runs to MLflow experiment {res.spec.mlflow_experiment!r}; every table in {res.results_md} "
            f"and {res.results_csv}."
        )

    emit(as_json, payload, render)
