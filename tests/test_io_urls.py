"""Paths and URLs in tiering.io without Spark: what counts as a URL, how one is shown (secrets masked), and the
duckdb engine with URLs (a file:// URL is its local file; other URLs are refused with what to do).
Spark's side, through Hadoop's FileSystem: tests/test_spark_urls.py."""

import datetime as dt

import pandas as pd
import pytest

from tiering.config import SourceConfig
from tiering.datasets import simulate
from tiering.exceptions import ConfigError
from tiering.io import connect, display_path, explain_read_error, is_url, join_path, read_source, remove_output, write_table
from tiering.io._fs import check_url, local_path, redact_url_text


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("io_urls")
    data = simulate(60, dt.date(2024, 1, 1), dt.date(2024, 6, 30), seed=5)
    data.transactions.to_parquet(root / "transactions.parquet", index=False)
    data.interactions.to_csv(root / "interactions.csv", index=False)
    return root


@pytest.mark.parametrize(
    ("path", "url"),
    [("s3a://bucket/tx.parquet", True), ("abfss://c@acct.dfs.core.windows.net/tx", True), ("hdfs:///data/tx", True),
     ("file:///tmp/tx.parquet", True), ("file:/tmp/tx.parquet", True), ("/tmp/tx.parquet", False), ("data/tx.parquet", False),
     ("C:/data/tx.parquet", False), ("tx:1.parquet", False)],
)  # fmt: skip
def test_what_is_a_url(path, url):
    assert is_url(path) is url


def test_a_url_is_shown_without_its_password_or_query():
    assert display_path("s3a://AKIA:s3cr3t@bucket/tx.parquet") == "s3a://AKIA:***@bucket/tx.parquet"
    assert display_path("https://acct.blob.core.windows.net/c/tx.parquet?sv=2024&sig=abc%2Fdef") == (
        "https://acct.blob.core.windows.net/c/tx.parquet?***"
    )
    assert display_path("data/tx:1?.parquet") == "data/tx:1?.parquet"  # a local name is shown as it is
    url = "https://host/tx.parquet?sv=2024&sig=abc%2Fdef"
    engine_text = "HTTP 403 for https://host/tx.parquet?sv=2024&sig=abc/def (signature abc%2Fdef)"
    assert "abc" not in redact_url_text(engine_text, url)


def test_a_url_that_lost_its_double_slash_is_refused():
    """pathlib makes s3:/bucket/key of s3://bucket/key; file:/path is Hadoop's own form and stays."""
    with pytest.raises(ConfigError, match=r"one slash after 's3:'; a s3 URL needs two \(s3://bucket-or-host/path\)"):
        check_url("s3:/bucket/tx.parquet", "transactions source")
    check_url("file:/tmp/tx.parquet", "transactions source")


def test_join_and_local_path():
    assert join_path("s3a://bucket/q/", "transactions.parquet") == "s3a://bucket/q/transactions.parquet"
    assert join_path("https://h/q?sig=x", "t.parquet") == "https://h/q/t.parquet?sig=x"
    assert str(join_path("outputs/q", "t.parquet")) == "outputs/q/t.parquet"
    assert str(local_path("file:///data/a%20b/t.parquet")) == "/data/a b/t.parquet"
    with pytest.raises(ConfigError, match="names the host 'nas'"):
        local_path("file://nas/data/t.parquet")


def test_duckdb_reads_a_file_url_as_its_local_file(files):
    con = connect("duckdb")
    for name, table in (("transactions.parquet", "transactions"), ("interactions.csv", "interactions")):
        plain = read_source(con, SourceConfig(path=str(files / name)), table).to_pandas()
        url = read_source(con, SourceConfig(path=(files / name).as_uri()), table).to_pandas()
        pd.testing.assert_frame_equal(plain, url)
    with pytest.raises(ConfigError, match=f"The transactions source '{files}/nope.parquet' does not exist"):
        read_source(con, SourceConfig(path=(files / "nope.parquet").as_uri()), "transactions")


def test_duckdb_refuses_a_url_it_cannot_read_with_what_to_do():
    con = connect("duckdb")
    with pytest.raises(ConfigError) as err:
        read_source(con, SourceConfig(path="hdfs://etl:pa55word@namenode:8020/tx.parquet"), "transactions")
    text = str(err.value)
    assert text.startswith("The transactions source 'hdfs://etl:***@namenode:8020/tx.parquet' is a URL, and the duckdb engine")
    assert "pa55word" not in text and "--engine spark" in text
    with pytest.raises(ConfigError, match="reads no CSV at a URL"):
        read_source(con, SourceConfig(path="s3://bucket/interactions.csv"), "interactions")


def test_duckdb_writes_a_file_url_and_refuses_other_urls(files, tmp_path):
    con = connect("duckdb")
    expr = con.read_parquet(str(files / "transactions.parquet"))
    written = write_table(expr, (tmp_path / "out" / "t.csv").as_uri())
    assert written == len(pd.read_csv(tmp_path / "out" / "t.csv")) == expr.count().execute()
    with pytest.raises(ConfigError, match=r"Cannot write 's3a://k:\*\*\*@bucket/t.parquet': the duckdb engine writes local files only"):
        write_table(expr, "s3a://k:secret@bucket/t.parquet")


def test_remove_output_removes_files_and_spark_folders_only(tmp_path):
    (tmp_path / "a.parquet").write_bytes(b"x")
    (tmp_path / "spark.parquet").mkdir()
    (tmp_path / "spark.parquet" / "_SUCCESS").write_bytes(b"")
    (tmp_path / "mine").mkdir()
    remove_output(tmp_path / "a.parquet")
    remove_output((tmp_path / "spark.parquet").as_uri())  # a file: URL without Spark: its local path
    remove_output(tmp_path / "mine")
    remove_output(tmp_path / "never-there.parquet")
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]


def test_read_errors_name_a_url_without_its_secrets():
    source = SourceConfig(path="s3a://AKIA:topsecret@bucket/tx.csv")
    exc = RuntimeError("Malformed CSV record at s3a://AKIA:topsecret@bucket/tx.csv")
    text = str(explain_read_error(exc, "transactions", source))
    assert "topsecret" not in text and "'s3a://AKIA:***@bucket/tx.csv' could not be read" in text


@pytest.mark.parametrize("engine", ["duckdb", pytest.param("spark", marks=pytest.mark.spark)])
def test_quarantine_at_a_file_url(tmp_path, engine, request):
    """validation.quarantine_dir given as a file:// URL: the bad rows are written there, named by the URL, and a stale
    file is removed once the source is clean (on Spark through Hadoop's FileSystem)."""
    from tiering import jobs
    from tiering.config import Config

    if engine == "spark":
        request.getfixturevalue("spark_engine")
    data = simulate(100, dt.date(2024, 1, 1), dt.date(2024, 12, 31), seed=2)
    tx = pd.concat([data.transactions, data.transactions.iloc[:3]], ignore_index=True)  # three duplicate lines
    tx.to_parquet(tmp_path / "tx.parquet", index=False)
    cfg = Config().with_sources(transactions=(tmp_path / "tx.parquet").as_uri())
    cfg.features.engine = engine
    cfg.validation.quarantine_dir = (tmp_path / "q").as_uri()
    report = jobs.validate(cfg, as_of=dt.date(2024, 12, 31)).reports[0]
    assert report.quarantine_path == (tmp_path / "q" / "transactions.parquet").as_uri()
    assert len(pd.read_parquet(tmp_path / "q" / "transactions.parquet")) == report.rows_quarantined >= 3
    data.transactions.to_parquet(tmp_path / "tx.parquet", index=False)  # fixed: the stale quarantine file goes
    assert jobs.validate(cfg, as_of=dt.date(2024, 12, 31)).reports[0].quarantine_path is None
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == []
