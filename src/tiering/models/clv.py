"""Supervised and hybrid CLV: spend over the next H days learned out of time from an earlier origin.

``SpendRegressor`` predicts a customer's net spend in (as_of, as_of + H]. It is trained on the
feature frame at an earlier origin t against the spend realised in (t, t + H], with t + H at or
before the origin it scores (the caller picks t; see tiering.train.training_origins), and averages
two learners suited to zero-heavy, heavy-tailed spend, both with a Poisson (log-link) loss on the
target clipped at 0 (net refunds can make it negative):

- a gradient-boosted regressor (scikit-learn HistGradientBoostingRegressor, loss="poisson") on
  the raw features: non-linear, but flat outside the training range;
- a Poisson GLM on signed-log features (sign(x) log(1 + |x|); probabilities as logits), which
  extrapolates along the log-linear trend: it matters when the scoring base is older than the
  training one (T, tenure and recency beyond anything seen at training time).

"supervised" uses the RFM + engagement features only; "hybrid" adds the BTYD outputs
(``BTYD_FEATURES``) fitted at the same origin as the features. The level can be aligned, without
labels, to a forecast of the total (``align_level``): the bundle aligns it to BTYD's total CLV on
the scoring base, so that the supervised model gives the ranking and BTYD the level.

``SpendRegressor`` is a scikit-learn regressor: ``fit(X, y)``, ``predict(X)``, ``score``, ``clone``,
usable as the last step of a Pipeline and in ``cross_val_score``. X is a DataFrame (columns taken by
name, so their order may change between fit and predict) or a 2-D array (columns by position,
named x0, x1, ... as a preprocessing step's numpy output). ``threads`` caps the OpenMP and BLAS
threads of its fit and predictions (None: the libraries' default, every core; on a busy 2-core
machine gradient boosting fits many times faster with 1).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin

from tiering.exceptions import ModelError
from tiering.models import check_fitted, thread_limits

__all__ = [
    "BTYD_FEATURES",
    "CLV_MODELS",
    "LevelAligned",
    "PastSpend",
    "SpendRegressor",
    "feature_frame",
    "signed_log",
    "signed_log_columns",
    "tree_input",
]

BTYD_FEATURES = ("btyd_p_alive", "btyd_expected_purchases", "btyd_p_no_purchase", "btyd_expected_spend", "btyd_clv")
CLV_MODELS = ("naive", "btyd", "supervised", "hybrid", "hurdle")
_PROBABILITY_PREFIX = "btyd_p_"


def signed_log(X: pd.DataFrame) -> np.ndarray:
    """sign(x) log(1 + |x|) per column; columns named btyd_p_* as logits; missing values as 0."""
    return signed_log_columns(list(X.columns), lambda c: X[c].to_numpy(dtype=float), len(X))


def signed_log_columns(names: list, column, n_rows: int) -> np.ndarray:
    """``signed_log`` of the columns ``names``, each read as ``column(name)`` (a float array of n_rows)."""
    out = np.empty((n_rows, len(names)))
    for j, c in enumerate(names):
        v = np.asarray(column(c), dtype=float)
        if str(c).startswith(_PROBABILITY_PREFIX):
            p = np.clip(v, 1e-4, 1 - 1e-4)
            out[:, j] = np.log(p) - np.log1p(-p)
        else:
            out[:, j] = np.sign(v) * np.log1p(np.abs(v))
    out[~np.isfinite(out)] = 0.0
    return out


def tree_input(X: pd.DataFrame) -> np.ndarray:
    """Features for tree models, rounded to 6 decimals: engines that add floats in another order
    (DuckDB, Spark) give values equal to ~1e-12, and a tree must not split them apart."""
    return np.round(X.to_numpy(dtype=float), 6)


_MISSING_CODE = 255  # scikit-learn's missing-values bin (uint8 bins)
_MIN_FAST_ROWS = 2000  # below this, the boosters' own predict (the set-up below costs more than it saves)


# The HistGradientBoosting helpers below take the model as Any: they read scikit-learn's private attributes
# (_predictors, _raw_predict, _baseline_prediction, _loss, n_trees_per_iteration_), which no stub describes.
def _hgb_trees(model: Any) -> list[list] | None:
    """A fitted HistGradientBoosting model's trees (iterations x trees per iteration), or None where the
    binned fast path does not apply (another estimator, categorical splits)."""
    predictors = getattr(model, "_predictors", None)
    if predictors is None or not hasattr(model, "_baseline_prediction") or not hasattr(model, "_loss"):
        return None
    if any(p.nodes["is_categorical"].any() for it in predictors for p in it):
        return None
    return predictors


def hgb_raw_predictions(models: list[tuple[Any, list]], column, n_rows: int) -> list[np.ndarray]:
    """:func:`_binned_raw_predictions`, or each model's own ``_raw_predict`` on the float matrix if scikit-learn's
    internals it relies on (the models' ``_predictors``, ``TreePredictor.predict_binned``) are not what it expects:
    a scikit-learn release that moves them makes scoring slower, never wrong or broken."""
    try:
        return _binned_raw_predictions(models, column, n_rows)
    except (ImportError, AttributeError, KeyError, TypeError, ValueError):
        return [m._raw_predict(_float_matrix(column, keys, n_rows)) for m, keys in models]


def _float_matrix(column, keys, n_rows: int) -> np.ndarray:
    return np.column_stack([np.asarray(column(k), dtype=float) for k in keys]) if keys else np.empty((n_rows, 0))


def _binned_raw_predictions(models: list[tuple[Any, list]], column, n_rows: int) -> list[np.ndarray]:
    """Raw predictions (n_rows x trees per iteration) of HistGradientBoosting models that read their inputs from
    shared columns, equal to each model's ``_raw_predict`` on the float matrix of those columns.

    ``models``: (model, key of the input column for each of its features); ``column(key)``: that float column.
    Each tree compares a value with a threshold (``x <= t``, NaN by ``missing_go_to_left``), so a row's path is
    fixed by where each value falls among the thresholds the trees use. Every column the trees read is coded
    once into uint8 (its rank among the union of those thresholds; NaN 255), identical rows of codes are
    predicted once, and the trees are run on the codes through scikit-learn's binned predictor, their node
    thresholds rewritten as codes: the same tree paths, the same leaves, summed in the same order (bit for bit
    the float path's values), without the float matrix. Falls back to ``_raw_predict`` per model where that
    does not apply (another estimator, categorical splits, over 254 distinct thresholds on one column)."""
    trees = [_hgb_trees(m) for m, _ in models]
    if n_rows < _MIN_FAST_ROWS or any(t is None for t in trees):
        if len(models) > 1 and n_rows >= _MIN_FAST_ROWS:  # the others may still go the fast way
            return [_binned_raw_predictions([mk], column, n_rows)[0] for mk in models]
        return [m._raw_predict(_float_matrix(column, keys, n_rows)) for m, keys in models]
    ids = {k: i for i, k in enumerate(dict.fromkeys(k for _, keys in models for k in keys))}
    flat = [_flat_nodes(keys, predictors, ids) for (_model, keys), predictors in zip(models, trees)]
    thresholds = _thresholds(flat, list(ids))
    if any(len(t) > _MISSING_CODE - 1 for t in thresholds.values()):
        if len(models) > 1:
            return [_binned_raw_predictions([mk], column, n_rows)[0] for mk in models]
        return [models[0][0]._raw_predict(_float_matrix(column, models[0][1], n_rows))]
    order = list(thresholds)
    codes = _codes(column, order, thresholds, n_rows)
    rows = codes.view(np.dtype((np.void, codes.shape[1]))).reshape(-1)
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    unique_codes = np.asfortranarray(codes[first])
    return [_predict_codes(model, f, order, ids, thresholds, unique_codes)[inverse.reshape(-1)] for (model, _keys), f in zip(models, flat)]


def _flat_nodes(keys: list, predictors, ids: dict) -> tuple:
    """A model's nodes in one array (its trees one after the other), whether each is a split, the column (its id)
    each split reads, and the trees."""
    assert predictors is not None  # every model's trees were found (checked by the caller)
    per_tree = [p for it in predictors for p in it]
    nodes = np.concatenate([p.nodes for p in per_tree])
    split = nodes["is_leaf"] == 0
    key_of = np.full(len(nodes), -1, dtype=np.int64)
    key_of[split] = np.array([ids[k] for k in keys], dtype=np.int64)[nodes["feature_idx"][split]]
    return nodes, split, key_of, per_tree


def _thresholds(flat: list[tuple], key_by_id: list) -> dict:
    """Column key -> the sorted finite thresholds every model's splits compare it with."""
    found: dict = {}
    for nodes, split, key_of, _ in flat:
        for i in np.unique(key_of[split]).tolist():
            t = nodes["num_threshold"][key_of == i]
            found.setdefault(i, []).append(t[np.isfinite(t)])
    return {key_by_id[i]: np.unique(np.concatenate(v)) for i, v in sorted(found.items())}


def _codes(column, order: list, thresholds: dict, n_rows: int) -> np.ndarray:
    """Each column's values as uint8 codes: their rank among its thresholds (NaN: the missing code)."""
    codes = np.zeros((n_rows, max(len(order), 1)), dtype=np.uint8)
    for j, k in enumerate(order):
        x = np.asarray(column(k), dtype=float)
        c = np.searchsorted(thresholds[k], x, side="left").astype(np.uint8)
        c[np.isnan(x)] = _MISSING_CODE
        codes[:, j] = c
    return codes


def _predict_codes(model: Any, flat: tuple, order: list, ids: dict, thresholds: dict, unique_codes: np.ndarray) -> np.ndarray:
    """The model's trees run on the codes: each split reads its column's code and compares it with its threshold's
    code (an infinite threshold: every non-missing value goes left), summed as the float path sums them."""
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

    nodes, split, key_of, per_tree = flat
    nodes = nodes.copy()
    code = np.full(len(nodes), _MISSING_CODE - 1, dtype=np.int64)
    column_of = np.zeros(len(nodes), dtype=np.int64)
    for j, k in enumerate(order):
        at = key_of == ids[k]
        column_of[at] = j
        finite = at & np.isfinite(nodes["num_threshold"])
        code[finite] = np.searchsorted(thresholds[k], nodes["num_threshold"][finite], side="left")
    nodes["feature_idx"][split] = column_of[split]
    nodes["bin_threshold"][split] = code[split]
    ends = np.cumsum([len(p.nodes) for p in per_tree])
    k_per_it = model.n_trees_per_iteration_
    raw = np.zeros((len(unique_codes), k_per_it), dtype=model._baseline_prediction.dtype, order="F")
    raw += model._baseline_prediction
    n_threads = _openmp_effective_n_threads()
    for i, (p, end) in enumerate(zip(per_tree, ends)):
        tree = TreePredictor(nodes[end - len(p.nodes) : end], p.binned_left_cat_bitsets, p.raw_left_cat_bitsets)
        raw[:, i % k_per_it] += tree.predict_binned(unique_codes, _MISSING_CODE, n_threads)
    return raw


def hgb_predict(model: Any, raw: np.ndarray) -> np.ndarray:
    """A HistGradientBoostingRegressor's ``predict`` from its raw predictions."""
    return model._loss.link.inverse(raw.ravel())


def hgb_predict_proba(model: Any, raw: np.ndarray) -> np.ndarray:
    """A HistGradientBoostingClassifier's ``predict_proba`` from its raw predictions."""
    return model._loss.predict_proba(raw)


def _names(X) -> np.ndarray | None:
    """The column names of a DataFrame whose columns are all strings (scikit-learn's rule), else None."""
    cols = getattr(X, "columns", None)
    if cols is None or not all(isinstance(c, str) for c in cols):
        return None
    return np.asarray(cols, dtype=object)


def feature_frame(owner: str, X, estimator=None) -> pd.DataFrame:
    """X as a DataFrame of features. At fit time (``estimator`` None) as given, or a 2-D array's columns
    named x0, x1, ...; at predict time the columns the fitted ``estimator`` saw: by name from a frame
    fitted with names (any order, extra columns ignored), by position otherwise (the count must match)."""
    names = _names(X)
    if estimator is not None and getattr(estimator, "feature_names_in_", None) is not None and names is not None:
        missing = [c for c in estimator.feature_names_in_ if c not in X.columns]
        if missing:
            raise ModelError(f"{owner} needs feature columns {missing[:8]}, which the input lacks.")
        return X[list(estimator.feature_names_in_)]
    if names is not None and estimator is None:
        return X
    values = np.asarray(X.to_numpy() if hasattr(X, "to_numpy") else X)
    if values.ndim != 2:
        raise ModelError(f"{owner} takes a 2-D table of features (a DataFrame or an array); got shape {values.shape}.")
    if estimator is None:
        return pd.DataFrame(values, columns=[f"x{j}" for j in range(values.shape[1])])
    expected = estimator.n_features_in_
    if values.shape[1] != expected:
        raise ModelError(f"{owner} was fitted on {expected} feature columns; got {values.shape[1]}.")
    cols = estimator.feature_names_in_ if getattr(estimator, "feature_names_in_", None) is not None else [f"x{j}" for j in range(expected)]
    return pd.DataFrame(values, columns=list(cols))


def _fit_columns(estimator, X: pd.DataFrame, named: bool) -> None:
    """Set scikit-learn's ``n_features_in_`` and, for a frame with string column names, ``feature_names_in_``."""
    estimator.n_features_in_ = X.shape[1]
    if named:
        estimator.feature_names_in_ = np.asarray(X.columns, dtype=object)
    elif hasattr(estimator, "feature_names_in_"):
        del estimator.feature_names_in_


class LevelAligned(RegressorMixin, BaseEstimator):
    """Base of the spend models: ``predict`` is the subclass's ``_raw`` prediction times ``level_``, which
    ``align_level`` sets without labels so that predictions sum to a forecast total (BTYD's, in the bundle)."""

    def _raw(self, X) -> np.ndarray:
        raise NotImplementedError

    def align_level(self, X: pd.DataFrame, target_total: float):
        """Scale predictions so that they sum to ``target_total`` over the rows of ``X`` (a label-free forecast)."""
        raw = self._raw(X).sum()
        if np.isfinite(target_total) and target_total > 0 and raw > 0:
            self.level_ = float(target_total / raw)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Expected net spend over the horizon, one value per row (>= 0)."""
        return self._raw(X) * self.level_

    # the scoring bundle's path: inputs as shared columns, the boosters run together with the interval's
    def _gbm_inputs(self) -> list[tuple[object, list]]:
        """(HistGradientBoosting model, its input column names) whose raw predictions ``_predict_columns`` takes."""
        return []

    def _predict_columns(self, column, n_rows: int, raws: list[np.ndarray]) -> np.ndarray:
        """``predict`` from columns by name (``column(name)``: a float array) and the raw predictions of
        ``_gbm_inputs``' models on them."""
        names = getattr(self, "feature_names_in_", None)
        frame = pd.DataFrame({c: column(c) for c in names}) if names is not None else None
        return self.predict(frame)


class PastSpend(LevelAligned):
    """The naive CLV as a model: a customer's net spend over the trailing ``column`` window (floored at 0),
    scaled by ``level_``. It ranks as the "past spend" baseline does, so it ships where nothing beats it."""

    def __init__(self, column: str = "spend_365d"):
        self.column = column

    def fit(self, X: pd.DataFrame, y=None) -> PastSpend:
        if self.column not in getattr(X, "columns", ()):
            raise ModelError(f"PastSpend needs the feature column {self.column!r}, which the input lacks.")
        self.level_ = 1.0
        return self

    def _raw(self, X: pd.DataFrame) -> np.ndarray:
        check_fitted(self, "level_")
        if self.column not in getattr(X, "columns", ()):
            raise ModelError(f"PastSpend needs the feature column {self.column!r}, which the input lacks.")
        return np.clip(X[self.column].to_numpy(dtype=float), 0.0, None)

    def _predict_columns(self, column, n_rows: int, raws: list[np.ndarray]) -> np.ndarray:
        check_fitted(self, "level_")
        return np.clip(np.asarray(column(self.column), dtype=float), 0.0, None) * self.level_


class SpendRegressor(LevelAligned):
    """Expected net spend over the horizon: mean of a Poisson GBM and a Poisson GLM on signed-log features.

    Parameters are stored as given. ``learner`` is "ensemble" (both, averaged), "gbm" or "glm";
    ``threads`` caps the threads of fit and predict (None: the libraries' default). ``fit`` sets
    ``n_features_in_``, ``feature_names_in_`` (when X is a DataFrame), ``gbm_``, ``glm_``,
    ``y_scale_``, ``n_train_``, ``train_mean_`` and ``level_`` (1.0 until ``align_level``).
    """

    def __init__(
        self,
        learner: str = "ensemble",
        max_iter: int = 300,
        learning_rate: float = 0.03,
        min_samples_leaf: int = 50,
        l2_regularization: float = 1.0,
        glm_alpha: float = 1e-3,
        random_state: int = 0,
        threads: int | None = None,
    ):
        self.learner = learner
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.glm_alpha = glm_alpha
        self.random_state = random_state
        self.threads = threads

    def fit(self, X: pd.DataFrame | np.ndarray, y) -> SpendRegressor:
        """Fit both learners on X (a DataFrame or a 2-D array) against the horizon's spend y."""
        with thread_limits(self.threads):
            return self._fit(X, y)

    def _fit(self, X, y) -> SpendRegressor:
        from sklearn.ensemble import HistGradientBoostingRegressor
        from sklearn.linear_model import PoissonRegressor
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        if self.learner not in ("ensemble", "gbm", "glm"):
            raise ModelError(f"SpendRegressor learner must be 'ensemble', 'gbm' or 'glm'; got {self.learner!r}.")
        y = np.asarray(y, dtype=float)
        if len(X) != len(y):
            raise ModelError(f"SpendRegressor fit got {len(X)} feature rows but {len(y)} labels.")
        if not np.isfinite(y).all():
            raise ModelError(f"SpendRegressor fit got {int((~np.isfinite(y)).sum())} missing or infinite spend labels.")
        y = np.clip(y, 0.0, None)
        named = _names(X) is not None
        X = feature_frame("SpendRegressor.fit", X)
        if (y > 0).sum() < 10:
            raise ModelError(
                f"SpendRegressor needs at least 10 customers who spent in the training horizon; got {int((y > 0).sum())}. "
                "Use a later training origin or more data."
            )
        _fit_columns(self, X, named)
        self.y_scale_ = float(y.mean())
        target = y / self.y_scale_  # unit mean: the GLM's penalty and tolerance do not depend on the currency
        self.gbm_ = self.glm_ = None
        if self.learner in ("ensemble", "gbm"):
            self.gbm_ = HistGradientBoostingRegressor(
                loss="poisson",
                max_iter=self.max_iter,
                learning_rate=self.learning_rate,
                min_samples_leaf=self.min_samples_leaf,
                l2_regularization=self.l2_regularization,
                random_state=self.random_state,
            ).fit(tree_input(X), target)
        if self.learner in ("ensemble", "glm"):
            self.glm_ = make_pipeline(StandardScaler(), PoissonRegressor(alpha=self.glm_alpha, solver="newton-cholesky", max_iter=300)).fit(
                signed_log(X), target
            )
        self.n_train_ = int(len(y))
        self.train_mean_ = self.y_scale_
        self.level_ = 1.0
        return self

    def _raw(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        check_fitted(self, "y_scale_")
        if not hasattr(self, "n_features_in_"):  # pickled before n_features_in_ existed
            self.n_features_in_ = len(self.feature_names_in_)
        X = feature_frame("SpendRegressor", X, self)
        parts = []
        with thread_limits(getattr(self, "threads", None)):  # pickled before `threads` existed: no cap
            if self.gbm_ is not None:
                parts.append(self.gbm_.predict(tree_input(X)))
            if self.glm_ is not None:
                parts.append(self.glm_.predict(signed_log(X)))
        return np.mean(parts, axis=0) * self.y_scale_

    def _gbm_inputs(self) -> list[tuple[object, list]]:
        check_fitted(self, "y_scale_")
        if self.gbm_ is None or getattr(self, "feature_names_in_", None) is None:
            return []
        return [(self.gbm_, list(self.feature_names_in_))]

    def _predict_columns(self, column, n_rows: int, raws: list[np.ndarray]) -> np.ndarray:
        if getattr(self, "feature_names_in_", None) is None:
            return super()._predict_columns(column, n_rows, raws)
        names = list(self.feature_names_in_)
        parts = []
        if self.gbm_ is not None:
            parts.append(hgb_predict(self.gbm_, raws[0]))
        if self.glm_ is not None:
            with thread_limits(getattr(self, "threads", None)):
                parts.append(self.glm_.predict(signed_log_columns(names, column, n_rows)))
        return np.mean(parts, axis=0) * self.y_scale_ * self.level_
