"""Platt recalibration of p_purchase fitted out of time (PropensityModel.recalibrate), on data with known truth.

The true P(purchase) is expit(shift + 1.5 * x); the model trains in a period with shift -1 and is scored in one
with shift +0.5 (a base that buys more than the training period did). Recalibrated on one sample of the later
period, its Brier score on a fresh sample of that period must come close to the best any Platt map of the same
scores reaches there (the map fitted on that fresh sample itself: blending with a blurred BTYD loses some ranking
that no recalibration can give back)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tiering.models.propensity import PropensityModel


def _period(rng: np.random.Generator, n: int, shift: float, buyers: bool) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    x = rng.normal(size=n)
    p = 1 / (1 + np.exp(-(shift + 1.5 * x)))
    X = pd.DataFrame({"x": x})
    if buyers:  # BTYD's P(no purchase), as blurred as a fitted model's
        X["btyd_p_no_purchase"] = 1 - 1 / (1 + np.exp(-(shift + 1.5 * x + rng.normal(scale=1.0, size=n))))
    return X, (rng.random(n) < p).astype(int), p


def _brier(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((p - y) ** 2))


@pytest.mark.parametrize("buyers", [True, False])
def test_recalibration_out_of_time_recovers_the_later_level(buyers: bool) -> None:
    rng = np.random.default_rng(7)
    X_train, y_train, _ = _period(rng, 4000, -1.0, buyers)
    X_cal, y_cal, _ = _period(rng, 4000, 0.5, buyers)
    X_new, y_new, truth = _period(rng, 20000, 0.5, buyers)
    model = PropensityModel(threads=1).fit(X_train, y_train)
    before = _brier(model.predict_purchase(X_new), y_new)
    oracle = _brier(PropensityModel(threads=1).fit(X_train, y_train).recalibrate(X_new, y_new).predict_purchase(X_new), y_new)
    model.recalibrate(X_cal, y_cal)
    after = _brier(model.predict_purchase(X_new), y_new)
    assert after < before - 0.01  # the shifted level cost more than 0.01 of Brier: recalibration takes most of it back
    assert after - oracle < 0.1 * (before - oracle)
    assert oracle >= _brier(truth, y_new) - 0.005  # sanity: no map beats the true probabilities beyond noise
    assert abs(model.predict_purchase(X_new).mean() - y_new.mean()) < 0.02
    untouched = "prospects" if buyers else "buyers"
    assert model.platt_[untouched] == (0.0, 1.0)  # a group absent from the calibration rows keeps the identity map


def test_recalibration_is_applied_on_the_bundle_path_too() -> None:
    rng = np.random.default_rng(3)
    X_train, y_train, _ = _period(rng, 3000, -1.0, True)
    X_cal, y_cal, _ = _period(rng, 3000, 0.5, True)
    X_new, _, _ = _period(rng, 500, 0.5, True)
    X_new.loc[::3, "btyd_p_no_purchase"] = np.nan  # prospects among buyers
    X_cal.loc[::3, "btyd_p_no_purchase"] = np.nan
    model = PropensityModel(threads=1).fit(X_train.fillna(0.5), y_train).recalibrate(X_cal, y_cal)
    by_columns = model._predict_purchase_columns(lambda c: X_new[c].to_numpy(float), X_new.columns.__contains__, len(X_new))
    np.testing.assert_allclose(by_columns, model.predict_purchase(X_new), rtol=1e-12)
    assert model.platt_["prospects"] != (0.0, 1.0) and model.platt_["buyers"] != (0.0, 1.0)


@pytest.mark.parametrize(("ours", "btyd", "lost"), [(0.70, 0.75, True), (0.745, 0.75, False), (0.80, 0.75, False)])
def test_a_propensity_model_that_loses_to_btyd_out_of_time_is_not_shipped_for_buyers(ours, btyd, lost) -> None:
    from tiering.config import Config
    from tiering.choice import guard_propensity

    rng = np.random.default_rng(5)
    X, y, _ = _period(rng, 2000, -0.5, True)
    X.loc[::4, "btyd_p_no_purchase"] = np.nan  # prospects
    model = PropensityModel(threads=1).fit(X.fillna(0.5), y).recalibrate(X, y)
    before = model.predict_purchase(X)
    metrics = {"churn_model_roc_auc": ours, "churn_btyd_roc_auc": btyd}
    note = guard_propensity(model, metrics, Config())  # default margin 0.01
    after = model.predict_purchase(X)
    buyers = X["btyd_p_no_purchase"].notna().to_numpy()
    assert metrics["propensity_btyd_only"] == float(lost)
    if lost:
        np.testing.assert_allclose(after[buyers], 1 - X.loc[buyers, "btyd_p_no_purchase"].to_numpy())
        assert note is not None and "BTYD's alone" in note
    else:
        assert note is None
        np.testing.assert_array_equal(after, before)
