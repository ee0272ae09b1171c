"""The batch and tracking contract: no secret in any run, artifact, output or message; strict JSON on
stdout only; documented exit statuses; a model artifact that names tiering and loads in a fresh process."""

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tiering.datasets import simulate

START, END = dt.date(2024, 1, 1), dt.date(2025, 6, 30)
TOKEN = "tok-Sup3rSecret-api-token-0123456789"
DB_PASSWORD = "Pa55-Wd-xyz-987"


def tiering(*args, cwd):
    return subprocess.run([sys.executable, "-m", "tiering", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity, as strict parsers do."""
    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def _config(root: Path, store_url: str) -> Path:
    path = root / f"config-{abs(hash(store_url))}.yaml"
    path.write_text(yaml.safe_dump({
        "data": {t: {"path": str(root / "data" / f"{t}.parquet")} for t in ("transactions", "interactions", "customers")},
        "validation": {"quarantine_dir": str(root / "quarantine")},
        "tracking": {"uri": f"sqlite:///{root}/mlflow.db", "artifact_location": str(root / "artifacts")},
        "store": {"url": store_url},
        "serve": {"token": TOKEN},
        "model": {"training_origins": 1},
    }))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`tiering train --json` on 1,500 simulated customers with a config holding an API token and a
    database password: (root, train payload, completed process)."""
    root = tmp_path_factory.mktemp("contract")
    simulate(1500, START, END, seed=5).write(root / "data")
    cfg = _config(root, f"postgresql+psycopg://tiering:{DB_PASSWORD}@127.0.0.1:5432/tiering")
    r = tiering("train", "--as-of", str(END), "--horizon-days", "90", "--config", str(cfg), "--json", cwd=root)
    assert r.returncode == 0, r.stderr
    return root, strict_json(r.stdout), r


def _no_secret(text: str, where: str) -> None:
    for secret in (TOKEN, DB_PASSWORD):
        assert secret not in text, f"{secret!r} found in {where}"


def test_no_secret_in_the_mlflow_run_or_the_output(trained):
    import mlflow
    from mlflow.tracking import MlflowClient

    root, payload, proc = trained
    client = MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")
    run = client.get_run(payload["run_id"])
    assert run.data.params["config.serve.token"] == "***"
    assert run.data.params["config.store.url"] == "postgresql+psycopg://tiering:***@127.0.0.1:5432/tiering"
    _no_secret(json.dumps(run.data.params) + json.dumps(run.data.tags), "params and tags")
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    art = Path(mlflow.artifacts.download_artifacts(run_id=payload["run_id"], dst_path=str(root / "dl")))
    texts = [p.read_text(errors="replace") for p in art.rglob("*") if p.is_file() and p.suffix in (".json", ".txt", ".yaml", ".MLmodel", "")]
    assert texts and (art / "config.json").exists()
    for t in texts:
        _no_secret(t, "an artifact")
    _no_secret(proc.stdout + proc.stderr, "the command's output")


def test_a_base_under_the_default_sample_size_is_fitted_whole_and_the_run_says_so(trained):
    # model.train_sample_customers defaults to a sample (bounded training on a large base); 1,500 customers are under it
    import mlflow
    from mlflow.tracking import MlflowClient

    from tiering.config import Config

    root, payload, _ = trained
    default = Config().model.train_sample_customers
    assert default == 250_000
    run = MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db").get_run(payload["run_id"])
    assert run.data.params["config.model.train_sample_customers"] == str(default)
    m = run.data.metrics
    assert m["train_sample_requested"] == default and m["train_sample_share"] == 1.0
    assert m["train_sample_customers"] == m["train_base_customers"] > 1000
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    notes = json.loads(Path(mlflow.artifacts.download_artifacts(run_id=payload["run_id"], artifact_path="notes.json")).read_text())
    assert notes[0].startswith("training sample: not drawn (the base has ") and "every customer is fitted" in notes[0]


def test_registered_version_has_a_description_and_requirements_name_tiering(trained):
    from mlflow.tracking import MlflowClient

    from tiering import __version__

    root, payload, _ = trained
    client = MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db", registry_uri=f"sqlite:///{root}/mlflow.db")
    mv = client.get_model_version("customer-tiering", payload["version"])
    assert f"as of {END}" in mv.description and "horizon 90 days" in mv.description
    assert "propensity_roc_auc" in mv.description
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    reqs = Path(mlflow.pyfunc.get_model_dependencies(payload["model_uri"])).read_text()
    assert f"tiering=={__version__}" in reqs.split()


def test_the_model_loads_with_mlflow_alone_in_a_fresh_process(trained):
    root, payload, _ = trained
    code = (
        "import mlflow, pandas as pd, sys\n"
        f"mlflow.set_tracking_uri('sqlite:///{root}/mlflow.db')\n"
        f"mlflow.set_registry_uri('sqlite:///{root}/mlflow.db')\n"
        f"m = mlflow.pyfunc.load_model('models:/customer-tiering/{payload['version']}')\n"
        "example = m.input_example if m.input_example is not None else None\n"
        "out = m.predict(example)\n"
        "print(len(out), 'tier' in out.columns)\n"
    )
    # a fresh process: nothing inherited from this one (mlflow.set_*_uri export MLFLOW_* variables)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=root, env=env)
    assert r.returncode == 0, r.stderr
    n, has_tier = r.stdout.split()
    assert int(n) > 0 and has_tier == "True"


def test_predict_json_is_strict_and_stdout_holds_only_the_result(trained):
    root, payload, _ = trained
    cfg = _config(root, f"sqlite:///{root}/scores.db")
    assert tiering("promote", payload["version"], "--config", str(cfg), cwd=root).returncode == 0
    r = tiering("predict", "--as-of", str(END), "--config", str(cfg), "--json", cwd=root)
    assert r.returncode == 0, r.stderr
    out = strict_json(r.stdout)  # NaN would fail here
    assert out["batch"]["rows"] > 0
    assert out["batch"]["finished_at"].endswith("+00:00")  # timestamps carry their zone
    assert "Warning" not in r.stderr and "INFO" not in r.stderr  # third-party noise is off without --verbose
    listed = tiering("tiers", "list", "--limit", "3", "--config", str(cfg), "--json", cwd=root)
    assert len(strict_json(listed.stdout)["items"]) == 3
    summary = tiering("tiers", "summary", "--config", str(cfg), "--json", cwd=root)
    _no_secret(summary.stdout + r.stdout, "JSON output")
    strict_json(summary.stdout)


def test_errors_under_json_are_objects_with_kind_and_hint_and_exit_statuses(tmp_path):
    r = tiering("train", "--as-of", "2025-01-01", "--horizon-days", "-5", "--json", cwd=tmp_path)
    assert r.returncode == 2
    err = strict_json(r.stdout)
    assert err["kind"] == "UsageError" and "--horizon-days" in err["error"] and "-5" in err["error"] and err["hint"]
    r = tiering("validate", "--transactions", "missing.csv", "--json", cwd=tmp_path)
    err = strict_json(r.stdout)
    assert r.returncode == 2 and err["kind"] == "ConfigError" and "missing.csv" in err["error"]
    assert "error: The transactions source" in r.stderr and "Traceback" not in r.stderr
    # an unreachable tracking server is a service problem: exit 3, retry later
    (tmp_path / "c.yaml").write_text("tracking:\n  uri: http://127.0.0.1:9\n")
    r = tiering("compare", "--config", "c.yaml", "--json", cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    assert strict_json(r.stdout)["kind"] == "ServiceUnavailableError"


def test_version_and_help_document_exit_statuses(tmp_path):
    from tiering import __version__

    r = tiering("--version", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == f"tiering {__version__}"
    r = tiering("--help", cwd=tmp_path)
    assert "Exit status: 0 ok; 1 a bug" in " ".join(r.stdout.split()) and "3 a service" in " ".join(r.stdout.split())


def test_config_files_that_are_not_yaml_text_are_clear_errors(tmp_path):
    (tmp_path / "bin.yaml").write_bytes(b"\x00\x01\xff\xfe binary")
    (tmp_path / "latin1.yaml").write_bytes("model:\n  seed: 1 # caf\xe9\n".encode("latin-1"))
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    for name, expected in (("bin.yaml", "not UTF-8 text"), ("latin1.yaml", "not UTF-8 text (byte 0xe9"),
                           ("list.yaml", "must hold a mapping")):
        r = tiering("validate", "--config", name, cwd=tmp_path)
        assert r.returncode == 2 and expected in r.stderr and "Traceback" not in r.stderr, (name, r.stderr)


def test_redaction_rules():
    from tiering.config import Config
    from tiering.redact import redact, redact_text

    cfg = Config.model_validate({"serve": {"token": TOKEN}, "store": {"url": f"postgresql://u:{DB_PASSWORD}@h/db"}})
    dumped = json.dumps(cfg.redacted())
    assert TOKEN not in dumped and DB_PASSWORD not in dumped and "postgresql://u:***@h/db" in dumped
    assert redact_text(f"failed to connect with {TOKEN}", cfg.secret_values()) == "failed to connect with ***"
    assert redact({"db_password": "x1", "api_key": "k", "n": 3, "nested": [{"token": "t"}]}) == \
        {"db_password": "***", "api_key": "***", "n": 3, "nested": [{"token": "***"}]}
    # the signature of a SAS token or a presigned URL, wherever a URL is printed
    assert redact_text("read https://a.blob.core.windows.net/c/tx.parquet?sv=2024-01&sig=AbC%2F1 failed") == \
        "read https://a.blob.core.windows.net/c/tx.parquet?sv=2024-01&sig=*** failed"
    assert redact_text("s3://b/k?X-Amz-Credential=AKIA1&X-Amz-Signature=f00d") == "s3://b/k?X-Amz-Credential=***&X-Amz-Signature=***"
