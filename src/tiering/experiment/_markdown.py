"""``results.md`` of an experiment: the comparison with the best baseline and its verdicts, the CLV interval's
coverage, the selection origins' means, every run's mean-over-origins tables and the key metrics per origin."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from tiering.experiment._spec import ExperimentSpec

if TYPE_CHECKING:
    from tiering.backtest import BacktestResult

_KEY_METRICS = ("normalized_gini", "roc_auc", "brier")


def _fmt(x: float, d: int = 4) -> str:
    return "" if pd.isna(x) else f"{x:+.{d}f}"


def _verdicts(cmp: pd.DataFrame) -> list[str]:
    """One plain sentence per verdict (a baseline wins, no clear winner, the model wins) listing its rows."""
    lines = [""]
    for verdict, title in (
        ("baseline wins", "**A baseline wins** (interval wholly below 0): "),
        ("tie", "**No clear winner** (interval covers 0): "),
        ("model wins", "**The model wins** (interval wholly above 0): "),
    ):
        rows = cmp[cmp["verdict"].str.startswith(verdict)] if verdict == "tie" else cmp[cmp["verdict"] == verdict]
        if rows.empty:
            continue
        items = [
            f"{r.variant} H{r.horizon_days} {r.task} {r.metric} {r.model} ({_fmt(r.mean_diff)}"
            + (f", best baseline: {r.best_baselines})" if verdict == "baseline wins" else ")")
            for r in rows.itertuples()
        ]
        lines += [title + "; ".join(items) + ".", ""]
    return lines


def comparison_markdown(cmp: pd.DataFrame, spec: ExperimentSpec, splits: dict, hiatus: dict, seconds: dict) -> list[str]:
    """The leading section of results.md: the comparison table, then the plain verdicts."""
    b = spec.bootstrap
    lines = ["## Models against the best baseline, report origins only", ""]
    lines += [
        f"Selection/report split: select_until = {spec.select_until or 'none (every origin is a report origin)'}; "
        "an origin is a selection origin when its whole holdout ends by then, a report origin when it is after it. "
        "Per origin the best baseline is the best of the baselines there (CLV: past spend `naive`, `recency`, `btyd`; "
        "churn ROC-AUC: `recency`, `past_spend`, `btyd`, the hiatus rules; churn Brier: `btyd` and the calibrated "
        "hiatus rules). diff = model - best baseline (Brier: best baseline - model), so positive means the model is "
        f"better. {b.level:.0%} interval: {b.replicates} bootstrap replicates (seed {b.seed}) resampling customers "
        "(one draw applied to every origin, metrics and the best baseline recomputed per replicate); "
        "`CI origins`: resampling origins instead (a rough guide: monthly origins overlap). "
        "won = share of report origins where the model beats the best baseline.",
        "",
    ]
    if cmp is None or cmp.empty:
        return lines + ["No report origins (or no model beside the baselines): nothing to compare.", ""]
    lines += [
        "| variant | H | task | metric | model | origins | model | best baseline | diff | 90% CI (customers) | "
        "90% CI (origins) | won | min..max diff | best baseline at origins | verdict |",
        "|---|---:|---|---|---|---:|---:|---:|---:|---|---|---:|---|---|---|",
    ]
    for r in cmp.itertuples():
        lines.append(
            f"| {r.variant} | {r.horizon_days} | {r.task} | {r.metric} | {r.model} | {r.origins} | "
            f"{r.model_mean:.4f} | {r.best_baseline_mean:.4f} | **{_fmt(r.mean_diff)}** | "
            f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}] | [{_fmt(r.ci_origins_low)}, {_fmt(r.ci_origins_high)}] | "
            f"{r.share_won:.0%} | {_fmt(r.min_diff, 3)}..{_fmt(r.max_diff, 3)} | {r.best_baselines} | {r.verdict} |"
        )
    lines += _verdicts(cmp)
    lines += ["Origins per variant and horizon (select / gap / report), chosen hiatus, wall time:", ""]
    for key, sp in splits.items():
        by = {k: [o for o, v in sp.items() if v == k] for k in ("select", "gap", "report")}
        desc = "; ".join(f"{k} {len(v)}" + (f" ({v[0]}..{v[-1]})" if v else "") for k, v in by.items())
        h = hiatus.get(key)
        lines.append(
            f"- {key}: {desc}; hiatus_sel {f'{h:g} days' if h else 'none (no selection origin)'}; {seconds.get(key, float('nan')):.0f} s"
        )
    return lines + [""]


def interval_markdown(table: pd.DataFrame) -> list[str]:
    """The CLV interval's measured coverage on the report origins: mean and min..max over origins, per variant,
    horizon and population (every customer known at the origin; buyers only)."""
    part = table[(table["task"] == "interval") & (table["split"] == "report")]
    if part.empty:
        return []
    lines = [
        "## CLV interval (clv_p10 .. clv_p90): coverage measured on the report origins",
        "",
        "Target: the share of customers whose spend over the horizon falls inside their interval is the configured "
        "coverage (80%; 75-85% counts as on target). `cqr`: every customer known at the origin; `cqr_buyers`: those "
        "who had purchased by then (prospects who never buy are covered by any interval, so `cqr` can only be higher).",
        "",
        "| variant | H | population | origins | coverage | min..max | share below | share above | median width |",
        "|---|---:|---|---:|---:|---|---:|---:|---:|",
    ]
    for (v, h, m), g in part.groupby(["variant", "horizon_days", "model"], sort=False):
        w = g.pivot_table(index="origin", columns="metric", values="value")
        lines.append(
            f"| {v} | {h} | {m} | {len(w)} | {w['coverage'].mean():.1%} | {w['coverage'].min():.1%}..{w['coverage'].max():.1%} | "
            f"{w['share_below'].mean():.1%} | {w['share_above'].mean():.1%} | {w['median_width'].median():,.2f} |"
        )
    return lines + [""]


def selection_markdown(table: pd.DataFrame) -> list[str]:
    """Means over the selection origins: the numbers models, features and thresholds may be chosen on."""
    sel = table[(table["split"] == "select") & table["metric"].isin(_KEY_METRICS)]
    if sel.empty:
        return []
    wide = sel.pivot_table(index=["variant", "horizon_days", "task", "model"], columns="metric", values="value", aggfunc="mean", sort=False)
    n = sel.groupby(["variant", "horizon_days"])["origin"].nunique()
    cols = [c for c in _KEY_METRICS if c in wide.columns]
    lines = [
        "## Selection origins: means (for choosing; not the reported result)",
        "",
        "| variant | H | origins | task | model | " + " | ".join(cols) + " |",
        "|---|---:|---:|---|---|" + "---:|" * len(cols),
    ]
    for (v, h, t, m), row in wide.iterrows():
        lines.append(
            f"| {v} | {h} | {n.get((v, h), 0)} | {t} | {m} | " + " | ".join("" if pd.isna(row[c]) else f"{row[c]:.4f}" for c in cols) + " |"
        )
    return lines + [""]


def to_markdown(
    results: dict[str, BacktestResult], spec: ExperimentSpec, lead: list[str] | None = None, table: pd.DataFrame | None = None
) -> str:
    """The comparison (``lead``), selection means, per run the backtest's mean-over-origins tables, then the
    key metrics per origin."""
    from tiering.backtest import to_markdown as backtest_markdown

    lines = [
        f"# Results: {spec.description or spec.mlflow_experiment}",
        "",
        "Written by `tiering experiment run`; do not edit by hand.",
        "",
    ]
    lines += lead or []
    if table is not None and "split" in table:
        lines += interval_markdown(table) + selection_markdown(table)
    for name, res in results.items():
        origins = sorted({str(o) for o in res.table["origin"]})
        lines += [
            f"## {name}: mean over {len(origins)} origins ({', '.join(origins)}), horizon {res.horizon_days} days",
            "",
            backtest_markdown(res.summary, digits=4),
        ]
    key = pd.concat([r.table.assign(variant=n) for n, r in results.items()], ignore_index=True)
    key = key[key["metric"].isin(_KEY_METRICS)]
    wide = key.pivot_table(index=["variant", "task", "model", "metric"], columns="origin", values="value", sort=False)
    lines += [
        "## Per origin: normalized Gini (clv), ROC-AUC and Brier (churn, propensity)",
        "",
        "| variant | task | model | metric | " + " | ".join(str(c) for c in wide.columns) + " |",
        "|---|---|---|---|" + "---:|" * len(wide.columns),
    ]
    lines += [
        "| " + " | ".join(idx) + " | " + " | ".join("" if pd.isna(v) else f"{v:.4f}" for v in row) + " |" for idx, row in wide.iterrows()
    ]
    return "\n".join(lines) + "\n"
