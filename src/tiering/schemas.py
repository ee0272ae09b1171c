"""The column contracts of the input tables and of the scores frame.

Every other module refers to columns through these names, never by position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["id", "timestamp", "number", "text"]


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    required: bool = True


@dataclass(frozen=True)
class TableContract:
    name: str
    id_column: str
    time_column: str
    columns: tuple[Column, ...]
    # contract columns that together identify one source row; a repeat is a duplicate line
    unique_key: tuple[str, ...]
    # an order id whose rows must all belong to one customer (its lines may differ in amount)
    order_column: str | None = None
    # a text column whose values should come from validation.known_event_types
    event_type_column: str | None = None

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    @property
    def optional(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if not c.required)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


TRANSACTIONS = TableContract(
    name="transactions",
    id_column="customer_id",
    time_column="ordered_at",
    columns=(
        Column("customer_id", "id"),
        Column("order_id", "id"),
        Column("ordered_at", "timestamp"),
        Column("amount", "number"),
        Column("channel", "text", required=False),
        Column("quantity", "number", required=False),
        Column("product_id", "id", required=False),
    ),
    unique_key=("customer_id", "order_id", "ordered_at", "amount", "product_id", "quantity", "channel"),
    order_column="order_id",
)

INTERACTIONS = TableContract(
    name="interactions",
    id_column="customer_id",
    time_column="occurred_at",
    columns=(
        Column("customer_id", "id"),
        Column("occurred_at", "timestamp"),
        Column("event_type", "text"),
        Column("channel", "text", required=False),
        Column("value", "number", required=False),
    ),
    unique_key=("customer_id", "occurred_at", "event_type", "channel", "value"),
    event_type_column="event_type",
)

CUSTOMERS = TableContract(
    name="customers",
    id_column="customer_id",
    time_column="joined_at",
    columns=(
        Column("customer_id", "id"),
        Column("joined_at", "timestamp"),
        Column("acquisition_channel", "text", required=False),
    ),
    unique_key=("customer_id",),
)

CONTRACTS: dict[str, TableContract] = {c.name: c for c in (TRANSACTIONS, INTERACTIONS, CUSTOMERS)}

EVENT_TYPES = (
    "view",
    "message",
    "like",
    "comment",
    "share",
    "referral",
    "group_join",
    "coupon_claim",
    "live_watch",
)

TIERS = ("core", "value", "seed", "new", "ordinary")  # highest first

_BASE_SCORES_COLUMNS = (
    "customer_id",
    "as_of",
    "horizon_days",
    "p_purchase",
    "churn_risk",
    "p_alive",
    "expected_purchases",
    "expected_spend",
    "clv",
    "clv_p10",
    "clv_p90",
    "engagement_score",
    "tier",
    "tier_reason",
    "next_tier",
    "next_tier_proba",
    "rfm_segment",
    "r_score",
    "f_score",
    "m_score",
    "koc_candidate",
    "at_risk",
    "model_name",
    "model_version",
    "scored_at",
)

# Columns the tier policy adds to the scores frame (tiering.models.tiers, issue 16). ``ScoringBundle.predict``
# returns them after the columns above. A scores store created before them gets them added (nullable) when it is
# opened for writing (tiering.store); its older batches read them as nulls.
TIER_PROBA_COLUMNS = tuple(f"p_{t}" for t in TIERS)  # P(tier) per customer, ladder order, summing to 1
TIER_SCORE_COLUMNS = ("lapsed_buyer", "koc_score", *TIER_PROBA_COLUMNS)
SCORE_COLUMN_KINDS: dict[str, str] = {
    **{c: "float" for c in ("p_purchase", "churn_risk", "p_alive", "expected_purchases", "expected_spend", "clv",
                            "clv_p10", "clv_p90", "engagement_score", "next_tier_proba", "koc_score", *TIER_PROBA_COLUMNS)},
    **{c: "int" for c in ("horizon_days", "r_score", "f_score", "m_score")},
    **{c: "bool" for c in ("koc_candidate", "at_risk", "lapsed_buyer")},
    "as_of": "date",
    "scored_at": "timestamp",
}

# the scores frame: the columns above, then the tier policy's
SCORES_COLUMNS = (*_BASE_SCORES_COLUMNS, *TIER_SCORE_COLUMNS)


def score_columns_of_kind(kind: str) -> tuple[str, ...]:
    """The scores columns of one kind of SCORE_COLUMN_KINDS ("float", "int", "bool", "date", "timestamp"), in
    SCORES_COLUMNS order; columns absent from SCORE_COLUMN_KINDS are text."""
    return tuple(c for c in SCORES_COLUMNS if SCORE_COLUMN_KINDS.get(c, "text") == kind)
