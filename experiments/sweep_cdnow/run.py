"""A tuned sweep of the learned CLV models on CDNOW (90 and 180 days), and the choice rule where a baseline won.

experiments/sweep_online_retail tuned the hurdle and hybrid models on Online Retail II at 90 days; its defaults
were kept pending this sweep. Here the same variants, less those that lost clearly there (hurdle_poisson, _logls,
_s2_fast, _s2_mono, _iso, hybrid_gbm), plus the supervised model (the features without BTYD outputs), are run on
CDNOW's full 23,570-customer file at 90 and 180 days (and, by experiments/sweep_online_retail_180/run.py, on
Online Retail II at 180 days), each chosen on early origins and reported on late ones.

It also answers why the shipped model (``clv_model: auto``) only tied past spend on CDNOW at 180 days
(experiments/rolling_cdnow): per origin o, what auto ships under the rule in the package (tiering.choice.pick_clv
on the Gini at the latest origin d whose horizon ended by o, as the backtest and train pick) and under the rule
with the thin-evidence fallback (tiering.choice.thin_evidence: where the models evaluated at d learned from fewer
than half the buyers the models shipped at o learn from, tiering.choice.heldout_clv_ginis at o's latest training
origin decides instead). Both use training-side evidence only (labels that end by o).

Why a script and not a spec: a spec's variants are config overrides, and the config exposes no booster
hyperparameter. Features, labels and BTYD of every origin are built once (``tiering.fitting``, as the backtest
does) and every variant is trained on the same stacked training origins (``model.training_origins``, default 3),
its level aligned to BTYD like ``fitting.fit_clv``.

    cd <checkout> && OMP_NUM_THREADS=1 PYTHONPATH=src nice python experiments/sweep_cdnow/run.py [90 180]

writes results.csv, comparison.csv, choice.csv and results.md next to this file; per-origin inputs and
predictions are cached under outputs/experiments/sweep_cdnow/ (delete it to rebuild; a cut run resumes there).
"""

from __future__ import annotations

import datetime as dt
import os
import pickle
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

BOOTSTRAP = 400
BASELINES = ("naive", "recency", "btyd")
DEFAULTS = ("supervised", "hybrid", "hurdle")  # what auto chooses among (with naive and btyd)
SMOOTH = {"max_iter": 200, "learning_rate": 0.03, "min_samples_leaf": 200, "l2_regularization": 10.0}
# name -> (kind, constructor parameters); the first of each kind is the shipped default
VARIANTS: dict[str, tuple[str, dict]] = {
    "supervised": ("supervised", {}),
    "hurdle": ("hurdle", {}),
    "hurdle_s2_slow": ("hurdle", {"spend_learning_rate": 0.02, "spend_min_samples_leaf": 100, "spend_max_iter": 500}),
    "hurdle_smooth": ("hurdle", SMOOTH),
    "hurdle_s1_smooth": ("hurdle", SMOOTH | {"spend_max_iter": 300, "spend_learning_rate": 0.05, "spend_min_samples_leaf": 50}),
    "hybrid": ("hybrid", {}),
    "hybrid_glm": ("hybrid", {"learner": "glm"}),
    "hybrid_smooth": ("hybrid", {"min_samples_leaf": 200, "l2_regularization": 10.0}),
    "hybrid_fast": ("hybrid", {"learning_rate": 0.1, "min_samples_leaf": 20}),
    "hybrid_short": ("hybrid", {"max_iter": 100}),
}


@dataclass
class Data:
    """A data set's protocol: where its tables come from and its origins."""

    name: str
    title: str
    origins_from: dt.date
    origins_to: dt.date
    min_history_days: int
    select_until: dt.date
    here: Path
    work: Path


CDNOW = Data(
    "cdnow",
    "CDNOW (all 23,570 customers, days)",
    dt.date(1997, 4, 1),
    dt.date(1998, 6, 1),
    90,
    dt.date(1997, 10, 1),
    Path(__file__).resolve().parent,
    Path("outputs/experiments/sweep_cdnow"),
)


def _config(data: Data, H: int):
    from tiering.config import load_config

    cfg = load_config("configs/base.yaml")
    if data.name == "cdnow":
        from tiering.datasets import load_cdnow

        path = data.work / "data" / "cdnow_transactions.parquet"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            load_cdnow().to_parquet(path, index=False)
        cfg = cfg.with_sources(transactions=path)
        cfg.data.interactions = cfg.data.customers = None
        cfg.features.time_unit = "D"
    cfg.model.horizon_days = H
    cfg.model.threads = 1
    cfg.validation.quarantine_dir = str(data.work / "quarantine")
    return cfg


def _prepare(data: Data, H: int, cache: Path) -> dict[dt.date, dict]:
    """Per origin: the stacked training rows of its training origins (latest first, with the origin index and the
    customer of each row), its buyers' inputs, targets and baselines, BTYD's total CLV over its buyers, and the
    buyers its learned models learn from (for tiering.choice.thin_evidence)."""
    from tiering.experiment import monthly_origins, origin_split
    from tiering.choice import buyers_in
    from tiering.fitting import clv_columns, feature_spec, fit_training_origins, try_fit_origin
    from tiering.validation import load_tables

    if cache.exists():
        return pickle.loads(cache.read_bytes())
    cfg = _config(data, H)
    tables = load_tables(cfg)
    t = tables.transactions
    span = t.aggregate(first=t.ordered_at.min(), last=t.ordered_at.max()).to_pandas().iloc[0]
    first, last = pd.Timestamp(span["first"]).date(), pd.Timestamp(span["last"]).date()
    origins = monthly_origins(
        data.origins_from, data.origins_to, first=first, last=last, horizon_days=H, min_history_days=data.min_history_days
    )
    spec, fits_cache, out = feature_spec(cfg), {}, {}
    for o in origins:
        t0 = time.perf_counter()
        test = try_fit_origin(tables, o, cfg, spec)
        if test is None:
            continue
        train = fit_training_origins(tables, o, cfg, spec, fits_cache)
        fits_cache[o] = test
        f = test.frame
        buyer = f["has_purchased"].to_numpy() > 0
        d = {
            "split": origin_split(o, H, data.select_until),
            "train_buyers": buyers_in(train),
            "test": pd.DataFrame(
                {
                    "customer_id": f["customer_id"].astype(str).to_numpy()[buyer],
                    "holdout_spend": f["holdout_spend"].to_numpy(float)[buyer],
                    "clv:naive": f[f"spend_{max(spec.windows_days)}d"].to_numpy(float)[buyer],
                    "clv:recency": -f["days_since_last_purchase"].to_numpy(float)[buyer],
                    "clv:btyd": test.btyd["btyd_clv"].to_numpy(float)[buyer],
                }
            ),
            "btyd_total": float(np.nansum(test.btyd["btyd_clv"].to_numpy(float)[buyer])),
        }
        if train:
            d |= {
                "X_train": pd.concat([clv_columns(x, "hurdle") for x in train], ignore_index=True),
                "y_train": np.concatenate([x.frame["holdout_spend"].to_numpy(float) for x in train]),
                "train_origin": np.concatenate([np.full(len(x.frame), i) for i, x in enumerate(train)]),
                "train_ids": np.concatenate([x.frame["customer_id"].astype(str).to_numpy() for x in train]),
                "train_btyd_clv": train[0].btyd["btyd_clv"].to_numpy(float),
                "X_test": clv_columns(test, "hurdle")[buyer].reset_index(drop=True),
            }
        out[o] = d
        print(
            f"H{H} {o} ({d['split']}): {len(train)} training origins, {int(buyer.sum())} buyers, {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(out))
    return out


def _estimator(kind: str, params: dict):
    from tiering.models.clv import SpendRegressor
    from tiering.models.hurdle import HurdleSpend

    return HurdleSpend(threads=1, **params) if kind == "hurdle" else SpendRegressor(threads=1, **params)


def _inputs(kind: str, X: pd.DataFrame) -> pd.DataFrame:
    """The supervised model sees the features only; hybrid and hurdle also the BTYD outputs (fitting.clv_columns)."""
    from tiering.models.clv import BTYD_FEATURES

    return X.drop(columns=list(BTYD_FEATURES)) if kind == "supervised" else X


def _predict(kind: str, params: dict, d: dict) -> np.ndarray:
    model = _estimator(kind, params).fit(_inputs(kind, d["X_train"]), d["y_train"])
    model.align_level(_inputs(kind, d["X_test"]), d["btyd_total"])
    return model.predict(_inputs(kind, d["X_test"]))


def _heldout(d: dict, cfg_windows: int) -> dict[str, float]:
    """tiering.choice.heldout_clv_ginis on the origin's training rows: baselines and the shipped learned models at
    the latest training origin, customers held out (3 folds)."""
    from tiering.evaluation import normalized_gini
    from tiering.choice import heldout_predictions

    X, k = d["X_train"], d["train_origin"]
    score = (k == 0) & (X["has_purchased"].to_numpy() > 0)
    y = d["y_train"][score]
    out = {
        "naive": normalized_gini(y, X[f"spend_{cfg_windows}d"].to_numpy(float)[score]),
        "btyd": normalized_gini(y, d["train_btyd_clv"][score[k == 0]]),
    }
    for kind in DEFAULTS:
        out[kind] = normalized_gini(y, heldout_predictions(_estimator(kind, {}), _inputs(kind, X), d["y_train"], d["train_ids"], score))
    return out


def _thin(data: dict[dt.date, dict], H: int) -> dict[dt.date, dt.date | None]:
    """Per origin o: the latest origin d whose horizon ended by o (where auto's evidence comes from), and whether the
    models evaluated there learned from fewer than THIN_EVIDENCE_SHARE of the buyers o's models learn from (as
    tiering.choice.thin_evidence; no learned model at d counts as thin)."""
    from tiering.choice import THIN_EVIDENCE_SHARE

    out = {}
    for o in data:
        known = [d for d in data if d + dt.timedelta(days=H) <= o]
        d = known[-1] if known else None
        shipped = data[o]["train_buyers"]
        out[o] = (d, d is not None and shipped > 0 and data[d]["train_buyers"] < THIN_EVIDENCE_SHARE * shipped)
    return out


def _sweep(data: dict[dt.date, dict], cache: Path, windows: int, thin: dict) -> tuple[dict[dt.date, pd.DataFrame], dict[str, float], dict]:
    """Every variant's prediction at every origin with training rows, each variant's CPU seconds, and where the
    evidence is thin the held-out Ginis at the origin's latest training origin; cached per origin as it finishes."""
    frames, cpu, held = {}, dict.fromkeys(VARIANTS, 0.0), {}
    cache.mkdir(parents=True, exist_ok=True)
    for o, d in data.items():
        done = cache / f"{o}.pkl"
        f, seconds, h = pickle.loads(done.read_bytes()) if done.exists() else (d["test"].copy(), {}, None)
        if "X_train" in d:
            missing = [n for n in VARIANTS if n not in seconds]
            for name in missing:
                kind, params = VARIANTS[name]
                c0 = time.process_time()
                f[f"clv:{name}"] = _predict(kind, params, d)
                seconds[name] = time.process_time() - c0
            if h is None and thin[o][1]:
                h = _heldout(d, windows)
                missing.append("heldout")
            if missing:
                done.write_bytes(pickle.dumps((f, seconds, h)))
        frames[o], held[o] = f, h
        cpu = {n: cpu[n] + seconds.get(n, 0.0) for n in VARIANTS}
        print(f"{o}: variants fitted", flush=True)
    return frames, cpu, held


def _choices(data: dict, frames: dict, held: dict, thin: dict) -> pd.DataFrame:
    """What auto ships at each origin o: tiering.choice.pick_clv on the Gini at the latest origin d whose horizon
    ended by o (the package's rule), and with the thin-evidence fallback (pick_clv on the held-out Ginis at o's
    latest training origin where the evidence at d is thin)."""
    from tiering.config import load_config
    from tiering.evaluation import normalized_gini
    from tiering.choice import pick_clv

    m = load_config("configs/base.yaml").model
    candidates = ("naive", "btyd", *DEFAULTS)
    gini = {o: {c: normalized_gini(f["holdout_spend"], f[f"clv:{c}"]) for c in candidates if f"clv:{c}" in f} for o, f in frames.items()}
    rows = []
    for o in frames:
        d, is_thin = thin[o]
        if d is None:
            continue
        old = pick_clv(gini[d], m.clv_auto_prefer, m.clv_auto_margin)
        new = pick_clv(held[o], m.clv_auto_prefer, m.clv_auto_margin) if is_thin and held[o] else old
        rows.append(
            {
                "origin": o,
                "evidence_origin": d,
                "evidence_buyers": data[d]["train_buyers"],
                "shipped_buyers": data[o]["train_buyers"],
                "thin": is_thin,
                "auto_old": old,
                "auto_new": new,
                **{f"oot_{k}": gini[d].get(k, np.nan) for k in candidates},
                **{f"heldout_{k}": (held[o] or {}).get(k, np.nan) for k in candidates},
            }
        )
    return pd.DataFrame(rows)


def _tables(frames, splits, choice: pd.DataFrame):
    """results (origin x model Gini), and on the report origins every model (auto under both rules included) against
    the best baseline per origin and every variant against its kind's shipped default."""
    from tiering.evaluation import compare_to_baselines, normalized_gini, verdict

    frames = {o: f.copy() for o, f in frames.items()}
    for r in choice.itertuples():
        for rule in ("old", "new"):
            frames[r.origin][f"clv:auto_{rule}"] = frames[r.origin][f"clv:{getattr(r, 'auto_' + rule)}"]
    names = [n for n in VARIANTS] + ["auto_old", "auto_new"]
    rows = [
        {"origin": o, "split": splits[o], "model": c, "normalized_gini": normalized_gini(f["holdout_spend"], f[f"clv:{c}"])}
        for o, f in frames.items()
        for c in [*BASELINES, *names]
        if f"clv:{c}" in f
    ]
    report = {o: f for o, f in frames.items() if splits[o] == "report"}
    models = [f"clv:{n}" for n in names if all(f"clv:{n}" in f for f in report.values())]
    cmp = []
    groups = [("best baseline", models, [f"clv:{b}" for b in BASELINES])] + [
        (f"default {k}", [f"clv:{n}" for n in VARIANTS if VARIANTS[n][0] == k and n != k], [f"clv:{k}"]) for k in ("hurdle", "hybrid")
    ]
    for against, ms, baselines in groups:
        ms = [x for x in ms if x in models]
        if not ms or not report:
            continue
        for r in compare_to_baselines(
            report, models=ms, baselines=baselines, metric="normalized_gini", target="holdout_spend", replicates=BOOTSTRAP, seed=0
        ):
            cmp.append({"against": against, **r, "model": r["model"][4:], "verdict": verdict(r)})
    return pd.DataFrame(rows), pd.DataFrame(cmp)


def _markdown(data: Data, H: int, results, cmp, splits, cpu, choice: pd.DataFrame) -> list[str]:
    sel = results[results["split"] == "select"].groupby("model", sort=False)["normalized_gini"].mean()
    gap = results[results["split"] == "gap"].groupby("model", sort=False)["normalized_gini"].mean()
    rep = results[results["split"] == "report"].groupby("model", sort=False)["normalized_gini"].mean()
    n = {s: [o for o, x in splits.items() if x == s] for s in ("select", "gap", "report")}
    span = {s: (f"{len(v)}: {v[0]}..{v[-1]}" if v else "0") for s, v in n.items()}
    lines = [
        f"## {data.title}, {H} days",
        "",
        f"Origins: selection {span['select']}; gap {span['gap']}; report {span['report']}. A learned model needs a labelled",
        f"training origin {H} days before the origin it scores, so where selection origins have no learned model the gap",
        "origins (before every report origin, holdouts straddling the split) are the earliest evidence for choosing.",
        "",
        "| model | kind | params | selection mean | gap mean | report mean | CPU s (all origins) |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    fmt = lambda s, m: f"{s[m]:.4f}" if m in s.index and np.isfinite(s[m]) else ""  # noqa: E731
    for m in [*BASELINES, *VARIANTS, "auto_old", "auto_new"]:
        kind, params = VARIANTS.get(m, ("baseline" if m in BASELINES else "auto", {}))
        p = ", ".join(f"{k}={v}" for k, v in params.items()) or ("shipped default" if kind not in ("baseline", "auto") else "")
        if m.startswith("auto"):
            p = "package's rule" if m == "auto_old" else "with the thin-evidence fallback"
        lines.append(f"| {m} | {kind} | {p} | {fmt(sel, m)} | {fmt(gap, m)} | {fmt(rep, m)} | {cpu.get(m, float('nan')):.0f} |")
    lines += [
        "",
        "Report origins: diff = model - comparator (positive: the model is better); won = share of report origins where it is.",
        "",
        "| against | model | origins | model | comparator | diff | 90% CI (customers) | won | min..max diff | verdict |",
        "|---|---|---:|---:|---:|---:|---|---:|---|---|",
    ]
    for r in cmp.itertuples():
        lines.append(
            f"| {r.against} | {r.model} | {r.origins} | {r.model_mean:.4f} | {r.best_baseline_mean:.4f} | **{r.mean_diff:+.4f}** | "
            f"[{r.ci_low:+.4f}, {r.ci_high:+.4f}] | {r.share_won:.0%} | {r.min_diff:+.3f}..{r.max_diff:+.3f} | {r.verdict} |"
        )
    lines += [
        "",
        "What auto ships at each origin: evidence at the latest origin whose horizon ended by then (out of time; Gini of",
        "the baselines and the shipped learned models there), the buyers its learned models learned from against those",
        "of the models shipped, and, where that is under half (thin), the held-out Gini at the origin's latest training origin.",
        "",
        "| origin | split | evidence at | buyers (evidence / shipped) | thin "
        "| oot naive | oot btyd | oot supervised | oot hybrid | oot hurdle "
        "| held-out naive | held-out btyd | held-out supervised | held-out hybrid | held-out hurdle | auto (package) | auto (fallback) |",
        "|---|---|---|---|---|" + "---:|" * 10 + "---|---|",
    ]
    f4 = lambda v: f"{v:.4f}" if np.isfinite(v) else ""  # noqa: E731
    for r in choice.itertuples():
        vals = [getattr(r, f"{p}_{k}") for p in ("oot", "heldout") for k in ("naive", "btyd", *DEFAULTS)]
        lines.append(
            f"| {r.origin} | {splits[r.origin]} | {r.evidence_origin} | {r.evidence_buyers:,} / {r.shipped_buyers:,} "
            + f"| {'yes' if r.thin else 'no'} | "
            + " | ".join(f4(v) for v in vals)
            + f" | {r.auto_old} | {r.auto_new} |"
        )
    per = results.pivot(index="origin", columns="model", values="normalized_gini")
    per["best baseline"] = per[list(BASELINES)].max(axis=1)
    cols = ["best baseline", *BASELINES, *[c for c in [*VARIANTS, "auto_old", "auto_new"] if c in per]]
    lines += ["", "Every origin, normalized Gini:", "", "| origin | split | " + " | ".join(cols) + " |", "|---|---|" + "---:|" * len(cols)]
    for o, r in per.iterrows():
        lines.append(f"| {o} | {splits[o]} | " + " | ".join(f4(r[c]) for c in cols) + " |")
    return lines + [""]


def run(data: Data, horizons: list[int]) -> None:
    t0 = time.perf_counter()
    all_results, all_cmp, all_choice = [], [], []
    md = [
        f"# Results: tuned sweep of the learned CLV models, {data.title}",
        "",
        "Written by `run.py`; do not edit by hand. Normalized Gini of predicted CLV against holdout spend, customers who had",
        f"bought by each origin; selection origins' holdouts end by {data.select_until}, report origins start after it. 90%",
        f"intervals: {BOOTSTRAP} bootstrap replicates resampling customers (one draw for every origin; seed 0).",
        "",
    ]
    for H in horizons:
        cfg = _config(data, H)
        windows = max(cfg.features.windows_days)
        prepared = _prepare(data, H, data.work / f"h{H}" / "origins.pkl")
        splits = {o: d["split"] for o, d in prepared.items()}
        thin = _thin(prepared, H)
        frames, cpu, held = _sweep(prepared, data.work / f"h{H}" / "predictions", windows, thin)
        choice = _choices(prepared, frames, held, thin)
        results, cmp = _tables(frames, splits, choice)
        md += _markdown(data, H, results, cmp, splits, cpu, choice)
        all_results.append(results.assign(horizon_days=H))
        all_cmp.append(cmp.assign(horizon_days=H))
        all_choice.append(choice.assign(horizon_days=H))
    md.append(
        f"Wall time of this run {time.perf_counter() - t0:.0f} s (cached steps read back); "
        f"load average {os.getloadavg()[0]:.2f} at the end "
        "(a shared 2-core machine)."
    )
    pd.concat(all_results).to_csv(data.here / "results.csv", index=False)
    pd.concat(all_cmp).to_csv(data.here / "comparison.csv", index=False)
    pd.concat(all_choice).to_csv(data.here / "choice.csv", index=False)
    (data.here / "results.md").write_text("\n".join(md) + "\n")
    print((data.here / "results.md").read_text())


if __name__ == "__main__":
    run(CDNOW, [int(h) for h in sys.argv[1:]] or [90, 180])
