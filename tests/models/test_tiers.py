"""The tier policy: ladder order, cut points stored at fit time, reasons, RFM segments."""

import numpy as np
import pandas as pd
import pytest

from tiering.exceptions import ModelError
from tiering.models.tiers import NO_PURCHASE_SEGMENT, NextTierModel, TierPolicy


def _frame(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    buyer = rng.random(n) < 0.4
    return pd.DataFrame({
        "has_purchased": buyer.astype(int),
        "p_purchase": rng.random(n),
        "churn_risk": np.where(buyer, rng.random(n), np.nan),
        "clv": np.where(buyer, rng.gamma(1, 100, n), 0.0),
        "engagement_score": rng.random(n),
        "social_actions_90d": rng.poisson(0.3, n),
        "tenure_days": rng.integers(0, 700, n),
        "days_since_last_purchase": np.where(buyer, rng.integers(0, 700, n), 700),
        "n_orders": np.where(buyer, rng.integers(1, 20, n), 0),
        "net_spend": np.where(buyer, rng.gamma(1, 200, n), 0.0),
    })


def test_ladder_first_match_wins():
    f = _frame()
    pol = TierPolicy().fit(f)
    out = pol.assign(f)
    buyer = f["has_purchased"] > 0
    core = buyer & (f["p_purchase"] >= 0.6) & (f["clv"] >= pol.core_clv_cut_)
    assert (out["tier"] == "core").eq(core).all()
    assert (out.loc[buyer & ~core, "tier"] == "value").all()
    nonbuyer = out[~buyer]
    assert set(nonbuyer["tier"]) <= {"seed", "new", "ordinary"}
    seed = ~buyer & ((f["engagement_score"] >= pol.seed_engagement_cut_) | (f["social_actions_90d"] >= 3))
    assert (out["tier"] == "seed").eq(seed).all()
    new = ~buyer & ~seed & (f["tenure_days"] < 30)
    assert (out["tier"] == "new").eq(new).all()


def test_subset_scores_like_the_whole_base():
    f = _frame()
    pol = TierPolicy().fit(f)
    whole = pol.assign(f)
    part = pol.assign(f.iloc[:10])
    pd.testing.assert_frame_equal(whole.iloc[:10], part)


def test_reasons_name_rule_and_values():
    f = _frame()
    pol = TierPolicy().fit(f)
    out = pol.assign(f)
    row = out[out["tier"] == "core"].index[0]
    reason = out.loc[row, "tier_reason"]
    assert f"p_purchase {f.loc[row, 'p_purchase']:.2f} >= 0.60" in reason and f"{pol.core_clv_cut_:.2f}" in reason
    assert out["tier_reason"].str.len().gt(10).all()


def test_rfm_segments_and_flags():
    f = _frame()
    out = TierPolicy().fit(f).assign(f)
    buyer = f["has_purchased"] > 0
    assert out.loc[~buyer, "rfm_segment"].eq(NO_PURCHASE_SEGMENT).all()
    assert out.loc[buyer, ["r_score", "f_score", "m_score"]].isin([1, 2, 3, 4, 5]).all().all()
    assert out.loc[buyer, "rfm_segment"].notna().all()
    # the most recent, most frequent buyers are Champions
    best = buyer & (f["days_since_last_purchase"] <= 5) & (f["n_orders"] >= 18)
    assert (out.loc[best, "rfm_segment"] == "Champions").all()
    assert out["at_risk"].eq(buyer & (f["churn_risk"] >= 0.5)).all()
    assert out["koc_candidate"].eq(f["social_actions_90d"] >= 3).all()


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
