"""The ops read model (tiering.ops) directly, on a small store of two scoring dates with known tier moves.

Moves from T1 to T2 (customers in both): core->core 3, core->value 2, value->value 4, value->ordinary 1,
new->value 2, seed->core 1, ordinary->ordinary 5, ordinary->seed 2; two value customers only at T1 (left),
three new customers only at T2 (entered). Counted by hand: 20 in both, 12 stay, 5 up, 3 down.
"""

import csv
import datetime as dt
import io
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from test_serve import make_scores
from tiering import ops
from tiering.exceptions import ConfigError
from tiering.ladder import TIER_LADDER
from tiering.migration import migration_between
from tiering.store import Batch, ScoresStore

T1, T2 = dt.date(2025, 1, 31), dt.date(2025, 4, 30)
MOVES = [("core", "core", 3), ("core", "value", 2), ("value", "value", 4), ("value", "ordinary", 1), ("new", "value", 2),
         ("seed", "core", 1), ("ordinary", "ordinary", 5), ("ordinary", "seed", 2)]
TIERS = ["core", "value", "seed", "new", "ordinary"]
# rows: tier at T1, columns: tier at T2, ladder order
COUNTS = [[3, 2, 0, 0, 0],
          [0, 4, 0, 0, 1],
          [1, 0, 0, 0, 0],
          [0, 2, 0, 0, 0],
          [0, 0, 2, 0, 5]]
EXPECTED = {
    "from_as_of": "2025-01-31", "to_as_of": "2025-04-30", "tiers": TIERS, "counts": COUNTS,
    "row_share": [[3 / 5, 2 / 5, 0.0, 0.0, 0.0],
                  [0.0, 4 / 5, 0.0, 0.0, 1 / 5],
                  [1.0, 0.0, 0.0, 0.0, 0.0],
                  [0.0, 1.0, 0.0, 0.0, 0.0],
                  [0.0, 0.0, 2 / 7, 0.0, 5 / 7]],
    "customers_in_both": 20, "share_staying": 12 / 20, "moved_up": 5, "moved_down": 3,
    "share_moved_up": 5 / 20, "share_moved_down": 3 / 20, "entered": 3, "left": 2,
}


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    before, after = [], []
    for a, b, n in MOVES:
        for _ in range(n):
            cid = f"K{len(before):03d}"
            before.append((cid, a))
            after.append((cid, b))
    before += [("GONE1", "value"), ("GONE2", "value")]
    after += [("NEW1", "new"), ("NEW2", "new"), ("NEW3", "new")]
    out = []
    for rows, as_of, seed in ((before, T1, 1), (after, T2, 2)):
        ids, tiers = zip(*rows)
        df = make_scores(len(rows), as_of, seed=seed).assign(customer_id=list(ids), tier=list(tiers))
        df["clv"] = np.arange(len(rows), 0, -1, dtype=float) * 10  # listing order = row order
        df["at_risk"] = [i % 3 == 0 for i in range(len(rows))]
        out.append(df)
    out[1].loc[out[1]["customer_id"] == "NEW1", ["tier_reason", "rfm_segment", "clv"]] = ["=HYPERLINK(1)", "@x", -2.5]
    return out[0], out[1]


@pytest.fixture(scope="module")
def frames():
    return _frames()


@pytest.fixture(scope="module")
def store(tmp_path_factory, frames):
    s = ScoresStore(f"sqlite:///{tmp_path_factory.mktemp('ops')}/scores.db")
    for f in frames:
        s.write_batch(f)
    return s


@pytest.fixture(scope="module")
def batches(store):
    return ops.resolve_batch(store, T1), ops.resolve_batch(store)


# ---- migration: SQL over the store, pandas over frames, hand count: one record ---------------------------
def test_migration_of_two_stored_batches_is_the_hand_count(store, batches):
    assert ops.migration(store, *batches) == EXPECTED


def test_sql_and_pandas_migration_agree_exactly(store, batches, frames):
    sql = ops.migration(store, *batches)
    assert migration_between(store.read_batch(batches[0]), store.read_batch(batches[1])) == sql
    assert migration_between(*frames) == sql  # the frames that went in: same keys, same numbers, as_of from the frames
    shuffled = migration_between(frames[0].sample(frac=1, random_state=3), frames[1].iloc[::-1])
    assert shuffled == sql


def test_migration_without_common_customers(store, batches, frames):
    gone = frames[1].assign(customer_id=[f"Z{i}" for i in range(len(frames[1]))])
    m = migration_between(frames[0], gone)
    assert m["customers_in_both"] == 0 and m["share_staying"] is None and m["share_moved_up"] is None
    assert m["entered"] == len(gone) and m["left"] == len(frames[0]) and m["row_share"] == [[None] * 5] * 5


# ---- summary ------------------------------------------------------------------------------------------
def test_summary_has_both_mixes_and_the_migration(store, frames):
    s = ops.summary(store)
    assert s["as_of"] == "2025-04-30" and s["previous_as_of"] == "2025-01-31" and s["scoring_dates"] == ["2025-01-31", "2025-04-30"]
    now, before = frames[1]["tier"].value_counts(), frames[0]["tier"].value_counts()
    assert [(t["tier"], t["customers"]) for t in s["tiers"]] == [(t, int(now.get(t, 0))) for t in TIERS]
    assert [t["customers"] for t in s["previous"]] == [int(before.get(t, 0)) for t in TIERS]
    for t in s["tiers"]:
        assert t["share_change"] == pytest.approx(now.get(t["tier"], 0) / 23 - before.get(t["tier"], 0) / 22)
    assert s["tiers"][0]["label"] == TIER_LADDER[0].label and s["migration"] == EXPECTED
    assert s["batch"]["rows"] == 23 and s["previous_batch"]["rows"] == 22
    first = ops.summary(store, T1)
    assert first["previous"] is None and first["migration"] is None and "share_change" not in first["tiers"][0]


def test_summary_cache_answers_a_pair_of_batches_once(store, monkeypatch):
    cache: dict = {}
    want = ops.summary(store, cache=cache)
    monkeypatch.setattr(store, "tier_counts", lambda *a, **k: pytest.fail("read again instead of the cache"))
    monkeypatch.setattr(store, "migration", lambda *a, **k: pytest.fail("read again instead of the cache"))
    got = ops.summary(store, cache=cache)
    assert got == want and got is not cache[next(iter(cache))]  # a copy: the caller cannot spoil the cache
    got["tiers"].clear()
    assert ops.summary(store, cache=cache) == want


# ---- batches ------------------------------------------------------------------------------------------
def test_resolve_and_previous_batch(store, batches, tmp_path):
    first, latest = batches
    assert (first.as_of, latest.as_of, latest.rows) == (T1, T2, 23)
    assert ops.previous_batch(store.batches_list(), latest) == first and ops.previous_batch(store.batches_list(), first) is None
    with pytest.raises(ops.NotFoundError, match=r"holds no batch as of 2024-01-01; scoring dates are \['2025-01-31', '2025-04-30'\]"):
        ops.resolve_batch(store, dt.date(2024, 1, 1))
    empty = ScoresStore(f"sqlite:///{tmp_path}/empty.db")
    with pytest.raises(ops.NotFoundError, match=r"holds no batch yet\. Run `tiering predict --as-of DATE`"):
        ops.resolve_batch(empty)
    # a re-run at the same date (finished later) is the one a reader sees, at that date and as the previous one
    t = dt.datetime(2025, 5, 1)
    rerun = [Batch(1, T1, "m", "1", 5, t), Batch(2, T2, "m", "1", 5, t), Batch(3, T1, "m", "2", 5, t + dt.timedelta(hours=1))]
    assert ops.resolve_batch(empty, T1, rerun).batch_id == 3 and ops.previous_batch(rerun, rerun[1]).batch_id == 3


# ---- one customer ---------------------------------------------------------------------------------------
def test_customer_card_and_history(store, frames):
    card = ops.customer_card(store, "K003")  # core -> value
    row = frames[1].set_index("customer_id").loc["K003"]
    value = next(t for t in TIER_LADDER if t.name == "value")
    assert card["tier"] == "value" and card["tier_label"] == value.label and card["action"] == value.action
    assert card["tier_reason"] == row["tier_reason"] and card["clv"] == row["clv"] and card["as_of"] == "2025-04-30"
    assert [(h["as_of"], h["tier"]) for h in card["history"]] == [("2025-01-31", "core"), ("2025-04-30", "value")]
    assert ops.customer_card(store, "K003", T1)["tier"] == "core"
    assert ops.customer_card(store, "  K003 ")["customer_id"] == "K003"  # pasted with blanks around it
    with pytest.raises(ops.NotFoundError, match=r"^Customer 'GONE1' is not in the scoring batch as of 2025-04-30 \(23 customers"):
        ops.customer_card(store, "GONE1")
    assert len(ops.customer_card(store, "GONE1", T1)["history"]) == 1
    with pytest.raises(ConfigError, match="control or undecodable character U\\+0009"):
        ops.customer_card(store, "K\t003")


# ---- a tier's members: page and CSV ------------------------------------------------------------------------
def test_tier_pages_walk_the_tier_in_clv_order(store, frames):
    second = frames[1]
    want = second[second["tier"] == "value"].sort_values("clv", ascending=False)["customer_id"].tolist()
    got, offset = [], 0
    while offset is not None:
        page = ops.tier_page(store, "value", limit=3, offset=offset)
        assert page["total"] == len(want) == 8 and page["batch"]["as_of"] == "2025-04-30"
        got += [m["customer_id"] for m in page["items"]]
        offset = page["next_offset"]
    assert got == want
    risky = ops.tier_page(store, "value", at_risk=True)
    assert risky["total"] == int((second["tier"].eq("value") & second["at_risk"]).sum()) and all(m["at_risk"] for m in risky["items"])
    assert ops.tier_page(store, None)["total"] == 23 and ops.tier_page(store, "core", as_of=T1)["total"] == 5
    with pytest.raises(ConfigError, match=r"Unknown tier 'gold'"):
        ops.tier_page(store, "gold")
    with pytest.raises(ConfigError, match=r"limit must be a whole number from 1"):
        ops.tier_page(store, "core", limit=0)


def test_csv_export_is_formula_neutral(store, batches, frames):
    text = "".join(ops.iter_tier_csv(store, "new", batch=batches[1], chunk_rows=1))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == [*ops.LIST_COLUMNS, "as_of", "model_version"]
    assert [r["customer_id"] for r in rows] == ["NEW2", "NEW3", "NEW1"]  # highest CLV first
    new1 = rows[-1]
    assert new1["tier_reason"] == "'=HYPERLINK(1)" and new1["rfm_segment"] == "'@x" and new1["clv"] == "-2.5"
    assert {r["as_of"] for r in rows} == {"2025-04-30"}
    assert len(list(csv.reader(io.StringIO("".join(ops.iter_tier_csv(store, "new", batch=batches[1], limit=1)))))) == 2
    with pytest.raises(ConfigError, match="Unknown tier"):  # refused when created, before any text goes out
        ops.iter_tier_csv(store, "gold", batch=batches[1])


def test_lapsed_filter_lists_the_win_back_customers(store, batches, frames):
    """``lapsed=True`` lists the lapsed buyers (the win-back list) in the listing order, by page, cursor and CSV;
    ``lapsed=False`` the rest; a cursor stays with its filter."""
    second = frames[1]

    def want(sel):
        return second[sel].sort_values(["clv", "customer_id"], ascending=[False, True])["customer_id"].tolist()

    lapsed = second["lapsed_buyer"].astype(bool)
    page = ops.tier_page(store, None, lapsed=True, limit=None)
    assert len(want(lapsed)) >= 3 and [m["customer_id"] for m in page["items"]] == want(lapsed)
    assert page["total"] == int(lapsed.sum()) and page["lapsed"] is True and all(m["lapsed_buyer"] for m in page["items"])
    rest = ops.tier_page(store, None, lapsed=False, limit=None)
    assert [m["customer_id"] for m in rest["items"]] == want(~lapsed) and rest["total"] + page["total"] == 23
    assert ops.tier_page(store, None)["lapsed"] is None
    for tier in TIERS:  # with a tier and the at-risk flag, the filters combine
        sel = lapsed & second["tier"].eq(tier) & second["at_risk"]
        both = ops.tier_page(store, tier, at_risk=True, lapsed=True, limit=None)
        assert [m["customer_id"] for m in both["items"]] == want(sel), tier
    assert ops.tier_page(store, None, lapsed=True, as_of=T1)["total"] == int(frames[0]["lapsed_buyer"].sum())
    # pages of one walk the lapsed listing by cursor
    got, cursor, first_cursor = [], None, None
    while True:
        p = ops.tier_page(store, None, lapsed=True, limit=1, cursor=cursor)
        got += [m["customer_id"] for m in p["items"]]
        if p["next_cursor"] is None:
            break
        cursor = p["next_cursor"]
        first_cursor = first_cursor or cursor
    assert got == want(lapsed)
    text = "".join(ops.iter_tier_csv(store, None, batch=batches[1], lapsed=True, cursor=first_cursor, chunk_rows=1))
    assert [r["customer_id"] for r in csv.DictReader(io.StringIO(text))] == want(lapsed)[1:]
    text = "".join(ops.iter_tier_csv(store, None, batch=batches[1], lapsed=False))
    assert [r["customer_id"] for r in csv.DictReader(io.StringIO(text))] == want(~lapsed)
    # a cursor belongs to its filter; one without the filter has no lapsed field (cursors given out before still work)
    with pytest.raises(ConfigError, match=r"given out for the listing of tier 'all' with lapsed=true, not of tier 'all'\. "
                                          r"Pass it with the same tier, at_risk and lapsed"):
        ops.tier_page(store, None, cursor=first_cursor)
    with pytest.raises(ConfigError, match=r"with lapsed=true, not of tier 'all' with lapsed=false"):
        ops.iter_tier_csv(store, None, batch=batches[1], lapsed=False, cursor=first_cursor)
    plain = ops.tier_page(store, None, limit=1)["next_cursor"]
    assert ops.cursor_lapsed(plain) is None and ops.cursor_lapsed(first_cursor) is True
    assert plain == ops.encode_cursor(batches[1], None, None, *_first_row(store), lapsed=None)
    with pytest.raises(ConfigError, match=r"lapsed must be true, false or left out; got 'yes'"):
        ops.tier_page(store, None, lapsed="yes")


def _first_row(store):
    item = ops.tier_page(store, None, limit=1)["items"][0]
    return item["clv"], item["customer_id"]


def test_input_checks():
    assert ops.parse_as_of("2025-04-30") == T2 and ops.parse_as_of(None) is None
    for bad in ("2025-4-30", "2025-02-30", "1700000000", "2025-04-30T00:00"):
        with pytest.raises(ConfigError, match="must be a date as YYYY-MM-DD"):
            ops.parse_as_of(bad)
    assert ops.check_rows(ops.MAX_ROWS, "offset") == ops.MAX_ROWS
    for bad in (-1, ops.MAX_ROWS + 1, True, 1.5):
        with pytest.raises(ConfigError, match="offset must be a whole number"):
            ops.check_rows(bad, "offset")
    with pytest.raises(ConfigError, match="--format must be table, csv or json; got 'xlsx'"):
        ops.check_format("xlsx")
    assert [ops.csv_cell(v) for v in ("=1", "+1", "a=1", -3, None)] == ["'=1", "'+1", "a=1", -3, ""]


def test_ops_needs_no_web_framework():
    code = "import sys, tiering.ops, tiering.serve; print('fastapi' in sys.modules, 'starlette' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_card_and_summary_carry_the_tier_policy_fields_and_flips_avoided(frames, tmp_path):
    from tiering.ladder import WIN_BACK_ACTION

    store = ScoresStore(f"sqlite:///{tmp_path}/scores.db")
    before, after = frames[0].copy(), frames[1].copy()
    after["lapsed_buyer"] = after["customer_id"] == "K000"
    store.write_batch(before)
    kw = dict(as_of=T2, model_name=after["model_name"].iloc[0], model_version="1", scored_at=dt.datetime(2025, 5, 1))
    store.write_chunks([after.iloc[:10], after.iloc[10:]], flips_avoided=lambda: 4, **kw)
    s = ops.summary(store)
    assert s["flips_avoided"] == 4 and s["batch"]["flips_avoided"] == 4 and s["migration"] == EXPECTED
    assert ops.summary(store, T1)["flips_avoided"] is None
    card = ops.customer_card(store, "K000")
    assert card["lapsed_buyer"] is True and card["action"] == WIN_BACK_ACTION
    assert card["tier_action"] == TIER_LADDER[0].action  # K000 is core at T2
    assert card["koc_score"] == pytest.approx(after.loc[0, "koc_score"])
    assert sum(card["tier_probabilities"].values()) == pytest.approx(1)
    assert ops.customer_card(store, "K001")["action"] == TIER_LADDER[0].action


# ---- keyset pages: cursors ---------------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
def listing_store(request, tmp_path):
    """A store (SQLite, and PostgreSQL when TIERING_TEST_POSTGRES_URL is set) of test_store.listing_frame: runs of
    equal CLVs, NULL CLVs, awkward floats, an infinite CLV; two scoring dates."""
    from test_store import _pg_schema_url, listing_frame

    gen = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/scores.db"
    else:
        gen = _pg_schema_url()
        url, _ = next(gen)
    store = ScoresStore(url)
    df = listing_frame(300)
    store.write_batch(listing_frame(300, seed=9).assign(as_of=T1))
    store.write_batch(df.assign(as_of=T2))
    yield store, df
    store.engine.dispose()
    if gen is not None:
        next(gen, None)


def _walk(store, tier, at_risk, limit, **kw):
    got, cursor, pages = [], None, 0
    while True:
        page = ops.tier_page(store, tier, at_risk=at_risk, limit=limit, cursor=cursor, **kw)
        got += [m["customer_id"] for m in page["items"]]
        pages += 1
        if page["next_cursor"] is None:
            return got, pages, page
        assert page["next_offset"] is None or cursor is None  # a cursor page says nothing of offsets
        cursor = page["next_cursor"]


def test_cursor_walk_returns_every_member_once_in_the_unpaged_order(listing_store):
    from test_store import listing_want

    store, df = listing_store
    for tier, at_risk in (("core", None), ("value", True), (None, None), (None, False)):
        whole = ops.tier_page(store, tier, at_risk=at_risk, limit=None)
        assert whole["next_cursor"] is None and whole["next_offset"] is None
        want = [m["customer_id"] for m in whole["items"]]
        assert want == listing_want(df, tier, at_risk) and len(want) == whole["total"]  # NULL CLVs last, ties by id
        for limit in (1, 4, 25, 1000):
            got, pages, last = _walk(store, tier, at_risk, limit)
            assert got == want, (tier, at_risk, limit)
            assert pages == max(1, -(-len(want) // limit)) and last["total"] == len(want)
        # offset pages give the same rows and a cursor to go on with from there
        page = ops.tier_page(store, tier, at_risk=at_risk, limit=10, offset=20)
        assert [m["customer_id"] for m in page["items"]] == want[20:30] and page["next_offset"] == 30
        assert [m["customer_id"] for m in ops.tier_page(store, tier, at_risk=at_risk, limit=10,
                                                        cursor=page["next_cursor"])["items"]] == want[30:40]
    # a page that ends on a customer without a CLV continues among them
    nulls = df[df["clv"].isna() & (df["tier"] == "core")]
    assert len(nulls) > 3
    got, _, _ = _walk(store, "core", None, 2)
    assert got[-len(nulls):] == sorted(nulls["customer_id"])


def test_csv_export_from_a_cursor_is_the_rest_of_the_listing(listing_store):
    store, df = listing_store
    want = [m["customer_id"] for m in ops.tier_page(store, "core", limit=None)["items"]]
    batch = ops.resolve_batch(store)
    for start in (0, 7, len(want) - 3):
        cursor = None
        if start:
            page = ops.tier_page(store, "core", limit=start)
            cursor = page["next_cursor"]
        for limit in (None, 5):
            text = "".join(ops.iter_tier_csv(store, "core", batch=batch, cursor=cursor, limit=limit, chunk_rows=4))
            rows = list(csv.DictReader(io.StringIO(text)))
            assert [r["customer_id"] for r in rows] == want[start:][:limit], (start, limit)
    text = "".join(ops.iter_tier_csv(store, "core", batch=batch, offset=7, limit=3))
    assert [r["customer_id"] for r in csv.DictReader(io.StringIO(text))] == want[7:10]
    first = list(csv.DictReader(io.StringIO("".join(ops.iter_tier_csv(store, "core", batch=batch)))))
    assert float(first[0]["clv"]) == float("inf") and first[-1]["clv"] == ""  # inf first, no CLV last


def test_a_bad_cursor_is_refused_naming_the_parameter(listing_store):
    store, df = listing_store
    good = ops.tier_page(store, "core", limit=3)["next_cursor"]
    for bad in ("", "x", "not a cursor!", good[:-4], good + "AAAA", "A" * 5000, "eyJhIjoxfQ", ops.encode_cursor(
            ops.resolve_batch(store), "core", None, float("nan"), "C1")):
        with pytest.raises(ConfigError, match=r"^cursor '.*' is not a cursor of a tier listing\. Pass the next_cursor"):
            ops.tier_page(store, "core", cursor=bad)
    with pytest.raises(ConfigError, match=r"cursor was given out for the listing of tier 'core', not of tier 'value'"):
        ops.tier_page(store, "value", cursor=good)
    with pytest.raises(ConfigError, match=r"not of tier 'core' with at_risk=true"):
        ops.tier_page(store, "core", at_risk=True, cursor=good)
    with pytest.raises(ConfigError, match=r"cursor belongs to the scoring batch as of 2025-04-30, not 2025-01-31"):
        ops.tier_page(store, "core", as_of=T1, cursor=good)
    with pytest.raises(ConfigError, match=r"Give offset or cursor, not both"):
        ops.tier_page(store, "core", offset=3, cursor=good)
    with pytest.raises(ConfigError, match=r"cursor belongs to another scoring batch than the one exported"):
        ops.iter_tier_csv(store, "core", batch=ops.resolve_batch(store, T1), cursor=good)
    with pytest.raises(ConfigError, match=r"^cursor '.*' is not a cursor"):
        ops.iter_tier_csv(store, "core", batch=ops.resolve_batch(store), cursor="garbage")


def test_a_cursor_pins_its_batch(tmp_path):
    """A walk goes on over the batch it started on when a new one lands; a batch replaced by a re-run ends it clearly."""
    store = ScoresStore(f"sqlite:///{tmp_path}/scores.db")
    first, second = _frames()
    store.write_batch(first)
    page = ops.tier_page(store, "core", limit=2)
    store.write_batch(second)  # a later scoring date
    rest = ops.tier_page(store, "core", limit=50, cursor=page["next_cursor"])
    assert rest["batch"]["as_of"] == "2025-01-31" and len(page["items"]) + len(rest["items"]) == 5
    store.write_batch(first.assign(scored_at=first["scored_at"] + pd.Timedelta(hours=1)))  # a re-run replaces it
    with pytest.raises(ConfigError, match=r"cursor belongs to a scoring batch that is no longer in the store"):
        ops.tier_page(store, "core", cursor=page["next_cursor"])


def test_card_and_listing_carry_the_clv_interval(store, frames):
    card = ops.customer_card(store, "K003")
    row = frames[1].set_index("customer_id").loc["K003"]
    assert card["clv_p10"] == pytest.approx(row["clv_p10"]) and card["clv_p90"] == pytest.approx(row["clv_p90"])
    item = ops.tier_page(store, "value", limit=1)["items"][0]
    want = frames[1].set_index("customer_id").loc[item["customer_id"]]
    assert (item["clv_p10"], item["clv_p90"]) == pytest.approx((want["clv_p10"], want["clv_p90"]))
    assert ops.LIST_COLUMNS[-2:] == ("clv_p10", "clv_p90")  # appended: CSV readers by position keep working


def test_sqlite_lookup_reads_what_sqlalchemy_reads(store, monkeypatch):
    """customer_card on SQLite reads through the driver with SQLAlchemy's type converters: the same card, history
    and types as through SQLAlchemy Core (the path of every other database)."""
    ids = ["K003", "K000", "NEW1", "GONE1"]
    fast = [ops.customer_card(store, cid, as_of) for cid in ids[:3] for as_of in (None, T1) if (cid, as_of) != ("NEW1", T1)]
    monkeypatch.setattr(store, "dialect", "other")
    slow = [ops.customer_card(store, cid, as_of) for cid in ids[:3] for as_of in (None, T1) if (cid, as_of) != ("NEW1", T1)]
    assert fast == slow and isinstance(fast[0]["at_risk"], bool) and fast[0]["scored_at"].startswith("2025-")


def test_page_totals_are_cached_per_batch(tmp_path, monkeypatch):
    store = ScoresStore(f"sqlite:///{tmp_path}/scores.db")
    first, second = _frames()
    store.write_batch(first)
    cache: dict = {}
    page = ops.tier_page(store, "core", limit=2, cache=cache)
    assert page["total"] == 5 and list(cache.values()) == [5]
    again = ops.tier_page(store, "core", limit=2, cursor=page["next_cursor"], cache=cache)
    assert again["total"] == 5 and len(cache) == 1  # the cursor's batch: the same key, not counted again
    store.write_batch(first.assign(tier="core", scored_at=first["scored_at"] + pd.Timedelta(hours=1)))  # a re-run
    assert ops.tier_page(store, "core", limit=2, cache=cache)["total"] == 22 and len(cache) == 2
