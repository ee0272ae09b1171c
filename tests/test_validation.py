"""Contracts, column mapping and quarantine: every message asserted, every set-aside row counted."""

import datetime as dt

import pandas as pd
import pytest

from tiering.config import Config, SourceConfig, load_config
from tiering.exceptions import ConfigError, DataQualityError, SchemaError
from tiering.io import connect
from tiering.schemas import CUSTOMERS, INTERACTIONS, TRANSACTIONS
from tiering.validation import load_tables, validate_table


def _tx(**overrides):
    base = {
        "customer_id": ["a", "a", "b", "c", "d", "e"],
        "order_id": ["o1", "o2", "o3", "o4", "o5", "o6"],
        "ordered_at": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-01-05", "2024-01-07", "2024-01-08", "2024-01-09"]),
        "amount": [10.0, -5.0, 20.0, 30.0, 40.0, 50.0],
    }
    base.update(overrides)
    return pd.DataFrame(base)


def _validate(df, contract=TRANSACTIONS, mapping=None, **kw):
    con = connect()
    kw.setdefault("max_quarantine_share", 0.9)
    return validate_table(con.create_table("raw", df, overwrite=True), contract, mapping, source="test.parquet", **kw)


def test_clean_table_passes_and_refunds_are_kept():
    good, report = _validate(_tx())
    assert report.rows_in == report.rows_valid == 6
    assert report.quarantined == {}
    assert (good.to_pandas()["amount"] < 0).sum() == 1  # the refund stays, as a negative amount


def test_row_problems_are_quarantined_with_reasons(tmp_path):
    df = _tx(
        customer_id=["a", None, " ", "c", "d", "d"],
        amount=[10.0, 1.0, 2.0, float("inf"), 40.0, 40.0],
        order_id=["o1", "o2", "o3", "o4", "o5", "o5"],
        ordered_at=pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-08", "2024-01-08"]),
    )
    good, report = _validate(df, quarantine_dir=tmp_path)
    assert report.quarantined == {"missing_customer_id": 2, "non_finite_amount": 1, "duplicate_line": 1}
    assert report.rows_valid == 2 and report.rows_in == 6
    q = pd.read_parquet(tmp_path / "transactions.parquet")
    assert sorted(q["reason"]) == ["duplicate_line", "missing_customer_id", "missing_customer_id", "non_finite_amount"]
    assert {"raw_customer_id", "raw_amount", "raw_ordered_at"} <= set(q.columns)
    assert len(good.to_pandas()) == 2


def test_quarantine_keeps_each_rows_raw_values_as_text(tmp_path):
    # rows marked after typing (a repeat, an order naming two customers) keep their source values too, also where
    # the value equals its typed form (the typed stage leaves those out and the last stage restores them)
    df = _tx(
        customer_id=["a", " x", "y", "c", "d", "d"],
        order_id=["o1", "o7", "o7", "o4", "o5", "o5"],
        amount=[10.0, 1.5, 2.0, float("inf"), 40.0, 40.0],
        ordered_at=pd.to_datetime(["2024-01-01 00:00", "2024-01-02 00:00", "2024-01-03 00:00", "2024-01-04 00:00", "2024-01-08 10:30", "2024-01-08 10:30"]),
    )
    _, report = _validate(df, quarantine_dir=tmp_path)
    assert report.quarantined == {"conflicting_order_customer": 2, "duplicate_line": 1, "non_finite_amount": 1}
    q = pd.read_parquet(tmp_path / "transactions.parquet").sort_values("raw_customer_id")
    columns = ["reason", "raw_customer_id", "raw_order_id", "raw_ordered_at", "raw_amount"]
    assert q[columns].values.tolist() == [
        ["conflicting_order_customer", " x", "o7", "2024-01-02 00:00:00", "1.5"],
        ["non_finite_amount", "c", "o4", "2024-01-04 00:00:00", "inf"],
        ["duplicate_line", "d", "o5", "2024-01-08 10:30:00", "40.0"],
        ["conflicting_order_customer", "y", "o7", "2024-01-03 00:00:00", "2.0"],
    ]


def test_text_timestamps_and_amounts_parse_or_are_set_aside():
    df = _tx(ordered_at=["2024-01-01", "not a date", "2024-01-05 10:00:00", None, "2024-01-08", "2024-01-09"],
             amount=["10.5", "1", "abc", "3", "", "7"])
    good, report = _validate(df)
    assert report.quarantined == {"unparseable_time": 1, "missing_time": 1, "unparseable_amount": 1, "missing_amount": 1}
    out = good.to_pandas()
    assert sorted(out["amount"]) == [7.0, 10.5]
    assert str(out["ordered_at"].dtype).startswith("datetime64")


def test_after_as_of_is_set_aside_only_when_asked():
    _, report = _validate(_tx(), as_of=dt.date(2024, 1, 8))
    assert report.quarantined == {"after_as_of": 2}  # 2024-02-01 and 2024-01-09; the whole as_of day is in
    _, report = _validate(_tx())
    assert report.quarantined == {}


def test_missing_column_names_table_column_found_and_key():
    df = pd.DataFrame({"cust": ["a"], "ts": pd.to_datetime(["2024-01-01"]), "amt": [1.0], "order_id": ["x"]})
    with pytest.raises(SchemaError, match=r"The transactions table is missing column 'customer_id'\. Got columns "
                       r"\['cust', 'ts', 'amt', 'order_id'\]\. Map a source column under data\.transactions\.columns\.customer_id"):
        _validate(df)


def test_all_text_amount_is_a_schema_error_with_examples():
    df = _tx(amount=["ten", "five", "x", "y", "z", "w"])
    with pytest.raises(SchemaError, match=r"column 'amount' holds text that does not parse as numbers; e\.g\. \['ten', 'five', 'x'\]\. "
                       r"Fix the source 'test\.parquet' or map another column under data\.transactions\.columns\.amount"):
        _validate(df)


def test_wrong_type_is_a_schema_error():
    df = _tx(ordered_at=[1, 2, 3, 4, 5, 6])
    with pytest.raises(SchemaError, match=r"column 'ordered_at' has type int64; expected a timestamp"):
        _validate(df)


def test_mapping_with_expression_and_backticks():
    raw = pd.DataFrame({"Customer ID": [1, 2, None], "Invoice": ["i1", "C2", "i3"], "InvoiceDate": pd.to_datetime(["2024-01-01"] * 3),
                        "Quantity": [2, -1, 3], "Price": [1.5, 4.0, 2.0]})
    mapping = {"customer_id": "`Customer ID`", "order_id": "Invoice", "ordered_at": "InvoiceDate", "amount": "Quantity * Price"}
    good, report = _validate(raw, mapping=mapping)
    out = good.to_pandas().sort_values("order_id")
    assert list(out["amount"]) == [-4.0, 3.0] and list(out["customer_id"]) == ["2", "1"]
    assert report.quarantined == {"missing_customer_id": 1}


def test_mapping_errors_name_the_config_key():
    raw = _tx()
    with pytest.raises(SchemaError, match=r"The transactions source has no column 'Quantity' \(used by data\.transactions\.columns\.amount = "
                       r"'Quantity \* Price'\)\. Got columns \['customer_id', 'order_id', 'ordered_at', 'amount'\]\. Fix data\.transactions"):
        _validate(raw, mapping={"amount": "Quantity * Price"})
    with pytest.raises(ConfigError, match=r"data\.transactions\.columns\.amount = 'amount; drop' is neither a column"):
        _validate(raw, mapping={"amount": "amount; drop"})
    with pytest.raises(ConfigError, match=r"uses something other than column names, numbers and \+ - \* /"):
        _validate(raw, mapping={"amount": "__import__('os')"})
    with pytest.raises(ConfigError, match=r"maps \['revenue'\], which are not columns of the transactions contract"):
        _validate(raw, mapping={"revenue": "amount"})


def test_too_many_bad_rows_stops_the_run():
    df = _tx(customer_id=[None, None, None, None, "a", "b"])
    with pytest.raises(DataQualityError, match=r"67% of the transactions rows from 'test\.parquet' were set aside as defective "
                       r"\(\{'missing_customer_id': 4\}\), above validation\.max_quarantine_share = 0\.5"):
        _validate(df, max_quarantine_share=0.5)


def test_rows_after_as_of_do_not_count_toward_the_guard():
    # scoring an early as_of on a long history sets most rows aside as after_as_of: not a defect
    _, report = _validate(_tx(), as_of=dt.date(2024, 1, 1), max_quarantine_share=0.5)
    assert report.quarantined["after_as_of"] >= 4 and report.rows_valid >= 1


def test_empty_table_is_refused():
    with pytest.raises(DataQualityError, match=r"The transactions table from 'test\.parquet' has no usable rows \(0 read"):
        _validate(_tx().iloc[:0])


def test_customers_duplicates_keep_earliest_join():
    df = pd.DataFrame({"customer_id": ["a", "a", "b"], "joined_at": pd.to_datetime(["2024-02-01", "2024-01-01", "2024-01-01"])})
    good, report = _validate(df, CUSTOMERS)
    assert report.quarantined == {"duplicate_customer": 1}
    out = good.to_pandas().set_index("customer_id")
    assert out.loc["a", "joined_at"] == pd.Timestamp("2024-01-01")


def test_interactions_need_event_type():
    df = pd.DataFrame({"customer_id": ["a", "b"], "occurred_at": pd.to_datetime(["2024-01-01", "2024-01-02"]), "event_type": ["view", None]})
    _, report = _validate(df, INTERACTIONS)
    assert report.quarantined == {"missing_event_type": 1}


def test_load_tables_reads_files_and_reports(tmp_path):
    path = tmp_path / "tx.csv"
    _tx().to_csv(path, index=False)
    cfg = Config().with_sources(transactions=path)
    cfg.validation.quarantine_dir = str(tmp_path / "q")
    tables = load_tables(cfg)
    assert tables.interactions is None and tables.customers is None
    assert tables.reports[0].rows_valid == 6


def test_features_memory_limit_reaches_duckdb(tmp_path):
    path = tmp_path / "tx.csv"
    _tx().to_csv(path, index=False)
    cfg = Config().with_sources(transactions=path)
    cfg.validation.quarantine_dir = str(tmp_path / "q")
    cfg.features.duckdb_memory_limit = "256MB"
    tables = load_tables(cfg)
    limit = tables.con.raw_sql("SELECT current_setting('memory_limit')").fetchone()[0]
    assert limit.replace(" ", "") in ("244.1MiB", "256.0MB", "256MB")
    assert tables.reports[0].rows_valid == 6


def test_default_memory_limit_follows_machine_and_base(tmp_path):
    """No limit configured: DuckDB gets tiering.io.auto_memory_limit (1 GiB floor, 48 B per input row up to one
    bucket, at most a quarter of RAM), not DuckDB's 80% of RAM; a configured limit is left alone."""
    from tiering.io import auto_memory_limit

    gib = 1 << 30
    assert auto_memory_limit(None, 64 * gib, threads=2) == "1024MiB"
    assert auto_memory_limit(20_000_000, 64 * gib, threads=2) == "1024MiB"  # 1M simulated customers on 2 cores
    assert auto_memory_limit(20_000_000, 128 * gib, threads=16) == "8192MiB"  # 512 MiB per thread: no thread only spills
    assert auto_memory_limit(100_000_000, 64 * gib, threads=2) == f"{48 * 100_000_000 >> 20}MiB"
    assert auto_memory_limit(10**9, 16 * gib, threads=2) == "4096MiB"  # a quarter of RAM
    assert auto_memory_limit(None, 16 * gib, threads=64) == "4096MiB"  # ... also for many threads
    assert auto_memory_limit(None, 2 * gib, threads=2) == "512MiB"
    assert auto_memory_limit(None, 512 << 20, threads=2) == "256MiB"  # never below 256 MiB
    path = tmp_path / "tx.csv"
    _tx().to_csv(path, index=False)
    cfg = Config().with_sources(transactions=path)
    cfg.validation.quarantine_dir = str(tmp_path / "q")
    tables = load_tables(cfg)
    limit = tables.con.raw_sql("SELECT current_setting('memory_limit')").fetchone()[0]
    assert limit.replace(" ", "") == auto_memory_limit(6).replace("MiB", ".0MiB").replace("1024.0MiB", "1.0GiB")
    own = connect("duckdb", memory_limit="300MB")
    assert own.raw_sql("SELECT current_setting('memory_limit')").fetchone()[0].replace(" ", "") in ("286.1MiB", "300.0MB")


def test_missing_source_file_and_missing_config():
    cfg = Config().with_sources(transactions="nope/tx.parquet")
    with pytest.raises(ConfigError, match=r"The transactions source 'nope/tx\.parquet' does not exist .* Fix data\.transactions\.path"):
        load_tables(cfg)
    with pytest.raises(ConfigError, match=r"No path is configured for the transactions table"):
        load_tables(Config())
    with pytest.raises(ConfigError, match=r"Config file 'missing\.yaml' does not exist"):
        load_config("missing.yaml")


def test_invalid_config_values_are_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  horizon_days: -3\n")
    with pytest.raises(ConfigError, match=r"model\.horizon_days: Input should be greater than 0 \(got -3\)"):
        load_config(p)
    p.write_text("modle: {}\n")
    with pytest.raises(ConfigError, match=r"modle: Extra inputs are not permitted"):
        load_config(p)


def test_default_config_maps_online_retail(monkeypatch):
    import pathlib

    monkeypatch.chdir(pathlib.Path(__file__).resolve().parents[1])
    cfg = load_config()
    assert cfg.data.transactions.columns["amount"] == "Quantity * Price"
    assert isinstance(cfg.data.transactions, SourceConfig)


@pytest.mark.slow
def test_online_retail_ii_counts_per_reason(tmp_path, monkeypatch):
    import pathlib

    monkeypatch.chdir(pathlib.Path(__file__).resolve().parents[1])
    cfg = load_config()
    cfg.validation.quarantine_dir = str(tmp_path)
    tables = load_tables(cfg)
    (report,) = tables.reports
    assert report.rows_in == 1_044_847
    assert report.quarantined["missing_customer_id"] == 235_287
    assert report.rows_valid + report.rows_quarantined == report.rows_in
    assert len(pd.read_parquet(tmp_path / "transactions.parquet")) == report.rows_quarantined
    t = tables.transactions
    assert int(t.filter(t.amount < 0).count().to_pandas()) > 0  # cancellations kept as negative amounts


def test_deferred_quarantine_writes_only_when_asked(tmp_path):
    path = tmp_path / "tx.csv"
    _tx(customer_id=["a", "NULL", "b", "c", "d", "e"]).to_csv(path, index=False)
    cfg = Config().with_sources(transactions=path)
    cfg.validation.quarantine_dir = str(tmp_path / "q")
    tables = load_tables(cfg, write_quarantine=False)
    assert tables.reports[0].quarantined == {"missing_customer_id": 1} and tables.reports[0].quarantine_path is None
    assert not (tmp_path / "q").exists()
    tables.write_quarantine(cfg.validation.quarantine_dir)
    q = pd.read_parquet(tmp_path / "q" / "transactions.parquet")
    assert q["raw_customer_id"].tolist() == ["NULL"] and q["reason"].tolist() == ["missing_customer_id"]
    assert tables.reports[0].quarantine_path == str(tmp_path / "q" / "transactions.parquet")


def test_as_of_before_the_data_is_refused_before_anything_is_written(tmp_path):
    path = tmp_path / "tx.parquet"
    _tx(customer_id=[None, "a", "b", "c", "d", "e"]).to_parquet(path)
    cfg = Config().with_sources(transactions=path)
    cfg.validation.quarantine_dir = str(tmp_path / "q")
    with pytest.raises(DataQualityError, match=r"No valid transaction in '.*tx\.parquet' is at or before as_of 2023-12-31: all 5 "
                       r"otherwise valid rows are later \(the first on 2024-01-05\)\. Choose an as_of on or after 2024-01-05\. "
                       r"Nothing was written\."):
        load_tables(cfg, as_of=dt.date(2023, 12, 31))  # the default mode writes, but not for a refused run
    assert not (tmp_path / "q").exists()


def test_float_ids_with_infinity_are_refused():
    df = _tx(customer_id=[1.0, 2.0, float("inf"), 3.0, 4.0, 5.0])
    with pytest.raises(SchemaError, match=r"column 'customer_id' holds ids as floating-point numbers and 1 of them are not whole "
                       r"numbers below 2\*\*53 \(e\.g\. \[inf\]\)"):
        _validate(df)


def test_text_ids_keep_leading_zeros_and_null_tokens_are_missing():
    good, report = _validate(_tx(customer_id=["007", "7", " 007 ", "None", "N/A", "é"]))
    assert report.quarantined == {"missing_customer_id": 2}
    assert sorted(good.to_pandas()["customer_id"]) == ["007", "007", "7", "é"]


def test_interactions_report_unknown_event_types():
    df = pd.DataFrame({"customer_id": ["a", "b", "c"], "occurred_at": pd.to_datetime(["2024-01-01"] * 3),
                       "event_type": ["view", "poke", "poke"]})
    _, report = _validate(df, INTERACTIONS)
    assert report.unknown_event_types == {"poke": 2} and report.quarantined == {}
    assert report.to_dict()["unknown_event_types"] == {"poke": 2}


def test_timestamp_format_reads_non_iso_text_times_and_survives_a_source_override(tmp_path):
    path = tmp_path / "tx.csv"
    path.write_text("customer_id,order_id,ordered_at,amount\n007,o1,12/1/2010 8:26,10.5\n7,o2,12/2/2010 18:00,3\n"
                    "8,o3,13/45/2010 1:00,4\n")
    cfg = Config.model_validate({"data": {"transactions": {"path": "unused.csv", "timestamp_format": "%m/%d/%Y %H:%M"}},
                                 "validation": {"quarantine_dir": str(tmp_path / "q")}}).with_sources(path)
    tables = load_tables(cfg)
    got = tables.transactions.execute().sort_values("order_id")
    assert got["customer_id"].tolist() == ["007", "7"]
    assert got["ordered_at"].tolist() == [pd.Timestamp("2010-12-01 08:26"), pd.Timestamp("2010-12-02 18:00")]
    assert tables.reports[0].quarantined == {"unparseable_time": 1}
    with pytest.raises(SchemaError, match="set data.transactions.timestamp_format"):
        load_tables(Config().with_sources(path))
