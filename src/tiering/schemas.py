"""The vocabulary: the column contracts of the input tables, the tier ladder's names and order, the tier
palette, the label columns and the scores frame with its column types.

Each concept is defined here once and everything else derives from it: the ladder texts
(tiering.ladder), the config's tier rules, the API's path parameter, the store's columns, the
report's and the ops page's charts. Every other module refers to columns through these names,
never by position. No third-party import: the ops CLI and server read it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

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
    # an id column naming another row of this table (customers.referred_by: the member who brought this one in); a value
    # naming no id of the table, or the row's own, sets the row aside (validation: unknown_referrer, self_referral)
    referrer_column: str | None = None

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
        # the customer_id of the member who brought this customer in (a referral that led to a join); null for the rest
        Column("referred_by", "id", required=False),
    ),
    unique_key=("customer_id",),
    referrer_column="referred_by",
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

# ------------------------------------------------------------------------------------------------ tiers
# The tier ladder, highest first: the order the policy tests them in (first match from the top wins), the
# order of every table, chart, migration matrix and P(tier) column. The typing Literal is the one definition;
# config (TierRule.tier) and the REST API's path parameter use it as their type, so they accept exactly these.
TierName = Literal["core", "value", "seed", "new", "ordinary"]
TIERS: tuple[TierName, ...] = get_args(TierName)  # highest first
TIERS_LOW_TO_HIGH: tuple[TierName, ...] = tuple(reversed(TIERS))
TIER_RANK: dict[str, int] = {t: i for i, t in enumerate(TIERS)}  # 0 = highest (core)


def tier_list_text(conjunction: str = "or") -> str:
    """The ladder in words, highest first: 'core, value, seed, new or ordinary' (help texts, messages)."""
    return f"{', '.join(TIERS[:-1])} {conjunction} {TIERS[-1]}"


# The tier palette: one colour per tier, used by the ops page (SVG charts, badges) and the HTML report
# (matplotlib charts, badges) alike. Dark enough for white badge text (contrast >= 4.5:1).
TIER_COLORS: dict[TierName, str] = {"core": "#5b21b6", "value": "#1d4ed8", "seed": "#047857", "new": "#b45309", "ordinary": "#6b7280"}
NEUTRAL_COLOR = "#374151"  # a swatch that is no tier (legends; an unknown tier read from an old store)
# Series that are no tier, in the report's charts: the model against the perfect ranking and chance, and the
# funnel rates. Taken from the same palette, so page and report share one set of colours.
SERIES_COLORS: dict[str, str] = {
    "model": TIER_COLORS["value"],
    "perfect": TIER_COLORS["seed"],
    "random": TIER_COLORS["ordinary"],
    "first_purchase_conversion": TIER_COLORS["value"],
    "interaction_rate": TIER_COLORS["seed"],
    "share_rate": TIER_COLORS["new"],
    "diversion_rate": TIER_COLORS["core"],
    "repurchase_ratio": TIER_COLORS["value"],
    "note": "#666666",
    "incomplete": "#eeeeee",
}
assert tuple(TIER_COLORS) == TIERS  # one colour per tier, in ladder order

# ------------------------------------------------------------------------------------------------ labels
# What a customer did in the horizon after an origin (tiering.features.build_labels): the outcomes models are
# trained on and judged by, and the report's realised outcomes.
LABEL_COLUMNS = ("holdout_spend", "holdout_orders", "purchased_in_horizon")
LABEL_COLUMN_KINDS: dict[str, str] = {"holdout_spend": "float", "holdout_orders": "int", "purchased_in_horizon": "int"}
# where the customers table names referrers (customers.referred_by): the customers a customer brought in who joined in
# the horizon (tiering.features.referral_labels), what the referral propensity learns from and the seeds are judged by
REFERRAL_LABEL = "referred_in_horizon"

# ------------------------------------------------------------------------------------------------ scores

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
    **{
        c: "float"
        for c in (
            "p_purchase",
            "churn_risk",
            "p_alive",
            "expected_purchases",
            "expected_spend",
            "clv",
            "clv_p10",
            "clv_p90",
            "engagement_score",
            "next_tier_proba",
            "koc_score",
            *TIER_PROBA_COLUMNS,
        )
    },
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
