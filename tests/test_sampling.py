"""The stratified training sample (tiering.sampling) and `tiering train` on it (model.train_sample_customers).

One simulated base of 3,000 customers; the sample is 750 (25%). The draw is checked against strata recomputed
in pandas from the simulator's own frames; the train job on the sample against a fit on the whole base, both
judged out of time on the whole base's next 90 days."""

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from tiering import jobs
from tiering.config import Config, TrackingConfig
from tiering.datasets import simulate
from tiering.evaluation import clv_metrics, propensity_metrics, ranking_auc
from tiering.exceptions import ConfigError
from tiering.fitting import feature_spec, features_at, with_labels
from tiering.sampling import RECENCY_BANDS_DAYS, SPEND_QUANTILES, sample_customers
from tiering.train import fit
from tiering.validation import load_tables

START, END = dt.date(2024, 1, 1), dt.date(2025, 12, 31)
AS_OF = dt.date(2025, 9, 30)  # the outcomes of (AS_OF, AS_OF + 90 days] are in the data: the whole base is judged on them
N, SAMPLE, H = 3000, 750, 90
# how far a model fitted on the 25% sample may fall behind one fitted on the whole base, out of time on the whole base
QUALITY_MARGIN = 0.03  # CLV normalized Gini and churn ROC-AUC of buyers (measured: 0.008 and 0.002 behind)
TIER_SHARE_MARGIN = 0.02  # each tier's share of the whole base (measured: 0.005)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with threadpool_limits(1):  # small fits: OpenMP threads only contend on a shared machine
        yield


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """(root, cfg, the simulated frames, the validated base with every row, ids known at AS_OF)."""
    root = tmp_path_factory.mktemp("sampling")
    data = simulate(N, START, END, seed=7)
    data.write(root / "data")
    cfg = Config().with_source_dir(root / "data")
    cfg.validation.quarantine_dir = str(root / "quarantine")
    cfg.model.horizon_days, cfg.model.threads = H, 1
    cfg.model.training_origins, cfg.model.clv_model = 1, "hybrid"  # the fits this test compares, kept short
    cfg.tracking = TrackingConfig(uri=f"sqlite:///{root}/mlflow.db", artifact_location=str(root / "artifacts"))
    return root, cfg, data, load_tables(cfg)


def _strata_in_pandas(data) -> pd.Series:
    """The stratum of every customer known at AS_OF, recomputed from the simulator's frames (the module's rule)."""
    end = pd.Timestamp(AS_OF + dt.timedelta(days=1))
    tx = data.transactions[data.transactions["ordered_at"] < end]
    ix = data.interactions[data.interactions["occurred_at"] < end]
    cu = data.customers[data.customers["joined_at"] < end]
    ids = sorted(set(tx["customer_id"]) | set(ix["customer_id"]) | set(cu["customer_id"]))
    last_order = tx.groupby("customer_id")["ordered_at"].max().reindex(ids)
    spend = tx.groupby("customer_id")["amount"].sum().reindex(ids)
    last_seen = pd.concat([ix.groupby("customer_id")["occurred_at"].max(), cu.groupby("customer_id")["joined_at"].max(),
                           last_order.dropna()], axis=1).max(axis=1).reindex(ids)
    buyer = last_order.notna()
    last = last_order.where(buyer, last_seen).dt.normalize()
    days = (pd.Timestamp(AS_OF) - last).dt.days.to_numpy()
    recency = np.searchsorted(np.array(RECENCY_BANDS_DAYS), days, side="left")
    cuts = np.quantile(spend[buyer].to_numpy(), SPEND_QUANTILES)
    band = np.searchsorted(cuts, spend.fillna(0).to_numpy(), side="right")
    return pd.Series(np.where(buyer, 100 + band, 0) + 10 * recency, index=pd.Index(ids, name="customer_id"), name="stratum")


def _ids(tables, name="customers") -> set[str]:
    return set(getattr(tables, name).customer_id.to_pandas())


def test_draw_is_deterministic_for_a_seed(base):
    _, _, _, tables = base
    first, again = (sample_customers(tables, SAMPLE, seed=3, as_of=AS_OF) for _ in range(2))
    other = sample_customers(tables, SAMPLE, seed=4, as_of=AS_OF)
    assert first.applied and first.sampled_customers == SAMPLE == len(_ids(first.tables))
    assert _ids(first.tables) == _ids(again.tables)
    assert first.strata.equals(again.strata) and first.describe() == again.describe()
    overlap = len(_ids(first.tables) & _ids(other.tables)) / SAMPLE
    assert overlap < 0.5  # another seed draws other customers (about a quarter overlap by chance)


def test_stratum_shares_are_the_base_shares(base):
    _, _, data, tables = base
    sample = sample_customers(tables, SAMPLE, seed=0, as_of=AS_OF)
    truth = _strata_in_pandas(data)
    assert sample.base_customers == len(truth)
    expected = truth.value_counts().sort_index()
    assert dict(zip(sample.strata["stratum"], sample.strata["base"])) == expected.to_dict()
    drawn = truth[truth.index.isin(_ids(sample.tables))].value_counts().reindex(expected.index, fill_value=0)
    assert drawn.sum() == SAMPLE and drawn.to_dict() == dict(zip(sample.strata["stratum"], sample.strata["sampled"]))
    # proportional: each stratum within one customer of its exact share of the sample
    assert (np.abs(drawn - SAMPLE * expected / expected.sum()) < 1).all()
    # and so the rare valuable customers: buyers of the top spend band, and recent buyers, at the base's share
    for mask in (truth >= 100, truth % 10 == 3, (truth >= 100) & (truth // 10 % 10 == 0)):
        assert abs(drawn[expected.index[expected.index.isin(truth[mask])]].sum() / SAMPLE - mask.mean()) <= len(expected) / SAMPLE
    assert len(sample.spend_cuts) == len(SPEND_QUANTILES) and list(sample.spend_cuts) == sorted(sample.spend_cuts)


def test_no_op_at_or_under_n(base):
    _, _, _, tables = base
    for n in (10_000, None):
        whole = sample_customers(tables, n or sample_customers(tables, 10_000, as_of=AS_OF).base_customers, as_of=AS_OF)
        assert not whole.applied and whole.tables is tables and whole.share == 1.0
        assert whole.sampled_customers == whole.base_customers and "not drawn" in whole.describe()
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ConfigError, match="train_sample_customers must be a whole number"):
            sample_customers(tables, bad, as_of=AS_OF)  # type: ignore[arg-type]


def test_all_three_tables_cut_to_the_same_ids(base):
    _, _, _, tables = base
    sample = sample_customers(tables, SAMPLE, seed=1, as_of=AS_OF)
    ids = _ids(sample.tables)
    assert ids <= _ids(tables) and all(isinstance(i, str) for i in ids)  # the base's ids, unchanged
    for name, key in (("transactions", ["customer_id", "order_id", "ordered_at", "amount"]),
                      ("interactions", ["customer_id", "occurred_at", "event_type"]),
                      ("customers", ["customer_id", "joined_at"])):
        got = getattr(sample.tables, name).to_pandas()
        whole = getattr(tables, name).to_pandas()
        want = whole[whole["customer_id"].isin(ids)]
        assert set(got["customer_id"]) <= ids and list(got.columns) == list(whole.columns)
        # every row of every drawn customer, after as_of too (labels of later origins), and nothing else
        pd.testing.assert_frame_equal(got.sort_values(key, ignore_index=True), want.sort_values(key, ignore_index=True))


@pytest.fixture(scope="module")
def trained(base):
    """The train job on a 25% sample (MLflow run and registered version) and a fit on the whole base."""
    _, cfg, _, _ = base
    sampled = jobs.train(cfg.model_copy(update={"model": cfg.model.model_copy(update={"train_sample_customers": SAMPLE})}),
                         as_of=AS_OF)
    whole = fit(load_tables(cfg, as_of=AS_OF), as_of=AS_OF, cfg=cfg)
    return sampled, whole


def test_train_job_logs_the_sample(base, trained):
    import mlflow

    from tiering.tracking import configure

    _, cfg, _, _ = base
    sampled, _ = trained
    configure(cfg.tracking)
    run = mlflow.get_run(sampled.run_id)
    assert run.data.metrics["train_sample_customers"] == SAMPLE and run.data.metrics["train_sample_seed"] == cfg.model.seed
    assert 0.2 <= run.data.metrics["train_sample_share"] <= 0.3 and run.data.metrics["train_base_customers"] > SAMPLE
    assert run.data.params["config.model.train_sample_customers"] == str(SAMPLE)
    notes = json.loads(open(mlflow.artifacts.download_artifacts(run_id=sampled.run_id, artifact_path="notes.json")).read())
    assert notes[0].startswith(f"training sample: {SAMPLE:,} of ") and "never bought, last activity 0-30d" in notes[0]
    assert sampled.version is not None
    # the metrics are out of time on the sample, as for any fit
    assert np.isfinite(sampled.metrics["clv_normalized_gini"]) and np.isfinite(sampled.metrics["churn_model_roc_auc"])


def _judged(bundle, tables, spec):
    """The bundle's scores for the whole base at AS_OF, beside what each customer did in the 90 days after."""
    frame = with_labels(tables, features_at(tables, AS_OF, spec), AS_OF, H)
    return frame, bundle.predict(frame[bundle.feature_columns])


def test_sample_bundle_scores_the_whole_base_as_well(base, trained):
    _, cfg, _, tables = base
    (sampled, whole), spec = trained, feature_spec(cfg)
    frame, s = _judged(sampled.bundle, tables, spec)
    _, w = _judged(whole.bundle, tables, spec)
    assert len(s) == len(frame) == sampled.metrics["train_base_customers"]  # every customer, not just the sampled
    assert s["customer_id"].tolist() == frame["customer_id"].tolist() and s["p_purchase"].between(0, 1).all()
    assert np.isfinite(s["clv"]).all() and s["tier"].notna().all()
    # the score distribution of the whole base: tier shares, p_purchase and CLV levels as the whole-base fit's
    shares = pd.concat([s["tier"].value_counts(normalize=True), w["tier"].value_counts(normalize=True)], axis=1).fillna(0)
    assert (shares.iloc[:, 0] - shares.iloc[:, 1]).abs().max() <= TIER_SHARE_MARGIN, shares
    assert abs(s["p_purchase"].mean() - w["p_purchase"].mean()) <= 0.03
    buyer = frame["has_purchased"].to_numpy() > 0
    assert s["clv"][buyer].sum() == pytest.approx(w["clv"][buyer].sum(), rel=0.15)
    # quality out of time on the whole base: within QUALITY_MARGIN of the whole-base fit
    y_spend, y_buy = frame["holdout_spend"].to_numpy(float)[buyer], frame["purchased_in_horizon"].to_numpy(int)[buyer]
    gini_s, gini_w = (clv_metrics(y_spend, x["clv"].to_numpy()[buyer])["normalized_gini"] for x in (s, w))
    auc_s, auc_w = (propensity_metrics(y_buy, x["p_purchase"].to_numpy()[buyer])["roc_auc"] for x in (s, w))
    assert gini_s >= gini_w - QUALITY_MARGIN and auc_s >= auc_w - QUALITY_MARGIN, (gini_s, gini_w, auc_s, auc_w)
    # and both rank better than the strongest trivial rule, recency, does
    auc_recency = ranking_auc(y_buy, -frame["days_since_last_purchase"].to_numpy(float)[buyer])
    assert auc_s > auc_recency, (auc_s, auc_recency)


@pytest.mark.spark
def test_spark_draws_the_same_customers(tmp_path, spark_engine):
    """md5 keys and exact quantiles: the same base and seed give the same sample on Spark as on DuckDB."""
    simulate(400, dt.date(2024, 7, 1), END, seed=2).write(tmp_path / "data")
    cfg = Config().with_source_dir(tmp_path / "data")
    cfg.validation.quarantine_dir = str(tmp_path / "quarantine")
    duck = sample_customers(load_tables(cfg, as_of=END), 100, seed=5, as_of=END)
    cfg.features.engine = "spark"
    spark = sample_customers(load_tables(cfg, as_of=END), 100, seed=5, as_of=END)
    assert spark.strata.equals(duck.strata) and spark.spend_cuts == pytest.approx(duck.spend_cuts)
    for name in ("transactions", "interactions", "customers"):
        assert _ids(spark.tables, name) == _ids(duck.tables, name)
