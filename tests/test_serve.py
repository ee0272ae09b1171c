"""The ops REST API and page (tiering.serve) with the real FastAPI app over a scores store of many customers.

The store holds two scoring dates (some customers only in one), written with ScoresStore.write_batch,
so paging, CSV export, history and the migration are checked against the frames that went in.
"""

import csv
import datetime as dt
import io
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tiering.ladder import WIN_BACK_ACTION

from tiering.exceptions import ConfigError
from tiering.schemas import SCORES_COLUMNS, TIERS
from tiering.store import ScoresStore

from fastapi.testclient import TestClient

from tiering.serve import check_bind, create_app, resolve_token

TOKEN = "test-token-0123456789abcdef"
AS_OF_1, AS_OF_2 = dt.date(2025, 6, 30), dt.date(2025, 12, 31)
N = 3_000


def make_scores(n: int = N, as_of: dt.date = AS_OF_2, *, seed: int = 0, start: int = 0, previous: pd.DataFrame | None = None,
                version: str = "1") -> pd.DataFrame:
    """A scores frame with the columns of SCORES_COLUMNS; with ``previous``, 80% of shared customers keep their tier."""
    rng = np.random.default_rng(seed)
    ids = [f"C{i:07d}" for i in range(start, start + n)]
    tier = rng.choice(list(TIERS), n, p=[0.05, 0.2, 0.15, 0.05, 0.55])
    if previous is not None:
        before = previous.set_index("customer_id")["tier"].reindex(ids).to_numpy()
        keep = pd.notna(before) & (rng.random(n) < 0.8)
        tier = np.where(keep, before, tier)
    buyer = np.isin(tier, ["core", "value"])
    p = np.where(buyer, rng.uniform(0.2, 0.95, n), rng.uniform(0, 0.1, n))
    churn = np.where(buyer, 1 - p, np.nan)
    clv = np.round(rng.lognormal(5, 1.2, n) * np.where(buyer, 3, 0.05), 4)
    df = pd.DataFrame({
        "customer_id": ids, "as_of": as_of, "horizon_days": 180, "p_purchase": p, "churn_risk": churn,
        "p_alive": np.where(buyer, rng.uniform(0.3, 1, n), np.nan), "expected_purchases": p * 2, "expected_spend": rng.uniform(10, 90, n),
        "clv": clv, "clv_p10": clv * 0.25, "clv_p90": clv * 2.2, "engagement_score": rng.random(n), "tier": tier, "tier_reason": [f"rule fired for {t}" for t in tier],
        "next_tier": rng.choice(list(TIERS), n), "next_tier_proba": rng.uniform(0.3, 1, n),
        "rfm_segment": np.where(buyer, "Champions", "No Purchase"), "r_score": np.where(buyer, 5, 0), "f_score": np.where(buyer, 4, 0),
        "m_score": np.where(buyer, 3, 0), "koc_candidate": rng.random(n) < 0.05, "at_risk": buyer & (churn > 0.5),
        "model_name": "customer-tiering", "model_version": version, "scored_at": pd.Timestamp(as_of) + pd.Timedelta(hours=26),
        "lapsed_buyer": ~buyer & (rng.random(n) < 0.3), "koc_score": rng.random(n),
    })
    proba = rng.dirichlet(np.ones(len(TIERS)), n)
    for j, t in enumerate(TIERS):
        df[f"p_{t}"] = proba[:, j]
    return df[list(SCORES_COLUMNS)]


@pytest.fixture(scope="module")
def frames():
    first = make_scores(N, AS_OF_1, seed=1)
    second = make_scores(N, AS_OF_2, seed=2, start=200, previous=first)  # C0000000..199 left, 200 new ones joined
    return first, second


@pytest.fixture(scope="module")
def store_url(tmp_path_factory, frames):
    url = f"sqlite:///{tmp_path_factory.mktemp('serve')}/scores.db"
    store = ScoresStore(url)
    for f in frames:
        store.write_batch(f)
    return url


@pytest.fixture(scope="module")
def client(store_url):
    with TestClient(create_app(store_url, token=TOKEN)) as c:
        c.headers["Authorization"] = f"Bearer {TOKEN}"
        yield c


@pytest.fixture(scope="module")
def open_client(store_url):
    with TestClient(create_app(store_url)) as c:
        yield c


def ranked(df: pd.DataFrame) -> list[str]:
    return df.sort_values(["clv", "customer_id"], ascending=[False, True])["customer_id"].tolist()


# ---- access control ------------------------------------------------------------------------------
def test_token_required_and_constant_answers(store_url):
    c = TestClient(create_app(store_url, token=TOKEN))
    for path in ("/api/customers/C0000300", "/api/tiers/core", "/api/summary", "/api/tiers/core?format=csv"):
        r = c.get(path)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert "Missing or wrong API token" in r.json()["detail"]
        assert c.get(path, headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401
        assert c.get(path, headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
        assert c.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    health = c.get("/api/health")
    assert health.status_code == 200 and health.json() == {"status": "ok", "latest_as_of": "2025-12-31", "auth": True}


def test_token_source_and_bind_rules(monkeypatch):
    assert resolve_token("config-token-0123456789", environ={}) == "config-token-0123456789"
    assert resolve_token("config-token-0123456789", environ={"TIERING_API_TOKEN": "env-token-0123456789ab"}) == "env-token-0123456789ab"
    assert resolve_token(None, environ={"TIERING_API_TOKEN": "  "}) is None
    with pytest.raises(ConfigError, match=r"The API token is 5 characters long; use at least 16"):
        resolve_token("short", environ={})
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    check_bind("localhost", None)
    check_bind("0.0.0.0", TOKEN)
    for host in ("0.0.0.0", "192.168.1.10", "::", "example.com"):
        with pytest.raises(ConfigError, match=r"Refusing to serve on .* without an API token"):
            check_bind(host, None)


def test_serve_refuses_public_address_without_token(tmp_path, store_url):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"store:\n  url: {store_url}\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "TIERING_API_TOKEN"}
    r = subprocess.run([sys.executable, "-m", "tiering", "serve", "--host", "0.0.0.0", "--config", str(cfg)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "error: Refusing to serve on '0.0.0.0' without an API token" in r.stderr


def test_loopback_server_without_token_is_open(open_client):
    assert open_client.get("/api/customers/C0000300").status_code == 200
    assert open_client.get("/api/health").json()["auth"] is False
    assert open_client.get("/", follow_redirects=False).status_code == 200


# ---- customers ---------------------------------------------------------------------------------------
def test_customer_card_matches_the_store(client, frames):
    first, second = frames
    row = second.set_index("customer_id").loc["C0000777"]
    r = client.get("/api/customers/C0000777")
    assert r.status_code == 200
    card = r.json()
    assert card["as_of"] == "2025-12-31" and card["model_version"] == "1"
    assert card["tier"] == row["tier"] and card["tier_reason"] == row["tier_reason"]
    assert card["clv"] == pytest.approx(row["clv"]) and card["rfm_segment"] == row["rfm_segment"]
    assert (card["churn_risk"] is None) == pd.isna(row["churn_risk"])
    from tiering.models.tiers import TIER_BY_NAME

    assert card["tier_action"] == TIER_BY_NAME[row["tier"]].action and card["tier_label"] == TIER_BY_NAME[row["tier"]].label
    assert card["action"] == (WIN_BACK_ACTION if row["lapsed_buyer"] else TIER_BY_NAME[row["tier"]].action)
    before = first.set_index("customer_id").loc["C0000777", "tier"]
    assert [(h["as_of"], h["tier"]) for h in card["history"]] == [("2025-06-30", before), ("2025-12-31", row["tier"])]
    # an earlier batch on request; a customer who left is only there
    assert client.get("/api/customers/C0000777", params={"as_of": "2025-06-30"}).json()["tier"] == before
    gone = client.get("/api/customers/C0000005")
    assert gone.status_code == 404
    assert gone.json()["detail"].startswith("Customer 'C0000005' is not in the scoring batch as of 2025-12-31 (3,000 customers")
    old = client.get("/api/customers/C0000005", params={"as_of": "2025-06-30"}).json()
    assert old["as_of"] == "2025-06-30" and len(old["history"]) == 1


# ids as real bases hold them: Unicode, leading zeros ('007' and '7' are two customers), spaces, '/', quotes,
# percent signs, URL syntax and spreadsheet formulas; every one is a different customer found by its exact id
ODD_IDS = ["Müller-7", "客户007", "007", "7", "a b", "a/b", "1' OR '1'='1", "%41", "x?y#z", "..", "A" * 200,
           '=HYPERLINK("http://evil.example","click")', "+1", "-2", "@x", "' quoted"]


@pytest.fixture(scope="module")
def odd(tmp_path_factory):
    """A store whose customers have the ids above, all in tier value, with formula-like texts and a negative CLV."""
    df = make_scores(len(ODD_IDS), seed=11).assign(customer_id=ODD_IDS, tier="value")
    df["clv"] = np.arange(len(ODD_IDS), 0, -1, dtype=float)  # listing order = ODD_IDS order
    df.loc[df["customer_id"] == "-2", "clv"] = -5.0  # a refund-heavy customer: a negative number stays a number
    df.loc[0, "tier_reason"] = "=1+1"
    df.loc[1, "rfm_segment"] = "@SUM(A1:A9)"
    df.loc[2, "tier_reason"] = "\tindented"
    url = f"sqlite:///{tmp_path_factory.mktemp('odd')}/scores.db"
    ScoresStore(url).write_batch(df)
    with TestClient(create_app(url)) as c:
        yield c, df


def test_every_stored_id_can_be_looked_up(odd):
    from urllib.parse import quote

    from tiering.serve import customer_card

    c, df = odd
    clv = dict(zip(df["customer_id"], df["clv"]))
    for cid in ODD_IDS:
        path = quote(cid, safe="").replace(".", "%2E")  # clients drop a bare '..' segment (RFC 3986), so encode dots
        r = c.get("/api/customers/" + path)
        assert r.status_code == 200, (cid, r.text)
        assert r.json()["customer_id"] == cid and r.json()["clv"] == clv[cid]
        assert customer_card(c.app.state.store, cid)["customer_id"] == cid  # what `tiering tiers get` prints
        page = c.get("/customer", params={"id": cid})
        assert page.status_code == 200 and 'id="tier-badge"' in page.text, cid
    assert c.get("/api/customers/007").json()["clv"] != c.get("/api/customers/7").json()["clv"]
    for absent in ("0007", "07", "x' OR '1'='1", "a%2Fb%2F", "m%C3%BCller-7"):
        r = c.get(f"/api/customers/{absent}")
        assert r.status_code == 404 and "is not in the scoring batch" in r.json()["detail"], absent
    # an id pasted with blanks around it finds the stored id
    assert c.get("/api/customers/%207%20").json()["customer_id"] == "7"


def test_customer_ids_that_cannot_exist_are_refused(client):
    for bad, why in (("%20%20", "it is empty"), ("x" * 201, "it has 201 characters, more than the 200"),
                     ("a%00b", "control or undecodable character U+0000"), ("a%0Ab", "U+000A"), ("%7F", "U+007F")):
        r = client.get(f"/api/customers/{bad}")
        assert r.status_code == 422, bad
        assert r.json()["detail"].startswith("Customer id ") and why in r.json()["detail"], r.json()
    assert client.get("/api/customers/" + "9" * 200).status_code == 404  # well formed, just absent
    r = client.get("/api/customers/C0000300", params={"as_of": "2025-13-01"})
    assert r.status_code == 422 and r.json()["detail"] == ("The query parameter 'as_of' is not valid: as_of must be a date "
                                                           "as YYYY-MM-DD; got '2025-13-01'.")
    for odd_date in ("0", "1700000000", "2025-12-31T00:00"):  # pydantic alone would read these as dates
        assert client.get("/api/customers/C0000300", params={"as_of": odd_date}).status_code == 422, odd_date
    r = client.get("/api/customers/C0000300", params={"as_of": "2024-01-01"})
    assert r.status_code == 404 and r.json()["detail"] == ("The scores store holds no batch as of 2024-01-01; "
                                                            "scoring dates are ['2025-06-30', '2025-12-31'].")


def test_csv_export_neutralises_formulas(odd):
    c, df = odd
    rows = list(csv.DictReader(io.StringIO(c.get("/api/tiers/value", params={"format": "csv"}).text)))
    got = {r["customer_id"]: r for r in rows}
    assert len(rows) == len(ODD_IDS)
    for cid in ODD_IDS:
        want = "'" + cid if cid[0] in "=+-@" else cid  # OWASP: a leading quote; other ids exactly as stored
        assert want in got, cid
    assert got["'-2"]["clv"] == "-5.0"  # numbers are not touched
    assert got["Müller-7"]["tier_reason"] == "'=1+1" and got["客户007"]["rfm_segment"] == "'@SUM(A1:A9)"
    assert got["007"]["tier_reason"] == "'\tindented" and got["' quoted"]["customer_id"] == "' quoted"
    assert all(not v.startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows for k, v in r.items() if k != "clv")
    # the JSON API returns the data as stored: only the spreadsheet format is escaped
    assert c.get("/api/tiers/value", params={"limit": 1000}).json()["items"][11]["customer_id"] == ODD_IDS[11]


# ---- tiers --------------------------------------------------------------------------------------------
def test_tier_pages_cover_the_tier_in_clv_order(client, frames):
    second = frames[1]
    want = ranked(second[second["tier"] == "value"])
    got, offset = [], 0
    while offset is not None:
        page = client.get("/api/tiers/value", params={"limit": 250, "offset": offset}).json()
        assert page["total"] == len(want) and page["batch"]["as_of"] == "2025-12-31"
        got += [m["customer_id"] for m in page["items"]]
        offset = page["next_offset"]
    assert got == want
    default = client.get("/api/tiers/value").json()
    assert default["limit"] == 50 and len(default["items"]) == 50 and default["next_offset"] == 50
    risk = client.get("/api/tiers/value", params={"at_risk": "true", "limit": 1000}).json()
    assert risk["total"] == int((second["tier"].eq("value") & second["at_risk"]).sum())
    assert all(m["at_risk"] for m in risk["items"])
    assert client.get("/api/tiers/value", params={"offset": 10**6}).json()["items"] == []


def test_lapsed_filter_lists_the_win_back_list(client, frames):
    second = frames[1]
    lapsed = second[second["tier"].eq("ordinary") & second["lapsed_buyer"]]
    page = client.get("/api/tiers/ordinary", params={"lapsed": "true", "limit": 1000}).json()
    assert page["lapsed"] is True and page["total"] == len(lapsed) > 0
    assert [m["customer_id"] for m in page["items"]] == ranked(lapsed)
    rest = client.get("/api/tiers/ordinary", params={"lapsed": "false", "limit": 1}).json()
    assert rest["total"] == int(second["tier"].eq("ordinary").sum()) - len(lapsed)
    r = client.get("/api/tiers/ordinary", params={"lapsed": "true", "format": "csv"})
    assert 'lapsed.csv"' in r.headers["content-disposition"]
    assert [row["customer_id"] for row in csv.DictReader(io.StringIO(r.text))] == ranked(lapsed)


def test_tier_parameters_are_validated(client):
    r = client.get("/api/tiers/gold")
    assert r.status_code == 422 and "'core', 'value', 'seed', 'new' or 'ordinary'" in r.text
    for params, message in (
        ({"limit": 1001}, "The query parameter 'limit' is not valid: Input should be less than or equal to 1000; got '1001'."),
        ({"limit": 0}, "The query parameter 'limit' is not valid: Input should be greater than or equal to 1; got '0'."),
        ({"offset": -1}, "The query parameter 'offset' is not valid: Input should be greater than or equal to 0; got '-1'."),
        ({"offset": 10**20}, "The query parameter 'offset' is not valid: Input should be less than or equal to "
                             "9223372036854775807; got '100000000000000000000'."),
        ({"offset": "1e3"}, "The query parameter 'offset' is not valid: Input should be a valid integer, unable to parse "
                            "string as an integer; got '1e3'."),
        ({"format": "xlsx"}, "The query parameter 'format' is not valid: Input should be 'json' or 'csv'; got 'xlsx'."),
        ({"at_risk": "maybe"}, "The query parameter 'at_risk' is not valid: Input should be a valid boolean, unable to "
                               "interpret input; got 'maybe'."),
    ):
        for fmt in ("json", "csv"):
            r = client.get("/api/tiers/core", params={"format": fmt, **params})
            assert r.status_code == 422 and r.headers["content-type"] == "application/json", (params, fmt)
            assert r.json()["detail"] == message and r.json()["errors"][0]["loc"][0] == "query"
    # the largest offset a database takes is answered (an empty page, a CSV with its header only)
    top = 2**63 - 1
    assert client.get("/api/tiers/core", params={"offset": top, "limit": 1000}).json()["items"] == []
    assert client.get("/api/tiers/core", params={"offset": top, "format": "csv"}).text.startswith("customer_id,tier,")
    assert client.get("/tiers/core", params={"page": top // 50 + 1}).status_code == 422
    assert client.get("/tiers/core", params={"page": top // 50}).status_code == 200


def test_csv_export_streams_every_member(client, frames):
    second = frames[1]
    ordinary = second[second["tier"] == "ordinary"]
    with client.stream("GET", "/api/tiers/ordinary", params={"format": "csv"}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert r.headers["content-disposition"] == 'attachment; filename="tier-ordinary-2025-12-31.csv"'
        assert "content-length" not in r.headers  # streamed in chunks
        chunks = list(r.iter_text())
    rows = list(csv.DictReader(io.StringIO("".join(chunks))))
    assert len(rows) == len(ordinary) > 1000
    assert [x["customer_id"] for x in rows] == ranked(ordinary)
    assert {x["as_of"] for x in rows} == {"2025-12-31"} and rows[0]["tier_reason"] == "rule fired for ordinary"
    assert rows[0]["churn_risk"] == ""  # NaN (no purchase) is an empty field
    risky = client.get("/api/tiers/value", params={"format": "csv", "at_risk": "true"})
    body = list(csv.DictReader(io.StringIO(risky.text)))
    assert len(body) == int((second["tier"].eq("value") & second["at_risk"]).sum()) and {x["at_risk"] for x in body} == {"True"}
    top = list(csv.DictReader(io.StringIO(client.get("/api/tiers/core", params={"format": "csv", "limit": 5}).text)))
    assert [x["customer_id"] for x in top] == ranked(second[second["tier"] == "core"])[:5]


# ---- summary ---------------------------------------------------------------------------------------
def test_summary_counts_shares_and_migration(client, frames):
    first, second = frames
    s = client.get("/api/summary").json()
    assert s["as_of"] == "2025-12-31" and s["previous_as_of"] == "2025-06-30" and s["scoring_dates"] == ["2025-06-30", "2025-12-31"]
    counts = second["tier"].value_counts()
    assert [t["tier"] for t in s["tiers"]] == list(TIERS)
    assert {t["tier"]: t["customers"] for t in s["tiers"]} == {t: int(counts.get(t, 0)) for t in TIERS}
    assert sum(t["share"] for t in s["tiers"]) == pytest.approx(1)
    prev = first["tier"].value_counts()
    for t in s["tiers"]:
        assert t["share_change"] == pytest.approx(counts.get(t["tier"], 0) / N - prev.get(t["tier"], 0) / N)
    m = s["migration"]
    both = first.merge(second, on="customer_id", suffixes=("_a", "_b"))
    want = pd.crosstab(both["tier_a"], both["tier_b"]).reindex(index=list(TIERS), columns=list(TIERS), fill_value=0)
    assert m["counts"] == want.to_numpy().tolist() and m["customers_in_both"] == len(both) == N - 200
    assert m["share_staying"] == pytest.approx((both["tier_a"] == both["tier_b"]).mean())
    assert m["moved_up"] + m["moved_down"] + round(m["share_staying"] * len(both)) == len(both)
    early = client.get("/api/summary", params={"as_of": "2025-06-30"}).json()
    assert early["previous"] is None and early["migration"] is None


def test_empty_and_missing_store(tmp_path):
    url = f"sqlite:///{tmp_path}/empty.db"
    ScoresStore(url)  # tables, no batch
    c = TestClient(create_app(url))
    assert c.get("/api/health").json() == {"status": "ok", "latest_as_of": None, "auth": False}
    for path in ("/api/summary", "/api/customers/C1", "/api/tiers/core", "/api/tiers/core?format=csv"):
        r = c.get(path)
        assert r.status_code == 404 and "holds no batch yet. Run `tiering predict --as-of DATE`" in r.json()["detail"], path
    page = c.get("/")
    assert page.status_code == 404 and "holds no batch yet" in page.text
    from tiering.exceptions import StoreError

    with pytest.raises(StoreError, match=r"does not exist yet\. Run `tiering predict`"):
        create_app(f"sqlite:///{tmp_path}/none.db")


def test_server_cannot_write_the_store(client, store_url):
    import sqlalchemy as sa

    store = client.app.state.store
    with pytest.raises(sa.exc.OperationalError, match="readonly|read-only|query_only"):
        with store.engine.begin() as conn:
            conn.execute(store.batches.delete())
    assert len(ScoresStore(store_url).batches_list()) == 2


def test_config_texts_reach_the_api(store_url, frames):
    from tiering.models.tiers import ladder

    app = create_app(store_url, ladder=ladder([{"tier": "core", "label": "VIP", "action": "Call them within a day."}]))
    c = TestClient(app)
    core_id = frames[1].loc[frames[1]["tier"] == "core", "customer_id"].iloc[0]
    card = c.get(f"/api/customers/{core_id}").json()
    assert card["tier_label"] == "VIP" and card["action"] == "Call them within a day."
    assert c.get("/api/summary").json()["tiers"][0]["label"] == "VIP"
    assert "VIP" in c.get("/").text


# ---- web page ----------------------------------------------------------------------------------------
def _csrf(html: str, form: str = "login") -> str:
    import re

    return re.search(rf'id="{form}-csrf" name="csrf" value="([0-9a-f]{{64}})"', html).group(1)


def test_page_sign_in_with_session_cookie(store_url, frames):
    c = TestClient(create_app(store_url, token=TOKEN))
    r = c.get("/tiers/core?page=2", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Ftiers%2Fcore%3Fpage%3D2"
    form = c.get(r.headers["location"])
    bad = c.post("/login", data={"token": "wrong-token-0123456789", "next": "/", "csrf": _csrf(form.text)}, follow_redirects=False)
    assert bad.status_code == 401 and "That token is not right." in bad.text and "tiering_session" not in bad.headers.get("set-cookie", "")
    ok = c.post("/login", data={"token": TOKEN, "next": "/tiers/core?page=2", "csrf": _csrf(bad.text)}, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/tiers/core?page=2"
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict") and TOKEN not in cookie
    assert c.get("/tiers/core?page=2").status_code == 200
    # the cookie also opens the CSV export the page links to, but a forged cookie does not
    assert c.get("/api/tiers/core?format=csv").status_code == 200
    forged = TestClient(create_app(store_url, token=TOKEN), cookies={"tiering_session": TOKEN})
    assert forged.get("/api/summary").status_code == 401
    assert c.post("/logout", follow_redirects=False).status_code == 403  # no CSRF field: refused
    out = c.post("/logout", data={"csrf": _csrf(c.get("/").text, "logout")}, follow_redirects=False)
    assert out.status_code == 303 and c.get("/", follow_redirects=False).status_code == 303
    # no open redirect after sign-in
    evil = c.post("/login", data={"token": TOKEN, "next": "//evil.example/x", "csrf": _csrf(c.get("/login").text)},
                  follow_redirects=False)
    assert evil.headers["location"] == "/"


def test_sign_in_form_needs_its_csrf_token(store_url):
    c = TestClient(create_app(store_url, token=TOKEN))
    field = _csrf(c.get("/login").text)
    cookie = c.cookies.get("tiering_csrf")
    assert cookie and cookie not in field and TOKEN not in field
    refused = "Refused: the form was sent without a valid CSRF token"
    for data, cookies in (({"token": TOKEN}, {"tiering_csrf": cookie}),  # no field
                          ({"token": TOKEN, "csrf": field}, {}),  # no cookie (a cross-site POST: SameSite=Strict drops it)
                          ({"token": TOKEN, "csrf": field}, {"tiering_csrf": "another-nonce"}),  # field of another form
                          ({"token": TOKEN, "csrf": "0" * 64}, {"tiering_csrf": cookie})):  # forged field
        fresh = TestClient(create_app(store_url, token=TOKEN), cookies=cookies)
        r = fresh.post("/login", data=data, follow_redirects=False)
        assert r.status_code == 403 and refused in r.text and "tiering_session" not in r.headers.get("set-cookie", ""), data
    fresh = TestClient(create_app(store_url, token=TOKEN), cookies={"tiering_csrf": cookie})
    assert fresh.post("/login", data={"token": TOKEN, "csrf": field}, follow_redirects=False).status_code == 303
    # another worker process (same token) accepts the form the first one served
    other = TestClient(create_app(store_url, token=TOKEN), cookies={"tiering_csrf": cookie})
    assert other.post("/login", data={"token": TOKEN, "csrf": field}, follow_redirects=False).status_code == 303


def test_pages_render_the_store(open_client, frames):
    first, second = frames
    home = open_client.get("/")
    assert home.status_code == 200 and 'id="tier-mix-chart"' in home.text and 'id="migration-chart"' in home.text
    assert "Tiers as of 2025-12-31" in home.text and f"{N - 200:,} customers scored on both dates" in home.text
    assert "<script" not in home.text and "http://" not in home.text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "script-src" not in home.headers["content-security-policy"] and "default-src 'none'" in home.headers["content-security-policy"]
    row = second.set_index("customer_id").loc["C0000777"]
    card = open_client.get("/customer", params={"id": "C0000777"})
    assert card.status_code == 200 and f'data-tier="{row["tier"]}"' in card.text and row["tier_reason"] in card.text
    assert open_client.get("/customer", params={"id": "C0000005"}).status_code == 404
    bad = open_client.get("/customer", params={"id": "a\x00<script>"})
    assert bad.status_code == 422 and "is not valid" in bad.text and "&lt;script&gt;" in bad.text and "<script>" not in bad.text
    assert "&lt;script&gt;" in open_client.get("/customer", params={"id": "<script>"}).text  # a valid id, not stored: 404
    members = second[second["tier"] == "ordinary"]
    pages = -(-len(members) // 50)
    last = open_client.get(f"/tiers/ordinary?page={pages}")
    assert f"Page {pages} of {pages}" in last.text and 'id="next-page"' not in last.text
    assert ranked(members)[-1] in last.text
    assert 'href="/api/tiers/ordinary?format=csv"' in last.text


def test_docs_are_offline_and_describe_the_api(open_client):
    docs = open_client.get("/docs")
    assert docs.status_code == 200 and "GET /api/customers/{customer_id}" in docs.text and "cdn" not in docs.text.lower()
    schema = open_client.get("/openapi.json").json()
    assert {"/api/customers/{customer_id}", "/api/tiers/{tier}", "/api/summary", "/api/health"} <= set(schema["paths"])
    assert "/login" not in schema["paths"]


def test_serve_command_with_two_workers(tmp_path, store_url):
    """`tiering serve --workers 2` (supervisor + worker processes re-reading the config) answers with the token."""
    import json
    import os
    import socket
    import time
    import urllib.error
    import urllib.request

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"store:\n  url: {store_url}\nserve:\n  token: {TOKEN}\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "TIERING_API_TOKEN"}  # the token comes from the config file
    proc = subprocess.Popen([sys.executable, "-m", "tiering", "serve", "--port", str(port), "--workers", "2", "--config", str(cfg),
                             "--no-access-log"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(900):  # readiness wait, not a timing assertion
            assert proc.poll() is None, proc.stderr.read()
            try:
                urllib.request.urlopen(f"{base}/api/health", timeout=2).close()
                break
            except OSError:
                time.sleep(0.1)
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(f"{base}/api/customers/C0000777", timeout=30)
        assert denied.value.code == 401
        for _ in range(6):  # a few requests, so both workers are likely to answer one
            req = urllib.request.Request(f"{base}/api/customers/C0000777", headers={"Authorization": f"Bearer {TOKEN}"})
            with urllib.request.urlopen(req, timeout=30) as r:
                assert json.loads(r.read())["customer_id"] == "C0000777"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_summary_follows_a_new_batch(tmp_path, frames):
    """The server caches the summary per batch pair; a batch written while it runs shows at once."""
    url = f"sqlite:///{tmp_path}/scores.db"
    writer = ScoresStore(url)
    writer.write_batch(frames[0])
    c = TestClient(create_app(url))
    assert c.get("/api/summary").json()["migration"] is None
    assert c.get("/api/summary").json()["as_of"] == "2025-06-30"  # served from the cache
    writer.write_batch(frames[1])
    s = c.get("/api/summary").json()
    assert s["as_of"] == "2025-12-31" and s["migration"]["entered"] == 200 and s["migration"]["left"] == 200
    rerun = frames[1].assign(tier="ordinary", scored_at=frames[1]["scored_at"] + pd.Timedelta(hours=1))
    writer.write_batch(rerun)  # same as_of and version: replaces the batch
    assert c.get("/api/summary").json()["tiers"][-1]["customers"] == N


def test_over_postgresql_read_only(frames):
    """The same API over a PostgreSQL store (TIERING_TEST_POSTGRES_URL; CI starts one): reads work, writes are refused."""
    import os
    import uuid
    from urllib.parse import quote

    import sqlalchemy as sa

    from tiering.store import normalize_url

    pg = os.environ.get("TIERING_TEST_POSTGRES_URL")
    if not pg:
        if os.environ.get("TIERING_REQUIRE_SERVICES") == "1":
            pytest.fail("TIERING_REQUIRE_SERVICES=1 but TIERING_TEST_POSTGRES_URL is not set (.ci/run sets it).")
        pytest.skip("set TIERING_TEST_POSTGRES_URL (bash .ci/start-postgres) to run the PostgreSQL serve test")
    schema = f"serve_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(normalize_url(pg), connect_args={"connect_timeout": 5})
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = f"{normalize_url(pg)}{'&' if '?' in pg else '?'}options={quote(f'-csearch_path={schema}')}"
    try:
        writer = ScoresStore(url)
        for f in frames:
            writer.write_batch(f.iloc[:500])
        writer.engine.dispose()
        with TestClient(create_app(url, token=TOKEN), headers={"Authorization": f"Bearer {TOKEN}"}) as c:
            row = frames[1].set_index("customer_id").loc["C0000300"]
            card = c.get("/api/customers/C0000300").json()
            assert card["tier"] == row["tier"] and [h["as_of"] for h in card["history"]] == ["2025-06-30", "2025-12-31"]
            assert c.get("/api/summary").json()["migration"]["customers_in_both"] == 300
            rows = list(csv.DictReader(io.StringIO(c.get("/api/tiers/ordinary", params={"format": "csv"}).text)))
            assert len(rows) == int((frames[1].iloc[:500]["tier"] == "ordinary").sum())
            got, params = [], {"limit": 40}  # a walk by cursor (read-only REPEATABLE READ reads) = the CSV's order
            while params:
                page = c.get("/api/tiers/ordinary", params=params).json()
                got += [m["customer_id"] for m in page["items"]]
                params = {"limit": 40, "cursor": page["next_cursor"]} if page["next_cursor"] else None
            assert got == [r["customer_id"] for r in rows] == ranked(frames[1].iloc[:500].query("tier == 'ordinary'"))
            store = c.app.state.store
            with pytest.raises(sa.exc.DBAPIError, match="read-only transaction"):
                with store.engine.begin() as conn:
                    conn.execute(store.batches.delete())
            store.engine.dispose()
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


def test_customer_card_shows_lapsed_buyer_koc_score_and_tier_probabilities(client, frames):
    from tiering.models.tiers import TIER_BY_NAME

    second = frames[1].set_index("customer_id")
    lapsed, active = second.index[second["lapsed_buyer"]][0], second.index[~second["lapsed_buyer"]][0]
    card = client.get(f"/api/customers/{lapsed}").json()
    row = second.loc[lapsed]
    assert card["lapsed_buyer"] is True and card["action"] == WIN_BACK_ACTION
    assert card["tier_action"] == TIER_BY_NAME[row["tier"]].action
    assert card["koc_score"] == pytest.approx(row["koc_score"])
    assert list(card["tier_probabilities"]) == list(TIERS)
    assert card["tier_probabilities"] == pytest.approx({t: row[f"p_{t}"] for t in TIERS})
    assert card["p_core"] == pytest.approx(row["p_core"])
    other = client.get(f"/api/customers/{active}").json()
    assert other["lapsed_buyer"] is False and other["action"] == TIER_BY_NAME[second.loc[active, "tier"]].action
    page = client.get("/customer", params={"id": lapsed}).text
    assert "lapsed buyer" in page and WIN_BACK_ACTION in page and 'id="tier-probabilities"' in page
    assert 'id="lapsed-buyer"' not in client.get("/customer", params={"id": active}).text


# ---- keyset pages and the CLV interval ------------------------------------------------------------------
def test_api_walks_a_tier_by_cursor(client, frames):
    second = frames[1]
    want = ranked(second[second["tier"] == "ordinary"])
    got, params, pages = [], {"limit": 200}, 0
    while True:
        page = client.get("/api/tiers/ordinary", params=params).json()
        got += [m["customer_id"] for m in page["items"]]
        pages += 1
        if page["next_cursor"] is None:
            break
        assert page["total"] == len(want) and page["offset"] == (0 if pages == 1 else None)
        params = {"limit": 200, "cursor": page["next_cursor"]}
    assert got == want and pages == -(-len(want) // 200)
    # the CSV export goes on from a cursor too
    first = client.get("/api/tiers/ordinary", params={"limit": 100}).json()
    rest = client.get("/api/tiers/ordinary", params={"format": "csv", "cursor": first["next_cursor"]})
    assert [r["customer_id"] for r in csv.DictReader(io.StringIO(rest.text))] == want[100:]
    schema = client.get("/openapi.json").json()
    assert "cursor" in {p["name"] for p in schema["paths"]["/api/tiers/{tier}"]["get"]["parameters"]}


def test_a_bad_cursor_is_a_422_naming_it(client):
    good = client.get("/api/tiers/core", params={"limit": 3}).json()["next_cursor"]
    for fmt in ("json", "csv"):
        for params, message in (({"cursor": "garbage!"}, "cursor 'garbage!' is not a cursor of a tier listing"),
                                ({"cursor": good[:-3]}, "is not a cursor of a tier listing"),
                                ({"cursor": good, "at_risk": "true"}, "cursor was given out for the listing of tier 'core'"),
                                ({"cursor": good, "offset": 5}, "Give offset or cursor, not both")):
            r = client.get("/api/tiers/core", params={"format": fmt, **params})
            assert r.status_code == 422 and r.headers["content-type"] == "application/json", (fmt, params)
            assert message in r.json()["detail"], r.json()
        r = client.get("/api/tiers/value", params={"format": fmt, "cursor": good})
        assert r.status_code == 422 and "not of tier 'value'" in r.json()["detail"]
    page = client.get("/tiers/core", params={"cursor": "garbage!"})
    assert page.status_code == 422 and "is not a cursor of a tier listing" in page.text


def test_page_next_links_follow_the_cursor(open_client, frames):
    import html
    import re

    members = ranked(frames[1][frames[1]["tier"] == "ordinary"])
    page, seen, url = 1, [], "/tiers/ordinary"
    while url and page <= 4:
        r = open_client.get(url)
        assert r.status_code == 200 and f"Page {page} of {-(-len(members) // 50)}" in r.text
        rows = re.findall(r'<a href="/customer\?id=([^"&]+)', r.text)
        assert rows == members[(page - 1) * 50:page * 50]
        seen += rows
        nxt = re.search(r'id="next-page" href="([^"]+)"', r.text)
        url = html.unescape(nxt.group(1)) if nxt else None
        if url:
            assert "cursor=" in url and f"page={page + 1}" in url
        page += 1
    assert len(set(seen)) == len(seen) == 200
    prev = re.search(r'id="prev-page" href="([^"]+)"', open_client.get(url).text).group(1)
    assert html.unescape(prev) == "/tiers/ordinary?page=4"  # back by page number


def test_customer_card_carries_the_clv_interval(client, frames, tmp_path):
    row = frames[1].set_index("customer_id").loc["C0000777"]
    card = client.get("/api/customers/C0000777").json()
    assert card["clv_p10"] == pytest.approx(row["clv_p10"]) and card["clv_p90"] == pytest.approx(row["clv_p90"])
    page = client.get("/customer", params={"id": "C0000777"}).text
    assert (f'id="clv-interval">CLV 80% interval: {row["clv_p10"]:,.2f} - {row["clv_p90"]:,.2f}</div>') in page
    member = client.get("/api/tiers/core", params={"limit": 1}).json()["items"][0]
    assert {"clv_p10", "clv_p90"} <= set(member)
    assert {"clv_p10", "clv_p90"} <= set(client.get("/openapi.json").json()["components"]["schemas"]["Customer"]["properties"])
    # no interval (a model without one): the line is not shown, the card says null
    url = f"sqlite:///{tmp_path}/scores.db"
    ScoresStore(url).write_batch(frames[1].iloc[:50].assign(clv_p10=np.nan, clv_p90=np.nan))
    c = TestClient(create_app(url))
    cid = frames[1]["customer_id"].iloc[3]
    assert c.get(f"/api/customers/{cid}").json()["clv_p10"] is None
    assert 'id="clv-interval"' not in c.get("/customer", params={"id": cid}).text


def test_fast_lookup_answers_as_the_route_does(client, open_client):
    """serve._customers.FastLookup answers a found card in front of FastAPI; a query it does not take (here an
    unknown parameter, which the route ignores) goes to the route: both answers are the same bytes and headers."""
    for c in (client, open_client):
        for cid, params in (("C0000777", {}), ("C0000777", {"as_of": "2025-06-30"}), ("C0000300", {})):
            fast = c.get(f"/api/customers/{cid}", params=params)
            route = c.get(f"/api/customers/{cid}", params=params | {"via": "route"})
            assert fast.status_code == route.status_code == 200
            assert fast.content == route.content
            assert sorted(fast.headers.items()) == sorted(route.headers.items())
    # what the fast path does not answer is the route's answer
    assert client.get("/api/customers/C0000777", headers={"Authorization": "Bearer nope-0123456789abcdef"}).status_code == 401
    assert client.get("/api/customers/C0000005").status_code == 404
    assert client.get("/api/customers/C0000777", params={"as_of": "2025-02-30"}).status_code == 422
    assert client.head("/api/customers/C0000777").status_code in (200, 405)
