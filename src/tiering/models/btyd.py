"""BTYD estimators (BG/NBD, Pareto/NBD, Gamma-Gamma) with the scikit-learn contract, and discounted CLV.

The likelihoods, penalizers and predictions are those of lifetimes 0.11.3, re-implemented:

- fits collapse identical rows into weights and evaluate a vectorised likelihood (with analytic
  gradients for BG/NBD and Gamma-Gamma): at 1M customers BG/NBD fits ~15x faster than lifetimes;
- a failed optimisation is retried (tol 1e-6, then Nelder-Mead, then a small penalizer), every try
  is recorded in ``fit_report_``, and a fit that never converges raises ModelError;
- BG/NBD conditional expected purchases is finite where a + b + x - 1 < 0 (lifetimes gives NaN);
- P(no purchase in (T, T + t]) is given for both transaction models (exact for Pareto/NBD);
- fitted objects hold parameters and a small report only (a few KB pickled);
- two fallbacks for data these models cannot be fitted on (tiering.train picks them and says so):
  ``PooledNBDModel`` (purchases without dropout, pooled closed-form rate) and ``MeanSpendModel``
  (one mean order value).

Every ``fit`` and prediction takes either an RFM DataFrame (pandas, or anything with ``to_pandas``:
polars, pyarrow) with columns ``frequency``, ``recency``, ``T`` (and ``monetary_value`` for the
spend models), as lifetimes' summary_data_from_transaction_data and tiering's feature frame name
them, or the columns as arrays, as lifetimes takes them::

    bg = BetaGeoModel().fit(rfm)                       # or .fit(rfm["frequency"], rfm["recency"], rfm["T"])
    rfm["p_alive"] = bg.conditional_probability_alive(rfm)   # a Series on rfm's index
    bg.summary                                          # coef, se(coef), 95% bounds; .attrs["log_likelihood"]

Predictions on a DataFrame come back as a Series on its index, on arrays as an array. lifetimes'
method names (conditional_expected_number_of_purchases_up_to_time, conditional_probability_alive,
expected_number_of_purchases_up_to_time; conditional_expected_average_profit and
customer_lifetime_value on the spend models, with lifetimes' units: ``time`` in months, a monthly
``discount_rate``) call the short ones (expected_purchases, p_alive, expected_purchases_new,
expected_spend, discounted_clv). ``summary``'s standard errors come from the inverse Hessian of the
objective minimised (mean negative log-likelihood plus penalty; numerical, in log-parameters, then
the delta method), as lifetimes computes them; they are computed at fit time, so the model keeps no
data.

Inputs follow lifetimes' summary semantics: ``frequency`` = repeat purchases (periods with a
purchase, less one; an integer), ``recency`` = time from the first to the last purchase (0 when
frequency is 0), ``T`` = time from the first purchase to the end of observation. recency, T and
the prediction horizon ``t`` share one time unit (days or weeks), the same at fit and predict
time; the rate parameters (alpha, beta) are per that unit. ``discounted_clv`` takes its horizon
in days and converts it with ``time_unit_days``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.optimize import minimize
from scipy.special import digamma, expit, gammaln, hyp2f1
from sklearn.base import BaseEstimator

from tiering.exceptions import ModelError
from tiering.models import check_fitted

__all__ = ["BetaGeoModel", "ParetoNBDModel", "GammaGammaModel", "PooledNBDModel", "MeanSpendModel", "btyd_scores",
           "discounted_clv"]

# Penalizers tried, in order, after the unpenalised tries failed (only those above the user's own).
_RETRY_PENALIZERS = (1e-3, 1e-2)
_SUMMARY_HINT = (
    "Expected lifetimes' summary semantics: frequency = repeat purchases (an integer >= 0), "
    "recency = time from the first to the last purchase (0 when frequency is 0), T = time from the "
    "first purchase to the end of observation, recency <= T, all in one time unit."
)


# --------------------------------------------------------------------------- helpers


def _as_float(name: str, value: ArrayLike) -> np.ndarray:
    try:
        if hasattr(value, "to_numpy"):  # pandas: nullable dtypes' NA becomes NaN
            return np.asarray(value.to_numpy(dtype=float, na_value=np.nan), dtype=float)
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{name} must be numeric; could not convert it to float ({exc}).") from exc


def _columns(owner: str, **named: ArrayLike) -> list[np.ndarray]:
    """1-D float arrays of equal, non-zero length."""
    cols = [_as_float(k, v).reshape(-1) if np.ndim(v) == 0 else _as_float(k, v) for k, v in named.items()]
    shapes = {k: c.shape for k, c in zip(named, cols)}
    if any(len(s) != 1 for s in shapes.values()) or len({s[0] for s in shapes.values()}) != 1:
        raise ModelError(f"{owner} needs 1-D inputs of equal length; got shapes {shapes}.")
    if cols[0].shape[0] == 0:
        raise ModelError(f"{owner} got no rows.")
    return cols


def _raise_bad_rows(owner: str, n: int, problems: list[tuple[str, np.ndarray]], hint: str) -> None:
    found = [f"{int(bad.sum()):,} of {n:,} rows {what}" for what, bad in problems if bad.any()]
    if found:
        raise ModelError(f"{owner} got invalid input: {'; '.join(found)}. {hint}")


def _weights(owner: str, sample_weight: ArrayLike | None, n: int) -> np.ndarray:
    if sample_weight is None:
        return np.ones(n)
    (w,) = _columns(owner, sample_weight=sample_weight)
    if w.shape[0] != n:
        raise ModelError(f"{owner}: sample_weight has {w.shape[0]:,} rows, the data {n:,}.")
    _raise_bad_rows(owner, n, [("have a missing, infinite or negative sample_weight", ~(w >= 0) | ~np.isfinite(w))],
                    "sample_weight counts customers per row.")
    if w.sum() <= 0:
        raise ModelError(f"{owner}: sample_weight sums to 0; nothing to fit.")
    return w


def _collapse(*cols: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Unique rows of the columns: (unique columns, counts, inverse index). Sort-based, O(n log n)."""
    n = cols[0].shape[0]
    spans = [float(c.max()) + 1.0 if n and c.min() >= 0 and np.array_equal(c, np.round(c)) else math.inf for c in cols]
    if math.prod(spans) < 2.0**62:  # small non-negative integers (days, counts): one int64 key sorts fastest
        key = np.zeros(n, dtype=np.int64)
        for c, span in zip(cols, spans):
            key = key * int(span) + c.astype(np.int64)
        unique, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
        digits = []
        for span in spans[::-1]:
            unique, digit = np.divmod(unique, int(span))
            digits.append(digit.astype(float))
        return digits[::-1], counts, inverse
    order = np.lexsort(cols[::-1])
    s = [c[order] for c in cols]
    new = np.empty(n, dtype=bool)
    new[0] = True
    diff = s[0][1:] != s[0][:-1]
    for c in s[1:]:
        diff |= c[1:] != c[:-1]
    new[1:] = diff
    starts = np.flatnonzero(new)
    inverse = np.empty(n, dtype=np.intp)
    inverse[order] = np.cumsum(new) - 1
    return [c[starts] for c in s], np.diff(np.append(starts, n)), inverse


def _broadcast(*values: ArrayLike) -> tuple[np.ndarray, ...]:
    return np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in values))


_TRANSACTION_COLUMNS = ("frequency", "recency", "T")
_SPEND_COLUMNS = ("frequency", "monetary_value")


def _inputs(owner: str, names: tuple[str, ...], first: Any, *rest: Any) -> tuple[list[Any], pd.Index | None]:
    """The columns ``names`` and the frame's index from an RFM DataFrame passed as ``first`` (``rest``
    all None), or ``[first, *rest]`` and None when they are arrays."""
    if hasattr(first, "columns") and not isinstance(first, np.ndarray):
        frame = first if isinstance(first, pd.DataFrame) else first.to_pandas() if hasattr(first, "to_pandas") else None
        if frame is None:
            raise ModelError(f"{owner} takes a pandas DataFrame (or one with to_pandas()); got {type(first).__name__}.")
        if any(r is not None for r in rest):
            raise ModelError(f"{owner}: pass either an RFM DataFrame or the columns {list(names)} as arrays, not both.")
        missing = [c for c in names if c not in frame.columns]
        if missing:
            raise ModelError(f"{owner} needs the DataFrame columns {list(names)}; it lacks {missing} (got "
                             f"{[str(c) for c in frame.columns[:12]]}). Rename them, or pass the columns as arrays.")
        return [frame[c] for c in names], frame.index
    if any(r is None for r in rest):
        raise ModelError(f"{owner} takes an RFM DataFrame with columns {list(names)}, or those columns as arrays "
                         f"({', '.join(names)}); got {1 + sum(r is not None for r in rest)} of {len(names)}.")
    return [first, *rest], None


def _output(values: np.ndarray, index: pd.Index | None) -> np.ndarray | pd.Series:
    """A prediction on a DataFrame as a Series on its index; otherwise the array."""
    if index is not None and np.shape(values) == (len(index),):
        return pd.Series(values, index=index)
    return values


def _hessian(fun: Callable[[np.ndarray], Any], x: np.ndarray, gradient: bool, h: float = 1e-4) -> np.ndarray:
    """Hessian of ``fun`` at ``x`` by central differences: of the gradient when ``fun`` returns
    (value, gradient), of values otherwise (step 10 h there)."""
    k = x.shape[0]
    H = np.empty((k, k))
    if gradient:
        for i in range(k):
            e = np.zeros(k)
            e[i] = h
            H[:, i] = (np.asarray(fun(x + e)[1]) - np.asarray(fun(x - e)[1])) / (2 * h)
        return 0.5 * (H + H.T)
    h *= 10
    f0 = float(fun(x))
    steps = np.eye(k) * h
    for i in range(k):
        H[i, i] = (float(fun(x + steps[i])) - 2 * f0 + float(fun(x - steps[i]))) / h**2
        for j in range(i):
            a, b = steps[i], steps[j]
            H[i, j] = H[j, i] = (float(fun(x + a + b)) - float(fun(x + a - b)) - float(fun(x - a + b))
                                 + float(fun(x - a - b))) / (4 * h**2)
    return H


def _standard_errors(params: dict[str, float], hess_log: np.ndarray, n: float) -> tuple[np.ndarray, dict[str, float]]:
    """(covariance of the parameters, their standard errors) from the Hessian of the mean objective in
    log-parameters over ``n`` customers: cov(log p) = H^-1 / n, then the delta method (d p = p d log p).
    A Hessian that is not positive definite (optimum on the boundary) gives NaN standard errors."""
    p = np.array(list(params.values()))
    try:
        cov_log = np.linalg.inv(hess_log) / n
    except np.linalg.LinAlgError:
        cov_log = np.full_like(hess_log, np.nan)
    cov = cov_log * np.outer(p, p)
    var = np.diag(cov)
    se = np.where(np.isfinite(var) & (var > 0), np.sqrt(np.abs(var)), np.nan)
    return cov, {k: float(v) for k, v in zip(params, se)}


class _Summary:
    """``summary``: lifetimes' table of the fitted parameters, from ``params_``, ``standard_errors_`` and
    ``log_likelihood_``."""

    params_: dict[str, float]  # set by fit

    @property
    def summary(self) -> pd.DataFrame:
        """The fitted parameters: coef, se(coef), lower and upper 95% bounds (coef -+ 1.96 se), one row per
        parameter (index "parameter"). ``.attrs`` holds log_likelihood (NaN where the fit is not a maximum
        likelihood fit), n_customers and the penalizer used."""
        check_fitted(self, "params_")
        coef = pd.Series(self.params_, dtype=float)
        se = pd.Series(getattr(self, "standard_errors_", {}), dtype=float).reindex(coef.index)
        out = pd.DataFrame({"coef": coef, "se(coef)": se, "lower 95% bound": coef - 1.96 * se,
                            "upper 95% bound": coef + 1.96 * se})
        out.index.name = "parameter"
        out.attrs = {"log_likelihood": float(getattr(self, "log_likelihood_", math.nan)),
                     "n_customers": getattr(self, "n_customers_", None),
                     "penalizer": getattr(self, "fit_report_", {}).get("penalizer")}
        return out


# --------------------------------------------------------------------------- shared fitting


class _BTYDModel(_Summary, BaseEstimator):
    """Fitting machinery shared by the three models: objective on log-parameters, retries, report."""

    _param_names: tuple[str, ...] = ()
    _unit_free: tuple[str, ...] = ()  # parameters checked for sitting on the boundary (not in money units)
    _x0: float = 0.1  # initial log-parameters, as lifetimes
    _fail_hint = "Check the inputs' units and semantics, or fit with a larger penalizer."

    def __init__(self, penalizer: float = 0.0) -> None:
        self.penalizer = penalizer

    def _params(self) -> list[float]:
        check_fitted(self, "params_")
        return [float(self.params_[k]) for k in self._param_names]

    def _invalid(self, params: dict[str, float]) -> str | None:
        """Why fitted parameters are unusable, or None."""
        bad = [k for k, v in params.items() if not (math.isfinite(v) and v > 0)]
        return f"parameters not finite and positive: {bad}" if bad else None

    def _schedule(self) -> list[tuple[str, float, float]]:
        try:
            pen = float(self.penalizer)
        except (TypeError, ValueError):
            pen = math.nan
        if not (math.isfinite(pen) and pen >= 0):
            raise ModelError(f"{type(self).__name__}: penalizer must be a finite number >= 0; got {self.penalizer!r}.")
        plan = [("BFGS", 1e-7, pen), ("BFGS", 1e-6, pen), ("Nelder-Mead", 1e-6, pen)]
        return plan + [("BFGS", 1e-6, p) for p in _RETRY_PENALIZERS if p > pen]

    def _optimise(
        self,
        objective: Callable[[np.ndarray, float], Any],
        jac: bool,
        to_params: Callable[[np.ndarray], dict[str, float]],
    ) -> tuple[dict[str, float], float, dict[str, Any], np.ndarray]:
        """Minimise ``objective(log_params, penalizer)`` through the retry schedule.

        Returns (parameters, objective value, fit report, Hessian of the objective in log-parameters at
        the optimum); raises ModelError when every try fails.
        """
        from threadpoolctl import threadpool_limits

        x0 = np.full(len(self._param_names), self._x0)
        attempts: list[dict[str, Any]] = []
        # One BLAS thread: waking a pool for each small dot product costs more than it saves, badly so
        # when the other cores are busy.
        with threadpool_limits(limits=1, user_api="blas"):
            for method, tol, pen in self._schedule():
                if method == "Nelder-Mead":
                    fun = (lambda th, p=pen: objective(th, p)[0]) if jac else (lambda th, p=pen: objective(th, p))
                    res = minimize(fun, x0, method=method, tol=tol, options={"maxiter": 2000, "maxfev": 4000})
                else:
                    res = minimize(objective, x0, args=(pen,), jac=jac, method=method, tol=tol)
                params = to_params(res.x)
                problem = None if res.success else str(res.message)
                if problem is None and not np.isfinite(res.fun):
                    problem = f"non-finite objective {res.fun}"
                problem = problem or self._invalid(params)
                attempts.append({
                    "method": method, "tol": tol, "penalizer": pen, "success": bool(res.success),
                    "accepted": problem is None, "message": str(res.message) if problem is None else problem,
                    "nit": int(getattr(res, "nit", 0)), "nfev": int(getattr(res, "nfev", 0)),
                    "objective": float(res.fun), "params": params,
                })
                if problem is None:
                    warnings = []
                    if pen != float(self.penalizer):
                        warnings.append(f"fitted with penalizer {pen} instead of {self.penalizer}: the tries "
                                        "without it failed; parameters are shrunk towards 0")
                    warnings += [f"{k}={params[k]:.3g} is near the boundary of the parameter space (0 or infinity); "
                                 "the likelihood is flat there" for k, th in zip(self._param_names, res.x)
                                 if k in self._unit_free and abs(th) > 12]  # optimiser's scale: time rescaled
                    report = {"converged": True, "n_tries": len(attempts), "method": method, "tol": tol,
                              "penalizer": pen, "message": attempts[-1]["message"], "warnings": warnings,
                              "attempts": attempts}
                    def at_pen(th: np.ndarray, p: float = pen) -> Any:
                        return objective(th, p)

                    hess = _hessian(at_pen, res.x, jac)
                    return params, float(res.fun), report, hess
        tries = "; ".join(f"{a['method']} tol={a['tol']:g} penalizer={a['penalizer']:g}: {a['message']}"
                          for a in attempts)
        raise ModelError(
            f"{type(self).__name__}.fit did not converge in {len(attempts)} tries ({tries}). {self._fail_hint}"
        )


class _TransactionModel(_BTYDModel):
    """BG/NBD and Pareto/NBD: fit on (frequency, recency, T); predictions share one structure.

    E[purchases in (T, T+t]] = P(alive) * E[purchases in (T, T+t] | alive] and
    P(no purchase in (T, T+t]) = 1 - P(alive) * P(at least one purchase | alive).
    """

    _time_params: tuple[str, ...] = ()  # parameters that are rates per time unit
    _penalty_per_customer = True  # penalizer on the mean (True) or the total (False) log-likelihood

    def fit(
        self, frequency: ArrayLike | pd.DataFrame, recency: ArrayLike | None = None, T: ArrayLike | None = None,
        sample_weight: ArrayLike | None = None,
    ) -> _TransactionModel:
        """Fit by maximum likelihood on an RFM DataFrame or (frequency, recency, T) arrays;
        ``sample_weight`` counts customers per row."""
        owner = f"{type(self).__name__}.fit"
        (frequency, recency, T), _ = _inputs(owner, _TRANSACTION_COLUMNS, frequency, recency, T)
        x, rec, T = _columns(owner, frequency=frequency, recency=recency, T=T)
        n = x.shape[0]
        finite = np.isfinite(x) & np.isfinite(rec) & np.isfinite(T)
        _raise_bad_rows(owner, n, [
            ("have a missing or infinite frequency, recency or T", ~finite),
            ("have a negative frequency, recency or T", finite & ((x < 0) | (rec < 0) | (T < 0))),
            ("have a non-integer frequency", finite & (x != np.round(x))),
            ("have recency > T", finite & (rec > T)),
            ("have frequency 0 but recency > 0 (recency is the time from the first to the last purchase, "
             "not the time since the last purchase)", finite & (x == 0) & (rec > 0)),
        ], _SUMMARY_HINT)
        w = _weights(owner, sample_weight, n)
        keep = w > 0
        if not (x[keep] > 0).any() or T[keep].max() <= 0:
            raise ModelError(f"{owner}: no customer has a repeat purchase (every frequency is 0) or every T is 0; "
                             "the purchase and dropout rates cannot be estimated. Use a longer history.")
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

    def p_alive(self, frequency: ArrayLike | pd.DataFrame, recency: ArrayLike | None = None,
                T: ArrayLike | None = None) -> np.ndarray | pd.Series:
        """P(alive at T) given an RFM DataFrame or (frequency, recency, T)."""
        cols, index = self._rfm("p_alive", frequency, recency, T)
        return _output(self._p_alive(*_broadcast(*cols)), index)

    def expected_purchases(self, t: ArrayLike, frequency: ArrayLike | pd.DataFrame, recency: ArrayLike | None = None,
                           T: ArrayLike | None = None) -> np.ndarray | pd.Series:
        """Conditional expected number of purchases in (T, T + t] given an RFM DataFrame or (frequency, recency, T)."""
        cols, index = self._rfm("expected_purchases", frequency, recency, T)
        t, x, rec, T = _broadcast(t, *cols)
        return _output(self._p_alive(x, rec, T) * self._given_alive(t, x, T), index)

    def p_no_purchase(self, t: ArrayLike, frequency: ArrayLike | pd.DataFrame, recency: ArrayLike | None = None,
                      T: ArrayLike | None = None) -> np.ndarray | pd.Series:
        """P(no purchase in (T, T + t]) given an RFM DataFrame or (frequency, recency, T)."""
        cols, index = self._rfm("p_no_purchase", frequency, recency, T)
        t, x, rec, T = _broadcast(t, *cols)
        return _output(1.0 - self._p_alive(x, rec, T) * self._buy_given_alive(t, x, T), index)

    def expected_purchases_new(self, t: ArrayLike) -> np.ndarray:
        """Unconditional E[X(t)]: expected repeat purchases in t time units of a new customer."""
        t = np.asarray(t, dtype=float)
        return self._given_alive(t, np.zeros_like(t), np.zeros_like(t))

    # lifetimes' names (BetaGeoFitter, ParetoNBDFitter): the same methods
    def conditional_probability_alive(self, frequency: ArrayLike | pd.DataFrame, recency: ArrayLike | None = None,
                                      T: ArrayLike | None = None) -> np.ndarray | pd.Series:
        """lifetimes' name for :meth:`p_alive`."""
        return self.p_alive(frequency, recency, T)

    def conditional_expected_number_of_purchases_up_to_time(
        self, t: ArrayLike, frequency: ArrayLike | pd.DataFrame, recency: ArrayLike | None = None,
        T: ArrayLike | None = None,
    ) -> np.ndarray | pd.Series:
        """lifetimes' name for :meth:`expected_purchases`."""
        return self.expected_purchases(t, frequency, recency, T)

    def expected_number_of_purchases_up_to_time(self, t: ArrayLike) -> np.ndarray:
        """lifetimes' name for :meth:`expected_purchases_new`."""
        return self.expected_purchases_new(t)


# --------------------------------------------------------------------------- BG/NBD


def _bg_given_alive(
    r: float, alpha: float, a: float, b: float, t: np.ndarray, x: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """Numerator of eq. (10), Fader, Hardie and Lee (2005), evaluated without a log so it is finite
    where a + b + x - 1 < 0 and the hypergeometric term is negative (lifetimes returns NaN there).
    At a = 1 it is 0/0 (lifetimes returns inf): the mean of a = 1 -+ 1e-6, exact to ~1e-10 relative."""
    if abs(a - 1.0) < 5e-7:
        lo, hi = (_bg_given_alive(r, alpha, a1, b, t, x, T) for a1 in (1.0 - 1e-6, 1.0 + 1e-6))
        return 0.5 * (lo + hi)
    t, x, T = np.broadcast_arrays(t, x, T)
    c = np.atleast_1d(a + b + x - 1.0)
    z = np.atleast_1d(t / (alpha + T + t))
    with np.errstate(all="ignore"):
        term = hyp2f1(r + x, b + x, c, z) * (1.0 - z) ** (r + x)
        bad = ~np.isfinite(term)
        if bad.any():  # Euler: (1-z)^(r+x) 2F1(r+x, b+x; c; z) = (1-z)^(a-1) 2F1(c-r-x, a-1; c; z)
            term[bad] = (1.0 - z[bad]) ** (a - 1.0) * hyp2f1(a + b - 1.0 - r, a - 1.0, c[bad], z[bad])
    return (c / (a - 1.0) * (1.0 - term)).reshape(x.shape)


class BetaGeoModel(_TransactionModel):
    """BG/NBD (Fader, Hardie and Lee 2005): Poisson purchases at a gamma-distributed rate, dropout
    with a beta-distributed probability after each purchase. ``params_``: r, alpha, a, b.

    ``penalizer``: L2 penalty on the parameters (alpha in time rescaled so that max T = 1), added to
    the mean negative log-likelihood, exactly as lifetimes' BetaGeoFitter(penalizer_coef).
    """

    _param_names = _unit_free = ("r", "alpha", "a", "b")
    _time_params = ("alpha",)
    _analytic_gradient = True

    def fit(
        self, frequency: ArrayLike | pd.DataFrame, recency: ArrayLike | None = None, T: ArrayLike | None = None,
        sample_weight: ArrayLike | None = None,
    ) -> BetaGeoModel:
        """Fit by maximum likelihood on an RFM DataFrame (columns frequency, recency, T) or on
        (frequency, recency, T) arrays; ``sample_weight`` counts customers per row."""
        return super().fit(frequency, recency, T, sample_weight)

    def _prepare(self, x: np.ndarray, rec: np.ndarray, T: np.ndarray, w: np.ndarray) -> dict[str, Any]:
        ux, ix = np.unique(x, return_inverse=True)
        return {"x": x, "rec": rec, "T": T, "w": w, "wx": w * x, "pos": x > 0, "ux": ux, "ix": ix,
                "w_ux": np.bincount(ix, weights=w)}

    @staticmethod
    def _terms(p: Any, d: dict[str, Any]) -> tuple[np.ndarray, ...]:
        """Per row: the log-likelihood less its terms in x alone, P(dropped out at the last purchase | data),
        log(alpha + T) and log((alpha + T) / (alpha + recency))."""
        r, alpha, a, b = p
        x, lT = d["x"], np.log(alpha + d["T"])
        dl = lT - np.log(alpha + d["rec"])
        log_ab = np.log(a / (b + np.maximum(d["ux"], 1) - 1))[d["ix"]]
        # log-odds of 'dropped out right after the last purchase' against 'alive at T' (-inf where x = 0)
        D = np.where(d["pos"], log_ab + (r + x) * dl, -np.inf)
        e = np.exp(-np.abs(D))
        row = -(r + x) * lT + np.maximum(D, 0.0) + np.log(1.0 + e)  # log(e^A3 + e^A4), A3 = -(r+x)lT
        return row, np.where(D > 0, 1.0, e) / (1.0 + e), lT, dl

    def _loglik(self, p: Any, d: dict[str, Any]) -> np.ndarray:
        r, alpha, a, b = p
        x = d["x"]
        A12 = (gammaln(r + x) - gammaln(r) + r * np.log(alpha)
               + gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x))
        return A12 + self._terms(p, d)[0]

    def _objective(self, theta: np.ndarray, pen: float, d: dict[str, Any]) -> tuple[float, np.ndarray]:
        """Mean negative log-likelihood plus penalty, and its gradient in log-parameters (analytic)."""
        p = np.exp(theta)
        r, alpha, a, b = p
        w, wx, w_ux, ux = d["w"], d["wx"], d["w_ux"], d["ux"]
        W = w.sum()
        row, dropped, lT, dl = self._terms(p, d)
        w_dropped = w * dropped
        inv_T, inv_rec = 1.0 / (alpha + d["T"]), 1.0 / (alpha + d["rec"])
        dg_ab, dg_abx = digamma(a + b), digamma(a + b + ux)
        ll = (w_ux @ (gammaln(r + ux) + gammaln(b + ux) - gammaln(a + b + ux))
              + W * (r * math.log(alpha) - gammaln(r) + gammaln(a + b) - gammaln(b)) + w @ row)
        grad = np.array([
            w_ux @ (digamma(r + ux) - digamma(r)) + W * math.log(alpha) - w @ lT + w_dropped @ dl,
            W * r / alpha - (r * w + wx) @ inv_T - (r * w_dropped + w_dropped * d["x"]) @ (inv_rec - inv_T),
            w_ux @ (dg_ab - dg_abx) + w_dropped.sum() / a,
            w_ux @ (dg_ab + digamma(b + ux) - digamma(b) - dg_abx)
            - np.bincount(d["ix"], weights=w_dropped, minlength=ux.shape[0]) @ (1.0 / (b + np.maximum(ux, 1) - 1)),
        ])
        f = -ll / W + pen * float(p @ p)
        if not np.isfinite(f):
            return np.inf, np.zeros(4)
        return f, -grad * p / W + 2.0 * pen * p**2

    def _p_alive(self, x: np.ndarray, rec: np.ndarray, T: np.ndarray) -> np.ndarray:
        """P(alive at T) given (frequency, recency, T); 1 for frequency 0."""
        r, alpha, a, b = self._params()
        with np.errstate(divide="ignore", invalid="ignore"):
            log_odds_dead = (r + x) * np.log((alpha + T) / (alpha + rec)) + np.log(a / (b + np.maximum(x, 1) - 1))
        return np.where(x > 0, expit(-log_odds_dead), 1.0)

    def _given_alive(self, t: ArrayLike, x: ArrayLike, T: ArrayLike) -> np.ndarray:
        r, alpha, a, b = self._params()
        return _bg_given_alive(r, alpha, a, b, *_broadcast(t, x, T))

    def _buy_given_alive(self, t: ArrayLike, x: ArrayLike, T: ArrayLike) -> np.ndarray:
        # Alive at T, dropout only right after a purchase: no purchase iff Poisson(lambda t) = 0,
        # lambda | alive ~ Gamma(r + x, alpha + T).
        r, alpha, _, _ = self._params()
        t, x, T = _broadcast(t, x, T)
        return -np.expm1((r + x) * np.log1p(-t / (alpha + T + t)))


# --------------------------------------------------------------------------- Pareto/NBD


def _pnbd_log_term(p: Any, x: np.ndarray, u: np.ndarray) -> np.ndarray:
    """log[2F1(r+s+x, t; r+s+x+1; |alpha-beta| / (max+u)) / (max+u)^(r+s+x)], u = recency or T: the two
    pieces of A0 (Fader-Hardie note 009, eqs. 19-20)."""
    r, alpha, s, beta = p
    hi, t = (beta, r + x) if alpha < beta else (alpha, s + 1.0)
    rsx = r + s + x
    return np.log(hyp2f1(rsx, t, rsx + 1.0, abs(alpha - beta) / (hi + u))) - rsx * np.log(hi + u)


def _log_A0(l_rec: np.ndarray, l_T: np.ndarray) -> np.ndarray:
    d = l_T - l_rec  # log A0 = log(exp(l_rec) - exp(l_T)); A0 = 0 when recency = T
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d < 0, l_rec + np.log(-np.expm1(np.minimum(d, 0.0))), -np.inf)


def _gamma_ratio_mean(R: np.ndarray, A: np.ndarray, S: float, B: np.ndarray) -> np.ndarray:
    """E[lambda / (lambda + mu)] for independent lambda ~ Gamma(R, rate A), mu ~ Gamma(S, rate B).

    With U ~ Beta(R, S): = (B/A) R/(R+S) 2F1(1, R+1; R+S+1; 1 - B/A) when A >= B (argument in [0, 1)),
    else 1 - the same with the roles swapped.
    """
    R, A, B = np.broadcast_arrays(R, A, B)
    S_ = np.full_like(R, S)
    swap = A < B
    R1, S1 = np.where(swap, S_, R), np.where(swap, R, S_)
    A1, B1 = np.where(swap, B, A), np.where(swap, A, B)
    h = B1 / A1 * R1 / (R1 + S1) * hyp2f1(1.0, R1 + 1.0, R1 + S1 + 1.0, 1.0 - B1 / A1)
    return np.where(swap, 1.0 - h, h)


class ParetoNBDModel(_TransactionModel):
    """Pareto/NBD (Schmittlein, Morrison and Colombo 1987): Poisson purchases at a gamma-distributed
    rate, exponential lifetimes at a gamma-distributed rate. ``params_``: r, alpha, s, beta.

    ``penalizer``: as lifetimes' ParetoNBDFitter(penalizer_coef), an L2 penalty on the parameters
    (alpha, beta in time rescaled so that max T = 1) added to the *total* negative log-likelihood
    (BetaGeoModel and GammaGammaModel add it to the mean), so the same value shrinks far less.

    ``p_no_purchase`` is exact for Pareto/NBD: a customer alive at T can die inside the window, so
    P(no purchase | alive, lambda, mu) = [mu + lambda e^{-(lambda+mu) t}] / (lambda + mu), averaged over
    the gamma posteriors; BG/NBD's 1 - P(alive)(1 - ((alpha+T)/(alpha+T+t))^(r+x)) would overstate buying.
    """

    _param_names = _unit_free = ("r", "alpha", "s", "beta")
    _time_params = ("alpha", "beta")
    _penalty_per_customer = False
    _x0 = 0.0  # lifetimes starts Pareto/NBD near 1 on the natural scale

    def fit(
        self, frequency: ArrayLike | pd.DataFrame, recency: ArrayLike | None = None, T: ArrayLike | None = None,
        sample_weight: ArrayLike | None = None,
    ) -> ParetoNBDModel:
        """Fit by maximum likelihood on an RFM DataFrame (columns frequency, recency, T) or on
        (frequency, recency, T) arrays; ``sample_weight`` counts customers per row."""
        return super().fit(frequency, recency, T, sample_weight)

    def _prepare(self, x: np.ndarray, rec: np.ndarray, T: np.ndarray, w: np.ndarray) -> dict[str, Any]:
        # The two hypergeometric pieces depend on (x, recency) and (x, T) only: evaluate on unique pairs.
        (xr, ur), _, ir = _collapse(x, rec)
        (xt, ut), _, it = _collapse(x, T)
        return {"x": x, "rec": rec, "T": T, "w": w, "pairs": (xr, ur, ir, xt, ut, it)}

    @staticmethod
    def _split(p: Any, x: np.ndarray, rec: np.ndarray, T: np.ndarray, pairs: tuple | None = None):
        """(log-likelihood of 'alive at T', log of the 'died before T' part) per row, in lifetimes' form."""
        r, alpha, s, beta = p
        if pairs is None:
            l_rec, l_T = _pnbd_log_term(p, x, rec), _pnbd_log_term(p, x, T)
        else:
            xr, ur, ir, xt, ut, it = pairs
            l_rec, l_T = _pnbd_log_term(p, xr, ur)[ir], _pnbd_log_term(p, xt, ut)[it]
        alive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
        dead = math.log(s) + _log_A0(l_rec, l_T) - np.log(r + s + x)
        return alive, dead

    def _loglik(self, p: Any, d: dict[str, Any]) -> np.ndarray:
        r, alpha, s, beta = p
        x = d["x"]
        alive, dead = self._split(p, x, d["rec"], d["T"], d.get("pairs"))
        return gammaln(r + x) - gammaln(r) + r * math.log(alpha) + s * math.log(beta) + np.logaddexp(alive, dead)

    def _p_alive(self, x: np.ndarray, rec: np.ndarray, T: np.ndarray) -> np.ndarray:
        """P(alive at T) given (frequency, recency, T) (Fader-Hardie note 009, as lifetimes)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            alive, dead = self._split(self._params(), x, rec, T)
            return expit(alive - dead)

    def _given_alive(self, t: ArrayLike, x: ArrayLike, T: ArrayLike) -> np.ndarray:
        # (r+x)/(alpha+T) purchases per unit time while alive, expected lifetime within the window
        # (beta+T)/(s-1) [1 - ((beta+T)/(beta+T+t))^(s-1)]; the limit -(beta+T) log(...) at s = 1.
        r, alpha, s, beta = self._params()
        t, x, T = _broadcast(t, x, T)
        lq = -np.log1p(t / (beta + T))
        life = -np.expm1((s - 1.0) * lq) / (s - 1.0) if s != 1.0 else -lq
        return (r + x) * (beta + T) / (alpha + T) * life

    def _buy_given_alive(self, t: ArrayLike, x: ArrayLike, T: ArrayLike) -> np.ndarray:
        # Given alive: lambda ~ Gamma(r+x, alpha+T), mu ~ Gamma(s, beta+T) independent; remaining
        # lifetime tau ~ Exp(mu). P(>= 1 purchase | lambda, mu) = lambda/(lambda+mu) (1 - e^{-(lambda+mu) t}).
        # Averaging, the e^{-(.) t} factor tilts both gammas' rates by t:
        # P = h(alpha+T, beta+T) - ((alpha+T)/(alpha+T+t))^(r+x) ((beta+T)/(beta+T+t))^s h(alpha+T+t, beta+T+t).
        r, alpha, s, beta = self._params()
        t, x, T = _broadcast(t, x, T)
        R, A, B = r + x, alpha + T, beta + T
        tilt = np.exp(-R * np.log1p(t / A) - s * np.log1p(t / B))
        return _gamma_ratio_mean(R, A, s, B) - tilt * _gamma_ratio_mean(R, A + t, s, B + t)


# --------------------------------------------------------------------------- Gamma-Gamma


class _SpendModel:
    """Per-order spend predictions on an RFM DataFrame or (frequency, monetary_value) arrays, and
    lifetimes' names for them."""

    def _expected_spend(self, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def expected_spend(self, frequency: ArrayLike | pd.DataFrame,
                       monetary_value: ArrayLike | None = None) -> np.ndarray | pd.Series:
        """Expected mean spend per purchase given an RFM DataFrame (columns frequency, monetary_value)
        or (frequency, monetary_value) arrays."""
        (x, m), index = _inputs(f"{type(self).__name__}.expected_spend", _SPEND_COLUMNS, frequency, monetary_value)
        return _output(self._expected_spend(*_broadcast(x, m)), index)

    def conditional_expected_average_profit(self, frequency: ArrayLike | pd.DataFrame,
                                            monetary_value: ArrayLike | None = None) -> np.ndarray | pd.Series:
        """lifetimes' name for :meth:`expected_spend`."""
        return self.expected_spend(frequency, monetary_value)

    def customer_lifetime_value(
        self, transaction_prediction_model: _TransactionModel, frequency: ArrayLike | pd.DataFrame,
        recency: ArrayLike | None = None, T: ArrayLike | None = None, monetary_value: ArrayLike | None = None,
        time: int = 12, discount_rate: float = 0.01, freq: str = "D",
    ) -> np.ndarray | pd.Series:
        """lifetimes' GammaGammaFitter.customer_lifetime_value, in its units: CLV over ``time`` months
        of 30 days, each month's value discounted at the monthly ``discount_rate``; ``freq`` is the
        data's time unit ("D", "W" (4.345 a month), "M", "H"). Computed by :func:`discounted_clv` with
        horizon_days = 30 time, step_days = 30, discount_rate_annual = (1 + discount_rate)^(365/30) - 1."""
        per_month = {"D": 30.0, "W": 4.345, "M": 1.0, "H": 720.0}
        if freq not in per_month:
            raise ModelError(f"customer_lifetime_value: freq must be one of {list(per_month)}; got {freq!r}.")
        if not (math.isfinite(discount_rate) and discount_rate > -1):
            raise ModelError(f"customer_lifetime_value: discount_rate (monthly) must be > -1; got {discount_rate!r}.")
        (x, rec, T, m), index = _inputs(f"{type(self).__name__}.customer_lifetime_value",
                                        (*_TRANSACTION_COLUMNS, "monetary_value"), frequency, recency, T, monetary_value)
        clv = discounted_clv(transaction_prediction_model, self, x, rec, T, m, horizon_days=30.0 * time,
                             discount_rate_annual=(1.0 + discount_rate) ** (365.0 / 30.0) - 1.0,
                             time_unit_days=30.0 / per_month[freq], step_days=30.0)
        return _output(clv, index)


class GammaGammaModel(_SpendModel, _BTYDModel):
    """Gamma-Gamma spend model (Fader, Hardie and Lee 2005, "RFM and CLV"; Fader-Hardie note 025).

    Fitted on repeat buyers only (frequency > 0 and monetary_value > 0): ``monetary_value`` is the
    mean value of a customer's repeat purchases. ``params_``: p, q, v; the population mean spend
    p v / (q - 1) exists only for q > 1, so a fit with q <= 1 is refused. ``penalizer``: L2 on the
    parameters added to the mean negative log-likelihood, as lifetimes' GammaGammaFitter.
    """

    _param_names = ("p", "q", "v")
    _unit_free = ("p", "q")
    _fail_hint = ("Check monetary_value (units, netted refunds, extreme values): with q <= 1 spend is too "
                  "heavy-tailed for a finite mean, and a penalizer shrinks q further.")

    def _invalid(self, params: dict[str, float]) -> str | None:
        problem = super()._invalid(params)
        if problem is None and params["q"] <= 1:
            problem = f"q = {params['q']:.4g} <= 1: the mean spend p*v/(q-1) is infinite"
        return problem

    def fit(
        self, frequency: ArrayLike | pd.DataFrame, monetary_value: ArrayLike | None = None,
        sample_weight: ArrayLike | None = None,
    ) -> GammaGammaModel:
        """Fit by maximum likelihood on the rows with frequency > 0 and monetary_value > 0, of an RFM
        DataFrame or of (frequency, monetary_value) arrays."""
        owner = f"{type(self).__name__}.fit"
        (frequency, monetary_value), _ = _inputs(owner, _SPEND_COLUMNS, frequency, monetary_value)
        x, m = _columns(owner, frequency=frequency, monetary_value=monetary_value)
        n = x.shape[0]
        fx = np.isfinite(x)
        _raise_bad_rows(owner, n, [
            ("have a missing or infinite frequency", ~fx),
            ("have a negative or non-integer frequency", fx & ((x < 0) | (x != np.round(x)))),
            ("have frequency > 0 but a missing or infinite monetary_value", fx & (x > 0) & ~np.isfinite(m)),
        ], "frequency counts repeat purchases; monetary_value is their mean value (ignored where frequency is 0).")
        w = _weights(owner, sample_weight, n)
        use = (x > 0) & (m > 0) & (w > 0)
        if use.sum() < 2:
            raise ModelError(f"{owner}: {int(use.sum())} rows have frequency > 0 and monetary_value > 0; the "
                             "Gamma-Gamma model needs repeat buyers with positive spend (at least 2 rows).")
        x, m, w = x[use], m[use], w[use]  # spend is continuous: collapsing identical rows would not pay
        ux, ix = np.unique(x, return_inverse=True)
        d = {"xm": x * m, "w": w, "wx": w * x, "ux": ux, "w_ux": np.bincount(ix, weights=w), "W": w.sum(),
             "Slm": w @ np.log(m), "Slxm": w @ np.log(x * m)}

        def objective(theta: np.ndarray, pen: float) -> tuple[float, np.ndarray]:
            p = np.exp(theta)
            ll, grad = self._loglik_grad(p, d)
            f = -ll / d["W"] + pen * float(p @ p)
            if not np.isfinite(f):
                return np.inf, np.zeros(3)
            return f, -grad * p / d["W"] + 2.0 * pen * p**2

        def to_params(theta: np.ndarray) -> dict[str, float]:
            with np.errstate(over="ignore"):
                return dict(zip(self._param_names, map(float, np.exp(theta))))

        with np.errstate(all="ignore"):
            params, _, report, hess = self._optimise(objective, True, to_params)
            self.log_likelihood_ = self._loglik_grad(np.array(list(params.values())), d)[0]
            self.covariance_, self.standard_errors_ = _standard_errors(params, hess, float(d["W"]))
        self.params_ = params
        self.n_customers_ = float(d["W"]) if sample_weight is not None else int(d["W"])
        self.fit_report_ = report | {"n_rows_used": int(use.sum())}
        return self

    @staticmethod
    def _loglik_grad(p: np.ndarray, d: dict[str, Any]) -> tuple[float, np.ndarray]:
        """Total log-likelihood (Fader-Hardie note 025, eq. 1a) and its gradient in (p, q, v).

        Terms in x alone are summed over unique x; with log(xm + v) = log(xm) + log1p(v / xm) the
        per-row work is one log1p, and no large sums cancel (BFGS needs an accurate objective)."""
        pp, q, v = p
        ux, w_ux, W, w, wx = d["ux"], d["w_ux"], d["W"], d["w"], d["wx"]
        l1 = np.log1p(v / d["xm"])
        wx_l1, w_l1 = wx @ l1, w @ l1
        inv = 1.0 / (d["xm"] + v)
        psi_pxq = digamma(pp * ux + q)
        ll = (w_ux @ (gammaln(pp * ux + q) - gammaln(pp * ux)) + W * (q * math.log(v) - gammaln(q))
              - pp * wx_l1 - d["Slm"] - q * (d["Slxm"] + w_l1))
        grad = np.array([
            w_ux @ (ux * (psi_pxq - digamma(pp * ux))) - wx_l1,
            w_ux @ psi_pxq - W * digamma(q) + W * math.log(v) - d["Slxm"] - w_l1,
            W * q / v - pp * (wx @ inv) - q * (w @ inv),
        ])
        return float(ll), grad

    def _expected_spend(self, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        """E[mean spend per purchase | frequency, monetary_value] (note 025, eq. 5); the population
        mean p v / (q - 1) where frequency is 0.

        A repeat buyer whose refunds net their repeat spend to zero or below lies outside the model
        (fitted on monetary_value > 0); their monetary_value counts as 0, so the estimate is the
        population mean shrunk by their evidence, never a negative spend."""
        p, q, v = self._params()
        m = np.maximum(m, 0.0)
        mean = p * v / (q - 1.0)
        with np.errstate(invalid="ignore"):
            weight = p * x / (p * x + q - 1.0)
            return np.where(x > 0, (1.0 - weight) * mean + weight * m, mean)


# --------------------------------------------------------------------------- fallbacks


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

    def fit(self, frequency: ArrayLike | pd.DataFrame, recency: ArrayLike | None = None, T: ArrayLike | None = None,
            sample_weight: ArrayLike | None = None) -> PooledNBDModel:
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


# --------------------------------------------------------------------------- CLV


def _check_clv_args(owner: str, horizon_days: float, discount_rate_annual: float, time_unit_days: float,
                    step_days: float) -> None:
    for name, value in (("horizon_days", horizon_days), ("step_days", step_days), ("time_unit_days", time_unit_days)):
        if not (math.isfinite(value) and value > 0):
            raise ModelError(f"{owner}: {name} must be a positive number; got {value!r}.")
    if not (math.isfinite(discount_rate_annual) and discount_rate_annual > -1):
        raise ModelError(f"{owner}: discount_rate_annual must be > -1 (e.g. 0.1 for 10%); got {discount_rate_annual!r}.")


def _discounted_steps(transaction_model: _TransactionModel, ux: np.ndarray, uT: np.ndarray, horizon_days: float,
                      discount_rate_annual: float, time_unit_days: float, step_days: float
                      ) -> tuple[np.ndarray, np.ndarray, float]:
    """Per distinct (x, T): the discounted expected purchases of an alive customer over the horizon's steps, the
    undiscounted expected purchases by the last step's end, and that end (in the models' time unit)."""
    n_steps = math.ceil(horizon_days / step_days - 1e-9)
    ends = np.minimum(np.arange(1, n_steps + 1) * step_days, horizon_days) / time_unit_days
    discount = (1.0 + discount_rate_annual) ** (-(step_days / 365.0) * np.arange(1, n_steps + 1))
    per_unit = np.zeros(ux.shape[0])
    previous = np.zeros(ux.shape[0])
    for t_k, disc in zip(ends, discount):
        current = transaction_model._given_alive(np.full(ux.shape, t_k), ux, uT)
        per_unit += (current - previous) * disc
        previous = current
    return per_unit, previous, float(ends[-1])


def btyd_scores(
    transaction_model: _TransactionModel, spend_model: _SpendModel,
    frequency: ArrayLike, recency: ArrayLike, T: ArrayLike, monetary_value: ArrayLike,
    horizon_days: float, discount_rate_annual: float, time_unit_days: float = 1.0, step_days: float = 30.0,
) -> dict[str, np.ndarray]:
    """Every BTYD output the scoring bundle needs, per customer, each term computed once: p_alive,
    expected_purchases and p_no_purchase over ``horizon_days``, expected_spend (per order) and clv
    (:func:`discounted_clv`). Equal to the separate calls (``p_alive``, ``expected_purchases``, ``p_no_purchase``,
    ``expected_spend``, ``discounted_clv``): P(alive) is evaluated once, and the time-dependent terms, which
    depend on (frequency, T) only, once per distinct pair (the last CLV step is the horizon itself)."""
    _check_clv_args("btyd_scores", horizon_days, discount_rate_annual, time_unit_days, step_days)
    x, rec, T, m = (a.reshape(-1) for a in _broadcast(frequency, recency, T, monetary_value))
    t = horizon_days / time_unit_days
    if x.shape[0] == 0:
        return {k: np.zeros(0) for k in ("p_alive", "expected_purchases", "p_no_purchase", "expected_spend", "clv")}
    (ux, uT), _, inverse = _collapse(x, T)
    per_unit, previous, last_end = _discounted_steps(transaction_model, ux, uT, horizon_days, discount_rate_annual,
                                                     time_unit_days, step_days)
    given_alive = previous if last_end == t else transaction_model._given_alive(np.full(ux.shape, t), ux, uT)
    buy_given_alive = transaction_model._buy_given_alive(np.full(ux.shape, t), ux, uT)
    p_alive = transaction_model._p_alive(x, rec, T)
    spend = spend_model._expected_spend(x, m)
    return {
        "p_alive": p_alive,
        "expected_purchases": p_alive * given_alive[inverse],
        "p_no_purchase": 1.0 - p_alive * buy_given_alive[inverse],
        "expected_spend": spend,
        "clv": p_alive * per_unit[inverse] * spend,
    }


def discounted_clv(
    transaction_model: _TransactionModel,
    spend_model: _SpendModel,
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    monetary_value: ArrayLike,
    horizon_days: float,
    discount_rate_annual: float,
    time_unit_days: float = 1.0,
    step_days: float = 30.0,
) -> np.ndarray:
    """Discounted CLV over ``horizon_days``, per customer, as lifetimes' customer_lifetime_value.

    The horizon is cut into steps of ``step_days`` (the last one shorter if it does not divide
    the horizon); step k's expected purchases E[X(T, T + t_k)] - E[X(T, T + t_{k-1})] times the
    Gamma-Gamma expected spend are discounted by (1 + d)^k, d = (1 + discount_rate_annual)^(step_days
    / 365) - 1. recency and T are in the models' time unit, ``time_unit_days`` days long (1 for days,
    7 for weeks). lifetimes' customer_lifetime_value(time=M months, discount_rate=d_month, freq='D')
    equals horizon_days = 30 M, step_days = 30, discount_rate_annual = (1 + d_month)^(365/30) - 1.
    """
    _check_clv_args("discounted_clv", horizon_days, discount_rate_annual, time_unit_days, step_days)
    x, rec, T, m = _broadcast(frequency, recency, T, monetary_value)
    shape = x.shape
    x, rec, T, m = (a.reshape(-1) for a in (x, rec, T, m))
    out = np.zeros(x.shape[0])
    if out.size == 0:
        return out.reshape(shape)
    # E[purchases] = P(alive | x, recency, T) * g(t, x, T): the time-dependent part depends on (x, T) only.
    (ux, uT), _, inverse = _collapse(x, T)
    per_unit, _, _ = _discounted_steps(transaction_model, ux, uT, horizon_days, discount_rate_annual, time_unit_days,
                                       step_days)
    clv = transaction_model.p_alive(x, rec, T) * per_unit[inverse] * spend_model.expected_spend(x, m)
    return clv.reshape(shape)
