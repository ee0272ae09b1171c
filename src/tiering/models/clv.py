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

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin

from tiering.exceptions import ModelError
from tiering.models import check_fitted, thread_limits
from tiering.models._hgb import hgb_predict

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
