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

Thin data never crash it: BTYD falls back per origin (tiering.train._fit_btyd), the propensity
model per its own rules, a supervised CLV model without enough spenders is left out; each
fallback is a line in ``notes``. An origin where nobody has purchased is a DataQualityError.

The result is one tidy table (origin, task, model, metric, value) and, with ``out_dir``, per
origin a gain curve and a decile chart of the CLV models and a calibration curve of the churn
models (PNG), plus ``backtest.csv``. tiering.experiment and ``tiering backtest`` build on it.
"""

from __future__ import annotations

import copy
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
from tiering.models.tiers import REQUIRED_COLUMNS
from tiering.train import (
    CLV_CANDIDATES,
    LABELS,
    LEARNED_CLV,
    OriginFit,
    _policy,
    _scored_inputs,
    clv_columns,
    feature_spec,
    fit_clv,
    fit_interval,
    fit_origin,
    fit_propensity,
    fit_training_origins,
    pick_clv,
    tier_policy_metrics,
    training_origins,
)
from tiering.validation import ValidatedTables

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
                    out_dir: Path | None = None, *, fitted: dict | None = None
                    ) -> tuple[list[dict], list[Path], list[str], pd.DataFrame]:
    """Rows of the tidy table for one origin (and its plots): ``test`` has features, labels and BTYD at the origin.

    ``fitted`` (a dict, filled in): the models fitted here, for the ladder to reuse: "propensity" and
    "clv" (kind -> model)."""
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
                model = fit_clv(name, train_fits, cfg, test)
                clv_pred[name] = model.predict(clv_columns(test, name))
                if fitted is not None:
                    fitted.setdefault("clv", {})[name] = model
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
        if fitted is not None:
            fitted["propensity"] = prop
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
    return any(m in (*LEARNED_CLV, "model", "cqr", "ladder") for ms in selected.values() for m in ms)


# ------------------------------------------------------------------------------ the tier ladder at each origin

# what a later origin's tier policy learns its value floors from (TierPolicy's inputs and the outcome)
HOLDOUT_COLUMNS = (*REQUIRED_COLUMNS, "p_alive", "ipi_mean_days", "purchased_in_horizon")


def ladder_clv_kind(cfg: Config, table: pd.DataFrame, horizon_days: int, origin: dt.date) -> str:
    """The CLV model the bundle's tiers use at ``origin``: ``model.clv_model``, or for "auto" the model auto would
    have shipped there (:func:`auto_choices` over ``table``, the rows so far), else ``model.clv_auto_prefer``."""
    if cfg.model.clv_model != "auto":
        return cfg.model.clv_model
    if not ((table["task"] == "clv") & (table["metric"] == "normalized_gini")).any():
        return cfg.model.clv_auto_prefer
    return auto_choices(table, horizon_days, cfg).get(origin, cfg.model.clv_auto_prefer)


def ladder_bundle(test: OriginFit, train_fits: list[OriginFit], cfg: Config, clv_kind: str,
                  fitted: dict | None = None, notes: list[str] | None = None):
    """A copy of ``test``'s bundle (BTYD at the origin) with the propensity and the ``clv_kind`` CLV model the
    origin fitted (``fitted``, from evaluate_origin) or, where it did not, fitted here on ``train_fits``, as
    train.fit fits the bundle's. A CLV model that cannot be fitted leaves BTYD's CLV (noted)."""
    notes = notes if notes is not None else []
    fitted = fitted or {}
    o = test.origin
    prop = fitted.get("propensity")
    if prop is None:
        prop = fit_propensity(train_fits, cfg, test)
        notes += [f"{o}: ladder: {s}" for s in prop.fallbacks_]
    model = None
    if clv_kind != "btyd":
        model = fitted.get("clv", {}).get(clv_kind)
        if model is None and train_fits:
            try:
                model = fit_clv(clv_kind, train_fits, cfg, test)
            except ModelError as exc:
                notes.append(f"{o}: ladder: the {clv_kind} CLV model is not fitted ({exc}); BTYD's CLV stands in")
        elif model is None:
            notes.append(f"{o}: ladder: no labelled training origin for the {clv_kind} CLV model; BTYD's CLV stands in")
    bundle = copy.copy(test.bundle)
    bundle.propensity, bundle.clv_model = prop, model
    bundle.clv_kind = clv_kind if model is not None else "btyd"
    # no policy yet (fitted on the ladder later); ScoringBundle (models/bundle.py) types tier_policy for a finished bundle
    bundle.tier_policy, bundle.next_tier_model, bundle.clv_interval = None, None, None
    return bundle


def ladder_holdout(test: OriginFit, train_fits: list[OriginFit], cfg: Config, earlier: dict[dt.date, pd.DataFrame],
                   refit=None) -> tuple[pd.DataFrame | None, str]:
    """Where the tier policy at ``test.origin`` learns its value floors: a base scored out of time whose outcomes
    are known by the origin, and a sentence saying which.

    ``earlier``: the scored frames (HOLDOUT_COLUMNS) of the ladders at earlier backtest origins; the latest one
    whose horizon had ended by the origin is used (as auto picks its CLV model; no refit). Without one, the
    latest training origin ``train_fits[0]`` (labels end by the origin), scored with a propensity model trained
    on its own training origins (``refit(origin)`` returns them; none usable: no holdout, the default floors)."""
    H = dt.timedelta(days=cfg.model.horizon_days)
    done = [d for d in earlier if d + H <= test.origin]
    if done:
        d = max(done)
        return earlier[d], f"the ladder at {d} and what its customers did by {d + H}"
    if not train_fits or refit is None:
        return None, "none (no labelled origin before it): the default floors"
    h = train_fits[0]
    fits = refit(h.origin)
    if not fits:
        return None, f"none (no usable training origin before {h.origin}): the default floors"
    b = copy.copy(h.bundle)
    b.propensity, b.clv_kind, b.clv_model = fit_propensity(fits, cfg, h), "btyd", None
    scored = _scored_inputs(b, h.frame)
    return scored[[c for c in HOLDOUT_COLUMNS if c in scored.columns]], \
        f"the base at {h.origin} scored by a propensity model trained by {fits[0].origin}, its outcomes by {h.origin + H}"


def evaluate_ladder(test: OriginFit, bundle, cfg: Config, holdout: pd.DataFrame | None,
                    interactions=None) -> tuple[dict[str, float], pd.DataFrame, pd.DataFrame]:
    """Tier ``test``'s base with ``bundle`` and a tier policy fitted as train fits it (value floors from ``holdout``)
    and judge the ladder by what its customers did in the horizon after the origin (tiering.tier_eval).

    Returns the metrics (tier_eval.ladder_metrics, plus ``value_min_p_purchase``, ``value_floors_learned`` and
    ``core_clv_cut`` of the policy), the tiers (customer_id, tier, lapsed_buyer, at_risk, aligned to
    ``test.frame``) and the scored frame (HOLDOUT_COLUMNS: a later origin's holdout)."""
    from tiering.tier_eval import horizon_outcomes, ladder_metrics

    f = test.frame
    scored = _scored_inputs(bundle, f)
    policy = _policy(cfg).fit(scored.drop(columns=[c for c in LABELS if c in scored.columns]), holdout=holdout)
    assigned = policy.assign(scored)
    tiers = pd.concat([f[["customer_id"]].astype(str), assigned[["tier", "lapsed_buyer", "at_risk"]]], axis=1)
    outcomes = horizon_outcomes(f, interactions, test.origin, cfg.model.horizon_days)
    metrics = ladder_metrics(tiers, outcomes, f[["customer_id", "has_purchased"]])
    pm = tier_policy_metrics(policy)
    metrics["value_min_p_purchase"] = pm["tier_value_min_p_purchase"]
    metrics["value_floors_learned"] = pm["tier_value_min_p_purchase_learned"]
    metrics["core_clv_cut"] = pm["tier_core_clv_cut"]
    return ({k: v for k, v in metrics.items() if np.isfinite(v)}, tiers,
            scored[[c for c in HOLDOUT_COLUMNS if c in scored.columns]])


def auto_choices(table: pd.DataFrame, horizon_days: int, cfg: Config) -> dict[dt.date, str]:
    """The CLV model ``clv_model: auto`` would have shipped at each origin o: :func:`tiering.fitting.pick_clv` on the
    normalized Gini of every candidate at the latest origin whose horizon had ended by o (as tiering.train picks at
    its test origin, from outcomes known by then). Origins with no such earlier origin are left out."""
    clv = table[(table["task"] == "clv") & (table["metric"] == "normalized_gini")]
    gini = clv.pivot_table(index="origin", columns="model", values="value")
    out = {}
    for o in sorted(clv["origin"].unique()):
        known = gini[[d + dt.timedelta(days=horizon_days) <= o for d in gini.index]]
        if not known.empty:
            last = known.iloc[-1]
            chosen = pick_clv({m: last[m] for m in CLV_CANDIDATES if m in last.index}, cfg.model.clv_auto_prefer,
                              cfg.model.clv_auto_margin)
            if chosen is not None:
                out[o] = chosen
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
    ladders: dict[dt.date, pd.DataFrame] = {}  # origin -> its ladder's scored base (a later origin's holdout)
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
        fitted: dict = {}
        r, p, n, preds = evaluate_origin(test, train_fits, cfg, selected, out, fitted=fitted)
        rows += r
        plots += p
        notes += n
        if "ladder" in selected.get("tiers", ()):
            step(f"origin {o}: tier ladder")
            t1 = time.perf_counter()
            kind = ladder_clv_kind(cfg, pd.DataFrame(rows, columns=COLUMNS), H, o)
            bundle = ladder_bundle(test, train_fits, cfg, kind, fitted, notes)
            holdout, where = ladder_holdout(test, train_fits, cfg, ladders,
                                            lambda t: fit_training_origins(tables, t, cfg, spec, cache))
            try:
                metrics, tiers, ladders[o] = evaluate_ladder(test, bundle, cfg, holdout, tables.interactions)
            except ModelError as exc:  # thin data: no ladder there, said so
                notes.append(f"{o}: the tier ladder is not judged ({exc}); left out there")
            else:
                notes.append(f"{o}: ladder with CLV model {bundle.clv_kind}; value floors learned on {where}")
                rows += _rows(o, "tiers", "ladder", metrics)
                preds["tier_ladder"] = tiers["tier"].to_numpy()
            seconds[f"{o} ladder"] = round(time.perf_counter() - t1, 2)
        if keep_predictions:
            kept[o] = preds
        cache[o] = test  # a later origin H after this one trains here
        seconds[str(o)] = round(time.perf_counter() - t0, 2)
    if any(m in LEARNED_CLV for m in selected.get("clv", ())):  # auto chooses among learned models and baselines
        choices = auto_choices(pd.DataFrame(rows, columns=COLUMNS), H, cfg)
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
