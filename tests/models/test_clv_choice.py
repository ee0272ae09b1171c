"""What ``clv_model: auto`` ships: the thin-evidence rule and the held-out Gini it falls back on."""

import datetime as dt
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, RegressorMixin
from threadpoolctl import threadpool_limits

from tiering.choice import (
    SHORT_HISTORY_WINDOWS,
    THIN_EVIDENCE_SHARE,
    choose_clv,
    heldout_clv_ginis,
    heldout_predictions,
    short_history,
    thin_evidence,
)
from tiering.config import Config
from tiering.datasets import simulate
from tiering.fitting import feature_spec, fit_training_origins
from tiering.validation import load_tables


class _Recorder(RegressorMixin, BaseEstimator):
    """Predicts -1 for a row whose customer (column "cid") it was trained on, else how many customers it saw."""

    def fit(self, X, y):
        self.seen_ = set(X["cid"])
        return self

    def predict(self, X):
        return np.where(X["cid"].isin(self.seen_), -1.0, len(self.seen_))


def _fits(*buyers: int):
    return [SimpleNamespace(frame=pd.DataFrame({"has_purchased": [1] * b + [0] * 5})) for b in buyers]


def test_heldout_predictions_never_learn_from_a_scored_customer_at_any_origin():
    ids = np.array([f"c{i}" for i in range(60)] * 3)  # every customer at three stacked origins
    X = pd.DataFrame({"cid": ids})
    score = np.r_[np.ones(60, bool), np.zeros(120, bool)]  # the latest origin's rows
    pred = heldout_predictions(_Recorder(), X, np.ones(len(X)), ids, score, folds=3)
    # no scored customer was in its model's training rows at any origin, and each model saw the other two thirds
    assert pred.shape == (60,) and (pred == 40).all()


def test_thin_evidence_compares_the_buyers_learned_from():
    assert thin_evidence([], _fits(100))  # nothing fitted out of time
    assert thin_evidence(_fits(20), _fits(100, 100, 100))  # a cohort's first days against the whole cohort
    assert not thin_evidence(_fits(100, 100), _fits(100, 100, 100))
    assert thin_evidence(_fits(149), _fits(300)) and not thin_evidence(_fits(150), _fits(300))  # the share is 0.5
    assert THIN_EVIDENCE_SHARE == 0.5
    assert not thin_evidence([], [])  # nothing learned ships either: the evaluation's word stands


def test_choose_clv_decides_on_held_out_ginis_where_the_evidence_is_thin():
    cfg = Config()  # auto, prefer hybrid, margin 0.01
    thin_oot = {"clv_naive_normalized_gini": 0.65, "clv_btyd_normalized_gini": 0.59, "clv_hybrid_normalized_gini": 0.43}
    assert choose_clv(thin_oot, cfg)[0] == "naive"  # out of time, the hybrid trained on a cohort's first days lost
    chosen, why = choose_clv(thin_oot, cfg, heldout={"naive": 0.61, "btyd": 0.56, "hybrid": 0.64})
    assert chosen == "hybrid" and "customers held out" in why and "too few buyers" in why
    # in time the learned models saw the period's labels: a baseline ahead ships, even within the margin
    assert choose_clv(thin_oot, cfg, heldout={"naive": 0.66, "btyd": 0.56, "hybrid": 0.64})[0] == "naive"
    chosen, why = choose_clv(thin_oot, cfg, heldout={"naive": 0.61, "btyd": 0.645, "hybrid": 0.64})
    assert chosen == "btyd" and "the learned models below btyd" in why
    assert choose_clv({}, cfg, heldout={"naive": 0.6, "hybrid": float("nan")})[0] == "naive"


def test_short_history_is_a_latest_training_origin_with_less_history_than_two_shortest_windows():
    def fit(days: int):  # two buyers (the earliest first purchase ``days`` before the origin) and a prospect
        return SimpleNamespace(frame=pd.DataFrame({"has_purchased": [1, 1, 0], "days_since_first_purchase": [days, 0, 400]}))

    cfg = Config()  # windows 30, 90, 180, 365 days
    assert SHORT_HISTORY_WINDOWS == 2
    assert short_history([fit(1)], cfg)  # a panel's first day: every window is the whole history
    assert short_history([fit(59), fit(400)], cfg)  # the latest training origin decides
    assert not short_history([fit(60)], cfg) and not short_history([fit(400), fit(1)], cfg)
    assert short_history([], cfg)
    cfg.features.windows_days = [7, 30]
    assert short_history([fit(13)], cfg) and not short_history([fit(14)], cfg)  # the shortest window, whatever it is


def test_choose_clv_ships_a_baseline_where_only_the_baselines_were_judged():
    chosen, why = choose_clv({}, Config(), heldout={"naive": 0.32, "btyd": 0.14})
    assert chosen == "naive" and "hybrid not evaluated" in why and "too little history" in why


@pytest.fixture(scope="module")
def training_fits(tmp_path_factory):
    root = tmp_path_factory.mktemp("choice")
    simulate(1500, dt.date(2024, 1, 1), dt.date(2025, 12, 31), seed=11).write(root / "data")
    cfg = Config().with_source_dir(root / "data")
    cfg.validation.quarantine_dir = str(root / "quarantine")
    cfg.model.horizon_days, cfg.model.threads = 90, 1
    with threadpool_limits(1):
        return cfg, fit_training_origins(load_tables(cfg), dt.date(2025, 7, 1), cfg, feature_spec(cfg))


def test_heldout_clv_ginis_score_the_latest_training_origins_buyers(training_fits):
    from tiering.evaluation import normalized_gini

    cfg, fits = training_fits
    assert len(fits) == cfg.model.training_origins
    with threadpool_limits(1):
        got = heldout_clv_ginis(fits, cfg, ("hybrid",))
    latest = fits[0].frame[fits[0].frame["has_purchased"] > 0]
    assert got["naive"] == pytest.approx(normalized_gini(latest["holdout_spend"], latest[f"spend_{max(cfg.features.windows_days)}d"]))
    assert set(got) == {"naive", "btyd", "hybrid"} and -1 <= got["hybrid"] <= 1
    assert heldout_clv_ginis([], cfg, ("hybrid",)) == {}


def test_heldout_clv_ginis_judge_no_learned_model_where_the_history_is_shorter_than_a_window(training_fits):
    """The same training origins, the latest one's purchase history cut to 10 days (as in a data set's first weeks):
    the baselines are scored there as before, the learned models are not, and choose_clv ships a baseline."""
    cfg, fits = training_fits
    cut = fits[0].frame.assign(days_since_first_purchase=lambda f: f["days_since_first_purchase"].clip(upper=10))
    first_days = [replace(fits[0], frame=cut), *fits[1:]]
    assert short_history(first_days, cfg) and not short_history(fits, cfg)
    with threadpool_limits(1):
        got = heldout_clv_ginis(first_days, cfg, ("supervised", "hybrid"))
        full = heldout_clv_ginis(fits, cfg, ())
    assert got == full and set(got) == {"naive", "btyd"}
    assert choose_clv({}, cfg, heldout=got)[0] in {"naive", "btyd"}
