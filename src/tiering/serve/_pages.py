"""The ops web page: the tier mix and migration (/), a customer's card (/customer), a tier page by page
(/tiers/{tier}) and the offline API reference (/docs). Server-rendered with inline SVG charts: no script,
no network. Without a valid session (or token) a page redirects to the sign-in form (``_login``).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from tiering import ops
from tiering.exceptions import ConfigError
from tiering.serve import _charts
from tiering.serve._deps import MAX_PAGE, PAGE_SIZE, AsOf, SettingsDep, StoreDep, render, signed_in
from tiering.store import ScoresStore

router = APIRouter(include_in_schema=False)


def _sign_in_first(request: Request) -> RedirectResponse | None:
    """A redirect to the sign-in form (back to this page afterwards) when the visitor is not signed in."""
    if signed_in(request):
        return None
    nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?{urlencode({'next': nxt})}", status_code=303)


def _context(store: ScoresStore, as_of: dt.date | None) -> dict:
    """What every page's frame shows: the scoring dates to pick from, and the one picked."""
    dates = ops.scoring_dates(store.batches_list())[::-1]  # newest first
    return {"dates": dates, "as_of_param": as_of.isoformat() if as_of else None}


@router.get("/docs", response_class=HTMLResponse)
def docs(request: Request):
    """The API reference from the app's own OpenAPI schema (the stock /docs loads Swagger UI from a CDN)."""
    return render(request, "docs.html", {"schema": request.app.openapi()})


@router.get("/", response_class=HTMLResponse)
def index(request: Request, store: StoreDep, settings: SettingsDep, as_of: AsOf = None):
    if (r := _sign_in_first(request)) is not None:
        return r
    ctx = _context(store, as_of)
    try:
        summ = ops.summary(store, as_of, ladder=settings.ladder, cache=settings.summaries)
    except ops.NotFoundError as exc:
        return render(request, "index.html", ctx | {"summary": None, "error": str(exc)}, 404)
    mix = _charts.tier_mix_svg(summ["tiers"], summ["previous"], as_of=summ["as_of"], previous_as_of=summ["previous_as_of"] or "")
    heat = _charts.migration_svg(summ["migration"], settings.labels) if summ["migration"] else None
    return render(request, "index.html", ctx | {"summary": summ, "mix_chart": mix, "heat_map": heat, "error": None})


@router.get("/customer", response_class=HTMLResponse)
def customer_page(request: Request, store: StoreDep, settings: SettingsDep, id: str = "", as_of: AsOf = None):
    if (r := _sign_in_first(request)) is not None:
        return r
    ctx = _context(store, as_of) | {"query": id}
    try:
        card = ops.customer_card(store, id, as_of, ladder=settings.ladder)
    except (ops.NotFoundError, ConfigError) as exc:
        return render(request, "customer.html", ctx | {"card": None, "error": str(exc)}, 404 if isinstance(exc, ops.NotFoundError) else 422)
    return render(request, "customer.html", ctx | {"card": card, "error": None})


def _tier_links(tier: str, page: int, as_of: dt.date | None, at_risk: bool, next_cursor: str | None) -> dict:
    """The CSV export of the whole tier, and the previous and next pages (None at either end).

    "Next" carries the page's ``next_cursor`` (a keyset seek, as cheap at page 20,000 as at page 2; ``page`` only
    numbers it); "previous" goes by page number (an offset read), as does a page number typed into the address.
    """
    keep = {k: v for k, v in (("as_of", as_of.isoformat() if as_of else None), ("at_risk", "true" if at_risk else None)) if v}
    base = f"/tiers/{quote(tier)}?"
    return {
        "export_url": f"/api/tiers/{quote(tier)}?" + urlencode({"format": "csv", **keep}),
        "prev_url": base + urlencode({**keep, "page": page - 1}) if page > 1 else None,
        "next_url": base + urlencode({**keep, "page": page + 1, "cursor": next_cursor}) if next_cursor else None,
    }


@router.get("/tiers/{tier}", response_class=HTMLResponse)
def tier_browse(
    request: Request,
    tier: str,
    store: StoreDep,
    settings: SettingsDep,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    at_risk: bool = False,
    as_of: AsOf = None,
    cursor: str | None = None,
):
    if (r := _sign_in_first(request)) is not None:
        return r
    ctx = _context(store, as_of) | {"tier": tier}
    try:
        data = ops.tier_page(
            store,
            tier,
            as_of=as_of,
            at_risk=True if at_risk else None,
            limit=PAGE_SIZE,
            offset=0 if cursor else (page - 1) * PAGE_SIZE,
            cursor=cursor or None,
            cache=settings.totals,
        )
    except (ops.NotFoundError, ConfigError) as exc:
        return render(
            request,
            "tier.html",
            ctx | {"data": None, "error": str(exc)},
            404 if isinstance(exc, ops.NotFoundError) or tier not in settings.texts else 422,
        )
    pages = max(1, -(-data["total"] // PAGE_SIZE))
    return render(
        request,
        "tier.html",
        ctx
        | _tier_links(tier, page, as_of, at_risk, data["next_cursor"])
        | {
            "data": data,
            "error": None,
            "page": page,
            "pages": pages,
            "at_risk": at_risk,
            "tier_info": settings.texts[tier],
            "first_row": (page - 1) * PAGE_SIZE + 1,
        },
    )


@router.get("/favicon.ico")
def favicon():
    return Response(status_code=204)
