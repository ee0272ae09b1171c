"""The scores store on SQLite and on a real PostgreSQL: atomic batches, replacement of a re-run,
interrupted writes, readers during a write, locked and unreachable stores.

PostgreSQL runs when TIERING_TEST_POSTGRES_URL is set (CI: .ci/run starts the server); with
TIERING_REQUIRE_SERVICES=1 a missing or unreachable server fails these tests instead of skipping.
Each PostgreSQL test works in its own schema, dropped afterwards.
"""

import datetime as dt
import os
import re
import sqlite3
import uuid
from urllib.parse import quote

import numpy as np
import pandas as pd
import pytest

from tiering.exceptions import ServiceUnavailableError, StoreError
from tiering.schemas import SCORES_COLUMNS, TIERS
from tiering.store import ScoresStore, normalize_url

PG_URL = os.environ.get("TIERING_TEST_POSTGRES_URL")
REQUIRE = os.environ.get("TIERING_REQUIRE_SERVICES") == "1"


def scores_frame(n=500, as_of=dt.date(2025, 1, 1), version="1", seed=0):
    rng = np.random.default_rng(seed)
    tiers = rng.choice(list(TIERS), n)
    df = pd.DataFrame({
        "customer_id": [f"C{i:05d}" for i in range(n)], "as_of": as_of, "horizon_days": 180,
        "p_purchase": rng.random(n), "churn_risk": rng.random(n), "p_alive": rng.random(n),
        "expected_purchases": rng.random(n) * 3, "expected_spend": rng.random(n) * 50, "clv": rng.random(n) * 500,
        "engagement_score": rng.random(n), "tier": tiers, "tier_reason": "because", "next_tier": tiers,
        "next_tier_proba": rng.random(n), "rfm_segment": "Champions", "r_score": 5, "f_score": 4, "m_score": 3,
        "koc_candidate": rng.random(n) < 0.1, "at_risk": rng.random(n) < 0.2, "model_name": "customer-tiering",
        "model_version": version, "scored_at": pd.Timestamp("2025-01-02 03:00"),
    })
    proba = rng.dirichlet(np.ones(len(TIERS)), n)
    df["lapsed_buyer"] = rng.random(n) < 0.15
    df["koc_score"] = rng.random(n)
    df["clv_p10"] = df["clv"] * 0.2
    df["clv_p90"] = df["clv"] * 2.5
    for j, t in enumerate(TIERS):
        df[f"p_{t}"] = proba[:, j]
    df.loc[0, "churn_risk"] = np.nan
    df.loc[1, "tier_reason"] = ""
    return df[list(SCORES_COLUMNS)]


def chunks_of(df, size):
    return [df.iloc[i:i + size] for i in range(0, len(df), size)]


def _pg_schema_url():
    """A fresh schema on the test server; yields its URL, drops it afterwards."""
    if not PG_URL:
        if REQUIRE:
            pytest.fail("TIERING_REQUIRE_SERVICES=1 but TIERING_TEST_POSTGRES_URL is not set (.ci/run sets it).")
        pytest.skip("set TIERING_TEST_POSTGRES_URL (bash .ci/start-postgres) to run the PostgreSQL store tests")
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(normalize_url(PG_URL), connect_args={"connect_timeout": 5})
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    except Exception as exc:
        admin.dispose()
        msg = f"PostgreSQL at {PG_URL} is not usable: {str(exc).splitlines()[0]}"
        if REQUIRE:
            pytest.fail(msg)
        pytest.skip(msg)
    sep = "&" if "?" in PG_URL else "?"
    yield f"{normalize_url(PG_URL)}{sep}options={quote(f'-csearch_path={schema}')}", schema
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/scores.db"
    else:
        gen = _pg_schema_url()
        pg_url, _ = next(gen)
        yield pg_url
        next(gen, None)


@pytest.fixture
def store(url):
    s = ScoresStore(url)
    yield s
    s.engine.dispose()


def test_round_trip_and_latest(store):
    df = scores_frame()
    batch = store.write_batch(df)
    assert batch.rows == 500
    back = store.read_batch(store.latest_batch())
    assert list(back.columns) == list(SCORES_COLUMNS)
    assert back["customer_id"].tolist() == df["customer_id"].tolist()
    np.testing.assert_allclose(back["clv"], df["clv"])
    assert back["churn_risk"].isna().sum() == 1
    assert back.loc[1, "tier_reason"] == "" and back.loc[2, "tier_reason"] == "because"
    assert back["koc_candidate"].tolist() == df["koc_candidate"].tolist()
    assert pd.Timestamp(back.loc[0, "scored_at"]) == pd.Timestamp("2025-01-02 03:00")
    assert batch.finished_at == dt.datetime(2025, 1, 2, 3, 0)
    row = store.get_customer("C00003")
    assert row["tier"] == df.loc[3, "tier"] and row["model_version"] == "1"
    assert store.get_customer("nobody") is None


def test_write_chunks_streams_one_batch(store):
    df = scores_frame(n=1000)
    seen = []
    batch = store.write_chunks(chunks_of(df, 300), as_of=dt.date(2025, 1, 1), model_name="customer-tiering",
                               model_version="1", scored_at=dt.datetime(2025, 1, 2, 3), on_chunk=seen.append)
    assert seen == [300, 600, 900, 1000] and batch.rows == 1000
    assert store.latest_batch().rows == 1000
    np.testing.assert_allclose(store.read_batch(batch)["p_purchase"], df["p_purchase"])


def test_rerun_replaces_and_history_keeps_other_dates(store):
    store.write_batch(scores_frame(as_of=dt.date(2024, 12, 1)))
    store.write_batch(scores_frame())
    store.write_batch(scores_frame(seed=5))  # same as_of and version: replaces
    assert [(b.as_of, b.rows) for b in store.batches_list()] == [(dt.date(2024, 12, 1), 500), (dt.date(2025, 1, 1), 500)]
    assert len(store.customer_history("C00001")) == 2
    np.testing.assert_allclose(store.read_batch(store.latest_batch())["clv"], scores_frame(seed=5)["clv"])


def test_failed_write_leaves_previous_batch(store):
    store.write_batch(scores_frame())
    bad = scores_frame(seed=9)
    bad.loc[10, "customer_id"] = bad.loc[11, "customer_id"]  # violates the unique index mid-batch
    with pytest.raises(StoreError, match=r"Nothing was written; the previous scores are intact\. A customer appears twice"):
        store.write_batch(bad)
    np.testing.assert_allclose(store.read_batch(store.latest_batch())["clv"], scores_frame()["clv"])
    assert len(store.batches_list()) == 1


def test_interrupted_run_leaves_previous_scores_and_readers_see_only_complete_batches(store, url):
    before = scores_frame()
    store.write_batch(before)
    reader = ScoresStore(url)
    seen_mid_write = []

    def chunks():
        new = scores_frame(seed=7)
        for i, chunk in enumerate(chunks_of(new, 200)):
            if i == 1:  # one chunk of the re-run is in: another connection still sees the old batch, whole
                latest = reader.latest_batch()
                seen_mid_write.append((latest.rows, reader.read_batch(latest)["clv"].to_numpy()))
            if i == 2:
                raise RuntimeError("killed mid-write")
            yield chunk

    with pytest.raises(RuntimeError, match="killed mid-write"):
        store.write_chunks(chunks(), as_of=dt.date(2025, 1, 1), model_name="customer-tiering", model_version="1",
                           scored_at=dt.datetime(2025, 1, 3))
    (rows, clv), = seen_mid_write
    assert rows == 500
    np.testing.assert_allclose(clv, before["clv"])
    for s in (store, reader):
        assert len(s.batches_list()) == 1
        np.testing.assert_allclose(s.read_batch(s.latest_batch())["clv"], before["clv"])
    reader.engine.dispose()


def test_readers_see_the_latest_complete_batch(store):
    store.write_batch(scores_frame(as_of=dt.date(2024, 12, 1)))
    store.write_batch(scores_frame(as_of=dt.date(2025, 1, 1), seed=2))
    with pytest.raises(StoreError, match="The scores frame is empty"):
        store.write_chunks(iter([]), as_of=dt.date(2025, 2, 1), model_name="customer-tiering", model_version="1",
                           scored_at=dt.datetime(2025, 2, 2))
    latest = store.latest_batch()
    assert latest.as_of == dt.date(2025, 1, 1)
    assert store.previous_batch(latest).as_of == dt.date(2024, 12, 1)
    assert store.latest_batch(dt.date(2024, 12, 1)).as_of == dt.date(2024, 12, 1)


def test_chunk_of_another_batch_is_refused(store):
    df = scores_frame()
    with pytest.raises(StoreError, match=r"expected model_version '2', got \['1'\]"):
        store.write_chunks([df], as_of=dt.date(2025, 1, 1), model_name="customer-tiering", model_version="2",
                           scored_at=dt.datetime(2025, 1, 2))
    assert store.batches_list() == []


def test_lists_counts_and_migration(store):
    a = scores_frame(as_of=dt.date(2024, 12, 1))
    b = scores_frame(seed=1)
    store.write_batch(a)
    store.write_batch(b)
    latest = store.latest_batch()
    core = store.list_tier("core", limit=None)
    assert len(core) == (b["tier"] == "core").sum() and core["clv"].is_monotonic_decreasing
    assert len(store.list_tier("core", at_risk=True, limit=None)) == ((b["tier"] == "core") & b["at_risk"]).sum()
    counts = store.tier_counts(latest)
    assert counts["customers"].sum() == 500 and counts["share"].sum() == pytest.approx(1)
    mig = store.migration(store.previous_batch(latest), latest)
    assert mig.to_numpy().sum() == 500
    assert mig.loc["core", "value"] == ((a["tier"] == "core") & (b["tier"] == "value")).sum()


def test_clear_errors(store, tmp_path):
    with pytest.raises(StoreError, match=r"holds no batch\. Run `tiering predict --as-of DATE` first"):
        store.latest_batch()
    with pytest.raises(StoreError, match=r"Unknown tier 'gold'; tiers are \['core', 'value', 'seed', 'new', 'ordinary'\]"):
        store.write_batch(scores_frame()) and store.list_tier("gold")
    with pytest.raises(StoreError, match=r"The scores frame is empty: nothing to write"):
        store.write_batch(scores_frame().iloc[:0])
    with pytest.raises(StoreError, match=r"does not exist yet\. Run `tiering predict`"):
        ScoresStore(f"sqlite:///{tmp_path}/none.db", create=False)


def test_locked_sqlite_store_is_a_clear_error(tmp_path):
    url = f"sqlite:///{tmp_path}/scores.db"
    ScoresStore(url).write_batch(scores_frame())
    other = sqlite3.connect(tmp_path / "scores.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
    try:
        store = ScoresStore(url, lock_timeout_s=0.2)
        assert store.latest_batch().rows == 500  # readers are not blocked (WAL)
        with pytest.raises(StoreError, match=r"database is locked\. Nothing was written.*Another process holds the write lock"):
            store.check_writable()
        with pytest.raises(StoreError, match=r"database is locked\. Nothing was written"):
            store.write_batch(scores_frame(seed=3))
    finally:
        other.execute("ROLLBACK")
        other.close()
    np.testing.assert_allclose(store.read_batch(store.latest_batch())["clv"], scores_frame()["clv"])


def test_unreachable_postgres_is_a_clear_error():
    with pytest.raises(StoreError, match=r"Cannot reach the scores store 'postgresql\+psycopg://tiering:\*\*\*@127\.0\.0\.1:9/tiering'.*"
                                         r"Check store\.url and that the database is running"):
        ScoresStore("postgresql://tiering:secret@127.0.0.1:9/tiering", lock_timeout_s=2)


# ---- faults: corrupt files, locked and unreachable stores, no file made by a refusal ------------------
def _written_store(tmp_path, n=3_000):
    """A SQLite store of one batch, checkpointed into its main file (no -wal left), and its path."""
    path = tmp_path / "scores.db"
    store = ScoresStore(f"sqlite:///{path}")
    store.write_batch(scores_frame(n=n))
    store.engine.dispose()  # the last connection checkpoints the WAL into the file
    assert not path.with_name("scores.db-wal").exists()
    return path


CORRUPT = (r"The scores store file .*scores\.db is not a valid SQLite database or is corrupted \((database disk image is "
           r"malformed|file is not a database)\); it cannot be read or written as it is\. Restore it from a backup, or move it "
           r"aside \(mv .*scores\.db .*scores\.db\.corrupt\) and re-run `tiering predict --as-of DATE`")


@pytest.mark.parametrize("damage", ["truncated", "overwritten_mid_file", "overwritten_header"])
def test_corrupt_sqlite_store_is_reported_as_such(tmp_path, damage):
    path = _written_store(tmp_path)
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "overwritten_mid_file":
        mid = len(data) // 2
        data[mid - 40_000: mid + 40_000] = os.urandom(80_000)
        path.write_bytes(bytes(data))
    else:
        data[:4096] = b"\xff" * 4096
        path.write_bytes(bytes(data))
    size = path.stat().st_size
    url = f"sqlite:///{path}"
    with pytest.raises(StoreError) as info:
        store = ScoresStore(url, create=False)  # a damaged header fails here; damaged pages when they are read
        store.read_batch(store.latest_batch())
    assert re.search(CORRUPT, str(info.value)) and "intact" not in str(info.value)
    with pytest.raises(StoreError) as info:
        writer = ScoresStore(url)
        writer.write_batch(scores_frame(seed=4))
    assert re.search(CORRUPT, str(info.value)) and "intact" not in str(info.value)
    assert not isinstance(info.value, ServiceUnavailableError)
    assert path.stat().st_size == size  # the damaged file is left for the operator to inspect


def test_read_only_open_never_creates_a_file(tmp_path):
    path = tmp_path / "sub" / "scores.db"
    with pytest.raises(StoreError, match=r"does not exist yet\. Run `tiering predict`"):
        ScoresStore(f"sqlite:///{path}", create=False)
    assert not path.parent.exists()
    # removed after it was opened: a read fails instead of making an empty database in its place
    made = _written_store(tmp_path)
    store = ScoresStore(f"sqlite:///{made}", create=False)
    store.engine.dispose()
    made.unlink()
    with pytest.raises(StoreError, match=r"Reading the scores store .* failed: unable to open database file"):
        store.batches_list()
    assert list(tmp_path.glob("scores.db*")) == []


def test_an_empty_file_is_not_a_store(tmp_path):
    path = tmp_path / "scores.db"
    path.write_bytes(b"")
    with pytest.raises(StoreError, match=r"no such table: score_batches\. It holds no tiering scores tables \(an empty file or "
                                         r"another application's database\)"):
        ScoresStore(f"sqlite:///{path}", create=False)


def test_store_created_on_first_write_only(tmp_path):
    """create="on_write": a run refused before its first row leaves no store file behind."""
    path = tmp_path / "new" / "scores.db"
    store = ScoresStore(f"sqlite:///{path}", create="on_write")
    store.check_writable()
    with pytest.raises(StoreError, match="The scores frame is empty"):
        store.write_chunks(iter([scores_frame().iloc[:0]]), as_of=dt.date(2025, 1, 1), model_name="customer-tiering",
                           model_version="1", scored_at=dt.datetime(2025, 1, 2))
    with pytest.raises(RuntimeError, match="scoring failed"):
        store.write_chunks(_failing_chunks(), as_of=dt.date(2025, 1, 1), model_name="customer-tiering",
                           model_version="1", scored_at=dt.datetime(2025, 1, 2))
    assert not path.parent.exists()
    assert store.write_batch(scores_frame()).rows == 500 and path.exists()
    assert ScoresStore(f"sqlite:///{path}", create=False).latest_batch().rows == 500
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "ro"
        locked.mkdir(mode=0o500)
        with pytest.raises(StoreError, match=r"cannot be created: the folder .*ro cannot be written"):
            ScoresStore(f"sqlite:///{locked}/scores.db", create="on_write").check_writable()


def _failing_chunks():
    raise RuntimeError("scoring failed")
    yield  # pragma: no cover


def test_locked_and_unreachable_stores_are_service_unavailable(tmp_path):
    path = _written_store(tmp_path, n=100)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        store = ScoresStore(f"sqlite:///{path}", lock_timeout_s=0.1)
        with pytest.raises(ServiceUnavailableError, match=r"database is locked\. Nothing was written; the previous scores are "
                                                          r"intact\. Another process holds the write lock \(waited 0\.1 s"):
            store.write_batch(scores_frame(seed=3))
    finally:
        other.execute("ROLLBACK")
        other.close()
    for create in (True, False):
        with pytest.raises(ServiceUnavailableError, match=r"Cannot reach the scores store 'postgresql\+psycopg://tiering:\*\*\*@"
                                                          r"127\.0\.0\.1:9/tiering'.*retry when it is back"):
            ScoresStore("postgresql://tiering:secret@127.0.0.1:9/tiering", create=create, lock_timeout_s=1)


def _old_store(url):
    """A store as an older tiering created it: scores without the tier policy's columns, batches without
    flips_avoided, holding one batch."""
    import sqlalchemy as sa

    from tiering.schemas import TIER_SCORE_COLUMNS
    from tiering.store import _metadata

    md, batches, scores = _metadata({"scores": frozenset(TIER_SCORE_COLUMNS), "score_batches": frozenset({"flips_avoided"})})
    assert "koc_score" not in scores.c and "flips_avoided" not in batches.c
    engine = sa.create_engine(url)
    md.create_all(engine)
    old = scores_frame(20, as_of=dt.date(2024, 12, 1))
    with engine.begin() as conn:
        bid = conn.execute(batches.insert().values(as_of=dt.date(2024, 12, 1), model_name="customer-tiering",
                                                    model_version="1", rows=20,
                                                    finished_at=dt.datetime(2024, 12, 2))).inserted_primary_key[0]
        rows = old.drop(columns=["as_of", "model_name", "model_version", *TIER_SCORE_COLUMNS]).assign(batch_id=bid)
        rows["scored_at"] = dt.datetime(2024, 12, 2)
        rows = rows.astype(object).where(rows.notna(), None)
        conn.execute(scores.insert(), rows.to_dict("records"))
    engine.dispose()
    return old


def test_a_store_created_before_the_tier_policy_columns_is_upgraded_on_write(url):
    import sqlalchemy as sa

    from tiering.schemas import TIER_SCORE_COLUMNS

    _old_store(url)
    reader = ScoresStore(url, create=False, read_only=True)  # read-only: not upgraded, the new columns read None
    assert reader.missing_columns == {"scores": frozenset(TIER_SCORE_COLUMNS), "score_batches": frozenset({"flips_avoided"})}
    old_batch = reader.latest_batch()
    assert old_batch.flips_avoided is None and len(reader.read_batch(old_batch)) == 20
    assert reader.read_batch(old_batch)[list(TIER_SCORE_COLUMNS)].isna().all().all()
    assert reader.get_customer("C00003")["koc_score"] is None
    reader.engine.dispose()

    store = ScoresStore(url)  # opened for writing: the columns are added
    assert store.missing_columns == {}
    cols = {c["name"] for c in sa.inspect(store.engine).get_columns("scores")}
    assert set(TIER_SCORE_COLUMNS) <= cols
    assert "flips_avoided" in {c["name"] for c in sa.inspect(store.engine).get_columns("score_batches")}
    old = store.read_batch(store.latest_batch())
    assert len(old) == 20 and old[list(TIER_SCORE_COLUMNS)].isna().all().all()  # older batches: nulls

    df = scores_frame(50, as_of=dt.date(2025, 1, 1))
    batch = store.write_chunks(chunks_of(df, 20), as_of=dt.date(2025, 1, 1), model_name="customer-tiering",
                               model_version="1", scored_at=pd.Timestamp("2025-01-02 03:00").to_pydatetime(),
                               flips_avoided=lambda: 7)
    assert batch.flips_avoided == 7 and store.latest_batch().flips_avoided == 7
    back = store.read_batch(store.latest_batch())
    assert back["lapsed_buyer"].tolist() == df["lapsed_buyer"].tolist()
    np.testing.assert_allclose(back["koc_score"].astype(float), df["koc_score"])
    np.testing.assert_allclose(back["p_seed"].astype(float), df["p_seed"])
    assert [b.flips_avoided for b in store.batches_list()] == [None, 7]
    ScoresStore(url)  # a second open of an upgraded store changes nothing
    store.engine.dispose()


# ---- the listing order and keyset pages ------------------------------------------------------------------
def listing_frame(n=400, seed=5):
    """Scores with the cases a keyset walk can get wrong: runs of equal CLVs, NULL CLVs, floats whose decimal
    form does not round-trip in few digits, a negative and an infinite CLV."""
    df = scores_frame(n, seed=seed)
    rng = np.random.default_rng(seed)
    clv = rng.choice([0.1 + 0.2, 1 / 3, 2.0, 5e-324, 1e300, -7.25, np.inf], n).astype(float)
    clv[rng.random(n) < 0.4] = rng.random()  # one more big tie, of a value with 17 significant digits
    clv[rng.random(n) < 0.15] = np.nan
    df["clv"] = clv
    df["tier"] = rng.choice(["core", "value"], n)
    return df


def listing_want(df, tier=None, at_risk=None):
    """The listing order in pandas: CLV high to low, NULL last, ties (and NULLs) by customer id."""
    sel = df if tier is None else df[df["tier"] == tier]
    sel = sel if at_risk is None else sel[sel["at_risk"] == at_risk]
    return sel.sort_values(["clv", "customer_id"], ascending=[False, True], na_position="last")["customer_id"].tolist()


def test_keyset_walk_returns_every_member_once_in_the_unpaged_order(store):
    df = listing_frame()
    store.write_batch(df)
    for tier, at_risk in (("core", None), ("value", True), (None, None)):
        whole = store.list_tier(tier, at_risk=at_risk, limit=None)["customer_id"].tolist()
        assert whole == listing_want(df, tier, at_risk)  # NULL CLVs last on both databases
        for size in (1, 7, 50):
            got, after = [], None
            while True:
                page = store.list_tier(tier, at_risk=at_risk, limit=size, after=after)
                if page.empty:
                    break
                got += page["customer_id"].tolist()
                last = page.iloc[-1]
                after = (None if pd.isna(last["clv"]) else float(last["clv"]), last["customer_id"])
            assert got == whole, (tier, at_risk, size)
        assert store.list_tier(tier, at_risk=at_risk, limit=5, offset=3)["customer_id"].tolist() == whole[3:8]
    with pytest.raises(StoreError, match="offset or an `after` position, not both"):
        store.list_tier("core", offset=1, after=(1.0, "C00001"))


def test_listing_index_is_made_and_used(store):
    import sqlalchemy as sa

    from tiering.store import LISTING_INDEX

    store.write_batch(listing_frame())
    names = {ix["name"] for ix in sa.inspect(store.engine).get_indexes("scores")}
    assert LISTING_INDEX in names and "ix_scores_batch_tier" not in names  # the new index covers (batch_id, tier)
    keyset = ("SELECT customer_id FROM scores WHERE batch_id = 1 AND tier = 'core' AND clv <= 2.0 "
              "AND (clv < 2.0 OR customer_id > 'C00100') ORDER BY clv DESC NULLS LAST, customer_id LIMIT 50")
    nulls = ("SELECT customer_id FROM scores WHERE batch_id = 1 AND tier = 'core' AND clv IS NULL AND customer_id > 'C00100' "
             "ORDER BY clv DESC NULLS LAST, customer_id LIMIT 50")
    offset = ("SELECT customer_id FROM scores WHERE batch_id = 1 AND tier = 'core' "
              "ORDER BY clv DESC NULLS LAST, customer_id LIMIT 50 OFFSET 100")
    with store.engine.connect() as conn:
        for sql in (keyset, nulls, offset):
            if store.dialect == "sqlite":
                plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
                assert LISTING_INDEX in plan and "TEMP B-TREE" not in plan, plan  # a seek in index order, no sort
            else:
                conn.exec_driver_sql("ANALYZE scores")
                # a table this small is cheaper to read and sort: with sorting priced out, a plan without a Sort
                # exists only if the index serves the order
                conn.exec_driver_sql("SET enable_sort = off")
                plan = " ".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + sql))
                assert LISTING_INDEX in plan and "Sort" not in plan, plan


def test_an_older_store_gets_the_listing_index_when_opened_for_writing(url):
    import sqlalchemy as sa

    from tiering.store import LISTING_INDEX

    _old_store(url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # as older tierings made it
        conn.exec_driver_sql("CREATE INDEX ix_scores_batch_tier ON scores (batch_id, tier)")
    engine.dispose()
    reader = ScoresStore(url, create=False, read_only=True)  # a reader changes nothing
    assert LISTING_INDEX not in {ix["name"] for ix in sa.inspect(reader.engine).get_indexes("scores")}
    assert len(reader.list_tier(None, limit=None)) == 20  # and still lists, by a sort
    reader.engine.dispose()
    store = ScoresStore(url)
    names = {ix["name"] for ix in sa.inspect(store.engine).get_indexes("scores")}
    assert {LISTING_INDEX, "ix_scores_batch_tier"} <= names
    assert store.list_tier(None, limit=None)["customer_id"].tolist() == listing_want(store.read_batch(store.latest_batch()))
    ScoresStore(url).engine.dispose()  # opened again: nothing to do
    store.engine.dispose()
