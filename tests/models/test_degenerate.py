"""Every model stage on degenerate data: it falls back to the documented simpler model, says so, never crashes.

Estimators first (hand-built inputs with known answers), then whole training runs (tiering.train.fit)
on tiny hand-built bases: 10 customers, one day of history, no repeat buyers, a horizon longer than
the history, no interactions, no refunds. Real bases (CDNOW, Complete Journey) are in the slow tests
at the end.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from tiering.config import Config
from tiering.exceptions import DataQualityError
from tiering.ladder import TIER_NAMES
from tiering.models.btyd import MeanSpendModel, PooledNBDModel
from tiering.models.propensity import PropensityModel
from tiering.models.tiers import NextTierModel
from tiering.tier_eval import evaluate_next_tier

END = dt.date(2024, 12, 31)


# ----------------------------------------------------------------------------- next-tier classifier


def _pairs(n: int = 120, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"spend": rng.gamma(2, 50, n), "constant": np.ones(n)})
    now = rng.choice(["value", "ordinary"], n)
    nxt = np.where(X["spend"] > 100, "value", "ordinary").astype(object)
    return X, now, nxt


def test_next_tier_class_of_one_member_stops_early_on_the_other_classes():
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, now, nxt = _pairs(n=400)
    nxt[0] = "core"  # a next-tier class with a single member: the Complete Journey failure
    with pytest.raises(ValueError, match="least populated class"):  # what scikit-learn's early stopping does
        HistGradientBoostingClassifier(early_stopping=True).fit(NextTierModel._design(X, now), nxt)
    m = NextTierModel(max_iter=200).fit(X, now, nxt)
    assert m.mode_ == "model" and m.model_.get_params()["early_stopping"] is False
    (note,) = m.fallbacks_
    assert "early stopping without the tiny classes" in note and "'core' has 1 member of 400 pairs" in note
    assert m.model_.n_iter_ == m.model_.max_iter < 200  # the rounds chosen on the 399 other pairs
    assert "core" in m.classes_  # the tiny class is still predicted (with a small probability)
    tier, proba = m.predict(X, now)
    assert set(tier) <= set(TIER_NAMES) and np.all((proba > 0) & (proba <= 1))
    assert (tier == nxt).mean() > 0.9  # it still learned the rule (spend > 100 -> value)


def test_next_tier_few_pairs_fit_without_early_stopping():
    X, now, nxt = _pairs(n=60)
    nxt[0] = "core"
    m = NextTierModel(max_iter=30).fit(X, now, nxt)
    assert m.model_.get_params()["early_stopping"] is False and m.model_.n_iter_ == 30
    assert "no early stopping" in m.fallbacks_[0] and "'core' has 1 member of 60 pairs" in m.fallbacks_[0]


def test_next_tier_large_classes_keep_early_stopping():
    X, now, nxt = _pairs(n=400)
    m = NextTierModel(max_iter=30).fit(X, now, nxt)
    assert m.model_.get_params()["early_stopping"] is True and m.fallbacks_ == []


def test_next_tier_without_pairs_is_the_stay_rule():
    X, now, nxt = _pairs()
    m = NextTierModel().fit(X.iloc[:0], now[:0], nxt[:0])
    assert m.mode_ == "stay" and "stays in its tier" in m.fallbacks_[0]
    tier, proba = m.predict(X, now)
    assert (tier == now).all() and (proba == 1).all()
    ladder = m.predict_proba_ladder(X, now)
    assert (ladder.sum(axis=1) == 1).all() and (ladder[:, TIER_NAMES.index("value")] == (now == "value")).all()


def test_next_tier_one_class_is_predicted_with_certainty():
    X, now, _ = _pairs()
    m = NextTierModel().fit(X, now, np.full(len(X), "value", dtype=object))
    assert m.mode_ == "constant" and "every training pair ends in tier 'value'" in m.fallbacks_[0]
    tier, proba = m.predict(X, now)
    assert (tier == "value").all() and (proba == 1).all()


def test_next_tier_evaluation_without_test_pairs_is_nan_and_notes_the_fallback():
    X, now, nxt = _pairs()
    nxt[:1] = "core"
    notes: list[str] = []
    out = evaluate_next_tier(X, now, nxt, X.iloc[:0], now[:0], nxt[:0], model=NextTierModel(max_iter=20), fallbacks=notes)
    assert out["next_tier_test_customers"] == 0 and np.isnan(out["next_tier_model_accuracy"])
    assert np.isnan(out["next_tier_stay_log_loss"]) and any(n.startswith("next-tier evaluation: early stopping without")
                                                             for n in notes)


# ----------------------------------------------------------------------------- propensity


def _propensity_frame(n: int = 200, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"recency": rng.uniform(0, 300, n), "constant": np.zeros(n),
                         "btyd_p_no_purchase": rng.uniform(0.2, 0.9, n)})


def test_propensity_one_outcome_is_a_constant_rate_aligned_to_btyd():
    X = _propensity_frame()
    m = PropensityModel().fit(X, np.zeros(len(X), dtype=int))
    assert m.calibration_ == "constant" and m.model_ is None
    assert m.base_rate_ == pytest.approx(0.5 / (len(X) + 1))  # Jeffreys: (0 + 0.5) / (n + 1)
    assert "0 of 200 training customers purchased" in m.fallbacks_[0]
    m.align_level(X)
    p = m.predict_purchase(X)
    btyd = 1 - X["btyd_p_no_purchase"].to_numpy()
    assert np.isfinite(p).all() and p.mean() == pytest.approx(btyd.mean(), abs=1e-6)
    assert np.corrcoef(p, btyd)[0, 1] == pytest.approx(1.0)  # the ranking is BTYD's


def test_propensity_without_rows_predicts_one_half():
    X = _propensity_frame().drop(columns="btyd_p_no_purchase")
    m = PropensityModel().fit(X.iloc[:0], np.zeros(0, dtype=int))
    assert m.predict_purchase(X) == pytest.approx(np.full(len(X), 0.5))


def test_propensity_gbm_with_a_tiny_class_falls_back_to_logistic_and_a_constant_feature_is_harmless():
    X = _propensity_frame()
    y = (X["recency"] < 8).astype(int).to_numpy()  # a handful of positives
    assert 0 < y.sum() < 20
    m = PropensityModel(learner="gbm").fit(X, y)
    assert m.learner_ == "logistic" and "logistic regression used instead" in m.fallbacks_[0]
    p = m.predict_purchase(X)
    assert np.isfinite(p).all() and p[y == 1].mean() > p[y == 0].mean()


# ----------------------------------------------------------------------------- BTYD fallbacks


def test_pooled_nbd_without_repeat_buyers_and_with_one_day_of_history():
    x, rec, T = np.zeros(50), np.zeros(50), np.zeros(50)  # everyone bought once, today
    m = PooledNBDModel().fit(x, rec, T)
    assert m.params_ == {"r": 1.0, "alpha": pytest.approx(50 * 30 / 0.5)}  # 0.5 purchases over 30 days each
    e = m.expected_purchases(90, x, rec, T)
    assert e == pytest.approx(np.full(50, 90 * 0.5 / 1500))
    p0 = m.p_no_purchase(90, x, rec, T)
    assert np.all((p0 > 0) & (p0 < 1)) and (m.p_alive(x, rec, T) == 1).all()
    # a customer with more repeat purchases over the same time is expected to buy more
    assert m.expected_purchases(90, 3, 100, 100) > m.expected_purchases(90, 0, 0, 100)


def test_mean_spend_is_the_order_weighted_mean_with_refunds_as_zero():
    m = MeanSpendModel().fit([10.0, 20.0, -5.0], [1, 3, 1])
    assert m.params_["mean"] == pytest.approx((10 + 60 + 0) / 5)
    assert m.expected_spend(np.array([0, 4]), np.array([0, 99])) == pytest.approx([14.0, 14.0])


# ----------------------------------------------------------------------------- whole training runs


def _tx(cust, days, amounts, start=dt.date(2024, 1, 1)) -> pd.DataFrame:
    cust = np.asarray(cust)
    return pd.DataFrame({
        "customer_id": [f"c{c:03d}" for c in cust],
        "order_id": [f"o{i:05d}" for i in range(len(cust))],
        "ordered_at": (pd.Timestamp(start) + pd.to_timedelta(np.asarray(days, float), unit="D")).astype("datetime64[us]"),
        "amount": np.asarray(amounts, float),
    })


def _train(tmp_path, transactions, interactions=None, customers=None, *, as_of=END, horizon_days=90, clv_model="supervised"):
    from tiering.train import feature_spec, features_at, fit
    from tiering.validation import load_tables

    paths = []
    for name, frame in (("transactions", transactions), ("interactions", interactions), ("customers", customers)):
        if frame is not None:
            frame.to_parquet(tmp_path / f"{name}.parquet", index=False)
        paths.append(tmp_path / f"{name}.parquet" if frame is not None else None)
    cfg = Config().with_sources(*paths)
    cfg.validation.quarantine_dir = str(tmp_path / "quarantine")
    cfg.model.horizon_days = horizon_days
    cfg.model.training_origins = 1
    cfg.model.clv_model = clv_model  # these runs check the supervised model's fallbacks; "auto" has its own test
    tables = load_tables(cfg, as_of=as_of)
    with threadpool_limits(1):
        result = fit(tables, as_of=as_of, cfg=cfg)
        scores = result.bundle.predict(features_at(tables, as_of, feature_spec(cfg)))
    return result, scores


def _sane(result, scores, n_customers: int) -> None:
    assert len(scores) == n_customers and scores["customer_id"].is_unique
    assert scores["p_purchase"].between(0, 1).all()  # no NaN either
    assert scores["clv"].notna().all() and (scores["clv"] >= 0).all()
    assert set(scores["tier"]) <= set(TIER_NAMES) and set(scores["next_tier"]) <= set(TIER_NAMES)
    assert result.metrics["fallback_count"] == len(result.fallbacks)
    assert all(f in result.notes for f in result.fallbacks)


def test_ten_customers(tmp_path):
    rng = np.random.default_rng(0)
    result, scores = _train(tmp_path, _tx(rng.integers(0, 10, 60), rng.uniform(0, 360, 60), rng.gamma(2, 20, 60)))
    _sane(result, scores, 10)
    assert isinstance(result.bundle.transaction_model, PooledNBDModel)
    assert any("BetaGeoModel not fitted (only 10 buyers" in f for f in result.fallbacks)
    assert any("the propensity model trains on the 10 customers at 2024-10-02" in f for f in result.fallbacks)
    assert result.bundle.clv_kind == "btyd" and any(f.startswith("CLV final: the supervised model is not fitted")
                                                    for f in result.fallbacks)
    assert np.isnan(result.metrics["propensity_roc_auc"])  # no eval origin: not evaluated, not invented


def test_auto_on_thin_data_picks_a_baseline_and_says_why(tmp_path):
    rng = np.random.default_rng(0)
    result, scores = _train(tmp_path, _tx(rng.integers(0, 10, 60), rng.uniform(0, 360, 60), rng.gamma(2, 20, 60)),
                            clv_model="auto")
    _sane(result, scores, 10)
    # no eval origin: only the baselines were judged at the test origin, and one of them ships
    assert result.bundle.clv_kind in ("naive", "btyd")
    why = next(n for n in result.notes if n.startswith("CLV model "))
    assert f"CLV model {result.bundle.clv_kind} (auto: hybrid not evaluated; normalized Gini at the test origin:" in why
    assert result.metrics["clv_normalized_gini"] == result.metrics[f"clv_{result.bundle.clv_kind}_normalized_gini"]
    assert scores["clv_p10"].isna().all()  # one labelled origin: no interval (said so)
    assert any(f.startswith("CLV interval: not fitted") for f in result.fallbacks)


def test_one_day_of_history(tmp_path):
    rng = np.random.default_rng(1)
    result, scores = _train(tmp_path, _tx(np.arange(50), rng.uniform(0, 0.9, 50), rng.gamma(2, 20, 50), start=END))
    _sane(result, scores, 50)
    assert isinstance(result.bundle.spend_model, MeanSpendModel)
    assert any(f.startswith("evaluation: no customer had purchased by the test origin") for f in result.fallbacks)
    assert any("no labels (a constant rate aligned to BTYD)" in f for f in result.fallbacks)
    assert all(np.isnan(result.metrics[k]) for k in ("clv_normalized_gini", "churn_btyd_roc_auc", "propensity_roc_auc"))
    # the pooled NBD does not turn one day of exposure into a purchase a day
    assert scores["expected_purchases"].max() < 2


def test_no_repeat_buyers(tmp_path):
    rng = np.random.default_rng(2)
    result, scores = _train(tmp_path, _tx(np.arange(200), rng.uniform(0, 360, 200), rng.gamma(2, 20, 200)))
    _sane(result, scores, 200)
    assert any("no customer has a repeat purchase" in f for f in result.fallbacks)
    assert any("Gamma-Gamma not fitted" in f for f in result.fallbacks)
    assert any(f.startswith("propensity: 0 of") and "one outcome only" in f for f in result.fallbacks)
    # everyone has bought: a buyer outside core and value is a lapsed buyer (below the value floor, which without
    # outcomes to learn from is the buyers' mean p_purchase) and falls through to ordinary
    outside = ~scores["tier"].isin(["core", "value"])
    assert set(scores.loc[outside, "tier"]) <= {"ordinary"} and scores.loc[outside, "lapsed_buyer"].all()
    assert scores["tier"].isin(["core", "value"]).mean() > 0.3


def test_horizon_longer_than_the_history(tmp_path):
    rng = np.random.default_rng(3)
    result, scores = _train(tmp_path, _tx(rng.integers(0, 100, 400), rng.uniform(0, 360, 400), rng.gamma(2, 20, 400)),
                            horizon_days=400)
    _sane(result, scores, len(set(scores["customer_id"])))
    assert any("test origin 2023-11-27 (as_of - 400 days)" in f for f in result.fallbacks)
    assert scores["horizon_days"].eq(400).all()


def test_too_few_spenders_for_the_supervised_clv_model(tmp_path):
    # 60 repeat buyers in the first half of 2024; only 5 of them buy again after the eval origin (2024-07-04)
    rng = np.random.default_rng(5)
    early = _tx(np.repeat(np.arange(60), 2), rng.uniform(0, 150, 120), rng.gamma(2, 20, 120))
    late = _tx(np.repeat(np.arange(5), 2), np.tile([200.0, 300.0], 5), rng.gamma(2, 20, 10))
    late["order_id"] = "late-" + late["order_id"]
    result, scores = _train(tmp_path, pd.concat([early, late], ignore_index=True))
    _sane(result, scores, 60)
    assert any(f.startswith("CLV evaluation: the supervised model is not fitted (SpendRegressor needs at least 10")
               for f in result.fallbacks)
    assert result.bundle.clv_kind == "btyd" and np.isnan(result.metrics["clv_supervised_normalized_gini"])
    assert result.metrics["clv_normalized_gini"] == result.metrics["clv_btyd_normalized_gini"]  # BTYD's, said so
    # BG/NBD's unpenalised optimum sits on the boundary (a, b -> 0) where its predictions are not finite
    assert any("BetaGeoModel refitted with penalizer 0.01" in f and "non-finite" in f for f in result.fallbacks)


def test_no_buyer_at_an_origin_is_a_clear_error():
    from tiering.fitting import _fit_btyd

    frame = pd.DataFrame({"has_purchased": [0, 0], "frequency": [0, 0], "recency": [0.0, 0.0], "T": [0.0, 0.0],
                          "monetary_value": [0.0, 0.0], "n_orders": [0, 0], "net_spend": [0.0, 0.0]})
    with pytest.raises(DataQualityError, match="No customer has purchased by 2023-12-31.*later --as-of"):
        _fit_btyd(frame, Config(), dt.date(2023, 12, 31))


@pytest.fixture(scope="module")
def small_sim():
    from tiering.datasets import simulate

    return simulate(180, dt.date(2024, 1, 1), END, seed=3)


def test_no_interactions(tmp_path, small_sim):
    result, scores = _train(tmp_path, small_sim.transactions, None, small_sim.customers)
    _sane(result, scores, len(small_sim.customers))
    assert (scores["engagement_score"] == 0).all() and "seed" not in set(scores["tier"])
    assert np.isfinite(result.metrics["propensity_roc_auc"])  # evaluated out of time on a base without interactions


def test_no_refunds(tmp_path, small_sim):
    tx = small_sim.transactions
    assert (tx["amount"] < 0).any()
    result, scores = _train(tmp_path, tx[tx["amount"] > 0], small_sim.interactions, small_sim.customers)
    _sane(result, scores, len(small_sim.customers))
    assert np.isfinite(result.metrics["clv_normalized_gini"])


# ----------------------------------------------------------------------------- real bases (slow)


@pytest.mark.slow
def test_complete_journey_trains_and_scores_everyone(completejourney_package, tmp_path):
    from tiering.datasets import load_complete_journey

    cj = load_complete_journey()
    keep = set(sorted(cj.customers["customer_id"])[:400])  # a fixed 400-household slice keeps it fast
    result, scores = _train(tmp_path, cj.transactions[cj.transactions["customer_id"].isin(keep)],
                            cj.interactions[cj.interactions["customer_id"].isin(keep)],
                            cj.customers[cj.customers["customer_id"].isin(keep)],
                            as_of=dt.date(2017, 12, 31), horizon_days=90)
    _sane(result, scores, 400)
    assert result.metrics["churn_btyd_roc_auc"] > 0.7 and result.metrics["clv_btyd_normalized_gini"] > 0.6
    assert np.isfinite(result.metrics["propensity_roc_auc"]) and np.isfinite(result.metrics["next_tier_model_accuracy"])


@pytest.mark.slow
def test_cdnow_trains_and_scores_everyone(tmp_path):
    from tiering.datasets import load_cdnow

    tx = load_cdnow()
    keep = set(sorted(tx["customer_id"].unique())[::10])  # every tenth customer (2,357 of the Jan-Mar 1997 cohort)
    result, scores = _train(tmp_path, tx[tx["customer_id"].isin(keep)], as_of=dt.date(1998, 6, 30), horizon_days=180)
    _sane(result, scores, len(keep))
    assert result.metrics["churn_btyd_roc_auc"] > 0.7 and result.metrics["clv_btyd_normalized_gini"] > 0.5
    assert np.isfinite(result.metrics["propensity_roc_auc"])
