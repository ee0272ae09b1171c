"""Metrics for CLV and purchase-propensity predictions, judged out of time.

CLV: normalized Gini of the predicted ranking against realised holdout spend, Spearman, top-decile
capture, MAE and aggregate error %. Propensity: ROC-AUC, PR-AUC, Brier score, top-decile lift and a
calibration table. Every function takes plain arrays so it serves any model and any baseline.
"""

from __future__ import annotations

import numpy as np


def _as_arrays(*xs) -> list[np.ndarray]:
    out = [np.asarray(x, dtype=float) for x in xs]
    n = {len(x) for x in out}
    if len(n) != 1:
        raise ValueError(f"arrays differ in length: {[len(x) for x in out]}")
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
