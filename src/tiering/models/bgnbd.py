"""BG/NBD (Fader, Hardie and Lee 2005, "Counting your customers the easy way") with the scikit-learn contract.

The likelihood, penalizer and predictions are lifetimes' BetaGeoFitter's, re-implemented with an analytic
gradient, except where lifetimes fails: conditional expected purchases is finite where a + b + x - 1 < 0
(lifetimes gives NaN there: the log of a negative 2F1), and P(no purchase in (T, T + t]), which lifetimes
lacks, is 1 - P(alive) * (1 - ((alpha + T) / (alpha + T + t))^(r + x)).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.special import digamma, expit, gammaln, hyp2f1

from tiering.models._btyd_inputs import _broadcast
from tiering.models._btyd_transaction import _TransactionModel

__all__ = ["BetaGeoModel"]


def _bg_given_alive(r: float, alpha: float, a: float, b: float, t: np.ndarray, x: np.ndarray, T: np.ndarray) -> np.ndarray:
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
        self,
        frequency: ArrayLike | pd.DataFrame,
        recency: ArrayLike | None = None,
        T: ArrayLike | None = None,
        sample_weight: ArrayLike | None = None,
    ) -> BetaGeoModel:
        """Fit by maximum likelihood on an RFM DataFrame (columns frequency, recency, T) or on
        (frequency, recency, T) arrays; ``sample_weight`` counts customers per row."""
        return super().fit(frequency, recency, T, sample_weight)

    def _prepare(self, x: np.ndarray, rec: np.ndarray, T: np.ndarray, w: np.ndarray) -> dict[str, Any]:
        ux, ix = np.unique(x, return_inverse=True)
        return {"x": x, "rec": rec, "T": T, "w": w, "wx": w * x, "pos": x > 0, "ux": ux, "ix": ix, "w_ux": np.bincount(ix, weights=w)}

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
        A12 = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
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
        ll = (
            w_ux @ (gammaln(r + ux) + gammaln(b + ux) - gammaln(a + b + ux))
            + W * (r * math.log(alpha) - gammaln(r) + gammaln(a + b) - gammaln(b))
            + w @ row
        )
        grad = np.array(
            [
                w_ux @ (digamma(r + ux) - digamma(r)) + W * math.log(alpha) - w @ lT + w_dropped @ dl,
                W * r / alpha - (r * w + wx) @ inv_T - (r * w_dropped + w_dropped * d["x"]) @ (inv_rec - inv_T),
                w_ux @ (dg_ab - dg_abx) + w_dropped.sum() / a,
                w_ux @ (dg_ab + digamma(b + ux) - digamma(b) - dg_abx)
                - np.bincount(d["ix"], weights=w_dropped, minlength=ux.shape[0]) @ (1.0 / (b + np.maximum(ux, 1) - 1)),
            ]
        )
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
