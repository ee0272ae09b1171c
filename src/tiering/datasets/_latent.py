"""The simulator's latent process: who joins when, who is a seed, each customer's buying and engagement
propensities (correlated), conversion, and the BG/NBD purchase times up to dropout."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tiering.datasets._arrays import DAY_S, segment_starts
from tiering.datasets._params import (
    ACQUISITION,
    BGNBD_A,
    BGNBD_ALPHA,
    BGNBD_B,
    BGNBD_R,
    FIRST_DELAY_DAYS,
    GG_GAMMA,
    GG_P,
    GG_Q,
    LAMBDA_CAP,
    RHO,
    SEED_SHARE,
)


@dataclass
class Latent:
    """Per-customer latent draws (arrays of length n; times in seconds or days from ``start``)."""

    join_s: np.ndarray
    acq: np.ndarray
    is_seed: np.ndarray
    lam: np.ndarray
    p_drop: np.ndarray
    z_eng: np.ndarray
    eng: np.ndarray
    nu: np.ndarray
    will_convert: np.ndarray
    t1: np.ndarray
    buyer: np.ndarray

    @property
    def join_t(self) -> np.ndarray:
        return self.join_s / DAY_S

    @property
    def mean_spend(self) -> np.ndarray:
        return GG_P / self.nu


def latent(rng: np.random.Generator, n: int, span_s: int, purchase_scale: float, interaction_scale: float) -> Latent:
    """Joins, channels, seeds, buying/engagement propensities, conversion and first-purchase times."""
    from scipy.special import digamma, polygamma

    g = 0.5  # join density proportional to 1 + g*u on [0, 1]: inverse CDF of a linear ramp
    u = (np.sqrt(1.0 + 2.0 * g * (1.0 + g / 2.0) * rng.random(n)) - 1.0) / g
    join_s = np.sort(np.minimum((u * span_s).astype(np.int64), span_s - 1))
    ch_share = np.array([s for s, _ in ACQUISITION.values()])
    ch_conv = np.array([c for _, c in ACQUISITION.values()])
    acq = rng.choice(len(ch_share), size=n, p=ch_share / ch_share.sum())
    is_seed = rng.random(n) < SEED_SHARE

    lam_base = rng.gamma(BGNBD_R, 1.0 / BGNBD_ALPHA, size=n)
    lam = np.minimum(np.where(is_seed, lam_base / 3.0, lam_base), LAMBDA_CAP) * purchase_scale
    p_drop = np.clip(rng.beta(BGNBD_A, BGNBD_B, size=n), 1e-6, 1.0)
    # standardised log lambda (log of a Gamma(r, 1) variate: mean digamma(r), variance trigamma(r))
    z_lam = (np.log(lam_base * BGNBD_ALPHA) - digamma(BGNBD_R)) / np.sqrt(polygamma(1, BGNBD_R))
    z_eng = RHO * z_lam + np.sqrt(1 - RHO**2) * rng.standard_normal(n)
    eng = np.exp(-3.4 + 1.2 * z_eng)  # events per day
    eng = np.where(is_seed, eng * 4.0 + 0.3, eng) * interaction_scale
    nu = rng.gamma(GG_Q, 1.0 / GG_GAMMA, size=n)

    will_convert = rng.random(n) < ch_conv[acq] * np.where(is_seed, 0.5, 1.0)
    t1 = join_s / DAY_S + rng.exponential(FIRST_DELAY_DAYS, size=n)
    buyer = will_convert & (t1 < span_s / DAY_S)
    return Latent(join_s, acq, is_seed, lam, p_drop, z_eng, eng, nu, will_convert, t1, buyer)


def purchases(rng: np.random.Generator, lat: Latent, span: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BG/NBD purchase times: (owner customer index, time in days) per order, and dropped-out-by-end per customer.

    Per buyer: N ~ Geometric(p) purchases up to and including the one after which it drops out,
    K ~ Poisson(lambda * window) arrivals of its purchase process in (first purchase, end);
    it makes M = min(N - 1, K) repeat purchases, at the first M of K uniform order statistics,
    drawn as exponential spacings S_j / (S_M + Gamma(K + 1 - M)) without materialising all K.
    """
    b = np.flatnonzero(lat.buyer)
    nb = len(b)
    t1 = lat.t1[b]
    window = span - t1
    n_total = rng.geometric(lat.p_drop[b]).astype(np.int64)
    k_arr = rng.poisson(lat.lam[b] * window).astype(np.int64)
    m_rep = np.minimum(n_total - 1, k_arr)
    dropped_b = (n_total - 1) <= k_arr
    cs = np.cumsum(rng.exponential(1.0, size=int(m_rep.sum())))
    seg = segment_starts(m_rep)
    before = np.concatenate([[0.0], cs])[seg]  # running sum before each buyer's segment
    has_rep = m_rep > 0
    s_last = np.zeros(nb)
    s_last[has_rep] = cs[seg[has_rep] + m_rep[has_rep] - 1] - before[has_rep]
    k_rest = k_arr + 1 - m_rep  # >= 1
    scale = window / (s_last + rng.gamma(k_rest.astype(np.float64)))
    owner_rep = np.repeat(np.arange(nb), m_rep)
    cs -= before[owner_rep]
    cs *= scale[owner_rep]
    cs += t1[owner_rep]
    dropped = np.zeros(len(lat.buyer), dtype=bool)
    dropped[b[dropped_b]] = True
    return np.concatenate([b, b[owner_rep]]), np.concatenate([t1, cs]), dropped
