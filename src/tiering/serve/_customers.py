"""API: one customer's card, ``GET /api/customers/{customer_id}``.

A customer id is any text the store can hold (``ops.check_customer_id``: 422 otherwise), percent-encoded
('/' as %2F) and read once from the raw path, so '%2541' and '%41' stay two different ids.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import unquote

from fastapi import APIRouter, Path as PathParam, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor

from tiering import ops
from tiering.serve._deps import ERRORS, PROTECTED, AsOf, SettingsDep, StoreDep
from tiering.serve._models import Customer

CUSTOMERS_PREFIX = "/api/customers/"
CustomerId = Annotated[str, PathParam(description="Customer id exactly as stored, percent-encoded (Unicode, spaces and '/' "
                                                  f"allowed; at most {ops.CUSTOMER_ID_MAX_LENGTH} characters, no control "
                                                  "characters)", examples=["C0000042", "M%C3%BCller-7"])]


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
    return unquote(raw[at + len(CUSTOMERS_PREFIX):].decode("latin-1"), encoding="utf-8", errors="surrogateescape")


router = APIRouter(tags=["api"], dependencies=PROTECTED, responses=ERRORS)


@router.get(CUSTOMERS_PREFIX + "{customer_id:tiering_customer_id}", response_model=Customer,
            summary="One customer: tier, reason, recommended action, churn risk, CLV, next tier, RFM segment, tier history")
async def get_customer(request: Request, customer_id: CustomerId, store: StoreDep, settings: SettingsDep, as_of: AsOf = None):
    # one threadpool hop for the store read; the dict is already JSON-ready, so it skips re-validation
    cid = _raw_customer_id(request, customer_id)
    return JSONResponse(await run_in_threadpool(ops.customer_card, store, cid, as_of, ladder=settings.ladder))
