"""The base shared by the BTYD estimators: maximum likelihood on log-parameters with retries, and ``summary``.

The likelihoods, penalizers and predictions are those of lifetimes 0.11.3, re-implemented (one module per
model: bgnbd, paretonbd, gammagamma; the fallbacks nbd and meanspend; CLV in btyd_clv):

- fits collapse identical rows into weights and evaluate a vectorised likelihood (with analytic
  gradients for BG/NBD and Gamma-Gamma): at 1M customers BG/NBD fits ~15x faster than lifetimes;
- a failed optimisation is retried (tol 1e-6, then Nelder-Mead, then a small penalizer), every try
  is recorded in ``fit_report_``, and a fit that never converges raises ModelError;
- fitted objects hold parameters and a small report only (a few KB pickled).

``summary``'s standard errors come from the inverse Hessian of the objective minimised (mean negative
log-likelihood plus penalty; numerical, in log-parameters, then the delta method), as lifetimes computes
them; they are computed at fit time, so the model keeps no data. A prediction before ``fit`` raises
:class:`tiering.models.NotFittedModelError` (scikit-learn's ``check_is_fitted`` on ``params_``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from sklearn.base import BaseEstimator

from tiering.exceptions import ModelError
from tiering.models import check_fitted

# Penalizers tried, in order, after the unpenalised tries failed (only those above the user's own).
_RETRY_PENALIZERS = (1e-3, 1e-2)


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
            H[i, j] = H[j, i] = (float(fun(x + a + b)) - float(fun(x + a - b)) - float(fun(x - a + b)) + float(fun(x - a - b))) / (4 * h**2)
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
        out = pd.DataFrame({"coef": coef, "se(coef)": se, "lower 95% bound": coef - 1.96 * se, "upper 95% bound": coef + 1.96 * se})
        out.index.name = "parameter"
        out.attrs = {
            "log_likelihood": float(getattr(self, "log_likelihood_", math.nan)),
            "n_customers": getattr(self, "n_customers_", None),
            "penalizer": getattr(self, "fit_report_", {}).get("penalizer"),
        }
        return out


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
                res = _minimise(objective, jac, x0, method, tol, pen)
                params = to_params(res.x)
                attempts.append(self._attempt(res, method, tol, pen, params))
                if attempts[-1]["accepted"]:

                    def at_pen(th: np.ndarray, p: float = pen) -> Any:
                        return objective(th, p)

                    hess = _hessian(at_pen, res.x, jac)
                    return params, float(res.fun), self._report(attempts, res.x, params), hess
        tries = "; ".join(f"{a['method']} tol={a['tol']:g} penalizer={a['penalizer']:g}: {a['message']}" for a in attempts)
        raise ModelError(f"{type(self).__name__}.fit did not converge in {len(attempts)} tries ({tries}). {self._fail_hint}")

    def _attempt(self, res: Any, method: str, tol: float, pen: float, params: dict[str, float]) -> dict[str, Any]:
        """The record of one try: its settings, scipy's outcome, and whether its parameters are accepted
        (converged, finite objective, usable parameters; where not, ``message`` says why)."""
        problem = None if res.success else str(res.message)
        if problem is None and not np.isfinite(res.fun):
            problem = f"non-finite objective {res.fun}"
        problem = problem or self._invalid(params)
        return {
            "method": method,
            "tol": tol,
            "penalizer": pen,
            "success": bool(res.success),
            "accepted": problem is None,
            "message": str(res.message) if problem is None else problem,
            "nit": int(getattr(res, "nit", 0)),
            "nfev": int(getattr(res, "nfev", 0)),
            "objective": float(res.fun),
            "params": params,
        }

    def _report(self, attempts: list[dict[str, Any]], theta: np.ndarray, params: dict[str, float]) -> dict[str, Any]:
        """``fit_report_`` of a fit whose last try was accepted at log-parameters ``theta``, with a warning
        where a retry penalizer replaced the user's and for each parameter on the boundary."""
        last = attempts[-1]
        pen = last["penalizer"]
        warnings = []
        if pen != float(self.penalizer):
            warnings.append(
                f"fitted with penalizer {pen} instead of {self.penalizer}: the tries without it failed; parameters are shrunk towards 0"
            )
        warnings += [
            f"{k}={params[k]:.3g} is near the boundary of the parameter space (0 or infinity); the likelihood is flat there"
            for k, th in zip(self._param_names, theta)
            if k in self._unit_free and abs(th) > 12
        ]  # optimiser's scale: time rescaled
        return {
            "converged": True,
            "n_tries": len(attempts),
            "method": last["method"],
            "tol": last["tol"],
            "penalizer": pen,
            "message": last["message"],
            "warnings": warnings,
            "attempts": attempts,
        }


def _minimise(objective: Callable[[np.ndarray, float], Any], jac: bool, x0: np.ndarray, method: str, tol: float, pen: float) -> Any:
    """One try: scipy's ``minimize`` of ``objective(., pen)`` from ``x0`` (of its value alone for Nelder-Mead,
    which takes no gradient)."""
    if method == "Nelder-Mead":
        fun = (lambda th, p=pen: objective(th, p)[0]) if jac else (lambda th, p=pen: objective(th, p))
        return minimize(fun, x0, method=method, tol=tol, options={"maxiter": 2000, "maxfev": 4000})
    return minimize(objective, x0, args=(pen,), jac=jac, method=method, tol=tol)
