"""Supervised and hybrid CLV: the estimator contract, training out of time without leakage, level alignment."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from tiering.config import Config
from tiering.datasets import simulate
from tiering.exceptions import ModelError
from tiering.models.clv import BTYD_FEATURES, SpendRegressor, signed_log
from tiering.train import clv_columns, feature_spec, fit_clv, fit_origin, fit_propensity, fit_training_origins, training_origins
from tiering.validation import load_tables

START, END = dt.date(2024, 1, 1), dt.date(2025, 12, 31)
ORIGIN = dt.date(2025, 7, 1)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with threadpool_limits(1):  # small fits: OpenMP threads only contend on a shared machine
        yield


def _cfg(root, data_dir, horizon_days=90):
    cfg = Config().with_source_dir(data_dir)
    cfg.validation.quarantine_dir = str(root / "quarantine")
    cfg.model.horizon_days = horizon_days
    return cfg


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    root = tmp_path_factory.mktemp("clv")
    data = simulate(1500, START, END, seed=11)
    data.write(root / "full")
    # the same customers with every transaction after ORIGIN removed: what a model scoring at ORIGIN may see
    cut = data.transactions[data.transactions["ordered_at"] < pd.Timestamp(ORIGIN + dt.timedelta(days=1))]
    data.transactions = cut
    data.write(root / "cut")
    cfg = _cfg(root, root / "full")
    return cfg, load_tables(cfg), load_tables(_cfg(root, root / "cut"))


@pytest.fixture(scope="module")
def fits(sim):
    cfg, tables, _ = sim
    spec = feature_spec(cfg)
    return fit_origin(tables, ORIGIN, cfg, spec), fit_training_origins(tables, ORIGIN, cfg, spec)


def test_spend_regressor_contract(fits):
    test, (train, *_) = fits
    X, y = clv_columns(train, "hybrid"), train.frame["holdout_spend"]
    model = SpendRegressor(random_state=0)
    assert model.get_params()["learner"] == "ensemble" and not hasattr(model, "gbm_")  # __init__ only stores
    model.fit(X, y)
    assert list(model.feature_names_in_) == list(X.columns) and model.n_train_ == len(X) and model.level_ == 1.0
    p = model.predict(clv_columns(test, "hybrid"))
    assert p.shape == (len(test.frame),) and np.isfinite(p).all() and (p >= 0).all()
    # the same rows in another column order give the same predictions: columns are taken by name
    Xs = clv_columns(test, "hybrid")
    assert np.allclose(model.predict(Xs[Xs.columns[::-1]]), p)
    with pytest.raises(ModelError, match="needs feature columns"):
        model.predict(Xs.drop(columns=["btyd_clv"]))
    with pytest.raises(ModelError, match="not fitted yet"):
        SpendRegressor().predict(Xs)
    with pytest.raises(ModelError, match="learner must be"):
        SpendRegressor(learner="xgb").fit(X, y)
    with pytest.raises(ModelError, match="at least 10 customers who spent"):
        SpendRegressor().fit(X, np.zeros(len(X)))


def test_negative_net_spend_is_clipped_and_level_aligns(fits):
    _, (train, *_) = fits
    X = clv_columns(train, "supervised")
    y = train.frame["holdout_spend"].to_numpy()
    refunds = np.where(y == 0, -5.0, y)  # a net refund is no negative value to learn
    a = SpendRegressor(learner="glm").fit(X, y).predict(X)
    b = SpendRegressor(learner="glm").fit(X, refunds).predict(X)
    assert np.allclose(a, b)
    m = SpendRegressor(learner="glm").fit(X, y).align_level(X, 1234.5)
    assert m.predict(X).sum() == pytest.approx(1234.5)


def test_signed_log_handles_probabilities_and_missing_values():
    X = pd.DataFrame({"spend": [-9.0, 0.0, 9.0], "btyd_p_alive": [0.5, np.nan, 1.0]})
    out = signed_log(X)
    assert np.allclose(out[:, 0], [-np.log(10), 0, np.log(10)])
    assert out[0, 1] == pytest.approx(0.0) and out[1, 1] == 0.0 and out[2, 1] > 9


def test_supervised_uses_no_btyd_output_and_hybrid_all(fits):
    test, train_fits = fits
    cfg = Config()
    cfg.model.horizon_days = 90
    sup, hyb = fit_clv("supervised", train_fits, cfg, test), fit_clv("hybrid", train_fits, cfg, test)
    assert not set(BTYD_FEATURES) & set(sup.feature_names_in_)
    assert set(BTYD_FEATURES) <= set(hyb.feature_names_in_)
    # level aligned without labels to BTYD's total CLV over the scoring base's buyers
    buyer = test.frame["has_purchased"].to_numpy() > 0
    target = np.nansum(test.btyd["btyd_clv"].to_numpy()[buyer])
    assert hyb.predict(clv_columns(test, "hybrid"))[buyer].sum() == pytest.approx(target, rel=1e-9)


def test_training_labels_end_by_the_scoring_origin(sim):
    cfg, _, _ = sim
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"training_origins": 3})})
    dates = training_origins(ORIGIN, cfg)
    assert dates == [ORIGIN - dt.timedelta(days=90 + 30 * k) for k in range(3)]
    assert all(t + dt.timedelta(days=cfg.model.horizon_days) <= ORIGIN for t in dates)


def test_no_leakage_data_after_the_origin_changes_nothing(sim):
    """Models fitted to score at ORIGIN are identical whether or not the data after ORIGIN exist."""
    cfg, full, cut = sim
    spec = feature_spec(cfg)
    preds = []
    for tables in (full, cut):
        test = fit_origin(tables, ORIGIN, cfg, spec, labels=False)
        train_fits = fit_training_origins(tables, ORIGIN, cfg, spec)
        clv = fit_clv("hybrid", train_fits, cfg, test).predict(clv_columns(test, "hybrid"))
        prop = fit_propensity(train_fits, cfg, test).predict_purchase(
            test.bundle.propensity_input(test.frame[test.bundle.feature_columns], test.btyd))
        preds.append(pd.DataFrame({"clv": clv, "p": prop}, index=test.frame["customer_id"].to_numpy()).sort_index())
    a, b = preds
    assert list(a.index) == list(b.index)
    # features summed over other rows differ in the last bits (1e-11), which can flip a tree split for a
    # customer or two; labels read after ORIGIN would move most predictions by far more
    for col in ("clv", "p"):
        rel = np.abs(a[col] - b[col]) / np.maximum(np.abs(b[col]), 1e-9)
        assert (rel < 1e-4).mean() > 0.99 and rel.max() < 0.1, (col, float(rel.max()))


@pytest.mark.parametrize("learner", ["logistic", "gbm"])
def test_propensity_level_follows_btyd_at_the_scoring_origin(fits, learner):
    from tiering.models.propensity import PropensityModel

    test, train_fits = fits
    (train,) = train_fits[:1]
    X = train.bundle.propensity_input(train.frame[train.bundle.feature_columns], train.btyd)
    Xs = test.bundle.propensity_input(test.frame[test.bundle.feature_columns], test.btyd)
    y = train.frame["purchased_in_horizon"]
    alone = PropensityModel(learner=learner, btyd_weight=0.0).fit(X, y).align_level(Xs)
    p = alone.predict_purchase(Xs)
    btyd = 1 - Xs["btyd_p_no_purchase"].to_numpy()
    buyer = np.isfinite(btyd)
    assert p[buyer].mean() == pytest.approx(btyd[buyer].mean(), abs=1e-6)  # the level of BTYD fitted at the origin
    assert ((p >= 0) & (p <= 1)).all()
    blended = PropensityModel(learner=learner, btyd_weight=0.5).fit(X, y).align_level(Xs).predict_purchase(Xs)
    np.testing.assert_allclose(blended[buyer], (p[buyer] + btyd[buyer]) / 2, atol=1e-9)
    np.testing.assert_allclose(blended[~buyer], p[~buyer], atol=1e-9)  # non-buyers have no BTYD prediction
    with pytest.raises(ModelError, match="learner must be"):
        PropensityModel(learner="forest").fit(X, y)
