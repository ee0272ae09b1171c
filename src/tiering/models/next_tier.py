"""The next-period tier classifier: the tier a customer will hold one horizon later, with probabilities."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from tiering.exceptions import ModelError
from tiering.ladder import TIER_LADDER, TIER_NAMES
from tiering.models import thread_limits


class NextTierModel(BaseEstimator):
    """Predicts the tier a customer will hold one horizon later, with class probabilities.

    Gradient boosting on the feature frame plus the current tier (one-hot). Trained on
    features at an earlier origin against the policy's tiers at the later origin.

    Fallbacks (each recorded as a sentence in ``fallbacks_``; ``mode_`` says which model predicts):

    - ``mode_ = "stay"``: no training pairs at all: the "stays in its tier" rule, the current
      tier with probability 1;
    - ``mode_ = "constant"``: one next tier only among the pairs: that tier with certainty;
    - ``mode_ = "model"`` with the number of rounds chosen without the tiny classes: when the
      smallest next-tier class has fewer than ``min_class_for_early_stopping`` members, the
      stratified validation split of early stopping cannot hold it (scikit-learn refuses a class
      with one member); early stopping then runs on the pairs of the well-populated classes only
      and the booster is refitted on every pair for the rounds it chose;
    - ``mode_ = "model"`` without early stopping: fewer than 100 pairs, or fewer than two classes
      with ``min_class_for_early_stopping`` members: the booster runs ``max_iter`` rounds.
    """

    def __init__(
        self,
        max_iter: int = 200,
        learning_rate: float = 0.1,
        random_state: int = 0,
        min_class_for_early_stopping: int = 10,
        threads: int | None = None,
    ):
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.random_state = random_state
        self.min_class_for_early_stopping = min_class_for_early_stopping
        self.threads = threads  # cap on the booster's threads in fit and predict (None: the library default)

    @staticmethod
    def _design(X: pd.DataFrame, tier: pd.Series | np.ndarray) -> np.ndarray:
        t = np.asarray(tier, dtype=object)
        onehot = np.stack([(t == x.name) for x in TIER_LADDER], axis=1).astype(float)
        return np.hstack([X.to_numpy(dtype=float), onehot])

    def fit(self, X: pd.DataFrame, current_tier, next_tier) -> NextTierModel:
        from sklearn.ensemble import HistGradientBoostingClassifier

        y = np.asarray(next_tier, dtype=object)
        if len(y) != len(X) or len(np.asarray(current_tier)) != len(X):
            raise ModelError(
                f"NextTierModel fit got {len(X)} feature rows, {len(np.asarray(current_tier))} current "
                f"tiers and {len(y)} next tiers; they must match."
            )
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.model_ = None
        self.fallbacks_: list[str] = []
        classes, counts = np.unique(y, return_counts=True) if len(y) else (np.array([], dtype=object), np.array([]))
        if len(classes) == 0:
            self.mode_, self.classes_ = "stay", np.asarray(TIER_NAMES, dtype=object)
            self.fallbacks_.append("next tier: no training pairs; the 'stays in its tier' rule predicts the current tier")
            return self
        if len(classes) == 1:
            self.mode_, self.classes_ = "constant", classes.astype(object)
            self.fallbacks_.append(f"next tier: every training pair ends in tier {classes[0]!r}; that tier is predicted with certainty")
            return self
        design = self._design(X, current_tier)
        with thread_limits(self.threads):
            self.model_ = HistGradientBoostingClassifier(
                max_iter=self._rounds(design, y, classes, counts),
                learning_rate=self.learning_rate,
                early_stopping=not self.fallbacks_,
                random_state=self.random_state,
            ).fit(design, y)
        self.mode_ = "model"
        self.classes_ = self.model_.classes_
        return self

    def _rounds(self, design: np.ndarray, y: np.ndarray, classes: np.ndarray, counts: np.ndarray) -> int:
        """max_iter, or the rounds early stopping picks on the well-populated classes (a fallback, noted)."""
        from sklearn.ensemble import HistGradientBoostingClassifier

        big = classes[counts >= self.min_class_for_early_stopping]
        smallest = int(counts.min())
        if smallest >= self.min_class_for_early_stopping and len(y) >= 100:
            return self.max_iter
        tiny = (
            f"smallest next-tier class {classes[counts.argmin()]!r} has {smallest} member{'s' if smallest != 1 else ''} of {len(y)} pairs"
        )
        keep = np.isin(y, big)
        if len(big) < 2 or keep.sum() < 100:
            self.fallbacks_.append(f"next tier: no early stopping ({tiny}); the booster runs {self.max_iter} rounds")
            return self.max_iter
        probe = HistGradientBoostingClassifier(
            max_iter=self.max_iter, learning_rate=self.learning_rate, early_stopping=True, random_state=self.random_state
        ).fit(design[keep], y[keep])
        self.fallbacks_.append(
            f"next tier: early stopping without the tiny classes ({tiny}): {probe.n_iter_} rounds chosen "
            f"on the {int(keep.sum())} pairs of classes with {self.min_class_for_early_stopping}+ members, "
            "then refitted on every pair"
        )
        return int(probe.n_iter_)

    def predict_proba(self, X: pd.DataFrame, current_tier) -> np.ndarray:
        """Probabilities over ``classes_`` (the current tier one-hot under the "stay" rule)."""
        if getattr(self, "mode_", None) == "stay":
            return np.stack([np.asarray(current_tier, dtype=object) == c for c in self.classes_], axis=1).astype(float)
        if self.model_ is None:
            return np.ones((len(X), 1))
        with thread_limits(getattr(self, "threads", None)):  # bundles pickled before `threads` existed
            return self.model_.predict_proba(self._design(X[list(self.feature_names_in_)], current_tier))

    def predict_proba_ladder(self, X: pd.DataFrame, current_tier) -> np.ndarray:
        """Probabilities over all five tiers in ladder order (TIER_NAMES); 0 for a tier never seen in training."""
        proba = self.predict_proba(X, current_tier)
        out = np.zeros((len(X), len(TIER_NAMES)))
        for j, c in enumerate(self.classes_):
            out[:, TIER_NAMES.index(c)] = proba[:, j]
        return out

    def _predict_columns(self, column, n_rows: int, current_tier) -> tuple[np.ndarray, np.ndarray]:
        """``predict`` from columns by name (``column(name)``: a float array of n_rows): the scoring bundle's path,
        the booster run on the codes of its inputs (``tiering.models._hgb.hgb_raw_predictions``)."""
        from tiering.models._hgb import hgb_predict_proba, hgb_raw_predictions

        if getattr(self, "mode_", None) != "model" or self.model_ is None:
            X = (
                pd.DataFrame({c: column(c) for c in self.feature_names_in_})
                if n_rows
                else pd.DataFrame(columns=list(self.feature_names_in_))
            )
            return self.predict(X, current_tier)
        t = np.asarray(current_tier, dtype=object)
        onehot = {("tier", x.name): (t == x.name).astype(float) for x in TIER_LADDER}
        keys = [*self.feature_names_in_, *onehot]
        with thread_limits(getattr(self, "threads", None)):
            (raw,) = hgb_raw_predictions([(self.model_, keys)], lambda k: onehot[k] if k in onehot else column(k), n_rows)
        return self._best(hgb_predict_proba(self.model_, raw))

    def predict(self, X: pd.DataFrame, current_tier) -> tuple[np.ndarray, np.ndarray]:
        """(next_tier, its probability) per row."""
        return self._best(self.predict_proba(X, current_tier))

    def _best(self, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        best = proba.argmax(axis=1)
        return self.classes_[best], proba[np.arange(len(best)), best]
