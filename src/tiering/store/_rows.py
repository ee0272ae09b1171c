"""A chunk of a scores frame as the rows of the scores table, through the fastest path of each database:
``executemany`` of prepared tuples on SQLite, ``COPY ... FROM STDIN`` (CSV) through psycopg on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import io

import numpy as np
import pandas as pd

from tiering.exceptions import StoreError
from tiering.schemas import SCORES_COLUMNS
from tiering.store._schema import BOOL_COLUMNS, FLOAT_COLUMNS, INT_COLUMNS, ROW_COLUMNS


def check_chunk(chunk: pd.DataFrame, as_of: dt.date, model_name: str, model_version: str) -> None:
    """StoreError unless the chunk has every scores column and carries this batch's as_of, model name and version."""
    missing = [c for c in SCORES_COLUMNS if c not in chunk.columns]
    if missing:
        raise StoreError(f"The scores frame lacks columns {missing}; it cannot be written.")
    for key, want in (("as_of", as_of), ("model_name", model_name), ("model_version", model_version)):
        got = chunk[key].drop_duplicates().tolist()
        got = [pd.Timestamp(g).date() for g in got] if key == "as_of" else [str(g) for g in got]
        if got != [want]:
            raise StoreError(f"A batch must hold one as_of, model name and version: expected {key} {want!r}, got {got[:5]}.")


def column_lists(chunk: pd.DataFrame, scored_at: object, batch_id: int) -> list[list]:
    """One Python list per ROW_COLUMNS entry, NaN/NA as None: the rows of an executemany."""
    n = len(chunk)
    out: list[list] = [[batch_id] * n]
    for name in ROW_COLUMNS[1:]:
        if name == "scored_at":
            out.append([scored_at] * n)
            continue
        s = chunk[name]
        if name in FLOAT_COLUMNS:
            v = s.to_numpy(dtype=float, na_value=np.nan)
            values = v.tolist()
            if np.isnan(v).any():
                values = [None if x != x else x for x in values]
        elif name in INT_COLUMNS:
            values = [None if pd.isna(x) else int(x) for x in s.tolist()] if s.isna().any() else s.astype("int64").tolist()
        elif name in BOOL_COLUMNS:
            values = [None if pd.isna(x) else bool(x) for x in s.tolist()] if s.isna().any() else s.astype(bool).tolist()
        else:
            values = s.astype(object).where(s.notna(), None).tolist()
            values = [None if x is None else str(x) for x in values]
        out.append(values)
    return out


def csv_chunk(chunk: pd.DataFrame, scored_at: str, batch_id: int) -> bytes:
    """The chunk as CSV for PostgreSQL COPY: every value quoted, NULL as an unquoted empty field."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    n = len(chunk)
    arrays = [pa.array(np.full(n, batch_id, dtype=np.int64))]
    for name in ROW_COLUMNS[1:]:
        if name == "scored_at":
            arrays.append(pa.array([scored_at] * n, pa.string()))
            continue
        s = chunk[name]
        if name in FLOAT_COLUMNS:
            arrays.append(pa.array(s.to_numpy(dtype=float, na_value=np.nan), pa.float64(), from_pandas=True))
        elif name in INT_COLUMNS:
            arrays.append(pa.array(s, pa.int64(), from_pandas=True))
        elif name in BOOL_COLUMNS:
            arrays.append(pa.array(s.astype(object).where(s.notna(), None), pa.bool_(), from_pandas=True))
        else:
            arrays.append(
                pa.array(s.astype(object).where(s.notna(), None).map(lambda x: x if x is None else str(x)), pa.string(), from_pandas=True)
            )
    buf = io.BytesIO()
    pacsv.write_csv(
        pa.Table.from_arrays(arrays, names=list(ROW_COLUMNS)), buf, pacsv.WriteOptions(include_header=False, quoting_style="all_valid")
    )
    return buf.getvalue()


def insert_sqlite(dbapi, chunk: pd.DataFrame, stamp: str, batch_id: int) -> None:
    """The chunk's rows into SQLite's scores table, by one executemany on the driver's connection."""
    cols = ", ".join(ROW_COLUMNS)
    marks = ", ".join("?" * len(ROW_COLUMNS))
    cur = dbapi.cursor()
    try:
        cur.executemany(f"INSERT INTO scores ({cols}) VALUES ({marks})", zip(*column_lists(chunk, stamp, batch_id)))
    finally:
        cur.close()


def copy_postgres(dbapi, chunk: pd.DataFrame, stamp: str, batch_id: int) -> None:
    """The chunk's rows into PostgreSQL's scores table, by COPY FROM STDIN on the psycopg connection."""
    data = csv_chunk(chunk, stamp, batch_id)
    with dbapi.cursor() as cur, cur.copy(f"COPY scores ({', '.join(ROW_COLUMNS)}) FROM STDIN (FORMAT csv)") as copy:
        copy.write(data)
