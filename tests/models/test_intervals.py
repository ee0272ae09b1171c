"""The CLV interval (quantile GBMs + out-of-time conformal step) and the hurdle model, on data with known truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tiering.exceptions import ModelError
from tiering.models import NotFittedModelError
from tiering.models.hurdle import HurdleSpend
from tiering.models.intervals import SpendInterval, interval_metrics


def zero_inflated(n: int, seed: int, scale: float = 1.0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Spend over a horizon with a hurdle structure: P(buy) = sigmoid(2 x1 - 1), spend | buy lognormal with
    log-mean 3 + x2; returns features, the realised spend and the true expected spend."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n), "noise": rng.normal(size=n)})
    p = 1 / (1 + np.exp(-(2 * X["x1"] - 1)))
    mu, sigma = 3 + X["x2"], 0.8
    bought = rng.random(n) < p
    y = np.where(bought, rng.lognormal(mu, sigma) * scale, 0.0)
    return X, y, (p * np.exp(mu + sigma**2 / 2) * scale).to_numpy()


def test_conformal_step_brings_coverage_to_target_on_later_data():
    """Fitted on one period, calibrated on a later one whose spend is 60% higher: the raw quantile interval misses
    the target; the conformalized one covers 80% (+-3 points) of a third, fresh sample from the later period."""
    X_fit, y_fit, _ = zero_inflated(6000, 0)
    X_cal, y_cal, _ = zero_inflated(6000, 1, scale=1.6)
    X_new, y_new, _ = zero_inflated(20000, 2, scale=1.6)
    model = SpendInterval(coverage=0.8, threads=1).fit(X_fit, y_fit)
    raw = interval_metrics(y_new, *model.predict(X_new))
    model.conformalize(X_cal, y_cal)
    cal = interval_metrics(y_new, *model.predict(X_new))
    assert abs(cal["coverage"] - 0.8) < 0.03, cal
    assert abs(raw["coverage"] - 0.8) > abs(cal["coverage"] - 0.8)
    lo, hi = model.predict(X_new)
    assert (lo >= 0).all() and (lo <= hi).all() and model.n_calibration_ == 6000
    # spend is 0 for ~40% of customers: the lower end stays 0 for them (widened only), the upper end does the work
    assert model.offset_lower_ >= 0 and cal["share_below"] <= 0.1 + 0.02


def test_interval_contract_and_clear_errors():
    X, y, _ = zero_inflated(500, 3)
    model = SpendInterval(threads=1)
    with pytest.raises(NotFittedModelError, match="SpendInterval is not fitted"):
        model.predict(X)
    with pytest.raises(ModelError, match="coverage must be between 0 and 1"):
        SpendInterval(coverage=80).fit(X, y)
    with pytest.raises(ModelError, match="at least 10 customers who spent"):
        SpendInterval().fit(X, np.zeros(len(X)))
    fitted = clone(model).fit(X, y)
    with pytest.raises(ModelError, match="at least 20 labelled customers"):
        fitted.conformalize(X.head(5), y[:5])
    # columns by name: another order at predict time gives the same interval
    a = fitted.predict(X)
    b = fitted.predict(X[["noise", "x2", "x1"]])
    np.testing.assert_allclose(a[0], b[0]) and np.testing.assert_allclose(a[1], b[1])


def test_hurdle_recovers_the_expected_spend_and_its_stages():
    X, y, truth = zero_inflated(8000, 4)
    X_new, _, truth_new = zero_inflated(4000, 5)
    model = HurdleSpend(threads=1).fit(X, y)
    pred = model.predict(X_new)
    from scipy.stats import spearmanr

    assert spearmanr(pred, truth_new).statistic > 0.9
    # the product of its stages; stage 1 is calibrated (the true P(buy) is sigmoid(2 x1 - 1))
    np.testing.assert_allclose(pred, model.predict_buy(X_new) * model.predict_spend_if_buy(X_new))
    p_true = 1 / (1 + np.exp(-(2 * X_new["x1"].to_numpy() - 1)))
    assert abs(model.predict_buy(X_new).mean() - p_true.mean()) < 0.02
    assert spearmanr(model.predict_spend_if_buy(X_new), X_new["x2"]).statistic > 0.9  # stage 2 follows log-mean 3 + x2
    assert model.buy_rate_ == pytest.approx((y > 0).mean())
    # a scikit-learn regressor: clone, Pipeline, score
    pipe = make_pipeline(StandardScaler(), clone(model)).fit(X.to_numpy(), y)
    assert pipe.predict(X_new.to_numpy()).shape == (4000,)


def test_hurdle_needs_both_outcomes():
    X, y, _ = zero_inflated(300, 6)
    with pytest.raises(ModelError, match="at least 10 customers who spent and 10 who did not"):
        HurdleSpend().fit(X, np.ones(len(X)))
    with pytest.raises(ModelError, match="300 feature rows but 2 labels"):
        HurdleSpend().fit(X, y[:2])


def test_buyers_and_prospects_are_calibrated_apart():
    """A base of buyers (spend as above) and as many prospects who almost never buy: calibrated on one pool, the
    prospects' certain zeros would carry the coverage and the buyers' interval would cover far fewer than 80%;
    calibrated per group (has_purchased), the buyers are covered at 80% (+-3 points) on fresh data and the
    prospects at least at 80% (97% of them spend 0, which no interval of spend can miss)."""
    def base(n, seed):
        X, y, _ = zero_inflated(n, seed)
        rng = np.random.default_rng(seed + 100)
        prospect = rng.random(n) < 0.5
        y = np.where(prospect & (rng.random(n) > 0.03), 0.0, y)
        return X.assign(has_purchased=(~prospect).astype(float)), y

    X_fit, y_fit = base(8000, 7)
    X_cal, y_cal = base(8000, 8)
    X_new, y_new = base(20000, 9)
    grouped = SpendInterval(threads=1).fit(X_fit, y_fit).conformalize(X_cal, y_cal)
    pooled = clone(grouped).set_params(group_column=None).fit(X_fit, y_fit).conformalize(X_cal, y_cal)
    buyer = X_new["has_purchased"].to_numpy() > 0
    lo, hi = grouped.predict(X_new)
    assert abs(interval_metrics(y_new[buyer], lo[buyer], hi[buyer])["coverage"] - 0.8) < 0.03
    assert interval_metrics(y_new[~buyer], lo[~buyer], hi[~buyer])["coverage"] >= 0.8
    assert interval_metrics(y_new[buyer], *(v[buyer] for v in pooled.predict(X_new)))["coverage"] < 0.75
    assert set(grouped.group_offsets_) == {False, True} and pooled.group_offsets_ == {}
