"""Migration matrix, stability, the monotonic-ladder check and agreement with a known true tier."""

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from tiering.migration import (
    LADDER_LOW_TO_HIGH,
    ladder_check,
    ladder_outcomes,
    migration_between,
    migration_matrix,
    summarize_counts,
    truth_agreement,
)

TIERS = ["core", "value", "seed", "new", "ordinary"]


def _pairs():
    """Known moves: 10 core stay, 5 core -> value, 20 value stay, 4 new -> value, 6 new -> ordinary,
    30 ordinary stay, 2 seed -> core; 3 customers only before, 7 only after."""
    moves = [("core", "core", 10), ("core", "value", 5), ("value", "value", 20), ("new", "value", 4),
             ("new", "ordinary", 6), ("ordinary", "ordinary", 30), ("seed", "core", 2)]
    before, after, i = [], [], 0
    for a, b, n in moves:
        for _ in range(n):
            before.append((f"C{i}", a))
            after.append((f"C{i}", b))
            i += 1
    before += [(f"L{j}", "value") for j in range(3)]
    after += [(f"E{j}", "new") for j in range(7)]
    rng = np.random.default_rng(0)
    prev = pd.DataFrame(before, columns=["customer_id", "tier"]).sample(frac=1, random_state=1)
    curr = pd.DataFrame(after, columns=["customer_id", "tier"]).assign(clv=rng.random(len(after)))
    return prev, curr


def test_migration_matrix_counts_and_shares():
    prev, curr = _pairs()
    counts = migration_matrix(prev, curr)
    assert list(counts.index) == TIERS and list(counts.columns) == TIERS
    assert counts.index.name == "tier_before" and counts.columns.name == "tier_after"
    assert counts.loc["core", "core"] == 10 and counts.loc["core", "value"] == 5
    assert counts.loc["new", "value"] == 4 and counts.loc["new", "ordinary"] == 6 and counts.loc["seed", "core"] == 2
    assert counts.to_numpy().sum() == 77 and counts.loc["new", "new"] == 0
    shares = migration_matrix(prev, curr, shares=True)
    assert shares.loc["core", "value"] == pytest.approx(5 / 15) and shares.loc["new", "ordinary"] == pytest.approx(0.6)
    assert shares.loc[["core", "value", "seed", "new", "ordinary"]].sum(axis=1).tolist() == pytest.approx([1, 1, 1, 1, 1])
    # ids as numbers in one frame and strings in the other still match
    assert migration_matrix(prev.assign(customer_id=range(len(prev))),
                            prev.assign(customer_id=[str(i) for i in range(len(prev))])).to_numpy().trace() == len(prev)


def test_migration_record_stability_and_moves():
    """The record every reader shares (CLI, API, page, report): counts, row shares, staying, up, down, entered, left."""
    prev, curr = _pairs()
    m = migration_between(prev, curr, from_as_of="2025-01-31", to_as_of=pd.Timestamp("2025-04-30"))
    assert m["from_as_of"] == "2025-01-31" and m["to_as_of"] == "2025-04-30" and m["tiers"] == TIERS
    assert m["counts"] == migration_matrix(prev, curr).to_numpy().tolist()
    assert m["customers_in_both"] == 77 and m["entered"] == 7 and m["left"] == 3
    assert m["share_staying"] == pytest.approx(60 / 77)
    assert m["moved_up"] == 4 + 2 and m["share_moved_up"] == pytest.approx(6 / 77)  # new -> value, seed -> core
    assert m["moved_down"] == 5 + 6 and m["share_moved_down"] == pytest.approx(11 / 77)  # core -> value, new -> ordinary
    assert m["row_share"][0][:2] == pytest.approx([10 / 15, 5 / 15]) and m["row_share"][3] == pytest.approx([0, 0.4, 0, 0, 0.6])
    assert m["row_share"][2] == pytest.approx([1, 0, 0, 0, 0])  # seed: 2 customers, both now core
    assert migration_between(prev, curr)["from_as_of"] is None  # frames without an as_of column
    dated = migration_between(prev.assign(as_of=pd.Timestamp("2025-01-31")), curr.assign(as_of=dt.date(2025, 4, 30)))
    assert (dated["from_as_of"], dated["to_as_of"]) == ("2025-01-31", "2025-04-30")
    none = migration_between(prev, prev.iloc[:0])
    assert none["customers_in_both"] == 0 and none["share_staying"] is None and none["row_share"][0] == [None] * 5
    # the record is a function of the count matrix alone: the SQL path (tiering.ops.migration) feeds it too
    assert summarize_counts(migration_matrix(prev, curr), entered=7, left=3) == m | {"from_as_of": None, "to_as_of": None}
    json.dumps(m, allow_nan=False)  # plain JSON values


def test_migration_refuses_frames_that_are_not_one_batch():
    prev, curr = _pairs()
    with pytest.raises(ValueError, match="more than once"):
        migration_matrix(pd.concat([prev, prev]), curr)
    with pytest.raises(ValueError, match="the current scores frame holds a customer more than once"):
        migration_between(prev, pd.concat([curr, curr]))
    with pytest.raises(ValueError, match=r"lacks columns \['tier'\]"):
        migration_matrix(prev.drop(columns="tier"), curr)


def test_ladder_outcomes_and_check():
    scores = pd.DataFrame({
        "customer_id": [f"C{i}" for i in range(10)],
        "tier": ["ordinary"] * 4 + ["new", "seed", "value", "value", "core", "core"],
        "clv": np.arange(10.0),
    })
    outcomes = pd.DataFrame({"customer_id": ["C3", "C4", "C5", "C6", "C8", "C9"],
                             "holdout_spend": [10.0, 20.0, 30.0, 80.0, 100.0, 300.0],
                             "purchased_in_horizon": [1, 1, 1, 1, 1, 1]})
    t = ladder_outcomes(scores, outcomes)
    assert list(t.index) == list(LADDER_LOW_TO_HIGH)
    assert t.loc["ordinary", "customers"] == 4 and t.loc["ordinary", "mean_holdout_spend"] == pytest.approx(2.5)
    assert t.loc["ordinary", "repurchase_rate"] == pytest.approx(0.25) and t.loc["value", "repurchase_rate"] == 0.5
    assert t.loc["core", "mean_holdout_spend"] == 200 and t.loc["core", "mean_clv"] == pytest.approx(8.5)
    check = ladder_check(t)
    # core above value above each lower tier: every new and seed member bought, half of value did
    assert check["monotonic_spend"] and check["violations"] == ["seed >= value on repurchase_rate", "new >= value on repurchase_rate"]
    assert not check["monotonic_repurchase"]
    # the lower tiers are not ordered among themselves: a new member may outspend a seed (not yet paying)
    assert t.loc["seed", "mean_holdout_spend"] > t.loc["new", "mean_holdout_spend"]
    swapped = t.assign(mean_holdout_spend=t["mean_holdout_spend"].replace({20.0: 35.0}))
    assert swapped.loc["new", "mean_holdout_spend"] == 35 and ladder_check(swapped)["monotonic_spend"]
    assert ladder_check(t.assign(mean_holdout_spend=t["mean_holdout_spend"].replace({30.0: 45.0})))["violations"][0] == (
        "seed >= value on mean_holdout_spend"
    )
    # nothing to judge without value members: not monotonic, and no step named
    no_value = ladder_check(ladder_outcomes(scores[scores["tier"] != "value"], outcomes))
    assert not no_value["monotonic_spend"] and no_value["violations"] == []
    # an empty tier is skipped, not counted as a step down
    no_seed = ladder_outcomes(scores[scores["tier"] != "seed"], outcomes)
    assert no_seed.loc["seed", "customers"] == 0 and "seed" not in ladder_check(no_seed)["tiers_compared"]


def test_truth_agreement_on_simulated_customers():
    import datetime as dt

    from tiering.datasets import simulate

    truth = simulate(3000, dt.date(2024, 1, 1), dt.date(2024, 12, 31), seed=7).truth
    perfect = truth[["customer_id"]].assign(tier=truth["true_tier_active"].astype(str))
    a = truth_agreement(perfect, truth)
    assert a["accuracy"] == 1 and a["cohen_kappa"] == pytest.approx(1) and a["customers"] == 3000
    # a known corruption: every true core customer labelled value
    degraded = perfect.assign(tier=perfect["tier"].replace({"core": "value"}))
    b = truth_agreement(degraded, truth)
    n_core = int((truth["true_tier_active"] == "core").sum())
    assert n_core > 0 and b["accuracy"] == pytest.approx(1 - n_core / 3000)
    assert b["recall"]["core"] == 0 and b["confusion"].loc["core", "value"] == n_core
    assert b["precision"]["value"] == pytest.approx(1 - n_core / (truth["true_tier_active"].isin(["core", "value"]).sum()))
