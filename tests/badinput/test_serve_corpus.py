"""The bad-input corpus of the ops read side: `tiering tiers get/list/summary` and the REST API.

Every case states the status (exit code, HTTP status) and the words of the message that name the
problem. The store holds ids as real bases have them (Unicode, leading zeros, spaces, '/', quotes,
spreadsheet formulas), so lookups are checked against ids that are not `[A-Za-z0-9]`.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from tiering.exceptions import EXIT_BAD_INPUT, EXIT_OK, EXIT_UNAVAILABLE
from tiering.serve import create_app
from tiering.store import ScoresStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_serve import AS_OF_1, AS_OF_2, make_scores  # noqa: E402

TOKEN = "corpus-token-0123456789abcdef"
IDS = ["Müller-7", "客户007", "007", "7", "a b", "a/b", "1' OR '1'='1", '=HYPERLINK("http://evil.example","x")', "+1", "-2", "@x"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A store of two scoring dates; the later one adds customers with the ids above (tier value)."""
    work = tmp_path_factory.mktemp("serve-corpus")
    first = make_scores(300, AS_OF_1, seed=5)
    second = make_scores(300, AS_OF_2, seed=6, start=20, previous=first)
    odd = make_scores(len(IDS), AS_OF_2, seed=7).assign(customer_id=IDS, tier="value", tier_reason="=1+1")
    odd["clv"] = np.arange(len(IDS), dtype=float) - 9.5  # '-2' gets a negative CLV: it must stay a number in CSV
    store = ScoresStore(f"sqlite:///{work}/scores.db")
    store.write_batch(first)
    store.write_batch(pd.concat([second, odd], ignore_index=True))
    store.engine.dispose()
    cfg = work / "config.yaml"
    cfg.write_text(f"store:\n  url: sqlite:///{work}/scores.db\n")
    return work, cfg, dict(zip(odd["customer_id"], odd["clv"]))


@pytest.fixture(scope="module")
def api(base):
    with TestClient(create_app(f"sqlite:///{base[0]}/scores.db", token=TOKEN)) as c:
        c.headers["Authorization"] = f"Bearer {TOKEN}"
        yield c


def _config(tmp_path: Path, url: str) -> Path:
    cfg = tmp_path / "store.yaml"
    cfg.write_text(f"store:\n  url: {url}\n  lock_timeout_s: 1\n")
    return cfg


def _corrupt_copy(base, tmp_path: Path) -> Path:
    """The store, copied and cut off mid-file (a disk that filled up, a copy that stopped half way)."""
    data = (base[0] / "scores.db").read_bytes()
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "scores.db"
    path.write_bytes(data[: len(data) // 2])
    return path


# ---- the command line: (args, exit status, message on stderr) ----------------------------------------
CLI_CASES = [
    ("get-unknown-leading-zeros", ("tiers", "get", "0007"), EXIT_BAD_INPUT, "Customer '0007' is not in the scoring batch as of 2025-12-31"),
    ("get-injection-text-absent", ("tiers", "get", "x' OR '1'='1"), EXIT_BAD_INPUT, "Customer \"x' OR '1'='1\" is not in the scoring batch"),
    ("get-empty-id", ("tiers", "get", ""), EXIT_BAD_INPUT, "Customer id '' is not valid: it is empty"),
    ("get-blank-id", ("tiers", "get", "   "), EXIT_BAD_INPUT, "Customer id '   ' is not valid: it is empty"),
    ("get-control-character", ("tiers", "get", "a\tb"), EXIT_BAD_INPUT, "contains the control or undecodable character U+0009"),
    ("get-too-long", ("tiers", "get", "x" * 201), EXIT_BAD_INPUT, "it has 201 characters, more than the 200 an id can have"),
    ("get-as-of-not-a-date", ("tiers", "get", "007", "--as-of", "2025-02-30"), EXIT_BAD_INPUT, "--as-of must be a date as YYYY-MM-DD; got '2025-02-30'"),
    ("get-as-of-no-batch", ("tiers", "get", "007", "--as-of", "2024-01-01"), EXIT_BAD_INPUT, "holds no batch as of 2024-01-01; scoring dates are ['2025-06-30', '2025-12-31']"),
    ("list-offset-beyond-64-bits", ("tiers", "list", "--offset", "99999999999999999999"), EXIT_BAD_INPUT, "--offset"),
    ("list-limit-beyond-64-bits", ("tiers", "list", "--format", "csv", "--limit", "9223372036854775808"), EXIT_BAD_INPUT, "--limit"),
    ("list-negative-limit", ("tiers", "list", "--limit", "-1"), EXIT_BAD_INPUT, "--limit"),
    ("list-unknown-tier", ("tiers", "list", "--tier", "gold"), EXIT_BAD_INPUT, "Unknown tier 'gold'; tiers are ['core', 'value', 'seed', 'new', 'ordinary']"),
    ("list-unknown-format", ("tiers", "list", "--format", "xlsx"), EXIT_BAD_INPUT, "--format must be table, csv or json; got 'xlsx'"),
    ("summary-as-of-timestamp", ("tiers", "summary", "--as-of", "2025-12-31T00:00"), EXIT_BAD_INPUT, "--as-of must be a date as YYYY-MM-DD"),
]


@pytest.mark.parametrize("args, status, message", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_refuses_with_a_message(cli, base, args, status, message):
    r = cli(*args, "--config", base[1])
    assert r.returncode == status, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr and r.stdout == ""


@pytest.mark.parametrize("cid", IDS)
def test_cli_finds_every_stored_id(cli, base, cid):
    r = cli("tiers", "get", "--config", base[1], "--json", "--", cid)  # `--`: an id such as '-2' is not an option
    assert r.returncode == EXIT_OK, r.stderr
    card = json.loads(r.stdout)
    assert card["customer_id"] == cid and card["clv"] == base[2][cid]  # '007' and '7' are two customers


def test_cli_csv_export_has_no_formulas(cli, base):
    r = cli("tiers", "list", "--tier", "value", "--limit", "0", "--format", "csv", "--config", base[1])
    assert r.returncode == EXIT_OK, r.stderr
    rows = {x["customer_id"]: x for x in csv.DictReader(io.StringIO(r.stdout))}
    assert {"'=HYPERLINK(\"http://evil.example\",\"x\")", "'+1", "'-2", "'@x", "007", "7", "Müller-7", "a/b"} <= set(rows)
    assert rows["'-2"]["clv"] == "-0.5" and rows["7"]["tier_reason"] == "'=1+1"
    cells = [v for x in rows.values() for k, v in x.items() if k not in ("clv",)]
    assert not [v for v in cells if v[:1] in ("=", "+", "-", "@", "\t", "\r")]


def test_cli_corrupt_store_says_so(cli, base, tmp_path):
    path = _corrupt_copy(base, tmp_path)
    cfg = _config(tmp_path, f"sqlite:///{path}")
    for args in (("tiers", "list", "--tier", "ordinary", "--limit", "0", "--format", "csv"), ("tiers", "summary")):
        r = cli(*args, "--config", cfg)
        assert r.returncode == EXIT_BAD_INPUT and "Traceback" not in r.stderr, r.stderr
        assert f"The scores store file {path} is not a valid SQLite database or is corrupted" in r.stderr
        assert "Restore it from a backup, or move it aside" in r.stderr and "intact" not in r.stderr


def test_cli_missing_or_empty_store_is_named_and_never_created(cli, tmp_path):
    path = tmp_path / "none" / "scores.db"
    r = cli("tiers", "summary", "--config", _config(tmp_path, f"sqlite:///{path}"))
    assert r.returncode == EXIT_BAD_INPUT and "does not exist yet. Run `tiering predict`" in r.stderr
    assert not path.parent.exists()
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    r = cli("tiers", "get", "007", "--config", _config(tmp_path, f"sqlite:///{empty}"))
    assert r.returncode == EXIT_BAD_INPUT and "It holds no tiering scores tables" in r.stderr


def test_cli_unreachable_store_is_exit_3(cli, tmp_path):
    r = cli("tiers", "get", "007", "--config", _config(tmp_path, "postgresql://tiering:secret@127.0.0.1:9/tiering"))
    assert r.returncode == EXIT_UNAVAILABLE, r.stderr
    assert "Cannot reach the scores store 'postgresql+psycopg://tiering:***@127.0.0.1:9/tiering'" in r.stderr
    assert "secret" not in r.stderr and "Traceback" not in r.stderr


# ---- the REST API: (path, HTTP status, words of the JSON detail) ------------------------------------------
API_CASES = [
    ("nul-in-id", "/api/customers/a%00b", 422, "contains the control or undecodable character U+0000"),
    ("newline-in-id", "/api/customers/a%0Ab", 422, "U+000A"),
    ("undecodable-bytes", "/api/customers/%FF%FE", 422, "control or undecodable character U+DCFF"),
    ("blank-id", "/api/customers/%20", 422, "it is empty"),
    ("id-too-long", "/api/customers/" + "x" * 201, 422, "it has 201 characters"),
    ("absent-leading-zeros", "/api/customers/0007", 404, "Customer '0007' is not in the scoring batch"),
    ("absent-injection", "/api/customers/x'%20OR%20'1'='1", 404, "is not in the scoring batch"),
    ("as-of-not-iso", "/api/customers/007?as_of=0", 422, "The query parameter 'as_of' is not valid: as_of must be a date as YYYY-MM-DD; got '0'"),
    ("as-of-no-batch", "/api/summary?as_of=2024-01-01", 404, "holds no batch as of 2024-01-01"),
    ("offset-beyond-64-bits", "/api/tiers/core?offset=99999999999999999999", 422,
     "The query parameter 'offset' is not valid: Input should be less than or equal to 9223372036854775807"),
    ("offset-beyond-64-bits-csv", "/api/tiers/core?format=csv&offset=99999999999999999999", 422, "query parameter 'offset'"),
    ("limit-not-a-number", "/api/tiers/core?limit=ten", 422, "The query parameter 'limit' is not valid: Input should be a valid integer"),
    ("limit-above-page-size", "/api/tiers/core?limit=1001", 422, "less than or equal to 1000"),
    ("negative-offset", "/api/tiers/core?offset=-5", 422, "greater than or equal to 0"),
    ("unknown-tier", "/api/tiers/gold", 422, "The path parameter 'tier' is not valid: Input should be 'core', 'value', 'seed', 'new' or 'ordinary'"),
    ("unknown-format", "/api/tiers/core?format=xlsx", 422, "Input should be 'json' or 'csv'; got 'xlsx'"),
    ("at-risk-not-boolean", "/api/tiers/core?at_risk=perhaps", 422, "query parameter 'at_risk' is not valid"),
    ("page-beyond-64-bits", "/tiers/core?page=184467440737095517", 422, "query parameter 'page' is not valid"),
]


@pytest.mark.parametrize("path, status, message", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_api_refuses_with_a_message(api, path, status, message):
    r = api.get(path)
    assert r.status_code == status and r.headers["content-type"] == "application/json", r.text
    assert message in r.json()["detail"], r.json()


@pytest.mark.parametrize("cid, path", [("Müller-7", "M%C3%BCller-7"), ("客户007", "%E5%AE%A2%E6%88%B7007"), ("007", "007"),
                                       ("7", "7"), ("a b", "a%20b"), ("a/b", "a%2Fb"), ("1' OR '1'='1", "1'%20OR%20'1'%3D'1"),
                                       ("+1", "%2B1"), ("@x", "@x")])
def test_api_finds_every_stored_id(api, base, cid, path):
    r = api.get(f"/api/customers/{path}")
    assert r.status_code == 200 and r.json()["customer_id"] == cid and r.json()["clv"] == base[2][cid]


def test_api_csv_export_has_no_formulas(api):
    text = api.get("/api/tiers/value", params={"format": "csv", "limit": 1000}).text
    rows = list(csv.DictReader(io.StringIO(text)))
    ids = {x["customer_id"] for x in rows}
    assert {"'=HYPERLINK(\"http://evil.example\",\"x\")", "'+1", "'-2", "'@x"} <= ids and "-2" not in ids
    text_cells = [v for x in rows for k, v in x.items() if k in ("customer_id", "tier", "next_tier", "rfm_segment", "tier_reason")]
    assert len(text_cells) == 5 * len(rows) and not [v for v in text_cells if v[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert {x["clv"] for x in rows if x["customer_id"] == "'-2"} == {"-0.5"}  # a negative number stays a number


def test_api_corrupt_store_is_a_json_error_not_a_cut_csv(base, tmp_path):
    from tiering.exceptions import StoreError

    with pytest.raises(StoreError, match="is not a valid SQLite database or is corrupted"):  # `tiering serve` does not start
        create_app(f"sqlite:///{_corrupt_copy(base, tmp_path / 'a')}")
    path = tmp_path / "scores.db"
    path.write_bytes((base[0] / "scores.db").read_bytes())
    c = TestClient(create_app(f"sqlite:///{path}"))
    c.app.state.store.engine.dispose()
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # damaged while the server runs
    for url in ("/api/tiers/ordinary?format=csv", "/api/tiers/ordinary?limit=1000", "/api/summary"):
        r = c.get(url)
        assert r.status_code == 503 and r.headers["content-type"] == "application/json", (url, r.text[:200])
        assert "is not a valid SQLite database or is corrupted" in r.json()["detail"] and "intact" not in r.json()["detail"]


def test_login_post_without_csrf_token_is_403(api, base):
    c = TestClient(create_app(f"sqlite:///{base[0]}/scores.db", token=TOKEN))
    r = c.post("/login", data={"token": TOKEN, "next": "/"}, follow_redirects=False)
    assert r.status_code == 403 and "without a valid CSRF token" in r.text
    assert "tiering_session" not in r.headers.get("set-cookie", "")
