"""DuckDB connections spill into folders of their own: DuckDB names its temporary files the same in every process
(duckdb_temp_storage_DEFAULT-0.tmp ...), so two runs sharing ./.tmp overwrote each other's spills ("IO Error:
Corrupt temporary file", seen with two 1M-customer runs started from one folder)."""

from __future__ import annotations

import gc

from tiering.io import connect


def _spill_dir(con) -> str:
    return con.raw_sql("SELECT current_setting('temp_directory')").fetchone()[0]


def test_each_connection_spills_into_its_own_folder_removed_on_close(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    a, b = connect(memory_limit="64MB", threads=1), connect()
    assert _spill_dir(a) != _spill_dir(b)
    assert all(_spill_dir(c).startswith(".tmp-duckdb-") for c in (a, b))
    assert not any(tmp_path.iterdir())  # nothing is written before a query spills
    a.raw_sql("CREATE TABLE t AS SELECT range AS i, random() AS r FROM range(4000000)")
    assert a.raw_sql("SELECT count(*) FROM (SELECT i, r FROM t ORDER BY r)").fetchone() == (4_000_000,)
    spilled = tmp_path / _spill_dir(a)
    assert spilled.is_dir() and any(spilled.iterdir())  # the sort spilled there, and only there
    assert not (tmp_path / _spill_dir(b)).exists()
    a.disconnect()
    del a
    gc.collect()
    assert not spilled.exists()


def test_an_explicit_temp_directory_is_kept(tmp_path) -> None:
    con = connect(temp_directory=str(tmp_path / "spill"))
    assert _spill_dir(con) == str(tmp_path / "spill")
