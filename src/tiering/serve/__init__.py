"""The ops server: the REST API and web page (``tiering serve``) over the read model of ``tiering.ops``.

The lookups (re-exported from ``tiering.ops``, where the command line should import them) and the
access-control helpers import without FastAPI; ``create_app``, ``app_from_config``,
``app_from_environ`` and ``run_server`` load FastAPI/uvicorn only when first used.
"""

from tiering.ops import (
    CUSTOMER_ID_MAX_LENGTH,
    MAX_ROWS,
    NotFoundError,
    check_customer_id,
    check_format,
    check_rows,
    check_tier,
    csv_cell,
    customer_card,
    iter_tier_csv,
    migration,
    parse_as_of,
    resolve_batch,
    summary,
    tier_mix,
    tier_page,
)
from tiering.serve._auth import TOKEN_ENV, check_bind, check_port_free, is_loopback, resolve_token

__all__ = [
    "CUSTOMER_ID_MAX_LENGTH",
    "MAX_ROWS",
    "NotFoundError",
    "TOKEN_ENV",
    "app_from_config",
    "app_from_environ",
    "check_bind",
    "check_customer_id",
    "check_format",
    "check_port_free",
    "check_rows",
    "check_tier",
    "create_app",
    "csv_cell",
    "customer_card",
    "is_loopback",
    "iter_tier_csv",
    "migration",
    "parse_as_of",
    "resolve_batch",
    "resolve_token",
    "run_server",
    "summary",
    "tier_mix",
    "tier_page",
]


def __getattr__(name: str):
    if name in ("create_app", "app_from_config", "app_from_environ"):
        from tiering.serve import _app

        return getattr(_app, name)
    if name == "run_server":
        from tiering.serve._run import run_server

        return run_server
    raise AttributeError(f"module 'tiering.serve' has no attribute {name!r}")
