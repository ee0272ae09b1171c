"""Backtest: every CLV and churn model fitted at each of several origins and judged on the horizon after it.

At each origin o (features use data at or before o; outcomes come from (o, o + H]):

- CLV, judged on customers who had purchased by o: ``naive`` (net spend over the largest feature
  window), ``btyd`` (BG/NBD or Pareto/NBD + Gamma-Gamma fitted at o, discounted CLV), ``supervised``
  (spend model on the features) and ``hybrid`` (features + BTYD outputs), both trained at
  o - H (and earlier, ``model.training_origins``) with labels ending by o, level aligned to BTYD;
- churn, the same customers: ``naive`` (recency; ranking metrics only), ``btyd`` (1 - P(no
  purchase in H)) and ``model`` (the propensity model as the bundle uses it);
- propensity, every customer known at o, buyers or not: ``model``.

Thin data never crash it: BTYD falls back per origin (tiering.train._fit_btyd), the propensity
model per its own rules, a supervised CLV model without enough spenders is left out; each
fallback is a line in ``notes``. An origin where nobody has purchased is a DataQualityError.

The result is one tidy table (origin, task, model, metric, value) and, with ``out_dir``, per
origin a gain curve and a decile chart of the CLV models and a calibration curve of the churn
models (PNG), plus ``backtest.csv``. tiering.experiment and ``tiering backtest`` build on it.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tiering.config import Config
from tiering.evaluation import clv_metrics, propensity_metrics, ranking_auc
from tiering.exceptions import ConfigError, DataQualityError, ModelError
from tiering.models.intervals import interval_metrics
from tiering.train import (
    LEARNED_CLV,
    OriginFit,
    clv_columns,
    feature_spec,
    fit_clv,
    fit_interval,
    fit_origin,
    fit_propensity,
    fit_training_origins,
    training_origins,
)
from tiering.validation import ValidatedTables

VARIANTS: dict[str, tuple[str, ...]] = {
    "clv": ("naive", "btyd", "supervised", "hybrid", "hurdle"),
    "interval": ("cqr",),
    "churn": ("naive", "btyd", "model"),
    "propensity": ("model",),
}
COLUMNS = ["origin", "task", "model", "metric", "value"]


@dataclass
class BacktestResult:
    table: pd.DataFrame  # origin, task, model, metric, value
    horizon_days: int
    plots: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    # with keep_predictions: origin -> customer_id, has_purchased, labels and every model's prediction
    predictions: dict[dt.date, pd.DataFrame] = field(default_factory=dict)

    @property
    def summary(self) -> pd.DataFrame:
        """Mean (and number of origins) per task, model and metric."""
        return summarise(self.table)


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    g = table.groupby(["task", "model", "metric"], sort=False)["value"]
    return g.agg(mean="mean", origins="count").reset_index()


def to_markdown(summary: pd.DataFrame, digits: int = 3) -> str:
    """The mean-over-origins table as Markdown, one block per task (models as rows, metrics as columns)."""
    lines = []
    for task, part in summary.groupby("task", sort=False):
        wide = part.pivot_table(index="model", columns="metric", values="mean", sort=False)
        cols = list(wide.columns)
        lines += [f"**{task}**", "", "| model | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
        for model, row in wide.iterrows():
            lines.append(f"| {model} | " + " | ".join("" if pd.isna(row[c]) else f"{row[c]:.{digits}f}" for c in cols) + " |")
        lines.append("")
    return "\n".join(lines)


def _selected(variants) -> dict[str, tuple[str, ...]]:
    """``variants``: None (all), or names like "hybrid", "btyd" (every task that has it) or "clv:hybrid"."""
    if variants is None:
        return dict(VARIANTS)
    out: dict[str, list[str]] = {t: [] for t in VARIANTS}
    for v in variants:
        task, _, name = str(v).rpartition(":")
        tasks = [task] if task else [t for t, names in VARIANTS.items() if name in names]
        if not tasks or any(t not in VARIANTS or name not in VARIANTS[t] for t in tasks):
            known = ", ".join(f"{t}:{n}" for t, ns in VARIANTS.items() for n in ns)
            raise ConfigError(f"Unknown backtest variant {v!r}. Known: {known} (or a bare model name for every task that has it).")
        for t in tasks:
            out[t].append(name)
    return {t: tuple(dict.fromkeys(ns)) for t, ns in out.items() if ns}


def _check_origins(tables: ValidatedTables, origins, horizon_days: int) -> list[dt.date]:
    if not origins:
        raise ConfigError("The backtest needs at least one origin date (YYYY-MM-DD).")
    origins = sorted(set(origins))
    t = tables.transactions
    agg = t.aggregate(first=t.ordered_at.min(), last=t.ordered_at.max()).to_pandas().iloc[0]
    first, last = pd.Timestamp(agg["first"]).date(), pd.Timestamp(agg["last"]).date()
    late = [o for o in origins if o + dt.timedelta(days=horizon_days) > last]
    early = [o for o in origins if o <= first]
    if late or early:
        raise ConfigError(
            f"Backtest origins must leave a full {horizon_days}-day holdout inside the data, which run from {first} to {last}: "
            f"{', '.join(str(o) for o in late + early)} do not (latest possible origin "
            f"{last - dt.timedelta(days=horizon_days)}). Pick earlier origins or pass a shorter --horizon-days."
        )
    return origins


def _rows(origin: dt.date, task: str, model: str, metrics: dict[str, float]) -> list[dict]:
    return [{"origin": origin, "task": task, "model": model, "metric": k, "value": float(v)} for k, v in metrics.items()]


def _rank_metrics(y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """Metrics of a score that ranks but is not a probability (the naive recency baseline)."""
    base = float(y.mean())
    k = max(1, int(np.ceil(0.1 * len(y))))
    top = np.argsort(-score, kind="stable")[:k]
    return {"roc_auc": ranking_auc(y, score), "top_decile_lift": float(y[top].mean() / base) if base else float("nan"),
            "base_rate": base}


def evaluate_origin(test: OriginFit, train_fits: list[OriginFit], cfg: Config, selected: dict[str, tuple[str, ...]],
                    out_dir: Path | None = None) -> tuple[list[dict], list[Path], list[str], pd.DataFrame]:
    """Rows of the tidy table for one origin (and its plots): ``test`` has features, labels and BTYD at the origin."""
    from tiering import plots

    o, f, b = test.origin, test.frame, test.btyd
    rows: list[dict] = []
    notes: list[str] = []
    buyer = f["has_purchased"].to_numpy() > 0
    y_spend = f["holdout_spend"].to_numpy(float)
    y_buy = f["purchased_in_horizon"].to_numpy(int)
    largest = max(feature_spec(cfg).windows_days)
    if _needs_training(selected) and not train_fits:
        notes.append(f"{o}: no usable training origin at or before {o - dt.timedelta(days=cfg.model.horizon_days)}; "
                     "supervised, hybrid, hurdle, the interval and the propensity model are left out there")

    clv_pred: dict[str, np.ndarray] = {}
    for name in selected.get("clv", ()):
        if name == "naive":
            clv_pred[name] = f[f"spend_{largest}d"].to_numpy(float)
        elif name == "btyd":
            clv_pred[name] = b["btyd_clv"].to_numpy(float)
        elif train_fits:
            try:
                clv_pred[name] = fit_clv(name, train_fits, cfg, test).predict(clv_columns(test, name))
            except ModelError as exc:  # too few spenders in the training horizon: left out, said so
                notes.append(f"{o}: the {name} CLV model is not fitted ({exc}); left out there")
    for name, p in clv_pred.items():
        rows += _rows(o, "clv", name, clv_metrics(y_spend[buyer], p[buyer]))
    interval = None
    if "cqr" in selected.get("interval", ()) and train_fits:
        try:
            interval = fit_interval(train_fits, cfg).predict(clv_columns(test, "interval"))
            rows += _rows(o, "interval", "cqr", interval_metrics(y_spend, *interval))
            rows += _rows(o, "interval", "cqr_buyers", interval_metrics(y_spend[buyer], *(v[buyer] for v in interval)))
        except ModelError as exc:
            notes.append(f"{o}: the CLV interval is not fitted ({exc}); left out there")

    churn_pred: dict[str, np.ndarray] = {}
    p_model = None
    if train_fits and ("model" in selected.get("churn", ()) or "model" in selected.get("propensity", ())):
        prop = fit_propensity(train_fits, cfg, test)
        notes += [f"{o}: {s}" for s in prop.fallbacks_]
        p_model = prop.predict_purchase(test.bundle.propensity_input(f[test.bundle.feature_columns], b))
    for name in selected.get("churn", ()):
        if name == "naive":
            rows += _rows(o, "churn", name, _rank_metrics(y_buy[buyer], -f["days_since_last_purchase"].to_numpy(float)[buyer]))
        elif name == "btyd":
            churn_pred[name] = 1 - b["btyd_p_no_purchase"].to_numpy(float)
        elif p_model is not None:
            churn_pred[name] = p_model
    for name, p in churn_pred.items():
        rows += _rows(o, "churn", name, propensity_metrics(y_buy[buyer], p[buyer]))
    if p_model is not None and "model" in selected.get("propensity", ()) and len(np.unique(y_buy)) == 2:
        rows += _rows(o, "propensity", "model", propensity_metrics(y_buy, p_model))

    written: list[Path] = []
    if out_dir is not None:
        if clv_pred:
            a = y_spend[buyer]
            preds = {k: v[buyer] for k, v in clv_pred.items()}
            written.append(plots.gain_curve(a, preds, out_dir / f"{o}_clv_gain.png", title=f"CLV gain curve, origin {o}"))
            written.append(plots.decile_chart(a, preds, out_dir / f"{o}_clv_deciles.png",
                                              title=f"Holdout spend by predicted decile, origin {o}"))
        if churn_pred:
            written.append(plots.calibration_curve(y_buy[buyer], {k: v[buyer] for k, v in churn_pred.items()},
                                                   out_dir / f"{o}_churn_calibration.png",
                                                   title=f"P(purchase in horizon), buyers, origin {o}"))
    preds = f[["customer_id", "has_purchased", "days_since_last_purchase", "holdout_spend", "purchased_in_horizon"]].copy()
    for name, p in clv_pred.items():
        preds[f"clv_{name}"] = p
    for name, p in churn_pred.items():
        preds[f"p_purchase_{name}"] = p
    if interval is not None:
        preds["interval_p10"], preds["interval_p90"] = interval
    return rows, written, notes, preds


def _needs_training(selected: dict[str, tuple[str, ...]]) -> bool:
    return any(m in (*LEARNED_CLV, "model", "cqr") for ms in selected.values() for m in ms)


def auto_choices(table: pd.DataFrame, horizon_days: int) -> dict[dt.date, str]:
    """The CLV model ``clv_model: auto`` would have shipped at each origin o: the one with the best normalized Gini
    at the latest origin whose horizon had ended by o (as tiering.train.choose_clv picks at its test origin, from
    outcomes known by then; ties keep the simpler model). Origins with no such earlier origin are left out."""
    clv = table[(table["task"] == "clv") & (table["metric"] == "normalized_gini")]
    gini = clv.pivot_table(index="origin", columns="model", values="value")
    order = [m for m in ("naive", "btyd", *LEARNED_CLV) if m in gini.columns]
    out = {}
    for o in sorted(clv["origin"].unique()):
        known = gini[[d + dt.timedelta(days=horizon_days) <= o for d in gini.index]]
        if not known.empty:
            last = known.iloc[-1]
            out[o] = max(order, key=lambda m: last[m] if pd.notna(last[m]) else -np.inf)
    return out


def _auto_rows(table: pd.DataFrame, choices: dict[dt.date, str]) -> list[dict]:
    """The chosen model's CLV metrics at each origin under the name "auto", and one "clv_auto_choice" row per origin."""
    clv = table[table["task"] == "clv"]
    rows: list[dict] = []
    for o, best in choices.items():
        rows += [{**r, "model": "auto"} for r in clv[(clv["origin"] == o) & (clv["model"] == best)].to_dict("records")]
        rows.append({"origin": o, "task": "clv_auto_choice", "model": best, "metric": "chosen", "value": 1.0})
    return rows


def backtest(tables: ValidatedTables, origins, cfg: Config, horizon_days: int | None = None, *, variants=None,
             out_dir: str | Path | None = None, keep_predictions: bool = False, progress=None) -> BacktestResult:
    """Fit the selected models at every origin and judge them on the horizon after it (see module doc).

    ``variants``: None for all, or a list of names ("naive", "btyd", "supervised", "hybrid", "model",
    optionally "task:name"). ``out_dir``: where the plots and backtest.csv go (created).
    """
    step = progress or (lambda msg: None)
    H = int(horizon_days or cfg.model.horizon_days)
    if H <= 0:
        raise ConfigError(f"--horizon-days must be a positive number of days; got {H}.")
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"horizon_days": H})})
    selected = _selected(variants)
    origins = _check_origins(tables, [o if isinstance(o, dt.date) else dt.date.fromisoformat(str(o)) for o in origins], H)
    spec = feature_spec(cfg)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    needs_training = _needs_training(selected)
    rows: list[dict] = []
    plots: list[Path] = []
    notes: list[str] = []
    seconds: dict[str, float] = {}
    cache: dict = {}
    kept: dict[dt.date, pd.DataFrame] = {}
    for o in origins:
        t0 = time.perf_counter()
        step(f"origin {o}: features, labels and BTYD")
        try:
            test = fit_origin(tables, o, cfg, spec)
        except DataQualityError as exc:
            raise DataQualityError(f"Backtest origin {o}: {exc}") from None
        train_fits = []
        if needs_training:
            step(f"origin {o}: training origins {', '.join(str(t) for t in training_origins(o, cfg))}")
            train_fits = fit_training_origins(tables, o, cfg, spec, cache)
        notes += [f"{o}: {s}" for s in test.fallbacks]
        r, p, n, preds = evaluate_origin(test, train_fits, cfg, selected, out)
        if keep_predictions:
            kept[o] = preds
        rows += r
        plots += p
        notes += n
        cache[o] = test  # a later origin H after this one trains here
        seconds[str(o)] = round(time.perf_counter() - t0, 2)
    if len(selected.get("clv", ())) > 1:
        choices = auto_choices(pd.DataFrame(rows, columns=COLUMNS), H)
        rows += _auto_rows(pd.DataFrame(rows, columns=COLUMNS), choices)
        for o, best in choices.items():
            if o in kept and f"clv_{best}" in kept[o]:
                kept[o]["clv_auto"] = kept[o][f"clv_{best}"]
    table = pd.DataFrame(rows, columns=COLUMNS)
    if out is not None:
        table.to_csv(out / "backtest.csv", index=False)
    return BacktestResult(table, H, plots, notes, seconds, kept)



def run_metrics(result: BacktestResult) -> dict[str, float]:
    """MLflow metrics of a backtest: ``{task}_{model}_{metric}`` (mean over origins) and
    ``{task}_{model}_{metric}_{YYYYMMDD}`` (per origin)."""
    metrics = {f"{r.task}_{r.model}_{r.metric}": r.mean for r in result.summary.itertuples()}
    metrics |= {f"{r.task}_{r.model}_{r.metric}_{r.origin:%Y%m%d}": r.value for r in result.table.itertuples()}
    return metrics


def log_backtest(cfg: Config, result: BacktestResult, *, run_name: str, kind: str, data_hash: str,
                 params: dict | None = None, tags: dict | None = None, artifacts_dir: str | Path | None = None) -> str:
    """Log one backtest as an MLflow run in ``cfg.tracking``: origins, horizon and the resolved config as
    params, :func:`run_metrics` as metrics, kind/horizon/data hash/code version as tags (plus ``params``
    and ``tags``), the files under ``artifacts_dir``. Returns the run id."""
    from tiering import tracking

    origins = sorted({r.origin for r in result.table.itertuples()})
    return tracking.log_run(
        cfg.tracking, run_name=run_name,
        params={"origins": ",".join(str(o) for o in origins), "horizon_days": result.horizon_days,
                "config": cfg.redacted()} | (params or {}),
        metrics=run_metrics(result),
        tags={"kind": kind, "horizon_days": str(result.horizon_days), "data_hash": data_hash,
              "code_version": tracking.code_version()} | (tags or {}),
        artifacts_dir=artifacts_dir,
    )


def backtest_and_log(cfg: Config, origins, *, horizon_days: int | None = None, out_dir: str | Path = "outputs/backtest",
                     variants=None, progress=None) -> tuple[BacktestResult, str]:
    """Validate the sources, backtest at ``origins`` and log one MLflow run: metrics per model and origin
    (``{task}_{model}_{metric}_{YYYYMMDD}``) and their means (``{task}_{model}_{metric}``), the plots and
    backtest.csv as artifacts. Returns the result and the run id."""
    from tiering import tracking
    from tiering.train import data_fingerprint
    from tiering.validation import load_tables

    step = progress or (lambda msg: None)
    step("validating sources")
    tables = load_tables(cfg, as_of=None)
    res = backtest(tables, origins, cfg, horizon_days, variants=variants, out_dir=out_dir, progress=progress)
    step("logging to MLflow")
    origin_list = sorted({r.origin for r in res.table.itertuples()})
    data_hash = data_fingerprint(tables)["hash"]
    run_id = log_backtest(cfg, res, run_name=tracking.run_name("backtest", cfg, origin_list or None, data_hash,
                                                               horizon_days=res.horizon_days),
                          kind="backtest", data_hash=data_hash, artifacts_dir=out_dir)
    return res, run_id
