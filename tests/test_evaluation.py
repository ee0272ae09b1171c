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
