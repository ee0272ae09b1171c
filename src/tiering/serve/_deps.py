"""What every route of the ops app shares: its settings, store and templates (in ``app.state``), access control
as a dependency, the parameter types and the documented error answers.

``create_app`` puts a :class:`Settings`, the read-only store and the page templates into ``app.state``;
routes take them through FastAPI's ``Depends`` (:data:`StoreDep`, :data:`SettingsDep`), so a router
module holds no state of its own.
"""

from __future__ import annotations

import datetime as dt
import hmac
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Query, Request
from pydantic import BaseModel, BeforeValidator

from tiering import ops
from tiering.ladder import Tier
from tiering.serve import _auth
from tiering.store import ScoresStore

PAGE_SIZE = 50
MAX_PAGE = ops.MAX_ROWS // PAGE_SIZE  # the last page whose offset is still a signed 64-bit integer

# YYYY-MM-DD only (pydantic alone would also read '0' or a timestamp as a date)
AsOf = Annotated[
    dt.date | None,
    BeforeValidator(lambda v: ops.parse_as_of(v, "as_of")),
    Query(description="Scoring date YYYY-MM-DD; default: the latest complete batch."),
]


@dataclass(frozen=True)
class Settings:
    """One app's configuration: the token (None: no authentication), the tier texts and the page title.

    ``session`` (what the page's session cookie holds) and ``csrf_key`` derive from the token, so every
    worker process agrees; ``summaries`` caches the summary per (batch, previous batch), ``totals`` a tier listing's
    member count per (batch, tier, at_risk) (a stored batch never changes).
    """

    token: str | None
    ladder: tuple[Tier, ...]
    title: str = "tiering ops"
    summaries: dict = field(default_factory=dict, compare=False)
    totals: dict = field(default_factory=dict, compare=False)  # a tier listing's total per (batch, tier, at_risk)
    session: str | None = field(init=False)
    csrf_key: bytes = field(init=False)
    texts: dict[str, Tier] = field(init=False, compare=False)
    labels: dict[str, str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        derived = {
            "session": _auth.session_value(self.token) if self.token else None,
            "csrf_key": _auth.csrf_key(self.token) if self.token else b"",
            "texts": {t.name: t for t in self.ladder},
            "labels": {t.name: t.label for t in self.ladder},
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)


# async, so FastAPI calls them on the event loop: a plain ``def`` dependency costs a threadpool hop per request
# (two of them took ~1.5 of the ~2.7 ms a customer lookup spent in the app, see benchmarks/README.md)
async def get_store(request: Request) -> ScoresStore:
    return request.app.state.store


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


StoreDep = Annotated[ScoresStore, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def render(request: Request, name: str, ctx: dict, status: int = 200):
    """A page from the app's templates (``app.state.templates``: the tier texts, colours and sign-out form are globals)."""
    return request.app.state.templates.TemplateResponse(request, name, ctx, status_code=status)


def signed_in(request: Request) -> bool:
    """A valid bearer token or session cookie (always true when the app runs without a token)."""
    settings: Settings = request.app.state.settings
    if settings.token is None:
        return True
    if _auth.token_matches(_auth.bearer(request.headers.get("authorization")), settings.token):
        return True
    cookie = request.cookies.get(_auth.SESSION_COOKIE)
    if cookie is None:
        return False
    assert settings.session is not None  # derived from the token
    return hmac.compare_digest(cookie.encode("utf-8", "surrogateescape"), settings.session.encode())


async def require_token(request: Request) -> None:  # async: no threadpool hop for a header check
    if not signed_in(request):
        raise HTTPException(
            401,
            "Missing or wrong API token. Send the header `Authorization: Bearer <token>` "
            f"(the token the server was started with, from {_auth.TOKEN_ENV} or serve.token).",
            headers={"WWW-Authenticate": 'Bearer realm="tiering"'},
        )


class Problem(BaseModel):
    detail: str
    errors: list | None = None


PROTECTED = [Depends(require_token)]  # the dependencies of every /api route but /api/health
ERRORS: dict[int | str, dict[str, Any]] = {  # FastAPI's type of a route's responses=
    401: {"model": Problem, "description": "Missing or wrong token"},
    404: {"model": Problem, "description": "Not in the scores store"},
    422: {"model": Problem, "description": "Invalid parameter"},
    503: {"model": Problem, "description": "The scores store cannot be read"},
}
