"""How the ops app answers a failure: one JSON shape, ``{"detail": one sentence, "errors": FastAPI's list}``.

Not found (``ops.NotFoundError``) 404; bad input (``ConfigError``, FastAPI's validation errors) 422 with one
sentence naming the parameter, the rule and the value; a store that cannot be read (``StoreError``:
corrupt, locked, unreachable) 503, also for a CSV export, whose query starts before any text goes out.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from tiering.exceptions import ConfigError, StoreError
from tiering.ops import NotFoundError


def validation_message(errors: list) -> str:
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


async def _not_found(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=404)


async def _bad_input(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=422)


async def _bad_parameter(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # the handler of RequestValidationError only
    errors = jsonable_encoder(exc.errors(), custom_encoder={BaseException: str})
    return JSONResponse({"detail": validation_message(errors), "errors": errors}, status_code=422)


async def _store_down(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=503)


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(NotFoundError, _not_found)
    app.add_exception_handler(ConfigError, _bad_input)
    app.add_exception_handler(RequestValidationError, _bad_parameter)
    app.add_exception_handler(StoreError, _store_down)
