"""Pareto/NBD (Schmittlein, Morrison and Colombo 1987) with the scikit-learn contract.

The likelihood, penalizer and P(alive) are lifetimes' ParetoNBDFitter's (Fader-Hardie note 009),
re-implemented on the distinct (frequency, recency) and (frequency, T) pairs; P(no purchase in (T, T + t]),
which lifetimes lacks, is exact for Pareto/NBD.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.special import expit, gammaln, hyp2f1

from tiering.models._btyd_inputs import _broadcast, _collapse
from tiering.models._btyd_transaction import _TransactionModel

__all__ = ["ParetoNBDModel"]


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
        self,
        frequency: ArrayLike | pd.DataFrame,
        recency: ArrayLike | None = None,
        T: ArrayLike | None = None,
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
