"""The notebook API (`import tiering as tg`): DataFrames, polars, paths and Ibis tables in; the same
validation, features and fit as the command line; clear errors naming the argument."""

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

import tiering as tg
from tiering.config import Config
from tiering.datasets import simulate
from tiering.exceptions import ConfigError, DataQualityError
from tiering.features import FeatureSpec, build_features
from tiering.schemas import SCORES_COLUMNS, TIERS

START, END = dt.date(2024, 1, 1), dt.date(2025, 6, 30)
FAST = {"training_origins": 1}  # one training origin per supervised model: the fit stays in seconds


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Gradient boosting with every OpenMP thread on a busy 2-core machine is ~10x slower than with one."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def sim():
    return simulate(1500, START, END, seed=11)


@pytest.fixture(scope="module")
def small():
    return simulate(400, START, END, seed=3)


@pytest.fixture(scope="module")
def fitted(sim):
    return tg.fit(transactions=sim.transactions, interactions=sim.interactions, customers=sim.customers,
                  as_of=END, horizon_days=90, **FAST)


def _frames(data):
    return {"transactions": data.transactions, "interactions": data.interactions, "customers": data.customers}


def _equal_features(left: pd.DataFrame, right: pd.DataFrame) -> None:
    def norm(df):
        df = df.sort_values("customer_id", ignore_index=True)
        return df.assign(as_of=pd.to_datetime(df["as_of"]))

    pd.testing.assert_frame_equal(norm(left), norm(right), check_dtype=False)


# ------------------------------------------------------------------------------------------ the flow
@pytest.mark.slow  # shares one fit (~20 s on a quiet 2-core machine, a minute on a busy one)
def test_one_liner_flow_on_pandas_frames(sim, fitted):
    checked = tg.validate(**_frames(sim), as_of=END)
    assert list(checked.reports["table"]) == ["transactions", "interactions", "customers"]
    assert (checked.reports["rows_valid"] == checked.reports["rows_in"]).all()  # simulated data are clean
    assert len(checked.transactions) == len(sim.transactions)
    assert repr(checked).startswith(f"Validated(as_of={END}; transactions: {len(sim.transactions):,} rows, ")

    feats = tg.features(checked, as_of=END)
    assert feats["customer_id"].is_unique and feats["customer_id"].is_monotonic_increasing

    assert fitted.horizon_days == 90 and fitted.bundle.trained_as_of == END
    assert fitted.metrics is fitted.bundle.metrics and "propensity_roc_auc" in fitted.metrics
    assert fitted.config.model.training_origins == 1  # keyword overrides reach the fit
    assert repr(fitted).startswith(f"FittedModel(as_of={END}, horizon_days=90, ")

    scores = fitted.score()  # the training data at the training as_of
    assert list(scores.columns) == list(SCORES_COLUMNS)
    assert sorted(scores["customer_id"]) == list(feats["customer_id"])
    assert set(scores["tier"]) <= set(TIERS) and (scores["horizon_days"] == 90).all()
    assert (scores["model_name"] == "local").all()


@pytest.mark.slow  # shares one fit (~20 s on a quiet 2-core machine, a minute on a busy one)
def test_explain_gives_the_values_that_fired_the_rule(fitted):
    scores = fitted.score(as_of=END, scored_at=dt.datetime(2025, 7, 1))
    assert (scores["scored_at"] == pd.Timestamp("2025-07-01")).all()
    core = scores[scores["tier"] == "core"]["customer_id"].iloc[0]
    why = fitted.explain(core)
    assert why["tier"] == "core" and why["tier_reason"].startswith("bought")
    t, v = why["thresholds"], why["rule_inputs"]
    assert v["has_purchased"] == 1 and why["p_purchase"] >= t["core_min_p_purchase"] and why["clv"] >= t["core_clv_cut"]
    ordinary = scores[(scores["tier"] == "ordinary") & ~scores["lapsed_buyer"].astype(bool)]["customer_id"].iloc[0]
    why = fitted.explain(ordinary)
    assert why["rule_inputs"]["has_purchased"] == 0 and why["rule_inputs"]["tenure_days"] >= t["new_max_tenure_days"]
    assert math.isnan(why["churn_risk"])  # undefined for someone who never bought
    lapsed = scores[scores["lapsed_buyer"].astype(bool)]["customer_id"].iloc[0]
    why = fitted.explain(lapsed)  # a buyer who stopped: out of value, with the floor that failed
    assert why["rule_inputs"]["has_purchased"] == 1 and why["tier"] != "value" and "lapsed buyer" in why["tier_reason"]
    with pytest.raises(ConfigError, match="'nobody' is not in the last scoring"):
        fitted.explain("nobody")


@pytest.mark.slow  # shares one fit (~20 s on a quiet 2-core machine, a minute on a busy one)
def test_score_new_tables_needs_as_of_and_scores_a_subset(sim, fitted):
    with pytest.raises(ConfigError, match="needs as_of="):
        fitted.score(transactions=sim.transactions)
    ids = sorted(sim.customers["customer_id"])[:50]
    part = {k: v[v["customer_id"].isin(ids)] for k, v in _frames(sim).items()}
    sub = fitted.score(**part, as_of=END).set_index("customer_id")
    full = fitted.score(as_of=END).set_index("customer_id").loc[sub.index]
    # a batch of 50 gets the same scores and tiers as the whole base (cut points are stored in the model)
    cols = ["p_purchase", "clv", "tier"]
    pd.testing.assert_frame_equal(sub[cols], full[cols])


# ------------------------------------------------------------------------------------- input kinds
@pytest.fixture(scope="module")
def small_features(small):
    return tg.features(**_frames(small), as_of=END)


def _inputs(kind, small, tmp_path):
    import ibis

    frames = _frames(small)
    if kind == "parquet paths":
        small.write(tmp_path)
        return {k: tmp_path / f"{k}.parquet" for k in frames}
    if kind == "csv paths":
        for k, df in frames.items():
            df.to_csv(tmp_path / f"{k}.csv", index=False)
        return {k: str(tmp_path / f"{k}.csv") for k in frames}
    if kind == "ibis tables":
        con = ibis.duckdb.connect()
        return {k: con.create_table(k, v) for k, v in frames.items()}
    if kind == "ibis memtables":
        return {k: ibis.memtable(v) for k, v in frames.items()}
    pl = pytest.importorskip("polars")
    if kind == "polars":
        return {k: pl.from_pandas(v) for k, v in frames.items()}
    return {k: pl.from_pandas(v).lazy() for k, v in frames.items()}


@pytest.mark.parametrize("kind", ["parquet paths", "csv paths", "ibis tables", "ibis memtables", "polars", "polars lazy"])
def test_every_input_kind_gives_the_same_features_as_pandas(kind, small, small_features, tmp_path):
    got = tg.features(**_inputs(kind, small, tmp_path), as_of=END)
    _equal_features(got, small_features)


def test_mapping_renames_and_derives_columns(small):
    tx = small.transactions.rename(columns={"customer_id": "cust", "order_id": "invoice", "ordered_at": "ts"})
    tx = tx.assign(half=tx["amount"] / 2).drop(columns=["amount"])
    cu = small.customers.rename(columns={"joined_at": "signup"})
    mapping = {"transactions": {"customer_id": "cust", "order_id": "invoice", "ordered_at": "ts", "amount": "half * 2"},
               "customers": {"joined_at": "signup"}}
    got = tg.features(transactions=tx, interactions=small.interactions, customers=cu, mapping=mapping, as_of=END)
    _equal_features(got, tg.features(**_frames(small), as_of=END))


def test_keyword_overrides_equal_build_features_with_that_spec(small):
    """time_unit='W' and windows_days reach the feature builder: the same frame as build_features with that spec."""
    checked = tg.validate(**_frames(small), as_of=END)
    got = tg.features(checked, as_of=END, time_unit="W", windows_days=[30, 60])
    t = checked.tables
    spec = FeatureSpec(time_unit="W", windows_days=(30, 60))
    _equal_features(got, build_features(t.transactions, t.interactions, t.customers, as_of=END, spec=spec).to_pandas())
    assert "orders_60d" in got.columns and "orders_180d" not in got.columns


def test_features_equal_the_cli_output(small, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from tiering.cli import app

    small.write(tmp_path / "data")
    monkeypatch.chdir(tmp_path)  # the CLI's defaults (quarantine folder, configs/base.yaml) live in the cwd
    args = ["features", "--as-of", str(END), "--out", "features.parquet"]
    args += [a for k in ("transactions", "interactions", "customers") for a in (f"--{k}", f"data/{k}.parquet")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    paths = {k: tmp_path / "data" / f"{k}.parquet" for k in _frames(small)}
    _equal_features(tg.features(**paths, as_of=END), pd.read_parquet(tmp_path / "features.parquet"))


# ----------------------------------------------------------------------------------- bad rows, errors
def test_bad_rows_are_quarantined_and_counted(small, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tx = small.transactions
    first = tx.iloc[[0]]
    bad = pd.concat([
        first.assign(customer_id=None, order_id="bad-1"),
        first.assign(ordered_at=pd.NaT, order_id="bad-2"),
        first.assign(amount=np.inf, order_id="bad-3"),
        tx.iloc[[1]],  # an exact repeat of a line
        first.assign(ordered_at=pd.Timestamp(END) + pd.Timedelta(days=3), order_id="late"),
    ])
    checked = tg.validate(transactions=pd.concat([tx, bad], ignore_index=True), as_of=END)
    report = checked.table_reports[0]
    assert report.rows_in == len(tx) + 5 and report.rows_valid == len(tx)
    assert report.quarantined == {"missing_customer_id": 1, "missing_time": 1, "non_finite_amount": 1,
                                  "duplicate_line": 1, "after_as_of": 1}
    rows = checked.quarantine("transactions")
    assert sorted(rows["reason"]) == sorted(report.quarantined)
    assert set(rows.loc[rows["reason"] == "non_finite_amount", "raw_amount"]) == {"inf"}
    assert not any(tmp_path.iterdir())  # nothing written unless asked
    checked.write_quarantine(tmp_path / "q")
    assert len(pd.read_parquet(tmp_path / "q" / "transactions.parquet")) == 5


def test_a_table_mostly_bad_is_refused_unless_check_is_off(small):
    tx = small.transactions.assign(amount=np.where(np.arange(len(small.transactions)) % 4, np.nan, 1.0))
    with pytest.raises(DataQualityError, match=r"set aside as defective.*check=False\)\.quarantine\('transactions'\)"):
        tg.validate(transactions=tx)
    report = tg.validate(transactions=tx, check=False).reports.iloc[0]
    assert report["quarantined"]["missing_amount"] == report["rows_quarantined"] > report["rows_valid"]


def test_errors_name_the_argument_what_was_found_and_what_is_accepted(small, tmp_path):
    tx = small.transactions
    with pytest.raises(ConfigError, match=r"transactions= got builtins\.list; pass a pandas or polars DataFrame"):
        tg.features(transactions=[1, 2], as_of=END)
    with pytest.raises(ConfigError, match=r"interactions= got pandas.*Series"):
        tg.validate(transactions=tx, interactions=tx["customer_id"])
    with pytest.raises(ConfigError, match=r"tg\.features needs as_of=.*never taken from the clock"):
        tg.features(transactions=tx)
    with pytest.raises(ConfigError, match=r"tg\.fit needs as_of="):
        tg.fit(transactions=tx)
    with pytest.raises(ConfigError, match=r"as_of is a day; got the time"):
        tg.features(transactions=tx, as_of=dt.datetime(2025, 6, 30, 12))
    with pytest.raises(ConfigError, match=r"as_of must be a date as YYYY-MM-DD; got '30/06/2025'"):
        tg.features(transactions=tx, as_of="30/06/2025")
    with pytest.raises(ConfigError, match=r"transactions= is required"):
        tg.validate(customers=small.customers)
    with pytest.raises(ConfigError, match=r"transactions='nowhere.parquet' does not exist"):
        tg.validate(transactions="nowhere.parquet")
    with pytest.raises(ConfigError, match=r"Unknown keyword horizon=90"):
        tg.features(transactions=tx, as_of=END, horizon=90)
    with pytest.raises(ConfigError, match=r"model\.horizon_days: .*greater than 0 \(got -5\)"):
        tg.features(transactions=tx, as_of=END, horizon_days=-5)
    with pytest.raises(ConfigError, match=r"several config sections \(features, predict\)"):
        tg.features(transactions=tx, as_of=END, duckdb_memory_limit="1GB")
    with pytest.raises(ConfigError, match=r"mapping= must map table names .* got \['customer_id'\]"):
        tg.validate(transactions=tx, mapping={"customer_id": "cust"})
    with pytest.raises(ConfigError, match=r"config= got dict"):
        tg.validate(transactions=tx, config={"model": {}})
    with pytest.raises(ConfigError, match=r"needs origins="):
        tg.backtest(transactions=tx, origins="2025-01-01")


def test_config_object_and_section_overrides(small):
    cfg = Config()
    cfg.features.windows_days = [30, 60]
    feats = tg.features(**_frames(small), as_of=END, config=cfg, features__time_unit="W")
    assert "spend_60d" in feats.columns and "spend_90d" not in feats.columns
    assert cfg.features.time_unit == "D"  # the caller's config is not changed


# ------------------------------------------------------------------------------------ backtest, mlflow
def test_backtest_on_frames(sim):
    res = tg.backtest(**_frames(sim), origins=["2024-12-01", dt.date(2025, 2, 1)], horizon_days=90,
                      variants=["naive", "btyd"])
    assert sorted(set(res.table["origin"])) == [dt.date(2024, 12, 1), dt.date(2025, 2, 1)]
    assert set(res.table["model"]) == {"naive", "btyd"} and res.horizon_days == 90
    gini = res.summary.query("task == 'clv' and model == 'btyd' and metric == 'normalized_gini'")
    assert int(gini["origins"].iloc[0]) == 2


@pytest.mark.slow  # shares one fit (~20 s on a quiet 2-core machine, a minute on a busy one)
def test_log_to_mlflow_registers_a_version(fitted, tmp_path):
    from tiering.registry import versions

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    run_id, version = tg.log_to_mlflow(fitted, tracking_uri=uri)
    assert version == "1" and fitted.run_id == run_id
    assert (tmp_path / "artifacts").is_dir()  # artifacts beside the store, not under the working directory
    (v,) = versions(fitted.config.tracking)
    assert v.run_id == run_id and "challenger" in v.aliases
    assert v.metrics["propensity_roc_auc"] == pytest.approx(fitted.metrics["propensity_roc_auc"])
    scores = fitted.score(as_of=END, scored_at=dt.datetime(2025, 7, 1))
    assert set(scores["model_version"]) == {"1"} and set(scores["model_name"]) == {"customer-tiering"}
    with pytest.raises(ConfigError, match="takes the FittedModel"):
        tg.log_to_mlflow(fitted.bundle, tracking_uri=uri)


@pytest.mark.slow
def test_fit_equals_the_cli_fit_on_the_same_files(sim, fitted, tmp_path):
    """tg.fit on frames equals tiering.train.fit on load_tables of the same data as files (what `tiering train`
    runs before logging)."""
    from tiering.train import fit
    from tiering.validation import load_tables

    sim.write(tmp_path / "data")
    cfg = Config().with_source_dir(tmp_path / "data")
    cfg.model.horizon_days, cfg.model.training_origins = 90, 1
    cfg.validation.quarantine_dir = str(tmp_path / "q")
    result = fit(load_tables(cfg, as_of=END), as_of=END, cfg=cfg)
    assert result.metrics.keys() == fitted.metrics.keys()
    for k, v in result.metrics.items():
        assert v == pytest.approx(fitted.metrics[k], nan_ok=True, rel=1e-9), k
    assert result.data_fingerprint["customers_with_transactions"] == fitted.result.data_fingerprint["customers_with_transactions"]


# ------------------------------------------------------------------------------------------- progress
def _quick_backtest(data, progress):
    return tg.backtest(**_frames(data), origins=["2025-02-01"], horizon_days=90, variants=["naive", "btyd"], progress=progress)


def test_progress_false_writes_nothing_to_stderr(small, capfd):
    capfd.readouterr()
    _quick_backtest(small, progress=False)
    assert capfd.readouterr().err == ""


def test_progress_none_is_silent_off_a_terminal(small, capfd):
    capfd.readouterr()
    _quick_backtest(small, progress=None)  # pytest's stderr is not a terminal
    assert capfd.readouterr().err == ""


def test_progress_on_a_terminal_shows_the_steps_with_elapsed_time(small, monkeypatch):
    import io

    from rich.console import Console

    import tiering.progress

    buf = io.StringIO()
    monkeypatch.setattr(tiering.progress, "stderr_console", lambda: Console(file=buf, force_terminal=True, width=120))
    _quick_backtest(small, progress=None)  # None: on, since "stderr" is a terminal now
    text = buf.getvalue()
    assert "validating the tables" in text and "origin 2025-02-01: features, labels and BTYD" in text
    assert "✓" in text and "s)" in text  # each finished step with its elapsed seconds


def test_progress_true_off_a_terminal_prints_one_line_per_step(small, capfd):
    capfd.readouterr()
    _quick_backtest(small, progress=True)
    err = capfd.readouterr().err
    assert "- validating the tables\n" in err and "- origin 2025-02-01: features, labels and BTYD\n" in err
    with pytest.raises(ConfigError, match="progress= takes True, False or None"):
        _quick_backtest(small, progress="yes")
