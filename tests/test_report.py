"""`tiering report` on simulated customers with known truth: the numbers, the page, and the page in a browser.

One small model (BTYD + a light propensity model + the tier policy + a next-tier classifier) is
fitted at 2025-01-01 on 3,000 simulated customers (2024-01-01 .. 2025-12-31) and scores the base
at three dates into a scores store: 2025-01-01, 2025-06-30 (outcomes fully observed: horizon 180
days) and 2025-12-31 (the end of the data, where the latent true tier is known).
Browser binaries: TIERING_TEST_CHROMIUM / TIERING_TEST_CHROMEDRIVER, else chromium / chromedriver
on PATH; missing ones skip the browser test, or fail it when TIERING_REQUIRE_SERVICES=1 (CI).
"""

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tiering.config import Config
from tiering.datasets import simulate
from tiering.models.btyd import BetaGeoModel, GammaGammaModel
from tiering.models.bundle import ScoringBundle, model_features
from tiering.models.intervals import SpendInterval
from tiering.models.propensity import PropensityModel
from tiering.models.tiers import NextTierModel, TierPolicy
from tiering.predict import score
from tiering.store import ScoresStore
from tiering.train import feature_spec, features_at, with_labels
from tiering.validation import load_tables

START, END, H = dt.date(2024, 1, 1), dt.date(2025, 12, 31), 180
T0, AS_OF = dt.date(2025, 1, 1), dt.date(2025, 6, 30)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    data = simulate(3000, START, END, seed=5)
    data.write(root / "data")
    cfg = Config().with_source_dir(root / "data")
    cfg.model.horizon_days = H
    cfg.validation.quarantine_dir = str(root / "quarantine")
    cfg.store.url = f"sqlite:///{root}/scores.db"
    cfg.tracking.uri = f"sqlite:///{root}/mlflow.db"  # never created: the report finds no training date to compare
    tables = load_tables(cfg)
    spec = feature_spec(cfg)
    feats = features_at(tables, T0, spec)
    train = with_labels(tables, feats, T0, H)
    buyers = train[train["has_purchased"] > 0]
    bundle = ScoringBundle(
        feature_spec=spec.to_dict(), feature_columns=list(feats.columns),
        horizon_days=H, discount_rate_annual=0.1, trained_as_of=T0,
        transaction_model=BetaGeoModel().fit(buyers["frequency"], buyers["recency"], buyers["T"]),
        spend_model=GammaGammaModel().fit(buyers["frequency"], buyers["monetary_value"]),
        propensity=None, tier_policy=None, next_tier_model=None, version="test")
    cols = bundle.feature_columns
    bundle.propensity = PropensityModel(max_iter=60, cv=2).fit(
        bundle.propensity_input(train[cols], bundle.btyd(train)), train["purchased_in_horizon"])
    clv_input = bundle.clv_input(train[cols], bundle.btyd(train))  # an 80% interval (calibrated in sample: a page test)
    bundle.clv_interval = SpendInterval(max_iter=50).fit(clv_input, train["holdout_spend"]).conformalize(
        clv_input, train["holdout_spend"])
    bundle.tier_policy = TierPolicy().fit(pd.concat([train, bundle.predictions(train[cols])], axis=1))
    batches = {d: score(tables, bundle, as_of=d, model_name="customer-tiering", model_version="1",
                        scored_at=dt.datetime.combine(d, dt.time(23))) for d in (T0, AS_OF)}
    pair = batches[T0][["customer_id", "tier"]].merge(batches[AS_OF][["customer_id", "tier"]], on="customer_id",
                                                      suffixes=("_then", "_now"))
    X0 = train[cols].merge(pair, on="customer_id")
    bundle.next_tier_model = NextTierModel(max_iter=30).fit(model_features(X0[cols]), X0["tier_then"], X0["tier_now"])
    for d in (AS_OF, END):
        batches[d] = score(tables, bundle, as_of=d, model_name="customer-tiering", model_version="1",
                           scored_at=dt.datetime.combine(d, dt.time(23)))
    store = ScoresStore(cfg.store.url)
    for d in (T0, AS_OF, END):
        store.write_batch(batches[d])
    (root / "config.yaml").write_text(
        f"data:\n  transactions: {{path: {root}/data/transactions.parquet}}\n"
        f"  interactions: {{path: {root}/data/interactions.parquet}}\n  customers: {{path: {root}/data/customers.parquet}}\n"
        f"model: {{horizon_days: {H}}}\nstore: {{url: 'sqlite:///{root}/scores.db'}}\n"
        f"tracking: {{uri: 'sqlite:///{root}/mlflow.db'}}\n"
        f"validation: {{quarantine_dir: {root}/quarantine}}\n"
        "tiers:\n  - tier: core\n    action: Personal call from the account manager within 24 hours.\n")
    return {"root": root, "cfg": cfg, "tables": tables, "data": data, "batches": batches}


@pytest.fixture(scope="module")
def page(world):
    from tiering.report import build_report

    out = world["root"] / "report.html"
    res = build_report(world["cfg"], as_of=AS_OF, out=out, tables=world["tables"])
    return res, out.read_text()


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.ids, self.external, self.text = [], set(), [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if "id" in a and tag == "section":
            self.ids.add(a["id"])
        for k in ("src", "href"):
            if a.get(k) and not a[k].startswith("#"):
                self.external.append((tag, a[k]))

    def handle_data(self, data):
        self.text.append(data)


def _parse(html):
    p = _Collect()
    p.feed(html)
    p.close()
    return p, " ".join(" ".join(p.text).split())


# ------------------------------------------------------------------------------------------------ numbers

def test_funnel_matches_the_simulated_truth(world):
    from tiering.report import funnel_metrics, funnel_rollup

    W = 30
    f = funnel_metrics(world["tables"], as_of=END, window_days=W)
    truth, ix = world["data"].truth, world["data"].interactions
    t = truth.assign(month=truth["joined_at"].dt.strftime("%Y-%m"), channel=truth["acquisition_channel"].astype(str))
    t["converted"] = (t["first_purchase_at"] - t["joined_at"]) < pd.Timedelta(days=W)
    e = ix.merge(t[["customer_id", "joined_at"]], on="customer_id")
    e = e[e["occurred_at"] < e["joined_at"] + pd.Timedelta(days=W)]
    t["interacted"] = t["customer_id"].isin(e.loc[e["event_type"] != "group_join", "customer_id"])
    t["shared"] = t["customer_id"].isin(e.loc[e["event_type"].isin(["share", "referral"]), "customer_id"])
    exp = t.groupby(["month", "channel"]).agg(members=("customer_id", "size"), converted=("converted", "sum"),
                                              interacted=("interacted", "sum"), shared=("shared", "sum")).reset_index()
    got = f.rename(columns={"acquisition_channel": "channel"}).merge(exp, on=["month", "channel"], suffixes=("", "_truth"))
    assert len(got) == len(exp) == len(f) == 24 * 6
    for c in ("members", "converted", "interacted", "shared"):
        assert (got[c] == got[f"{c}_truth"]).all(), c
    # the repurchase ratio counts every order within the window of the converted members
    assert (f["repurchase_ratio"].dropna() >= 1).all()
    # channels convert at their simulated rates (22% .. 35%, times P(first-purchase delay < 30 days) = 1 - e^-1.5)
    ch = funnel_rollup(f, "acquisition_channel", complete_only=True).set_index("acquisition_channel")
    assert ch.loc["offline_store", "first_purchase_conversion"] > ch.loc["douyin", "first_purchase_conversion"]
    assert 0.10 < ch["first_purchase_conversion"].min() and ch["first_purchase_conversion"].max() < 0.35
    # windows that have not closed by as_of are flagged: the December cohort at END
    assert not f.loc[f["month"] == "2025-12", "window_complete"].any() and f.loc[f["month"] == "2025-11", "window_complete"].all()


def test_diversion_rate_from_reach_counts(world):
    from tiering.report import funnel_metrics, funnel_rollup

    f = funnel_metrics(world["tables"], as_of=END)
    rate = {"douyin": 0.10, "xiaohongshu": 0.12, "tmall": 0.15, "jd": 0.15, "offline_store": 0.30, "referral": 0.50}
    reach = f[["month", "acquisition_channel", "members"]].assign(
        reached=lambda d: d["members"] / d["acquisition_channel"].map(rate))
    g = funnel_metrics(world["tables"], as_of=END, reach=reach.drop(columns="members"))
    assert np.allclose(g["diversion_rate"], g["acquisition_channel"].map(rate))
    by = funnel_rollup(g, "acquisition_channel").set_index("acquisition_channel")["diversion_rate"]
    assert by.to_dict() == pytest.approx(rate)
    assert f["diversion_rate"].isna().all()


def test_funnel_from_transactions_alone(world):
    from tiering.report import funnel_metrics, funnel_rollup
    from tiering.validation import ValidatedTables

    t = world["tables"]
    f = funnel_metrics(ValidatedTables(t.transactions, None, None, [], t.con), as_of=END)
    truth = world["data"].truth
    assert (f["acquisition_channel"] == "unknown").all() and f["members"].sum() == truth["is_buyer"].sum()
    # joined = first purchase, so conversion is unknown (not 100%); without interactions the rates are unknown (not 0)
    for col in ("first_purchase_conversion", "interaction_rate", "share_rate", "diversion_rate"):
        assert f[col].isna().all() and funnel_rollup(f, "month")[col].isna().all(), col
    assert (f["converted"] == f["members"]).all() and (f["repurchase_ratio"] >= 1).all()


def test_ladder_and_truth_on_simulated_customers(world):
    from tiering.features import build_labels
    from tiering.migration import ladder_check, ladder_outcomes, truth_agreement

    labels = build_labels(world["tables"].transactions, as_of=AS_OF, horizon_days=H).to_pandas()
    table = ladder_outcomes(world["batches"][AS_OF], labels)
    # buyers' tiers: realised spend and repurchase rise ordinary < value < core
    for col in ("mean_holdout_spend", "repurchase_rate"):
        assert table.loc["ordinary", col] < table.loc["value", col] < table.loc["core", col], col
    check = ladder_check(table)
    # on this simulator recent joiners (new) buy more than engaged non-buyers (seed, who convert at half the rate);
    # the lower tiers are not ordered among themselves (a seed is not yet paying), so the ladder holds
    assert table.loc["new", "mean_holdout_spend"] > table.loc["seed", "mean_holdout_spend"]
    assert check["monotonic_spend"] and check["monotonic_repurchase"] and check["violations"] == []
    scored = world["batches"][END]
    a = truth_agreement(scored, world["data"].truth)
    # against the strongest trivial ladder: "ever bought -> value, else ordinary" (churn_risk exists for buyers only)
    trivial = truth_agreement(scored.assign(tier=np.where(scored["churn_risk"].notna(), "value", "ordinary")), world["data"].truth)
    assert a["customers"] == 3000 and a["accuracy"] > 0.7 and a["cohen_kappa"] > 0.5
    assert a["accuracy"] > trivial["accuracy"] + 0.1 and a["cohen_kappa"] > trivial["cohen_kappa"] + 0.1
    assert a["precision"]["value"] > trivial["precision"]["value"] + 0.2 and a["recall"]["ordinary"] > 0.8


def test_outcome_coverage(world):
    from tiering.report import _outcomes

    labels, cov, sentence, days = _outcomes(world["tables"], dt.date(2025, 10, 1), H)
    assert cov == "partial" and days == 91 and "cover only 91 of the 180 horizon days" in sentence and len(labels) > 0
    labels, cov, sentence, days = _outcomes(world["tables"], END, H)
    assert labels is None and cov == "none" and "not after 2025-12-31" in sentence


# ------------------------------------------------------------------------------------------------ the page

def test_report_page_holds_every_section(world, page):
    res, html = page
    p, text = _parse(html)
    assert res.as_of == AS_OF and res.previous_as_of == T0 and res.outcomes == "full" and res.customers == len(world["batches"][AS_OF])
    assert {"ladder", "migration", "distributions", "quality", "funnel"} <= p.ids
    assert p.external == [] and "script" not in p.tags  # self-contained: nothing to fetch
    assert p.tags.count("svg") == 7  # mix, migration, next tier, distributions, gain, calibration, funnel
    assert len(html) < 400_000  # curves are thinned: the page does not grow with the base
    counts = world["batches"][AS_OF]["tier"].value_counts()
    assert res.sections["tiers"] == {t: int(counts.get(t, 0)) for t in ("core", "value", "seed", "new", "ordinary")}
    for t in ("core", "value", "ordinary"):
        assert f"{counts[t]:,}" in text
    assert "Repurchase coupon and replenishment reminders." in text
    assert f"From {T0} (rows) to {AS_OF} (columns)" in text
    assert "Realised outcomes over the full horizon 2025-07-01 .. 2025-12-27 (180 days)." in text
    assert "value more than seed, new and ordinary: yes ; the same on the (re)purchase rate: yes ." in text
    assert "Steps down" not in text
    assert "No reach counts configured" in text and "first-purchase conversion 20% within the window" in text
    assert res.sections["quality"]["propensity_roc_auc"] > 0.8 and res.sections["quality"]["clv_normalized_gini"] > 0.8
    # the 80% CLV interval, judged on the same realised outcomes (prospects' certain zeros count as covered)
    assert 0.75 <= res.sections["quality"]["clv_interval_coverage"] <= 1.0
    assert "spend inside the 80% CLV interval" in text and "typical CLV range (80%)" in text
    # how many of the horizon's top spenders core held, in words (migration.core_top_spenders)
    top = res.sections["core_top_spenders"]
    assert 0 < top["recall"] <= 1 and 0 < top["precision"] <= 1
    assert top["f1"] == pytest.approx(2 / (1 / top["recall"] + 1 / top["precision"]))
    assert f"Core held {top['recall']:.1%} of the customers who turned out to be the top 20% of the horizon's spenders" in text
    mig = res.sections["migration"]
    assert mig["customers_in_both"] == len(world["batches"][T0]) and mig["entered"] == len(world["batches"][AS_OF]) - len(world["batches"][T0])


def test_a_batch_scored_before_its_models_training_date_is_marked_in_sample(world, page, monkeypatch, tmp_path):
    """The fixture's model knows no training date (no tracking store): no mark. Told one after AS_OF, the page
    says in the header and above the accuracy figures that they are in-sample."""
    import tiering.report
    from tiering.report import build_report, in_sample_note

    res, html = page
    assert res.sections["in_sample"] is False and "in-sample" not in html
    assert in_sample_note(AS_OF, AS_OF) is None and in_sample_note(AS_OF, None) is None
    monkeypatch.setattr(tiering.report, "_training_as_of", lambda cfg, batch: END)
    res = build_report(world["cfg"], as_of=AS_OF, out=tmp_path / "r.html", tables=world["tables"])
    p, text = _parse((tmp_path / "r.html").read_text())
    note = f"Scored on {AS_OF}, before the model's training date ({END}): accuracy shown is in-sample."
    assert res.sections["in_sample"] is True and text.count(note) == 2
    assert text.index(note) < text.index("Tier ladder and mix") < text.rindex(note) < text.index("CLV normalized Gini")


def test_report_cli_json_and_errors(world):
    root = world["root"]

    def run(*args):
        return subprocess.run([sys.executable, "-m", "tiering", "report", "--config", str(root / "config.yaml"), *args],
                              capture_output=True, text=True, timeout=600, cwd=root)

    r = run("--as-of", str(END), "--out", str(root / "end.html"), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["as_of"] == str(END) and out["previous_as_of"] == str(AS_OF) and out["outcomes"] == "none"
    _, text = _parse((root / "end.html").read_text())
    assert "realised outcomes are not available yet" in text
    assert "Personal call from the account manager within 24 hours." in text  # tier actions from the config
    r = run("--as-of", "2025-03-01", "--out", str(root / "x.html"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "holds no batch for as_of 2025-03-01" in r.stderr
    r = run("--as-of", "2025-02-30", "--out", str(root / "x.html"))
    assert r.returncode == 2 and "--as-of must be a date as YYYY-MM-DD; got '2025-02-30'" in r.stderr


def test_report_renders_in_headless_chromium(world, page, browser, tmp_path):
    drv = browser
    drv.get((world["root"] / "report.html").as_uri())
    assert drv.title == f"Tiering report {AS_OF}"
    # every chart is laid out with a real size, and every table has rows
    sizes = drv.execute_script("return Array.from(document.querySelectorAll('svg')).map(s => "
                               "[s.getBoundingClientRect().width, s.getBoundingClientRect().height])")
    assert len(sizes) == 7 and all(w > 200 and h > 100 for w, h in sizes)
    rows = drv.execute_script("return ['funnel-channel', 'funnel-month'].map(i => document.getElementById(i).rows.length)")
    assert rows[0] == 2 + 6 and rows[1] == 2 + 18  # header + reference + 6 channels; + 18 monthly cohorts
    drv.set_window_size(1280, drv.execute_script("return document.body.scrollHeight") + 100)
    shot = tmp_path / "report.png"
    assert drv.save_screenshot(str(shot)) and shot.stat().st_size > 50_000
    if os.environ.get("TIERING_TEST_SCREENSHOT_DIR"):  # keep it to look at
        shutil.copy(shot, Path(os.environ["TIERING_TEST_SCREENSHOT_DIR"]) / "report.png")
