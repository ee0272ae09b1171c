"""API: the members of a tier, ``GET /api/tiers/{tier}``: a page as JSON, or every member as a streamed CSV.

A page answers ``next_cursor``; passing it back as ``cursor`` reads the next page by keyset (an index seek) instead of
``offset`` (which reads and skips every row before the page). A bad cursor is a 422 naming ``cursor``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, StreamingResponse

from tiering import ops
from tiering.schemas import TierName  # the path parameter takes exactly the ladder's tiers
from tiering.serve._deps import ERRORS, PAGE_SIZE, PROTECTED, AsOf, SettingsDep, StoreDep
from tiering.serve._models import TierPage

router = APIRouter(tags=["api"], dependencies=PROTECTED)

AtRisk = Annotated[bool | None, Query(description="true: only at-risk members; false: only the others")]
Lapsed = Annotated[bool | None, Query(description="true: only lapsed buyers (the win-back list); false: only the others")]
Limit = Annotated[int | None, Query(ge=1, le=1000, description=f"Page size (JSON default {PAGE_SIZE}; CSV default: every member)")]
Offset = Annotated[int, Query(ge=0, le=ops.MAX_ROWS, description="Rows to skip (reads and skips them: prefer cursor)")]
Cursor = Annotated[
    str | None,
    Query(
        description="Where to start: the next_cursor of the page before (an index seek, "
        "however deep; not with offset). The listing order: highest CLV first, "
        "ties by customer id, customers without a CLV last"
    ),
]
Format = Annotated[Literal["json", "csv"], Query(description="json (a page) or csv (a streamed export)")]


@router.get(
    "/api/tiers/{tier}",
    response_model=TierPage,
    responses=ERRORS | {200: {"content": {"text/csv": {}}, "description": "A page as JSON, or every member as CSV"}},
    summary="The members of a tier, highest CLV first: paged JSON, or a streamed CSV export",
)
def list_tier(
    tier: TierName,
    store: StoreDep,
    settings: SettingsDep,
    as_of: AsOf = None,
    at_risk: AtRisk = None,
    limit: Limit = None,
    offset: Offset = 0,
    format: Format = "json",
    cursor: Cursor = None,
    lapsed: Lapsed = None,
):
    if format == "csv":
        batch, _ = ops.resolve_listing(store, tier, as_of=as_of, at_risk=at_risk, cursor=cursor, lapsed=lapsed)
        name = f"tier-{tier}-{batch.as_of.isoformat()}{'-at-risk' if at_risk else ''}{'-lapsed' if lapsed else ''}.csv"
        # the query starts here, so a store fault is a JSON error, not a CSV cut after its header
        rows = ops.iter_tier_csv(store, tier, batch=batch, at_risk=at_risk, limit=limit, offset=offset, cursor=cursor, lapsed=lapsed)
        return StreamingResponse(
            rows, media_type="text/csv; charset=utf-8", headers={"content-disposition": f'attachment; filename="{name}"'}
        )
    return JSONResponse(
        ops.tier_page(
            store,
            tier,
            as_of=as_of,
            at_risk=at_risk,
            limit=limit or PAGE_SIZE,
            offset=offset,
            cursor=cursor,
            cache=settings.totals,
            lapsed=lapsed,
        )
    )
