"""The ops read model over the scores store: one customer's card, a tier's members, the tier mix and migration.

Read-only, and the one answer the command line (``tiering tiers ...``), the REST API and web page
(``tiering.serve``) and the report give to the same question. Every query is SQLAlchemy Core over the
store's own tables, its listing SQL or one of its SQL aggregates (``ScoresStore.tier_counts``,
``ScoresStore.migration``); values are bound parameters, never formatted into SQL. Batches: the latest complete
batch unless an ``as_of`` is given; a store only ever shows complete batches (see ``tiering.store``).

- :func:`resolve_batch`, :func:`previous_batch`: which batch a question is about; :func:`scoring_dates`: the dates
  there are batches of (``_records``).
- :func:`customer_card`: one customer's scores, tier label, reason and action, and tier history (``_card``).
- :func:`tier_page` (a page with its total, next cursor and next offset; ``_listing``) and :func:`iter_tier_csv` (a
  streamed CSV export whose text cells go through :func:`csv_cell`, so no spreadsheet runs a formula; ``_export``);
  both read by keyset from a ``cursor`` (:func:`encode_cursor`, :func:`decode_cursor`, :func:`resolve_listing`;
  ``_cursor``) or by ``offset``.
- :func:`tier_mix`, :func:`migration` (the record of ``tiering.migration.summarize_counts``, counted in
  the database) and :func:`summary` (both, with the previous scoring date, and the tier changes the
  batch's hysteresis avoided, ``flips_avoided``; ``_summary``).

The checks of what a caller passes (:func:`check_customer_id`, :func:`check_tier`, :func:`check_rows`,
:func:`check_format`, :func:`parse_as_of`; ``_input``) live here so the CLI, the API and the page refuse the same
input with the same words.
"""

from tiering.ops._card import customer_card
from tiering.ops._cursor import CURSOR_MAX_LENGTH, cursor_lapsed, decode_cursor, encode_cursor, resolve_listing
from tiering.ops._export import csv_cell, iter_tier_csv
from tiering.ops._input import (
    CUSTOMER_ID_MAX_LENGTH,
    FORMATS,
    MAX_ROWS,
    check_customer_id,
    check_format,
    check_rows,
    check_tier,
    parse_as_of,
)
from tiering.ops._listing import LIST_COLUMNS, tier_page
from tiering.ops._records import NotFoundError, resolve_batch, scoring_dates
from tiering.ops._summary import migration, summary, tier_mix
from tiering.store import previous_batch

__all__ = [
    "CURSOR_MAX_LENGTH",
    "CUSTOMER_ID_MAX_LENGTH",
    "FORMATS",
    "LIST_COLUMNS",
    "MAX_ROWS",
    "NotFoundError",
    "check_customer_id",
    "check_format",
    "check_rows",
    "check_tier",
    "csv_cell",
    "cursor_lapsed",
    "customer_card",
    "decode_cursor",
    "encode_cursor",
    "iter_tier_csv",
    "migration",
    "parse_as_of",
    "previous_batch",
    "resolve_batch",
    "resolve_listing",
    "scoring_dates",
    "summary",
    "tier_mix",
    "tier_page",
]
