"""The fallback transaction model, a pooled NBD (purchases without dropout, a closed-form rate), for data
that BG/NBD and Pareto/NBD cannot be fitted on; tiering.fitting picks it and says so."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.special import gammaln

from tiering.models._btyd_inputs import _TRANSACTION_COLUMNS, _broadcast, _columns, _inputs, _weights
from tiering.models._btyd_transaction import _TransactionModel

__all__ = ["PooledNBDModel"]


class PooledNBDModel(_TransactionModel):
    """The fallback transaction model: NBD (Ehrenberg 1959), Poisson purchases at a gamma-distributed
    rate and no dropout (P(alive) = 1), with a pooled closed-form fit instead of maximum likelihood.

    Used where BG/NBD or Pareto/NBD cannot be fitted (too few buyers, no repeat buyer, every T 0,
    no convergence). ``fit`` sets the rate prior Gamma(r, alpha) with r = 1 (exponential
    heterogeneity) and mean r / alpha = (sum x + 0.5) / (sum T + n * ``min_exposure``): the pooled
    repeat-purchase rate, Jeffreys-smoothed, with at least ``min_exposure`` time units of exposure per
    customer so that one day of history does not imply a purchase a day. A customer's rate is then
    Gamma(r + x, alpha + T). ``params_``: r, alpha.
    """

    _param_names = ("r", "alpha")

    def __init__(self, min_exposure: float = 30.0) -> None:
        self.min_exposure = min_exposure

    def fit(
        self,
        frequency: ArrayLike | pd.DataFrame,
        recency: ArrayLike | None = None,
        T: ArrayLike | None = None,
        sample_weight: ArrayLike | None = None,
    ) -> PooledNBDModel:
        """Set the pooled rate from an RFM DataFrame or (frequency, recency, T) arrays (rows with a
        missing or negative frequency or T are left out). ``log_likelihood_`` is the NBD's at these
        parameters (BG/NBD's with no dropout, so comparable with it); ``standard_errors_`` gives alpha's
        from the inverse of that likelihood's curvature (r is fixed: NaN)."""
        owner = f"{type(self).__name__}.fit"
        (frequency, recency, T), _ = _inputs(owner, _TRANSACTION_COLUMNS, frequency, recency, T)
        x, _, T = _columns(owner, frequency=frequency, recency=recency, T=T)
        ok = np.isfinite(x) & np.isfinite(T) & (x >= 0) & (T >= 0)
        w = _weights(owner, sample_weight, x.shape[0]) * ok
        x, T = np.where(ok, x, 0.0), np.where(ok, T, 0.0)
        exposure = float(w @ T) + float(w.sum()) * float(self.min_exposure)
        rate = (float(w @ x) + 0.5) / max(exposure, 1e-12)
        r, alpha = 1.0, 1.0 / rate
        self.params_ = {"r": r, "alpha": alpha}
        self.log_likelihood_ = float(w @ (gammaln(r + x) - gammaln(r) + r * math.log(alpha) - (r + x) * np.log(alpha + T)))
        curvature = float(w @ ((r + x) / (alpha + T) ** 2)) - float(w.sum()) * r / alpha**2  # d2 LL / d alpha2
        self.standard_errors_ = {"r": math.nan, "alpha": math.sqrt(-1.0 / curvature) if curvature < 0 else math.nan}
        self.n_customers_ = int(w.sum())
        self.fit_report_ = {"converged": True, "method": "pooled closed form", "warnings": [], "attempts": []}
        return self

    def _p_alive(self, x: np.ndarray, rec: np.ndarray, T: np.ndarray) -> np.ndarray:
        """1: the NBD has no dropout."""
        return np.ones(np.broadcast(x, rec, T).shape)

    def _given_alive(self, t: ArrayLike, x: ArrayLike, T: ArrayLike) -> np.ndarray:
        r, alpha = self._params()
        t, x, T = _broadcast(t, x, T)
        return (r + x) / (alpha + T) * t

    def _buy_given_alive(self, t: ArrayLike, x: ArrayLike, T: ArrayLike) -> np.ndarray:
        r, alpha = self._params()
        t, x, T = _broadcast(t, x, T)
        return -np.expm1((r + x) * np.log1p(-t / (alpha + T + t)))
