"""The transaction models' shared half (BG/NBD, Pareto/NBD, the pooled NBD): ``fit`` by maximum likelihood
on (frequency, recency, T), and the predictions, which each model builds from three pieces of its own
(``_p_alive``, ``_given_alive``, ``_buy_given_alive``)::

    bg = BetaGeoModel().fit(rfm)                       # or .fit(rfm["frequency"], rfm["recency"], rfm["T"])
    rfm["p_alive"] = bg.conditional_probability_alive(rfm)   # a Series on rfm's index
    bg.summary                                          # coef, se(coef), 95% bounds; .attrs["log_likelihood"]

lifetimes' method names (conditional_expected_number_of_purchases_up_to_time, conditional_probability_alive,
expected_number_of_purchases_up_to_time) call the short ones (expected_purchases, p_alive,
expected_purchases_new).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from tiering.exceptions import ModelError
from tiering.models._btyd_base import _BTYDModel, _standard_errors
from tiering.models._btyd_inputs import (
    _TRANSACTION_COLUMNS,
    _broadcast,
    _collapse,
    _columns,
    _inputs,
    _output,
    _raise_bad_rows,
    _weights,
)

_SUMMARY_HINT = (
    "Expected lifetimes' summary semantics: frequency = repeat purchases (an integer >= 0), "
    "recency = time from the first to the last purchase (0 when frequency is 0), T = time from the "
    "first purchase to the end of observation, recency <= T, all in one time unit."
)


class _TransactionModel(_BTYDModel):
    """BG/NBD and Pareto/NBD: fit on (frequency, recency, T); predictions share one structure.

    E[purchases in (T, T+t]] = P(alive) * E[purchases in (T, T+t] | alive] and
    P(no purchase in (T, T+t]) = 1 - P(alive) * P(at least one purchase | alive).
    """

    _time_params: tuple[str, ...] = ()  # parameters that are rates per time unit
    _penalty_per_customer = True  # penalizer on the mean (True) or the total (False) log-likelihood

    def fit(
        self,
        frequency: ArrayLike | pd.DataFrame,
        recency: ArrayLike | None = None,
        T: ArrayLike | None = None,
        sample_weight: ArrayLike | None = None,
    ) -> _TransactionModel:
        """Fit by maximum likelihood on an RFM DataFrame or (frequency, recency, T) arrays;
        ``sample_weight`` counts customers per row."""
        owner = f"{type(self).__name__}.fit"
        (frequency, recency, T), _ = _inputs(owner, _TRANSACTION_COLUMNS, frequency, recency, T)
        x, rec, T = _columns(owner, frequency=frequency, recency=recency, T=T)
        _check_rfm_rows(owner, x, rec, T)
        w = _weights(owner, sample_weight, x.shape[0])
        keep = w > 0
        if not (x[keep] > 0).any() or T[keep].max() <= 0:
            raise ModelError(
                f"{owner}: no customer has a repeat purchase (every frequency is 0) or every T is 0; "
                "the purchase and dropout rates cannot be estimated. Use a longer history."
            )
        (x, rec, T), _, inverse = _collapse(x[keep], rec[keep], T[keep])
        w = np.bincount(inverse, weights=w[keep])
        scale = 1.0 / T.max()  # as lifetimes: time rescaled so that max T = 1 while fitting
        data = self._prepare(x, rec * scale, T * scale, w)
        total = w.sum()
        pen_scale = 1.0 if self._penalty_per_customer else 1.0 / total

        def to_params(theta: np.ndarray) -> dict[str, float]:
            with np.errstate(over="ignore"):
                p = np.exp(theta)
            return {k: float(v / scale if k in self._time_params else v) for k, v in zip(self._param_names, p)}

        with np.errstate(all="ignore"):
            params, _, report, hess = self._optimise(
                lambda th, pen: self._objective(th, pen * pen_scale, data), self._analytic_gradient, to_params
            )
            scaled = [params[k] * (scale if k in self._time_params else 1.0) for k in self._param_names]
            ll_scaled = float(np.sum(w * self._loglik(scaled, data)))
            self.covariance_, self.standard_errors_ = _standard_errors(params, hess, float(total))
        self.params_ = params
        # Back to the caller's time unit: each purchase time's density scales by 1 / scale.
        self.log_likelihood_ = ll_scaled + float(np.sum(w * x)) * math.log(scale)
        self.n_customers_ = float(total) if sample_weight is not None else int(total)
        self.fit_report_ = report | {"n_rows_unique": int(x.shape[0])}
        return self

    _analytic_gradient = False

    def _prepare(self, x: np.ndarray, rec: np.ndarray, T: np.ndarray, w: np.ndarray) -> dict[str, Any]:
        return {"x": x, "rec": rec, "T": T, "w": w}

    def _objective(self, theta: np.ndarray, pen: float, data: dict[str, Any]) -> Any:
        p = np.exp(theta)
        ll = float(np.sum(data["w"] * self._loglik(p, data)))
        f = -ll / data["w"].sum() + pen * float(np.sum(p**2))
        return f if np.isfinite(f) else np.inf

    def _loglik(self, params: Any, data: dict[str, Any]) -> np.ndarray:
        raise NotImplementedError

    def _given_alive(self, t: ArrayLike, x: ArrayLike, T: ArrayLike) -> np.ndarray:
        """E[purchases in (T, T+t] | alive at T, x, T]."""
        raise NotImplementedError

    def _buy_given_alive(self, t: ArrayLike, x: ArrayLike, T: ArrayLike) -> np.ndarray:
        """P(at least one purchase in (T, T+t] | alive at T, x, T)."""
        raise NotImplementedError

    def _p_alive(self, x: np.ndarray, rec: np.ndarray, T: np.ndarray) -> np.ndarray:
        """P(alive at T | x, recency, T) on broadcast float arrays."""
        raise NotImplementedError

    def _rfm(self, method: str, frequency: Any, recency: Any, T: Any) -> tuple[list[Any], pd.Index | None]:
        return _inputs(f"{type(self).__name__}.{method}", _TRANSACTION_COLUMNS, frequency, recency, T)

    def p_alive(
        self, frequency: ArrayLike | pd.DataFrame, recency: ArrayLike | None = None, T: ArrayLike | None = None
    ) -> np.ndarray | pd.Series:
        """P(alive at T) given an RFM DataFrame or (frequency, recency, T)."""
        cols, index = self._rfm("p_alive", frequency, recency, T)
        return _output(self._p_alive(*_broadcast(*cols)), index)

    def expected_purchases(
        self, t: ArrayLike, frequency: ArrayLike | pd.DataFrame, recency: ArrayLike | None = None, T: ArrayLike | None = None
    ) -> np.ndarray | pd.Series:
        """Conditional expected number of purchases in (T, T + t] given an RFM DataFrame or (frequency, recency, T)."""
        cols, index = self._rfm("expected_purchases", frequency, recency, T)
        t, x, rec, T = _broadcast(t, *cols)
        return _output(self._p_alive(x, rec, T) * self._given_alive(t, x, T), index)

    def p_no_purchase(
        self, t: ArrayLike, frequency: ArrayLike | pd.DataFrame, recency: ArrayLike | None = None, T: ArrayLike | None = None
    ) -> np.ndarray | pd.Series:
        """P(no purchase in (T, T + t]) given an RFM DataFrame or (frequency, recency, T)."""
        cols, index = self._rfm("p_no_purchase", frequency, recency, T)
        t, x, rec, T = _broadcast(t, *cols)
        return _output(1.0 - self._p_alive(x, rec, T) * self._buy_given_alive(t, x, T), index)

    def expected_purchases_new(self, t: ArrayLike) -> np.ndarray:
        """Unconditional E[X(t)]: expected repeat purchases in t time units of a new customer."""
        t = np.asarray(t, dtype=float)
        return self._given_alive(t, np.zeros_like(t), np.zeros_like(t))

    # lifetimes' names (BetaGeoFitter, ParetoNBDFitter): the same methods
    def conditional_probability_alive(
        self, frequency: ArrayLike | pd.DataFrame, recency: ArrayLike | None = None, T: ArrayLike | None = None
    ) -> np.ndarray | pd.Series:
        """lifetimes' name for :meth:`p_alive`."""
        return self.p_alive(frequency, recency, T)

    def conditional_expected_number_of_purchases_up_to_time(
        self,
        t: ArrayLike,
        frequency: ArrayLike | pd.DataFrame,
        recency: ArrayLike | None = None,
        T: ArrayLike | None = None,
    ) -> np.ndarray | pd.Series:
        """lifetimes' name for :meth:`expected_purchases`."""
        return self.expected_purchases(t, frequency, recency, T)

    def expected_number_of_purchases_up_to_time(self, t: ArrayLike) -> np.ndarray:
        """lifetimes' name for :meth:`expected_purchases_new`."""
        return self.expected_purchases_new(t)


def _check_rfm_rows(owner: str, x: np.ndarray, rec: np.ndarray, T: np.ndarray) -> None:
    """A ModelError naming how many rows break the RFM summary's rules, and which."""
    finite = np.isfinite(x) & np.isfinite(rec) & np.isfinite(T)
    _raise_bad_rows(
        owner,
        x.shape[0],
        [
            ("have a missing or infinite frequency, recency or T", ~finite),
            ("have a negative frequency, recency or T", finite & ((x < 0) | (rec < 0) | (T < 0))),
            ("have a non-integer frequency", finite & (x != np.round(x))),
            ("have recency > T", finite & (rec > T)),
            (
                "have frequency 0 but recency > 0 (recency is the time from the first to the last purchase, "
                "not the time since the last purchase)",
                finite & (x == 0) & (rec > 0),
            ),
        ],
        _SUMMARY_HINT,
    )
