"""`tiering tiers get/list/summary`: the ops lookups from the command line, against a store of two scoring dates."""

import csv
import io
import json
import subprocess
import sys

import pandas as pd
import pytest

from test_serve import AS_OF_1, AS_OF_2, make_scores
from tiering import cli
from tiering.schemas import TIERS
from tiering.store import ScoresStore


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    work = tmp_path_factory.mktemp("tiers-cli")
    first = make_scores(2_000, AS_OF_1, seed=3)
    second = make_scores(2_000, AS_OF_2, seed=4, start=100, previous=first)
    store = ScoresStore(f"sqlite:///{work}/scores.db")
    store.write_batch(first)
    store.write_batch(second)
    cfg = work / "config.yaml"
    cfg.write_text(f"store:\n  url: sqlite:///{work}/scores.db\ntiers:\n  - tier: value\n    action: Send the repurchase coupon.\n")
    return cfg, first, second


def run(monkeypatch, capsys, *args):
    """cli.main in this process: (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["tiering", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    out = capsys.readouterr()
    return exc.value.code or 0, out.out, out.err


def flat(text: str) -> str:
    """Human output with rich's line wrapping undone (it wraps at the terminal width)."""
    return " ".join(text.split())


def test_get_shows_tier_reason_action_and_history(setup, monkeypatch, capsys):
    cfg, first, second = setup
    value_id = second.loc[second["tier"] == "value", "customer_id"].iloc[0]
    code, out, _ = run(monkeypatch, capsys, "tiers", "get", value_id, "--config", cfg, "--json")
    card = json.loads(out)
    row = second.set_index("customer_id").loc[value_id]
    assert code == 0 and card["tier"] == "value" and card["tier_reason"] == row["tier_reason"]
    assert card["action"] == "Send the repurchase coupon."  # the config's tiers section applies
    assert card["churn_risk"] == pytest.approx(row["churn_risk"]) and card["clv"] == pytest.approx(row["clv"])
    assert card["next_tier"] == row["next_tier"] and card["rfm_segment"] == "Champions"
    assert [h["as_of"] for h in card["history"]] == ["2025-06-30", "2025-12-31"]
    assert card["history"][0]["tier"] == first.set_index("customer_id").loc[value_id, "tier"]
    code, out, _ = run(monkeypatch, capsys, "tiers", "get", value_id, "--config", cfg)
    assert code == 0 and f"Customer {value_id}: Value (value)" in flat(out) and "Send the repurchase coupon." in flat(out)
    assert "Tier history" in out and "2025-06-30" in out
    code, out, _ = run(monkeypatch, capsys, "tiers", "get", value_id, "--as-of", "2025-06-30", "--config", cfg, "--json")
    assert json.loads(out)["as_of"] == "2025-06-30"


def test_list_formats_filters_and_paging(setup, monkeypatch, capsys):
    cfg, _, second = setup
    core = second[second["tier"] == "core"].sort_values(["clv", "customer_id"], ascending=[False, True])
    code, out, _ = run(monkeypatch, capsys, "tiers", "list", "--tier", "core", "--limit", "0", "--format", "csv", "--config", cfg)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [r["customer_id"] for r in rows] == core["customer_id"].tolist()
    assert {r["tier"] for r in rows} == {"core"} and "tier_reason" in rows[0]
    code, out, _ = run(monkeypatch, capsys, "tiers", "list", "--tier", "core", "--limit", "5", "--offset", "5", "--json", "--config", cfg)
    page = json.loads(out)
    assert page["total"] == len(core) and [m["customer_id"] for m in page["items"]] == core["customer_id"].tolist()[5:10]
    code, out, _ = run(monkeypatch, capsys, "tiers", "list", "--tier", "value", "--at-risk", "--limit", "0", "--format", "json", "--config", cfg)
    risky = json.loads(out)
    assert risky["total"] == int((second["tier"].eq("value") & second["at_risk"]).sum()) and all(m["at_risk"] for m in risky["items"])
    code, out, _ = run(monkeypatch, capsys, "tiers", "list", "--tier", "core", "--limit", "3", "--config", cfg)
    assert code == 0 and f"rows 1-3 of {len(core):,}" in flat(out) and core["customer_id"].iloc[0] in out


def test_list_lapsed_buyers(setup, monkeypatch, capsys):
    cfg, _, second = setup
    lapsed = second[second["tier"].eq("ordinary") & second["lapsed_buyer"]].sort_values(["clv", "customer_id"],
                                                                                        ascending=[False, True])
    code, out, _ = run(monkeypatch, capsys, "tiers", "list", "--tier", "ordinary", "--lapsed", "--limit", "0", "--json",
                       "--config", cfg)
    page = json.loads(out)
    assert code == 0 and page["lapsed"] is True and [m["customer_id"] for m in page["items"]] == lapsed["customer_id"].tolist()
    code, out, _ = run(monkeypatch, capsys, "tiers", "list", "--tier", "ordinary", "--lapsed", "--limit", "3", "--config", cfg)
    assert code == 0 and "(lapsed buyers)" in flat(out) and f"of {len(lapsed):,}" in flat(out)


def test_list_walks_a_tier_by_cursor(setup, monkeypatch, capsys):
    """--cursor continues where a --json page's next_cursor points: every member once, in the listing order,
    as pages (JSON) and as the rest of the tier (CSV); a bad cursor is one clear message naming --cursor."""
    cfg, _, second = setup
    value = second[second["tier"] == "value"].sort_values(["clv", "customer_id"], ascending=[False, True])
    seen, cursor, cursors = [], None, []
    while True:
        args = ["tiers", "list", "--tier", "value", "--limit", "97", "--json", "--config", cfg]
        code, out, _ = run(monkeypatch, capsys, *args, *(["--cursor", cursor] if cursor else []))
        page = json.loads(out)
        assert code == 0 and page["total"] == len(value)
        seen += [m["customer_id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        cursors.append(cursor)
    first_cursor = cursors[0]
    assert seen == value["customer_id"].tolist()
    code, out, _ = run(monkeypatch, capsys, "tiers", "list", "--tier", "value", "--limit", "0", "--format", "csv",
                       "--cursor", first_cursor, "--config", cfg)
    assert code == 0 and [r["customer_id"] for r in csv.DictReader(io.StringIO(out))] == seen[97:]
    code, out, _ = run(monkeypatch, capsys, "tiers", "list", "--tier", "value", "--limit", "3", "--cursor", first_cursor,
                       "--config", cfg)
    assert code == 0 and f"3 rows after the cursor of {len(value):,}" in flat(out)
    code, _, err = run(monkeypatch, capsys, "tiers", "list", "--tier", "core", "--cursor", first_cursor, "--config", cfg)
    assert code == 2 and "cursor was given out for the listing of tier 'value', not of tier 'core'" in err
    assert "Traceback" not in err


def test_summary_counts_shares_and_migration(setup, monkeypatch, capsys):
    cfg, first, second = setup
    code, out, _ = run(monkeypatch, capsys, "tiers", "summary", "--config", cfg, "--json")
    s = json.loads(out)
    counts = second["tier"].value_counts()
    assert code == 0 and s["as_of"] == "2025-12-31" and s["previous_as_of"] == "2025-06-30"
    assert [(t["tier"], t["customers"]) for t in s["tiers"]] == [(t, int(counts.get(t, 0))) for t in TIERS]
    assert sum(t["share"] for t in s["previous"]) == pytest.approx(1)
    both = first.merge(second, on="customer_id")
    want = pd.crosstab(both["tier_x"], both["tier_y"]).reindex(index=list(TIERS), columns=list(TIERS), fill_value=0)
    assert s["migration"]["counts"] == want.to_numpy().tolist()
    code, out, _ = run(monkeypatch, capsys, "tiers", "summary", "--config", cfg)
    assert code == 0 and "Migration 2025-06-30 (rows) -> 2025-12-31 (columns)" in flat(out)
    assert f"{len(both):,} customers scored on both dates" in flat(out) and "share before: as of 2025-06-30" in flat(out)


@pytest.mark.parametrize("args, message", [
    (("tiers", "get", "C7777777"), "error: Customer 'C7777777' is not in the scoring batch as of 2025-12-31 (2,000 customers"),
    (("tiers", "get", "bad\tid"), "error: Customer id 'bad\\tid' is not valid: it contains the control or undecodable "
                                  "character U+0009. An id is 1 to 200 characters"),
    (("tiers", "get", "x" * 201), "error: Customer id '" + "x" * 80 + "...' is not valid: it has 201 characters"),
    (("tiers", "get", "C0000500", "--as-of", "2024-01-01"), "error: The scores store holds no batch as of 2024-01-01; scoring dates are ['2025-06-30', '2025-12-31']."),
    (("tiers", "list", "--tier", "gold"), "error: Unknown tier 'gold'; tiers are ['core', 'value', 'seed', 'new', 'ordinary']."),
    (("tiers", "list", "--format", "xlsx"), "error: --format must be table, csv or json; got 'xlsx'."),
    (("tiers", "list", "--limit", "-1"), "error: Invalid value for '--limit'"),
    (("tiers", "list", "--offset", "99999999999999999999"), "error: Invalid value for '--offset'"),
    (("tiers", "summary", "--as-of", "2025-02-30"), "error: --as-of must be a date as YYYY-MM-DD; got '2025-02-30'."),
])
def test_bad_input_is_one_clear_message(setup, monkeypatch, capsys, args, message):
    code, out, err = run(monkeypatch, capsys, *args, "--config", setup[0])
    assert code == 2 and err.startswith(message) and "Traceback" not in err and out == ""


def test_empty_and_missing_store(tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"store:\n  url: sqlite:///{tmp_path}/scores.db\n")
    code, _, err = run(monkeypatch, capsys, "tiers", "summary", "--config", cfg)
    assert code == 2 and "does not exist yet. Run `tiering predict` (or `tiering demo`) first." in err
    ScoresStore(f"sqlite:///{tmp_path}/scores.db")
    for args in (("tiers", "summary"), ("tiers", "get", "C1"), ("tiers", "list", "--tier", "core", "--format", "csv")):
        code, out, err = run(monkeypatch, capsys, *args, "--config", cfg)
        assert code == 2 and "holds no batch yet. Run `tiering predict --as-of DATE` (or `tiering demo`) first." in err and out == ""


def test_entry_point_exit_status(setup):
    r = subprocess.run([sys.executable, "-m", "tiering", "tiers", "list", "--tier", "gold", "--config", str(setup[0])],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: Unknown tier 'gold'") and "Traceback" not in r.stderr
