"""The tier policy's seed ranking: the KOC score per customer and the seed cut, learned at fit time.

``koc_score`` is the KOC mixture's posterior (:mod:`tiering.models.koc`) blended with the fitted referral propensity
(:mod:`tiering.models.referral`, P(brings in at least one new customer in the horizon)), their weighted geometric
mean (:func:`blend_koc_score`), where the policy's holdout had referral outcomes with at least
``MIN_REFERRAL_POSITIVES`` customers who brought someone in and ``MIN_HISTORY_WINDOWS`` shortest feature windows of
history, and the mixture's posterior alone otherwise; either is 0 for a customer without a share or a referral in the
KOC window, or no longer interacting at the origin (:func:`tiering.models.koc.sharing_now`). ``koc_ranking_`` says
which ranked the seeds and ``koc_ranking_note_`` why, in one sentence (logged at fit time). Unless the config fixes it,
the seed cut keeps as many seeds as the mixture's expected-F1 cut (:func:`tiering.models.koc.expected_f1_cut`) selects
on the fitted base: the mixture sizes the KOC class, the blended score (where the propensity is fitted) picks its
members.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from tiering.exceptions import ConfigError
from tiering.models.koc import (
    RECENT_DAYS,
    SILENT_GAPS,
    expected_f1_cut,
    fit_koc_volume_mixture,
    koc_counts,
    koc_posterior,
    koc_window,
    sharing_now,
)
from tiering.models.propensity import PropensityModel
from tiering.models.referral import (
    MIN_HISTORY_WINDOWS,
    MIN_REFERRAL_POSITIVES,
    fit_referral_propensity,
    referral_inputs,
    referral_positives,
    referral_propensity,
    shortest_window,
)
from tiering.schemas import REFERRAL_LABEL

_log = logging.getLogger(__name__)


def koc_columns(w: int) -> tuple[str, str, str]:
    """The feature columns the KOC score reads (koc.koc_counts) for the window of ``w`` days."""
    return f"n_share_{w}d", f"n_referral_{w}d", f"events_{w}d"


KOC_RANKINGS = ("auto", "mixture")  # auto: the referral propensity where referral outcomes allow, else the mixture
PROPENSITY_WEIGHT = 2 / 3  # the referral propensity's weight in the KOC score's geometric mean (the mixture's: 1/3)


def blend_koc_score(posterior: np.ndarray, propensity: np.ndarray, weight: float = PROPENSITY_WEIGHT) -> np.ndarray:
    """The KOC score where a referral propensity was fitted: the geometric mean of the KOC mixture's ``posterior``
    (weight ``1 - weight``, 1/3 by default) and the referral ``propensity`` (``weight``, 2/3), 0 where either is
    (``weight`` 1: the propensity alone, as policies fitted before the blend score).

    The propensity learns who brings someone in, and partly from how much a customer interacts: alone, it gave 16 of
    the 113 seeds at rolling_ladder_simulated's first report origin (2025-02-01, 180 days, learned on a base with seven
    months of history) to heavy interactors with one to five shares among 12-165 events, buyers or not, whom the
    mixture calls no KOC (posterior under 0.05): none was a latent KOC and none brought anyone in. The mixture's
    posterior in the score gives those places to customers whose interactions are mostly shares and referrals.

    Against the simulator's latent KOCs who had not bought, at the selection origins of rolling_ladder_simulated (three
    simulator seeds, 2024-07..2025-01, the 38 origin x horizon cells where the propensity was fitted before the
    history floor of :mod:`tiering.models.referral`) seed F1 averaged 0.883 / 0.879 (90 / 180 days; lowest 0.824 /
    0.802) against 0.873 / 0.852 (lowest 0.817 / 0.634) with the propensity alone and 0.854 / 0.855 with the mixture,
    above the propensity alone in 26 cells and below in 10. The weight was chosen there (without the floor, 2/3 gave
    0.883 / 0.871): 1/3 gave 0.873 / 0.865, 1/2 (the plain product) 0.881 / 0.866, 3/4 and 4/5 0.886-0.888 / 0.871
    (the same within noise; 2/3 is the nearest the mixture of them)."""
    p = np.asarray(posterior, dtype=float)
    q = np.asarray(propensity, dtype=float)
    return np.power(np.clip(p, 0.0, 1.0), 1 - weight) * np.power(np.clip(q, 0.0, 1.0), weight)


def _history_days(holdout: pd.DataFrame) -> int | None:
    """Days of history before the holdout's origin (its oldest member's tenure); None where it does not say."""
    if "tenure_days" not in holdout.columns:
        return None
    return int(np.nan_to_num(holdout["tenure_days"].to_numpy(float)).max(initial=0.0))


class KocRanking:
    """The KOC score and seed cut of :class:`tiering.models.tier_policy.TierPolicy` (a base class of it)."""

    seed_min_koc_score: float | None
    seed_min_social_actions_90d: int
    koc_ranking: str
    threshold_source_: dict[str, str]
    koc_window_days_: int | None

    def _learned(self, name: str, default):
        """A fitted attribute; ``default`` for a policy fitted before it existed."""
        return getattr(self, name, default)

    def _fit_koc(self, frame: pd.DataFrame, holdout: pd.DataFrame | None = None) -> None:
        """The KOC mixture on the base's share, referral and other counts, the referral propensity where ``holdout``
        has referral outcomes, and the seed cut."""
        self.koc_window_days_ = koc_window(frame)
        mix = fit_koc_volume_mixture(koc_counts(frame, self.koc_window_days_)) if self.koc_window_days_ else None
        self.koc_theta_: np.ndarray | None = mix[0] if mix is not None else None
        self.koc_pi_: np.ndarray | None = mix[1] if mix is not None else None
        self.koc_volume_: np.ndarray | None = mix[2] if mix is not None else None
        self.koc_silent_gaps_, self.koc_recent_days_ = SILENT_GAPS, RECENT_DAYS
        self._fit_referral(holdout)
        fixed = None if self.seed_min_koc_score is None else float(self.seed_min_koc_score)
        if mix is not None:
            self.seed_min_koc_score_ = self._seed_cut(frame, fixed)
        else:
            self.seed_min_koc_score_ = 0.5 if fixed is None else fixed
        self.threshold_source_["seed_min_koc_score"] = "config" if fixed is not None else "learned" if mix is not None else "default"
        _log.info(self.koc_ranking_note_)

    def _seed_cut(self, frame: pd.DataFrame, mixture_cut: float | None) -> float:
        """The seed cut on ``frame``: ``mixture_cut`` on the mixture's posterior (the configured seed_min_koc_score; None:
        the posteriors' expected-F1 cut); with the referral propensity, the blended score of the n-th customer, n the
        seeds that mixture cut makes (the mixture says how many KOCs there are, the blend with the propensity which),
        so a configured cut keeps its meaning whichever ranks.

        The propensity's own expected-F1 cut answers another question (who brings someone in over the horizon, a
        smaller class): on the simulator it kept 50-70 of ~100 latent KOCs (seed F1 0.75 against 0.86 for the
        mixture); sized by the mixture, 0.87 (tests/test_referral_propensity.py's docstring)."""
        mixture = self._koc_score(frame, referral=False)
        cut = expected_f1_cut(mixture) if mixture_cut is None else mixture_cut
        if self._learned("referral_model_", None) is None:
            return cut
        n = int((mixture >= cut).sum())
        score = np.sort(self.koc_score(frame))[::-1]
        self.koc_ranking_note_ += f"; {n:,} seeds, as many as the KOC mixture finds"
        if n == 0:
            return 1.0  # no seed (a probability below 1 never reaches it)
        return float(score[n - 1]) if score[n - 1] > 0 else float(score[score > 0].min(initial=1.0))

    def _fit_referral(self, holdout: pd.DataFrame | None) -> None:
        """The referral propensity on ``holdout`` (features at an earlier origin, REFERRAL_LABEL after it), or None and
        the reason; sets koc_ranking_, koc_ranking_note_, referral_positives_ (None: no referral outcomes) and
        koc_blend_weight_ (the propensity's weight in the KOC score; a policy fitted before the blend has none and
        scores with the propensity alone, the scale its seed cut was read off)."""
        self.referral_model_: PropensityModel | None = None
        self.koc_blend_weight_ = PROPENSITY_WEIGHT
        positives = self.referral_positives_ = referral_positives(holdout)
        w = self.koc_window_days_
        if self.koc_ranking not in KOC_RANKINGS:
            raise ConfigError(f"koc_ranking must be one of {KOC_RANKINGS}; got {self.koc_ranking!r}.")
        if self.koc_ranking == "mixture":
            why = "the mixture is asked for (koc_ranking: mixture)"
        elif holdout is None:
            why = "no labelled earlier origin to learn referral outcomes from"
        elif positives is None:
            why = "no referral outcomes (the customers table names no referrer in customers.referred_by)"
        elif w is None or self.koc_theta_ is None or any(c not in holdout.columns for c in koc_columns(w)):
            why = "no share or referral counts to rank by"
        elif positives < MIN_REFERRAL_POSITIVES:
            why = f"{positives} customers brought someone in over the holdout's horizon, fewer than {MIN_REFERRAL_POSITIVES}"
        elif (days := _history_days(holdout)) is not None and days < (need := MIN_HISTORY_WINDOWS * shortest_window(holdout, w)):
            why = f"{days} days of history before the holdout's origin, under {MIN_HISTORY_WINDOWS} shortest feature windows ({need} days)"
        else:
            X = referral_inputs(holdout, w, self._mixture_posterior(holdout, w))
            self.referral_model_ = fit_referral_propensity(X, holdout[REFERRAL_LABEL].to_numpy(float))
            why = (
                f"{positives} of {len(holdout):,} customers brought someone in over the holdout's horizon"
                f" (blended with the KOC mixture's posterior, weight {1 - self.koc_blend_weight_:.2f})"
            )
        self.koc_ranking_ = "referral_propensity" if self.referral_model_ is not None else "mixture"
        what = "a fitted referral propensity" if self.referral_model_ is not None else "the KOC mixture"
        self.koc_ranking_note_ = f"seeds: ranked by {what}: {why}"

    def _mixture_posterior(self, f, w: int) -> np.ndarray:
        """The KOC mixture's posterior per row, without the sharing-now gate (0 without a share or referral)."""
        assert self.koc_theta_ is not None and self.koc_pi_ is not None  # fitted together
        volume = self._learned("koc_volume_", None)  # None: fitted before the number of events counted
        return koc_posterior(koc_counts(f, w), self.koc_theta_, self.koc_pi_, volume)

    def koc_score(self, f: pd.DataFrame) -> np.ndarray:
        """The KOC score per row (see the module doc)."""
        return self._koc_score(f, referral=True)

    def _koc_score(self, f, referral: bool) -> np.ndarray:
        """The KOC score per row; ``referral`` False: the mixture's even where a referral propensity was fitted."""
        w = self._learned("koc_window_days_", None)
        theta = self._learned("koc_theta_", None)
        if w is not None and all(c in f.columns for c in koc_columns(w)):
            if theta is None:
                return np.zeros(len(f))
            posterior = self._mixture_posterior(f, w)
            score = self._referral_score(f, w, posterior) if referral else None
            if score is None:
                score = posterior
            silent_gaps = self._learned("koc_silent_gaps_", None)  # None: fitted before dormant sharers were told apart
            if silent_gaps is None:
                return score
            return np.where(sharing_now(f, w, silent_gaps, self.koc_recent_days_), score, 0.0)
        return (f["social_actions_90d"].to_numpy(float) >= self.seed_min_social_actions_90d).astype(float)

    def _referral_score(self, f, w: int, posterior: np.ndarray) -> np.ndarray | None:
        """The KOC score with the referral propensity (:func:`blend_koc_score`), 0 without a share or referral in the
        window; None without the model (a policy fitted before it, or without referral outcomes) or where ``f`` lacks
        one of its inputs."""
        model = self._learned("referral_model_", None)
        if model is None:
            return None
        X = referral_inputs(f, w, posterior)
        if any(c not in X.columns for c in model.feature_names_in_):
            return None
        counts = koc_counts(f, w)
        weight = self._learned("koc_blend_weight_", 1.0)  # 1: fitted before the blend, its seed cut on the propensity
        return np.where(counts[:, 0] + counts[:, 1] > 0, blend_koc_score(posterior, referral_propensity(model, X), weight), 0.0)

    def _koc_cut(self) -> float:
        default = 0.5 if self.seed_min_koc_score is None else self.seed_min_koc_score
        return self._learned("seed_min_koc_score_", default)
