"""Backtest: every CLV and churn model fitted at each of several origins and judged on the horizon after it.

At each origin o (features use data at or before o; outcomes come from (o, o + H]):

- CLV, judged on customers who had purchased by o: ``naive`` (net spend over the largest feature
  window), ``btyd`` (BG/NBD or Pareto/NBD + Gamma-Gamma fitted at o, discounted CLV), ``supervised``
  (spend model on the features) and ``hybrid`` (features + BTYD outputs), both trained at
  o - H (and earlier, ``model.training_origins``) with labels ending by o, level aligned to BTYD;
- churn, the same customers: ``naive`` (recency; ranking metrics only), ``btyd`` (1 - P(no
  purchase in H)) and ``model`` (the propensity model as the bundle uses it);
- propensity, every customer known at o, buyers or not: ``model``;
- tiers: the ``ladder`` the bundle would assign at o (the propensity model above, the CLV model of
  ``model.clv_model`` -- for "auto" the one auto would have shipped at o, else hybrid -- and the tier
  policy fitted as train fits it, its value floors learned only from outcomes known by o), judged by what
  its members did in (o, o + H] (tiering.tier_eval.tier_outcomes): see :func:`evaluate_ladder`.

Thin data never crash it: BTYD falls back per origin (tiering.fitting._fit_btyd), the propensity
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

import pandas as pd

from tiering.choice import buyers_in, heldout_clv_ginis, is_thin, pick_clv
from tiering.config import Config
from tiering.exceptions import ConfigError, DataQualityError, ModelError
from tiering.fitting import (
    CLV_CANDIDATES,
    LEARNED_CLV,
    OriginFit,
    feature_spec,
    fit_origin,
    fit_training_origins,
    training_origins,
)
from tiering.holdout import evaluate_origin, tidy_rows
from tiering.tier_fitting import HOLDOUT_COLUMNS, evaluate_ladder, ladder_bundle, ladder_holdout
from tiering.validation import ValidatedTables

__all__ = [
    "COLUMNS",
    "HOLDOUT_COLUMNS",
    "VARIANTS",
    "BacktestResult",
    "auto_choices",
    "backtest",
    "backtest_and_log",
    "evaluate_ladder",
    "evaluate_origin",
    "ladder_bundle",
    "ladder_clv_kind",
    "ladder_holdout",
    "log_backtest",
    "run_metrics",
    "summarise",
    "to_markdown",
]

VARIANTS: dict[str, tuple[str, ...]] = {
    "clv": ("naive", "btyd", "supervised", "hybrid", "hurdle"),
    "interval": ("cqr",),
    "churn": ("naive", "btyd", "model"),
    "propensity": ("model",),
    "tiers": ("ladder",),
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


def _needs_training(selected: dict[str, tuple[str, ...]]) -> bool:
    return any(m in (*LEARNED_CLV, "model", "cqr", "ladder") for ms in selected.values() for m in ms)


def ladder_clv_kind(cfg: Config, table: pd.DataFrame, horizon_days: int, origin: dt.date) -> str:
    """The CLV model the bundle's tiers use at ``origin``: ``model.clv_model``, or for "auto" the model auto would
    have shipped there (:func:`auto_choices` over ``table``, the rows so far), else ``model.clv_auto_prefer``."""
    if cfg.model.clv_model != "auto":
        return cfg.model.clv_model
    if not ((table["task"] == "clv") & (table["metric"] == "normalized_gini")).any():
        return cfg.model.clv_auto_prefer
    return auto_choices(table, horizon_days, cfg).get(origin, cfg.model.clv_auto_prefer)


def auto_choices(table: pd.DataFrame, horizon_days: int, cfg: Config) -> dict[dt.date, str]:
    """The CLV model ``clv_model: auto`` would have shipped at each origin o: :func:`tiering.choice.pick_clv` on the
    normalized Gini of every candidate at the latest origin whose horizon had ended by o (as tiering.train picks at
    its test origin, from outcomes known by then), or on o's held-out Ginis where that evidence is thin
    (:func:`_clv_evidence_rows`, as train does). Origins with neither are left out."""
    clv = table[(table["task"] == "clv") & (table["metric"] == "normalized_gini")]
    gini = clv.pivot_table(index="origin", columns="model", values="value")
    held = table[table["task"] == "clv_heldout"].pivot_table(index="origin", columns="model", values="value")
    out = {}
    for o in sorted(clv["origin"].unique()):
        known = gini[[d + dt.timedelta(days=horizon_days) <= o for d in gini.index]]
        evidence = held.loc[o] if o in held.index else (known.iloc[-1] if not known.empty else None)
        if evidence is not None:
            got = {m: evidence[m] for m in CLV_CANDIDATES if m in evidence.index}
            chosen = pick_clv(got, cfg.model.clv_auto_prefer, cfg.model.clv_auto_margin, in_time=o in held.index)
            if chosen is not None:
                out[o] = chosen
    return out


def _clv_evidence_rows(o: dt.date, train_fits: list[OriginFit], rows: list[dict], cfg: Config, selected: dict) -> list[dict]:
    """With ``clv_model: auto`` and learned CLV models selected: the buyers o's learned models learn from (task
    ``clv_evidence``) and, where the evidence auto would choose on is thin (as :func:`tiering.choice.thin_evidence`:
    the models judged at the latest origin d with d + H <= o learned from under half as many buyers, or there is no
    such d or no learned model at it), the held-out Ginis at o's latest training origin (task ``clv_heldout``,
    :func:`tiering.choice.heldout_clv_ginis`), which :func:`auto_choices` then uses."""
    learned = tuple(m for m in selected.get("clv", ()) if m in LEARNED_CLV)
    if cfg.model.clv_model != "auto" or not learned or not train_fits:
        return []
    n = buyers_in(train_fits)
    out = [{"origin": o, "task": "clv_evidence", "model": "learned", "metric": "buyers", "value": float(n)}]
    ended = [r["origin"] for r in rows if r["task"] == "clv" and r["origin"] + dt.timedelta(days=cfg.model.horizon_days) <= o]
    d = max(ended, default=None)
    at_d = [r["value"] for r in rows if r["task"] == "clv_evidence" and r["origin"] == d]
    if is_thin(at_d[0] if at_d else 0.0, n):
        ginis = heldout_clv_ginis(train_fits, cfg, learned)
        out += [{"origin": o, "task": "clv_heldout", "model": k, "metric": "normalized_gini", "value": v} for k, v in ginis.items()]
    return out


def _auto_rows(table: pd.DataFrame, choices: dict[dt.date, str]) -> list[dict]:
    """The chosen model's CLV metrics at each origin under the name "auto", and one "clv_auto_choice" row per origin."""
    clv = table[table["task"] == "clv"]
    rows: list[dict] = []
    for o, best in choices.items():
        rows += [{**r, "model": "auto"} for r in clv[(clv["origin"] == o) & (clv["model"] == best)].to_dict("records")]
        rows.append({"origin": o, "task": "clv_auto_choice", "model": best, "metric": "chosen", "value": 1.0})
    return rows


def _ladder_rows(
    tables: ValidatedTables,
    test: OriginFit,
    train_fits: list[OriginFit],
    cfg: Config,
    rows: list[dict],
    fitted: dict,
    ladders: dict,
    cache: dict,
    notes: list[str],
) -> tuple[list[dict], pd.DataFrame | None]:
    """The tier ladder at ``test.origin`` (the bundle train would have fitted there) judged by what came next: its
    rows and tiers, or none (thin data, noted). ``ladders`` (filled in): origin -> scored base, a later holdout."""
    o, spec = test.origin, feature_spec(cfg)
    kind = ladder_clv_kind(cfg, pd.DataFrame(rows, columns=COLUMNS), cfg.model.horizon_days, o)
    bundle = ladder_bundle(test, train_fits, cfg, kind, fitted, notes)
    holdout, where = ladder_holdout(test, train_fits, cfg, ladders, lambda t: fit_training_origins(tables, t, cfg, spec, cache))
    try:
        metrics, tiers, ladders[o] = evaluate_ladder(test, bundle, cfg, holdout, tables.interactions)
    except ModelError as exc:  # thin data: no ladder there, said so
        notes.append(f"{o}: the tier ladder is not judged ({exc}); left out there")
        return [], None
    notes.append(f"{o}: ladder with CLV model {bundle.clv_kind}; value floors learned on {where}")
    return tidy_rows(o, "tiers", "ladder", metrics), tiers


def _with_auto(rows: list[dict], kept: dict[dt.date, pd.DataFrame], horizon_days: int, cfg: Config) -> list[dict]:
    """``rows`` plus what ``clv_model: auto`` would have shipped at each origin (``auto`` rows, and ``clv_auto`` in the
    kept predictions)."""
    choices = auto_choices(pd.DataFrame(rows, columns=COLUMNS), horizon_days, cfg)
    for o, best in choices.items():
        if o in kept and f"clv_{best}" in kept[o]:
            kept[o]["clv_auto"] = kept[o][f"clv_{best}"]
    return rows + _auto_rows(pd.DataFrame(rows, columns=COLUMNS), choices)


def _origin_rows(
    tables: ValidatedTables,
    o: dt.date,
    cfg: Config,
    selected: dict,
    out: Path | None,
    res: BacktestResult,
    cache: dict,
    ladders: dict,
    step,
    rows: list[dict],
    keep_predictions: bool,
) -> list[dict]:
    """The rows of one origin (its models, then its ladder), its plots, notes and predictions added to ``res``."""
    spec = feature_spec(cfg)
    step(f"origin {o}: features, labels and BTYD")
    try:
        test = fit_origin(tables, o, cfg, spec)
    except DataQualityError as exc:
        raise DataQualityError(f"Backtest origin {o}: {exc}") from None
    train_fits = []
    if _needs_training(selected):
        step(f"origin {o}: training origins {', '.join(str(t) for t in training_origins(o, cfg))}")
        train_fits = fit_training_origins(tables, o, cfg, spec, cache)
    res.notes.extend(f"{o}: {s}" for s in test.fallbacks)
    fitted: dict = {}
    new, plots, notes, preds = evaluate_origin(test, train_fits, cfg, selected, out, fitted=fitted)
    new += _clv_evidence_rows(o, train_fits, rows + new, cfg, selected)
    res.plots.extend(plots)
    res.notes.extend(notes)
    if "ladder" in selected.get("tiers", ()):
        step(f"origin {o}: tier ladder")
        t1 = time.perf_counter()
        ladder, tiers = _ladder_rows(tables, test, train_fits, cfg, rows + new, fitted, ladders, cache, res.notes)
        new += ladder
        if tiers is not None:
            preds["tier_ladder"] = tiers["tier"].to_numpy()
        res.seconds[f"{o} ladder"] = round(time.perf_counter() - t1, 2)
    if keep_predictions:
        res.predictions[o] = preds
    cache[o] = test  # a later origin H after this one trains here
    return new


def backtest(
    tables: ValidatedTables,
    origins,
    cfg: Config,
    horizon_days: int | None = None,
    *,
    variants=None,
    out_dir: str | Path | None = None,
    keep_predictions: bool = False,
    progress=None,
) -> BacktestResult:
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
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    res = BacktestResult(pd.DataFrame(columns=COLUMNS), H)
    rows: list[dict] = []
    cache: dict = {}  # origin -> OriginFit: a later origin H after it trains there
    ladders: dict[dt.date, pd.DataFrame] = {}  # origin -> its ladder's scored base (a later origin's holdout)
    for o in origins:
        t0 = time.perf_counter()
        rows += _origin_rows(tables, o, cfg, selected, out, res, cache, ladders, step, rows, keep_predictions)
        res.seconds[str(o)] = round(time.perf_counter() - t0, 2)
    if any(m in LEARNED_CLV for m in selected.get("clv", ())):  # auto chooses among learned models and baselines
        rows = _with_auto(rows, res.predictions, H, cfg)
    res.table = pd.DataFrame(rows, columns=COLUMNS)
    if out is not None:
        res.table.to_csv(out / "backtest.csv", index=False)
    return res


def run_metrics(result: BacktestResult) -> dict[str, float]:
    """MLflow metrics of a backtest: ``{task}_{model}_{metric}`` (mean over origins) and
    ``{task}_{model}_{metric}_{YYYYMMDD}`` (per origin)."""
    metrics = {f"{r.task}_{r.model}_{r.metric}": r.mean for r in result.summary.itertuples()}
    metrics |= {f"{r.task}_{r.model}_{r.metric}_{r.origin:%Y%m%d}": r.value for r in result.table.itertuples()}
    return metrics


def log_backtest(
    cfg: Config,
    result: BacktestResult,
    *,
    run_name: str,
    kind: str,
    data_hash: str,
    params: dict | None = None,
    tags: dict | None = None,
    artifacts_dir: str | Path | None = None,
) -> str:
    """Log one backtest as an MLflow run in ``cfg.tracking``: origins, horizon and the resolved config as
    params, :func:`run_metrics` as metrics, kind/horizon/data hash/code version as tags (plus ``params``
    and ``tags``), the files under ``artifacts_dir``. Returns the run id."""
    from tiering import tracking

    origins = sorted({r.origin for r in result.table.itertuples()})
    return tracking.log_run(
        cfg.tracking,
        run_name=run_name,
        params={"origins": ",".join(str(o) for o in origins), "horizon_days": result.horizon_days, "config": cfg.redacted()}
        | (params or {}),
        metrics=run_metrics(result),
        tags={"kind": kind, "horizon_days": str(result.horizon_days), "data_hash": data_hash, "code_version": tracking.code_version()}
        | (tags or {}),
        artifacts_dir=artifacts_dir,
    )


def backtest_and_log(
    cfg: Config, origins, *, horizon_days: int | None = None, out_dir: str | Path = "outputs/backtest", variants=None, progress=None
) -> tuple[BacktestResult, str]:
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
    run_id = log_backtest(
        cfg,
        res,
        run_name=tracking.run_name("backtest", cfg, origin_list or None, data_hash, horizon_days=res.horizon_days),
        kind="backtest",
        data_hash=data_hash,
        artifacts_dir=out_dir,
    )
    return res, run_id
