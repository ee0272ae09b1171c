"""Reading sources: connect an engine, read a configured file, map its columns to the contract;
and writing one result table to one file on any engine.

Nothing here judges rows; that is validation's job. This module only answers "which source
column (or expression over source columns) is each contract column", and fails with one
clear message when it cannot.

Engines: ``connect("duckdb")`` (in-process, the default) or ``connect("spark")`` (a local
PySpark session from tiering._spark; pass ``ibis.pyspark.connect(your_session)`` to use a
cluster's). Every source read gets a fresh table name, so several reads on one Spark session
never replace each other's views.

CSV files are read with every column as text, nothing sniffed: an id such as ``007`` stays
``007``, and validation types amounts and times value by value over the whole file (a bad value
on line 32,143 is a quarantined row, not a crash, as a type sniffed from the first rows would
give). The dialect is fixed, not guessed: the header's own names, the delimiter from
``data.<table>.delimiter`` (default: the most frequent of , ; tab | in the header line), double
quotes (fields may hold the delimiter and newlines), the encoding from ``data.<table>.encoding``
(default utf-8; a UTF-8 byte-order mark is skipped; other encodings are transcoded to a private
temporary UTF-8 copy). An empty file, a header without rows, a ragged line and bytes that are
not in the encoding are each named in the message (file, line, key to set): see
``explain_read_error``.

Sources and outputs may be URLs (``s3a://``, ``hdfs://``, ``abfss://``, ``file://``): on Spark they are
looked up, peeked at, written, moved and removed through the session's Hadoop FileSystem; on DuckDB a
``file:`` URL is its local file (``_fs``).

Modules: ``_engine`` (connections, memory limits, private folders), ``_fs`` (local paths and URLs), ``_read``
(source files) with ``_read_errors`` (what went wrong reading them), ``_resources`` (an engine out of memory or
disk, named), ``_mapping`` (source columns to contract
columns) and ``_write`` (result files).
"""

from __future__ import annotations

from tiering.io._engine import (
    auto_memory_limit,
    available_cores,
    connect,
    is_spark,
    machine_memory,
    private_folder,
    set_auto_memory_limit,
    unordered_writes,
)
from tiering.io._fs import display_path, is_url, join_path
from tiering.io._mapping import compile_expression, map_columns, trim_text
from tiering.io._read import read_source
from tiering.io._read_errors import explain_read_error
from tiering.io._resources import resource_error
from tiering.io._write import atomic_path, concat_parts, parquet_batches, remove_output, write_sorted_parts, write_table

__all__ = [
    "auto_memory_limit",
    "available_cores",
    "connect",
    "is_spark",
    "machine_memory",
    "private_folder",
    "set_auto_memory_limit",
    "unordered_writes",
    "read_source",
    "explain_read_error",
    "resource_error",
    "map_columns",
    "compile_expression",
    "trim_text",
    "write_table",
    "remove_output",
    "display_path",
    "is_url",
    "join_path",
    "atomic_path",
    "parquet_batches",
    "write_sorted_parts",
    "concat_parts",
]
