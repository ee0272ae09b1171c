"""Charts of out-of-time model quality as PNG files (matplotlib, Agg backend): gain curve, decile chart,
calibration curve. Each takes the realised outcome and a mapping of model name -> prediction over
the same customers, writes one file and returns its path. matplotlib is imported where used.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def gain_curve(actual, predictions: Mapping[str, np.ndarray], path: str | Path, title: str = "Gain curve") -> Path:
    """Share of realised value captured by the top x% of customers ranked by each prediction (and by the truth)."""
    plt = _pyplot()
    a = np.asarray(actual, dtype=float)
    total = a.sum()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    share = np.arange(1, len(a) + 1) / len(a)
    for name, p in {"perfect": a, **predictions}.items():
        order = np.argsort(-np.asarray(p, dtype=float), kind="stable")
        ax.plot(share, np.cumsum(a[order]) / total if total else share, label=name,
                linestyle="--" if name == "perfect" else "-")
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, label="random")
    ax.set(xlabel="share of customers (ranked by prediction)", ylabel="share of holdout value", title=title,
           xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(fontsize=8)
    return _save(fig, path)


def decile_chart(actual, predictions: Mapping[str, np.ndarray], path: str | Path, title: str = "Decile chart") -> Path:
    """Mean realised value per decile of each prediction (decile 1 = highest predicted)."""
    plt = _pyplot()
    a = np.asarray(actual, dtype=float)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    width = 0.8 / max(len(predictions), 1)
    for i, (name, p) in enumerate(predictions.items()):
        order = np.argsort(-np.asarray(p, dtype=float), kind="stable")
        means = [a[chunk].mean() if len(chunk) else np.nan for chunk in np.array_split(order, 10)]
        ax.bar(np.arange(1, 11) + (i - (len(predictions) - 1) / 2) * width, means, width=width, label=name)
    ax.set(xlabel="decile of prediction (1 = highest)", ylabel="mean holdout value", title=title, xticks=range(1, 11))
    ax.legend(fontsize=8)
    return _save(fig, path)


def calibration_curve(actual, predictions: Mapping[str, np.ndarray], path: str | Path, n_bins: int = 10,
                      title: str = "Calibration") -> Path:
    """Observed rate against mean predicted probability per quantile bin of each prediction."""
    from tiering.evaluation import calibration_table

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, label="perfect")
    for name, p in predictions.items():
        rows = calibration_table(actual, p, n_bins=n_bins)
        ax.plot([r["mean_predicted"] for r in rows], [r["observed_rate"] for r in rows], marker="o", label=name)
    ax.set(xlabel="mean predicted probability", ylabel="observed rate", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=8)
    return _save(fig, path)
