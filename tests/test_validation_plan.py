"""Validation's plan and text handling on DuckDB: the duplicate and conflicting-order marks are hash joins (a
nested-loop join there was quadratic in the number of duplicate groups), and the guarded trim removes exactly the
whitespace Ibis's strip() does."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from tiering.io import connect, map_columns, trim_text
from tiering.schemas import CONTRACTS
from tiering.validation import validate_table
from tiering.validation._annotate import annotate
from tiering.validation._rules import Rules


def _lines(n: int, repeats: int) -> pd.DataFrame:
    """n order lines, the first ``repeats`` of them repeated once, and one order naming two customers."""
    df = pd.DataFrame(
        {
            "customer_id": [f"c{i % 50}" for i in range(n)],
            "order_id": [f"o{i}" for i in range(n)],
            "ordered_at": pd.Timestamp("2024-01-01") + pd.to_timedelta(pd.Series(range(n)) % 300, unit="D"),
            "amount": [float(i % 17 + 1) for i in range(n)],
        }
    )
    conflict = df.iloc[[0]].assign(customer_id="c_other", amount=99.0)
    return pd.concat([df, df.iloc[:repeats], conflict], ignore_index=True)


def test_marks_are_hash_joins_not_nested_loops():
    con = connect("duckdb")
    raw = con.create_table("tx", _lines(500, 40))
    contract = CONTRACTS["transactions"]
    annotated = annotate(map_columns(raw, contract, {}), contract, as_of=dt.date(2025, 1, 1), rules=Rules())
    plan = "\n".join(str(r[1]) for r in con.raw_sql(f"EXPLAIN {con.compile(annotated)}").fetchall())
    assert "HASH_JOIN" in plan
    assert "NESTED_LOOP_JOIN" not in plan and "BLOCKWISE_NL_JOIN" not in plan and "CROSS_PRODUCT" not in plan


def test_duplicate_and_conflict_counts(tmp_path):
    con = connect("duckdb")
    raw = con.create_table("tx", _lines(500, 40))
    _, report = validate_table(raw, CONTRACTS["transactions"], as_of=dt.date(2025, 1, 1), source="tx", quarantine_dir=tmp_path)
    # order o0 names c0 and c_other: its three good lines (o0 twice, the conflicting one) are set aside as conflicting,
    # not as duplicates; lines o1..o39 are repeated once each
    assert report.quarantined == {"duplicate_line": 39, "conflicting_order_customer": 3}
    assert report.rows_valid == 500 - 1


@pytest.mark.parametrize(
    "value", ["abc", " abc", "abc ", "\tabc\n", "\x0babc\x0c", "\r\n abc \t", "a b", " ", "", "\t", "é ", " 中文", "\x01abc"]
)
def test_trim_matches_strip(value):
    con = connect("duckdb")
    t = con.create_table("s", pd.DataFrame({"s": [value, None]}))
    got = t.select(a=trim_text(t.s), b=t.s.strip()).execute()
    assert got["a"].tolist()[0] == got["b"].tolist()[0]
    assert got["a"].isna().tolist() == [False, True]


def test_reasons_with_equal_counts_in_name_order(tmp_path):
    con = connect("duckdb")
    df = pd.DataFrame(
        {
            "customer_id": ["a", None, "b", "c"],
            "order_id": ["1", "2", "3", "4"],
            "ordered_at": ["2024-01-01", "2024-01-02", "not a date", "2024-01-04"],
            "amount": [1.0, 2.0, 3.0, 4.0],
        }
    )
    _, report = validate_table(con.create_table("tx", df), CONTRACTS["transactions"], source="tx", quarantine_dir=tmp_path)
    assert list(report.quarantined) == ["missing_customer_id", "unparseable_time"]
