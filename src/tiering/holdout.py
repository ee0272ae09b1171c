"""Out-of-time evaluation at one origin: the one path that judges models, for the backtest and for train.

At an origin o, ``test`` (a :class:`tiering.fitting.OriginFit`) holds the features at o, BTYD fitted at o and
the labels of (o, o + H]; ``train_fits`` hold the labelled training origins whose horizons end by o. Every
selected model is fitted on ``train_fits`` (or needs no training: the baselines), scored at o and judged on
what the customers did next:

- CLV, over customers who had purchased by o: ``naive`` (net spend over the largest feature window), ``btyd``
  (discounted CLV), ``supervised``, ``hybrid`` and ``hurdle`` (tiering.fitting.fit_clv);
- the CLV interval ``cqr`` (clv_p10 .. clv_p90): coverage over every customer and over buyers (``cqr_buyers``);
- churn, the same buyers: ``naive`` (recency: ranking metrics only), ``btyd`` (1 - P(no purchase)) and
  ``model`` (the propensity model as the bundle uses it);
- propensity, every customer known at o, buyers or not: ``model``.

:func:`tiering.backtest.backtest` calls :func:`evaluate_origin` at each of its origins; :func:`tiering.train.fit`
calls it at its test origin (as_of - H) and reads the rows back as flat metric names with :func:`flat_metrics`.
Metrics that fewer than two customers make undefined are NaN, never an error.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from tiering.config import Config
from tiering.evaluation import clv_metrics, propensity_metrics, ranking_auc
from tiering.exceptions import ModelError
from tiering.fitting import OriginFit, clv_columns, feature_spec, fit_clv, fit_interval, fit_propensity
from tiering.models.intervals import interval_metrics

__all__ = ["evaluate_origin", "flat_metrics", "metrics_or_nan", "tidy_rows"]


def metrics_or_nan(fn, actual, predicted) -> dict[str, float]:
    """``fn``'s metrics, or the same keys as NaN when fewer than 2 rows make them undefined."""
    actual, predicted = np.asarray(actual, dtype=float), np.asarray(predicted, dtype=float)
    if len(actual) >= 2:
        return fn(actual, predicted)
    return dict.fromkeys(fn(np.array([0.0, 1.0]), np.array([0.0, 1.0])), float("nan"))


def tidy_rows(origin: dt.date, task: str, model: str, metrics: dict[str, float]) -> list[dict]:
    return [{"origin": origin, "task": task, "model": model, "metric": k, "value": float(v)} for k, v in metrics.items()]


def _rank_metrics(y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """Metrics of a score that ranks but is not a probability (the naive recency baseline)."""
    if len(y) < 2:
        return {"roc_auc": float("nan"), "top_decile_lift": float("nan"), "base_rate": float(y.mean()) if len(y) else float("nan")}
    base = float(y.mean())
    k = max(1, int(np.ceil(0.1 * len(y))))
    top = np.argsort(-score, kind="stable")[:k]
    return {"roc_auc": ranking_auc(y, score), "top_decile_lift": float(y[top].mean() / base) if base else float("nan"), "base_rate": base}


def _clv_predictions(
    test: OriginFit, train_fits: list[OriginFit], cfg: Config, names, fitted: dict, notes: list[str]
) -> dict[str, np.ndarray]:
    """Each selected CLV model's prediction at the origin; a learned model that cannot be fitted is left out (noted)."""
    f, o = test.frame, test.origin
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name == "naive":
            out[name] = f[f"spend_{max(feature_spec(cfg).windows_days)}d"].to_numpy(float)
        elif name == "btyd":
            out[name] = test.btyd["btyd_clv"].to_numpy(float)
        elif train_fits:
            try:
                model = fit_clv(name, train_fits, cfg, test)
            except ModelError as exc:  # too few spenders in the training horizon: left out, said so
                fitted.setdefault("errors", {})[f"clv:{name}"] = str(exc)
                notes.append(f"{o}: the {name} CLV model is not fitted ({exc}); left out there")
                continue
            out[name] = model.predict(clv_columns(test, name))
            fitted.setdefault("clv", {})[name] = model
    return out


def _interval(
    test: OriginFit, train_fits: list[OriginFit], cfg: Config, buyer: np.ndarray, fitted: dict, notes: list[str]
) -> tuple[list[dict], tuple[np.ndarray, np.ndarray] | None]:
    """The CLV interval's coverage rows (every customer, then buyers) and its ends, or no rows (noted)."""
    y = test.frame["holdout_spend"].to_numpy(float)
    try:
        model = fit_interval(train_fits, cfg)
    except ModelError as exc:
        fitted.setdefault("errors", {})["interval"] = str(exc)
        notes.append(f"{test.origin}: the CLV interval is not fitted ({exc}); left out there")
        return [], None
    fitted["interval"] = model
    lo, hi = model.predict(clv_columns(test, "interval"))
    rows = tidy_rows(test.origin, "interval", "cqr", interval_metrics(y, lo, hi))
    return rows + tidy_rows(test.origin, "interval", "cqr_buyers", interval_metrics(y[buyer], lo[buyer], hi[buyer])), (lo, hi)


def _churn_rows(test: OriginFit, names, p_model: np.ndarray | None, buyer: np.ndarray) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Churn rows over buyers (recency ranks; BTYD and the model are probabilities) and the probabilities."""
    f, o = test.frame, test.origin
    y = f["purchased_in_horizon"].to_numpy(int)[buyer]
    rows: list[dict] = []
    probabilities: dict[str, np.ndarray] = {}
    for name in names:
        if name == "naive":
            rows += tidy_rows(o, "churn", name, _rank_metrics(y, -f["days_since_last_purchase"].to_numpy(float)[buyer]))
        elif name == "btyd":
            probabilities[name] = 1 - test.btyd["btyd_p_no_purchase"].to_numpy(float)
        elif p_model is not None:
            probabilities[name] = p_model
    for name, p in probabilities.items():
        rows += tidy_rows(o, "churn", name, metrics_or_nan(propensity_metrics, y, p[buyer]))
    return rows, probabilities


def _plots(out_dir: Path, o: dt.date, test: OriginFit, buyer: np.ndarray, clv_pred: dict, churn_pred: dict) -> list[Path]:
    from tiering import plots

    written: list[Path] = []
    if clv_pred and buyer.sum() >= 2:
        a = test.frame["holdout_spend"].to_numpy(float)[buyer]
        preds = {k: v[buyer] for k, v in clv_pred.items()}
        written.append(plots.gain_curve(a, preds, out_dir / f"{o}_clv_gain.png", title=f"CLV gain curve, origin {o}"))
        written.append(
            plots.decile_chart(a, preds, out_dir / f"{o}_clv_deciles.png", title=f"Holdout spend by predicted decile, origin {o}")
        )
    if churn_pred and buyer.sum() >= 2:
        y = test.frame["purchased_in_horizon"].to_numpy(int)[buyer]
        written.append(
            plots.calibration_curve(
                y,
                {k: v[buyer] for k, v in churn_pred.items()},
                out_dir / f"{o}_churn_calibration.png",
                title=f"P(purchase in horizon), buyers, origin {o}",
            )
        )
    return written


def _predictions(test: OriginFit, clv_pred: dict, churn_pred: dict, interval) -> pd.DataFrame:
    preds = test.frame[["customer_id", "has_purchased", "days_since_last_purchase", "holdout_spend", "purchased_in_horizon"]].copy()
    for name, p in clv_pred.items():
        preds[f"clv_{name}"] = p
    for name, p in churn_pred.items():
        preds[f"p_purchase_{name}"] = p
    if interval is not None:
        preds["interval_p10"], preds["interval_p90"] = interval
    return preds


def evaluate_origin(
    test: OriginFit,
    train_fits: list[OriginFit],
    cfg: Config,
    selected: dict[str, tuple[str, ...]],
    out_dir: Path | None = None,
    *,
    fitted: dict | None = None,
) -> tuple[list[dict], list[Path], list[str], pd.DataFrame]:
    """Rows of the tidy table (origin, task, model, metric, value) for one origin, its plots (with ``out_dir``),
    notes (models left out and why) and every model's prediction per customer.

    ``selected``: task -> model names (see the module doc). ``fitted`` (a dict, filled in): the models fitted
    here, for the caller to reuse: "propensity", "clv" (kind -> model), "interval", and "errors" (what could not
    be fitted -> why: "clv:<kind>", "interval")."""
    fitted = fitted if fitted is not None else {}
    o, f = test.origin, test.frame
    notes: list[str] = []
    buyer = f["has_purchased"].to_numpy() > 0
    y_spend, y_buy = f["holdout_spend"].to_numpy(float), f["purchased_in_horizon"].to_numpy(int)

    clv_pred = _clv_predictions(test, train_fits, cfg, selected.get("clv", ()), fitted, notes)
    rows = [r for name, p in clv_pred.items() for r in tidy_rows(o, "clv", name, metrics_or_nan(clv_metrics, y_spend[buyer], p[buyer]))]
    interval = None
    if "cqr" in selected.get("interval", ()) and train_fits:
        interval_rows, interval = _interval(test, train_fits, cfg, buyer, fitted, notes)
        rows += interval_rows

    p_model = None
    if train_fits and ("model" in selected.get("churn", ()) or "model" in selected.get("propensity", ())):
        fitted["propensity"] = prop = fit_propensity(train_fits, cfg, test)
        notes += [f"{o}: {s}" for s in prop.fallbacks_]
        p_model = prop.predict_purchase(test.bundle.propensity_input(f[test.bundle.feature_columns], test.btyd))
    churn_rows, churn_pred = _churn_rows(test, selected.get("churn", ()), p_model, buyer)
    rows += churn_rows
    if p_model is not None and "model" in selected.get("propensity", ()):
        rows += tidy_rows(o, "propensity", "model", metrics_or_nan(propensity_metrics, y_buy, p_model))

    written = _plots(out_dir, o, test, buyer, clv_pred, churn_pred) if out_dir is not None else []
    return rows, written, notes, _predictions(test, clv_pred, churn_pred, interval)


# train's flat metric names for the tidy rows: (task, model) -> prefix
_FLAT_PREFIX = {
    ("propensity", "model"): "propensity_all",
    ("interval", "cqr"): "clv_interval",
    ("interval", "cqr_buyers"): "clv_interval_buyers",
}


def flat_metrics(rows: list[dict]) -> dict[str, float]:
    """The rows of one origin as flat metric names, as train logs them: ``clv_{model}_{metric}``,
    ``churn_{model}_{metric}``, ``propensity_all_{metric}`` (every customer), ``clv_interval_{metric}`` (every
    customer) and ``clv_interval_buyers_{metric}``."""
    return {f"{_FLAT_PREFIX.get((r['task'], r['model']), r['task'] + '_' + r['model'])}_{r['metric']}": r["value"] for r in rows}
