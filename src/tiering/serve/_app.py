"""The ops server: a read-only REST API and a server-rendered web page over the scores store.

``create_app(store_url, token=...)`` builds the FastAPI application; ``tiering serve`` runs it with
uvicorn. API under /api (JSON; CSV export of a tier, streamed), the page at /, an offline API
reference at /docs and the OpenAPI schema at /openapi.json. Access control (token, session cookie, CSRF
tokens of the page's forms): see ``_auth``. Every input is checked before the store is read: a customer id
is any text the store can hold (``_lookup.check_customer_id``; percent-encoded, read once from the raw
path), query values are range-checked (offsets up to a signed 64-bit integer). Bad input answers 422 with
``{"detail": one sentence naming the parameter, the rule and the value, "errors": FastAPI's list}``; a
store that cannot be read (corrupt, locked, unreachable) answers 503, also for a CSV export.
"""

from __future__ import annotations

import datetime as dt
import hmac
import os
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import parse_qs, quote, unquote, urlencode

from fastapi import Depends, FastAPI, HTTPException, Path as PathParam, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from pydantic import BaseModel, BeforeValidator

from tiering.exceptions import ConfigError, StoreError
from tiering.ladder import TIER_LADDER, Tier
from tiering.schemas import TIERS
from tiering.serve import _auth, _charts, _lookup
from tiering.store import ScoresStore

CONFIG_ENV = "TIERING_SERVE_CONFIG"  # the config path handed to uvicorn workers by `tiering serve`
PAGE_SIZE = 50
TierName = Literal["core", "value", "seed", "new", "ordinary"]
assert tuple(TierName.__args__) == TIERS  # the path parameter's allowed values are the tier ladder

# any id the store can hold (checked by _lookup.check_customer_id: 422 otherwise); percent-encode it, '/' as %2F
CustomerId = Annotated[str, PathParam(description="Customer id exactly as stored, percent-encoded (Unicode, spaces and '/' "
                                                  f"allowed; at most {_lookup.CUSTOMER_ID_MAX_LENGTH} characters, no control "
                                                  "characters)", examples=["C0000042", "M%C3%BCller-7"])]
# YYYY-MM-DD only (pydantic alone would also read '0' or a timestamp as a date)
AsOf = Annotated[dt.date | None, BeforeValidator(lambda v: _lookup.parse_as_of(v, "as_of")),
                 Query(description="Scoring date YYYY-MM-DD; default: the latest complete batch.")]
MAX_PAGE = _lookup.MAX_ROWS // PAGE_SIZE  # the last page whose offset is still a signed 64-bit integer
CUSTOMERS_PREFIX = "/api/customers/"


class _AnyText(Convertor[str]):
    """A path segment of any text, '/' and newlines included (starlette's ``path`` stops at a newline), so a
    malformed id reaches check_customer_id and gets its 422 message instead of a bare 404."""

    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("tiering_customer_id", _AnyText())


def _customer_id(request: Request, decoded: str) -> str:
    """The id as the client percent-encoded it: decoded once from the raw path (the decoded path cannot tell
    '%2541' from '%41' under every ASGI server), undecodable bytes kept as surrogates so check_customer_id refuses them."""
    raw = request.scope.get("raw_path") or b""
    at = raw.find(CUSTOMERS_PREFIX.encode())
    if at < 0:
        return decoded
    return unquote(raw[at + len(CUSTOMERS_PREFIX):].decode("latin-1"), encoding="utf-8", errors="surrogateescape")


# ---- response models (they document the API in /docs and /openapi.json) -----------------------
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
    tier_reason: str | None


class TierPage(BaseModel):
    tier: str
    at_risk: bool | None
    batch: BatchInfo
    total: int
    limit: int
    offset: int
    next_offset: int | None
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


class Problem(BaseModel):
    detail: str
    errors: list | None = None


# ---- helpers -------------------------------------------------------------------------------------
def _open_read_only(store_url: str) -> ScoresStore:
    """The store, opened so that this process cannot write to it (SQLite query_only, PostgreSQL read-only transactions)."""
    return ScoresStore(store_url, create=False, read_only=True)


def _validation_message(errors: list) -> str:
    """FastAPI's validation errors as one sentence per parameter: where, what is wrong, the value received."""
    parts = []
    for e in errors:
        loc = [str(x) for x in e.get("loc", ())]
        where = f"{loc[0]} parameter {'.'.join(loc[1:])!r}" if len(loc) > 1 else "request"
        msg = str(e.get("msg", "is not valid")).removeprefix("Value error, ")
        got = e.get("input")
        shown = "" if got is None or isinstance(got, dict) or msg.endswith(".") else f"; got {str(got)[:80]!r}"
        parts.append(f"The {where} is not valid: {msg}{shown}")
    return " ".join(p if p.endswith(".") else p + "." for p in parts)


class _SecurityHeaders:
    """Pure ASGI middleware: no caching of customer data, no framing, no sniffing, a strict CSP (the page has no script)."""

    HEADERS = [(b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
               (b"referrer-policy", b"no-referrer"),
               (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                                            b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'")]

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *self.HEADERS]
            await send(message)

        return await self.app(scope, receive, send_with_headers)


def _safe_next(target: str | None) -> str:
    """Only a local path may follow a sign-in (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _fmt_pct(x) -> str:
    return "" if x is None else f"{100 * x:.1f}%"


def _fmt_num(x, digits: int = 2) -> str:
    return "" if x is None else f"{x:,.{digits}f}"


# ---- the application -------------------------------------------------------------------------------
def create_app(store_url: str, *, token: str | None = None, ladder: tuple[Tier, ...] | None = None,
               title: str = "tiering ops") -> FastAPI:
    """The ops app over the scores store at ``store_url``.

    ``token``: the bearer token (None: no authentication; serve only on loopback then, see ``check_bind``).
    ``ladder``: tier labels, descriptions and actions (``tiering.models.tiers.ladder(cfg.tiers)``); default the built-in ones.
    """
    store = _open_read_only(store_url)
    session = _auth.session_value(token) if token else None
    csrf_key = _auth.csrf_key(token) if token else b""
    ladder = tuple(ladder or TIER_LADDER)
    texts = {t.name: t for t in ladder}
    labels = {t.name: t.label for t in ladder}
    summaries: dict = {}  # summary per (batch, previous batch): a written batch never changes

    app = FastAPI(title=title, version="1", docs_url=None, redoc_url=None,
                  description="Read-only lookups over the customer scores store: one customer's tier and why, the members of "
                              "a tier (paged or as CSV), the tier mix and the migration between scoring dates. "
                              + ("Every /api call except /api/health needs `Authorization: Bearer <token>`." if token else
                                 "This server runs without a token (loopback only)."))
    app.state.store = store
    app.add_middleware(_SecurityHeaders)
    env_templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
    env_templates.env.filters["pct"] = _fmt_pct
    env_templates.env.filters["num"] = _fmt_num
    env_templates.env.globals.update(labels=labels, tiers=TIERS, tier_colors=_charts.TIER_COLORS, auth=token is not None,
                                     title=title, logout_csrf=_auth.csrf_value(csrf_key, session or "", "logout"))

    # -- access control
    def _signed_in(request: Request) -> bool:
        if token is None:
            return True
        if _auth.token_matches(_auth.bearer(request.headers.get("authorization")), token):
            return True
        cookie = request.cookies.get(_auth.SESSION_COOKIE)
        return cookie is not None and hmac.compare_digest(cookie.encode("utf-8", "surrogateescape"), session.encode())

    async def require_token(request: Request) -> None:  # async: no threadpool hop for a header check
        if not _signed_in(request):
            raise HTTPException(401, "Missing or wrong API token. Send the header `Authorization: Bearer <token>` "
                                     f"(the token the server was started with, from {_auth.TOKEN_ENV} or serve.token).",
                                headers={"WWW-Authenticate": 'Bearer realm="tiering"'})

    api = [Depends(require_token)]
    errors = {401: {"model": Problem, "description": "Missing or wrong token"},
              404: {"model": Problem, "description": "Not in the scores store"},
              422: {"model": Problem, "description": "Invalid parameter"},
              503: {"model": Problem, "description": "The scores store cannot be read"}}

    @app.exception_handler(_lookup.NotFoundError)
    async def _not_found(_request, exc):
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(ConfigError)
    async def _bad_input(_request, exc):
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _bad_parameter(_request, exc):
        errors = jsonable_encoder(exc.errors(), custom_encoder={BaseException: str})
        return JSONResponse({"detail": _validation_message(errors), "errors": errors}, status_code=422)

    @app.exception_handler(StoreError)
    async def _store_down(_request, exc):
        return JSONResponse({"detail": str(exc)}, status_code=503)

    # -- API
    @app.get("/api/health", response_model=Health, tags=["api"], summary="Liveness and the latest scoring date (no token needed)")
    def health():
        try:
            batches = store.batches_list()
        except StoreError as exc:
            return JSONResponse({"status": "error", "detail": str(exc), "latest_as_of": None, "auth": token is not None}, 503)
        latest = max((b.as_of for b in batches), default=None)
        return {"status": "ok", "latest_as_of": latest.isoformat() if latest else None, "auth": token is not None}

    @app.get(CUSTOMERS_PREFIX + "{customer_id:tiering_customer_id}", response_model=Customer, dependencies=api, responses=errors, tags=["api"],
             summary="One customer: tier, reason, recommended action, churn risk, CLV, next tier, RFM segment, tier history")
    async def get_customer(request: Request, customer_id: CustomerId, as_of: AsOf = None):
        # one threadpool hop for the store read; the dict is already JSON-ready, so it skips re-validation
        cid = _customer_id(request, customer_id)
        return JSONResponse(await run_in_threadpool(_lookup.customer_card, store, cid, as_of, ladder=ladder))

    @app.get("/api/tiers/{tier}", response_model=TierPage, dependencies=api, tags=["api"],
             responses=errors | {200: {"content": {"text/csv": {}}, "description": "A page as JSON, or every member as CSV"}},
             summary="The members of a tier, highest CLV first: paged JSON, or a streamed CSV export")
    def list_tier(tier: TierName, as_of: AsOf = None,
                  at_risk: Annotated[bool | None, Query(description="true: only at-risk members; false: only the others")] = None,
                  limit: Annotated[int | None, Query(ge=1, le=1000, description=f"Page size (JSON default {PAGE_SIZE}; CSV default: every member)")] = None,
                  offset: Annotated[int, Query(ge=0, le=_lookup.MAX_ROWS, description="Rows to skip")] = 0,
                  format: Annotated[Literal["json", "csv"], Query(description="json (a page) or csv (a streamed export)")] = "json"):
        if format == "csv":
            batch = _lookup.resolve_batch(store, as_of)
            name = f"tier-{tier}-{batch.as_of.isoformat()}{'-at-risk' if at_risk else ''}.csv"
            # the query starts here, so a store fault is a JSON error, not a CSV cut after its header
            rows = _lookup.iter_tier_csv(store, tier, batch=batch, at_risk=at_risk, limit=limit, offset=offset)
            return StreamingResponse(rows, media_type="text/csv; charset=utf-8",
                                     headers={"content-disposition": f'attachment; filename="{name}"'})
        return JSONResponse(_lookup.tier_page(store, tier, as_of=as_of, at_risk=at_risk, limit=limit or PAGE_SIZE, offset=offset))

    @app.get("/api/summary", response_model=Summary, dependencies=api, responses=errors, tags=["api"],
             summary="Counts and shares per tier for the batch and the previous scoring date, and the migration between them")
    def get_summary(as_of: AsOf = None):
        return JSONResponse(_lookup.summary(store, as_of, ladder=ladder, cache=summaries))

    # -- offline API reference (the stock /docs loads Swagger UI from a CDN; this page needs no network)
    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs(request: Request):
        return env_templates.TemplateResponse(request, "docs.html", {"schema": app.openapi()})

    # -- web page
    def _page_auth(request: Request):
        if not _signed_in(request):
            nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?{urlencode({'next': nxt})}", status_code=303)
        return None

    def _context(as_of: dt.date | None) -> dict:
        batches = store.batches_list()
        dates = sorted({b.as_of.isoformat() for b in batches}, reverse=True)
        return {"dates": dates, "as_of_param": as_of.isoformat() if as_of else None}

    def _render(request: Request, name: str, ctx: dict, status: int = 200):
        return env_templates.TemplateResponse(request, name, ctx, status_code=status)

    def _login_page(request: Request, nxt: str, error: str | None, status: int):
        """The sign-in form with a CSRF token: an HMAC of a random nonce that also goes into a SameSite=Strict cookie."""
        nonce = _auth.new_nonce()
        resp = _render(request, "login.html", {"next": nxt, "error": error, "dates": [], "as_of_param": None,
                                               "csrf": _auth.csrf_value(csrf_key, nonce, "login")}, status)
        resp.set_cookie(_auth.CSRF_COOKIE, nonce, httponly=True, samesite="strict", secure=request.url.scheme == "https",
                        path="/login")
        return resp

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(request: Request, next: str = "/"):
        if token is None:
            return RedirectResponse(_safe_next(next), status_code=303)
        return _login_page(request, _safe_next(next), None, 200)

    @app.post("/login", response_class=HTMLResponse, include_in_schema=False)
    async def login(request: Request):
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        nxt = _safe_next(form.get("next"))
        if token is None:
            return RedirectResponse(nxt, status_code=303)
        if not _auth.csrf_matches(csrf_key, request.cookies.get(_auth.CSRF_COOKIE), "login", form.get("csrf")):
            return _login_page(request, nxt, _auth.CSRF_REFUSED, 403)
        if not _auth.token_matches(form.get("token", "").strip(), token):
            return _login_page(request, nxt, "That token is not right.", 401)
        resp = RedirectResponse(nxt, status_code=303)
        resp.set_cookie(_auth.SESSION_COOKIE, session, httponly=True, samesite="strict", secure=request.url.scheme == "https",
                        path="/")
        resp.delete_cookie(_auth.CSRF_COOKIE, path="/login")
        return resp

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request):
        if token is not None:
            form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
            cookie = request.cookies.get(_auth.SESSION_COOKIE)
            if not _auth.csrf_matches(csrf_key, cookie, "logout", form.get("csrf")):
                return JSONResponse({"detail": _auth.CSRF_REFUSED}, status_code=403)
        resp = RedirectResponse("/login" if token else "/", status_code=303)
        resp.delete_cookie(_auth.SESSION_COOKIE, path="/")
        return resp

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index(request: Request, as_of: AsOf = None):
        if (r := _page_auth(request)) is not None:
            return r
        ctx = _context(as_of)
        try:
            summ = _lookup.summary(store, as_of, ladder=ladder, cache=summaries)
        except _lookup.NotFoundError as exc:
            return _render(request, "index.html", ctx | {"summary": None, "error": str(exc)}, 404)
        mix = _charts.tier_mix_svg(summ["tiers"], summ["previous"], as_of=summ["as_of"], previous_as_of=summ["previous_as_of"] or "")
        heat = _charts.migration_svg(summ["migration"], labels) if summ["migration"] else None
        return _render(request, "index.html", ctx | {"summary": summ, "mix_chart": mix, "heat_map": heat, "error": None})

    @app.get("/customer", response_class=HTMLResponse, include_in_schema=False)
    def customer_page(request: Request, id: str = "", as_of: AsOf = None):
        if (r := _page_auth(request)) is not None:
            return r
        ctx = _context(as_of) | {"query": id}
        try:
            card = _lookup.customer_card(store, id, as_of, ladder=ladder)
        except (_lookup.NotFoundError, ConfigError) as exc:
            return _render(request, "customer.html", ctx | {"card": None, "error": str(exc)},
                           404 if isinstance(exc, _lookup.NotFoundError) else 422)
        return _render(request, "customer.html", ctx | {"card": card, "error": None})

    @app.get("/tiers/{tier}", response_class=HTMLResponse, include_in_schema=False)
    def tier_browse(request: Request, tier: str, page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1, at_risk: bool = False,
                    as_of: AsOf = None):
        if (r := _page_auth(request)) is not None:
            return r
        ctx = _context(as_of) | {"tier": tier}
        try:
            data = _lookup.tier_page(store, tier, as_of=as_of, at_risk=True if at_risk else None,
                                     limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        except (_lookup.NotFoundError, ConfigError) as exc:
            return _render(request, "tier.html", ctx | {"data": None, "error": str(exc)}, 404)
        pages = max(1, -(-data["total"] // PAGE_SIZE))
        keep = {k: v for k, v in (("as_of", as_of.isoformat() if as_of else None), ("at_risk", "true" if at_risk else None)) if v}
        export = f"/api/tiers/{quote(tier)}?" + urlencode({"format": "csv", **keep})

        def link(p: int) -> str:
            return f"/tiers/{quote(tier)}?" + urlencode({**keep, "page": p})

        return _render(request, "tier.html", ctx | {
            "data": data, "error": None, "page": page, "pages": pages, "at_risk": at_risk, "export_url": export,
            "prev_url": link(page - 1) if page > 1 else None, "next_url": link(page + 1) if page < pages else None,
            "tier_info": texts[tier], "first_row": (page - 1) * PAGE_SIZE + 1})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return Response(status_code=204)

    return app


def app_from_config(cfg) -> FastAPI:
    """The app as configured: ``store.url``, the token (TIERING_API_TOKEN, else ``serve.token``), the ``tiers`` texts."""
    from tiering.ladder import ladder

    return create_app(cfg.store.url, token=_auth.resolve_token(cfg.serve.token), ladder=ladder(cfg.tiers))


def app_from_environ() -> FastAPI:
    """Factory for uvicorn workers (``tiering serve --workers N``): reads the config named by TIERING_SERVE_CONFIG
    (else configs/base.yaml or the built-in defaults, as every command does)."""
    from tiering.config import load_config

    return app_from_config(load_config(os.environ.get(CONFIG_ENV) or None))
