"""tiering.tier_eval: the per-origin ladder metrics the backtest reports (by hand), and the outcomes they read."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from tiering.tier_eval import horizon_outcomes, ladder_metrics, tier_outcomes

TIERS = pd.DataFrame({"customer_id": list("abcdef"), "tier": ["core", "value", "value", "seed", "ordinary", "ordinary"],
                      "lapsed_buyer": [False, False, False, True, True, False],
                      "at_risk": [False, True, False, False, False, False]})
OUT = pd.DataFrame({"customer_id": list("abcdef"), "holdout_spend": [100.0, 30.0, 10.0, 0.0, 5.0, 0.0],
                    "purchased_in_horizon": [1, 1, 0, 0, 1, 0], "social_actions_next": [0, 0, 0, 4, 0, 1]})
FEATURES = pd.DataFrame({"customer_id": list("abcdef"), "has_purchased": [1, 1, 1, 1, 1, 0]})


def test_ladder_metrics_by_hand():
    m = ladder_metrics(TIERS, OUT, FEATURES)
    assert m["core_spend_mean"] == 100 and m["value_spend_mean"] == 20 and m["ordinary_spend_mean"] == 2.5
    # spend falls down the ladder; value returns no more often than ordinary (0.5 each): the strict check fails
    assert m["monotone_spend"] == 1.0 and m["monotone_repurchase"] == 0.0
    assert m["core_vs_value_spend"] == 5.0 and m["value_vs_ordinary_spend"] == 8.0
    assert m["value_at_risk_share"] == 0.5 and m["core_at_risk_share"] == 0.0
    assert m["seed_social_lift"] == pytest.approx(4 / 0.5)  # seed's 4 over ordinary's 0.5 (new is empty)
    # the trivial rule on the same customers: every buyer (a..e) is "value"
    assert m["ever_bought_value_spend_mean"] == pytest.approx(145 / 5)
    assert m["ever_bought_value_repurchase_rate"] == pytest.approx(3 / 5)
    assert m["active_repurchase_gain"] == pytest.approx(2 / 3 - 3 / 5)
    # an empty tier defines no mean: left out, never NaN; the names are tier_outcomes' without "tier_"
    assert "new_spend_mean" not in m and all(np.isfinite(v) for v in m.values())
    _, full = tier_outcomes(TIERS, OUT)
    assert {f"tier_{k}" for k in m} - set(full) == {"tier_ever_bought_value_spend_mean",
                                                       "tier_ever_bought_value_repurchase_rate", "tier_active_repurchase_gain"}


def test_a_ladder_upside_down_fails_the_checks():
    swapped = TIERS.assign(tier=TIERS["tier"].replace({"core": "ordinary", "ordinary": "core"}))
    m = ladder_metrics(swapped, OUT)
    assert m["monotone_spend"] == 0.0 and m["monotone_repurchase"] == 0.0 and m["core_vs_value_spend"] < 1
    no_value = TIERS.assign(tier=TIERS["tier"].replace({"value": "core"}))
    assert "monotone_spend" not in ladder_metrics(no_value, OUT)  # undefined without a value tier: absent


def test_horizon_outcomes_count_shares_and_referrals_in_the_horizon_only():
    import ibis

    origin = dt.date(2025, 3, 31)
    ix = ibis.memtable(pd.DataFrame({
        "customer_id": ["a", "a", "b", "b", "c"],
        "occurred_at": pd.to_datetime(["2025-03-31 23:00", "2025-04-01 00:00", "2025-04-30 23:59", "2025-05-01 00:00",
                                       "2025-04-10 00:00"]),
        "event_type": ["share", "Referral", "share", "share", "view"],
    }))
    out = horizon_outcomes(OUT.head(3), ix, origin, 30)
    assert out.set_index("customer_id")["social_actions_next"].to_dict() == {"a": 1.0, "b": 1.0, "c": 0.0}
    assert list(horizon_outcomes(OUT.head(3), None, origin, 30).columns) == ["customer_id", "holdout_spend",
                                                                             "purchased_in_horizon"]


def test_core_is_judged_against_the_top_fifth_of_those_who_spent():
    # ten customers, six moved money, five of them spent (f only returned goods: net -5): the top 20% of the five
    # spenders is one customer (a, 100). Core holds a and b: it catches a (recall 1), half of core is a top spender
    # (precision 0.5). Wrong populations give F1 1.0 here: the whole base's top 20% (two: a, b), or the six with
    # a nonzero net spend (ceil(1.2) = 2: a, b).
    tiers = pd.DataFrame({"customer_id": list("abcdefghij"), "tier": ["core", "core", *["value"] * 4, *["ordinary"] * 4]})
    out = pd.DataFrame({"customer_id": list("abcdefghij"), "holdout_spend": [100.0, 50, 40, 30, 20, -5, 0, 0, 0, 0],
                        "purchased_in_horizon": [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]})
    m = ladder_metrics(tiers, out)
    assert m["core_precision_top20"] == 0.5 and m["core_recall_top20"] == 1.0
    assert m["core_f1_top20"] == pytest.approx(2 / 3)
    # ties at the cut are all in: a and b both at 100 are both top spenders, and core is exactly them
    assert ladder_metrics(tiers, out.assign(holdout_spend=[100.0, 100, 40, 30, 20, -5, 0, 0, 0, 0]))["core_f1_top20"] == 1.0
    # a core that catches none of them scores 0; nobody spending leaves the metric undefined (absent)
    assert ladder_metrics(tiers.assign(tier=tiers["tier"][::-1].to_numpy()), out)["core_f1_top20"] == 0.0
    assert "core_f1_top20" not in ladder_metrics(tiers, out.assign(holdout_spend=0.0))
