"""The tier ladder of issue 16: value means paying now (learned floors, lapsed buyers), seed means KOC
(koc_score), tier probabilities and hysteresis, and tiers judged by what customers did next."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from tiering.exceptions import ModelError
from tiering.models.tiers import (
    PROBA_COLUMNS,
    TierPolicy,
    apply_hysteresis,
    fit_koc_mixture,
    expected_f1_cut,
    koc_posterior,
    learn_value_floors,
    youden_j,
)
from tiering.tier_eval import ever_bought_ladder, tier_outcomes

TIERS = np.array(["core", "value", "seed", "new", "ordinary"], dtype=object)


def _holdout(n=4000, seed=0, overdue_effect=True):
    """Buyers whose chance of buying again is p_true; p_purchase is p_true seen through noise; with
    ``overdue_effect``, buyers far past their own gap do not come back at all."""
    rng = np.random.default_rng(seed)
    p_true = rng.beta(2, 2, n)
    p_hat = np.clip(p_true + rng.normal(0, 0.05, n), 0.001, 0.999)
    ipi = rng.uniform(10, 60, n)
    dsl = ipi * rng.uniform(0, 8, n)
    bought = rng.random(n) < p_true
    if overdue_effect:
        bought &= dsl / ipi <= 5
    return pd.DataFrame({"has_purchased": 1, "p_purchase": p_hat, "p_alive": np.clip(p_hat + 0.2, 0, 1),
                         "days_since_last_purchase": dsl, "ipi_mean_days": ipi, "n_orders": 3,
                         "purchased_in_horizon": bought.astype(int)})


# ------------------------------------------------------------------------------------------ value floors

def test_the_learned_p_purchase_floor_maximises_youden_j():
    h = _holdout(overdue_effect=False)
    learned = learn_value_floors(h, grace_gap_ratio=0)
    y = h["purchased_in_horizon"].to_numpy() > 0
    p = h["p_purchase"].to_numpy()
    j = youden_j(p >= learned["value_min_p_purchase"], y)
    # no cut on a fine grid does much better (the stored floor is the calibrated rate at the J-optimal cut)
    grid = max(youden_j(p >= c, y) for c in np.linspace(0.01, 0.99, 197))
    assert j >= grid - 0.01 and learned["j"] >= grid - 1e-9
    # with a calibrated score J peaks where P(buy | p) equals the base rate: near the purchase rate here
    assert abs(learned["value_min_p_purchase"] - y.mean()) < 0.08
    assert learned["value_max_gap_ratio"] == np.inf  # being overdue tells nothing here: the test stays off


def test_the_floor_is_in_calibrated_probability_whatever_the_holdout_models_calibration():
    h = _holdout(overdue_effect=False)
    y = h["purchased_in_horizon"].to_numpy() > 0
    calibrated = learn_value_floors(h, grace_gap_ratio=0)["value_min_p_purchase"]
    inflated = learn_value_floors(h.assign(p_purchase=h["p_purchase"] ** 0.3), grace_gap_ratio=0)  # same ranking, p too high
    assert inflated["value_min_p_purchase"] == pytest.approx(calibrated, abs=0.03)
    assert abs(inflated["value_min_p_purchase"] - y.mean()) < 0.08


def test_the_gap_test_is_learned_where_being_overdue_predicts_no_return():
    learned = learn_value_floors(_holdout(overdue_effect=True), grace_gap_ratio=0)
    assert 4.0 <= learned["value_max_gap_ratio"] <= 6.0
    assert learned["j"] > learn_value_floors(_holdout(overdue_effect=True), gap_ratio_cap=1000, grace_gap_ratio=0)["j"] + 0.05


def test_a_buyer_within_their_own_gap_is_paying_now_whatever_the_floors():
    from tests.models.test_tiers import _frame

    f = _frame(n=3000, seed=8)
    strict = dict(value_min_p_purchase=0.99, value_min_p_alive=0.0, value_max_gap_ratio=100.0)
    pol = TierPolicy(**strict).fit(f)
    out = pol.assign(f)
    gap = np.where(f["ipi_mean_days"] > 0, f["ipi_mean_days"], pol.population_gap_days_)
    recent = (f["has_purchased"] > 0) & (f["days_since_last_purchase"] <= gap)
    assert recent.sum() > 20 and out.loc[recent, "tier"].isin(["core", "value"]).all()
    assert out.loc[(f["has_purchased"] > 0) & ~recent & (f["p_purchase"] < 0.99), "lapsed_buyer"].all()
    off = TierPolicy(**strict, value_grace_gap_ratio=0).fit(f).assign(f)
    assert off.loc[recent & (f["p_purchase"] < 0.99), "lapsed_buyer"].all()


def test_config_floors_win_and_thin_outcomes_fall_back_to_defaults():
    f = _holdout(n=500, seed=1).assign(churn_risk=0.3, clv=10.0, engagement_score=0.0, social_actions_90d=0,
                                       tenure_days=400, net_spend=100.0)
    h = _holdout(seed=2).assign(churn_risk=0.3, clv=10.0, engagement_score=0.0, social_actions_90d=0,
                                tenure_days=400, net_spend=100.0)
    pol = TierPolicy(value_min_p_purchase=0.42).fit(f, holdout=h)
    assert pol.value_min_p_purchase_ == 0.42 and pol.threshold_source_["value_min_p_purchase"] == "config"
    assert pol.threshold_source_["value_max_gap_ratio"] == "learned"
    # one outcome only: nothing to learn from, the defaults apply and say so
    pol = TierPolicy().fit(f, holdout=h.assign(purchased_in_horizon=1))
    floors = ("value_min_p_purchase", "value_min_p_alive", "value_max_gap_ratio")
    assert {k: pol.threshold_source_[k] for k in floors} == dict.fromkeys(floors, "default")
    # the p_purchase floor at the buyers' mean p_purchase: where Youden's J peaks if p_purchase is calibrated
    assert pol.value_min_p_purchase_ == pytest.approx(f["p_purchase"].mean())
    assert (pol.value_min_p_alive_, pol.value_max_gap_ratio_) == (0.0, 3.0)
    assert learn_value_floors(h.iloc[:10]) is None


# ------------------------------------------------------------------------------------------- KOC score

def test_the_koc_mixture_recovers_sharers_and_ignores_browsing():
    rng = np.random.default_rng(3)
    n = 6000
    koc = rng.random(n) < 0.05
    events = rng.poisson(np.where(koc, 30, rng.choice([3, 60], n)))  # heavy browsers among the regulars
    mix = np.where(koc[:, None], [0.2, 0.07, 0.73], [0.012, 0.003, 0.985])
    counts = np.array([rng.multinomial(e, m) for e, m in zip(events, mix)])
    theta, pi = fit_koc_mixture(counts)
    assert theta[1, 0] == pytest.approx(0.2, abs=0.03) and theta[0, 0] == pytest.approx(0.012, abs=0.005)
    assert 0.03 < pi[1] < 0.1
    score = koc_posterior(counts, theta, pi)
    cut = expected_f1_cut(score)
    assert 0.1 < cut < 0.7
    hit = score >= cut
    assert (hit & koc).sum() / hit.sum() > 0.85 and (hit & koc).sum() / koc.sum() > 0.85
    assert _f1(hit, koc) >= _f1(score >= 0.5, koc) - 0.01
    # 500 views and nothing else scores 0; one share among 500 views stays far below the cut
    assert koc_posterior(np.array([[0, 0, 500], [1, 0, 499], [5, 2, 10]]), theta, pi).round(3).tolist()[:2] == [0, 0]
    assert koc_posterior(np.array([[5, 2, 10]]), theta, pi)[0] > 0.99
    assert fit_koc_mixture(np.array([[0, 0, 5], [0, 0, 0]])) is None


@pytest.fixture(scope="module")
def sim_features():
    from tiering.api import validate
    from tiering.datasets import simulate
    from tiering.train import feature_spec, features_at
    from tiering.config import Config

    d = simulate(4000, dt.date(2023, 1, 1), dt.date(2024, 6, 30), seed=21)
    v = validate(d.transactions, d.interactions, d.customers)
    f = features_at(v.tables, dt.date(2024, 6, 30), feature_spec(Config()))
    f = f.sort_values("customer_id", ignore_index=True)  # the engine returns rows in any order
    return f.merge(d.truth[["customer_id", "is_seed", "engagement_end_at"]], on="customer_id")


def _f1(pred, truth):
    tp = (pred & truth).sum()
    return 2 * tp / max(pred.sum() + truth.sum(), 1)


def test_seeds_beat_the_one_line_share_rule_against_the_simulators_kocs(sim_features):
    f = sim_features
    buyer = f["has_purchased"].to_numpy() > 0
    scored = f.assign(p_purchase=np.where(buyer, 0.9, 0.1), p_alive=np.where(buyer, 0.9, np.nan),
                      churn_risk=np.where(buyer, 0.1, np.nan), clv=np.where(buyer, 100.0, 0.0))
    out = TierPolicy().fit(scored).assign(scored)
    nb = ~buyer
    # the latent KOCs who had not bought yet and still interact at the origin (the data's end): a sharer whose
    # interactions stopped months ago is no seed to invite now; judged among members of 30 days or more (one who
    # joined days ago has seldom shared yet, and the ladder calls them new)
    truth = f["is_seed"].to_numpy(bool) & nb & (f["engagement_end_at"] > pd.Timestamp(2024, 6, 30)).to_numpy()
    half = (np.random.default_rng(0).random(len(f)) < 0.5) & (f["tenure_days"] >= 30).to_numpy()
    test = ~half & (f["tenure_days"] >= 30).to_numpy()
    soc = f["social_actions_90d"].to_numpy()
    k = max(range(1, 15), key=lambda k: _f1(nb[half] & (soc[half] >= k), truth[half]))  # chosen on the training half
    rule = _f1(nb[test] & (soc[test] >= k), truth[test])
    fitted = _f1((out["tier"].to_numpy() == "seed")[test] & nb[test], truth[test])
    assert fitted > rule + 0.15, (fitted, rule, k)
    assert fitted >= 0.85, fitted
    # browsing alone never makes a seed
    assert not (out["tier"].eq("seed") & (f["n_share_365d"] + f["n_referral_365d"] == 0)).any()


# ------------------------------------------------------------------------------ probabilities, hysteresis

def _policy_frame():
    from tests.models.test_tiers import FLOORS, _frame

    f = _frame(n=6000, seed=5)
    return TierPolicy(**FLOORS).fit(f), f


def test_tier_probabilities_sum_to_one_and_agree_with_the_tier():
    pol, f = _policy_frame()
    out = pol.assign(f)
    p = out[list(PROBA_COLUMNS)].to_numpy()
    assert (p >= 0).all() and np.allclose(p.sum(axis=1), 1)
    assert (TIERS[p.argmax(axis=1)] == out["tier"].to_numpy()).mean() > 0.85
    # a non-buyer with no share is never a core, value or seed
    plain = (f["has_purchased"] == 0) & (f["n_share_365d"] + f["n_referral_365d"] == 0)
    assert (out.loc[plain, ["p_core", "p_value", "p_seed"]] == 0).all().all()
    # far from every threshold, the tier is near certain
    far = f.iloc[:3].assign(has_purchased=1, n_orders=5, p_purchase=0.97, p_alive=0.95, clv=5 * pol.core_clv_cut_,
                            days_since_last_purchase=5, ipi_mean_days=30.0, churn_risk=0.03)
    far_out = pol.assign(far)
    assert far_out["tier"].eq("core").all() and (far_out["p_core"] > 0.95).all()
    near = far.assign(clv=1.01 * pol.core_clv_cut_)  # just over the CLV cut: core, but barely more likely than value
    near_out = pol.assign(near)
    assert near_out["tier"].eq("core").all() and (near_out["p_core"] - near_out["p_value"]).abs().max() < 0.1


def test_hysteresis_keeps_customers_near_a_threshold_in_their_tier():
    pol, f = _policy_frame()
    f = f.assign(customer_id=[f"C{i}" for i in range(len(f))])
    before = pol.assign(f).assign(customer_id=f["customer_id"])
    # a small wobble in every score: many customers near a cut flip without hysteresis
    rng = np.random.default_rng(9)
    wobble = f.assign(p_purchase=np.clip(f["p_purchase"] + rng.normal(0, 0.03, len(f)), 0, 1),
                      clv=f["clv"] * np.exp(rng.normal(0, 0.1, len(f))))
    after = pol.assign(wobble).assign(customer_id=f["customer_id"])
    flips = (after["tier"] != before["tier"]).sum()
    assert flips > 20, flips
    copy = after.copy()
    tiers, avoided = apply_hysteresis(before[["customer_id", "tier"]], after, margin=0.2)
    pd.testing.assert_frame_equal(after, copy)  # pure
    assert avoided == ((after["tier"] != before["tier"]) & (tiers == before["tier"])).sum()
    assert (tiers != before["tier"]).sum() == flips - avoided and avoided > 0.5 * flips
    # margin 0 is no hysteresis: the rules' tiers as they are; a big margin keeps more
    plain, none = apply_hysteresis(before[["customer_id", "tier"]], after, margin=0.0)
    _, more = apply_hysteresis(before[["customer_id", "tier"]], after, margin=0.9)
    assert none == 0 and plain.tolist() == after["tier"].tolist()
    assert none < avoided <= more
    # customers unknown to the previous batch take the current tier
    tiers, _ = apply_hysteresis(before[["customer_id", "tier"]].iloc[:0], after, margin=0.5)
    assert tiers.equals(after["tier"].astype(object).rename("tier"))
    # a tier that cannot hold any more (probability 0) is left: nobody stays "new" after 30 days
    aged = after.assign(tier="ordinary", p_new=0.0, p_ordinary=1.0)
    tiers, avoided = apply_hysteresis(before.assign(tier="new")[["customer_id", "tier"]], aged, margin=0.5)
    assert avoided == 0 and (tiers == "ordinary").all()
    with pytest.raises(ModelError, match="p_core"):
        apply_hysteresis(before, after.drop(columns=["p_core"]), margin=0.1)


def test_a_policy_fitted_before_the_new_ladder_still_assigns():
    pol, f = _policy_frame()
    for a in ("value_min_p_purchase_", "value_min_p_alive_", "value_max_gap_ratio_", "population_gap_days_",
              "koc_window_days_", "koc_theta_", "koc_pi_", "threshold_source_", "seed_min_koc_score_",
              "value_grace_gap_ratio"):
        delattr(pol, a)
    out = pol.assign(f)
    buyer = f["has_purchased"] > 0
    assert out.loc[buyer, "tier"].isin(["core", "value"]).all() and not out["lapsed_buyer"].any()
    assert out["koc_candidate"].eq(f["social_actions_90d"] >= 3).all()


# ---------------------------------------------------------------------------------------- outcomes

def test_tier_outcomes_by_hand():
    tiers = pd.DataFrame({"customer_id": list("abcdef"), "tier": ["core", "value", "value", "seed", "ordinary", "ordinary"],
                          "lapsed_buyer": [False, False, False, True, True, False], "at_risk": [False, True, False, False, False, False]})
    out = pd.DataFrame({"customer_id": list("abcde"), "holdout_spend": [100.0, 30.0, 10.0, 0.0, 5.0],
                        "purchased_in_horizon": [1, 1, 0, 0, 1], "social_actions_next": [0, 0, 0, 4, 0]})
    table, m = tier_outcomes(tiers, out)
    assert table["customers"].tolist() == [1, 2, 1, 0, 2]
    assert m["tier_value_spend_mean"] == 20 and m["tier_value_repurchase_rate"] == 0.5 and m["tier_value_at_risk_share"] == 0.5
    assert m["tier_core_revenue_lift"] == pytest.approx((100 / 145) / (1 / 6))
    assert m["tier_monotone_spend"] == 1.0  # core 100 > value 20 > seed 0, ordinary 2.5
    assert m["tier_monotone_repurchase"] == 1.0 and m["tier_seed_social_lift"] == np.inf or m["tier_seed_social_lift"] != m["tier_seed_social_lift"]
    assert m["tier_lapsed_share"] == pytest.approx(2 / 6) and m["tier_lapsed_repurchase_rate"] == 0.5
    assert m["tier_active_value_repurchase_rate"] == pytest.approx(2 / 3)
    assert m["tier_value_vs_ordinary_repurchase"] == 1.0
    base, bm = tier_outcomes(ever_bought_ladder(pd.DataFrame({"customer_id": list("abcdef"), "has_purchased": [1, 1, 1, 0, 1, 0]})), out)
    assert base["customers"].tolist() == [0, 4, 0, 0, 2] and np.isnan(bm["tier_monotone_spend"])


# ------------------------------------------------------------------- the fitted ladder, judged end to end

@pytest.fixture(scope="module")
def judged_sim():
    from tiering.api import validate
    from tiering.config import Config
    from tiering.datasets import simulate
    from tiering.tier_eval import judge_ladder
    from tiering.train import fit

    d = simulate(5000, dt.date(2022, 1, 1), dt.date(2024, 12, 31), seed=5)
    v = validate(d.transactions, d.interactions, d.customers)
    cfg = Config.model_validate({"model": {"training_origins": 1}})
    as_of = dt.date(2024, 6, 1)
    res = fit(v.tables, as_of=as_of, cfg=cfg)
    return d, res, judge_ladder(v.tables, res.bundle, as_of)


def test_the_fitted_ladder_is_judged_by_what_customers_did_next(judged_sim):
    d, res, j = judged_sim
    m, base = j["metrics"], j["baseline_metrics"]
    # floors learned out of time, logged with the run
    assert res.metrics["tier_value_min_p_purchase_learned"] == 1.0
    assert 0 < res.metrics["tier_value_min_p_purchase"] < 1 and res.metrics["tier_value_floor_youden_j"] > 0.3
    # judged at the training's own test origin as well (what train logs)
    assert res.metrics["tier_monotone_spend"] == 1.0
    # monotone on realised spend and purchase rate: core > value > seed, new, ordinary
    assert m["tier_monotone_spend"] == 1.0 and m["tier_monotone_repurchase"] == 1.0
    # value means paying now: the strongest trivial rule ("ever bought -> value") is beaten by far
    assert m["tier_active_value_repurchase_rate"] > base["tier_value_repurchase_rate"] + 0.3
    assert m["tier_value_share"] < 0.5 * base["tier_value_share"]
    assert m["tier_lapsed_repurchase_rate"] < 0.25 * m["tier_value_repurchase_rate"]
    assert m["tier_value_at_risk_share"] <= 1 / 3
    # core holds the revenue, seed the shares and referrals of the next horizon
    assert m["tier_core_revenue_lift"] > 10
    assert m["tier_seed_social_lift"] > 3
    s = j["scores"]
    spend = s["holdout_spend"].to_numpy(float)
    top = (spend > 0) & (spend >= np.quantile(spend[spend > 0], 0.8))
    assert _f1(s["tier"].to_numpy() == "core", top) >= 0.5
    # probabilities sum to 1 and their argmax is the tier for nearly everyone
    p = s[list(PROBA_COLUMNS)].to_numpy()
    assert np.allclose(p.sum(axis=1), 1) and (TIERS[p.argmax(axis=1)] == s["tier"].to_numpy()).mean() > 0.95
