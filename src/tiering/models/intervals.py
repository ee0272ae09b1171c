"""Per-customer CLV intervals: quantile gradient boosting, conformalized out of time (clv_p10, clv_p90).

``SpendInterval`` predicts, per customer, an interval that should hold the spend over the horizon for
a share ``coverage`` of customers (0.8: clv_p10 .. clv_p90 in the scores frame):

1. two gradient-boosted quantile regressors, at (1 - coverage) / 2 and (1 + coverage) / 2, fitted on
   labelled origins (spend in (t, t + H] against the features at t);
2. ``conformalize``: on a later labelled origin the quantile models never saw (out of time), each end
   is moved so that the interval misses as many of that origin's customers as it should, with the
   split-conformal finite-sample rank (at most floor((n + 1)(1 - coverage)) misses in all). Distances
   are measured on log(1 + spend), so the correction is multiplicative (heavy-tailed spend needs no
   single currency width). This is conformalized quantile regression (Romano, Patterson and Candes,
   2019) with its two ends calibrated apart and the calibration split taken in time: customers of
   the calibration origin are the next period's customers, not a random half.

Spend over a horizon is exactly 0 for most customers, a point mass the symmetric conformal score
cannot resolve (every covered zero scores 0, so the interval stays as wide as the raw quantiles make
it). So the lower end is only ever widened, by at most (1 - coverage) / 2 of misses below; it stays
at 0 for most customers, and the upper end takes the rest of the miss budget: above it fall about
(1 - coverage) less the share below. The guarantee is for customers like those of the calibration
origin; a season unlike it moves the miss (tiering backtest reports the coverage measured on every
held-out origin): a horizon in which more of a group buy than in the calibration origin's puts more
of them above the upper end, one in which fewer buy puts fewer there. And where fewer than
(1 - coverage) of a group spend anything over the horizon, even [0, 0] misses only those who spend,
so the coverage is at least the share who spend nothing, above ``coverage``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from tiering.exceptions import ModelError
from tiering.models import check_fitted, thread_limits
from tiering.models._hgb import hgb_predict
from tiering.models.clv import _fit_columns, _names, feature_frame, tree_input

__all__ = ["SpendInterval", "interval_metrics"]


class SpendInterval(BaseEstimator):
    """A ``coverage`` interval of spend over the horizon per customer (quantile GBMs + out-of-time conformal step).

    ``fit`` sets ``lower_``, ``upper_`` (the quantile models), ``offset_lower_`` and ``offset_upper_`` (0.0 until
    ``conformalize``; on log(1 + spend), positive widens), ``group_offsets_`` (per value of ``group_column`` > 0:
    buyers and prospects; empty until then) and ``n_calibration_`` (0 until then); ``predict`` returns (lower,
    upper), both >= 0 and lower <= upper.
    """

    def __init__(
        self,
        coverage: float = 0.8,
        max_iter: int = 200,
        learning_rate: float = 0.05,
        min_samples_leaf: int = 50,
        group_column: str | None = "has_purchased",
        random_state: int = 0,
        threads: int | None = None,
    ):
        self.coverage = coverage
        self.group_column = group_column
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.min_samples_leaf = min_samples_leaf
        self.random_state = random_state
        self.threads = threads

    def fit(self, X: pd.DataFrame | np.ndarray, y) -> SpendInterval:
        from sklearn.ensemble import HistGradientBoostingRegressor

        if not 0 < self.coverage < 1:
            raise ModelError(f"SpendInterval coverage must be between 0 and 1 (0.8: an 80% interval); got {self.coverage!r}.")
        y = np.clip(np.asarray(y, dtype=float), 0.0, None)
        if len(X) != len(y) or not np.isfinite(y).all():
            raise ModelError(
                f"SpendInterval fit needs one finite spend label per feature row; got {len(y)} labels "
                f"({int((~np.isfinite(y)).sum())} not finite) for {len(X)} rows."
            )
        if (y > 0).sum() < 10:
            raise ModelError(f"SpendInterval needs at least 10 customers who spent in the training horizon; got {int((y > 0).sum())}.")
        named = _names(X) is not None
        X = feature_frame("SpendInterval.fit", X)
        _fit_columns(self, X, named)
        Z = tree_input(X)
        alpha = (1 - self.coverage) / 2
        with thread_limits(self.threads):
            self.lower_, self.upper_ = (
                HistGradientBoostingRegressor(
                    loss="quantile",
                    quantile=q,
                    max_iter=self.max_iter,
                    learning_rate=self.learning_rate,
                    min_samples_leaf=self.min_samples_leaf,
                    random_state=self.random_state,
                ).fit(Z, y)
                for q in (alpha, 1 - alpha)
            )
        self.offset_lower_ = self.offset_upper_ = 0.0
        self.group_offsets_: dict[bool, tuple[float, float]] = {}
        self.n_calibration_ = 0
        return self

    def _raw(self, X) -> tuple[np.ndarray, np.ndarray]:
        check_fitted(self, "upper_")
        Z = tree_input(feature_frame("SpendInterval", X, self))
        with thread_limits(getattr(self, "threads", None)):
            lo, hi = (np.log1p(np.clip(m.predict(Z), 0.0, None)) for m in (self.lower_, self.upper_))
        return np.minimum(lo, hi), np.maximum(lo, hi)

    def _groups(self, X) -> np.ndarray | None:
        col = getattr(self, "group_column", None)
        if col is None or col not in getattr(X, "columns", ()):
            return None
        return X[col].to_numpy(dtype=float) > 0

    def conformalize(self, X, y) -> SpendInterval:
        """Set the offsets from a labelled origin the quantile models were not fitted on (see the module doc):
        ``offset_lower_`` / ``offset_upper_`` over every row, and ``group_offsets_`` per group of ``group_column``
        (buyers and prospects are calibrated apart: a base where most prospects never buy must not lend its
        certain zeros to the buyers' coverage). A group with fewer than 20 rows uses the pooled offsets."""
        y = np.log1p(np.clip(np.asarray(y, dtype=float), 0.0, None))
        lo, hi = self._raw(X)
        if len(y) < 20:
            raise ModelError(f"SpendInterval.conformalize needs at least 20 labelled customers; got {len(y)}.")
        self.offset_lower_, self.offset_upper_ = self._offsets(lo, hi, y)
        groups = self._groups(X)
        self.group_offsets_ = (
            {}
            if groups is None
            else {
                bool(g): self._offsets(lo[groups == g], hi[groups == g], y[groups == g]) for g in (False, True) if (groups == g).sum() >= 20
            }
        )
        self.n_calibration_ = len(y)
        return self

    def _offsets(self, lo: np.ndarray, hi: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        n = len(y)
        misses = math.floor((n + 1) * (1 - self.coverage))  # at most this many outside, in all
        below = np.sort(lo - y)[::-1]  # how far each customer fell below their lower end (> 0: below)
        k = math.floor((n + 1) * (1 - self.coverage) / 2)
        offset_lower = max(0.0, float(below[k])) if k < n else 0.0  # widen only: zeros are a point mass
        outside_low = int((lo - offset_lower - y > 0).sum())
        # how far above the upper end (> 0: above); a customer who spent 0 is never above it (the end is >= 0)
        above = np.sort(np.where(y > 0, y - hi, -np.inf))[::-1]
        k = min(n - 1, max(0, misses - outside_low))
        finite = above[np.isfinite(above)]
        offset_upper = float(above[k]) if np.isfinite(above[k]) else float(finite.min() - 1e-9 if len(finite) else 0.0)
        return offset_lower, offset_upper

    def predict(self, X) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) spend over the horizon per row: the conformalized ``coverage`` interval."""
        return self._conformal(*self._raw(X), self._groups(X))

    # the scoring bundle's path: inputs as shared columns, the quantile boosters run with the CLV model's
    def _gbm_inputs(self) -> list[tuple[object, list]] | None:
        """[(lower_, its input column names), (upper_, ...)], or None where the inputs have no names."""
        check_fitted(self, "upper_")
        names = getattr(self, "feature_names_in_", None)
        return None if names is None else [(self.lower_, list(names)), (self.upper_, list(names))]

    def _predict_columns(self, column, has_column, raws: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``predict`` from the raw predictions of ``_gbm_inputs``' models; ``has_column(name)``: whether the
        input has that column (the group column)."""
        lo, hi = (np.log1p(np.clip(hgb_predict(m, raw), 0.0, None)) for m, raw in zip((self.lower_, self.upper_), raws))
        col = getattr(self, "group_column", None)
        groups = np.asarray(column(col), dtype=float) > 0 if col is not None and has_column(col) else None
        return self._conformal(np.minimum(lo, hi), np.maximum(lo, hi), groups)

    def _conformal(self, lo: np.ndarray, hi: np.ndarray, groups: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        off_lo = np.full(len(lo), self.offset_lower_)
        off_hi = np.full(len(lo), self.offset_upper_)
        for g, (a, b) in (getattr(self, "group_offsets_", {}) or {}).items() if groups is not None else ():
            off_lo[groups == g], off_hi[groups == g] = a, b
        lo, hi = lo - off_lo, hi + off_hi
        hi = np.maximum(hi, lo)  # a negative offset never crosses the ends
        return np.expm1(np.clip(lo, 0.0, None)), np.expm1(np.clip(hi, 0.0, None))


def interval_metrics(actual, lower, upper) -> dict[str, float]:
    """Coverage (share of customers whose spend is inside [lower, upper]), the shares below and above, and
    the median width, on spend floored at 0 (as the interval models see it)."""
    y = np.clip(np.asarray(actual, dtype=float), 0.0, None)
    lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    below, above = y < lower - 1e-9, y > upper + 1e-9
    return {
        "coverage": float(1 - below.mean() - above.mean()),
        "share_below": float(below.mean()),
        "share_above": float(above.mean()),
        "median_width": float(np.median(upper - lower)),
    }
