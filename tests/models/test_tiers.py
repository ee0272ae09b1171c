"""The tier policy: ladder order, cut points stored at fit time, reasons, RFM segments."""

import numpy as np
import pandas as pd
import pytest

from tiering.exceptions import ModelError
from tiering.models.tiers import NO_PURCHASE_SEGMENT, NextTierModel, TierPolicy


def _frame(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    buyer = rng.random(n) < 0.4
    koc = rng.random(n) < 0.05
    n_orders = np.where(buyer, rng.integers(1, 20, n), 0)
    events = rng.poisson(np.where(koc, 40, 15))
    mix = np.where(koc[:, None], [0.2, 0.07, 0.73], [0.012, 0.003, 0.985])
    counts = np.array([rng.multinomial(e, m) for e, m in zip(events, mix)])
    return pd.DataFrame({
        "has_purchased": buyer.astype(int),
        "p_purchase": rng.random(n),
        "p_alive": np.where(buyer, rng.random(n), np.nan),
        "churn_risk": np.where(buyer, rng.random(n), np.nan),
        "clv": np.where(buyer, rng.gamma(1, 100, n), 0.0),
        "engagement_score": rng.random(n),
        "social_actions_90d": rng.binomial(counts[:, 0] + counts[:, 1], 0.25),
        "n_share_365d": counts[:, 0],
        "n_referral_365d": counts[:, 1],
        "events_365d": events,
        "tenure_days": rng.integers(0, 700, n),
        "days_since_last_purchase": np.where(buyer, rng.integers(0, 700, n), 700),
        "ipi_mean_days": np.where(buyer & (n_orders > 1), rng.integers(5, 120, n), 0).astype(float),
        "n_orders": n_orders,
        "net_spend": np.where(buyer, rng.gamma(1, 200, n), 0.0),
        "_koc": koc,
    })


FLOORS = {"value_min_p_purchase": 0.3, "value_min_p_alive": 0.2, "value_max_gap_ratio": 4.0}
FIXED = {**FLOORS, "seed_min_koc_score": 0.5, "at_risk_min_churn_risk": 0.5}


def _active(f, pol):
    gap = np.where(f["ipi_mean_days"] > 0, f["ipi_mean_days"], pol.population_gap_days_)
    ratio = f["days_since_last_purchase"] / gap
    return (f["has_purchased"] > 0) & ((ratio <= 1) | ((f["p_purchase"] >= pol.value_min_p_purchase_)
                                                      & ~(f["p_alive"] < pol.value_min_p_alive_) & ~(ratio > pol.value_max_gap_ratio_)))


def test_ladder_first_match_wins():
    f = _frame()
    pol = TierPolicy(**FIXED).fit(f)
    out = pol.assign(f)
    assert pol.threshold_source_ == dict.fromkeys(FIXED, "config")
    buyer = f["has_purchased"] > 0
    active = _active(f, pol)
    assert 0 < active.sum() < buyer.sum()  # some buyers lapse
    core = active & (f["p_purchase"] >= 0.6) & (f["clv"] >= pol.core_clv_cut_)
    assert (out["tier"] == "core").eq(core).all()
    assert (out.loc[active & ~core, "tier"] == "value").all()
    assert out["lapsed_buyer"].eq(buyer & ~active).all()
    assert set(out.loc[~active, "tier"]) <= {"seed", "new", "ordinary"}
    seed = ~active & (out["koc_score"] >= 0.5)
    assert (out["tier"] == "seed").eq(seed).all()
    new = ~active & ~seed & (f["tenure_days"] < 30)
    assert (out["tier"] == "new").eq(new).all()
    # the core CLV cut is the 80th percentile of active buyers' CLV, not of every buyer's
    assert pol.core_clv_cut_ == pytest.approx(np.quantile(f.loc[active, "clv"], 0.8))


def test_subset_scores_like_the_whole_base():
    f = _frame()
    pol = TierPolicy().fit(f)
    whole = pol.assign(f)
    part = pol.assign(f.iloc[:10])
    pd.testing.assert_frame_equal(whole.iloc[:10], part)


def test_rfm_segments_and_flags():
    f = _frame()
    pol = TierPolicy(**FIXED).fit(f)
    out = pol.assign(f)
    buyer = f["has_purchased"] > 0
    assert out.loc[~buyer, "rfm_segment"].eq(NO_PURCHASE_SEGMENT).all()
    assert out.loc[buyer, ["r_score", "f_score", "m_score"]].isin([1, 2, 3, 4, 5]).all().all()
    assert out.loc[buyer, "rfm_segment"].notna().all()
    # the most recent, most frequent buyers are Champions
    best = buyer & (f["days_since_last_purchase"] <= 5) & (f["n_orders"] >= 18)
    assert (out.loc[best, "rfm_segment"] == "Champions").all()
    # at risk: a core or value customer (not a lapsed one) whose churn risk is high
    assert out["at_risk"].eq(_active(f, pol) & (f["churn_risk"] >= 0.5)).all()
    assert out["koc_candidate"].eq(out["koc_score"] >= 0.5).all()


def test_policy_needs_columns_and_buyers():
    with pytest.raises(ModelError, match=r"The tier policy needs columns \['clv'"):
        TierPolicy().fit(_frame().drop(columns=["clv"]))
    f = _frame()
    f["has_purchased"] = 0
    with pytest.raises(ModelError, match="no customer in the base has purchased"):
        TierPolicy().fit(f)


def test_next_tier_model_learns_a_stable_ladder():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.random(3000)})
    now = np.where(X["x"] > 0.5, "value", "ordinary")
    nxt = np.where(rng.random(3000) < 0.9, now, "seed")
    m = NextTierModel().fit(X, now, nxt)
    pred, proba = m.predict(X, now)
    assert (pred == now).mean() > 0.95
    assert ((proba > 0.8) & (proba <= 1)).mean() > 0.9


# ---------------------------------------------------------------------------------------------- config

def test_ladder_texts_come_from_config(tmp_path):
    from tiering.config import load_config
    from tiering.models.tiers import TIER_LADDER, ladder

    p = tmp_path / "c.yaml"
    p.write_text("tiers:\n  - tier: core\n    action: Call within 24 hours.\n  - tier: seed\n    label: KOC\n")
    steps = ladder(load_config(p).tiers)
    assert [t.name for t in steps] == ["core", "value", "seed", "new", "ordinary"]
    assert steps[0].action == "Call within 24 hours." and steps[0].label == TIER_LADDER[0].label
    assert steps[2].label == "KOC" and steps[2].action == TIER_LADDER[2].action
    assert steps[1:2] + steps[3:] == TIER_LADDER[1:2] + TIER_LADDER[3:]
    assert ladder(load_config(tmp_path / "c.yaml").tiers)[0].description.startswith("Paid")


def test_ladder_config_errors(tmp_path):
    from tiering.config import load_config
    from tiering.exceptions import ConfigError
    from tiering.models.tiers import ladder

    p = tmp_path / "c.yaml"
    p.write_text("tiers:\n  - tier: platinum\n    action: x\n")
    with pytest.raises(ConfigError, match=r"tiers\.0\.tier.*platinum"):
        load_config(p)
    with pytest.raises(ConfigError, match="tier 'core' is listed twice"):
        ladder([{"tier": "core", "action": "a"}, {"tier": "core", "label": "b"}])
    with pytest.raises(ConfigError, match="unknown tier 'gold'"):
        ladder([{"tier": "gold"}])


def test_thresholds_are_parameters():
    f = _frame()
    strict = TierPolicy(core_min_p_purchase=0.9, seed_min_koc_score=0.9, new_max_tenure_days=100, **FLOORS).fit(f).assign(f)
    loose = TierPolicy(**{**FIXED, "seed_min_koc_score": 0.001}).fit(f).assign(f)  # the KOCs here score ~1 and the rest ~0
    assert (strict["tier"] == "core").sum() < (loose["tier"] == "core").sum()
    assert ((strict["tier"] == "core") <= (loose["tier"] == "core")).all()
    assert strict["koc_candidate"].eq(strict["koc_score"] >= 0.9).all()
    assert strict["koc_candidate"].sum() < loose["koc_candidate"].sum()
    assert (f.loc[strict["tier"] == "new", "tenure_days"] < 100).all()
    # without per-type interaction counts the 90-day social rule stands in for the KOC score
    legacy = TierPolicy(seed_min_social_actions_90d=1).fit(f.drop(columns=["n_share_365d"])).assign(f.drop(columns=["n_share_365d"]))
    assert legacy["koc_candidate"].eq(f["social_actions_90d"] >= 1).all()


# ---------------------------------------------------------------------------------------------- subsets

def test_any_subset_in_any_order_scores_like_the_whole_base():
    f = _frame(n=3000, seed=4)
    pol = TierPolicy().fit(f)
    whole = pol.assign(f)
    rng = np.random.default_rng(1)
    for size in (1, 10, 257):
        idx = rng.choice(len(f), size=size, replace=False)
        part = pol.assign(f.iloc[idx].reset_index(drop=True))
        pd.testing.assert_frame_equal(whole.iloc[idx].reset_index(drop=True), part)


def test_a_base_without_interactions_has_no_seed_by_engagement():
    f = _frame()
    f["engagement_score"] = 0.0
    f[["social_actions_90d", "n_share_365d", "n_referral_365d", "events_365d"]] = 0
    pol = TierPolicy().fit(f)
    out = pol.assign(f)
    assert pol.koc_theta_ is None and (out["koc_score"] == 0).all()
    assert not (out["tier"] == "seed").any()
    nonbuyer = f["has_purchased"] == 0
    assert out.loc[nonbuyer, "tier"].isin(["new", "ordinary"]).all()
    assert out.loc[nonbuyer & (out["tier"] == "ordinary"), "tier_reason"].str.startswith(
        "no purchase yet; KOC score 0.00 below the seed cut 0.50 (0 shares and 0 referrals among 0 interactions in 365 days)").all()


# ---------------------------------------------------------------------------------------------- reasons

def test_every_reason_names_the_values_that_triggered_it():
    f = _frame(n=4000, seed=2)
    pol = TierPolicy(**FIXED).fit(f)
    out = pol.assign(f)
    assert set(out["tier"]) == {"core", "value", "seed", "new", "ordinary"}
    for i in out.index:
        r, x, tier = out.at[i, "tier_reason"], f.loc[i], out.at[i, "tier"]
        orders = f"{x['n_orders']:,.0f} order{'s' if x['n_orders'] != 1 else ''}"
        if tier == "core":
            assert f"bought {orders}; {x['p_purchase']:.0%} likely" in r
            assert f"predicted value {x['clv']:,.2f} is in the top 20% of buyers (core cut {pol.core_clv_cut_:,.2f})" in r
        elif tier == "value":
            assert r.startswith(f"bought {orders}, net spend {x['net_spend']:,.2f}; not core: ")
            assert ("(core needs 60%)" in r) == (x["p_purchase"] < 0.6)
            assert ("below the core cut" in r) == (x["clv"] < pol.core_clv_cut_)
        elif out.at[i, "lapsed_buyer"]:
            assert r.startswith(f"lapsed buyer (win-back): bought {orders}, net spend {x['net_spend']:,.2f}; ")
            assert f"; now {tier}: " in r
            assert ("(value needs 30%)" in r) == (x["p_purchase"] < 0.3)
            assert ("(value needs 20%)" in r) == (x["p_alive"] < 0.2)
            assert ("usual gap between orders (value allows 4.0x)" in r) == (
                x["days_since_last_purchase"] / (x["ipi_mean_days"] or pol.population_gap_days_) > 4)
        else:
            assert r.startswith("no purchase yet; ")
        if tier == "seed":
            assert f"KOC score {out.at[i, 'koc_score']:.2f} (seed needs 0.50): {x['n_share_365d']} shares and " \
                   f"{x['n_referral_365d']} referrals among {x['events_365d']} interactions in 365 days" in r
        elif tier == "new":
            assert r.endswith(f"joined {x['tenure_days']:.0f} days ago (new means under 30 days)")
        elif tier == "ordinary":
            assert f"member for {x['tenure_days']:.0f} days" in r and "below the seed cut 0.50" in r
            if "days_since_last_interaction" in f.columns:
                assert r.endswith(f"; last interaction {x['days_since_last_interaction']:.0f} days ago")


# ---------------------------------------------------------------------------------------------- RFM

STANDARD_RFM_MAP = {  # R score 1..5 (rows) x F score 1..5 (columns), the usual 10-segment map
    1: ["Hibernating", "Hibernating", "At Risk", "At Risk", "Can't Lose"],
    2: ["Hibernating", "Hibernating", "At Risk", "At Risk", "Can't Lose"],
    3: ["About to Sleep", "About to Sleep", "Need Attention", "Loyal", "Loyal"],
    4: ["Promising", "Potential Loyalists", "Potential Loyalists", "Loyal", "Loyal"],
    5: ["New", "Potential Loyalists", "Potential Loyalists", "Champions", "Champions"],
}


def test_segment_table_is_the_standard_map():
    from tiering.models.tiers import SEGMENT_TABLE

    for r, row in STANDARD_RFM_MAP.items():
        for fscore, name in enumerate(row, start=1):
            assert SEGMENT_TABLE[r, fscore] == name, (r, fscore)
    assert len({n for row in STANDARD_RFM_MAP.values() for n in row}) == 10


def test_quintile_scores_and_segments_on_a_known_grid():
    # 25 x 8 buyers: recency and frequency on distinct quintile levels, so every (R, F) pair is known
    rows = []
    for rq in range(5):
        for fq in range(5):
            for k in range(8):
                rows.append({"days_since_last_purchase": 10 + 100 * rq + k, "n_orders": 1 + 10 * fq + k,
                             "net_spend": float(1 + 40 * rq + 8 * fq + k)})
    g = pd.DataFrame(rows)
    n = len(g)
    f = g.assign(has_purchased=1, p_purchase=0.5, churn_risk=0.5, clv=1.0, engagement_score=0.0,
                 social_actions_90d=0, tenure_days=900)
    out = TierPolicy().fit(f).assign(f)
    r_expected = 5 - (g["days_since_last_purchase"] // 100)  # most recent quintile scores 5
    f_expected = 1 + (g["n_orders"] - 1) // 10
    assert (out["r_score"] == r_expected).all() and (out["f_score"] == f_expected).all()
    assert out["m_score"].value_counts().to_dict() == {s: n // 5 for s in range(1, 6)}
    expected = [STANDARD_RFM_MAP[r][fs - 1] for r, fs in zip(r_expected, f_expected)]
    assert out["rfm_segment"].tolist() == expected


# ---------------------------------------------------------------------------------------------- next tier

def test_next_tier_probabilities_over_the_whole_ladder():
    from tiering.models.tiers import TIER_NAMES

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.random(400)})
    now = np.where(X["x"] > 0.5, "value", "ordinary")
    m = NextTierModel(max_iter=20).fit(X, now, now)
    p = m.predict_proba_ladder(X, now)
    assert p.shape == (400, 5) and np.allclose(p.sum(axis=1), 1)
    assert (p[:, TIER_NAMES.index("core")] == 0).all()
    assert (np.array(TIER_NAMES)[p.argmax(axis=1)] == now).all()


def test_next_tier_metrics_by_hand():
    from tiering.tier_eval import next_tier_metrics, stay_proba, transition_proba

    proba = np.array([[0.7, 0.3, 0, 0, 0], [0.2, 0.8, 0, 0, 0], [0, 0, 0, 0.5, 0.5]])
    m = next_tier_metrics(["core", "core", "new"], proba)
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["log_loss"] == pytest.approx(-(np.log(0.7) + np.log(0.2) + np.log(0.5)) / 3)
    # macro-F1 over core, value, new: core 2/3, value 0, new 1
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0 + 1) / 3)
    s = stay_proba(["seed"], 0.8)
    assert s[0].tolist() == pytest.approx([0.05, 0.05, 0.8, 0.05, 0.05])
    t = transition_proba(["core", "core", "value"], ["core", "value", "value"], ["core"], alpha=0)
    assert t[0].tolist() == pytest.approx([0.5, 0.5, 0, 0, 0])
    with pytest.raises(ValueError, match="unknown tiers"):
        next_tier_metrics(["gold"], proba[:1])


def test_next_tier_model_beats_the_stay_baseline_out_of_time():
    from tiering.tier_eval import evaluate_next_tier

    # known truth: customers with x > 0.8 move up one step, everyone else stays (90% / 10% noise)
    def draw(seed, n=1500):
        rng = np.random.default_rng(seed)
        X = pd.DataFrame({"x": rng.random(n), "noise": rng.random(n)})
        now = rng.choice(["value", "seed", "ordinary"], size=n, p=[0.3, 0.2, 0.5])
        up = {"value": "core", "seed": "value", "ordinary": "seed"}
        nxt = np.where(X["x"] > 0.8, [up[t] for t in now], now)
        flip = rng.random(n) < 0.05
        nxt = np.where(flip, "new", nxt)
        return X, now, nxt

    m = evaluate_next_tier(*draw(0), *draw(1), model=NextTierModel(max_iter=40, learning_rate=0.3))
    assert m["next_tier_test_stay_share"] == pytest.approx(m["next_tier_stay_accuracy"])
    assert 0.7 < m["next_tier_stay_accuracy"] < 0.8
    assert m["next_tier_model_accuracy"] > 0.93
    assert m["next_tier_model_macro_f1"] > m["next_tier_stay_macro_f1"] + 0.2
    assert m["next_tier_model_log_loss"] < m["next_tier_markov_log_loss"] < m["next_tier_stay_log_loss"]
