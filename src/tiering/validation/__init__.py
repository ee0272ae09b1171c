"""Checking input tables against their contracts, and setting bad rows aside.

Two kinds of problem, two behaviours:
- a schema problem (a missing column, a column of the wrong type, a column in which not one
  value parses) stops the run with a SchemaError naming the table, the column, what was found
  and the config key to fix;
- a row problem goes to the quarantine Parquet file of its table with a ``reason`` column and
  is counted. Reasons, first match wins: missing_customer_id, missing_order_id, missing_time,
  unparseable_time, missing_<number>, unparseable_<number>, non_finite_<number>,
  implausible_<number> (|amount| > validation.max_abs_amount), missing_event_type,
  unknown_event_type (only with validation.unknown_event_types: quarantine), after_as_of (only
  when an as_of is given), conflicting_order_customer, unknown_referrer (customers: referred_by names no
  customer_id of the table), self_referral (referred_by is the row's own id), duplicate_line (an exact repeat of an
  earlier row over the contract columns), duplicate_customer (customers: a second row for an id;
  the earliest joined_at is kept).

Identity: ids are text exactly as given (trimmed of surrounding blanks): ``007`` and ``7`` are two
customers, non-ASCII ids are kept. Integer ids become their decimal text. A float id column (a
warehouse or pandas export of integer ids with gaps) is read as integers without '.0' when every
value is integral, and refused with a SchemaError naming examples when not; a text id column in
which every value is written like that (13085.0, a CSV export of such a column) is read the same
way, while a column mixing '12' and '12.0' keeps both as written (two ids). Any value in
validation.null_tokens (default: empty, NULL, null, None, nan, NaN, N/A) is a missing value in
every contract column, so such an id is missing_customer_id, never a customer called 'NULL'.

Orders: an order has many lines (Online Retail II: one row per invoice line), so an order_id
repeated with other amounts or products is normal. Only an order_id whose otherwise good rows
name more than one customer_id is a defect: every row of it is set aside as
conflicting_order_customer (which customer is right cannot be told). An exact repeat of a line
is duplicate_line.

Event types: interactions whose event_type is not in validation.known_event_types (default the
DESIGN list, which the simulator emits) are counted per type in the report's
``unknown_event_types`` and kept (default) or quarantined, as validation.unknown_event_types says.

Time zones: data.timezone (an IANA name, default UTC) is the zone of the typed columns. A naive
timestamp (a Parquet timestamp without zone, text without an offset) is read as wall-clock time
in that zone, unchanged. An aware one (a Parquet timestamp with zone, text ending in Z or an
offset such as +08:00) is converted to that zone's wall-clock time, value by value, so a column
whose offsets differ row to row is still read consistently. The typed columns are naive, and
as_of days (00:00 to 24:00) are days in data.timezone. Example: with data.timezone
Asia/Shanghai, '2024-05-01T23:30:00+00:00' is 2024-05-02 07:30 and counts for as_of 2024-05-02.
On the spark engine only UTC is supported (ConfigError otherwise).

Refunds and cancellations (negative amounts) are valid rows: they are netted later, never
dropped. Everything stays in the engine (DuckDB by default); nothing is pulled into pandas. The
typed, annotated rows are computed once per table: cached on Spark, written to a temporary
Parquet file on DuckDB (see _check._materialize_duckdb); the good rows returned are a lazy scan of it.

Modules: ``_load`` (every input of a run) over ``_check`` (one table: counts, quarantine, refusal),
``_annotate`` (the reason per row), ``_typing`` (contract columns typed, text parsed), ``_time`` (time zones and
formats), ``_reports`` (reports, validated tables and their fingerprint, the quarantine file, the usability guard) and ``_rules``.
"""

from __future__ import annotations

from tiering.validation._annotate import annotate
from tiering.validation._check import check_table, validate_table
from tiering.validation._load import check_tables, load_tables
from tiering.validation._reports import (
    TableReport,
    ValidatedTables,
    bucket_count,
    check_usable,
    data_fingerprint,
    write_quarantine_file,
)
from tiering.validation._rules import REASON, Rules

__all__ = [
    "REASON",
    "Rules",
    "TableReport",
    "ValidatedTables",
    "bucket_count",
    "data_fingerprint",
    "annotate",
    "check_table",
    "write_quarantine_file",
    "check_usable",
    "validate_table",
    "check_tables",
    "load_tables",
]
