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


def test_validation_and_the_features_run_under_the_automatic_limit_of_one_bucket(tmp_path, monkeypatch) -> None:
    """The automatic limit is sized to one customer bucket of the rows before validation (whose stages all spill),
    and the feature build after it reads one bucket at a time. A limit set in the config is never touched."""
    import datetime as dt

    import tiering.validation._load as load
    from tiering.config import Config
    from tiering.datasets import simulate

    data = simulate(300, dt.date(2024, 1, 1), dt.date(2024, 12, 31), seed=4)
    data.write(tmp_path / "data")
    cfg = Config().with_source_dir(tmp_path / "data")
    cfg.validation.quarantine_dir = str(tmp_path / "q")
    cfg.features.bucket_rows = 500
    rows = len(data.transactions) + len(data.interactions)
    seen: list[tuple[str, int]] = []
    real_check = load.check_tables
    monkeypatch.setattr(load, "set_auto_memory_limit", lambda con, n: seen.append(("limit", n)))
    monkeypatch.setattr(load, "check_tables", lambda *a, **k: seen.append(("validate", 0)) or real_check(*a, **k))
    load.load_tables(cfg)
    assert seen == [("limit", 500), ("validate", 0)] and rows > 500
    seen.clear()
    cfg.features.duckdb_memory_limit = "2GB"
    load.load_tables(cfg)
    assert seen == [("validate", 0)]
