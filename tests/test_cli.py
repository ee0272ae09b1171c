"""The command line contract: clear messages and exit status 2 on bad input, no traceback."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def tiering(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "tiering", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_missing_column_is_one_clear_message(tmp_path):
    path = tmp_path / "tx.csv"
    pd.DataFrame({"cust": ["a"], "ts": ["2024-01-01"], "amt": [1.0], "order_id": ["o"]}).to_csv(path, index=False)
    r = tiering("validate", "--transactions", str(path), cwd=tmp_path)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "error: The transactions table is missing column 'customer_id'. Got columns ['cust', 'ts', 'amt', 'order_id']" in r.stderr


def test_text_in_amount_is_one_clear_message(tmp_path):
    path = tmp_path / "tx.csv"
    pd.DataFrame({"customer_id": ["a", "b"], "order_id": ["o1", "o2"], "ordered_at": ["2024-01-01", "2024-01-02"],
                  "amount": ["twelve", "n/a"]}).to_csv(path, index=False)
    r = tiering("validate", "--transactions", str(path), cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "column 'amount' holds text that does not parse as numbers; e.g. ['twelve', 'n/a']" in r.stderr


def test_bad_date_and_missing_config(tmp_path):
    r = tiering("features", "--as-of", "2024-13-01", cwd=tmp_path)
    assert r.returncode == 2 and "error: --as-of must be a date as YYYY-MM-DD; got '2024-13-01'." in r.stderr
    r = tiering("validate", "--config", "nope.yaml", cwd=tmp_path)
    assert r.returncode == 2 and "error: Config file 'nope.yaml' does not exist" in r.stderr


def test_validate_takes_the_engine_flag_of_the_other_data_commands(tmp_path):
    r = tiering("validate", "--engine", "pandas", cwd=tmp_path)
    assert r.returncode == 2 and "error: --engine must be duckdb or spark; got 'pandas'." in r.stderr


def test_validate_json_counts_and_quarantine(tmp_path):
    path = tmp_path / "tx.parquet"
    pd.DataFrame({"customer_id": ["a", None, "b"], "order_id": ["o1", "o2", "o3"],
                  "ordered_at": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]), "amount": [1.0, 2.0, -3.0]}).to_parquet(path)
    r = tiering("validate", "--transactions", str(path), "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (report,) = json.loads(r.stdout)["tables"]
    assert report["quarantined"] == {"missing_customer_id": 1} and report["rows_valid"] == 2
    assert (tmp_path / "outputs/quarantine/transactions.parquet").exists()


# ------------------------------------------------------------------------------------------ --set
def test_set_overrides_reach_the_training_run(tmp_path):
    """`tiering train --set ...` on top of a config file: the run is logged with the overridden horizon and models,
    in the store the overrides name (nothing under the working directory's models/)."""
    import datetime as dt

    import yaml

    from tiering.datasets import simulate

    simulate(400, dt.date(2024, 1, 1), dt.date(2025, 6, 30), seed=3).write(tmp_path / "data")
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({"model": {"horizon_days": 60, "threads": 1}}))
    store = tmp_path / "store"
    sets = ["--set", "model.horizon_days=120", "--set", "model.clv_model=btyd", "--set", "model.training_origins=1",
            "--set", f"tracking.uri=sqlite:///{store}/mlflow.db", "--set", f"tracking.artifact_location={store}/artifacts",
            "--set", f"validation.quarantine_dir={tmp_path}/q"]
    data = [f"--{t}={tmp_path}/data/{t}.parquet" for t in ("transactions", "interactions", "customers")]
    r = tiering("train", "--as-of", "2025-06-30", "--config", "cfg.yaml", *sets, *data, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "CLV model (the clv column): btyd" in r.stdout and "- validating sources" in r.stderr
    assert (store / "mlflow.db").exists() and not (tmp_path / "models").exists()
    r = tiering("compare", "--json", "--set", f"tracking.uri=sqlite:///{store}/mlflow.db", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (version,) = json.loads(r.stdout)["versions"]
    assert str(version["horizon_days"]) == "120"  # the file said 60; --set wins
    # a command's own option is applied after --set
    r = tiering("train", "--as-of", "2025-06-30", "--config", "cfg.yaml", *sets, *data, "--horizon-days", "90", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = tiering("compare", "--json", "--set", f"tracking.uri=sqlite:///{store}/mlflow.db", cwd=tmp_path)
    assert sorted(str(v["horizon_days"]) for v in json.loads(r.stdout)["versions"]) == ["120", "90"]


def test_set_list_value_sets_the_feature_windows(tmp_path):
    path = tmp_path / "tx.parquet"
    pd.DataFrame({"customer_id": ["a", "a", "b"], "order_id": ["o1", "o2", "o3"],
                  "ordered_at": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01"]), "amount": [1.0, 2.0, 3.0]}).to_parquet(path)
    r = tiering("features", "--as-of", "2024-03-31", "--transactions", str(path), "--set", "features.windows_days=[30,90]",
                "--out", "f.parquet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    cols = set(pd.read_parquet(tmp_path / "f.parquet").columns)
    assert {"orders_30d", "orders_90d"} <= cols and not {"orders_180d", "orders_365d"} & cols


def test_set_bad_key_or_value_is_exit_2_with_the_message(tmp_path):
    r = tiering("validate", "--set", "model.horizon=120", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "error: Unknown setting 'model.horizon' (--set model.horizon=...): the model section has no field 'horizon'." in r.stderr
    assert "Valid keys of model: model.horizon_days, model.discount_rate_annual," in r.stderr
    r = tiering("validate", "--set", "modle.horizon_days=120", cwd=tmp_path)
    assert r.returncode == 2 and "Valid keys of the config: data, validation, features, model," in r.stderr
    r = tiering("train", "--as-of", "2025-06-30", "--set", "model.horizon_days=-5", "--json", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert json.loads(r.stdout)["error"] == "Invalid --set value: model.horizon_days: Input should be greater than 0 (got -5)."
    r = tiering("predict", "--as-of", "2025-06-30", "--set", "features.windows_days=[30,", cwd=tmp_path)
    assert r.returncode == 2 and "error: --set features.windows_days: the value '[30,' is not valid YAML" in r.stderr
    r = tiering("tiers", "summary", "--set", "model.horizon_days", cwd=tmp_path)
    assert r.returncode == 2 and "error: --set takes KEY=VALUE with a dotted key" in r.stderr


def test_set_never_echoes_a_secret(tmp_path):
    secret = "s3cr3t-t0ken-value"
    for value in (f"[{secret}]", f"{{a: {secret}}}"):
        r = tiering("serve", "--set", f"serve.token={value}", "--json", cwd=tmp_path)
        assert r.returncode == 2 and "serve.token: Input should be a valid string (got '***')" in r.stderr
        assert secret not in r.stdout + r.stderr
    r = tiering("validate", "--set", f"store.url=[postgresql://u:{secret}@db/x]", cwd=tmp_path)
    assert r.returncode == 2 and "store.url" in r.stderr and secret not in r.stderr
    r = tiering("validate", "--set", f"serve.token:{secret}", cwd=tmp_path)  # ':' for '=': no value to mask, text hidden
    assert r.returncode == 2 and secret not in r.stderr


def test_set_is_on_every_command_that_reads_a_config():
    import typer.main

    from tiering.cli import app

    click_app = typer.main.get_command(app)

    def commands(group, prefix=()):
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):
                yield from commands(cmd, (*prefix, name))
            else:
                yield (*prefix, name), cmd

    for name, cmd in commands(click_app):
        opts = {o for p in cmd.params for o in p.opts}
        if "--config" in opts:
            assert "--set" in opts, name
    r = tiering("train", "--help")
    assert "--set" in r.stdout and "KEY=VALUE" in r.stdout and "model.horizon_days=120" in r.stdout


# -------------------------------------------------------------------------------------- progress
def test_progress_display_steps_and_chunks(capfd):
    """The one progress display of the CLI and the API (tiering.progress): lines off a terminal, a live display
    with ✓ and elapsed time on one, nothing when disabled."""
    import io

    from rich.console import Console

    from tiering.progress import ProgressDisplay

    def run(display):
        with display as step:
            step("first [step]")  # markup-like text is shown as written
            step.chunk("score", 1, 2)
            step.chunk("score", 2, 2)
            step("second")

    capfd.readouterr()
    run(ProgressDisplay(False))
    assert capfd.readouterr().err == ""
    run(ProgressDisplay(True))  # stderr is not a terminal here: plain lines as each step starts
    assert capfd.readouterr().err == "- first [step]\n- scoring: 2/2\n- second\n"
    buf = io.StringIO()
    run(ProgressDisplay(None, console=Console(file=buf, force_terminal=True, color_system=None, width=100)))
    text = buf.getvalue()
    assert "✓ first [step]" in text and "✓ scoring 2/2" in text and "✓ second" in text
    with ProgressDisplay(True, console=Console(file=(buf := io.StringIO()), force_terminal=True, color_system=None),
                         redact=str.upper) as step:
        step("password hunter2")
    assert "PASSWORD HUNTER2" in buf.getvalue() and "hunter2" not in buf.getvalue()
