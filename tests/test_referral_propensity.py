"""The seed ranking where referral outcomes exist: a referral propensity fitted out of time (features at origin - H,
customers brought in over the H days after it), blended with the KOC mixture's posterior, ranks the seeds, the KOC
mixture sizes them; without enough outcomes or history, and in bundles fitted before it, the mixture ranks them.

Measured on the simulator (20,000 customers, 2024-01-01..2025-12-31, H = 90, origins 2024-10-01, 2025-01-01,
2025-04-01, 2025-07-01, simulator seeds 0, 1, 2; 60-83 referrers per holdout at seed 0): seed F1 against the latent
KOCs who had not bought and still interacted at the origin 0.856 / 0.865 / 0.886 with the mixture, 0.872 / 0.877 /
0.909 with the propensity alone, 0.884 / 0.877 / 0.921 blended; average precision of the KOC score for "brought
someone in over the horizon" 0.378 / 0.390 / 0.383 with the mixture, 0.469 / 0.501 / 0.467 with the propensity alone,
0.464 / 0.499 / 0.462 blended; share of the top 50 who brought someone in 0.51 / 0.47 / 0.49 with the mixture, 0.57 /
0.56 / 0.54 with the propensity alone, 0.57 / 0.555 / 0.54 blended (the 50 most active interactors: 0.28 / 0.21 /
0.21; at random 0.01).
"""

import copy
import datetime as dt
import pickle

import ibis
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

import tiering as tg
from tiering.datasets import simulate
from tiering.features import FeatureSpec, build_features
from tiering.features._engagement import referral_labels
from tiering.models.koc import expected_f1_cut
from tiering.models.koc_ranking import KocRanking, blend_koc_score
from tiering.models.referral import MIN_REFERRAL_POSITIVES, fit_referral_propensity, referral_inputs, referral_propensity
from tiering.models.tiers import TierPolicy
from tiering.schemas import REFERRAL_LABEL
from tiering.tier_fitting import holdout_frame, seed_referral_metrics

H = 90
START, END = dt.date(2024, 1, 1), dt.date(2025, 12, 31)
# the seeds are non-buyers: the value floors and predictions below only keep buyers out of them
POLICY = {"value_min_p_purchase": 0.5, "value_min_p_alive": 0.0, "value_max_gap_ratio": 3.0}


def _frame(tables, origin: dt.date, horizon: int = H) -> pd.DataFrame:
    """Features at ``origin`` with the customers each brought in over the ``horizon`` days after it, and stand-in predictions."""
    tx, ix, cu = tables
    f = build_features(tx, ix, cu, as_of=origin, spec=FeatureSpec()).to_pandas()
    f = f.merge(referral_labels(cu, as_of=origin, horizon_days=horizon).to_pandas(), on="customer_id", how="left")
    f[REFERRAL_LABEL] = f[REFERRAL_LABEL].fillna(0)
    return f.assign(p_purchase=0.5, churn_risk=0.5, clv=f["net_spend"]).sort_values("customer_id", ignore_index=True)


@pytest.fixture(scope="module")
def world():
    sim = simulate(20000, START, END, seed=0)
    con = ibis.duckdb.connect()
    tables = tuple(con.create_table(n, getattr(sim, n)) for n in ("transactions", "interactions", "customers"))
    return sim, tables


@pytest.fixture(scope="module", params=[dt.date(2025, 4, 1), dt.date(2025, 7, 1)], ids=str)
def ranked(request, world):
    sim, tables = world
    origin = request.param
    now, hold = _frame(tables, origin), _frame(tables, origin - dt.timedelta(days=H))
    fit = now.drop(columns=[REFERRAL_LABEL])  # what the policy sees at the origin: no future
    policies = {r: TierPolicy(koc_ranking=r, **POLICY).fit(fit, holdout=hold) for r in ("auto", "mixture")}
    truth = sim.truth.set_index("customer_id").loc[now["customer_id"]]
    latent = truth["is_seed"].to_numpy() & (truth["engagement_end_at"].to_numpy() > np.datetime64(origin + dt.timedelta(days=1)))
    return origin, now, hold, policies, latent


def _f1(pred: np.ndarray, truth: np.ndarray) -> float:
    return 2 * (pred & truth).sum() / max(pred.sum() + truth.sum(), 1)


def _latent_nonbuyer_kocs(sim, now: pd.DataFrame, origin: dt.date) -> np.ndarray:
    """The simulator's KOCs who had not bought and still interacted at ``origin``, per row of ``now``."""
    truth = sim.truth.set_index("customer_id").loc[now["customer_id"]]
    interacting = truth["engagement_end_at"].to_numpy() > np.datetime64(origin + dt.timedelta(days=1))
    return truth["is_seed"].to_numpy(bool) & interacting & (now["has_purchased"].to_numpy() == 0)


def _seed_f1(score: np.ndarray, n: int, now: pd.DataFrame, latent: np.ndarray) -> float:
    """Seed F1 among non-buyers of the ``n`` customers ranked first by ``score`` (as many seeds as the mixture finds)."""
    seeds = score >= np.sort(score)[::-1][n - 1]
    nonbuyer = now["has_purchased"].to_numpy() == 0
    return _f1(seeds[nonbuyer], latent[nonbuyer])


def _propensity_alone(pol: TierPolicy, now: pd.DataFrame, model=None) -> np.ndarray:
    """The referral propensity (``pol``'s or ``model``) as the seed score, on the candidates the KOC score keeps."""
    w = pol.koc_window_days_
    p = referral_propensity(model or pol.referral_model_, referral_inputs(now, w, pol._mixture_posterior(now, w)))
    return np.where(pol._koc_score(now, referral=False) > 0, p, 0.0)


def test_seeds_ranked_by_the_referral_propensity_bring_in_more_customers(ranked):
    origin, now, hold, policies, latent = ranked
    auto, mixture = policies["auto"], policies["mixture"]
    assert auto.koc_ranking_ == "referral_propensity" and mixture.koc_ranking_ == "mixture"
    assert auto.referral_positives_ >= MIN_REFERRAL_POSITIVES
    assert auto.koc_ranking_note_.startswith(f"seeds: ranked by a fitted referral propensity: {auto.referral_positives_} of ")
    referred = now[REFERRAL_LABEL].to_numpy() > 0
    score, mix = auto.koc_score(now), mixture.koc_score(now)
    # the ranking that matters to the referral programme: who brings someone in over the next H days
    assert average_precision_score(referred, score) > average_precision_score(referred, mix) + 0.03
    top = np.argsort(-score, kind="stable")[:100]
    by_activity = np.argsort(-now["events_365d"].to_numpy(float), kind="stable")[:100]
    assert referred[top].mean() > referred[by_activity].mean() + 0.15
    assert referred[top].mean() > 20 * referred.mean()  # a random pick: the base rate (0.5-0.7%)
    # the seeds, as many as the mixture finds, against the latent KOCs who had not bought and still interact
    nonbuyer = now["has_purchased"].to_numpy() == 0
    f1_auto = _f1((score >= auto._koc_cut())[nonbuyer], latent[nonbuyer])
    f1_mixture = _f1((mix >= mixture._koc_cut())[nonbuyer], latent[nonbuyer])
    assert f1_auto >= 0.85 and f1_auto >= f1_mixture - 0.01


def test_the_mixture_posterior_in_the_score_keeps_seed_places_for_latent_kocs(world):
    # rolling_ladder_simulated's first report origin at 180 days: the propensity, learned on the base of 2024-08-05
    # (seven months of history), ranked alone gave seed places to customers the mixture calls no KOC (buyers who
    # refer, heavy interactors who share little); blended with the mixture's posterior it finds the latent KOCs
    sim, tables = world
    origin, horizon = dt.date(2025, 2, 1), 180
    now, hold = _frame(tables, origin, horizon), _frame(tables, origin - dt.timedelta(days=horizon), horizon)
    pol = TierPolicy(**POLICY).fit(now.drop(columns=[REFERRAL_LABEL]), holdout=hold)
    assert pol.koc_ranking_ == "referral_propensity"
    latent = _latent_nonbuyer_kocs(sim, now, origin)
    score, mixture = pol.koc_score(now), pol._koc_score(now, referral=False)
    n = int((score >= pol._koc_cut()).sum())
    assert n == int((mixture >= expected_f1_cut(mixture)).sum())  # the mixture sizes the seeds
    f1 = _seed_f1(score, n, now, latent)
    assert f1 >= 0.85
    assert f1 > _seed_f1(mixture, n, now, latent)
    assert f1 > _seed_f1(_propensity_alone(pol, now), n, now, latent) + 0.04


def test_a_holdout_with_little_history_leaves_the_ranking_to_the_mixture():
    # a 180-day holdout at 2024-02-03, 33 days after the data start: every windowed count is nearly the whole history,
    # and a propensity learned there (25 referrers) ranks the seeds of 2024-08-01 worse than the mixture
    sim = simulate(20000, START, END, seed=2)
    con = ibis.duckdb.connect()
    tables = tuple(con.create_table(n, getattr(sim, n)) for n in ("transactions", "interactions", "customers"))
    origin, horizon = dt.date(2024, 8, 1), 180
    now, hold = _frame(tables, origin, horizon), _frame(tables, origin - dt.timedelta(days=horizon), horizon)
    pol = TierPolicy(**POLICY).fit(now.drop(columns=[REFERRAL_LABEL]), holdout=hold)
    assert pol.referral_positives_ >= MIN_REFERRAL_POSITIVES
    assert pol.koc_ranking_ == "mixture" and pol.referral_model_ is None
    days = int(hold["tenure_days"].max())
    assert pol.koc_ranking_note_.startswith(
        f"seeds: ranked by the KOC mixture: {days} days of history before the holdout's origin, under 2 shortest feature windows (60 days)"
    )
    w = pol.koc_window_days_
    forced = fit_referral_propensity(referral_inputs(hold, w, pol._mixture_posterior(hold, w)), hold[REFERRAL_LABEL].to_numpy(float))
    posterior = pol._mixture_posterior(now, w)
    blended = np.where(pol.koc_score(now) > 0, blend_koc_score(posterior, _propensity_alone(pol, now, forced)), 0.0)
    latent = _latent_nonbuyer_kocs(sim, now, origin)
    n = int((pol.koc_score(now) >= pol._koc_cut()).sum())
    assert _seed_f1(pol.koc_score(now), n, now, latent) > _seed_f1(blended, n, now, latent) + 0.05
    longer = _frame(tables, origin - dt.timedelta(days=H), H)  # a 90-day holdout: 123 days of history
    assert TierPolicy(**POLICY).fit(now.drop(columns=[REFERRAL_LABEL]), holdout=longer).koc_ranking_ == "referral_propensity"


def test_a_policy_fitted_before_the_blend_scores_with_the_propensity_alone(ranked):
    # its seed cut was read off the propensity: blended, the same cut would keep another number of seeds
    _, now, _, policies, _ = ranked
    old = copy.deepcopy(policies["auto"])
    del old.__dict__["koc_blend_weight_"]
    old = pickle.loads(pickle.dumps(old))
    alone = _propensity_alone(old, now)
    np.testing.assert_allclose(old.koc_score(now), alone)
    assert not np.allclose(policies["auto"].koc_score(now), alone)


def test_without_enough_referral_outcomes_the_mixture_ranks_the_seeds(ranked):
    _, now, hold, policies, _ = ranked
    fit, mixture = now.drop(columns=[REFERRAL_LABEL]), policies["mixture"].koc_score(now)
    few = hold.copy()
    keep = np.flatnonzero(few[REFERRAL_LABEL].to_numpy() > 0)[: MIN_REFERRAL_POSITIVES - 1]
    few[REFERRAL_LABEL] = 0.0
    few.loc[keep, REFERRAL_LABEL] = 1.0
    for holdout, why in (
        (few, f"{MIN_REFERRAL_POSITIVES - 1} customers brought someone in over the holdout's horizon, fewer than {MIN_REFERRAL_POSITIVES}"),
        (hold.drop(columns=[REFERRAL_LABEL]), "no referral outcomes (the customers table names no referrer in customers.referred_by)"),
        (None, "no labelled earlier origin to learn referral outcomes from"),
    ):
        pol = TierPolicy(**POLICY).fit(fit, holdout=holdout)
        assert pol.koc_ranking_ == "mixture" and pol.referral_model_ is None
        assert pol.koc_ranking_note_.startswith(f"seeds: ranked by the KOC mixture: {why}")
        np.testing.assert_array_equal(pol.koc_score(now), mixture)
    with pytest.raises(ValueError, match="koc_ranking must be one of"):
        TierPolicy(koc_ranking="referrals", **POLICY).fit(fit, holdout=hold)


def test_a_configured_seed_cut_keeps_its_meaning_on_the_mixture_posterior(ranked):
    _, now, hold, policies, _ = ranked
    fit = now.drop(columns=[REFERRAL_LABEL])
    fixed = {r: TierPolicy(koc_ranking=r, seed_min_koc_score=0.9, **POLICY).fit(fit, holdout=hold) for r in ("auto", "mixture")}
    assert fixed["auto"].threshold_source_["seed_min_koc_score"] == "config"
    n_mixture = int((fixed["mixture"].koc_score(now) >= 0.9).sum())
    assert 0 < n_mixture < int((policies["mixture"].koc_score(now) >= policies["mixture"]._koc_cut()).sum())
    assert int((fixed["auto"].koc_score(now) >= fixed["auto"]._koc_cut()).sum()) == n_mixture  # as many seeds, ranked anew


def test_the_holdout_keeps_what_the_referral_propensity_learns_from_and_seeds_are_judged_by_referrals(ranked):
    _, now, hold, policies, _ = ranked
    kept = holdout_frame(hold.assign(holdout_spend=1.0))
    assert {REFERRAL_LABEL, "n_share_365d", "n_referral_365d", "events_30d", "events_365d", "days_since_last_interaction"} <= set(kept)
    assert "holdout_spend" not in kept and "events_trend" not in kept
    pol = TierPolicy(**POLICY).fit(now.drop(columns=[REFERRAL_LABEL]), holdout=kept)
    assert pol.koc_ranking_ == "referral_propensity"
    np.testing.assert_allclose(pol.koc_score(now), policies["auto"].koc_score(now))
    tier = pol.assign(now)["tier"].to_numpy()
    m = seed_referral_metrics(tier, now)
    assert m["seed_referral_rate"] > 10 * m["rest_referral_rate"] > 0
    assert seed_referral_metrics(tier, now.drop(columns=[REFERRAL_LABEL])) == {}


@pytest.mark.slow
def test_a_bundle_scores_with_the_referral_propensity_and_without_it_as_before():
    data = simulate(2500, START, END, seed=98)
    bundle = tg.fit(data.transactions, data.interactions, data.customers, as_of=END, progress=False).bundle
    base = tg.features(data.transactions, data.interactions, data.customers, as_of=END)
    pol = bundle.tier_policy
    frame = pd.concat([base[bundle.feature_columns], bundle.predictions(base[bundle.feature_columns])], axis=1)
    mixture = pol._koc_score(frame, referral=False)

    # a bundle pickled before the referral propensity existed: no model, no ranking attributes; the mixture scores
    old = copy.deepcopy(bundle)
    for name in ("referral_model_", "koc_ranking_", "koc_ranking_note_", "referral_positives_", "koc_ranking"):
        old.tier_policy.__dict__.pop(name, None)
    old = pickle.loads(pickle.dumps(old))
    np.testing.assert_allclose(old.predict(base)["koc_score"].to_numpy(), mixture)

    # with a referral propensity (fitted here on the same base, the ranking path only): predict's fast path scores it
    w = pol.koc_window_days_
    X = referral_inputs(frame, w, pol._mixture_posterior(frame, w))
    rng = np.random.default_rng(0)
    referred = (X["referrals"].to_numpy() > 0) & (rng.random(len(X)) < 0.7)
    new = copy.deepcopy(bundle)
    new.tier_policy.referral_model_ = fit_referral_propensity(X, referred.astype(float))
    got = pickle.loads(pickle.dumps(new)).predict(base)["koc_score"].to_numpy()
    np.testing.assert_allclose(got, new.tier_policy.koc_score(frame))
    assert not np.allclose(got, mixture) and ((got > 0) == (mixture > 0)).all()  # the same candidates, ranked anew
    assert isinstance(new.tier_policy, KocRanking)
