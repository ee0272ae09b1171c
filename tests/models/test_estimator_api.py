"""The supervised estimators in scikit-learn's ecosystem: Pipeline, cross-validation, clone, arrays
or frames, "not fitted" checks, and the ``threads`` cap on their fits and predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.impute import SimpleImputer
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from threadpoolctl import threadpool_info

from tiering.exceptions import ModelError
from tiering.models import NotFittedModelError, thread_limits
from tiering.models.clv import SpendRegressor
from tiering.models.propensity import PropensityModel


@pytest.fixture(scope="module")
def customers() -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """RFM-like features with missing values, spend and purchase labels driven by them (seeded)."""
    rng = np.random.default_rng(7)
    n = 1200
    frequency = rng.poisson(rng.gamma(0.8, 2.0, n))
    recency_days = rng.uniform(0, 365, n)
    monetary = rng.gamma(3.0, 20.0, n)
    engagement = rng.exponential(1.0, n)
    rate = np.exp(-1.0 + 0.8 * np.log1p(frequency) - recency_days / 300 + 0.6 * engagement)
    purchases = rng.poisson(rate)
    X = pd.DataFrame({"frequency": frequency.astype(float), "days_since_last_purchase": recency_days,
                      "monetary_value": monetary, "engagement_score": engagement})
    X.loc[rng.random(n) < 0.05, "engagement_score"] = np.nan  # a preprocessing step has work to do
    spend = pd.Series(purchases * monetary * rng.gamma(20.0, 0.05, n), name="holdout_spend")
    bought = pd.Series((purchases > 0).astype(int), name="purchased_in_horizon")
    return X, spend, bought


def _small_spend(**kw) -> SpendRegressor:
    return SpendRegressor(max_iter=60, learning_rate=0.1, min_samples_leaf=20, threads=1, **kw)


def test_spend_regressor_in_a_pipeline_cross_validates(customers):
    X, spend, _ = customers
    from sklearn.dummy import DummyRegressor

    pipe = make_pipeline(SimpleImputer(strategy="median"), _small_spend())
    cv, scoring = KFold(3, shuffle=True, random_state=0), "neg_mean_poisson_deviance"
    scores = cross_val_score(pipe, X, spend, cv=cv, scoring=scoring)
    assert scores.shape == (3,) and np.isfinite(scores).all()
    # it learns what the mean spend cannot: a held-out Poisson deviance at least 20% lower on every fold
    constant = cross_val_score(DummyRegressor(), X.fillna(0), spend, cv=cv, scoring=scoring)
    assert (-scores < 0.8 * -constant).all()
    assert cross_val_score(pipe, X, spend, cv=cv).min() > 0  # R^2, the regressor's default score
    fitted = pipe.fit(X, spend)
    assert fitted[-1].n_features_in_ == 4 and not hasattr(fitted[-1], "feature_names_in_")  # arrays from the imputer
    assert (fitted.predict(X) >= 0).all()


def test_propensity_in_a_pipeline_cross_validates_and_beats_recency(customers):
    X, _, bought = customers
    pipe = make_pipeline(SimpleImputer(strategy="median"), PropensityModel(threads=1))
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    auc = cross_val_score(pipe, X, bought, cv=cv, scoring="roc_auc")
    # against the strongest single-feature rule (each feature ranked either way)
    from sklearn.metrics import roc_auc_score

    best_rule = max(max(a, 1 - a) for a in (roc_auc_score(bought, X[c].fillna(0)) for c in X))
    assert auc.min() > best_rule + 0.03
    accuracy = cross_val_score(pipe, X, bought, cv=cv)  # the classifier's default score: predict() is 0/1
    assert ((accuracy > 0.5) & (accuracy <= 1)).all()
    labels = pipe.fit(X, bought).predict(X)
    assert set(np.unique(labels)) <= {0, 1}
    np.testing.assert_array_equal(labels, (pipe.predict_proba(X)[:, 1] >= 0.5).astype(int))


def test_clone_and_params_follow_the_contract():
    for est in (SpendRegressor(learner="glm", threads=2), PropensityModel(learner="gbm", C=0.5, threads=1)):
        params = est.get_params()
        assert params["threads"] == est.threads
        twin = clone(est)
        assert twin is not est and twin.get_params() == params
        assert twin.set_params(threads=None).threads is None and est.threads is not None


@pytest.mark.parametrize("make", [_small_spend, lambda: PropensityModel(threads=1)])
def test_frame_or_array_same_model_and_columns_by_name(customers, make):
    X, spend, bought = customers
    X = X.fillna(0.0)
    y = spend if isinstance(make(), SpendRegressor) else bought
    on_frame, on_array = make().fit(X, y), make().fit(X.to_numpy(), y)
    out = "predict" if isinstance(on_frame, SpendRegressor) else "predict_proba"
    p = getattr(on_frame, out)(X)
    np.testing.assert_allclose(getattr(on_array, out)(X.to_numpy()), p)
    np.testing.assert_allclose(getattr(on_frame, out)(X[X.columns[::-1]]), p)  # a frame fitted with names: by name
    np.testing.assert_allclose(getattr(on_frame, out)(X.to_numpy()), p)  # an array: by position
    with pytest.raises(ModelError, match=r"fitted on 4 feature columns; got 3"):
        getattr(on_array, out)(X.to_numpy()[:, :3])
    with pytest.raises(ModelError, match=r"needs feature columns \['frequency'\]"):
        getattr(on_frame, out)(X.drop(columns=["frequency"]))


def test_not_fitted_is_checked_with_check_is_fitted(customers):
    X, _, _ = customers
    for est, call in ((SpendRegressor(), "predict"), (PropensityModel(), "predict_proba"), (PropensityModel(), "predict")):
        with pytest.raises(NotFittedError, match=f"{type(est).__name__} is not fitted yet"):
            getattr(est, call)(X)
        with pytest.raises(NotFittedModelError):
            getattr(est, call)(X)


def test_thread_limits_caps_openmp_and_blas_and_checks_its_value():
    with thread_limits(1):
        pools = threadpool_info()
        assert pools and all(p["num_threads"] == 1 for p in pools)
    with thread_limits(None):  # no cap: whatever the libraries had
        assert threadpool_info() == threadpool_info()
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ModelError, match=r"threads must be a whole number >= 1"):
            thread_limits(bad)


def test_threads_setting_applies_around_fit_and_predict(customers, monkeypatch):
    """The cap is the estimator's ``threads``: each fit and prediction runs inside thread_limits(threads),
    and the boosters see one OpenMP thread there."""
    import sklearn.ensemble

    X, spend, bought = customers
    X = X.fillna(0.0)
    seen: list[int | None] = []
    real_fit = sklearn.ensemble.HistGradientBoostingRegressor.fit

    def spy(self, *a, **kw):
        seen.append(max((p["num_threads"] for p in threadpool_info() if p["user_api"] == "openmp"), default=None))
        return real_fit(self, *a, **kw)

    monkeypatch.setattr(sklearn.ensemble.HistGradientBoostingRegressor, "fit", spy)
    _small_spend(learner="gbm").fit(X, spend)
    assert seen and all(n in (1, None) for n in seen)  # None: no OpenMP runtime loaded at all
    calls: list[int | None] = []
    import tiering.models.clv as clv_module
    import tiering.models.propensity as propensity_module

    def recorder(threads):
        calls.append(threads)
        return thread_limits(threads)

    monkeypatch.setattr(clv_module, "thread_limits", recorder)
    monkeypatch.setattr(propensity_module, "thread_limits", recorder)
    model = _small_spend(learner="glm").set_params(threads=2).fit(X, spend)
    model.predict(X)
    PropensityModel(threads=3).fit(X, bought).predict_proba(X)
    assert calls == [2, 2, 3, 3]
    # same predictions with any cap: threads change speed, not results
    a = _small_spend(learner="gbm").fit(X, spend).predict(X)
    b = _small_spend(learner="gbm").set_params(threads=None).fit(X, spend).predict(X)
    np.testing.assert_allclose(a, b)
