"""MLflow as the record of every model: logged runs, the scoring bundle artifact, the registry and
its aliases, promotion guards, robust loading, and the same flow against a real `mlflow server`."""

import datetime as dt
import json
import pickle
import socket
import subprocess
import sys
import time
from pathlib import Path

import joblib
import pandas as pd
import pytest
import yaml

from tiering.config import Config, TrackingConfig
from tiering.datasets import simulate
from tiering.exceptions import TrackingError
from tiering.registry import load_bundle, promote, register, versions
from tiering.tracking import BUNDLE_ARTIFACT, code_version, configure, log_training_run, runs
from tiering.train import fit
from tiering.validation import load_tables

START, END = dt.date(2024, 1, 1), dt.date(2025, 6, 30)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One small fit, shared: (cfg with sources, TrainResult, validated tables)."""
    root = tmp_path_factory.mktemp("tracking")
    simulate(2500, START, END, seed=11).write(root / "data")
    cfg = Config().with_source_dir(root / "data")
    cfg.validation.quarantine_dir = str(root / "quarantine")
    tables = load_tables(cfg, as_of=END)
    return cfg, fit(tables, as_of=END, cfg=cfg), tables


def _tracking(tmp_path) -> TrackingConfig:
    return TrackingConfig(uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_location=str(tmp_path / "artifacts"))


def _log(result, tcfg: TrackingConfig, metrics=None, run_name="train"):
    return log_training_run(
        result.bundle, cfg=tcfg, run_name=run_name, params={"as_of": END.isoformat(), "model": {"horizon_days": 180}},
        metrics=metrics if metrics is not None else result.metrics,
        tags={"as_of": END.isoformat(), "data_hash": result.data_fingerprint["hash"], "kind": "train",
              "code_version": code_version()},
        input_example=result.input_example, artifacts={"data_fingerprint.json": result.data_fingerprint},
    )


def _artifact_dir(tcfg: TrackingConfig, model_uri: str, dst: Path) -> Path:
    import mlflow

    configure(tcfg)
    return Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(dst)))


def test_run_logs_params_metrics_tags_and_a_lean_bundle(trained, tmp_path):
    cfg, result, tables = trained
    tcfg = _tracking(tmp_path)
    run_id, model_uri = _log(result, tcfg)
    (run,) = runs(tcfg)
    assert run["run_id"] == run_id and run["kind"] == "train" and run["as_of"] == END.isoformat()
    assert run["data_hash"] == result.data_fingerprint["hash"] and run["code_version"].startswith("0.")
    assert run["metrics"]["clv_btyd_normalized_gini"] == pytest.approx(result.metrics["clv_btyd_normalized_gini"])

    model_dir = _artifact_dir(tcfg, model_uri, tmp_path / "download")
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    assert "signature" in mlmodel and "inputs" in mlmodel["signature"] and "saved_input_example_info" in mlmodel
    reqs = (model_dir / "requirements.txt").read_text()
    assert "scikit-learn==" in reqs and "mlflow" in reqs
    # no training data inside: the bundle is small and holds no customer id of the base
    bundle_file = model_dir / "artifacts" / BUNDLE_ARTIFACT
    assert bundle_file.stat().st_size < 2_000_000
    raw = pickle.dumps(joblib.load(bundle_file))
    ids = tables.customers.customer_id.to_pandas()
    sample = [i for i in ids.iloc[::50]][:40]
    leaked = [i for i in sample if i.encode() in raw]
    # the input example (5 rows) is stored beside the bundle, never inside it
    assert leaked == []


def test_loaded_bundle_scores_exactly_like_the_fitted_one(trained, tmp_path):
    cfg, result, tables = trained
    tcfg = _tracking(tmp_path)
    _, model_uri = _log(result, tcfg)
    version = register(model_uri, tcfg)
    bundle, name, got_version = load_bundle("challenger", tcfg)
    assert (name, got_version) == ("customer-tiering", version)
    feats = result.input_example
    pd.testing.assert_frame_equal(bundle.predict(feats), result.bundle.predict(feats))


def test_promotion_refuses_a_worse_version_unless_forced(trained, tmp_path):
    _, result, _ = trained
    tcfg = _tracking(tmp_path)
    v1 = register(_log(result, tcfg)[1], tcfg)
    promote(v1, tcfg)  # first champion: nothing to compare with
    worse = dict(result.metrics, clv_normalized_gini=result.metrics["clv_normalized_gini"] - 0.2)
    v2 = register(_log(result, tcfg, metrics=worse, run_name="worse")[1], tcfg)
    with pytest.raises(TrackingError, match=rf"Refusing to move 'champion' from version {v1} to {v2}: its backtest metrics are "
                                            r"worse \(clv_normalized_gini [0-9.]+ < [0-9.]+\)\. Pass --force"):
        promote(v2, tcfg)
    assert {v.version: v.aliases for v in versions(tcfg)} == {v2: ("challenger",), v1: ("champion",)}
    promote(v2, tcfg, force=True)
    assert set(next(v for v in versions(tcfg) if v.version == v2).aliases) == {"challenger", "champion"}
    with pytest.raises(TrackingError, match=r"Model 'customer-tiering' has no version 9\. Registered versions: 2, 1\."):
        promote("9", tcfg)


def test_missing_alias_and_unreachable_server_are_clear_errors(tmp_path):
    tcfg = _tracking(tmp_path)
    with pytest.raises(TrackingError, match=r"Cannot load model 'models:/customer-tiering@champion' .*Train and promote one first"):
        load_bundle("champion", tcfg)
    port = _free_port()
    dead = TrackingConfig(uri=f"http://127.0.0.1:{port}")
    t0 = time.perf_counter()
    with pytest.raises(TrackingError, match=rf"Cannot reach the MLflow tracking server 'http://127.0.0.1:{port}': .*Connection refused"):
        load_bundle("champion", dead)
    assert time.perf_counter() - t0 < 60  # no minutes of silent retries (a bound, not a benchmark)


def test_cli_compare_and_promote_over_one_store(trained, tmp_path):
    _, result, _ = trained
    tcfg = _tracking(tmp_path)
    version = register(_log(result, tcfg)[1], tcfg)
    conf = tmp_path / "conf.yaml"
    conf.write_text(yaml.safe_dump({"tracking": tcfg.model_dump()}))

    def tiering(*args):
        return subprocess.run([sys.executable, "-m", "tiering", *args, "--config", str(conf)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)

    r = tiering("compare", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [v["version"] for v in out["versions"]] == [version] and out["versions"][0]["aliases"] == ["challenger"]
    assert out["runs"][0]["metrics"]["clv_normalized_gini"] == pytest.approx(result.metrics["clv_normalized_gini"])
    r = tiering("promote", version)
    assert r.returncode == 0 and f"customer-tiering version {version} is now 'champion'." in r.stdout
    r = tiering("promote", "7")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "has no version 7" in r.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` on 127.0.0.1 (SQLite backend, proxied artifacts), stopped after the test."""
    port = _free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path}/server.db", "--artifacts-destination", str(tmp_path / "server-artifacts"),
         "--workers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    import urllib.request

    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"mlflow server did not start: {proc.stdout.read()[-2000:]}")
            time.sleep(0.5)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_same_flow_against_a_real_tracking_server(trained, mlflow_server, tmp_path):
    _, result, _ = trained
    tcfg = TrackingConfig(uri=mlflow_server)
    run_id, model_uri = _log(result, tcfg)
    version = register(model_uri, tcfg)
    promote(version, tcfg)
    bundle, name, got = load_bundle("champion", tcfg)
    assert got == version
    pd.testing.assert_frame_equal(bundle.predict(result.input_example), result.bundle.predict(result.input_example))
    # the artifacts went to the server's store, not to a local folder
    assert list((tmp_path / "server-artifacts").rglob(BUNDLE_ARTIFACT))
    assert not Path("models/artifacts").resolve().joinpath(run_id).exists()
    assert runs(tcfg)[0]["run_id"] == run_id


def test_run_name_tells_runs_apart():
    from tiering.tracking import run_name

    cfg = Config(model={"horizon_days": 180, "clv_model": "supervised", "btyd_model": "bgnbd", "propensity_learner": "logistic"})
    day = dt.date(2011, 6, 1)
    assert run_name("train", cfg, day, "0123456789abcdef") == "train-2011-06-01-h180-supervised-bgnbd-01234567"
    auto = Config(model={"horizon_days": 180, "clv_model": "auto", "btyd_model": "bgnbd", "propensity_learner": "logistic"})
    assert run_name("train", auto, day, "0123456789abcdef", clv_model="hurdle") == "train-2011-06-01-h180-hurdle-bgnbd-01234567"
    other = Config(model={"horizon_days": 90, "clv_model": "btyd", "btyd_model": "paretonbd", "propensity_learner": "gbm"})
    assert run_name("train", other, "2011-06-01", "fedcba98") == "train-2011-06-01-h90-btyd-paretonbd-gbm-fedcba98"
    assert run_name("train", cfg.model, dt.datetime(2011, 6, 1), None) == "train-2011-06-01-h180-supervised-bgnbd"
    # a backtest: its origins as first..last, the horizon it ran with
    origins = [dt.date(2011, 3, 1), dt.date(2010, 9, 1), dt.date(2010, 12, 1)]
    assert run_name("backtest", cfg, origins, "abcdef0123", horizon_days=120) == "backtest-2010-09-01..2011-03-01-h120-supervised-bgnbd-abcdef01"
    assert run_name("backtest", cfg, None, None) == "backtest-h180-supervised-bgnbd"
    names = {run_name("train", c, d, h) for c in (cfg, other) for d in (day, dt.date(2011, 7, 1)) for h in ("aaaaaaaa", "bbbbbbbb")}
    assert len(names) == 8  # every difference in kind of fit, date, horizon, models or data shows
