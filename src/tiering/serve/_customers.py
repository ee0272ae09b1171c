"""API: one customer's card, ``GET /api/customers/{customer_id}``.

A customer id is any text the store can hold (``ops.check_customer_id``: 422 otherwise), percent-encoded
('/' as %2F) and read once from the raw path, so '%2541' and '%41' stay two different ids. :class:`FastLookup`
answers the common case (signed in, found) in front of the framework.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import unquote

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor

from tiering import ops
from tiering.exceptions import ConfigError, StoreError
from tiering.serve._deps import ERRORS, PROTECTED, AsOf, SettingsDep, StoreDep, signed_in
from tiering.serve._models import Customer

CUSTOMERS_PREFIX = "/api/customers/"
CustomerId = Annotated[
    str,
    PathParam(
        description="Customer id exactly as stored, percent-encoded (Unicode, spaces and '/' "
        f"allowed; at most {ops.CUSTOMER_ID_MAX_LENGTH} characters, no control "
        "characters)",
        examples=["C0000042", "M%C3%BCller-7"],
    ),
]


class _AnyText(Convertor[str]):
    """A path segment of any text, '/' and newlines included (starlette's ``path`` stops at a newline), so a
    malformed id reaches check_customer_id and gets its 422 message instead of a bare 404."""

    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("tiering_customer_id", _AnyText())


def _raw_customer_id(request: Request, decoded: str) -> str:
    """The id as the client percent-encoded it: decoded once from the raw path (the decoded path cannot tell
    '%2541' from '%41' under every ASGI server), undecodable bytes kept as surrogates so check_customer_id refuses them."""
    raw = request.scope.get("raw_path") or b""
    at = raw.find(CUSTOMERS_PREFIX.encode())
    if at < 0:
        return decoded
    return unquote(raw[at + len(CUSTOMERS_PREFIX) :].decode("latin-1"), encoding="utf-8", errors="surrogateescape")


router = APIRouter(tags=["api"], dependencies=PROTECTED, responses=ERRORS)
_AS_OF_QUERY = re.compile(rb"as_of=([0-9]{4}-[0-9]{2}-[0-9]{2})")


class FastLookup:
    """Pure ASGI in front of the app: a signed-in ``GET /api/customers/{id}`` (no query, or just ``as_of=YYYY-MM-DD``)
    whose card is found is answered here, without FastAPI's routing and dependency solving (about 0.3 ms of CPU, more
    than the lookup itself, see benchmarks/README.md). Anything else, and any lookup that fails (401, 404, 422, 503),
    goes on to the app, whose route below gives the documented answer: the route stays the one definition of the
    endpoint (and of /docs); this only skips the framework's work on the common path."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or not scope["path"].startswith(CUSTOMERS_PREFIX)
            or len(scope["path"]) == len(CUSTOMERS_PREFIX)
        ):
            return await self.app(scope, receive, send)
        query = scope.get("query_string", b"")
        match = _AS_OF_QUERY.fullmatch(query) if query else None
        if query and match is None:
            return await self.app(scope, receive, send)
        request = Request(scope)
        if not signed_in(request):
            return await self.app(scope, receive, send)
        store, settings = request.app.state.store, request.app.state.settings
        try:
            as_of = ops.parse_as_of(match.group(1).decode(), "as_of") if match else None
            cid = _raw_customer_id(request, scope["path"][len(CUSTOMERS_PREFIX) :])
            if store.dialect == "sqlite":
                card = ops.customer_card(store, cid, as_of, ladder=settings.ladder)
            else:
                card = await run_in_threadpool(ops.customer_card, store, cid, as_of, ladder=settings.ladder)
        except (ops.NotFoundError, ConfigError, StoreError):
            return await self.app(scope, receive, send)
        await JSONResponse(card)(scope, receive, send)


@router.get(
    CUSTOMERS_PREFIX + "{customer_id:tiering_customer_id}",
    response_model=Customer,
    summary="One customer: tier, reason, recommended action, churn risk, CLV, next tier, RFM segment, tier history",
)
async def get_customer(request: Request, customer_id: CustomerId, store: StoreDep, settings: SettingsDep, as_of: AsOf = None):
    # the dict is already JSON-ready, so it skips re-validation. A SQLite read (~0.3 ms, a WAL reader never waits
    # for a writer) runs on the event loop: a threadpool hop cost more CPU than the read itself (see
    # benchmarks/README.md); a PostgreSQL read waits on the network, so it runs in the threadpool
    cid = _raw_customer_id(request, customer_id)
    if store.dialect == "sqlite":
        return JSONResponse(ops.customer_card(store, cid, as_of, ladder=settings.ladder))
    return JSONResponse(await run_in_threadpool(ops.customer_card, store, cid, as_of, ladder=settings.ladder))
