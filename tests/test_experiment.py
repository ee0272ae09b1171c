"""`tiering experiment run`: every variant of a spec backtested, logged as one MLflow run, tabled."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from tiering.config import Config, TrackingConfig
from tiering.exceptions import ConfigError
from tiering.experiment import read_spec, variant_config
from tiering.tracking import runs

SPEC = {
    "description": "BG/NBD vs Pareto/NBD on a small simulation",
    "mlflow_experiment": "exp-test",
    "data": {"simulate": {"customers": 2000, "start": "2024-01-01", "end": "2025-06-30", "seed": 5}},
    "origins": ["2024-10-01", "2024-12-30"],
    "horizon_days": 90,
    "variants": {"bgnbd": {}, "paretonbd": {"config": {"model": {"btyd_model": "paretonbd"}}}},
    "models": ["naive", "btyd"],
}


def _write(folder, spec):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    return folder


def test_experiment_logs_each_variant_and_writes_the_tables(tmp_path):
    folder = _write(tmp_path / "experiments" / "btyd_choice", SPEC)
    tracking = TrackingConfig(uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_location=str(tmp_path / "artifacts"))
    conf = tmp_path / "conf.yaml"
    conf.write_text(yaml.safe_dump({"tracking": tracking.model_dump()}))
    r = subprocess.run([sys.executable, "-m", "tiering", "experiment", "run", str(folder), "--config", str(conf), "--json"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert set(out["runs"]) == {"bgnbd", "paretonbd"}

    logged = runs(tracking.model_copy(update={"experiment": "exp-test"}))
    assert {x["run_name"] for x in logged} == {"btyd_choice/bgnbd", "btyd_choice/paretonbd"}
    assert all(x["kind"] == "experiment" for x in logged)

    table = pd.read_csv(folder / "results.csv")
    assert set(table["model"]) == {"naive", "btyd"}  # only the models the spec asks for
    assert set(table["variant"]) == {"bgnbd", "paretonbd"} and set(table["origin"]) == {"2024-10-01", "2024-12-30"}
    btyd = table[(table.task == "clv") & (table.model == "btyd") & (table.metric == "normalized_gini")]
    assert len(btyd) == 4 and btyd["value"].between(0, 1).all()
    # the two variants differ only in the transaction model: their BTYD numbers differ, the naive ones do not
    piv = table.pivot_table(index=["origin", "task", "model", "metric"], columns="variant", values="value")
    naive = piv.loc[(slice(None), "clv", "naive")]
    assert np.allclose(naive["bgnbd"], naive["paretonbd"], rtol=1e-9)  # DuckDB may sum in another order
    assert (piv.loc[(slice(None), "clv", "btyd"), "bgnbd"] != piv.loc[(slice(None), "clv", "btyd"), "paretonbd"]).any()
    md = (folder / "results.md").read_text()
    assert "## bgnbd" in md and "## paretonbd" in md and "normalized_gini" in md
    # each run carries the metric per origin and the mean
    run = next(x for x in logged if x["run_name"].endswith("/bgnbd"))
    assert run["metrics"]["clv_btyd_normalized_gini"] == pytest.approx(btyd[btyd.variant == "bgnbd"]["value"].mean())
    assert "clv_btyd_normalized_gini_20241001" in run["metrics"]
    import mlflow

    arts = {a.path for a in mlflow.MlflowClient(tracking_uri=tracking.uri).list_artifacts(run["run_id"])}
    assert "spec.yaml" in arts and "backtest.csv" in arts and any(a.endswith(".png") for a in arts)
    assert "| bgnbd | clv | btyd | normalized_gini |" in md  # the per-origin table


def test_bad_specs_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"No experiment spec at '.*nowhere/spec\.yaml'"):
        read_spec(tmp_path / "nowhere")
    bad = dict(SPEC, data={"cdnow": True, "config": "x.yaml"})
    with pytest.raises(ConfigError, match=r"spec\.yaml' is invalid: data: Value error, give exactly one of config, simulate, cdnow"):
        read_spec(_write(tmp_path / "a", bad))
    with pytest.raises(ConfigError, match=r"spec\.yaml' is invalid: origins: List should have at least 1 item"):
        read_spec(_write(tmp_path / "b", dict(SPEC, origins=[])))
    with pytest.raises(ConfigError, match=r"Variant 'x' of the experiment has invalid overrides: model\.btyd_model: Input should be "
                                          r"'bgnbd' or 'paretonbd'"):
        variant_config(Config(), {"model": {"btyd_model": "nbd"}}, "x")
    with pytest.raises(ConfigError, match=r"Variant 'y' .* model\.learning_rate: Extra inputs are not permitted"):
        variant_config(Config(), {"model": {"learning_rate": 0.1}}, "y")
