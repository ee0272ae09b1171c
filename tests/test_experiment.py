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
from tiering.experiment import (
    RollingOrigins,
    comparison_frames,
    compare,
    monthly_origins,
    origin_split,
    read_spec,
    run_experiment,
    variant_config,
)
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
    # only the models the spec asks for, plus the baselines the comparison adds (recency, past spend, hiatus rule)
    assert set(table["model"]) == {"naive", "btyd", "recency", "past_spend", "hiatus_273d"}
    assert set(table["split"]) == {"report"} and set(table["horizon_days"]) == {90}  # no select_until: all reported
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
    with pytest.raises(ConfigError, match=r"spec\.yaml' is invalid: Value error, origins: give at least one origin date"):
        read_spec(_write(tmp_path / "b", dict(SPEC, origins=[])))
    with pytest.raises(ConfigError, match=r"Value error, horizon_days: give one or more positive day counts; got \[90, 0\]"):
        read_spec(_write(tmp_path / "c", dict(SPEC, horizon_days=[90, 0])))
    with pytest.raises(ConfigError, match=r"Value error, 'to' \(2024-01-01\) is before 'from' \(2024-06-01\)"):
        read_spec(_write(tmp_path / "d", dict(SPEC, origins={"every": "month", "from": "2024-06-01", "to": "2024-01-01"})))
    with pytest.raises(ConfigError, match=r"Variant 'x' of the experiment has invalid overrides: model\.btyd_model: Input should be "
                                          r"'bgnbd' or 'paretonbd'"):
        variant_config(Config(), {"model": {"btyd_model": "nbd"}}, "x")
    with pytest.raises(ConfigError, match=r"Variant 'y' .* model\.learning_rate: Extra inputs are not permitted"):
        variant_config(Config(), {"model": {"learning_rate": 0.1}}, "y")


# ---- rolling origins, selection/report split, the honest comparison (issue 19)

import datetime as dt  # noqa: E402

D = dt.date


def test_monthly_origins_are_firsts_of_months_with_a_full_horizon_and_history(tmp_path):
    first, last = D(2024, 1, 15), D(2025, 6, 30)
    got = monthly_origins(D(2023, 6, 1), D(2026, 1, 1), first=first, last=last, horizon_days=90, min_history_days=60)
    assert got[0] == D(2024, 4, 1)  # 2024-03-01 has only 46 days of history
    assert got[-1] == D(2025, 4, 1)  # 2025-04-01 + 90 days = 2025-06-30, the last day; 2025-05-01 runs past it
    assert all(o.day == 1 for o in got) and len(got) == 13 and got == sorted(got)
    assert all(o + dt.timedelta(days=90) <= last and (o - first).days >= 60 for o in got)
    # a 'from' in the middle of a month starts at the next 1st; a longer horizon ends earlier
    assert monthly_origins(D(2024, 4, 2), D(2024, 7, 1), first=first, last=last, horizon_days=90,
                           min_history_days=60)[0] == D(2024, 5, 1)
    assert monthly_origins(D(2024, 1, 1), D(2026, 1, 1), first=first, last=last, horizon_days=365,
                           min_history_days=60)[-1] == D(2024, 6, 1)
    assert monthly_origins(D(2024, 1, 1), D(2026, 1, 1), first=first, last=last, horizon_days=600) == []
    spec = read_spec(_write(tmp_path / "r", dict(SPEC, origins={"every": "month", "from": "2024-07-01", "to": "2025-01-01"},
                                                   horizon_days=[90, 180], select_until="2024-11-01")))
    assert isinstance(spec.origins, RollingOrigins) and spec.origins.start == D(2024, 7, 1)
    assert spec.horizon_days == [90, 180] and spec.select_until == D(2024, 11, 1)


def test_origin_split_keeps_every_outcome_used_for_selection_before_the_cut():
    cut = D(2024, 12, 31)
    assert origin_split(D(2024, 10, 1), 90, cut) == "select"  # holdout ends 2024-12-30
    assert origin_split(D(2024, 11, 1), 90, cut) == "gap"  # holdout straddles the cut: used for nothing
    assert origin_split(D(2024, 12, 1), 90, cut) == "gap"
    assert origin_split(D(2025, 1, 1), 90, cut) == "report"
    assert origin_split(D(2024, 8, 1), 180, cut) == "gap" and origin_split(D(2024, 7, 1), 180, cut) == "select"
    assert origin_split(D(2020, 1, 1), 90, None) == "report"  # no split: everything is reported


def _preds(origins, n=400, seed=0):
    """Backtest-style kept predictions: recency drives purchase; a 'model' column and BTYD."""
    rng = np.random.default_rng(seed)
    out = {}
    for o in origins:
        d = rng.integers(1, 500, n).astype(float)
        y = (rng.random(n) < 1 / (1 + d / 60)).astype(int)
        out[o] = pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)], "has_purchased": 1.0,
                               "days_since_last_purchase": d, "holdout_spend": y * rng.gamma(2, 50, n),
                               "purchased_in_horizon": y, "clv_naive": rng.gamma(2, 50, n),
                               "clv_btyd": 1 / (1 + d / 60) + rng.normal(0, 0.2, n),
                               "clv_hybrid": 1 / (1 + d / 60) + rng.normal(0, 0.1, n),
                               "p_purchase_btyd": np.clip(1 / (1 + d / 60) + rng.normal(0, 0.1, n), 0, 1),
                               "p_purchase_model": np.clip(1 / (1 + d / 60) + rng.normal(0, 0.05, n), 0, 1)})
    return out


def test_report_origins_never_enter_selection(tmp_path):
    H = 90
    origins = [D(2024, m, 1) for m in range(1, 13)]
    cut = D(2024, 6, 30)
    splits = {o: origin_split(o, H, cut) for o in origins}
    assert [splits[o] for o in origins].count("select") == 4 and [splits[o] for o in origins].count("report") == 6
    preds = _preds(origins)
    frames, chosen, notes = comparison_frames(preds, H, splits, [273])
    assert chosen is not None and "4 selection origins" in notes[0]
    # scramble every outcome of the report (and gap) origins: the chosen hiatus cannot move
    scrambled = {o: (f.assign(purchased_in_horizon=1 - f["purchased_in_horizon"]) if splits[o] != "select" else f)
                 for o, f in preds.items()}
    frames2, chosen2, _ = comparison_frames(scrambled, H, splits, [273])
    assert chosen2 == chosen
    # the hiatus rates at an origin come only from origins whose holdout ended by it
    assert "churn:hiatus_273d_p" not in frames[origins[0]] and "churn:hiatus_273d_p" in frames[origins[4]]
    assert np.array_equal(frames[origins[4]]["churn:hiatus_273d_p"], frames2[origins[4]]["churn:hiatus_273d_p"])
    # and the comparison is computed on report origins only: scrambling the others changes nothing there
    boot = read_spec(_write(tmp_path / "s", SPEC)).bootstrap.model_copy(update={"replicates": 30})
    base = compare(frames, splits, boot)
    other = {o: (f if splits[o] == "report" else f.assign(purchased_in_horizon=0.0, holdout_spend=0.0))
             for o, f in frames.items()}
    pd.testing.assert_frame_equal(base, compare(other, splits, boot))
    assert set(base["origins"]) == {6}
    assert {"hybrid", "model"} == set(base["model"])


def test_a_spec_with_two_horizons_runs_end_to_end(tmp_path):
    spec = {"description": "two horizons", "mlflow_experiment": "exp-two-h",
            "data": {"simulate": {"customers": 1000, "start": "2024-01-01", "end": "2025-03-31", "seed": 11}},
            "origins": {"every": "month", "from": "2024-09-15", "to": "2025-01-01", "min_history_days": 200},
            "horizon_days": [60, 120], "select_until": "2024-11-30", "models": ["naive", "btyd", "churn:model"],
            "bootstrap": {"replicates": 40, "seed": 3},
            "variants": {"base": {"config": {"model": {"training_origins": 1}}}}}
    folder = _write(tmp_path / "two_h", spec)
    cfg = Config(tracking=TrackingConfig(uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_location=str(tmp_path / "art")))
    res = run_experiment(folder, cfg)
    t = res.table
    assert set(t["horizon_days"]) == {60, 120} and set(res.run_ids) == {"base/h60", "base/h120"}
    origins = {h: [str(o) for o in sorted(set(t[t.horizon_days == h]["origin"]))] for h in (60, 120)}
    assert origins[60] == ["2024-10-01", "2024-11-01", "2024-12-01", "2025-01-01"]
    assert origins[120] == ["2024-10-01", "2024-11-01", "2024-12-01"]  # 2025-01-01 + 120 days is past the data
    sp = t.drop_duplicates(["horizon_days", "origin"]).set_index(["horizon_days", "origin"])["split"]
    assert [sp[(60, D.fromisoformat(o))] for o in origins[60]] == ["select", "gap", "report", "report"]
    assert [sp[(120, D.fromisoformat(o))] for o in origins[120]] == ["gap", "gap", "report"]
    # the baselines the backtest lacks are in the table; the latent truth of the simulation too
    assert {"recency", "past_spend", "hiatus_273d", "hiatus_sel"} <= set(t[(t.horizon_days == 60) & (t.task == "churn")]["model"])
    assert "hiatus_sel" not in set(t[t.horizon_days == 120]["model"])  # no selection origin at 120 days
    assert "roc_auc:latent_alive" in set(t["metric"])
    cmp = res.comparison
    assert set(cmp["model"]) == {"model"}
    assert cmp.groupby("horizon_days")["origins"].max().to_dict() == {60: 2, 120: 1}
    assert set(cmp["metric"]) >= {"roc_auc", "brier", "roc_auc:latent_alive"}
    assert cmp["ci_low"].le(cmp["ci_high"]).all() and cmp["share_won"].between(0, 1).all()
    md = res.results_md.read_text()
    assert md.index("## Models against the best baseline, report origins only") < md.index("## base/h60: mean over")
    assert "select_until = 2024-11-30" in md and "| base | 60 | churn | roc_auc | model | 2 |" in md
    assert pd.read_csv(folder / "comparison.csv").shape[0] == len(cmp)


def test_interval_coverage_section_reads_report_origins_only():
    from tiering.experiment import interval_markdown

    rows = []
    for origin, split, cov in (("2011-01-01", "select", 0.5), ("2011-02-01", "report", 0.78), ("2011-03-01", "report", 0.84)):
        for metric, value in (("coverage", cov), ("share_below", 0.0), ("share_above", 1 - cov), ("median_width", 10.0)):
            rows.append({"variant": "default", "horizon_days": 90, "origin": origin, "split": split, "task": "interval",
                         "model": "cqr_buyers", "metric": metric, "value": value})
    text = "\n".join(interval_markdown(pd.DataFrame(rows)))
    assert "| default | 90 | cqr_buyers | 2 | 81.0% | 78.0%..84.0% | 0.0% | 19.0% | 10.00 |" in text
    assert interval_markdown(pd.DataFrame(rows).assign(split="select")) == []
