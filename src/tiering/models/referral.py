"""The referral propensity: P(a customer brings in at least one new customer in the horizon), where referral outcomes exist.

A referral outcome is a referral followed by a new customer: the customers table names, per customer, the member who
brought them in (customers.referred_by). Where it does, the seed ranking need not guess who spreads the word from the
mix of interactions alone (the KOC mixture, :mod:`tiering.models.koc`): whether a customer brought anyone in over the
horizon after an earlier origin is known, so P(brings in someone in the next H days) is fitted out of time, features at
the earlier origin and outcomes after it (the holdout the tier policy learns its value floors from), and ranks the
seeds at the scoring origin.

The classifier is the package's propensity model (:class:`tiering.models.propensity.PropensityModel`, logistic
regression on signed-log inputs, its fallbacks on degenerate labels), on :func:`referral_inputs`: the share, referral
and other interaction counts of the KOC window, the interactions of the shortest window, the days since the last
interaction, tenure, whether the customer has bought and the KOC mixture's posterior (as a logit). The customers
brought in before the origin are no input: they added nothing on the simulator. It is fitted only with at least
``MIN_REFERRAL_POSITIVES`` customers who brought someone in and ``MIN_HISTORY_WINDOWS`` shortest feature windows of
history before the holdout's origin; otherwise the mixture ranks the seeds.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from tiering.models.koc import koc_counts
from tiering.models.propensity import PropensityModel
from tiering.schemas import REFERRAL_LABEL

# Fewer customers who brought someone in over the holdout horizon than this: the propensity is not fitted and the
# mixture ranks the seeds. About two per input of the logistic model (8-10 inputs, L2-penalised): with fewer, one
# referrer more or less moves the ranking, and the expected-F1 seed cut read off its probabilities, more than the
# outcomes can support. On the simulator a 90-day holdout holds 60-83 referrers at 20,000 customers, 180 days 127-221
# at 50,000 (tests/test_referral_propensity.py).
MIN_REFERRAL_POSITIVES = 20
# The holdout's origin with less history than this many shortest feature windows (its oldest member's tenure_days):
# the propensity is not fitted and the mixture ranks the seeds, as tiering.choice.short_history judges no learned CLV
# model there. Under one window every windowed count is the customer's whole history, so the propensity learns what
# the windows mean from rows where they mean nothing else. On the simulator (rolling_ladder_simulated's selection
# origins, 180 days, three simulator seeds) the two holdouts with 33 days of history (and 25 referrers each) gave seed
# F1 0.805 and 0.719 blended, 0.788 and 0.634 with the propensity alone, against 0.802 and 0.845 for the mixture; with
# 64 days the blend was ahead of the mixture by 0.013 on average (3 cells), with 92-276 days by 0.018-0.039.
MIN_HISTORY_WINDOWS = 2
KOC_LOGIT_INPUT = "koc_logit"  # the KOC mixture's posterior as a logit (clipped to 1e-4 .. 1 - 1e-4)
_EVENTS_RE = re.compile(r"^events_(\d+)d$")


def referral_inputs(frame, w: int, posterior: np.ndarray) -> pd.DataFrame:
    """The referral propensity's inputs per row of ``frame`` (a DataFrame, or the bundle's columns: ``f[name]``,
    ``name in f.columns``, ``len(f)``), ``w`` the KOC window and ``posterior`` the KOC mixture's posterior."""
    counts = koc_counts(frame, w)
    out = {"shares": counts[:, 0], "referrals": counts[:, 1], "other_events": counts[:, 2]}
    short = shortest_window(frame, w)
    out[f"events_{short}d"] = np.nan_to_num(frame[f"events_{short}d"].to_numpy(float))
    for c in ("days_since_last_interaction", "tenure_days", "has_purchased"):
        if c in frame.columns:
            out[c] = np.nan_to_num(frame[c].to_numpy(float))
    p = np.clip(np.asarray(posterior, dtype=float), 1e-4, 1 - 1e-4)
    out[KOC_LOGIT_INPUT] = np.log(p) - np.log1p(-p)
    return pd.DataFrame(out)


def shortest_window(frame, default: int) -> int:
    """The shortest feature window of ``frame``'s ``events_{W}d`` columns, ``default`` without one."""
    return min((int(m.group(1)) for c in frame.columns if (m := _EVENTS_RE.match(c))), default=default)


def referral_positives(holdout: pd.DataFrame | None) -> int | None:
    """Customers of ``holdout`` who brought in at least one new customer in its horizon; None without the outcome."""
    if holdout is None or REFERRAL_LABEL not in holdout.columns:
        return None
    return int((holdout[REFERRAL_LABEL].fillna(0).to_numpy(float) > 0).sum())


def fit_referral_propensity(X: pd.DataFrame, referred: np.ndarray, random_state: int = 0) -> PropensityModel:
    """P(brings in at least one new customer in the horizon) from ``X`` (:func:`referral_inputs` at an earlier origin)
    and ``referred`` (the customers each brought in over the horizon after it)."""
    y = (np.nan_to_num(np.asarray(referred, dtype=float)) > 0).astype(int)
    return PropensityModel(learner="logistic", random_state=random_state, threads=1).fit(X, y)


def referral_propensity(model: PropensityModel, X: pd.DataFrame) -> np.ndarray:
    """P(brings in at least one new customer in the horizon) per row of ``X`` (:func:`referral_inputs`)."""
    return model.predict_proba(X[list(model.feature_names_in_)])[:, 1]
