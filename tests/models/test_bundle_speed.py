"""ScoringBundle.predict's fast path (arrays, shared BTYD terms, boosters on coded inputs, reasons per distinct
value) gives the scores of the straightforward path: frames through each model's public predict, the boosters'
own predict on the float inputs, and the tier reasons formatted row by row (the code before issue #17).
Equality only; timings are in benchmarks/bench_predict.py."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

import tiering as tg
from tiering.datasets import simulate
from tiering.models.bundle import model_features
from tiering.models._hgb import hgb_raw_predictions
from tiering.models.clv import SpendRegressor, signed_log, tree_input
from tiering.models.hurdle import HurdleSpend
from tiering.models.intervals import SpendInterval

START, END = dt.date(2024, 1, 1), dt.date(2025, 12, 31)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def base():
    data = simulate(5000, START, END, seed=3)  # over 2,000 rows: the boosters take the coded path
    return tg.features(data.transactions, data.interactions, data.customers, as_of=END)


@pytest.fixture(scope="module", params=[("hurdle", "bgnbd"), ("hybrid", "paretonbd")], ids=lambda p: "-".join(p))
def bundle(request):
    clv_model, btyd_model = request.param
    data = simulate(2500, START, END, seed=98)
    return tg.fit(data.transactions, data.interactions, data.customers, as_of=END, clv_model=clv_model,
                  btyd_model=btyd_model, progress=False).bundle


# ------------------------------------------------------------------------------------------ the reference path

def _ref_fmt(x: pd.Series, spec: str = "{:.2f}") -> pd.Series:
    return x.map(spec.format)


def _reference_reasons(pol, f: pd.DataFrame, tier: np.ndarray, buyer, lapsed, is_core, koc) -> pd.Series:
    """The rule that fired, in operator words, with the customer's values and the thresholds.

    Each text is formatted only for the rows its rule covers (formatting every number of every
    row for every rule was a quarter of batch scoring's model time).
    """
    p_min, clv_cut = pol._core_floor(), pol.core_clv_cut_
    top_clv = f"{1 - pol.core_clv_quantile:.0%}"
    v_floor = pol._learned("value_min_p_purchase_", 0.0)
    a_floor = pol._learned("value_min_p_alive_", 0.0)
    cap = pol._learned("value_max_gap_ratio_", float("inf"))
    koc_cut = pol._koc_cut()
    w = pol._learned("koc_window_days_", None)
    has_counts = w is not None and all(c in f.columns for c in (f"n_share_{w}d", f"n_referral_{w}d", f"events_{w}d"))

    def P(g):
        return _ref_fmt(g["p_purchase"].fillna(0), "{:.0%}")

    def C(g):
        return _ref_fmt(g["clv"].fillna(0), "{:,.2f}")

    def N(g):
        return g["n_orders"].map(lambda n: f"{n:,.0f} order" + ("" if n == 1 else "s"))

    def T(g):
        return _ref_fmt(g["tenure_days"], "{:.0f}")

    def K(g):
        return _ref_fmt(pd.Series(koc_r[g.index], index=g.index), "{:.2f}")

    def social(g):
        if has_counts:
            return (_ref_fmt(g[f"n_share_{w}d"].fillna(0), "{:.0f}") + " shares and " + _ref_fmt(g[f"n_referral_{w}d"].fillna(0), "{:.0f}")
                    + " referrals among " + _ref_fmt(g[f"events_{w}d"].fillna(0), "{:.0f}") + f" interactions in {w} days")
        return _ref_fmt(g["social_actions_90d"], "{:.0f}") + " shares or referrals in 90 days"

    def core(g):
        return ("bought " + N(g) + "; " + P(g) + f" likely to buy within the horizon (core needs {p_min:.0%}) and "
                "predicted value " + C(g) + f" is in the top {top_clv} of buyers (core cut {clv_cut:,.2f})")

    def value(g):
        low_p = ~(g["p_purchase"].to_numpy(float) >= p_min)  # NaN fails the rule too
        low_clv = ~(g["clv"].to_numpy(float) >= clv_cut)
        why_p = ("only " + P(g) + f" likely to buy within the horizon (core needs {p_min:.0%})").where(low_p, "")
        why_c = ("predicted value " + C(g) + f" is below the core cut {clv_cut:,.2f} (top {top_clv} of buyers)").where(low_clv, "")
        why = why_p + np.where(low_p & low_clv, " and ", "") + why_c
        return "bought " + N(g) + ", net spend " + _ref_fmt(g["net_spend"], "{:,.2f}") + "; not core: " + why

    def lapsed_prefix(g):
        low_p, low_alive, overdue = (x[g.index] for x in lapse_tests)
        why_p = (P(g) + f" likely to buy within the horizon (value needs {v_floor:.0%})").where(low_p, "")
        why_a = ("P(alive) " + _ref_fmt(g["p_alive"].fillna(0) if "p_alive" in g else pd.Series(0.0, index=g.index), "{:.0%}")
                 + f" (value needs {a_floor:.0%})").where(low_alive, "")
        why_o = ("last order " + _ref_fmt(g["days_since_last_purchase"], "{:.0f}") + " days ago, "
                 + _ref_fmt(pd.Series(ratio[g.index], index=g.index), "{:.1f}") + f"x the usual gap between orders (value allows {cap:.1f}x)").where(overdue, "")
        parts = pd.concat([why_p, why_a, why_o], axis=1).agg(lambda r: "; ".join(x for x in r if x), axis=1)
        return "lapsed buyer (win-back): bought " + N(g) + ", net spend " + _ref_fmt(g["net_spend"], "{:,.2f}") + "; " + parts + "; now "

    def seed(g):
        return "KOC score " + K(g) + f" (seed needs {koc_cut:.2f}): " + social(g)

    def new(g):
        return "joined " + T(g) + f" days ago (new means under {pol.new_max_tenure_days} days)"

    def ordinary(g):
        last = ("; last interaction " + _ref_fmt(g["days_since_last_interaction"], "{:.0f}") + " days ago"
                if "days_since_last_interaction" in g else "")
        return ("KOC score " + K(g) + f" below the seed cut {koc_cut:.2f} (" + social(g) + "), member for " + T(g) + " days" + last)

    f = f.reset_index(drop=True)
    koc_r = np.asarray(koc, dtype=float)
    lapse_tests = pol._lapse_tests(f)
    ratio = pol._ratio(f)
    lapsed = np.asarray(lapsed, dtype=bool)
    nonbuyer = ~np.asarray(buyer, dtype=bool)
    reason = np.full(len(f), "", dtype=object)
    for mask, text in ((is_core, core), (tier == "value", value)):
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            reason[mask] = text(f[mask]).to_numpy(dtype=object)
    prefix = np.full(len(f), "", dtype=object)
    if lapsed.any():
        prefix[lapsed] = lapsed_prefix(f[lapsed]).to_numpy(dtype=object)
    prefix[nonbuyer] = "no purchase yet; "
    for name, text in (("seed", seed), ("new", new), ("ordinary", ordinary)):
        mask = tier == name
        if mask.any():
            # a lapsed buyer's reason reads "lapsed buyer (win-back): ...; now <tier>: <why>"
            head = np.where(lapsed[mask], prefix[mask] + name + ": ", prefix[mask])
            reason[mask] = head + text(f[mask]).to_numpy(dtype=object)
    return pd.Series(reason, dtype=object)


def _booster_predict(model, X: pd.DataFrame) -> np.ndarray:
    """A CLV or interval model's prediction with each booster's own predict on the float inputs."""
    if isinstance(model, HurdleSpend):
        Z = tree_input(X[list(model.feature_names_in_)])
        return model.buy_.predict_proba(Z)[:, 1] * model.spend_.predict(Z) * model.level_
    if isinstance(model, SpendRegressor):
        Xm = X[list(model.feature_names_in_)]
        parts = []
        if model.gbm_ is not None:
            parts.append(model.gbm_.predict(tree_input(Xm)))
        if model.glm_ is not None:
            parts.append(model.glm_.predict(signed_log(Xm)))
        return np.mean(parts, axis=0) * model.y_scale_ * model.level_
    return model.predict(X)


def _interval(interval: SpendInterval, X: pd.DataFrame):
    Z = tree_input(X[list(interval.feature_names_in_)])
    lo, hi = (np.log1p(np.clip(m.predict(Z), 0.0, None)) for m in (interval.lower_, interval.upper_))
    return interval._conformal(np.minimum(lo, hi), np.maximum(lo, hi), interval._groups(X))


def reference_predict(bundle, features: pd.DataFrame) -> pd.DataFrame:
    """The scores frame the straightforward way (ScoringBundle.predict before issue #17)."""
    features = features[bundle.feature_columns].reset_index(drop=True)
    b = bundle.btyd(features)
    p = bundle.propensity.predict_purchase(bundle.propensity_input(features, b))
    buyer = features["has_purchased"].to_numpy() > 0
    mean_order_value = float(bundle.spend_model.expected_spend(np.zeros(1), np.zeros(1))[0])
    X = bundle.clv_input(features, b)
    clv = _booster_predict(bundle.clv_model, X) if bundle.clv_model is not None else np.where(buyer, b["btyd_clv"], p * mean_order_value)
    lo, hi = _interval(bundle.clv_interval, X)
    pred = pd.DataFrame({
        "p_purchase": p, "churn_risk": np.where(buyer, 1 - p, np.nan), "p_alive": b["btyd_p_alive"].to_numpy(),
        "expected_purchases": np.where(buyer, b["btyd_expected_purchases"], p),
        "expected_spend": np.where(buyer, b["btyd_expected_spend"], mean_order_value), "clv": clv,
        "clv_p10": lo, "clv_p90": hi,
    })
    frame = pd.concat([features, pred], axis=1)
    tiers = bundle.tier_policy.assign(frame)
    pol, koc = bundle.tier_policy, tiers["koc_score"].to_numpy()
    active = pol._active(frame)
    is_core = active & (frame["p_purchase"].to_numpy() >= pol._core_floor()) & (frame["clv"].to_numpy() >= pol.core_clv_cut_)
    tiers["tier_reason"] = _reference_reasons(pol, frame, tiers["tier"].to_numpy(dtype=object), buyer,
                                              tiers["lapsed_buyer"].to_numpy(), is_core, koc).to_numpy()
    scores = pd.concat([
        pd.DataFrame({"customer_id": features["customer_id"].astype(str).to_numpy(),
                      "as_of": pd.to_datetime(features["as_of"]).dt.date.to_numpy(), "horizon_days": bundle.horizon_days}),
        pred, features[["engagement_score"]].astype(float), tiers], axis=1)
    nt = bundle.next_tier_model
    if nt is not None and nt.model_ is not None:
        proba = nt.model_.predict_proba(nt._design(model_features(features)[list(nt.feature_names_in_)], scores["tier"]))
        best = proba.argmax(axis=1)
        scores["next_tier"], scores["next_tier_proba"] = nt.classes_[best], proba[np.arange(len(best)), best]
    elif nt is not None:
        scores["next_tier"], scores["next_tier_proba"] = nt.predict(model_features(features), scores["tier"])
    else:
        scores["next_tier"], scores["next_tier_proba"] = scores["tier"].to_numpy(), np.ones(len(scores))
    return scores


def assert_same_scores(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns)
    assert got.index.equals(want.index)
    for c in want.columns:
        assert got[c].dtype == want[c].dtype, c
        if want[c].dtype.kind == "f":
            np.testing.assert_allclose(got[c].to_numpy(), want[c].to_numpy(), rtol=1e-9, atol=0, equal_nan=True, err_msg=c)
        else:
            assert got[c].equals(want[c]), (c, got[c][got[c] != want[c]].head(3).tolist(), want[c][got[c] != want[c]].head(3).tolist())


# ------------------------------------------------------------------------------------------------- the tests

def test_predict_equals_the_reference_path(bundle, base):
    want = reference_predict(bundle, base)
    assert_same_scores(bundle.predict(base), want)
    assert set(want["tier"]) >= {"value", "ordinary"} and want["lapsed_buyer"].any()  # the reasons' branches ran
    # a shuffled frame with a foreign index scores each customer alike, in its own row order
    shuffled = base.sample(frac=1.0, random_state=1)
    shuffled.index = shuffled.index + 10_000
    assert_same_scores(bundle.predict(shuffled), want.set_index(base["customer_id"].to_numpy()).loc[
        shuffled["customer_id"].to_numpy()].reset_index(drop=True))


def test_small_batches_score_like_the_whole_base(bundle, base):
    """Below the coded path's 2,000 rows the boosters' own predict runs: the same values."""
    whole = bundle.predict(base)
    part = bundle.predict(base.iloc[:700])
    assert_same_scores(part, whole.iloc[:700].reset_index(drop=True))


def test_a_scikit_learn_without_the_internals_scores_alike(bundle, base, monkeypatch):
    """The coded path reads scikit-learn internals; where a release moved them, the boosters' own predictions
    stand in: slower, the same scores."""
    from tiering.models import _hgb as clv  # the binned path moved from models.clv to models._hgb

    whole = bundle.predict(base)

    def moved(*args, **kwargs):
        raise AttributeError("'HistGradientBoostingRegressor' object has no attribute '_predictors'")

    monkeypatch.setattr(clv, "_binned_raw_predictions", moved)
    assert_same_scores(bundle.predict(base), whole)


def test_coded_boosters_equal_their_float_predictions(bundle, base):
    b = bundle.btyd(base[bundle.feature_columns].reset_index(drop=True))
    X = tree_input(bundle.clv_input(base[bundle.feature_columns].reset_index(drop=True), b)[list(bundle.clv_interval.feature_names_in_)])
    names = list(bundle.clv_interval.feature_names_in_)
    models = [bundle.clv_interval.lower_, bundle.clv_interval.upper_]
    X[::7, 3] = np.nan  # missing values go where each split sends them
    got = hgb_raw_predictions([(m, names) for m in models], lambda k: X[:, names.index(k)], len(X))
    for m, raw in zip(models, got):
        np.testing.assert_array_equal(raw, m._raw_predict(X))
