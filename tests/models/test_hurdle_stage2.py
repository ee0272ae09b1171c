"""The hurdle model's second stage, E[spend | buy], tuned apart from the first: its loss, log target, monotone
constraints and own boosting parameters (the knobs experiments/sweep_online_retail sweeps)."""

from __future__ import annotations

import numpy as np
import pytest
from tests.models.test_intervals import zero_inflated

from tiering.exceptions import ModelError
from tiering.models._hgb import hgb_raw_predictions
from tiering.models.hurdle import HurdleSpend

SIGMA = 0.8  # the log-sd of spend | buy in zero_inflated


def test_log_target_is_brought_back_to_the_mean_by_smearing():
    """Least squares on log spend predicts the log-mean; exp of it is the median, below the mean by
    exp(sigma^2 / 2) = 1.38 for lognormal spend. Duan's smearing factor brings it back near the mean (the training
    residuals are somewhat smaller than fresh ones, so it stays a little under 1.38)."""
    X, y, _ = zero_inflated(8000, 10)
    X_new, _, _ = zero_inflated(4000, 11)
    true_mean_if_buy = np.exp(3 + X_new["x2"].to_numpy() + SIGMA**2 / 2)
    model = HurdleSpend(spend_loss="log_squared_error", threads=1).fit(X, y)
    assert 1.15 < model.spend_smearing_ < np.exp(SIGMA**2 / 2) * 1.05
    ratio = model.predict_spend_if_buy(X_new).mean() / true_mean_if_buy.mean()
    median_only = np.exp(model.spend_.predict(X_new.to_numpy())).mean() / true_mean_if_buy.mean()
    assert 0.85 < ratio < 1.1 and median_only < 0.8, (ratio, median_only)  # the median alone is ~1 / 1.38 of the mean
    np.testing.assert_allclose(model.predict(X_new), model.predict_buy(X_new) * model.predict_spend_if_buy(X_new))


def test_monotone_spend_constraint_holds_where_the_unconstrained_model_wiggles():
    """Constrained on a pure-noise feature, stage 2 never falls as that feature rises; unconstrained it does."""
    X, y, _ = zero_inflated(4000, 12)
    rows = X.head(40)
    grid = np.linspace(-2.5, 2.5, 21)

    def along_noise(model):
        return np.array([model.predict_spend_if_buy(rows.assign(noise=v)) for v in grid])  # grid x rows

    constrained = HurdleSpend(spend_monotone=("noise", "not_a_column"), threads=1).fit(X, y)
    free = HurdleSpend(threads=1).fit(X, y)
    assert (np.diff(along_noise(constrained), axis=0) >= -1e-9).all()
    assert (np.diff(along_noise(free), axis=0) < -1e-6).any()
    assert list(constrained.spend_.monotonic_cst) == [0, 0, 1]


def test_spend_parameters_reach_the_second_stage_only():
    X, y, _ = zero_inflated(2000, 13)
    model = HurdleSpend(spend_loss="poisson", spend_max_iter=7, spend_learning_rate=0.2, spend_min_samples_leaf=30, threads=1).fit(X, y)
    assert (model.spend_.loss, model.spend_.max_iter, model.spend_.learning_rate, model.spend_.min_samples_leaf) == ("poisson", 7, 0.2, 30)
    assert (model.buy_.max_iter, model.buy_.learning_rate, model.buy_.min_samples_leaf) == (200, 0.03, 200)  # the defaults
    assert model.spend_.n_iter_ <= 7 and model.spend_smearing_ == 1.0
    with pytest.raises(ModelError, match=r"spend_loss must be one of \['gamma', 'poisson', 'log_squared_error'\]; got 'huber'"):
        HurdleSpend(spend_loss="huber").fit(X, y)


@pytest.mark.parametrize("loss", ["gamma", "log_squared_error"])
def test_bundle_column_path_matches_predict(loss):
    """The scoring bundle's path (boosters' raw predictions from columns) gives ``predict`` for either target."""
    X, y, _ = zero_inflated(3000, 14)
    model = HurdleSpend(spend_loss=loss, threads=1).fit(X, y)
    model.level_ = 1.7
    X_new, _, _ = zero_inflated(500, 15)
    column = lambda c: X_new[c].to_numpy(float)  # noqa: E731
    raws = hgb_raw_predictions(model._gbm_inputs(), column, len(X_new))
    np.testing.assert_allclose(model._predict_columns(column, len(X_new), raws), model.predict(X_new), rtol=1e-10)


def test_a_bundle_pickled_before_the_spend_parameters_predicts_as_before():
    """Bundles in users' MLflow stores hold HurdleSpend objects without the spend_* attributes: Gamma stage 2."""
    X, y, _ = zero_inflated(2000, 16)
    model = HurdleSpend(threads=1).fit(X, y)
    before = model.predict(X)
    for name in ("spend_loss", "spend_max_iter", "spend_learning_rate", "spend_min_samples_leaf", "spend_monotone", "spend_smearing_"):
        delattr(model, name)
    np.testing.assert_array_equal(model.predict(X), before)
