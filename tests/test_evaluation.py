import numpy as np
import pytest

from tiering.evaluation import calibration_table, clv_metrics, normalized_gini, propensity_metrics, top_decile_capture


def test_normalized_gini_perfect_reversed_and_random():
    rng = np.random.default_rng(0)
    y = rng.gamma(0.5, 100, 2000) * (rng.random(2000) < 0.4)
    assert normalized_gini(y, y) == pytest.approx(1.0)
    assert normalized_gini(y, -y) < -0.9
    assert abs(normalized_gini(y, rng.random(2000))) < 0.1


def test_gini_ignores_order_inside_ties():
    y = np.array([0.0, 10.0, 0.0, 5.0])
    p = np.array([1.0, 1.0, 0.0, 0.0])  # all tied pairs
    assert normalized_gini(y, p) == pytest.approx(normalized_gini(y[::-1], p[::-1]))


def test_top_decile_capture_and_aggregate_error():
    y = np.r_[np.full(10, 100.0), np.zeros(90)]
    assert top_decile_capture(y, y) == 1.0
    m = clv_metrics(y, y * 1.1)
    assert m["aggregate_error_pct"] == pytest.approx(10.0)
    assert m["mae"] == pytest.approx(1.0)


def test_propensity_metrics_and_calibration():
    rng = np.random.default_rng(1)
    p = rng.random(5000)
    y = (rng.random(5000) < p).astype(int)
    m = propensity_metrics(y, p)
    assert m["roc_auc"] == pytest.approx(5 / 6, abs=0.02)  # AUC of p ~ U(0,1), y ~ Bernoulli(p)
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2))
    assert m["top_decile_lift"] > 1.7
    for row in calibration_table(y, p):
        assert abs(row["mean_predicted"] - row["observed_rate"]) < 0.06


def test_plots_write_png_files(tmp_path):
    from tiering.plots import calibration_curve, decile_chart, gain_curve

    rng = np.random.default_rng(2)
    y = rng.gamma(0.5, 100, 500) * (rng.random(500) < 0.4)
    p = rng.random(500)
    b = (rng.random(500) < p).astype(int)
    paths = [gain_curve(y, {"model": y + rng.random(500), "random": p}, tmp_path / "g.png"),
             decile_chart(y, {"model": y}, tmp_path / "sub/d.png"),
             calibration_curve(b, {"model": p}, tmp_path / "c.png")]
    for path in paths:
        assert path.exists() and path.read_bytes()[:4] == b"\x89PNG"


# ---- hiatus rule and the honest comparison (issue 19)

import pandas as pd  # noqa: E402

from tiering.evaluation import (  # noqa: E402
    choose_hiatus,
    compare_to_baselines,
    fast_auc,
    hiatus_active,
    hiatus_proba,
    hiatus_rates,
    ranking_auc,
    verdict,
)


def test_hiatus_rule_on_a_hand_built_frame():
    days = np.array([0, 10, 100, 273, 274, 400])
    bought = np.array([1, 1, 0, 1, 0, 0])
    assert hiatus_active(days, 273).tolist() == [1, 1, 1, 1, 0, 0]  # at most 9 months ago: active
    assert hiatus_active(days, 90).tolist() == [1, 1, 0, 0, 0, 0]
    ra, ri = hiatus_rates(days, bought, 273)
    assert (ra, ri) == (0.75, 0.0)
    assert hiatus_proba(days, 273, ra, ri).tolist() == [0.75] * 4 + [0.0] * 2
    # its ROC-AUC is the rule's balanced accuracy: TPR 3/3, TNR 2/3
    assert fast_auc(bought, hiatus_active(days, 273)) == pytest.approx(0.5 * (1 + 2 / 3))
    with pytest.raises(ValueError, match="hiatus_days must be a positive"):
        hiatus_active(days, 0)


def test_choose_hiatus_separates_buyers_and_prefers_the_shortest_tie():
    # buyers last bought within 60 days, non-buyers more than 200 days ago: any hiatus in [60, 200) separates
    days = np.r_[np.arange(0, 61, 5), np.arange(201, 500, 20)]
    bought = np.r_[np.ones(13), np.zeros(15)]
    assert choose_hiatus([(days, bought)]) == 70  # the first 2-week step at or above 60 days
    assert choose_hiatus([(days, bought)], candidates=[30, 120, 365]) == 120
    with pytest.raises(ValueError, match="both buyers and non-buyers"):
        choose_hiatus([(days, np.ones(len(days)))])


def test_fast_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(3)
    y = rng.random(3000) < 0.3
    s = np.round(rng.random(3000) + 0.4 * y, 1)  # many ties
    assert fast_auc(y, s) == pytest.approx(ranking_auc(y, s), abs=1e-12)


def _brier_frames(n, origins=4, seed=0):
    """Known truth: p ~ U(0.3, 0.6), y ~ Bernoulli(p); the model predicts p, baseline a p + 0.1, baseline b
    p - 0.2. Expected Brier difference to the best baseline (a): 0.1^2 = 0.01."""
    rng = np.random.default_rng(seed)
    frames = {}
    for k in range(origins):
        p = rng.uniform(0.3, 0.6, n)
        frames[k] = pd.DataFrame({"customer_id": np.arange(n).astype(str), "y": (rng.random(n) < p).astype(float),
                                  "model": p, "a": p + 0.1, "b": p - 0.2})
    return frames


def test_bootstrap_interval_covers_a_known_difference():
    # over 60 independent data sets the 90% interval holds the true difference 0.01 about 90% of the time
    covered = []
    for k in range(60):
        r = compare_to_baselines(_brier_frames(300, seed=100 + k), models=["model"], baselines=["a", "b"],
                                 metric="brier", target="y", replicates=150, seed=k)[0]
        covered.append(r["ci_low"] < 0.01 < r["ci_high"])
    assert 0.8 <= np.mean(covered) <= 1.0


def test_bootstrap_interval_is_seeded_and_narrows_with_more_customers():
    def run(n, seed=1):
        return compare_to_baselines(_brier_frames(n), models=["model"], baselines=["a", "b"], metric="brier",
                                    target="y", replicates=300, seed=seed)[0]

    small = run(500)
    assert small == run(500)  # seeded: the same draws, the same interval
    assert small != run(500, seed=2)
    assert small["best_baselines"] == "a 4" and small["origins"] == 4
    big = run(8000)
    assert big["ci_low"] < 0.01 < big["ci_high"] and big["mean_diff"] == pytest.approx(0.01, abs=0.002)
    assert (big["ci_high"] - big["ci_low"]) < 0.5 * (small["ci_high"] - small["ci_low"])  # ~1/4 with 16x the customers
    assert big["share_won"] == 1.0 and verdict(big) == "model wins"
    # a model worse than the best baseline: the difference is negative and the verdict says so
    worse = compare_to_baselines(_brier_frames(8000), models=["b"], baselines=["a", "model"], metric="brier",
                                 target="y", replicates=200, seed=1)[0]
    assert worse["mean_diff"] == pytest.approx(-0.04, abs=0.004) and worse["share_won"] == 0.0
    assert verdict(worse) == "baseline wins"


def test_best_baseline_is_chosen_per_origin():
    # origin 0: baseline a is perfect; origin 1: baseline b is; the model is second best at both
    y = np.array([0.0, 0.0, 1.0, 1.0])
    f0 = pd.DataFrame({"customer_id": list("wxyz"), "y": y, "m": [0.1, 0.3, 0.2, 0.9], "a": [0.1, 0.2, 0.8, 0.9],
                       "b": [0.9, 0.1, 0.2, 0.3]})
    f1 = f0.assign(a=[0.9, 0.1, 0.2, 0.3], b=[0.1, 0.2, 0.8, 0.9])
    r = compare_to_baselines({0: f0, 1: f1}, models=["m"], baselines=["a", "b"], metric="roc_auc", target="y",
                             replicates=50, seed=0)[0]
    assert r["best_baseline_mean"] == 1.0 and r["model_mean"] == 0.75 and r["mean_diff"] == -0.25
    assert r["share_won"] == 0.0 and set(r["best_baselines"].split(", ")) == {"a 1", "b 1"}
