"""BTYD estimators: published CDNOW numbers, agreement with lifetimes, the traps, retries, contract."""

from __future__ import annotations

import pickle
from importlib.resources import files

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from tiering.exceptions import ModelError
from tiering.models import _btyd_base, _btyd_inputs, btyd
from tiering.models.btyd import BetaGeoModel, GammaGammaModel, ParetoNBDModel, discounted_clv

lifetimes = pytest.importorskip("lifetimes")  # never lifetimes.datasets: it needs pkg_resources
from lifetimes import BetaGeoFitter, GammaGammaFitter, ParetoNBDFitter  # noqa: E402

DATA = files("lifetimes") / "datasets"
WEEKS_PER_MONTH = 4.345  # lifetimes' factor for freq="W"


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    """CDNOW 2,357-customer summary in weeks (Fader, Hardie and Lee 2005)."""
    return pd.read_csv(DATA / "cdnow_customers_summary.csv")


@pytest.fixture(scope="module")
def cdnow_spend() -> pd.DataFrame:
    """The same customers with the mean value of their repeat purchases (lifetimes' monetary file)."""
    df = pd.read_csv(DATA / "cdnow_customers_summary_with_transactions.csv")
    return df.set_axis(["customer_id", "frequency", "recency", "T", "monetary_value"], axis=1)


@pytest.fixture(scope="module")
def bg(cdnow) -> BetaGeoModel:
    return BetaGeoModel().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])


@pytest.fixture(scope="module")
def pnbd(cdnow) -> ParetoNBDModel:
    return ParetoNBDModel().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])


@pytest.fixture(scope="module")
def gg(cdnow_spend) -> GammaGammaModel:
    return GammaGammaModel().fit(cdnow_spend["frequency"], cdnow_spend["monetary_value"])


def _xrt(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return df["frequency"].to_numpy(float), df["recency"].to_numpy(float), df["T"].to_numpy(float)


def _lifetimes_twin(fitter_cls, model):
    """A lifetimes fitter holding our parameters, so predictions compare formulas, not optimisers."""
    twin = fitter_cls()
    twin.params_ = pd.Series(model.params_)
    if hasattr(twin, "conditional_expected_number_of_purchases_up_to_time"):
        twin.predict = twin.conditional_expected_number_of_purchases_up_to_time
    return twin


# ---------------------------------------------------------------- published numbers, lifetimes' fits


def test_betageo_reproduces_published_cdnow_fit(bg, cdnow):
    published = {"r": 0.2426, "alpha": 4.4135, "a": 0.7929, "b": 2.4258}
    for k, v in published.items():
        assert bg.params_[k] == pytest.approx(v, rel=1e-3, abs=1e-4)
        assert round(bg.params_[k], 4) == v
    assert bg.log_likelihood_ == pytest.approx(-9582.4, abs=0.05)
    assert bg.n_customers_ == len(cdnow) == 2357
    report = bg.fit_report_
    assert report["converged"] and report["n_tries"] == 1 and report["method"] == "BFGS"
    assert report["tol"] == 1e-7 and report["penalizer"] == 0.0 and report["warnings"] == []
    assert report["n_rows_unique"] < len(cdnow)  # identical rows were collapsed


def test_gammagamma_reproduces_published_cdnow_fit(gg, cdnow_spend):
    for k, v in {"p": 6.2488, "q": 3.7446, "v": 15.4477}.items():
        assert gg.params_[k] == pytest.approx(v, rel=1e-3, abs=1e-4)
    assert gg.fit_report_["n_rows_used"] == int((cdnow_spend["frequency"] > 0).sum()) == 946
    assert np.isfinite(gg.log_likelihood_)


def test_paretonbd_matches_lifetimes_fit(pnbd, cdnow):
    np.random.seed(0)  # lifetimes draws its Pareto/NBD starting point at random
    ref = ParetoNBDFitter().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    for k in ("r", "alpha", "s", "beta"):
        assert pnbd.params_[k] == pytest.approx(ref.params_[k], rel=1e-3)
    assert pnbd.fit_report_["converged"]
    # the total log-likelihood in weeks, as lifetimes computes it per customer (published: -9595.0)
    x, rec, T = _xrt(cdnow)
    per_customer = ParetoNBDFitter._conditional_log_likelihood(list(pnbd.params_.values()), x, rec, T)
    assert pnbd.log_likelihood_ == pytest.approx(per_customer.sum(), rel=1e-12)
    assert pnbd.log_likelihood_ == pytest.approx(-9595.0, abs=0.05)


@pytest.mark.parametrize("penalizer", [0.01, 0.1])
def test_penalizer_means_what_it_means_in_lifetimes(cdnow, cdnow_spend, penalizer):
    x, rec, T = _xrt(cdnow)
    ours = BetaGeoModel(penalizer=penalizer).fit(x, rec, T)
    ref = BetaGeoFitter(penalizer_coef=penalizer).fit(x, rec, T)
    for k in ("r", "alpha", "a", "b"):
        assert ours.params_[k] == pytest.approx(ref.params_[k], rel=1e-5)
    assert ours.fit_report_["penalizer"] == penalizer

    np.random.seed(0)
    ref_p = ParetoNBDFitter(penalizer_coef=penalizer).fit(x, rec, T, tol=1e-6)
    ours_p = ParetoNBDModel(penalizer=penalizer).fit(x, rec, T)
    for k in ("r", "alpha", "s", "beta"):
        assert ours_p.params_[k] == pytest.approx(ref_p.params_[k], rel=1e-3)


def test_gammagamma_penalizer_matches_lifetimes_and_refuses_q_below_1(cdnow_spend):
    buyers = cdnow_spend[cdnow_spend["frequency"] > 0]
    x, m = buyers["frequency"], buyers["monetary_value"]
    ours = GammaGammaModel(penalizer=0.001).fit(x, m)
    ref = GammaGammaFitter(penalizer_coef=0.001).fit(x, m)
    for k in ("p", "q", "v"):
        assert ours.params_[k] == pytest.approx(ref.params_[k], rel=1e-5)
    # The trap: at penalizer 0.01 lifetimes returns q < 1, an infinite (negative) population mean spend.
    assert GammaGammaFitter(penalizer_coef=0.01).fit(x, m).params_["q"] < 1
    with pytest.raises(ModelError, match=r"GammaGammaModel.fit did not converge in 3 tries .*q = 0.968\d <= 1: the "
                                         r"mean spend p\*v/\(q-1\) is infinite.* Check monetary_value"):
        GammaGammaModel(penalizer=0.01).fit(x, m)


@pytest.mark.parametrize("offset", [0.0, 0.5])  # integer days take the one-key path, fractions the lexsort
def test_collapse_rebuilds_every_row(offset):
    rng = np.random.default_rng(3)
    cols = (rng.integers(0, 5, 500).astype(float), rng.integers(0, 9, 500) + offset, rng.integers(0, 9, 500) * 1.0)
    unique, counts, inverse = _btyd_inputs._collapse(*cols)
    assert len(set(zip(*unique))) == len(unique[0]) == len(set(zip(*cols))) and counts.sum() == 500
    for u, c in zip(unique, cols):
        np.testing.assert_array_equal(u[inverse], c)
    np.testing.assert_array_equal(np.bincount(inverse), counts)


def test_weighted_fit_equals_unweighted(cdnow, cdnow_spend, bg, pnbd, gg):
    counts = cdnow.groupby(["frequency", "recency", "T"]).size().reset_index(name="n")
    assert len(counts) < len(cdnow)
    for model in (bg, pnbd):
        collapsed = type(model)().fit(counts["frequency"], counts["recency"], counts["T"], sample_weight=counts["n"])
        for k, v in model.params_.items():
            assert collapsed.params_[k] == pytest.approx(v, rel=1e-6)
        assert collapsed.log_likelihood_ == pytest.approx(model.log_likelihood_, rel=1e-9)
        assert collapsed.n_customers_ == len(cdnow)
    spend = cdnow_spend.groupby(["frequency", "monetary_value"]).size().reset_index(name="n")
    collapsed = GammaGammaModel().fit(spend["frequency"], spend["monetary_value"], sample_weight=spend["n"])
    for k, v in gg.params_.items():
        assert collapsed.params_[k] == pytest.approx(v, rel=1e-6)


# ---------------------------------------------------------------- predictions against lifetimes


@pytest.mark.parametrize("t", [0.5, 1.0, 10.0, 39.0, 52.0])
def test_betageo_predictions_equal_lifetimes(bg, cdnow, t):
    x, rec, T = _xrt(cdnow)
    ref = _lifetimes_twin(BetaGeoFitter, bg)
    np.testing.assert_allclose(bg.expected_purchases(t, x, rec, T),
                               ref.conditional_expected_number_of_purchases_up_to_time(t, x, rec, T), rtol=1e-6)
    np.testing.assert_allclose(bg.p_alive(x, rec, T), ref.conditional_probability_alive(x, rec, T), rtol=1e-6)
    np.testing.assert_allclose(bg.expected_purchases_new(t), ref.expected_number_of_purchases_up_to_time(t), rtol=1e-6)
    r, alpha = bg.params_["r"], bg.params_["alpha"]
    expected = 1 - bg.p_alive(x, rec, T) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x))
    np.testing.assert_allclose(bg.p_no_purchase(t, x, rec, T), expected, rtol=1e-12)


@pytest.mark.parametrize("t", [0.5, 1.0, 10.0, 39.0, 52.0])
def test_paretonbd_predictions_equal_lifetimes(pnbd, cdnow, t):
    x, rec, T = _xrt(cdnow)
    ref = _lifetimes_twin(ParetoNBDFitter, pnbd)
    np.testing.assert_allclose(pnbd.expected_purchases(t, x, rec, T),
                               ref.conditional_expected_number_of_purchases_up_to_time(t, x, rec, T), rtol=1e-6)
    np.testing.assert_allclose(pnbd.p_alive(x, rec, T), ref.conditional_probability_alive(x, rec, T), rtol=1e-6)
    np.testing.assert_allclose(pnbd.expected_purchases_new(t), ref.expected_number_of_purchases_up_to_time(t),
                               rtol=1e-6)


def test_gammagamma_expected_spend_equals_lifetimes(gg, cdnow_spend):
    x, m = cdnow_spend["frequency"].to_numpy(float), cdnow_spend["monetary_value"].to_numpy(float)
    ref = _lifetimes_twin(GammaGammaFitter, gg)
    np.testing.assert_allclose(gg.expected_spend(x, m), ref.conditional_expected_average_profit(x, m), rtol=1e-6)
    p, q, v = gg.params_["p"], gg.params_["q"], gg.params_["v"]
    # frequency 0: the population mean, whatever monetary_value holds there
    np.testing.assert_allclose(gg.expected_spend([0, 0], [0.0, np.nan]), p * v / (q - 1), rtol=1e-12)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # lifetimes' Pareto/NBD at t = 0
@pytest.mark.parametrize("transaction", ["bg", "pnbd"])
def test_discounted_clv_equals_lifetimes_weeks(request, transaction, gg, cdnow_spend):
    model = request.getfixturevalue(transaction)
    fitter = BetaGeoFitter if transaction == "bg" else ParetoNBDFitter
    df = cdnow_spend
    ref = _lifetimes_twin(GammaGammaFitter, gg).customer_lifetime_value(
        _lifetimes_twin(fitter, model), df["frequency"], df["recency"], df["T"], df["monetary_value"],
        time=12, discount_rate=0.01, freq="W")
    step_days = WEEKS_PER_MONTH * 7
    ours = discounted_clv(model, gg, df["frequency"], df["recency"], df["T"], df["monetary_value"],
                          horizon_days=12 * step_days, discount_rate_annual=1.01 ** (365 / step_days) - 1,
                          time_unit_days=7, step_days=step_days)
    np.testing.assert_allclose(ours, ref.to_numpy(), rtol=1e-6)


def test_discounted_clv_equals_lifetimes_days(cdnow_spend, gg):
    df = cdnow_spend.assign(recency=cdnow_spend["recency"] * 7, T=cdnow_spend["T"] * 7)
    model = BetaGeoModel().fit(df["frequency"], df["recency"], df["T"])
    ref = _lifetimes_twin(GammaGammaFitter, gg).customer_lifetime_value(
        _lifetimes_twin(BetaGeoFitter, model), df["frequency"], df["recency"], df["T"], df["monetary_value"],
        time=6, discount_rate=0.02, freq="D")
    ours = discounted_clv(model, gg, df["frequency"], df["recency"], df["T"], df["monetary_value"],
                          horizon_days=180, discount_rate_annual=1.02 ** (365 / 30) - 1)
    np.testing.assert_allclose(ours, ref.to_numpy(), rtol=1e-6)
    # a horizon that is not a whole number of steps ends with a shorter step
    longer = discounted_clv(model, gg, df["frequency"], df["recency"], df["T"], df["monetary_value"],
                            horizon_days=185, discount_rate_annual=1.02 ** (365 / 30) - 1)
    assert np.all(longer >= ours) and np.all(np.isfinite(longer))


# ---------------------------------------------------------------- the traps


def _hyp2f1_series(a: float, b: float, c: float, z: float, terms: int = 5000) -> float:
    total, term = 0.0, 1.0
    for k in range(terms):
        total += term
        term *= (a + k) * (b + k) / ((c + k) * (k + 1)) * z
    return total


def test_betageo_expected_purchases_finite_where_lifetimes_is_nan():
    params = {"r": 0.5, "alpha": 5.0, "a": 0.3, "b": 0.5}  # a + b < 1: a + b + x - 1 < 0 at x = 0
    model = BetaGeoModel()
    model.params_ = params
    x = np.array([0.0, 0.0, 0.0, 1.0, 2.0])
    rec = np.array([0.0, 0.0, 0.0, 3.0, 8.0])
    T = np.array([10.0, 10.0, 40.0, 10.0, 10.0])
    t = np.array([1.0, 20.0, 30.0, 5.0, 5.0])
    ref = _lifetimes_twin(BetaGeoFitter, model)
    with np.errstate(invalid="ignore"):
        theirs = ref.conditional_expected_number_of_purchases_up_to_time(t, x, rec, T)
    ours = model.expected_purchases(t, x, rec, T)
    assert np.isnan(theirs).sum() == 2 and np.isfinite(ours).all()
    r, alpha, a, b = params.values()
    exact = []
    for ti, xi, ri, Ti in zip(t, x, rec, T):  # eq. (10) with the hypergeometric series summed directly
        z, c = ti / (alpha + Ti + ti), a + b + xi - 1
        num = c / (a - 1) * (1 - _hyp2f1_series(r + xi, b + xi, c, z) * (1 - z) ** (r + xi))
        exact.append(num / (1 + (xi > 0) * a / (b + xi - 1) * ((alpha + Ti) / (alpha + ri)) ** (r + xi)))
    np.testing.assert_allclose(ours, exact, rtol=1e-9)
    fin = np.isfinite(theirs)
    np.testing.assert_allclose(ours[fin], theirs[fin], rtol=1e-6)
    assert np.isfinite(model.expected_purchases_new([1.0, 100.0, 1e4])).all()


def test_betageo_expected_purchases_finite_at_a_equal_1():
    """Eq. (10) has c / (a - 1) * (1 - term) = 0/0 at a = 1 (lifetimes gives inf): continuous there."""
    x, rec, T = np.array([0.0, 2.0, 40.0]), np.array([0.0, 10.0, 49.0]), np.array([50.0, 50.0, 50.0])
    values = {}
    for a in (1.0 - 1e-3, 1.0, 1.0 + 1e-3):
        model = BetaGeoModel()
        model.params_ = {"r": 0.5, "alpha": 40.0, "a": a, "b": 2.5}
        values[a] = model.expected_purchases(30.0, x, rec, T)
        assert np.isfinite(model.expected_purchases_new([1.0, 30.0])).all()
    assert np.isfinite(values[1.0]).all()
    np.testing.assert_allclose(values[1.0], (values[1.0 - 1e-3] + values[1.0 + 1e-3]) / 2, rtol=1e-5)


def test_paretonbd_p_no_purchase_is_exact_not_the_bgnbd_formula(pnbd):
    r, alpha, s, beta = (pnbd.params_[k] for k in ("r", "alpha", "s", "beta"))
    rng = np.random.default_rng(7)
    n = 400_000
    for x, rec, T, t in ((0, 0, 30, 10), (3, 20, 30, 26), (1, 1, 5, 100)):
        # Alive at T: lambda ~ Gamma(r+x, alpha+T), mu ~ Gamma(s, beta+T); remaining life ~ Exp(mu)
        lam = rng.gamma(r + x, 1 / (alpha + T), n)
        life = rng.exponential(1 / rng.gamma(s, 1 / (beta + T), n))
        p_zero_if_alive = np.mean(rng.poisson(lam * np.minimum(life, t)) == 0)
        p_alive = pnbd.p_alive(x, rec, T)
        simulated = 1 - p_alive * (1 - p_zero_if_alive)
        assert pnbd.p_no_purchase(t, x, rec, T) == pytest.approx(simulated, abs=3e-3)
    naive = 1 - p_alive * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x))
    assert abs(pnbd.p_no_purchase(t, x, rec, T) - naive) > 0.1  # lifetime can end inside the window


def test_probabilities_stay_in_range(bg, pnbd, cdnow):
    x, rec, T = _xrt(cdnow)
    for model in (bg, pnbd):
        previous = np.ones_like(x)
        for t in (0.0, 1.0, 10.0, 100.0, 1e4):
            p = model.p_no_purchase(t, x, rec, T)
            assert np.all((p >= 0) & (p <= previous + 1e-12))
            previous = p
        assert np.all((model.p_alive(x, rec, T) > 0) & (model.p_alive(x, rec, T) <= 1))


# ---------------------------------------------------------------- convergence


def _no_dropout_sample(n: int = 2000, seed: int = 0):
    """Poisson buyers who never drop out: the BG/NBD optimum sits on the boundary a -> 0."""
    rng = np.random.default_rng(seed)
    T = rng.integers(20, 60, n).astype(float)
    x = rng.poisson(rng.gamma(0.8, 1 / 5, n) * T)
    last = T * rng.beta(np.maximum(x, 1), 1)  # the largest of x uniform purchase times
    return x, np.where(x > 0, np.minimum(np.round(last), T), 0.0), T


def test_retry_with_looser_tolerance_before_any_penalizer():
    x, rec, T = _no_dropout_sample()
    model = BetaGeoModel().fit(x, rec, T)
    report = model.fit_report_
    attempts = report["attempts"]
    assert report["converged"] and report["n_tries"] == len(attempts) >= 2
    assert not attempts[0]["accepted"] and "precision loss" in attempts[0]["message"]
    assert (attempts[0]["method"], attempts[0]["tol"], attempts[0]["penalizer"]) == ("BFGS", 1e-7, 0.0)
    assert (attempts[1]["method"], attempts[1]["tol"], attempts[1]["penalizer"]) == ("BFGS", 1e-6, 0.0)
    assert report["penalizer"] == 0.0 and attempts[-1]["accepted"]
    assert model.params_["a"] < 1e-4 and any("boundary" in w for w in report["warnings"])
    assert all(np.isfinite(v) and v > 0 for v in model.params_.values())
    assert np.isfinite(model.expected_purchases(30.0, x, rec, T)).all()
    assert len(pickle.dumps(model)) < 4096  # every try recorded, still small


def test_every_try_failing_raises(monkeypatch, cdnow):
    class Failed:
        def __init__(self, x0):
            self.x, self.fun, self.success, self.nit, self.nfev = np.asarray(x0), 1.0, False, 3, 9
            self.message = "Desired error not necessarily achieved due to precision loss."

    monkeypatch.setattr(_btyd_base, "minimize", lambda fun, x0, **kw: Failed(x0))
    with pytest.raises(ModelError, match=r"BetaGeoModel.fit did not converge in 5 tries \(BFGS tol=1e-07 penalizer=0: "
                                         r"Desired error .* BFGS tol=1e-06 penalizer=0.01: .*larger penalizer"):
        BetaGeoModel().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    with pytest.raises(ModelError, match=r"in 3 tries"):  # a user penalizer above the retry ones: no retry with them
        BetaGeoModel(penalizer=0.5).fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])


def test_gammagamma_refuses_infinite_mean_spend():
    rng = np.random.default_rng(0)
    n = 2000
    x = rng.integers(1, 6, n)
    customer_mean = (rng.pareto(0.5, n) + 1) * 10  # tail index 0.5: no finite population mean
    m = rng.gamma(6 * x, customer_mean / 6) / x
    with pytest.raises(ModelError, match=r"GammaGammaModel.fit did not converge.*q = [0-9.]+ <= 1: the mean spend "
                                         r"p\*v/\(q-1\) is infinite"):
        GammaGammaModel().fit(x, m)


# ---------------------------------------------------------------- input validation


@pytest.mark.parametrize(("frequency", "recency", "T", "message"), [
    ([1, 2, 0, 3, 1], [5, 12, 0, 4, 1], [10, 10, 10, 10, 2], r"1 of 5 rows have recency > T"),
    ([1, 2.5, 0, 3, 1.2], [5, 6, 0, 4, 1], [10, 10, 10, 10, 2], r"2 of 5 rows have a non-integer frequency"),
    ([1, np.nan, 0, 3, 1], [5, 6, 0, np.inf, 1], [10, 10, 10, 10, 2],
     r"2 of 5 rows have a missing or infinite frequency, recency or T"),
    ([1, -1, 0, 3, 1], [5, 6, 0, 4, 1], [10, 10, 10, 10, 2], r"1 of 5 rows have a negative frequency"),
    ([1, 2, 0, 0, 1], [5, 6, 7, 9, 1], [10, 10, 10, 10, 2],
     r"2 of 5 rows have frequency 0 but recency > 0 \(recency is the time from the first to the last purchase, "
     r"not the time since the last purchase\)"),
    ([0, 0, 0], [0, 0, 0], [10, 10, 10], r"no customer has a repeat purchase"),
    ([1, 2], [1, 2, 3], [4, 5, 6], r"needs 1-D inputs of equal length"),
    ([], [], [], r"got no rows"),
    (["a", "b"], [1, 2], [3, 4], r"frequency must be numeric"),
])
@pytest.mark.parametrize("cls", [BetaGeoModel, ParetoNBDModel])
def test_bad_transaction_input_raises(cls, frequency, recency, T, message):
    with pytest.raises(ModelError, match=message):
        cls().fit(frequency, recency, T)


def test_bad_spend_input_raises():
    with pytest.raises(ModelError, match=r"1 of 3 rows have frequency > 0 but a missing or infinite monetary_value"):
        GammaGammaModel().fit([1, 2, 0], [np.nan, 3.0, np.nan])
    with pytest.raises(ModelError, match=r"1 rows have frequency > 0 and monetary_value > 0"):
        GammaGammaModel().fit([1, 2, 0], [-1.0, 3.0, 0.0])
    with pytest.raises(ModelError, match=r"1 of 3 rows have a missing, infinite or negative sample_weight"):
        GammaGammaModel().fit([1, 2, 3], [1.0, 3.0, 2.0], sample_weight=[1, -1, 1])
    with pytest.raises(ModelError, match=r"penalizer must be a finite number >= 0"):
        GammaGammaModel(penalizer=-1).fit([1, 2, 3, 1], [1.0, 3.0, 2.0, 5.0])


def test_discounted_clv_rejects_bad_settings(bg, gg):
    with pytest.raises(ModelError, match=r"horizon_days must be a positive number; got 0"):
        discounted_clv(bg, gg, [1], [2], [3], [10.0], horizon_days=0, discount_rate_annual=0.1)
    with pytest.raises(ModelError, match=r"discount_rate_annual must be > -1"):
        discounted_clv(bg, gg, [1], [2], [3], [10.0], horizon_days=30, discount_rate_annual=-2)


# ---------------------------------------------------------------- estimator contract


def test_estimator_contract_and_small_pickle(bg, pnbd, gg, cdnow):
    for model in (bg, pnbd, gg):
        cls = type(model)
        assert cls(penalizer=0.3).get_params() == {"penalizer": 0.3}
        fresh = clone(model)
        assert not hasattr(fresh, "params_") and fresh.get_params() == model.get_params()
        blob = pickle.dumps(model)
        assert len(blob) < 4096  # parameters and report only, no training data
        # no training data: the only array is the parameters' covariance (k x k)
        k = len(model.params_)
        assert all(v.shape == (k, k) for v in vars(model).values() if isinstance(v, np.ndarray))
        assert not any(isinstance(v, pd.Series | pd.DataFrame) for v in vars(model).values())
        assert pickle.loads(blob).params_ == model.params_
        # set_params per the contract: stores, validates nothing, returns the estimator
        assert cls().set_params(penalizer=0.2).penalizer == 0.2
    with pytest.raises(ModelError, match=r"BetaGeoModel is not fitted yet"):
        BetaGeoModel().p_alive([1], [2], [3])
    with pytest.raises(ModelError, match=r"GammaGammaModel is not fitted yet"):
        GammaGammaModel().expected_spend([1], [2.0])
    # predictions broadcast over scalars and arrays
    assert bg.expected_purchases(10, 2, 5.0, 30.0).shape == ()
    assert bg.expected_purchases(np.array([[1.0], [10.0]]), *_xrt(cdnow)).shape == (2, len(cdnow))


# ---------------------------------------------------------------- the DataFrame face: fit(rfm), lifetimes' names, summary


def test_dataframe_fit_pins_published_cdnow_parameters(cdnow, cdnow_spend):
    """fit(rfm) on the frame lifetimes' summary gives (extra columns ignored) = the published fit."""
    bg = BetaGeoModel().fit(cdnow)
    for k, v in {"r": 0.2426, "alpha": 4.4135, "a": 0.7929, "b": 2.4258}.items():
        assert round(bg.params_[k], 4) == v
    assert bg.log_likelihood_ == pytest.approx(-9582.4, abs=0.05)
    gg = GammaGammaModel().fit(cdnow_spend)  # customer_id, recency, T are extra columns here
    for k, v in {"p": 6.2488, "q": 3.7446, "v": 15.4477}.items():
        assert round(gg.params_[k], 4) == v
    # polars (anything with to_pandas) takes the same path
    pl = pytest.importorskip("polars")
    assert BetaGeoModel().fit(pl.from_pandas(cdnow)).params_ == pytest.approx(bg.params_, rel=1e-12)


def test_predictions_on_a_dataframe_are_series_on_its_index(bg, gg, cdnow_spend):
    rfm = cdnow_spend.set_index("customer_id").iloc[::7]
    x, rec, T, m = (rfm[c].to_numpy(float) for c in ("frequency", "recency", "T", "monetary_value"))
    for got, want in [
        (bg.p_alive(rfm), bg.p_alive(x, rec, T)),
        (bg.expected_purchases(10, rfm), bg.expected_purchases(10, x, rec, T)),
        (bg.p_no_purchase(10, rfm), bg.p_no_purchase(10, x, rec, T)),
        (gg.expected_spend(rfm), gg.expected_spend(x, m)),
    ]:
        assert isinstance(got, pd.Series) and got.index.equals(rfm.index)
        np.testing.assert_array_equal(got.to_numpy(), want)
    assert isinstance(bg.p_alive(x, rec, T), np.ndarray)


def test_lifetimes_method_names_are_the_same_methods(bg, pnbd, gg, cdnow_spend):
    rfm = cdnow_spend
    for model in (bg, pnbd):
        np.testing.assert_array_equal(model.conditional_probability_alive(rfm), model.p_alive(rfm))
        np.testing.assert_array_equal(model.conditional_expected_number_of_purchases_up_to_time(26, rfm),
                                      model.expected_purchases(26, rfm))
        np.testing.assert_array_equal(model.expected_number_of_purchases_up_to_time([1.0, 52.0]),
                                      model.expected_purchases_new([1.0, 52.0]))
    np.testing.assert_array_equal(gg.conditional_expected_average_profit(rfm), gg.expected_spend(rfm))


@pytest.mark.parametrize("freq, time, discount_rate", [("W", 12, 0.01), ("D", 6, 0.02)])
def test_customer_lifetime_value_equals_lifetimes_in_its_units(bg, gg, cdnow_spend, freq, time, discount_rate):
    """lifetimes' customer_lifetime_value(time months, monthly discount_rate, freq) with our parameters."""
    df, model = cdnow_spend, bg
    if freq == "D":  # the same customers in days
        df = df.assign(recency=df["recency"] * 7, T=df["T"] * 7)
        model = BetaGeoModel().fit(df)
    twin_bg, twin_gg = _lifetimes_twin(BetaGeoFitter, model), _lifetimes_twin(GammaGammaFitter, gg)
    want = twin_gg.customer_lifetime_value(twin_bg, df["frequency"], df["recency"], df["T"], df["monetary_value"],
                                           time=time, discount_rate=discount_rate, freq=freq)
    got = gg.customer_lifetime_value(model, df, time=time, discount_rate=discount_rate, freq=freq)
    assert isinstance(got, pd.Series) and got.index.equals(df.index)
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-9)
    with pytest.raises(ModelError, match=r"freq must be one of"):
        gg.customer_lifetime_value(model, df, freq="Q")


def test_summary_standard_errors_equal_lifetimes(bg, gg, cdnow, cdnow_spend):
    """BG/NBD and Gamma-Gamma: the inverse Hessian of the mean negative log-likelihood, as lifetimes."""
    lt_bg = BetaGeoFitter().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    buyers = cdnow_spend[cdnow_spend["frequency"] > 0]
    lt_gg = GammaGammaFitter().fit(buyers["frequency"], buyers["monetary_value"])
    for ours, theirs in ((bg, lt_bg), (gg, lt_gg)):
        s = ours.summary
        assert list(s.columns) == ["coef", "se(coef)", "lower 95% bound", "upper 95% bound"]
        assert list(s.index) == list(ours.params_) and s.index.name == "parameter"
        np.testing.assert_allclose(s["se(coef)"], theirs.summary["se(coef)"].loc[s.index], rtol=2e-3)
        np.testing.assert_allclose(s["lower 95% bound"], s["coef"] - 1.96 * s["se(coef)"])
        assert s.attrs["log_likelihood"] == ours.log_likelihood_ and s.attrs["n_customers"] == ours.n_customers_
    assert bg.summary.attrs["log_likelihood"] == pytest.approx(-9582.4, abs=0.05)
    assert bg.summary.loc["r", "se(coef)"] == pytest.approx(0.0126, abs=1e-4)


def test_value_differences_give_the_gradient_hessian(bg, cdnow):
    """Pareto/NBD has no analytic gradient: its Hessian comes from differences of values. On BG/NBD
    that path must agree with the one from differences of the analytic gradient."""
    x, rec, T = _xrt(cdnow)
    (ux, urec, uT), _, inverse = _btyd_inputs._collapse(x, rec, T)
    w = np.bincount(inverse).astype(float)
    scale = 1.0 / uT.max()
    d = bg._prepare(ux, urec * scale, uT * scale, w)
    theta = np.log([bg.params_[k] * (scale if k == "alpha" else 1.0) for k in bg._param_names])
    fun = lambda th: bg._objective(th, 0.0, d)  # noqa: E731
    from_gradient = _btyd_base._hessian(fun, theta, True)
    from_values = _btyd_base._hessian(lambda th: fun(th)[0], theta, False)
    np.testing.assert_allclose(from_values, from_gradient, rtol=1e-3, atol=1e-6)


def test_paretonbd_summary_is_finite_and_covers_the_published_fit(pnbd):
    s = pnbd.summary
    assert s["se(coef)"].gt(0).all() and np.isfinite(s["se(coef)"]).all()
    # Fader-Hardie's CDNOW Pareto/NBD estimates lie inside our 95% intervals
    for k, v in {"r": 0.5534, "alpha": 10.5776, "s": 0.6061, "beta": 11.6689}.items():
        assert s.loc[k, "lower 95% bound"] < v < s.loc[k, "upper 95% bound"]


def test_fallback_models_take_dataframes_and_summarise(cdnow, cdnow_spend):
    pooled = btyd.PooledNBDModel().fit(cdnow)
    assert pooled.params_ == btyd.PooledNBDModel().fit(*_xrt(cdnow)).params_
    s = pooled.summary
    assert np.isnan(s.loc["r", "se(coef)"]) and s.loc["alpha", "se(coef)"] > 0  # r is fixed at 1
    # the NBD is BG/NBD without dropout: its likelihood is comparable, and lower on CDNOW (people do drop out)
    assert s.attrs["log_likelihood"] < BetaGeoModel().fit(cdnow).log_likelihood_
    np.testing.assert_array_equal(pooled.conditional_probability_alive(cdnow), np.ones(len(cdnow)))
    mean = btyd.MeanSpendModel().fit(cdnow_spend[cdnow_spend["frequency"] > 0])
    buyers = cdnow_spend.loc[cdnow_spend["frequency"] > 0, "monetary_value"]
    assert mean.params_["mean"] == pytest.approx(buyers.mean())
    assert mean.summary.loc["mean", "se(coef)"] == pytest.approx(buyers.std() / np.sqrt(len(buyers)))
    assert np.isnan(mean.summary.attrs["log_likelihood"])
    np.testing.assert_array_equal(mean.conditional_expected_average_profit(cdnow_spend), np.full(len(cdnow_spend), buyers.mean()))


def test_not_fitted_is_sklearns_not_fitted_error_and_a_model_error():
    from sklearn.exceptions import NotFittedError

    for model, call in [(BetaGeoModel(), lambda m: m.summary), (ParetoNBDModel(), lambda m: m.p_alive([1], [2], [3])),
                        (GammaGammaModel(), lambda m: m.conditional_expected_average_profit([1], [2.0])),
                        (btyd.PooledNBDModel(), lambda m: m.expected_purchases(1, [1], [2], [3])),
                        (btyd.MeanSpendModel(), lambda m: m.expected_spend([1], [2.0]))]:
        with pytest.raises(NotFittedError, match=f"{type(model).__name__} is not fitted yet"):
            call(model)
        with pytest.raises(ModelError):
            call(model)


def test_dataframe_input_errors_name_the_columns(bg, cdnow):
    with pytest.raises(ModelError, match=r"needs the DataFrame columns \['frequency', 'recency', 'T'\]; it lacks \['T'\]"):
        BetaGeoModel().fit(cdnow.drop(columns=["T"]))
    with pytest.raises(ModelError, match=r"not both"):
        bg.p_alive(cdnow, cdnow["recency"], cdnow["T"])
    with pytest.raises(ModelError, match=r"got 2 of 3"):
        bg.p_alive(cdnow["frequency"], cdnow["recency"])
    with pytest.raises(ModelError, match=r"lacks \['monetary_value'\]"):
        GammaGammaModel().fit(cdnow)


@pytest.mark.parametrize("which", ["bg", "pnbd"])
def test_btyd_scores_equal_the_separate_calls(which, request, cdnow_spend, gg):
    """btyd_scores (each term once: what scoring and the bundle's BTYD features use) equals the models' own calls."""
    model = request.getfixturevalue(which)
    x, r, T = _xrt(cdnow_spend)
    m = cdnow_spend["monetary_value"].to_numpy(float)
    H, unit = 180, 7.0  # CDNOW summary in weeks
    got = btyd.btyd_scores(model, gg, x, r, T, m, horizon_days=H, discount_rate_annual=0.1, time_unit_days=unit)
    t = H / unit
    want = {"p_alive": model.p_alive(x, r, T), "expected_purchases": model.expected_purchases(t, x, r, T),
            "p_no_purchase": model.p_no_purchase(t, x, r, T), "expected_spend": gg.expected_spend(x, m),
            "clv": discounted_clv(model, gg, x, r, T, m, horizon_days=H, discount_rate_annual=0.1, time_unit_days=unit)}
    for k, v in want.items():
        np.testing.assert_allclose(got[k], v, rtol=1e-9, atol=0, err_msg=k)
