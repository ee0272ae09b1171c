"""Sources and outputs at URLs on the spark engine: every look-up, peek, write, move and removal goes through the
session's Hadoop FileSystem (tiering.io._fs), the code an s3a://, hdfs:// or abfss:// URL takes on a cluster.
``file://`` URLs exercise it here, on local[2].

One simulated base of 400 customers (transactions and customers as Parquet, interactions as CSV, so the CSV
header is peeked at through Hadoop too): validate, features and predict with the sources (and the feature
file) given as file:// URLs match the same jobs given plain paths; a missing file:// source gets the missing-file
message, and a URL's password never shows in a message."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from tiering import jobs
from tiering.config import Config, TrackingConfig
from tiering.datasets import simulate
from tiering.exceptions import ConfigError
from tiering.io import connect, remove_output, write_table
from tiering.predict import predict_and_store
from tiering.store import ScoresStore

pytestmark = pytest.mark.spark

START, END, AS_OF = dt.date(2024, 1, 1), dt.date(2025, 12, 31), dt.date(2025, 9, 30)
SCORED_AT = dt.datetime(2026, 1, 1, 6, 0)


@pytest.fixture(scope="module")
def base(tmp_path_factory, spark_engine):
    """(root, {"plain": cfg, "url": cfg}) on the spark engine: the same files, named by path and by file:// URL."""
    root = tmp_path_factory.mktemp("spark_urls")
    data = simulate(400, START, END, seed=3)
    (root / "data").mkdir()
    data.transactions.to_parquet(root / "data/transactions.parquet", index=False)
    data.interactions.to_csv(root / "data/interactions.csv", index=False)
    data.customers.to_parquet(root / "data/customers.parquet", index=False)
    files = {t: root / "data" / f"{t}.{'csv' if t == 'interactions' else 'parquet'}" for t in ("transactions", "interactions", "customers")}
    cfgs = {}
    for kind in ("plain", "url"):
        cfg = Config().with_sources(**{t: (f.as_uri() if kind == "url" else f) for t, f in files.items()})
        cfg.features.engine = "spark"
        cfg.validation.quarantine_dir = str(root / kind / "quarantine")
        cfg.model.horizon_days, cfg.model.threads, cfg.model.training_origins, cfg.model.clv_model = 90, 1, 1, "hybrid"
        cfg.tracking = TrackingConfig(uri=f"sqlite:///{root}/mlflow.db", artifact_location=str(root / "artifacts"))
        cfg.store.url = f"sqlite:///{root}/{kind}.db"
        cfgs[kind] = cfg
    assert cfgs["url"].data.transactions.path.startswith("file:///")
    return root, cfgs


def test_validate_at_file_urls_matches_plain_paths(base):
    root, cfgs = base
    reports = {kind: jobs.validate(cfg, as_of=AS_OF).reports for kind, cfg in (("plain", on_duckdb(cfgs["plain"])), ("url", cfgs["url"]))}
    for plain, url in zip(reports["plain"], reports["url"], strict=True):
        assert url.source.startswith("file:///") and not plain.source.startswith("file:")
        counts = ("table", "rows_in", "rows_valid", "rows_quarantined", "quarantined", "unknown_event_types")
        assert [getattr(url, c) for c in counts] == [getattr(plain, c) for c in counts]
    assert reports["url"][0].rows_valid > 0 and {r.table for r in reports["url"]} == {"transactions", "interactions", "customers"}


def test_features_from_and_to_file_urls_match_plain_paths(base):
    root, cfgs = base
    url_out = (root / "url" / "features.parquet").as_uri()
    plain = jobs.features(on_duckdb(cfgs["plain"]), as_of=AS_OF, out=root / "plain" / "features.parquet")
    url = jobs.features(cfgs["url"], as_of=AS_OF, out=url_out)
    assert url.customers == plain.customers > 300 and url.columns == plain.columns  # those joined by AS_OF
    # one file where the URL points, nothing left beside it (the temporary folder, Hadoop's .crc files)
    assert sorted(p.name for p in (root / "url").iterdir() if p.name != "quarantine") == ["features.parquet"]
    a = pd.read_parquet(root / "plain" / "features.parquet").sort_values("customer_id", ignore_index=True)
    b = pd.read_parquet(root / "url" / "features.parquet").sort_values("customer_id", ignore_index=True)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, atol=1e-9)


def test_write_table_and_remove_output_at_a_file_url(base, tmp_path):
    _, cfgs = base
    con = connect("spark")
    expr = con.read_parquet(str(cfgs["plain"].data.customers.path))
    csv = (tmp_path / "out" / "customers.csv").as_uri()
    assert write_table(expr, csv) == 400
    assert len(pd.read_csv(tmp_path / "out" / "customers.csv")) == 400
    remove_output(csv, con)
    assert list((tmp_path / "out").iterdir()) == []
    (tmp_path / "out" / "folder").mkdir()
    with pytest.raises(ConfigError, match="is a folder; give a file name ending in .parquet or .csv"):
        write_table(expr, (tmp_path / "out" / "folder").as_uri())
    remove_output((tmp_path / "out" / "folder").as_uri(), con)  # not an output: it stays
    assert (tmp_path / "out" / "folder").is_dir()


def on_duckdb(cfg: Config) -> Config:
    """``cfg`` on the duckdb engine: the reference (tests/features/test_spark.py holds Spark to it on plain paths)."""
    cfg = cfg.model_copy(deep=True)
    cfg.features.engine = "duckdb"
    return cfg


def test_missing_file_url_source_is_the_missing_file_error(base, tmp_path):
    _, cfgs = base
    missing = (tmp_path / "nowhere" / "transactions.parquet").as_uri()
    with pytest.raises(ConfigError) as err:
        jobs.validate(cfgs["url"].with_sources(transactions=missing), as_of=AS_OF)
    assert str(err.value) == (
        f"The transactions source '{missing}' does not exist (looked up through Spark's Hadoop FileSystem). "
        "Fix data.transactions.path in the config or pass --transactions PATH."
    )


def test_a_url_password_never_shows(base):
    """s3a:// has no FileSystem on this local session: the message says which connector, and masks the password."""
    _, cfgs = base
    url = "s3a://AKIAEXAMPLE:wJalrXUtnFEMI-K7MDENG@bucket/tx.parquet"
    with pytest.raises(ConfigError) as err:
        jobs.validate(cfgs["url"].with_sources(transactions=url), as_of=AS_OF)
    text = str(err.value)
    assert "wJalrXUtnFEMI-K7MDENG" not in text and "s3a://AKIAEXAMPLE:***@bucket/tx.parquet" in text and "hadoop-aws" in text


def test_predict_from_file_urls_matches_plain_paths(base):
    """The model is trained once (DuckDB, plain paths); predict scores the base on Spark from the file:// URLs and on
    DuckDB from the plain paths. As in tests/test_predict.py, a customer sitting exactly on a learned cut point may
    move with a last-bit difference between engines: at most one here."""
    from tiering.train import train_and_register

    _, cfgs = base
    version = train_and_register(on_duckdb(cfgs["plain"]), as_of=AS_OF).version
    batches = {}
    for kind, cfg in (("plain", on_duckdb(cfgs["plain"])), ("url", cfgs["url"])):
        res = predict_and_store(cfg, as_of=AS_OF, model=str(version), scored_at=SCORED_AT)
        assert res.engine == cfg.features.engine and res.batch.rows > 300
        store = ScoresStore(cfg.store.url)
        batches[kind] = store.read_batch(store.latest_batch())
    plain, url = batches["plain"], batches["url"]
    assert list(url.columns) == list(plain.columns) and url["customer_id"].tolist() == plain["customer_id"].tolist()
    for c in url.columns:
        if c == "next_tier_proba":  # trees may split right at a feature value (tests/test_predict.py)
            assert np.isclose(url[c], plain[c], rtol=1e-9, atol=1e-9).mean() >= 0.99
        elif pd.api.types.is_float_dtype(plain[c]):
            np.testing.assert_allclose(url[c].to_numpy(float), plain[c].to_numpy(float), rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=c)
        else:
            assert (url[c].to_numpy() != plain[c].to_numpy()).sum() <= 1, c
