"""The backtest: one tidy table per model and origin, plots, and the models beating naive on simulated data."""

import datetime as dt
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from tiering.backtest import COLUMNS, VARIANTS, _selected, backtest, ladder_clv_kind, ladder_holdout, summarise, to_markdown
from tiering.config import Config
from tiering.datasets import simulate
from tiering.exceptions import ConfigError
from tiering.experiment import latent_truth
from tiering.tier_eval import ladder_metrics
from tiering.validation import load_tables

START, END = dt.date(2024, 1, 1), dt.date(2025, 12, 31)
ORIGINS = [dt.date(2025, 4, 1), dt.date(2025, 7, 1)]
H = 90


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    root = tmp_path_factory.mktemp("backtest")
    simulate(2000, START, END, seed=5).write(root / "data")
    cfg = Config().with_source_dir(root / "data")
    cfg.validation.quarantine_dir = str(root / "quarantine")
    return root, cfg, load_tables(cfg)


@pytest.fixture(scope="module")
def result(sim):
    root, cfg, tables = sim
    with threadpool_limits(1):
        return backtest(tables, ORIGINS, cfg, horizon_days=H, out_dir=root / "out", keep_predictions=True)


def test_table_is_tidy_with_every_model_and_origin(result):
    t = result.table
    assert list(t.columns) == COLUMNS and result.horizon_days == H
    assert set(t["origin"]) == set(ORIGINS)
    for task, models in VARIANTS.items():
        for model in models:
            part = t[(t["task"] == task) & (t["model"] == model)]
            assert set(part["origin"]) == set(ORIGINS), (task, model)
    clv = t[t["task"] == "clv"]
    assert set(clv["metric"]) == {"normalized_gini", "spearman", "top_decile_capture", "mae", "aggregate_error_pct"}
    assert set(t[(t["task"] == "churn") & (t["model"] == "model")]["metric"]) >= {"roc_auc", "pr_auc", "brier", "top_decile_lift"}
    assert t["value"].notna().all()
    s = summarise(t)
    per_origin = ~s["model"].eq("auto") & ~s["task"].isin(["clv_auto_choice", "clv_heldout"])
    assert (s[per_origin]["origins"] == len(ORIGINS)).all()
    assert "| hybrid |" in to_markdown(s)
    assert set(t[t["task"] == "interval"]["metric"]) == {"coverage", "share_below", "share_above", "median_width"}


def test_auto_ships_what_the_last_finished_origin_says(result):
    """"auto" at an origin is pick_clv (the hybrid unless another model beat it by more than 0.01) over the Gini at the
    latest origin whose horizon had ended by then, or, where that evidence is thin, over the origin's held-out Ginis
    (as tiering.train does): at the first origin nothing had ended, so it is thin there; each origin's auto rows are
    the chosen model's metrics there."""
    t = result.table

    def pick(ginis: pd.Series, in_time: bool) -> str:
        pool = ginis[["supervised", "hybrid", "hurdle"]] if in_time else ginis
        best = pool.idxmax()
        kept = "hybrid" if ginis["hybrid"] >= ginis[best] - 0.01 else best
        baseline = ginis[["naive", "btyd"]].idxmax()
        return baseline if in_time and ginis[baseline] > ginis[kept] else kept

    first, second = ORIGINS
    held = t[t["task"] == "clv_heldout"]
    assert first in set(held["origin"]) and set(held["model"]) == {"naive", "btyd", "supervised", "hybrid", "hurdle"}
    assert set(t[t["task"] == "clv_evidence"]["origin"]) == {first, second}
    gini = t[(t["task"] == "clv") & (t["metric"] == "normalized_gini") & (t["model"] != "auto")]
    for o in ORIGINS:
        h = held[held["origin"] == o].set_index("model")["value"]
        winner = pick(h, True) if len(h) else pick(gini[gini["origin"] == first].set_index("model")["value"], False)
        auto = t[(t["model"] == "auto") & (t["origin"] == o)].set_index("metric")["value"]
        chosen = t[(t["task"] == "clv") & (t["origin"] == o) & (t["model"] == winner)].set_index("metric")["value"]
        assert auto.sort_index().equals(chosen.sort_index()), o
        assert result.predictions[o]["clv_auto"].equals(result.predictions[o][f"clv_{winner}"])


def test_pick_clv_keeps_the_preferred_model_unless_beaten_by_more_than_the_margin():
    from tiering.choice import pick_clv

    assert pick_clv({"naive": 0.80, "btyd": 0.79, "hybrid": 0.795}, "hybrid", 0.01) == "hybrid"
    assert pick_clv({"naive": 0.81, "btyd": 0.79, "hybrid": 0.795}, "hybrid", 0.01) == "naive"  # behind by 0.015
    assert pick_clv({"naive": 0.80, "btyd": 0.80, "hybrid": float("nan")}, "hybrid", 0.01) == "naive"  # tie: simpler
    assert pick_clv({"naive": 0.80, "hybrid": 0.70}, "hybrid", 0.0) == "naive"
    assert pick_clv({"naive": float("nan")}, "hybrid", 0.01) is None


def test_pick_clv_in_time_ships_a_learned_model_only_at_or_above_the_best_baseline():
    """On held-out Ginis at a training origin the learned models learned that period's labels: the margin arbitrates
    between them only, and the one kept must reach the best baseline."""
    from tiering.choice import pick_clv

    ginis = {"naive": 0.90, "btyd": 0.9650, "supervised": 0.960, "hybrid": 0.9640, "hurdle": 0.9635}
    assert pick_clv(ginis, "hybrid", 0.01) == "hybrid"  # out of time: within the margin of btyd
    assert pick_clv(ginis, "hybrid", 0.01, in_time=True) == "btyd"  # in time: below btyd
    assert pick_clv(ginis | {"hybrid": 0.9650}, "hybrid", 0.01, in_time=True) == "hybrid"  # a tie keeps it
    # between learned models the margin still holds: the hybrid is kept over a hurdle 0.005 ahead of it
    assert pick_clv(ginis | {"hurdle": 0.970, "hybrid": 0.966}, "hybrid", 0.01, in_time=True) == "hybrid"
    assert pick_clv(ginis | {"hurdle": 0.980}, "hybrid", 0.01, in_time=True) == "hurdle"  # ahead by 0.016
    assert pick_clv({"naive": 0.6, "btyd": 0.5}, "hybrid", 0.01, in_time=True) == "naive"  # no learned model judged


def test_models_beat_naive_and_churn_is_calibrated_on_simulated_data(result):
    mean = summarise(result.table).set_index(["task", "model", "metric"])["mean"]
    gini = mean.xs(("clv", "normalized_gini"), level=("task", "metric"))
    assert gini["hybrid"] > gini["naive"] + 0.02 and gini["supervised"] > gini["naive"] + 0.02
    # the simulator draws purchases from a BTYD process: BTYD is the baseline to match there, and the learned
    # models come within 0.01 of it; what auto ships at the second origin matches the best baseline there
    assert min(gini["hybrid"], gini["hurdle"]) > gini["btyd"] - 0.01
    t = result.table
    at_second = t[(t["task"] == "clv") & (t["metric"] == "normalized_gini") & (t["origin"] == ORIGINS[1])]
    by_model = at_second.set_index("model")["value"]
    assert by_model["auto"] >= max(by_model["naive"], by_model["btyd"]) - 0.005
    # the 80% interval covers 75-85% of the buyers (calibrated on the latest training origin, out of time)
    assert 0.75 <= mean[("interval", "cqr_buyers", "coverage")] <= 0.85
    auc = mean.xs(("churn", "roc_auc"), level=("task", "metric"))
    assert auc["model"] > auc["naive"] and auc["btyd"] > auc["naive"]
    brier = mean.xs(("churn", "brier"), level=("task", "metric"))
    assert brier["model"] < brier["btyd"] + 0.01  # trained a horizon earlier, still as calibrated as BTYD fitted at the origin


def test_ladder_is_judged_by_what_customers_did_next_at_every_origin(result, sim):
    """The bundle's tiers at each origin, judged on the horizon after it: realised spend falls from core to value
    to ordinary, core and value return far more often than the trivial "ever bought -> value" rule's value tier,
    seeds share more than new and ordinary customers, and the tiers follow the simulator's latent truth."""
    t = result.table
    truth = pd.read_parquet(sim[0] / "data" / "truth.parquet")
    for o in ORIGINS:
        m = t[(t["task"] == "tiers") & (t["model"] == "ladder") & (t["origin"] == o)].set_index("metric")["value"]
        assert m["core_spend_mean"] > m["value_spend_mean"] > m["ordinary_spend_mean"], o
        assert m["monotone_spend"] == 1.0 and m["monotone_repurchase"] == 1.0
        assert m["active_value_repurchase_rate"] > m["ever_bought_value_repurchase_rate"] + 0.2
        assert m["seed_social_lift"] > 2 and m["value_floors_learned"] == 1.0
        # the metrics are tier_eval's on the kept tiers and outcomes
        pred = result.predictions[o]
        outcomes = pred[["customer_id", "holdout_spend", "purchased_in_horizon"]]
        tiers = pred[["customer_id"]].assign(tier=pred["tier_ladder"])
        assert ladder_metrics(tiers, outcomes)["core_spend_mean"] == pytest.approx(m["core_spend_mean"])
        # latent truth at the origin: among buyers the latent value rate and P(alive) fall from core to value to
        # the lapsed (ordinary); latent KOCs gather in seed
        latent = tiers.merge(latent_truth(truth, o), on="customer_id").merge(
            truth[["customer_id", "is_seed"]].astype({"customer_id": str}), on="customer_id")
        buyers = latent[latent["customer_id"].isin(pred.loc[pred["has_purchased"] > 0, "customer_id"])]
        by_tier = buyers.groupby("tier")[["latent_value", "latent_alive"]].mean()
        for c in ("latent_value", "latent_alive"):
            assert by_tier.at["core", c] > by_tier.at["value", c] > by_tier.at["ordinary", c], (o, c)
        seed_share = latent.groupby("tier")["is_seed"].mean()
        assert seed_share["seed"] > 5 * latent["is_seed"].mean()
        # a deliberately bad ladder (core and ordinary swapped) fails the check on the same outcomes
        swapped = tiers.assign(tier=tiers["tier"].replace({"core": "ordinary", "ordinary": "core"}))
        bad = ladder_metrics(swapped, outcomes)
        assert bad["monotone_spend"] == 0.0 and bad["monotone_repurchase"] == 0.0


def test_ladder_floors_and_clv_model_come_from_what_was_known_by_the_origin():
    """The value floors at o are learned on the latest earlier ladder whose horizon had ended by o (never on o's own
    outcomes); without one, on the latest training origin scored by a model trained before it, or by BTYD alone where no model can be trained before it; without a training origin, the defaults.
    The CLV model is the configured one, or for auto the one auto would have shipped at o (hybrid when none)."""
    from types import SimpleNamespace

    cfg = Config(model={"horizon_days": 90})
    o = dt.date(2025, 7, 1)
    earlier = {dt.date(2025, 3, 1): "march", dt.date(2025, 4, 1): "april", dt.date(2025, 4, 3): "april 3rd",
               dt.date(2025, 6, 1): "june"}
    frame, where = ladder_holdout(SimpleNamespace(origin=o), [], cfg, earlier)
    assert frame == "april" and "2025-04-01" in where  # April 3rd's horizon ends 2025-07-02, after o
    frame, where = ladder_holdout(SimpleNamespace(origin=o), [], cfg, {dt.date(2025, 6, 1): "june"})
    assert frame is None and "default floors" in where
    rows = pd.DataFrame([(dt.date(2025, 1, 1), "clv", m, "normalized_gini", g) for m, g in (("btyd", 0.5), ("hybrid", 0.6))]
                        + [(o, "clv", m, "normalized_gini", 0.1) for m in ("btyd", "hybrid")], columns=COLUMNS)
    assert ladder_clv_kind(cfg, rows, 90, o) == "hybrid" and ladder_clv_kind(cfg, rows, 90, dt.date(2025, 1, 1)) == "hybrid"
    assert ladder_clv_kind(cfg, rows.replace({"btyd": "naive"}).assign(value=[0.7, 0.6, 0.1, 0.1]), 90, o) == "naive"
    assert ladder_clv_kind(cfg, rows.iloc[:0], 90, o) == "hybrid"
    assert ladder_clv_kind(Config(model={"horizon_days": 90, "clv_model": "btyd"}), rows, 90, o) == "btyd"


def test_plots_csv_and_predictions_are_written(result, sim):
    root = sim[0]
    names = {p.name for p in result.plots}
    for o in ORIGINS:
        assert {f"{o}_clv_gain.png", f"{o}_clv_deciles.png", f"{o}_churn_calibration.png"} <= names
    for p in result.plots:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pd.read_csv(root / "out/backtest.csv").shape == result.table.shape
    pred = result.predictions[ORIGINS[0]]
    assert {"clv_hybrid", "clv_btyd", "p_purchase_model", "holdout_spend"} <= set(pred.columns)
    assert pred["p_purchase_model"].between(0, 1).all() and np.isfinite(pred["clv_hybrid"]).all()


def test_variant_selection_and_bad_origins(sim):
    root, cfg, tables = sim
    with threadpool_limits(1):
        res = backtest(tables, ORIGINS[:1], cfg, horizon_days=H, variants=["btyd", "clv:naive"])
    assert set(zip(res.table["task"], res.table["model"])) == {("clv", "btyd"), ("clv", "naive"), ("churn", "btyd")}
    assert _selected(["ladder"]) == _selected(["tiers:ladder"]) == {"tiers": ("ladder",)}
    with pytest.raises(ConfigError, match="Unknown backtest variant 'clv:model'"):
        backtest(tables, ORIGINS, cfg, horizon_days=H, variants=["clv:model"])
    with pytest.raises(ConfigError, match=r"must leave a full 90-day holdout inside the data.*2025-12-01"):
        backtest(tables, [dt.date(2025, 12, 1)], cfg, horizon_days=H)
    with pytest.raises(ConfigError, match="at least one origin"):
        backtest(tables, [], cfg, horizon_days=H)


def test_cli_backtest_prints_means_and_logs_one_run(sim, tmp_path):
    root, _, _ = sim
    d = root / "data"
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    args = ["backtest", "--origins", "2025-07-01", "--horizon-days", "90", "--out", "bt", "--json",
            "--transactions", str(d / "transactions.parquet"), "--interactions", str(d / "interactions.parquet"),
            "--customers", str(d / "customers.parquet")]
    r = subprocess.run([sys.executable, "-m", "tiering", *args], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["origins"] == ["2025-07-01"] and out["horizon_days"] == 90
    means = {(m["task"], m["model"], m["metric"]): m["mean"] for m in out["mean"]}
    assert ("clv", "hybrid", "normalized_gini") in means and ("churn", "model", "brier") in means
    assert (tmp_path / "bt/2025-07-01_clv_gain.png").exists() and (tmp_path / "bt/backtest.csv").exists()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/models/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("customer-tiering").experiment_id])
    assert run.data.tags["kind"] == "backtest"
    assert run.data.metrics["clv_hybrid_normalized_gini_20250701"] == pytest.approx(means[("clv", "hybrid", "normalized_gini")])
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"backtest.csv", "2025-07-01_clv_gain.png"}

    bad = subprocess.run([sys.executable, "-m", "tiering", "backtest", "--origins", "2025-07-01,2025-13-01"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600, env=env)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "--origins must be a date as YYYY-MM-DD; got '2025-13-01'" in bad.stderr
