"""The fallback spend model, one mean order value, for data that Gamma-Gamma cannot be fitted on;
tiering.fitting picks it and says so."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator

from tiering.models import check_fitted
from tiering.models._btyd_base import _Summary
from tiering.models._btyd_inputs import _as_float, _columns, _inputs
from tiering.models._btyd_spend import _SpendModel

__all__ = ["MeanSpendModel"]


class MeanSpendModel(_SpendModel, _Summary, BaseEstimator):
    """The fallback spend model: one mean order value for everyone, used where Gamma-Gamma cannot be
    fitted (fewer than 2 repeat buyers with positive spend, or q <= 1). ``fit(order_values,
    sample_weight)`` takes each buyer's mean order value (negative values count as 0) and their order
    counts as weights, or an RFM DataFrame whose ``monetary_value`` column it reads as the order
    values; ``expected_spend`` returns that pooled mean whatever the customer's history.
    ``params_``: mean; its standard error is the weighted standard deviation over sqrt(sum of weights);
    not a likelihood fit (``summary.attrs["log_likelihood"]`` is NaN)."""

    def fit(self, order_values: ArrayLike | pd.DataFrame, sample_weight: ArrayLike | None = None) -> MeanSpendModel:
        owner = f"{type(self).__name__}.fit"
        (order_values,), _ = _inputs(owner, ("monetary_value",), order_values)
        (m,) = _columns(owner, order_values=order_values)
        w = np.ones_like(m) if sample_weight is None else _as_float("sample_weight", sample_weight)
        ok = np.isfinite(m) & np.isfinite(w) & (w > 0)
        m, w = np.maximum(m[ok], 0.0), w[ok]
        mean = float(np.average(m, weights=w)) if ok.any() else 0.0
        total = float(w.sum())
        se = math.sqrt(float(w @ (m - mean) ** 2) / (total - 1.0) / total) if total > 1 else math.nan
        self.params_ = {"mean": mean}
        self.standard_errors_ = {"mean": se}
        self.n_customers_ = int(ok.sum())
        self.fit_report_ = {"converged": True, "method": "pooled mean", "warnings": [], "attempts": []}
        return self

    def _expected_spend(self, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        """The pooled mean order value, broadcast to the inputs' shape."""
        check_fitted(self, "params_")
        return np.full(x.shape, self.params_["mean"])
