"""The ops server: a read-only REST API and a server-rendered web page over the scores store.

``create_app(store_url, token=...)`` assembles the FastAPI application from its routers; ``tiering serve``
runs it with uvicorn. API under /api (JSON; CSV export of a tier, streamed): ``_customers``, ``_tiers``,
``_summary``; the page at / (``_pages``), its sign-in (``_login``), an offline API reference at /docs and
the OpenAPI schema at /openapi.json. The store (opened read-only), the :class:`~tiering.serve._deps.Settings`
and the page templates live in ``app.state``; routes get them through ``Depends`` (``_deps``). Access
control: ``_auth``; answers to bad input and store faults: ``_errors``. The answers themselves come
from ``tiering.ops``, the read model the command line shares.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.templating import Jinja2Templates

from tiering.ladder import TIER_LADDER, Tier
from tiering.schemas import NEUTRAL_COLOR, TIER_COLORS, TIERS
from tiering.serve import _auth, _customers, _errors, _login, _pages, _summary, _tiers
from tiering.serve._deps import Settings
from tiering.store import ScoresStore

CONFIG_ENV = "TIERING_SERVE_CONFIG"  # the config path handed to uvicorn workers by `tiering serve`


class _SecurityHeaders:
    """Pure ASGI middleware: no caching of customer data, no framing, no sniffing, a strict CSP (the page has no script)."""

    HEADERS = [
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (
            b"content-security-policy",
            b"default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
            b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    ]

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


def _fmt_pct(x) -> str:
    return "" if x is None else f"{100 * x:.1f}%"


def _fmt_num(x, digits: int = 2) -> str:
    return "" if x is None else f"{x:,.{digits}f}"


def _templates(settings: Settings) -> Jinja2Templates:
    """The page templates, with the app's tier texts, colours, title and sign-out CSRF field as globals."""
    templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
    templates.env.filters["pct"] = _fmt_pct
    templates.env.filters["num"] = _fmt_num
    templates.env.globals.update(
        labels=settings.labels,
        tiers=TIERS,
        tier_colors=TIER_COLORS,
        neutral_color=NEUTRAL_COLOR,
        auth=settings.token is not None,
        title=settings.title,
        logout_csrf=_auth.csrf_value(settings.csrf_key, settings.session or "", "logout"),
    )
    return templates


def _description(settings: Settings) -> str:
    return (
        "Read-only lookups over the customer scores store: one customer's tier and why, the members of "
        "a tier (paged or as CSV), the tier mix and the migration between scoring dates. "
        + (
            "Every /api call except /api/health needs `Authorization: Bearer <token>`."
            if settings.token
            else "This server runs without a token (loopback only)."
        )
    )


def create_app(store_url: str, *, token: str | None = None, ladder: tuple[Tier, ...] | None = None, title: str = "tiering ops") -> FastAPI:
    """The ops app over the scores store at ``store_url``.

    ``token``: the bearer token (None: no authentication; serve only on loopback then, see ``check_bind``).
    ``ladder``: tier labels, descriptions and actions (``tiering.ladder.ladder(cfg.tiers)``); default the built-in ones.
    """
    # opened so that this process cannot write to it (SQLite query_only, PostgreSQL read-only transactions)
    store = ScoresStore(store_url, create=False, read_only=True)
    settings = Settings(token=token, ladder=tuple(ladder or TIER_LADDER), title=title)
    app = FastAPI(title=title, version="1", docs_url=None, redoc_url=None, description=_description(settings))
    app.state.store = store
    app.state.settings = settings
    app.state.templates = _templates(settings)
    app.add_middleware(_customers.FastLookup)  # inside the security headers (a later add_middleware wraps it)
    app.add_middleware(_SecurityHeaders)
    _errors.add_error_handlers(app)
    for router in (_summary.health_router, _customers.router, _tiers.router, _summary.router, _pages.router, _login.router):
        app.include_router(router)
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
