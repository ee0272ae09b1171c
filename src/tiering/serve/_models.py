"""The response models of the ops API: they document it in /docs and /openapi.json.

The routes answer with the dicts of ``tiering.ops`` as they are (already JSON-ready), so these models
describe the answers rather than re-validate them.
"""

from __future__ import annotations

from pydantic import BaseModel


class HistoryPoint(BaseModel):
    as_of: str
    model_version: str
    tier: str
    churn_risk: float | None
    clv: float | None
    at_risk: bool | None


class Customer(BaseModel):
    customer_id: str
    as_of: str
    model_name: str
    model_version: str
    tier: str
    tier_label: str
    tier_description: str
    tier_reason: str | None
    action: str
    churn_risk: float | None
    p_purchase: float | None
    p_alive: float | None
    expected_purchases: float | None
    expected_spend: float | None
    clv: float | None
    clv_p10: float | None = None  # the CLV's 80% interval; None where the model gives none (or an older batch)
    clv_p90: float | None = None
    engagement_score: float | None
    next_tier: str | None
    next_tier_label: str | None
    next_tier_proba: float | None
    rfm_segment: str | None
    r_score: int | None
    f_score: int | None
    m_score: int | None
    at_risk: bool | None
    koc_candidate: bool | None
    horizon_days: int | None
    scored_at: str | None
    history: list[HistoryPoint]


class BatchInfo(BaseModel):
    batch_id: int
    as_of: str
    model_name: str
    model_version: str
    rows: int
    finished_at: str


class Member(BaseModel):
    customer_id: str
    tier: str
    clv: float | None
    clv_p10: float | None = None  # the CLV's 80% interval; None where the model gives none (or an older batch)
    clv_p90: float | None = None
    churn_risk: float | None
    p_purchase: float | None
    p_alive: float | None
    expected_purchases: float | None
    expected_spend: float | None
    engagement_score: float | None
    next_tier: str | None
    next_tier_proba: float | None
    rfm_segment: str | None
    r_score: int | None
    f_score: int | None
    m_score: int | None
    at_risk: bool | None
    koc_candidate: bool | None
    lapsed_buyer: bool | None = None  # a buyer who left value (win-back); None in batches scored before it existed
    koc_score: float | None = None
    tier_reason: str | None


class TierPage(BaseModel):
    tier: str
    at_risk: bool | None
    lapsed: bool | None = None  # the lapsed-buyer filter of the listing (None: everyone)
    batch: BatchInfo
    total: int
    limit: int | None
    offset: int | None  # None: the page was read by cursor
    next_offset: int | None  # offset pages only; None on the last page
    cursor: str | None = None  # the cursor the page was read from
    next_cursor: str | None = None  # pass as cursor for the next page (keyset); None on the last page
    items: list[Member]


class TierShare(BaseModel):
    tier: str
    label: str
    action: str
    customers: int
    share: float
    share_change: float | None = None
    mean_clv: float | None
    mean_churn_risk: float | None
    mean_p_purchase: float | None
    at_risk: int


class Migration(BaseModel):
    from_as_of: str
    to_as_of: str
    tiers: list[str]
    counts: list[list[int]]
    row_share: list[list[float | None]]
    customers_in_both: int
    share_staying: float | None
    moved_up: int
    moved_down: int
    share_moved_up: float | None
    share_moved_down: float | None
    entered: int
    left: int


class Summary(BaseModel):
    as_of: str
    batch: BatchInfo
    tiers: list[TierShare]
    previous_as_of: str | None
    previous_batch: BatchInfo | None = None
    previous: list[TierShare] | None
    migration: Migration | None
    scoring_dates: list[str]


class Health(BaseModel):
    status: str
    latest_as_of: str | None
    auth: bool
