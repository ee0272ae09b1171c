"""The store's tables: ``score_batches`` (one row per batch) and ``scores`` (one row per customer and batch).

The scores columns and their types derive from ``tiering.schemas`` (SCORES_COLUMNS and their kinds); the batch keys
(as_of, model name and version) live on the batch row, not on every scores row.
"""

from __future__ import annotations

from tiering.schemas import SCORES_COLUMNS, score_columns_of_kind

FLOAT_COLUMNS, INT_COLUMNS, BOOL_COLUMNS = (score_columns_of_kind(k) for k in ("float", "int", "bool"))
BATCH_KEYS = ("as_of", "model_name", "model_version")
# the width of the customer_id column: the longest id a store holds (and a lookup accepts)
ID_MAX_LENGTH = 200
# the columns of the scores table, in order (the batch carries as_of, model name and version)
ROW_COLUMNS = ("batch_id", *(c for c in SCORES_COLUMNS if c not in BATCH_KEYS))

# The index of a tier listing's order (see ``tiering.store._listing``). SQLite sorts NULL lowest and PostgreSQL
# highest, so PostgreSQL spells out NULLS LAST (PostgreSQL-only syntax, hence created by SQL text when a store is
# opened for writing); SQLite's DESC already puts NULL last. It replaces the (batch_id, tier) index of stores made
# before it.
LISTING_INDEX = "ix_scores_batch_tier_clv"
LISTING_INDEX_COLUMNS = {
    "postgresql": "batch_id, tier, clv DESC NULLS LAST, customer_id",
    "sqlite": "batch_id, tier, clv DESC, customer_id",
}


def column_type(name: str):
    """The SQLAlchemy type of a scores column, from its kind in tiering.schemas.SCORE_COLUMN_KINDS."""
    import sqlalchemy as sa

    if name in FLOAT_COLUMNS:
        return sa.Float
    if name in INT_COLUMNS:
        return sa.Integer
    if name in BOOL_COLUMNS:
        return sa.Boolean
    if name == "scored_at":
        return sa.DateTime
    return sa.String(1000) if name == "tier_reason" else sa.String(ID_MAX_LENGTH)


def metadata(omit: dict[str, frozenset[str]] | None = None):
    """The store's tables. ``omit``: per table, columns an older store lacks (a read-only store is not upgraded:
    its tables are declared without them, and reads give None for them)."""
    import sqlalchemy as sa

    omit = omit or {}

    md = sa.MetaData()
    batches = sa.Table(
        "score_batches",
        md,
        sa.Column("batch_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("as_of", sa.Date, nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(50), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=False),
        *([sa.Column("flips_avoided", sa.Integer, nullable=True)] if "flips_avoided" not in omit.get("score_batches", ()) else []),
        # one batch per (as_of, model, version): a concurrent second writer fails instead of duplicating
        sa.Index("ix_batches_asof", "as_of", "model_name", "model_version", unique=True),
    )
    cols = [sa.Column("batch_id", sa.Integer, sa.ForeignKey("score_batches.batch_id"), nullable=False)]
    cols += [sa.Column(name, column_type(name)) for name in ROW_COLUMNS[1:] if name not in omit.get("scores", ())]
    scores = sa.Table(
        "scores",
        md,
        *cols,
        sa.Index("ix_scores_batch_customer", "batch_id", "customer_id", unique=True),
        # LISTING_INDEX is created by ``StoreBase._ensure_indexes`` (its NULLS LAST is PostgreSQL-only syntax)
        sa.Index("ix_scores_customer", "customer_id"),
    )
    return md, batches, scores
