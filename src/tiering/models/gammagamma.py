"""Gamma-Gamma spend model (Fader, Hardie and Lee 2005, "RFM and CLV"; Fader-Hardie note 025) with the
scikit-learn contract: lifetimes' GammaGammaFitter re-implemented with an analytic gradient, and a fit
refused where q <= 1 (an infinite mean spend).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.special import digamma, gammaln

from tiering.exceptions import ModelError
from tiering.models._btyd_base import _BTYDModel, _standard_errors
from tiering.models._btyd_inputs import _SPEND_COLUMNS, _columns, _inputs, _raise_bad_rows, _weights
from tiering.models._btyd_spend import _SpendModel

__all__ = ["GammaGammaModel"]


class GammaGammaModel(_SpendModel, _BTYDModel):
    """Gamma-Gamma spend model (Fader, Hardie and Lee 2005, "RFM and CLV"; Fader-Hardie note 025).

    Fitted on repeat buyers only (frequency > 0 and monetary_value > 0): ``monetary_value`` is the
    mean value of a customer's repeat purchases. ``params_``: p, q, v; the population mean spend
    p v / (q - 1) exists only for q > 1, so a fit with q <= 1 is refused. ``penalizer``: L2 on the
    parameters added to the mean negative log-likelihood, as lifetimes' GammaGammaFitter.
    """

    _param_names = ("p", "q", "v")
    _unit_free = ("p", "q")
    _fail_hint = (
        "Check monetary_value (units, netted refunds, extreme values): with q <= 1 spend is too "
        "heavy-tailed for a finite mean, and a penalizer shrinks q further."
    )

    def _invalid(self, params: dict[str, float]) -> str | None:
        problem = super()._invalid(params)
        if problem is None and params["q"] <= 1:
            problem = f"q = {params['q']:.4g} <= 1: the mean spend p*v/(q-1) is infinite"
        return problem

    def fit(
        self,
        frequency: ArrayLike | pd.DataFrame,
        monetary_value: ArrayLike | None = None,
        sample_weight: ArrayLike | None = None,
    ) -> GammaGammaModel:
        """Fit by maximum likelihood on the rows with frequency > 0 and monetary_value > 0, of an RFM
        DataFrame or of (frequency, monetary_value) arrays."""
        owner = f"{type(self).__name__}.fit"
        (frequency, monetary_value), _ = _inputs(owner, _SPEND_COLUMNS, frequency, monetary_value)
        x, m = _columns(owner, frequency=frequency, monetary_value=monetary_value)
        n = x.shape[0]
        fx = np.isfinite(x)
        _raise_bad_rows(
            owner,
            n,
            [
                ("have a missing or infinite frequency", ~fx),
                ("have a negative or non-integer frequency", fx & ((x < 0) | (x != np.round(x)))),
                ("have frequency > 0 but a missing or infinite monetary_value", fx & (x > 0) & ~np.isfinite(m)),
            ],
            "frequency counts repeat purchases; monetary_value is their mean value (ignored where frequency is 0).",
        )
        w = _weights(owner, sample_weight, n)
        use = (x > 0) & (m > 0) & (w > 0)
        if use.sum() < 2:
            raise ModelError(
                f"{owner}: {int(use.sum())} rows have frequency > 0 and monetary_value > 0; the "
                "Gamma-Gamma model needs repeat buyers with positive spend (at least 2 rows)."
            )
        d = _sufficient(x[use], m[use], w[use])

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
        ll = (
            w_ux @ (gammaln(pp * ux + q) - gammaln(pp * ux))
            + W * (q * math.log(v) - gammaln(q))
            - pp * wx_l1
            - d["Slm"]
            - q * (d["Slxm"] + w_l1)
        )
        grad = np.array(
            [
                w_ux @ (ux * (psi_pxq - digamma(pp * ux))) - wx_l1,
                w_ux @ psi_pxq - W * digamma(q) + W * math.log(v) - d["Slxm"] - w_l1,
                W * q / v - pp * (wx @ inv) - q * (w @ inv),
            ]
        )
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


def _sufficient(x: np.ndarray, m: np.ndarray, w: np.ndarray) -> dict:
    """What the Gamma-Gamma log-likelihood reads of the used rows (spend is continuous: collapsing identical rows
    would not pay)."""
    ux, ix = np.unique(x, return_inverse=True)
    return {
        "xm": x * m,
        "w": w,
        "wx": w * x,
        "ux": ux,
        "w_ux": np.bincount(ix, weights=w),
        "W": w.sum(),
        "Slm": w @ np.log(m),
        "Slxm": w @ np.log(x * m),
    }
