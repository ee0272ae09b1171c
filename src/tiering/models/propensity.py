"""Purchase propensity: P(at least one purchase in the next H days), for buyers and non-buyers.

Gradient boosting on the feature frame, with probabilities calibrated by cross-validation
(isotonic when there are enough positives, Platt scaling otherwise). Churn risk is
1 - propensity for customers who have purchased.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin

from tiering.exceptions import ModelError


class PropensityModel(ClassifierMixin, BaseEstimator):
    """Calibrated gradient-boosted classifier of purchase in the horizon.

    Parameters are stored as given; ``fit`` sets ``feature_names_in_``, ``model_``,
    ``calibration_``, ``base_rate_`` and ``n_train_``.
    """

    def __init__(self, max_iter: int = 300, learning_rate: float = 0.05, max_leaf_nodes: int = 31,
                 calibration: str = "auto", cv: int = 3, random_state: int = 0):
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.calibration = calibration
        self.cv = cv
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, y) -> PropensityModel:
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.ensemble import HistGradientBoostingClassifier

        y = np.asarray(y, dtype=int)
        if len(X) != len(y):
            raise ModelError(f"Propensity fit got {len(X)} feature rows but {len(y)} labels.")
        positives = int(y.sum())
        if positives < self.cv or len(y) - positives < self.cv:
            raise ModelError(
                f"Propensity fit needs at least {self.cv} customers who purchased in the horizon and {self.cv} "
                f"who did not; got {positives} and {len(y) - positives}. Use an earlier as_of or a shorter horizon."
            )
        method = self.calibration
        if method == "auto":
            method = "isotonic" if min(positives, len(y) - positives) >= 500 else "sigmoid"
        base = HistGradientBoostingClassifier(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            early_stopping=True,
            validation_fraction=0.15,
            n_iter_no_change=20,
            random_state=self.random_state,
        )
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.model_ = CalibratedClassifierCV(base, method=method, cv=self.cv).fit(X.to_numpy(dtype=float), y)
        self.classes_ = self.model_.classes_
        self.calibration_ = method
        self.base_rate_ = float(y.mean())
        self.n_train_ = int(len(y))
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        missing = [c for c in self.feature_names_in_ if c not in X.columns]
        if missing:
            raise ModelError(f"Propensity model needs feature columns {missing}, which the feature frame lacks.")
        return self.model_.predict_proba(X[list(self.feature_names_in_)].to_numpy(dtype=float))

    def predict_purchase(self, X: pd.DataFrame) -> np.ndarray:
        """P(at least one purchase in the horizon), one value per row."""
        return self.predict_proba(X)[:, 1]
