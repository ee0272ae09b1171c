"""Bad-input corpus for `tiering validate` and `tiering features`: messy CSVs and Parquet files nobody prepared.

Per case: the exit status (0 or 2), the message naming the problem (table, column or key, value, fix) and,
when the run goes through, rows_in = rows_valid + rows_quarantined in `validate --json`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.badinput.conftest import assert_rows_kept

HEADER = "customer_id,order_id,ordered_at,amount\n"


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def _config(tmp_path: Path, yaml: str) -> Path:
    path = tmp_path / "tiering.yaml"
    path.write_text(yaml)
    return path


def _validate(cli, *args) -> dict:
    res = cli("validate", *args, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(res.stdout)["tables"][0]
    assert_rows_kept(report)
    return report


def _refused(cli, *args) -> str:
    res = cli(*args)
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    return res.stdout + res.stderr


def _feature_ids(cli, tmp_path, tx: Path, as_of: str = "2024-12-31") -> list[str]:
    res = cli("features", "--transactions", tx, "--as-of", as_of, "--out", "f.parquet", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    return sorted(pd.read_parquet(tmp_path / "f.parquet")["customer_id"])


# --- files that cannot be read: named as such -----------------------------------------------------
def test_empty_file(cli, tmp_path):
    msg = _refused(cli, "validate", "--transactions", _write(tmp_path, "tx.csv", ""))
    assert "The transactions file" in msg and "tx.csv' is empty (0 bytes)" in msg and "data.transactions.path" in msg


def test_blank_lines_only_is_empty(cli, tmp_path):
    msg = _refused(cli, "validate", "--transactions", _write(tmp_path, "tx.csv", "\n\n  \n"))
    assert "tx.csv' is empty" in msg


def test_header_only(cli, tmp_path):
    msg = _refused(cli, "validate", "--transactions", _write(tmp_path, "tx.csv", HEADER))
    assert "tx.csv' has a header but no rows" in msg and "'customer_id', 'order_id', 'ordered_at', 'amount'" in msg


def test_ragged_row_names_the_line(cli, tmp_path):
    tx = _write(tmp_path, "tx.csv", HEADER + "a,o1,2024-01-01,5\nb,o2,2024-01-02,6,7\n")
    msg = _refused(cli, "validate", "--transactions", tx)
    assert "has a ragged row on line 3: 5 fields where the header has 4" in msg and "data.transactions.delimiter" in msg


def test_ragged_row_past_the_sniffer_sample(cli, tmp_path):
    rows = [f"c{i},o{i},2024-01-01,5" for i in range(40_000)]
    rows[35_000] += ",extra"
    msg = _refused(cli, "validate", "--transactions", _write(tmp_path, "tx.csv", HEADER + "\n".join(rows) + "\n"))
    assert "ragged row on line 35002" in msg


def test_latin1_without_config_names_byte_line_and_key(cli, tmp_path):
    tx = _write(tmp_path, "tx.csv", (HEADER + "a,o1,2024-01-01,5\nJos\xe9,o2,2024-01-02,6\n").encode("latin-1"))
    msg = _refused(cli, "validate", "--transactions", tx)
    assert "tx.csv' is not valid utf-8 text: byte 0xe9 at line 3" in msg
    assert "It looks like latin-1: set data.transactions.encoding: latin-1" in msg


def test_latin1_past_the_first_megabyte_names_the_line(cli, tmp_path):
    rows = "".join(f"c{i},o{i},2024-01-01,5\n" for i in range(60_000))
    tx = _write(tmp_path, "tx.csv", (HEADER + rows + "Jos\xe9,ox,2024-01-02,6\n").encode("latin-1"))
    msg = _refused(cli, "validate", "--transactions", tx)
    assert "byte 0xe9 at line 60002" in msg and "encoding: latin-1" in msg


def test_latin1_with_encoding_key_keeps_the_name(cli, tmp_path):
    tx = _write(tmp_path, "tx.csv", (HEADER + "Jos\xe9,o1,2024-01-01,5\nZo\xeb,o2,2024-01-02,6\n").encode("latin-1"))
    cfg = _config(tmp_path, f"data:\n  transactions:\n    path: {tx}\n    encoding: latin-1\n")
    assert _validate(cli, "--config", cfg)["rows_valid"] == 2
    res = cli("features", "--config", cfg, "--as-of", "2024-12-31", "--out", "f.parquet")
    assert res.returncode == 0, res.stderr
    assert sorted(pd.read_parquet(tmp_path / "f.parquet")["customer_id"]) == ["José", "Zoë"]


def test_gbk_file_is_recognised_and_read_with_the_key(cli, tmp_path):
    tx = _write(tmp_path, "tx.csv", (HEADER + "张三,o1,2024-01-01,5\n李四,o2,2024-01-02,6\n").encode("gbk"))
    msg = _refused(cli, "validate", "--transactions", tx)
    assert "It looks like gbk: set data.transactions.encoding: gbk" in msg
    cfg = _config(tmp_path, f"data:\n  transactions:\n    path: {tx}\n    encoding: gbk\n")
    assert _validate(cli, "--config", cfg)["rows_valid"] == 2


def test_unknown_encoding_key_is_a_config_error(cli, tmp_path):
    cfg = _config(tmp_path, "data:\n  transactions:\n    path: tx.csv\n    encoding: klingon-8\n")
    msg = _refused(cli, "validate", "--config", cfg)
    assert "data.transactions.encoding" in msg and "unknown text encoding 'klingon-8'" in msg


def test_duplicate_header_names(cli, tmp_path):
    msg = _refused(cli, "validate", "--transactions", _write(tmp_path, "tx.csv", HEADER.replace("amount", "order_id") + "a,o,2024-01-01,x\n"))
    assert "names column(s) ['order_id'] more than once" in msg


def test_missing_column_is_named_not_hidden(cli, tmp_path):
    msg = _refused(cli, "validate", "--transactions", _write(tmp_path, "tx.csv", "customer_id,order_id,ordered_at\na,o1,2024-01-01\n"))
    assert "missing column 'amount'" in msg and "data.transactions.columns.amount" in msg


# --- dialects that must simply work ---------------------------------------------------------------
def test_semicolon_delimiter_is_detected(cli, tmp_path):
    tx = _write(tmp_path, "tx.csv", "customer_id;order_id;ordered_at;amount\na;o1;2024-01-01;5,5\nb;o2;2024-01-02;6\n")
    report = _validate(cli, "--transactions", tx)
    assert report["rows_in"] == 2 and report["quarantined"] == {"unparseable_amount": 1}  # 5,5: a decimal comma is not a number


def test_tab_separated_tsv(cli, tmp_path):
    tx = _write(tmp_path, "tx.tsv", "customer_id\torder_id\tordered_at\tamount\na\to1\t2024-01-01\t5\n")
    assert _validate(cli, "--transactions", tx)["rows_valid"] == 1


def test_utf8_bom_and_crlf(cli, tmp_path):
    tx = _write(tmp_path, "tx.csv", b"\xef\xbb\xbf" + (HEADER + "a,o1,2024-01-01,5\nb,o2,2024-01-02,6\n").replace("\n", "\r\n").encode())
    report = _validate(cli, "--transactions", tx)
    assert report["rows_valid"] == 2 and report["quarantined"] == {}


def test_quoted_delimiters_and_newlines(cli, tmp_path):
    tx = _write(tmp_path, "tx.csv", HEADER + '"a, Ltd",o1,2024-01-01,5\n"multi\nline",o2,2024-01-02,6\n')
    assert _validate(cli, "--transactions", tx)["rows_valid"] == 2
    assert _feature_ids(cli, tmp_path, tx) == ["a, Ltd", "multi\nline"]


def test_bad_amount_past_row_30000_is_a_quarantined_row(cli, tmp_path):
    rows = [f"c{i % 500},o{i},2024-01-{1 + i % 28:02d},{i % 90 + 1}.5" for i in range(32_142)]
    rows[32_140] = "c1,o32140,2024-01-02,twelve"
    report = _validate(cli, "--transactions", _write(tmp_path, "tx.csv", HEADER + "\n".join(rows) + "\n"))
    assert report["rows_in"] == 32_142 and report["quarantined"] == {"unparseable_amount": 1}
    q = pd.read_parquet(tmp_path / "outputs/quarantine/transactions.parquet")
    assert q["raw_amount"].tolist() == ["twelve"]


# --- identity kept ------------------------------------------------------------------------------------
def test_leading_zero_ids_stay_two_customers(cli, tmp_path):
    tx = _write(tmp_path, "tx.csv", HEADER + "007,o1,2024-01-01,5\n7,o2,2024-01-02,6\n0007,o3,2024-01-03,1\n")
    assert _validate(cli, "--transactions", tx)["rows_valid"] == 3
    assert _feature_ids(cli, tmp_path, tx) == ["0007", "007", "7"]


def test_float_ids_that_are_integral_lose_the_dot_zero(cli, tmp_path):
    tx = tmp_path / "tx.parquet"
    pd.DataFrame({"customer_id": [12.0, 13085.0, None, 12.0], "order_id": ["1", "2", "3", "4"],
                  "ordered_at": pd.to_datetime(["2024-01-01"] * 4), "amount": [1.0, 2.0, 3.0, 4.0]}).to_parquet(tx)
    report = _validate(cli, "--transactions", tx)
    assert report["quarantined"] == {"missing_customer_id": 1}
    assert _feature_ids(cli, tmp_path, tx) == ["12", "13085"]


def test_float_ids_that_are_not_integral_are_refused(cli, tmp_path):
    tx = tmp_path / "tx.parquet"
    pd.DataFrame({"customer_id": [12.0, 12.5, 7.25], "order_id": ["1", "2", "3"],
                  "ordered_at": pd.to_datetime(["2024-01-01"] * 3), "amount": [1.0, 2.0, 3.0]}).to_parquet(tx)
    msg = _refused(cli, "validate", "--transactions", tx)
    assert "The transactions table column 'customer_id' holds ids as floating-point numbers and 2 of them are not whole" in msg
    assert "12.5" in msg and "Export the ids as text" in msg


def test_null_tokens_are_missing_ids_not_customers(cli, tmp_path):
    tokens = ["", "NULL", "null", "None", "nan", "NaN", "N/A", " NULL "]
    rows = "".join(f"{t},o{i},2024-01-01,5\n" for i, t in enumerate(tokens)) + "".join(f"c{i},p{i},2024-01-01,5\n" for i in range(10))
    report = _validate(cli, "--transactions", _write(tmp_path, "tx.csv", HEADER + rows))
    assert report["quarantined"] == {"missing_customer_id": 8} and report["rows_valid"] == 10


def test_null_tokens_are_configurable(cli, tmp_path):
    tx = _write(tmp_path, "tx.csv", HEADER + "-,o1,2024-01-01,5\nNULL,o2,2024-01-01,5\na,o3,2024-01-01,5\nb,o4,2024-01-01,5\n")
    cfg = _config(tmp_path, f"data:\n  transactions:\n    path: {tx}\nvalidation:\n  null_tokens: ['-']\n")
    report = _validate(cli, "--config", cfg)
    assert report["quarantined"] == {"missing_customer_id": 1} and report["rows_valid"] == 3  # 'NULL' is an id here


def test_non_ascii_ids_are_kept(cli, tmp_path):
    tx = _write(tmp_path, "tx.csv", HEADER + "客户一,o1,2024-01-01,5\nZoë,o2,2024-01-02,6\nＡ１,o3,2024-01-03,1\n")
    assert _feature_ids(cli, tmp_path, tx) == sorted(["客户一", "Zoë", "Ａ１"])


# --- values checked ------------------------------------------------------------------------------------
def test_implausible_and_non_finite_amounts(cli, tmp_path):
    tx = _write(tmp_path, "tx.csv", HEADER + "a,o1,2024-01-01,1e300\nb,o2,2024-01-01,-2e9\nc,o3,2024-01-01,inf\n"
                + "".join(f"d{i},p{i},2024-01-01,-5\n" for i in range(4)))
    report = _validate(cli, "--transactions", tx)
    assert report["quarantined"] == {"implausible_amount": 2, "non_finite_amount": 1}
    assert report["rows_valid"] == 4  # refunds (negative amounts) are kept


def test_amount_bound_is_configurable(cli, tmp_path):
    tx = _write(tmp_path, "tx.csv", HEADER + "a,o1,2024-01-01,5000\nb,o2,2024-01-01,50\nc,o3,2024-01-01,60\n")
    cfg = _config(tmp_path, f"data:\n  transactions:\n    path: {tx}\nvalidation:\n  max_abs_amount: 1000\n")
    assert _validate(cli, "--config", cfg)["quarantined"] == {"implausible_amount": 1}


def test_order_lines_are_kept_but_an_order_of_two_customers_is_not(cli, tmp_path):
    tx = _write(tmp_path, "tx.csv", HEADER
                + "a,o1,2024-01-01,5\na,o1,2024-01-01,7\na,o1,2024-01-01,-2\n"  # three lines of one order: fine
                + "b,o2,2024-01-02,6\nc,o2,2024-01-02,6\n"                      # one order, two customers: conflict
                + "d,o3,2024-01-03,1\nd,o3,2024-01-03,1\n")                     # an exact repeat: duplicate line
    report = _validate(cli, "--transactions", tx)
    assert report["quarantined"] == {"conflicting_order_customer": 2, "duplicate_line": 1} and report["rows_valid"] == 4


def test_unparseable_and_missing_times(cli, tmp_path):
    tx = _write(tmp_path, "tx.csv", HEADER + "a,o1,yesterday,5\nb,o2,,5\nc,o3,N/A,5\n" + "".join(f"d{i},p{i},2024-01-01,5\n" for i in range(4)))
    assert _validate(cli, "--transactions", tx)["quarantined"] == {"missing_time": 2, "unparseable_time": 1}


def test_amount_column_of_text_is_a_schema_error(cli, tmp_path):
    msg = _refused(cli, "validate", "--transactions", _write(tmp_path, "tx.csv", HEADER + "a,o1,2024-01-01,ten\nb,o2,2024-01-01,five\n"))
    assert "column 'amount' holds text that does not parse as numbers; e.g. ['ten', 'five']" in msg


def test_mixed_offsets_are_each_converted(cli, tmp_path):
    # 23:30 UTC on the as_of day written with three offsets: all on 2024-01-01 in UTC; the naive reading would put
    # the +08:00 one on 2024-01-02 (after as_of)
    tx = _write(tmp_path, "tx.csv", HEADER + "a,o1,2024-01-01T23:30:00Z,5\nb,o2,2024-01-02T07:30:00+08:00,5\n"
                + "c,o3,2024-01-01T18:30:00-05:00,5\nd,o4,2024-01-02T00:30:00+01:00,5\ne,o5,2024-01-02T00:30:00,5\n")
    report = _validate(cli, "--transactions", tx, "--as-of", "2024-01-01")
    assert report["quarantined"] == {"after_as_of": 1} and report["rows_valid"] == 4  # only the naive 00:30 is later


def test_as_of_before_all_data_is_refused_and_writes_nothing(cli, tmp_path):
    tx = _write(tmp_path, "tx.csv", HEADER + "a,o1,2024-03-01,5\nNULL,o2,2024-03-02,5\n")
    msg = _refused(cli, "validate", "--transactions", tx, "--as-of", "2024-01-01")
    assert "No valid transaction in" in msg and "at or before as_of 2024-01-01" in msg and "(the first on 2024-03-01)" in msg
    assert not (tmp_path / "outputs").exists()


# --- interactions --------------------------------------------------------------------------------------
IX_HEADER = "customer_id,occurred_at,event_type\n"


def _ix(tmp_path) -> tuple[Path, Path]:
    tx = _write(tmp_path, "tx.csv", HEADER + "a,o1,2024-01-01,5\n")
    ix = _write(tmp_path, "ix.csv", IX_HEADER + "a,2024-01-01,view\na,2024-01-02,poke\nb,2024-01-02,poke\nb,2024-01-03,Share\n"
                + "c,2024-01-03,NULL\n" + "".join(f"c,2024-01-0{d},like\n" for d in range(4, 9)))
    return tx, ix


def test_unknown_event_types_are_kept_and_counted(cli, tmp_path):
    tx, ix = _ix(tmp_path)
    res = cli("validate", "--transactions", tx, "--interactions", ix, "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)["tables"][1]
    assert_rows_kept(report)
    assert report["unknown_event_types"] == {"poke": 2, "Share": 1}
    assert report["quarantined"] == {"missing_event_type": 1} and report["rows_valid"] == 9


def test_unknown_event_types_can_be_quarantined(cli, tmp_path):
    tx, ix = _ix(tmp_path)
    cfg = _config(tmp_path, f"data:\n  transactions: {{path: {tx}}}\n  interactions: {{path: {ix}}}\n"
                  "validation:\n  unknown_event_types: quarantine\n  known_event_types: [view, like, share, Share]\n")
    res = cli("validate", "--config", cfg, "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)["tables"][1]
    assert_rows_kept(report)
    assert report["quarantined"] == {"unknown_event_type": 2, "missing_event_type": 1} and report["unknown_event_types"] == {"poke": 2}


def test_features_run_on_the_messy_file(cli, tmp_path):
    tx = _write(tmp_path, "tx.csv", HEADER + "007,o1,2024-01-01,5\nNULL,o2,2024-01-01,5\n7,o3,2024-01-02,1e300\n7,o4,2024-01-03,3\n")
    assert _feature_ids(cli, tmp_path, tx) == ["007", "7"]


@pytest.mark.parametrize("zone", ["Mars/Olympus", "UTC+8"])
def test_unknown_timezone_is_a_config_error(cli, tmp_path, zone):
    cfg = _config(tmp_path, f"data:\n  timezone: {zone}\n")
    msg = _refused(cli, "validate", "--config", cfg)
    assert f"unknown time zone '{zone}'" in msg and "IANA" in msg


def test_csv_export_of_float_ids_reads_them_as_integers(cli, tmp_path):
    tx = _write(tmp_path, "tx.csv", HEADER + "13085.0,o1,2024-01-01,5\n12.0,o2,2024-01-02,6\n,o3,2024-01-02,6\n13085.0,o4,2024-01-03,1\n")
    assert _validate(cli, "--transactions", tx)["quarantined"] == {"missing_customer_id": 1}
    assert _feature_ids(cli, tmp_path, tx) == ["12", "13085"]


def test_text_ids_mixing_12_and_12_0_stay_as_written(cli, tmp_path):
    tx = _write(tmp_path, "tx.csv", HEADER + "12.0,o1,2024-01-01,5\n12,o2,2024-01-02,6\n")
    assert _feature_ids(cli, tmp_path, tx) == ["12", "12.0"]
