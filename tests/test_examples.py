"""The examples users copy: examples/walkthrough.py and every Python example in README.md run as written."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(args, cwd, timeout=900):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # a busy 2-core machine: one thread per process is far faster
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow  # validates and fits a 1,500-customer sample of Online Retail II: about a minute on 2 cores
def test_walkthrough_runs_and_prints_each_result(tmp_path):
    r = _run([str(ROOT / "examples" / "walkthrough.py")], cwd=tmp_path)  # any working directory will do
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    assert re.search(r"transactions\s+\d+\s+\d+\s+\{'after_as_of': \d+", out)  # lines after as_of set aside, counted
    assert re.search(r"features: [\d,]+ customers x \d+ columns", out)
    assert "FittedModel(as_of=2011-06-01, horizon_days=180" in out
    scores = {name: [float(x) for x in m] for name, *m in
              re.findall(r"(tiering|lifetimes): CLV normalized Gini ([\d.]+), top-decile capture ([\d.]+); "
                         r"repurchase ROC-AUC ([\d.]+)", out)}
    assert set(scores) == {"tiering", "lifetimes"}
    for name, (gini, capture, auc) in scores.items():  # both are real rankings of the holdout, far from chance
        assert 0.5 < gini < 1 and 0.3 < capture < 1 and 0.65 < auc < 1, (name, scores)
    # the tiers are judged by what their members did next: realised spend rises from ordinary to value to core
    spend = {t: float(v) for t, v in re.findall(r"^(ordinary|value|core)\s+\d+\s+[\d.]+\s+([\d.]+)$", out, re.M)}
    assert spend["ordinary"] < spend["value"] < spend["core"], spend
    assert re.search(r"why customer \S+ \(highest CLV\) is core: ", out)
    assert re.search(r"MLflow run [0-9a-f]{32}: registered version 1 \(alias challenger\)", out)
    assert not (tmp_path / "models").exists()  # the MLflow store was a temporary folder


def _readme_python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_readme_has_python_examples():
    blocks = _readme_python_blocks()
    assert len(blocks) >= 2 and "import tiering as tg" in blocks[0]


@pytest.mark.slow  # simulates 5,000 customers, fits, backtests and logs, as the README shows
def test_readme_python_examples_run_as_written(tmp_path):
    """Every ```python block of the README's Python section, in order, as one script, in a fresh folder (the
    README's relative paths: models/ for MLflow, data/ for the bundled file, linked in)."""
    (tmp_path / "data").symlink_to(ROOT / "data", target_is_directory=True)
    script = tmp_path / "readme_examples.py"
    script.write_text("\n\n".join(_readme_python_blocks()), encoding="utf-8")
    r = _run([str(script)], cwd=tmp_path, timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "models" / "mlflow.db").exists()
