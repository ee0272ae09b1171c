"""Purchase propensity: P(at least one purchase in the next H days), for buyers and non-buyers.

Trained at an earlier origin (labels from its own horizon, which ends by the scoring origin), so
the purchase rate it learned is that of another period and an older or younger base. Three steps
keep it both sharp and calibrated at the scoring origin:

1. a classifier of purchase in the horizon on the feature frame plus the BTYD outputs: by default
   a logistic regression on signed-log features (BTYD probabilities as logits), which extrapolates
   to customers older than any seen in training; or calibrated gradient boosting (``learner="gbm"``,
   isotonic when there are enough positives, Platt scaling otherwise);
2. ``align_level``: a logit offset, learned without labels on the scoring base, that moves the
   model's mean probability over buyers to BTYD's mean P(purchase) there (BTYD is fitted at the
   scoring origin, so it knows the current base; the model knows the shape);
3. for buyers, the mean of that probability and BTYD's 1 - P(no purchase) (``btyd_weight``);
4. optionally (``recalibrate``), Platt scaling fitted out of time: the same pipeline trained on earlier
   origins and scored at a later one whose outcomes are known gives pairs (probability, outcome); a
   logistic map a + b * logit(p), one for buyers and one for prospects (their probabilities come from
   different steps above), corrects the level and the spread the first three steps leave.

Churn risk is 1 - propensity for customers who have purchased.

``PropensityModel`` is a scikit-learn classifier (``fit(X, y)``, ``predict_proba``, ``predict``,
``score``, ``clone``), usable as the last step of a Pipeline and in ``cross_val_score``; X is a
DataFrame (columns by name) or a 2-D array (columns by position; no BTYD blend then, as no column
is named btyd_p_no_purchase). ``threads`` caps the OpenMP and BLAS threads of fit and predictions
(None: the libraries' default).
"""

from __future__ import annotations

from typing import cast

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin

from tiering.exceptions import ModelError
from tiering.models import check_fitted, thread_limits
from tiering.models.clv import _fit_columns, _names, feature_frame, signed_log, signed_log_columns, tree_input

BTYD_PURCHASE_COLUMN = "btyd_p_no_purchase"


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def _expit(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


class PropensityModel(ClassifierMixin, BaseEstimator):
    """Classifier of purchase in the horizon, level-aligned to BTYD and blended with it for buyers.

    Parameters are stored as given; ``fit`` sets ``n_features_in_``, ``feature_names_in_`` (when X is
    a DataFrame), ``classes_`` ([0, 1]), ``model_``,
    ``calibration_``, ``base_rate_``, ``n_train_``, ``offset_`` (0 until ``align_level``) and
    ``fallbacks_`` (one sentence per fallback taken).

    Fallbacks on degenerate labels (recorded in ``fallbacks_``):

    - one outcome only (nobody, or everybody, purchased in the training horizon; or no rows):
      no classifier (``model_`` None, ``calibration_ = "constant"``): a constant rate, the
      Jeffreys-smoothed base rate (positives + 0.5) / (n + 1); ``align_level`` then moves it to
      BTYD's mean and buyers get the BTYD blend, so the ranking among buyers is BTYD's;
    - ``learner="gbm"`` with fewer than max(cv, 20) customers of either outcome: logistic regression
      (``learner_`` records the learner used); the booster stops early only with 100 or more of each.
    """

    def __init__(
        self,
        learner: str = "logistic",
        C: float = 1.0,
        btyd_weight: float = 0.5,
        max_iter: int = 300,
        learning_rate: float = 0.05,
        max_leaf_nodes: int = 31,
        calibration: str = "auto",
        cv: int = 3,
        random_state: int = 0,
        threads: int | None = None,
    ):
        self.learner = learner
        self.C = C
        self.btyd_weight = btyd_weight
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.calibration = calibration
        self.cv = cv
        self.random_state = random_state
        self.threads = threads

    def fit(self, X: pd.DataFrame | np.ndarray, y) -> PropensityModel:
        """Fit the classifier; see the class docstring for the fallbacks on degenerate labels."""
        with thread_limits(self.threads):
            return self._fit(X, y)

    def _fit(self, X, y) -> PropensityModel:
        y = np.asarray(y, dtype=int)
        if self.learner not in ("logistic", "gbm"):
            raise ModelError(f"PropensityModel learner must be 'logistic' or 'gbm'; got {self.learner!r}.")
        if not 0 <= self.btyd_weight <= 1:
            raise ModelError(f"PropensityModel btyd_weight must be in [0, 1]; got {self.btyd_weight!r}.")
        if len(X) != len(y):
            raise ModelError(f"Propensity fit got {len(X)} feature rows but {len(y)} labels.")
        positives, negatives = int(y.sum()), int(len(y) - y.sum())
        named = _names(X) is not None
        X = feature_frame("PropensityModel.fit", X)
        _fit_columns(self, X, named)
        self.fallbacks_: list[str] = []
        self.classes_ = np.array([0, 1])
        self.base_rate_ = float((positives + 0.5) / (len(y) + 1.0))  # Jeffreys: 0.5 with no labels
        self.n_train_ = int(len(y))
        self.offset_ = 0.0
        learner = self.learner
        if min(positives, negatives) == 0:
            self.model_, self.calibration_ = None, "constant"
            self.fallbacks_.append(
                f"propensity: {positives} of {len(y)} training customers purchased in the horizon (one outcome only); "
                f"a constant rate {self.base_rate_:.3g} (Jeffreys-smoothed) stands in for the classifier"
            )
            return self
        if learner == "gbm" and min(positives, negatives) < max(self.cv, 20):
            learner = "logistic"
            self.fallbacks_.append(
                f"propensity: gradient boosting needs at least {max(self.cv, 20)} customers of each outcome for "
                f"its {self.cv}-fold calibration; got {positives} and {negatives}; logistic regression used instead"
            )
        self.learner_ = learner
        if learner == "logistic":
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            self.model_ = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=3000)).fit(signed_log(X), y)
            self.calibration_ = "logistic"
        else:
            from sklearn.calibration import CalibratedClassifierCV
            from sklearn.ensemble import HistGradientBoostingClassifier

            method = self.calibration
            if method == "auto":
                method = "isotonic" if min(positives, negatives) >= 500 else "sigmoid"
            base = HistGradientBoostingClassifier(
                max_iter=self.max_iter,
                learning_rate=self.learning_rate,
                max_leaf_nodes=self.max_leaf_nodes,
                early_stopping=min(positives, negatives) >= 100,
                validation_fraction=0.15,
                n_iter_no_change=20,
                random_state=self.random_state,
            )
            self.model_ = CalibratedClassifierCV(base, method=method, cv=self.cv).fit(tree_input(X), y)
            self.calibration_ = method
        return self

    def _inputs(self, X: pd.DataFrame | np.ndarray) -> pd.DataFrame:
        check_fitted(self, "base_rate_")
        if not hasattr(self, "n_features_in_"):  # pickled before n_features_in_ existed
            self.n_features_in_ = len(self.feature_names_in_)
        return feature_frame("Propensity model", X, self)

    def _model_logit(self, X: pd.DataFrame) -> np.ndarray:
        """The classifier's logit on the fitted feature columns of X (a frame already through _inputs)."""
        if getattr(self, "calibration_", None) == "constant":
            return np.full(len(X), float(_logit(np.array([self.base_rate_]))[0]))
        learner = getattr(self, "learner_", getattr(self, "learner", "gbm"))  # pickled before `learner` existed: gbm
        assert self.model_ is not None  # None only with the "constant" calibration, handled above
        with thread_limits(getattr(self, "threads", None)):  # pickled before `threads` existed: no cap
            if learner == "logistic":
                return self.model_.decision_function(signed_log(X))
            return _logit(self.model_.predict_proba(tree_input(X))[:, 1])

    @staticmethod
    def _btyd(X: pd.DataFrame | np.ndarray) -> np.ndarray:
        if BTYD_PURCHASE_COLUMN not in getattr(X, "columns", ()):
            return np.full(len(X), np.nan)
        frame = cast(pd.DataFrame, X)  # it has columns: a DataFrame
        return 1.0 - frame[BTYD_PURCHASE_COLUMN].to_numpy(dtype=float)

    def align_level(self, X: pd.DataFrame) -> PropensityModel:
        """Learn the logit offset that makes the mean model probability over rows with a BTYD
        prediction equal BTYD's mean there (no labels used). Without such rows the offset stays 0."""
        from scipy.optimize import brentq

        z = self._model_logit(self._inputs(X))
        pb = self._btyd(X)
        has = np.isfinite(pb)
        self.offset_ = 0.0
        if has.sum() >= 10:
            target = float(pb[has].mean())
            gap = lambda d: float(_expit(z[has] + d).mean()) - target  # noqa: E731
            if gap(-20.0) < 0 < gap(20.0):
                self.offset_ = float(brentq(gap, -20.0, 20.0, xtol=1e-8))
        return self

    def recalibrate(self, X: pd.DataFrame, y, min_per_group: int = 50) -> PropensityModel:
        """Learn Platt maps p -> expit(a + b * logit(p)) on (X, y), a later origin than the training data with its
        outcomes known (out of time), apart for rows with a BTYD prediction (buyers) and without (prospects).

        A group with fewer than ``min_per_group`` rows or one outcome only keeps the identity map (a=0, b=1).
        Sets ``platt_`` ({"buyers": (a, b), "prospects": (a, b)}); ``predict_proba`` applies it."""
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(y, dtype=int)
        self.platt_: dict[str, tuple[float, float]] = {}
        p, has = self._blended(X)
        for group, rows in (("buyers", has), ("prospects", ~has)):
            a, b = 0.0, 1.0
            if rows.sum() >= min_per_group and len(np.unique(y[rows])) == 2:
                fit = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(p[rows])[:, None], y[rows])
                a, b = float(fit.intercept_[0]), float(fit.coef_[0, 0])
            self.platt_[group] = (a, b)
        return self

    def _platt(self, p: np.ndarray, has: np.ndarray) -> np.ndarray:
        platt = getattr(self, "platt_", None)  # None: not recalibrated (or pickled before recalibrate existed)
        if not platt:
            return p
        out = p.copy()
        for group, rows in (("buyers", has), ("prospects", ~has)):
            a, b = platt[group]
            out[rows] = _expit(a + b * _logit(p[rows]))
        return out

    def _aligned_blend(self, z: np.ndarray, pb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Steps 2-3 on the classifier's logit ``z``: the level offset, then the blend with BTYD's probability
        ``pb`` where it is finite (buyers). Returns the probability and that buyer mask."""
        p = _expit(z + getattr(self, "offset_", 0.0))
        has = np.isfinite(pb)
        w = getattr(self, "btyd_weight", 0.0)
        p[has] = (1.0 - w) * p[has] + w * pb[has]
        return p, has

    def _blended(self, X: pd.DataFrame | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Steps 1-3 on X, and which rows have a BTYD prediction."""
        return self._aligned_blend(self._model_logit(self._inputs(X)), self._btyd(X))

    def predict_proba(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """[P(no purchase), P(purchase)] in the horizon per row: the classifier's, level-aligned, blended
        with BTYD's for rows with a btyd_p_no_purchase value, and Platt-scaled when ``recalibrate`` was called."""
        p = self._platt(*self._blended(X))
        return np.column_stack([1.0 - p, p])

    def predict_purchase(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """P(at least one purchase in the horizon), one value per row."""
        return self.predict_proba(X)[:, 1]

    def _predict_purchase_columns(self, column, has_column, n_rows: int) -> np.ndarray:
        """``predict_purchase`` from columns by name (``column(name)``: a float array of n_rows; ``has_column(name)``:
        whether the input has it), without a DataFrame: the scoring bundle's path."""
        check_fitted(self, "base_rate_")
        names = getattr(self, "feature_names_in_", None)
        if names is None:
            raise ModelError("Propensity model fitted without column names: predict it on a DataFrame or an array.")
        names = list(names)
        missing = [c for c in names if not has_column(c)]
        if missing:
            raise ModelError(f"Propensity model needs feature columns {missing[:8]}, which the input lacks.")
        if getattr(self, "calibration_", None) == "constant":
            z = np.full(n_rows, float(_logit(np.array([self.base_rate_]))[0]))
        else:
            learner = getattr(self, "learner_", getattr(self, "learner", "gbm"))
            assert self.model_ is not None  # None only with the "constant" calibration, handled above
            with thread_limits(getattr(self, "threads", None)):
                if learner == "logistic":
                    z = self.model_.decision_function(signed_log_columns(names, column, n_rows))
                else:
                    X = np.empty((n_rows, len(names)), order="F")  # column by column: contiguous writes
                    for j, c in enumerate(names):
                        X[:, j] = column(c)
                    z = _logit(self.model_.predict_proba(np.round(X, 6))[:, 1])
        has_btyd = has_column(BTYD_PURCHASE_COLUMN)
        pb = 1.0 - np.asarray(column(BTYD_PURCHASE_COLUMN), dtype=float) if has_btyd else np.full(n_rows, np.nan)
        return self._platt(*self._aligned_blend(z, pb))

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """1 where P(purchase) >= 0.5, else 0 (scikit-learn's classifier contract; ``score`` is accuracy)."""
        return (self.predict_purchase(X) >= 0.5).astype(int)
