"""The honest comparison of an experiment: per origin, the buyers' frame of every model's and baseline's
prediction (the hiatus rules and the simulator's latent truth added), every model against the best baseline of
each report origin, and the tidy rows of the baselines the backtest does not compute."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from tiering.experiment._spec import BootstrapSpec

# baselines per task (column names in the comparison frames); anything else a backtest predicts is a model
CLV_BASELINES = ("naive", "recency", "btyd")
CHURN_BASELINES = ("recency", "past_spend", "btyd")  # + the hiatus rules


def latent_truth(truth: pd.DataFrame, origin: dt.date) -> pd.DataFrame:
    """The simulator's latent state at ``origin``: alive (not dropped out by then: the dropout comes
    right after the last purchase) and the latent value rate (lambda per day x mean spend, 0 if dead)."""
    ts = pd.Timestamp(origin)
    drop = pd.to_datetime(truth["dropout_at"])
    alive = (drop.isna() | (drop > ts)).to_numpy()
    return pd.DataFrame(
        {
            "customer_id": truth["customer_id"].astype(str).to_numpy(),
            "latent_alive": alive.astype(float),
            "latent_value": truth["lambda_per_day"].to_numpy(float) * truth["mean_spend"].to_numpy(float) * alive,
        }
    )


def comparison_frames(
    preds: dict[dt.date, pd.DataFrame],
    horizon_days: int,
    splits: dict[dt.date, str],
    hiatus_days: list[int],
    truth: pd.DataFrame | None = None,
) -> tuple[dict, float | None, list[str]]:
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
        f = pd.DataFrame(
            {
                "customer_id": b["customer_id"].astype(str).to_numpy(),
                "holdout_spend": b["holdout_spend"].to_numpy(float),
                "purchased_in_horizon": b["purchased_in_horizon"].to_numpy(float),
            }
        )
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
    out = [
        ("clv", "normalized_gini", "holdout_spend", clv_models, clv_base),
        ("churn", "roc_auc", "purchased_in_horizon", churn_models, churn_rank),
        ("churn", "brier", "purchased_in_horizon", churn_models, churn_proba),
    ]
    if "latent_alive" in cols:
        out += [
            ("clv", "spearman:latent_value", "latent_value", clv_models, clv_base),
            ("churn", "roc_auc:latent_alive", "latent_alive", churn_models, churn_rank),
        ]
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
        for r in compare_to_baselines(
            report,
            models=models,
            baselines=baselines,
            metric=metric,
            target=target,
            replicates=boot.replicates,
            seed=boot.seed,
            level=boot.level,
        ):
            r = dict(
                r, task=task, metric=label, model=r["model"].split(":", 1)[1], best_baselines=r["best_baselines"].replace(f"{task}:", "")
            )
            rows.append(r | {"verdict": verdict(r)})
    return pd.DataFrame(rows)


def baseline_rows(frames: dict, splits: dict) -> list[dict]:
    """Tidy rows (origin, split, task, model, metric, value) of the baselines the backtest does not compute."""
    from tiering.evaluation import METRICS

    rows = []
    for o, f in frames.items():
        y_s, y_b = f["holdout_spend"].to_numpy(float), f["purchased_in_horizon"].to_numpy(float)
        extra = [("clv", "recency", "normalized_gini", y_s, f["clv:recency"])]
        extra += [
            ("churn", c.split(":")[1], "roc_auc", y_b, f[c])
            for c in f.columns
            if c.startswith("churn:")
            and c.split(":")[1] in ("recency", "past_spend")
            or c.startswith("churn:hiatus_")
            and not c.endswith("_p")
        ]
        extra += [
            ("churn", c.split(":")[1].removesuffix("_p"), "brier", y_b, f[c])
            for c in f.columns
            if c.startswith("churn:hiatus_") and c.endswith("_p")
        ]
        if "latent_alive" in f:
            la, lv = f["latent_alive"].to_numpy(float), f["latent_value"].to_numpy(float)
            extra += [("clv", c.split(":")[1], "spearman:latent_value", lv, f[c]) for c in f.columns if c.startswith("clv:")]
            extra += [
                ("churn", c.split(":")[1], "roc_auc:latent_alive", la, f[c])
                for c in f.columns
                if c.startswith("churn:") and not c.endswith("_p")
            ]
        for task, model, metric, y, p in extra:
            rows.append(
                {
                    "origin": o,
                    "split": splits[o],
                    "task": task,
                    "model": model,
                    "metric": metric,
                    "value": METRICS[metric.split(":")[0]][0](y, np.asarray(p, float)),
                }
            )
    return rows
