"""Metrics for CLV and purchase-propensity predictions, judged out of time.

CLV: normalized Gini of the predicted ranking against realised holdout spend, Spearman, top-decile
capture, MAE, aggregate error % and the gain curve. Propensity: ROC-AUC, PR-AUC, Brier score, top-decile lift
and a calibration table. Every function takes plain arrays so it serves any model and any baseline.
"""

from __future__ import annotations

import numpy as np

from tiering.exceptions import ConfigError


def _as_arrays(*xs) -> list[np.ndarray]:
    out = [np.asarray(x, dtype=float) for x in xs]
    n = {len(x) for x in out}
    if len(n) != 1:
        raise ConfigError(f"arrays differ in length: {[len(x) for x in out]}")
    return out


def gini(actual, predicted) -> float:
    """Gini of ``actual`` ordered by ``predicted`` (descending), ties in prediction averaged."""
    a, p = _as_arrays(actual, predicted)
    if a.sum() == 0:
        return float("nan")
    # average over tied predictions so the order inside a tie does not matter
    order = np.argsort(-p, kind="stable")
    a_sorted, p_sorted = a[order], p[order]
    _, start, counts = np.unique(-p_sorted, return_index=True, return_counts=True)
    tie_mean = np.repeat(np.add.reduceat(a_sorted, start) / counts, counts)
    n = len(a)
    cum = np.cumsum(tie_mean) / a.sum()
    return float(cum.sum() / n - (n + 1) / (2 * n))


def normalized_gini(actual, predicted) -> float:
    """Gini of the prediction divided by the Gini of the perfect ranking (1.0 = perfect order)."""
    best = gini(actual, actual)
    return float(gini(actual, predicted) / best) if best and np.isfinite(best) else float("nan")


def top_decile_capture(actual, predicted) -> float:
    """Share of total actual value held by the top 10% of customers by prediction."""
    a, p = _as_arrays(actual, predicted)
    k = max(1, int(np.ceil(0.1 * len(a))))
    top = np.argsort(-p, kind="stable")[:k]
    total = a.sum()
    return float(a[top].sum() / total) if total else float("nan")


def clv_metrics(actual, predicted) -> dict[str, float]:
    """normalized_gini, spearman, top_decile_capture, mae, aggregate_error_pct."""
    from scipy.stats import spearmanr

    a, p = _as_arrays(actual, predicted)
    total = a.sum()
    return {
        "normalized_gini": normalized_gini(a, p),
        "spearman": float(spearmanr(a, p).statistic) if len(a) > 2 else float("nan"),
        "top_decile_capture": top_decile_capture(a, p),
        "mae": float(np.mean(np.abs(a - p))),
        "aggregate_error_pct": float(100 * (p.sum() - total) / total) if total else float("nan"),
    }


def ranking_auc(actual, score) -> float:
    """ROC-AUC of any ranking score (not necessarily a probability); NaN when one class is absent."""
    from sklearn.metrics import roc_auc_score

    y, s = _as_arrays(actual, score)
    return float(roc_auc_score(y, s)) if 0 < y.mean() < 1 else float("nan")


def propensity_metrics(actual, proba) -> dict[str, float]:
    """roc_auc, pr_auc, brier, top_decile_lift, base_rate for binary outcomes."""
    from sklearn.metrics import average_precision_score, brier_score_loss

    y, p = _as_arrays(actual, proba)
    base = float(y.mean())
    two_classes = 0 < base < 1
    k = max(1, int(np.ceil(0.1 * len(y))))
    top = np.argsort(-p, kind="stable")[:k]
    return {
        "roc_auc": ranking_auc(y, p),
        "pr_auc": float(average_precision_score(y, p)) if two_classes else float("nan"),
        "brier": float(brier_score_loss(y, p)),
        "top_decile_lift": float(y[top].mean() / base) if base else float("nan"),
        "base_rate": base,
    }


def calibration_table(actual, proba, n_bins: int = 10) -> list[dict[str, float]]:
    """Per quantile bin of the prediction: mean predicted, observed rate, count."""
    y, p = _as_arrays(actual, proba)
    edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)))
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(len(edges) - 2, 0))
    rows = []
    for b in np.unique(idx):
        m = idx == b
        rows.append({"mean_predicted": float(p[m].mean()), "observed_rate": float(y[m].mean()), "n": int(m.sum())})
    return rows


def gain_curve(actual, score) -> tuple[np.ndarray, np.ndarray]:
    """(share of customers, cumulative share of ``actual``) with customers ranked by ``score`` descending."""
    a = np.asarray(actual, dtype=float)
    order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
    cum = np.concatenate([[0.0], np.cumsum(np.clip(a[order], 0, None))])
    total = cum[-1] if cum[-1] > 0 else 1.0
    return np.linspace(0, 1, len(a) + 1), cum / total


# ------------------------------------------------------------------------------------------------
# Baselines that need no model: the hiatus rule (Wübben & Wangenheim 2008)


def hiatus_active(days_since_last_purchase, hiatus_days: float) -> np.ndarray:
    """The hiatus rule: 1 (active, expected to buy again) where the last purchase is at most
    ``hiatus_days`` ago, else 0 (inactive). Wübben & Wangenheim (2008) found this managerial rule
    (a 9-month hiatus in their apparel and airline data) as good as BG/NBD and Pareto/NBD at telling
    active from inactive customers."""
    (d,) = _as_arrays(days_since_last_purchase)
    if not hiatus_days > 0:
        raise ConfigError(f"hiatus_days must be a positive number of days; got {hiatus_days!r}")
    return (d <= hiatus_days).astype(float)


def hiatus_rates(days_since_last_purchase, purchased, hiatus_days: float) -> tuple[float, float]:
    """Observed purchase rate of (active, inactive) customers under the rule: the probability the
    rule stands for once it is calibrated (on earlier origins only). NaN where a class is empty."""
    d, y = _as_arrays(days_since_last_purchase, purchased)
    act = hiatus_active(d, hiatus_days) > 0
    return (float(y[act].mean()) if act.any() else float("nan"), float(y[~act].mean()) if (~act).any() else float("nan"))


def hiatus_proba(days_since_last_purchase, hiatus_days: float, rate_active: float, rate_inactive: float) -> np.ndarray:
    """P(purchase in the horizon) under the hiatus rule: ``rate_active`` for customers within the
    hiatus, ``rate_inactive`` beyond it (rates from :func:`hiatus_rates` on earlier origins). Its
    ranking is the rule itself (ROC-AUC = balanced accuracy of the rule); its Brier score is that of
    a two-level calibrated classifier."""
    act = hiatus_active(days_since_last_purchase, hiatus_days)
    return np.where(act > 0, rate_active, rate_inactive).astype(float)


def choose_hiatus(frames, candidates=None) -> float:
    """The hiatus (days) whose rule best separates buyers from non-buyers, by ROC-AUC (= balanced
    accuracy of the rule) averaged over ``frames``: (days_since_last_purchase, purchased) pairs of the
    selection origins only. Ties go to the shorter hiatus. ``candidates``: days to try (default every
    2 weeks from 14 to 728)."""
    cands = np.asarray(candidates if candidates is not None else np.arange(14, 729, 14), dtype=float)
    frames = [tuple(_as_arrays(d, y)) for d, y in frames]
    frames = [(d, y) for d, y in frames if 0 < y.mean() < 1]
    if not frames:
        raise ConfigError("choose_hiatus needs at least one frame with both buyers and non-buyers")
    scores = np.zeros(len(cands))
    for d, y in frames:
        pos, neg = y > 0, y <= 0
        for i, h in enumerate(cands):
            act = d <= h
            scores[i] += 0.5 * (act[pos].mean() + (~act[neg]).mean())  # = ROC-AUC of the 0/1 rule
    return float(cands[int(np.argmax(scores))])  # argmax keeps the first (shortest) of ties


# ------------------------------------------------------------------------------------------------
# Honest comparison: every model against the best baseline of each origin, bootstrap intervals


def fast_auc(actual, score) -> float:
    """ROC-AUC by the rank-sum (Mann-Whitney) formula, ties averaged; NaN when a class is absent.
    Same value as sklearn's roc_auc_score, without its input checks (for the bootstrap)."""
    from scipy.stats import rankdata

    y, s = _as_arrays(actual, score)
    pos = y > 0
    n1 = int(pos.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(s)
    return float((r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def brier(actual, proba) -> float:
    y, p = _as_arrays(actual, proba)
    return float(np.mean((p - y) ** 2))


def spearman(actual, predicted) -> float:
    from scipy.stats import rankdata

    a, p = _as_arrays(actual, predicted)
    if len(a) < 3 or np.all(a == a[0]) or np.all(p == p[0]):
        return float("nan")
    return float(np.corrcoef(rankdata(a), rankdata(p))[0, 1])


# metric name -> (function(actual, prediction), higher is better)
METRICS = {
    "normalized_gini": (normalized_gini, True),
    "roc_auc": (fast_auc, True),
    "brier": (brier, False),
    "spearman": (spearman, True),
}


def _best_baseline(vals: dict[str, float], baselines, higher: bool) -> tuple[str | None, float]:
    got = {b: vals[b] for b in baselines if b in vals and np.isfinite(vals[b])}
    if not got:
        return None, float("nan")
    name = (max if higher else min)(got, key=got.__getitem__)
    return name, got[name]


def _origin_inputs(frames: dict, origins: list, ids, cols: list[str], target: str) -> list[tuple]:
    """Per origin: the positions of its customers in ``ids``, the finite targets and the predictions (only the
    columns that are present and finite for every customer with a target there)."""
    prep = []
    for o in origins:
        f = frames[o]
        y = f[target].to_numpy(float)
        keep = np.isfinite(y)
        preds = {c: f[c].to_numpy(float)[keep] for c in cols if c in f and np.isfinite(f[c].to_numpy(float)[keep]).all()}
        prep.append((ids.get_indexer(f["customer_id"][keep]), y[keep], preds))
    return prep


def _metric_per_origin(prep: list[tuple], fn, weights=None) -> list[dict[str, float]]:
    """Per origin, the metric of every model and baseline; ``weights`` (draws per customer) resample customers."""
    out = []
    for idx, y, preds in prep:
        rows = None if weights is None else np.repeat(np.arange(len(y)), weights[idx])
        yy = y if rows is None else y[rows]
        out.append({c: fn(yy, p if rows is None else p[rows]) for c, p in preds.items()})
    return out


def _diffs_to_best(vals: list[dict], models, baselines, higher: bool) -> tuple[dict[str, np.ndarray], list[tuple]]:
    """Per model, the array over origins of the difference to the best baseline there (positive: the model is
    better), and the best baseline (name, value) of each origin."""
    sign = 1.0 if higher else -1.0
    best = [_best_baseline(v, baselines, higher) for v in vals]
    return {m: np.array([sign * (v.get(m, np.nan) - b[1]) for v, b in zip(vals, best)], dtype=float) for m in models}, best


def _bootstrap_mean_diffs(
    prep: list[tuple], n_customers: int, fn, models, baselines, higher: bool, replicates: int, rng
) -> dict[str, np.ndarray]:
    """Per model, the mean difference over origins in each replicate of one customer draw applied to every origin."""
    boot = {m: np.full(replicates, np.nan) for m in models}
    for r in range(replicates):
        w = np.bincount(rng.integers(0, n_customers, n_customers), minlength=n_customers)
        d, _ = _diffs_to_best(_metric_per_origin(prep, fn, w), models, baselines, higher)
        for m in models:
            boot[m][r] = np.nanmean(d[m]) if np.isfinite(d[m]).any() else np.nan
    return boot


def _comparison_row(
    model: str, metric: str, d: np.ndarray, point_vals: list[dict], best: list[tuple], boot: np.ndarray, rng, replicates: int, level: float
) -> dict:
    """One model's summary: means, both intervals, share won, spread over origins, which baseline was best."""
    import pandas as pd

    ok = np.isfinite(d)
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    ob = rng.choice(d[ok], size=(replicates, ok.sum()), replace=True).mean(axis=1)
    bb = boot[np.isfinite(boot)]
    counts = pd.Series([b[0] for b, k in zip(best, ok) if k]).value_counts()
    return {
        "model": model,
        "metric": metric,
        "origins": int(ok.sum()),
        "model_mean": float(np.nanmean([v.get(model, np.nan) for v, k in zip(point_vals, ok) if k])),
        "best_baseline_mean": float(np.mean([b[1] for b, k in zip(best, ok) if k])),
        "best_baselines": ", ".join(f"{k} {v}" for k, v in counts.items()),
        "mean_diff": float(d[ok].mean()),
        "ci_low": float(np.quantile(bb, lo_q)) if len(bb) else float("nan"),
        "ci_high": float(np.quantile(bb, hi_q)) if len(bb) else float("nan"),
        "ci_origins_low": float(np.quantile(ob, lo_q)),
        "ci_origins_high": float(np.quantile(ob, hi_q)),
        "share_won": float((d[ok] > 0).mean()),
        "min_diff": float(d[ok].min()),
        "max_diff": float(d[ok].max()),
    }


def compare_to_baselines(
    frames: dict, *, models, baselines, metric: str, target: str, replicates: int = 500, seed: int = 0, level: float = 0.90
):
    """Each model against the best baseline of each origin, on one metric.

    ``frames``: origin -> DataFrame with ``customer_id``, the ``target`` column and one column per
    model and baseline (its prediction; NaN columns or absent ones are skipped at that origin).
    At every origin the best baseline is the one with the best metric there (chosen after the fact,
    which can only favour the baselines); a model's difference there is model - best baseline (for a
    lower-is-better metric such as Brier, best baseline - model, so positive always means the model
    is better). Returns one dict per model: mean difference over origins, the ``level`` bootstrap
    interval of that mean, the share of origins won (strictly better than the best baseline), the
    spread over origins and which baseline was best how often.

    The interval resamples customers, not origins: one draw of customer ids (with replacement) is
    applied to every origin at once, and the metrics of every model and baseline are recomputed on
    it, so (a) the comparison is paired, (b) a customer seen at many overlapping monthly origins is
    one cluster (their outcomes at neighbouring origins share most of the holdout window, so they are
    not independent draws) and (c) the best baseline is re-chosen in every replicate. It is the
    uncertainty of the mean over these origins from which customers happened to be in the data. The
    variation over origins (seasons) is reported beside it: share won, min and max per-origin
    difference, and an interval from resampling origins (``ci_origins``), which treats overlapping
    monthly origins as independent and so is only a rough guide with a handful of them.
    """
    import pandas as pd

    fn, higher = METRICS[metric]
    origins = sorted(frames)
    ids = pd.Index(pd.unique(pd.concat([frames[o]["customer_id"] for o in origins], ignore_index=True)))
    prep = _origin_inputs(frames, origins, ids, list(dict.fromkeys([*models, *baselines])), target)
    point_vals = _metric_per_origin(prep, fn)
    point, best = _diffs_to_best(point_vals, models, baselines, higher)
    rng = np.random.default_rng(seed)
    boot = _bootstrap_mean_diffs(prep, len(ids), fn, models, baselines, higher, replicates, rng)
    return [
        _comparison_row(m, metric, point[m], point_vals, best, boot[m], rng, replicates, level)
        for m in models
        if np.isfinite(point[m]).any()
    ]


def verdict(row) -> str:
    """Plain words for one comparison row: who wins, given the customer-bootstrap interval."""
    if row["ci_low"] > 0:
        return "model wins"
    if row["ci_high"] < 0:
        return "baseline wins"
    return "tie (interval covers 0)"
