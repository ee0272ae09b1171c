"""Batch scoring end to end on a small simulation: a model trained and registered once, then
`tiering predict` through the real command line (tiering.cli.main) and the Python API.

Covers: chunked scoring equal to in-memory scoring, the scores file (Parquet/CSV), the model
by version, alias or URI, re-runs replacing their batch, and the safety rules (feature spec
mismatch, as_of outside the data, empty base, locked SQLite and unreachable PostgreSQL stores,
a crash mid-run): each a clear message, exit status 2 (3 for a locked or unreachable store) and nothing written; and resuming a run
interrupted while scoring or writing (predict.work_dir, --work-dir), never from stale files.
"""

import datetime as dt
import json
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tiering import cli
from tiering.datasets import simulate
from tiering.predict import predict_and_store, score
from tiering.schemas import SCORES_COLUMNS
from tiering.store import ScoresStore

START, END = dt.date(2024, 1, 1), dt.date(2025, 12, 31)
SCORED_AT = dt.datetime(2026, 1, 1, 6, 0)


def _config_file(root, **overrides) -> str:
    raw = {
        "data": {"transactions": {"path": str(root / "data/transactions.parquet")},
                 "interactions": {"path": str(root / "data/interactions.parquet")},
                 "customers": {"path": str(root / "data/customers.parquet")}},
        "validation": {"quarantine_dir": str(root / "quarantine")},
        "tracking": {"uri": f"sqlite:///{root}/mlflow.db", "artifact_location": str(root / "artifacts")},
        "store": {"url": f"sqlite:///{root}/scores.db", "lock_timeout_s": 0.2},
        "predict": {"chunk_rows": 700},
    }
    for key, value in overrides.items():
        section, name = key.split("__")
        raw.setdefault(section, {})[name] = value
    path = root / f"config-{abs(hash(repr(sorted(overrides.items()))))}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """1,500 simulated customers, one model trained as of END, registered and promoted to champion."""
    from tiering.config import load_config
    from tiering.registry import promote
    from tiering.train import train_and_register

    root = tmp_path_factory.mktemp("predict")
    simulate(1500, START, END, seed=11).write(root / "data")
    cfg = load_config(_config_file(root))
    result = train_and_register(cfg, as_of=END)
    promote(result.version, cfg.tracking, force=True)
    return root, cfg, result


def run(monkeypatch, capsys, *args):
    """The real entry point (tiering.cli.main, as installed): (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["tiering", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err


def _batches(cfg) -> list:
    return ScoresStore(cfg.store.url).batches_list()


def _assert_same_scores(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """The same customers, tiers, segments and scores (last-digit float noise aside).

    Two feature builds give the same frame since money is summed exactly (float sums in thread order once
    moved a rounded tree input across a split: CI saw 0.99798 against 0.99774 for one customer)."""
    assert a["customer_id"].tolist() == b["customer_id"].tolist()
    for c in ("p_purchase", "churn_risk", "clv", "expected_spend", "next_tier_proba"):
        np.testing.assert_allclose(a[c].to_numpy(float), b[c].to_numpy(float), rtol=1e-12, atol=0, equal_nan=True, err_msg=c)
    for c in ("tier", "tier_reason", "rfm_segment", "next_tier", "r_score", "koc_candidate", "at_risk"):
        assert a[c].tolist() == b[c].tolist(), c


def test_chunked_predict_equals_in_memory_scoring_and_writes_store_and_file(trained, tmp_path):
    root, cfg, result = trained
    from tiering.registry import load_bundle
    from tiering.validation import load_tables

    cfg = cfg.model_copy(deep=True)
    cfg.store.url = f"sqlite:///{tmp_path}/scores.db"
    ticks = []
    res = predict_and_store(cfg, as_of=END, out=tmp_path / "scores.parquet", scored_at=SCORED_AT,
                            on_chunk=lambda stage, done, total: ticks.append((stage, done, total)))
    n = len(pd.read_parquet(root / "data/customers.parquet"))
    assert res.batch.rows == n and res.batch.model_version == result.version and res.batch.finished_at == SCORED_AT
    assert [t for t in ticks if t[0] == "score"][-1] == ("score", n, n)
    assert len([t for t in ticks if t[0] == "score"]) == -(-n // 700) and ticks[-1] == ("write", n, n)
    assert set(res.timings) >= {"load_model", "validate", "features", "score", "write", "out"}

    store = ScoresStore(cfg.store.url)
    stored = store.read_batch(store.latest_batch())
    bundle, name, version = load_bundle("champion", cfg.tracking)
    expected = score(load_tables(cfg, as_of=END), bundle, as_of=END, model_name=name, model_version=version,
                     scored_at=SCORED_AT).sort_values("customer_id").reset_index(drop=True)
    _assert_same_scores(stored, expected)
    assert (pd.to_datetime(stored["scored_at"]) == pd.Timestamp(SCORED_AT)).all()

    file = pd.read_parquet(tmp_path / "scores.parquet").sort_values("customer_id").reset_index(drop=True)
    assert list(file.columns) == list(SCORES_COLUMNS) and len(file) == n
    np.testing.assert_allclose(file["clv"], stored["clv"])
    assert res.summary["customers"].sum() == n


def test_features_built_in_customer_buckets_score_the_same(trained, tmp_path):
    root, cfg, _ = trained
    whole = cfg.model_copy(deep=True)
    whole.store.url = f"sqlite:///{tmp_path}/whole.db"
    ref = predict_and_store(whole, as_of=END, scored_at=SCORED_AT)

    bucketed = _resumable(cfg, tmp_path, store="bucketed")
    tx_ix_rows = sum(r.rows_valid for r in ref.reports if r.table in ("transactions", "interactions"))
    bucketed.features.bucket_rows = tx_ix_rows // 3 + 1  # three buckets
    res = predict_and_store(bucketed, as_of=END, scored_at=SCORED_AT)
    assert res.batch.rows == ref.batch.rows
    a, b = (ScoresStore(c.store.url).read_batch(r.batch) for c, r in ((bucketed, res), (whole, ref)))
    _assert_same_scores(a, b)


def test_cli_predict_by_version_alias_and_uri_with_progress_and_csv(trained, monkeypatch, capsys, tmp_path):
    root, cfg, result = trained
    config = _config_file(root, store__url=f"sqlite:///{tmp_path}/scores.db")
    v = result.version
    code, out, err = run(monkeypatch, capsys, "predict", "--as-of", str(END), "--config", config, "--out",
                         str(tmp_path / "scores.csv"))
    assert code == 0, err
    assert "scoring" in err and "writing to the store" in err and f"with customer-tiering v{v}" in out
    csv = pd.read_csv(tmp_path / "scores.csv")
    assert list(csv.columns) == list(SCORES_COLUMNS) and len(csv) == _batches(cfg.model_copy(
        update={"store": cfg.store.model_copy(update={"url": f"sqlite:///{tmp_path}/scores.db"})}))[0].rows

    for model in (v, f"models:/customer-tiering/{v}"):
        code, out, err = run(monkeypatch, capsys, "predict", "--as-of", str(END), "--model", model, "--config", config,
                             "--json", "--chunk-rows", "5000")
        assert code == 0, err
        payload = json.loads(out)
        assert payload["batch"]["model_version"] == v and payload["engine"] == "duckdb"
    store = ScoresStore(f"sqlite:///{tmp_path}/scores.db")
    assert len(store.batches_list()) == 1  # every re-run of the same as_of and version replaced the batch

    code, out, err = run(monkeypatch, capsys, "predict", "--as-of", "2025-12-01", "--config", config, "--json")
    assert code == 0, err
    assert [b.as_of for b in store.batches_list()] == [dt.date(2025, 12, 1), END]

    code, _, err = run(monkeypatch, capsys, "predict", "--as-of", str(END), "--model", "99", "--config", config)
    assert code == 2 and "error: Cannot load model 'models:/customer-tiering/99'" in err
    code, _, err = run(monkeypatch, capsys, "predict", "--as-of", str(END), "--config", config, "--out", "x.txt")
    assert code == 2 and "error: --out must end in .parquet or .csv; got 'x.txt'." in err


def test_feature_spec_mismatch_is_refused(trained, monkeypatch, capsys, tmp_path):
    import copy

    from tiering import registry, tracking
    from tiering.features import FeatureSpec

    root, cfg, result = trained
    config = _config_file(root, store__url=f"sqlite:///{tmp_path}/scores.db")
    example = result.input_example
    for spec_change, message in (
        ({"windows_days": [30, 60]}, r"does not build columns the model was trained on: \['orders_90d', 'orders_180d'"),
        ({"version": "0"}, f"trained on feature spec version 0; this tiering builds version {FeatureSpec().version}"),
    ):
        bundle = copy.deepcopy(result.bundle)
        bundle.feature_spec = bundle.feature_spec | spec_change
        _, uri = tracking.log_training_run(bundle, cfg=cfg.tracking, run_name="tampered", params={}, metrics={}, tags={},
                                           input_example=example)
        version = registry.register(uri, cfg.tracking)
        code, _, err = run(monkeypatch, capsys, "predict", "--as-of", str(END), "--model", version, "--config", config)
        assert code == 2 and "Traceback" not in err
        assert pd.Series([err]).str.contains(message).all(), err
    assert ScoresStore(f"sqlite:///{tmp_path}/scores.db").batches_list() == []


def test_as_of_outside_the_data_is_refused(trained, monkeypatch, capsys, tmp_path):
    root, _, _ = trained
    config = _config_file(root, store__url=f"sqlite:///{tmp_path}/scores.db")
    code, _, err = run(monkeypatch, capsys, "predict", "--as-of", "2026-03-01", "--config", config)
    assert code == 2
    assert ("error: --as-of 2026-03-01 is 60 days after the latest transaction, interaction or join in the sources "
            "(2025-12-31)") in err and "predict.max_days_after_data (now 7)" in err
    code, _, err = run(monkeypatch, capsys, "predict", "--as-of", "2023-06-01", "--config", config)
    assert code == 2 and "Choose an as_of on or after 2024-01-08. Nothing was written." in err and "Traceback" not in err
    assert ScoresStore(f"sqlite:///{tmp_path}/scores.db").batches_list() == []
    # within the allowed gap it scores
    code, _, err = run(monkeypatch, capsys, "predict", "--as-of", "2026-01-05", "--config", config, "--json")
    assert code == 0, err


def test_empty_base_is_refused(trained, monkeypatch, capsys, tmp_path):
    root, _, _ = trained
    empty = tmp_path / "transactions.parquet"
    pd.read_parquet(root / "data/transactions.parquet").iloc[:0].to_parquet(empty)
    config = _config_file(root, store__url=f"sqlite:///{tmp_path}/scores.db")
    code, _, err = run(monkeypatch, capsys, "predict", "--as-of", str(END), "--config", config, "--transactions", str(empty))
    assert code == 2 and "error: The transactions table from" in err and "has no usable rows (0 read" in err
    assert ScoresStore(f"sqlite:///{tmp_path}/scores.db").batches_list() == []


def test_locked_and_unreachable_stores_exit_non_zero(trained, monkeypatch, capsys, tmp_path):
    root, _, _ = trained
    config = _config_file(root, store__url=f"sqlite:///{tmp_path}/scores.db")
    code, _, err = run(monkeypatch, capsys, "predict", "--as-of", str(END), "--config", config, "--json")
    assert code == 0, err
    other = sqlite3.connect(tmp_path / "scores.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        code, _, err = run(monkeypatch, capsys, "predict", "--as-of", "2025-12-01", "--config", config)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert code == 3 and "database is locked. Nothing was written; the previous scores are intact." in err
    assert "Another process holds the write lock (waited 0.2 s, store.lock_timeout_s)" in err
    assert [b.as_of for b in ScoresStore(f"sqlite:///{tmp_path}/scores.db").batches_list()] == [END]

    pg = _config_file(root, store__url="postgresql://tiering:secret@127.0.0.1:9/tiering")
    code, _, err = run(monkeypatch, capsys, "predict", "--as-of", str(END), "--config", pg)
    assert code == 3 and "error: Cannot reach the scores store 'postgresql+psycopg://tiering:***@127.0.0.1:9/tiering'" in err
    assert "secret" not in err


def test_crash_mid_run_leaves_previous_scores_and_no_file(trained, monkeypatch, tmp_path):
    from tiering.models.bundle import ScoringBundle

    root, cfg, _ = trained
    cfg = cfg.model_copy(deep=True)
    cfg.store.url = f"sqlite:///{tmp_path}/scores.db"
    first = predict_and_store(cfg, as_of=END, scored_at=SCORED_AT)
    before = ScoresStore(cfg.store.url).read_batch(first.batch)

    real, calls = ScoringBundle.predict, []

    def flaky(self, features):
        calls.append(len(features))
        if len(calls) == 2:
            raise MemoryError("killed mid-run")
        return real(self, features)

    monkeypatch.setattr(ScoringBundle, "predict", flaky)
    with pytest.raises(MemoryError):
        predict_and_store(cfg, as_of=END, out=tmp_path / "scores.parquet", scored_at=dt.datetime(2026, 1, 2))
    store = ScoresStore(cfg.store.url)
    (batch,) = store.batches_list()
    assert batch.finished_at == SCORED_AT
    pd.testing.assert_frame_equal(store.read_batch(batch), before)
    assert not (tmp_path / "scores.parquet").exists()


def _resumable(cfg, tmp_path, store: str = "scores"):
    """A copy of ``cfg`` writing to its own store, with checkpoints in tmp_path/work, 300 customers a chunk."""
    cfg = cfg.model_copy(deep=True)
    cfg.store.url = f"sqlite:///{tmp_path}/{store}.db"
    cfg.predict.work_dir = str(tmp_path / "work")
    cfg.predict.chunk_rows = 300
    return cfg


def _count_predicts(monkeypatch, fail_at: int | None = None) -> list:
    """ScoringBundle.predict counting its calls (the list returned), raising MemoryError on call ``fail_at``."""
    from tiering.models.bundle import ScoringBundle

    real, calls = ScoringBundle.predict, []

    def counted(self, features):
        calls.append(len(features))
        if len(calls) == fail_at:
            raise MemoryError("killed mid-run")
        return real(self, features)

    monkeypatch.setattr(ScoringBundle, "predict", counted)
    return calls


def _forbid_features(monkeypatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("a resumed run validated the sources or built the features again")

    monkeypatch.setattr("tiering.validation.load_tables", forbidden)
    monkeypatch.setattr("tiering.scoring.duckdb_path.build_features", forbidden)


def test_run_interrupted_while_scoring_resumes_from_its_part_files(trained, monkeypatch, tmp_path):
    root, cfg, _ = trained
    cfg = _resumable(cfg, tmp_path)
    n = len(pd.read_parquet(root / "data/customers.parquet"))
    total = -(-n // 300)
    calls = _count_predicts(monkeypatch, fail_at=3)
    with pytest.raises(MemoryError, match="killed mid-run"):
        predict_and_store(cfg, as_of=END, scored_at=SCORED_AT)
    assert _batches(cfg) == [] and len(calls) == 3
    (run,) = (tmp_path / "work").iterdir()
    assert run.name.startswith("run-") and (run / "features").is_dir()
    assert sorted(p.name for p in (run / "scores").glob("*.parquet")) == ["part-00000.parquet", "part-00001.parquet"]
    assert json.loads((run / "manifest.json").read_text())["scored_at"] == SCORED_AT.isoformat()

    monkeypatch.undo()
    calls = _count_predicts(monkeypatch)
    _forbid_features(monkeypatch)
    steps, ticks = [], []
    res = predict_and_store(cfg, as_of=END, scored_at=dt.datetime(2026, 1, 2), progress=steps.append,
                            on_chunk=lambda stage, done, rows: ticks.append((stage, done, rows)))
    assert len(calls) == total - 2 and sum(calls) == n - 600
    assert res.resumed == {"features": True, "chunks_done": 2, "chunks_total": total}
    assert res.to_dict()["resumed"] == res.resumed
    assert any(f"features done, 2/{total} chunks already scored" in s for s in steps), steps
    assert ("score", n, n) in ticks and ticks[-1] == ("write", n, n)
    assert res.batch.rows == n and res.batch.finished_at == SCORED_AT  # the first attempt's scored_at
    assert not run.exists()
    resumed = ScoresStore(cfg.store.url).read_batch(res.batch)
    assert (pd.to_datetime(resumed["scored_at"]) == pd.Timestamp(SCORED_AT)).all()

    monkeypatch.undo()
    whole = _resumable(cfg, tmp_path, store="uninterrupted")
    whole.predict.work_dir = None
    ref = predict_and_store(whole, as_of=END, scored_at=SCORED_AT)
    assert ref.resumed is None
    assert [r.to_dict() for r in res.reports] == [r.to_dict() for r in ref.reports]
    _assert_same_scores(resumed, ScoresStore(whole.store.url).read_batch(ref.batch))


def test_run_interrupted_while_writing_resumes_without_scoring(trained, monkeypatch, tmp_path):
    root, cfg, _ = trained
    cfg = _resumable(cfg, tmp_path)
    real_write = ScoresStore.write_chunks

    def disk_full(self, chunks, **kwargs):
        def broken():
            yield next(iter(chunks))
            raise OSError("disk full")

        return real_write(self, broken(), **kwargs)

    monkeypatch.setattr(ScoresStore, "write_chunks", disk_full)
    with pytest.raises(OSError, match="disk full"):
        predict_and_store(cfg, as_of=END, scored_at=SCORED_AT)
    assert _batches(cfg) == []

    monkeypatch.undo()
    calls = _count_predicts(monkeypatch)
    _forbid_features(monkeypatch)
    res = predict_and_store(cfg, as_of=END, scored_at=SCORED_AT, out=tmp_path / "scores.parquet")
    total = res.resumed["chunks_total"]
    assert calls == [] and res.resumed == {"features": True, "chunks_done": total, "chunks_total": total}
    assert [b.rows for b in _batches(cfg)] == [len(pd.read_parquet(root / "data/customers.parquet"))]
    assert len(pd.read_parquet(tmp_path / "scores.parquet")) == res.batch.rows
    assert list((tmp_path / "work").iterdir()) == []


def test_changed_source_starts_a_fresh_run(trained, monkeypatch, tmp_path):
    import tiering.validation

    root, cfg, _ = trained
    transactions = tmp_path / "transactions.parquet"
    pd.read_parquet(root / "data/transactions.parquet").to_parquet(transactions)
    cfg = _resumable(cfg.with_sources(transactions=transactions), tmp_path)
    _count_predicts(monkeypatch, fail_at=1)
    with pytest.raises(MemoryError):
        predict_and_store(cfg, as_of=END, scored_at=SCORED_AT)
    (stale,) = (tmp_path / "work").iterdir()

    monkeypatch.undo()
    pd.read_parquet(transactions).iloc[1:].to_parquet(transactions)  # one row fewer
    real, validations = tiering.validation.load_tables, []
    monkeypatch.setattr("tiering.validation.load_tables", lambda *a, **k: validations.append(1) or real(*a, **k))
    res = predict_and_store(cfg, as_of=END, scored_at=dt.datetime(2026, 1, 2))
    assert validations == [1] and res.resumed is None and res.batch.finished_at == dt.datetime(2026, 1, 2)
    assert list((tmp_path / "work").iterdir()) == [stale]  # the other run's folder is left alone


def test_a_second_run_with_the_same_inputs_is_refused_while_the_first_holds_the_folder(trained, monkeypatch, tmp_path):
    from tiering.exceptions import StoreError
    from tiering.scoring.run_folder import exclusive

    _, cfg, _ = trained
    cfg = _resumable(cfg, tmp_path)
    _count_predicts(monkeypatch, fail_at=1)
    with pytest.raises(MemoryError):
        predict_and_store(cfg, as_of=END, scored_at=SCORED_AT)
    monkeypatch.undo()
    (run,) = (tmp_path / "work").iterdir()
    with exclusive(tmp_path / "work" / f"{run.name}.lock"):  # what the first run holds while it runs
        with pytest.raises(StoreError, match="Another `tiering predict` with the same inputs is running"):
            predict_and_store(cfg, as_of=END, scored_at=SCORED_AT)
    assert _batches(cfg) == []
    assert predict_and_store(cfg, as_of=END, scored_at=SCORED_AT).resumed["features"]


def test_cli_work_dir_sets_predict_work_dir(trained, monkeypatch, capsys, tmp_path):
    import tiering.predict

    root, _, _ = trained
    config = _config_file(root, store__url=f"sqlite:///{tmp_path}/scores.db")
    real, seen = tiering.predict.predict_and_store, []
    monkeypatch.setattr(tiering.predict, "predict_and_store",
                        lambda cfg, **kwargs: seen.append(cfg.predict.work_dir) or real(cfg, **kwargs))
    code, out, err = run(monkeypatch, capsys, "predict", "--as-of", str(END), "--config", config, "--json",
                         "--work-dir", str(tmp_path / "work"))
    assert code == 0, err
    assert seen == [str(tmp_path / "work")] and json.loads(out)["resumed"] is None
    assert list((tmp_path / "work").iterdir()) == []  # the run's folder goes when it succeeds


@pytest.mark.spark
def test_spark_engine_writes_the_same_scores_as_duckdb(trained, tmp_path, spark_engine):
    """--engine spark: features through Ibis on PySpark (local[2]), scoring by mlflow.pyfunc.spark_udf.

    Engines add floats in different orders, so features agree to ~1e-12; every id must be identical,
    every score within 1e-9 relative, and tiers, reasons and segments identical but for customers sitting
    on a cut point (at most 0.2%). next_tier_proba comes from trees
    that can split right at a feature value, so a last-bit difference may move a customer to the
    neighbouring leaf: it must agree on at least 99% of customers.
    """
    root, cfg, result = trained
    batches = {}
    for engine in ("duckdb", "spark"):
        c = cfg.model_copy(deep=True)
        c.features.engine = engine
        c.store.url = f"sqlite:///{tmp_path}/{engine}.db"
        res = predict_and_store(c, as_of=END, scored_at=SCORED_AT, out=tmp_path / f"{engine}.parquet")
        assert res.engine == engine and res.batch.model_version == result.version
        store = ScoresStore(c.store.url)
        batches[engine] = store.read_batch(store.latest_batch())
    duck, spark = batches["duckdb"], batches["spark"]
    assert len(spark) == len(duck) == len(pd.read_parquet(tmp_path / "spark.parquet"))
    assert list(spark.columns) == list(SCORES_COLUMNS)
    for c in ("customer_id", "as_of", "horizon_days", "model_name", "model_version", "scored_at"):
        assert spark[c].tolist() == duck[c].tolist(), c
    # cut points learned at fit time are values of the training frame, so a customer can sit exactly on one:
    # a last-bit difference between engines may move that customer across it, never more than a handful
    for c in ("tier", "tier_reason", "next_tier", "rfm_segment", "r_score", "f_score", "m_score", "koc_candidate", "at_risk"):
        same = spark[c].to_numpy() == duck[c].to_numpy()
        assert same.mean() >= 0.998, (c, spark[c][~same].head(2).tolist(), duck[c][~same].head(2).tolist())
    for c in ("p_purchase", "churn_risk", "p_alive", "expected_purchases", "expected_spend", "clv", "engagement_score"):
        np.testing.assert_allclose(spark[c].to_numpy(float), duck[c].to_numpy(float), rtol=1e-9, atol=1e-9, equal_nan=True,
                                   err_msg=c)
    same = np.isclose(spark["next_tier_proba"], duck["next_tier_proba"], rtol=1e-9, atol=1e-9)
    assert same.mean() >= 0.99


# --------------------------------------------------------------------------------------------- faults in order

def _leftovers(folder) -> list[str]:
    """Staging folders and unfinished files a run could leave in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".tiering-out-") or p.name.endswith(".partial"))


def test_out_in_an_unwritable_place_is_refused_before_anything_is_written(trained, monkeypatch, capsys, tmp_path):
    import os

    root, _, _ = trained
    config = _config_file(root, store__url=f"sqlite:///{tmp_path}/scores.db",
                          validation__quarantine_dir=str(tmp_path / "quarantine"))
    (tmp_path / "file.txt").write_text("not a folder")
    if os.geteuid() == 0:  # root writes into a folder without write permission: use one that takes no new file
        ro, reason = Path("/proc"), "No such file or directory (ENOENT)"
    else:
        ro, reason = tmp_path / "ro", "Permission denied (EACCES)"
        ro.mkdir(mode=0o555)
    for out, why in ((tmp_path / "file.txt" / "scores.csv", f"'{tmp_path / 'file.txt'}' is a file, not a folder"),
                     (ro / "sub" / "scores.csv", f"'{ro}' is not writable ({reason})")):
        code, _, err = run(monkeypatch, capsys, "predict", "--as-of", str(END), "--config", config, "--out", str(out))
        assert code == 2 and "Traceback" not in err, err
        assert f"Cannot write --out '{out}': {why}. Nothing was written." in err
    assert not (tmp_path / "scores.db").exists() and not (tmp_path / "quarantine").exists()


def test_full_disk_while_writing_out_rolls_the_batch_back(trained, monkeypatch, capsys, tmp_path):
    import errno

    import tiering.scoring.output

    root, cfg, _ = trained
    config = _config_file(root, store__url=f"sqlite:///{tmp_path}/scores.db")
    code, _, err = run(monkeypatch, capsys, "predict", "--as-of", str(END), "--config", config, "--json")
    assert code == 0, err
    store = ScoresStore(f"sqlite:///{tmp_path}/scores.db")
    (before,) = store.batches_list()
    rows_before = store.read_batch(before)

    def full_disk(folder, path, schema, batch_rows):
        path.with_name(f".{path.name}.partial").write_bytes(b"PAR1")  # what a writer leaves half-written
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tiering.scoring.output, "concat_parts", full_disk)
    outs = tmp_path / "outs"
    for as_of in (END, dt.date(2025, 12, 1)):  # replacing the batch of END, adding one of 2025-12-01
        code, _, err = run(monkeypatch, capsys, "predict", "--as-of", str(as_of), "--config", config, "--out",
                           str(outs / "scores.parquet"))
        assert code == 2 and "Traceback" not in err, err
        assert f"Cannot write --out '{outs / 'scores.parquet'}': No space left on device (ENOSPC)." in err
        assert "the scores store is as it was (this batch was rolled back)" in err
        assert store.batches_list() == [before]
        assert _leftovers(outs) == [] and not (outs / "scores.parquet").exists()
    pd.testing.assert_frame_equal(store.read_batch(before), rows_before)


def test_out_is_written_before_the_store_commits(trained, monkeypatch, tmp_path):
    """The file is complete (under its staging name) while the batch is still invisible to readers."""
    import tiering.scoring.output

    root, cfg, _ = trained
    cfg = cfg.model_copy(deep=True)
    cfg.store.url = f"sqlite:///{tmp_path}/scores.db"
    real, seen = tiering.scoring.output.concat_parts, []

    def watched(folder, path, schema, batch_rows):
        rows = real(folder, path, schema, batch_rows)
        seen.append((path.parent.name, len(pd.read_parquet(path)), (tmp_path / "scores.db").exists()
                     and ScoresStore(cfg.store.url, create=False).batches_list()))
        return rows

    monkeypatch.setattr(tiering.scoring.output, "concat_parts", watched)
    res = predict_and_store(cfg, as_of=END, out=tmp_path / "scores.parquet", scored_at=SCORED_AT)
    ((stage, rows, batches),) = seen
    assert stage.startswith(".tiering-out-") and rows == res.batch.rows and not batches
    assert len(pd.read_parquet(tmp_path / "scores.parquet")) == res.batch.rows and _leftovers(tmp_path) == []


def test_refused_runs_write_no_quarantine_store_out_or_checkpoint(trained, monkeypatch, capsys, tmp_path):
    root, _, _ = trained
    empty = tmp_path / "empty.parquet"
    pd.read_parquet(root / "data/transactions.parquet").iloc[:0].to_parquet(empty)
    config = _config_file(root, store__url=f"sqlite:///{tmp_path}/scores.db", predict__work_dir=str(tmp_path / "work"),
                          validation__quarantine_dir=str(tmp_path / "quarantine"))
    out = tmp_path / "out" / "scores.csv"
    for args, message in (
        (("--as-of", "2023-06-01"), "2023-06-01"),  # before the first transaction
        (("--as-of", "2026-03-01"), "is 60 days after the latest transaction"),
        (("--as-of", str(END), "--transactions", str(empty)), "has no usable rows"),
    ):
        code, _, err = run(monkeypatch, capsys, "predict", "--config", config, "--out", str(out), *args)
        assert code == 2 and message in err and "Traceback" not in err, err
        assert not (tmp_path / "scores.db").exists() and not (tmp_path / "quarantine").exists()
        assert not out.parent.exists() and list((tmp_path / "work").iterdir()) == []
    # the same sources at an accepted date write all three (the quarantine: rows after that as_of)
    code, _, err = run(monkeypatch, capsys, "predict", "--config", config, "--out", str(out), "--as-of", "2025-12-01")
    assert code == 0, err
    assert (tmp_path / "scores.db").exists() and out.exists() and (tmp_path / "quarantine/transactions.parquet").exists()


def test_model_refused_for_its_feature_spec_writes_nothing(trained, monkeypatch, capsys, tmp_path):
    import copy

    from tiering import registry, tracking

    root, cfg, result = trained
    bundle = copy.deepcopy(result.bundle)
    bundle.feature_spec = bundle.feature_spec | {"version": "0"}
    _, uri = tracking.log_training_run(bundle, cfg=cfg.tracking, run_name="old-spec", params={}, metrics={}, tags={},
                                       input_example=result.input_example)
    version = registry.register(uri, cfg.tracking)
    config = _config_file(root, store__url=f"sqlite:///{tmp_path}/scores.db",
                          validation__quarantine_dir=str(tmp_path / "quarantine"))
    code, _, err = run(monkeypatch, capsys, "predict", "--as-of", "2025-12-01", "--model", version, "--config", config,
                       "--out", str(tmp_path / "scores.parquet"))
    assert code == 2 and "trained on feature spec version 0" in err
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("config")) == []


def _private_tmp(monkeypatch, tmp_path):
    import tempfile

    folder = tmp_path / "systmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.mark.parametrize("fault", [MemoryError("killed mid-run"), KeyboardInterrupt(), SystemExit(143)])
def test_temporary_folders_are_removed_on_every_exit_path(trained, monkeypatch, tmp_path, fault):
    from tiering.models.bundle import ScoringBundle

    _, cfg, _ = trained
    cfg = cfg.model_copy(deep=True)
    cfg.store.url = f"sqlite:///{tmp_path}/scores.db"
    systmp = _private_tmp(monkeypatch, tmp_path)
    real, calls = ScoringBundle.predict, []

    def failing(self, features):
        calls.append(1)
        if len(calls) == 2:
            raise fault
        return real(self, features)

    monkeypatch.setattr(ScoringBundle, "predict", failing)
    with pytest.raises(type(fault)):
        predict_and_store(cfg, as_of=END, out=tmp_path / "scores.parquet", scored_at=SCORED_AT)
    assert [p.name for p in systmp.iterdir() if p.name.startswith("tiering-")] == []
    assert not (tmp_path / "scores.parquet").exists() and _leftovers(tmp_path) == []
    assert ScoresStore(cfg.store.url).batches_list() == []


def test_stale_folders_of_killed_runs_are_removed_at_start(trained, monkeypatch, tmp_path):
    import fcntl
    import os
    import time

    from tiering.predict import STALE_AFTER_S, clean_stale_folders

    _, cfg, _ = trained
    systmp = _private_tmp(monkeypatch, tmp_path)
    outs = tmp_path / "outs"
    old = time.time() - STALE_AFTER_S - 60
    folders = {name: parent / name for parent, name in (
        (systmp, "tiering-predict-killed"), (systmp, "tiering-predict-running"), (systmp, "tiering-predict-fresh"),
        (systmp, "other-tool-old"), (outs, ".tiering-out-killed"))}
    for name, folder in folders.items():
        (folder / "features").mkdir(parents=True)
        (folder / ".lock").touch()
        if name != "tiering-predict-fresh":
            os.utime(folder, (old, old))
    with open(folders["tiering-predict-running"] / ".lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a live run holds its lock
        assert clean_stale_folders(systmp, now=old + 30) == []  # nothing old enough yet
        cfg = cfg.model_copy(deep=True)
        cfg.store.url = f"sqlite:///{tmp_path}/scores.db"
        predict_and_store(cfg, as_of=END, out=outs / "scores.parquet", scored_at=SCORED_AT)
    assert sorted(p.name for p in systmp.iterdir()) == ["other-tool-old", "tiering-predict-fresh", "tiering-predict-running"]
    assert sorted(p.name for p in outs.iterdir()) == ["scores.parquet"]


def test_scoring_before_the_training_as_of_warns_and_the_report_marks_it(trained, monkeypatch, capsys, tmp_path):
    from tiering.report import build_report

    root, cfg, result = trained
    cfg = cfg.model_copy(deep=True)
    cfg.store.url = f"sqlite:///{tmp_path}/scores.db"
    early = dt.date(2025, 6, 30)
    from tiering.exceptions import TieringWarning

    with pytest.warns(TieringWarning) as caught:
        res = predict_and_store(cfg, as_of=early, scored_at=SCORED_AT)
    (warning,) = res.warnings
    assert (f"--as-of {early} is before the training as_of of model customer-tiering v{result.version} ({END})"
            in warning) and "accuracy measured on outcomes after 2025-06-30 is in-sample" in warning
    assert res.to_dict()["warnings"] == [warning] and [str(w.message) for w in caught if w.category is TieringWarning] == [warning]
    assert predict_and_store(cfg, as_of=END, scored_at=SCORED_AT).warnings == []  # at the training as_of: out of time

    report = build_report(cfg, as_of=early, out=tmp_path / "early.html")
    html = (tmp_path / "early.html").read_text()
    assert report.sections["in_sample"] and html.count('class="note in-sample"') == 2
    assert f"Scored on {early}, before the model&#39;s training date ({END}): accuracy shown is in-sample." in html
    build_report(cfg, as_of=END, out=tmp_path / "end.html")
    assert "in-sample" not in (tmp_path / "end.html").read_text()

    config = _config_file(root, store__url=f"sqlite:///{tmp_path}/scores.db")
    code, out, err = run(monkeypatch, capsys, "predict", "--as-of", str(early), "--config", config, "--json")
    assert code == 0 and json.loads(out)["warnings"] == [warning], err
    assert f"warning: {warning}" in err


def test_kill_9_mid_run_keeps_the_store_and_its_folder_goes_once_stale(trained, tmp_path):
    """A real `tiering predict` process killed with SIGKILL while it scores: no batch, no --out, and the run
    folder it could not remove is left unlocked; the cleanup at the next start removes it once it is stale."""
    import os
    import signal
    import subprocess
    import time

    from tiering.predict import STALE_AFTER_S, clean_stale_folders

    root, _, _ = trained
    systmp = tmp_path / "systmp"
    systmp.mkdir()
    config = _config_file(root, store__url=f"sqlite:///{tmp_path}/scores.db", predict__chunk_rows=40)
    proc = subprocess.Popen([sys.executable, "-m", "tiering", "predict", "--as-of", str(END), "--config", config,
                             "--out", str(tmp_path / "out" / "scores.parquet")], env=os.environ | {"TMPDIR": str(systmp)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while not list(systmp.glob("tiering-predict-*/scores/part-*.parquet")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()[-2000:]
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ScoresStore(f"sqlite:///{tmp_path}/scores.db").batches_list() == []
    assert not (tmp_path / "out" / "scores.parquet").exists()
    (left,) = systmp.glob("tiering-predict-*")
    assert clean_stale_folders(systmp) == [] and left.exists()  # too fresh to judge
    assert clean_stale_folders(systmp, now=time.time() + STALE_AFTER_S + 1) == [left] and not left.exists()


def test_hysteresis_keeps_customers_near_a_threshold_and_margin_0_is_no_hysteresis(trained, tmp_path):
    from tiering.models.tiers import apply_hysteresis

    root, cfg, result = trained
    earlier = END - dt.timedelta(days=28)

    def cfg_for(store: str, margin: float):
        c = cfg.model_copy(deep=True)
        c.store.url = f"sqlite:///{tmp_path}/{store}.db"
        c.model.tier_hysteresis_margin = margin
        return c

    fresh = predict_and_store(cfg_for("fresh", 1.0), as_of=END, scored_at=SCORED_AT)  # no earlier batch: none
    assert fresh.flips_avoided is None and fresh.to_dict()["flips_avoided"] is None
    rules = ScoresStore(cfg_for("fresh", 1.0).store.url).read_batch(fresh.batch)

    with pytest.warns(Warning):
        predict_and_store(cfg_for("two", 0.0), as_of=earlier, scored_at=SCORED_AT)
    store = ScoresStore(cfg_for("two", 0.0).store.url)
    previous = store.read_batch(store.latest_batch())
    # margin 0: exactly the rule tiers and reasons, nothing recorded
    zero = predict_and_store(cfg_for("two", 0.0), as_of=END, scored_at=SCORED_AT)
    assert zero.flips_avoided is None and store.latest_batch().flips_avoided is None
    got = store.read_batch(store.latest_batch())
    assert got["tier"].tolist() == rules["tier"].tolist() and got["tier_reason"].tolist() == rules["tier_reason"].tolist()

    # the widest margin: every changed customer whose former tier can still hold is kept there
    held_run = predict_and_store(cfg_for("two", 1.0), as_of=END, scored_at=SCORED_AT)
    batch = store.latest_batch()
    got = store.read_batch(batch)
    want, flips = apply_hysteresis(previous, rules, 1.0)
    assert flips > 0 and held_run.flips_avoided == flips == batch.flips_avoided
    assert held_run.to_dict()["flips_avoided"] == flips
    assert got["tier"].tolist() == want.tolist()
    held = (got["tier"] != rules["tier"]).to_numpy()
    assert held.sum() == flips
    expected_reason = ("kept in " + got["tier"][held] + " (hysteresis): the rules alone give " + rules["tier"][held]
                       + ": " + rules["tier_reason"][held])
    assert got["tier_reason"][held].tolist() == expected_reason.tolist()
    assert got["tier_reason"][~held].tolist() == rules["tier_reason"][~held].tolist()
    prev_tier = previous.set_index("customer_id")["tier"]
    assert (got["tier"][held].to_numpy() == prev_tier.reindex(got["customer_id"][held]).to_numpy()).all()
    # the new columns are stored typed: booleans, and tier probabilities summing to 1
    assert got["lapsed_buyer"].map(type).eq(bool).all()
    np.testing.assert_allclose(got[["p_core", "p_value", "p_seed", "p_new", "p_ordinary"]].sum(axis=1), 1, rtol=1e-9)


def test_scores_types_come_from_the_column_kinds():
    import pyarrow as pa

    from tiering.predict import scores_schema
    from tiering.schemas import SCORE_COLUMN_KINDS, TIER_SCORE_COLUMNS
    from tiering.scoring.spark_path import spark_result_type

    schema = scores_schema()
    assert set(TIER_SCORE_COLUMNS) <= set(schema.names)
    arrow = {"float": pa.float64(), "int": pa.int64(), "bool": pa.bool_()}
    spark = {"float": "double", "int": "long", "bool": "boolean"}
    udf = dict(part.split(" ") for part in spark_result_type().split(", "))
    for c, kind in SCORE_COLUMN_KINDS.items():
        if kind in arrow:
            assert schema.field(c).type == arrow[kind] and udf[c] == spark[kind], c
    assert udf["tier"] == "string" and schema.field("tier").type == pa.string()


def test_the_models_leave_one_core_to_the_store_writer_unless_model_threads_is_set(trained, monkeypatch, tmp_path):
    """predict.model_threads unset: every core but one for the models' OpenMP threads, since the store's writer runs
    beside them (on 2 cores at 1M customers: 114 s end to end with two model threads, 99-101 s with one); set, exactly that."""
    from tiering.scoring import duckdb_path

    seen: list = []
    real = duckdb_path.thread_limits
    monkeypatch.setattr(duckdb_path, "thread_limits", lambda n, api=None: seen.append((n, api)) or real(n, api))
    monkeypatch.setattr(duckdb_path, "available_cores", lambda: 4)
    _, cfg, _ = trained
    for threads, store in ((None, "auto"), (1, "one")):
        c = cfg.model_copy(deep=True)
        c.store.url = f"sqlite:///{tmp_path}/{store}.db"
        c.predict.model_threads = threads
        assert predict_and_store(c, as_of=END, scored_at=SCORED_AT).batch.rows > 0
    assert seen == [(3, "openmp"), (1, "openmp")]
