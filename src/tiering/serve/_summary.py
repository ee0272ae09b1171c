"""API: the tier mix and migration, ``GET /api/summary``, and liveness, ``GET /api/health`` (no token needed)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from tiering import ops
from tiering.exceptions import StoreError
from tiering.serve._deps import ERRORS, PROTECTED, AsOf, SettingsDep, StoreDep
from tiering.serve._models import Health, Summary

health_router = APIRouter(tags=["api"])  # first in /docs, as before the split
router = APIRouter(tags=["api"], dependencies=PROTECTED, responses=ERRORS)


@health_router.get("/api/health", response_model=Health, summary="Liveness and the latest scoring date (no token needed)")
def health(store: StoreDep, settings: SettingsDep):
    auth = settings.token is not None
    try:
        batches = store.batches_list()
    except StoreError as exc:
        return JSONResponse({"status": "error", "detail": str(exc), "latest_as_of": None, "auth": auth}, 503)
    latest = max((b.as_of for b in batches), default=None)
    return {"status": "ok", "latest_as_of": latest.isoformat() if latest else None, "auth": auth}


@router.get(
    "/api/summary",
    response_model=Summary,
    summary="Counts and shares per tier for the batch and the previous scoring date, and the migration between them",
)
def get_summary(store: StoreDep, settings: SettingsDep, as_of: AsOf = None):
    return JSONResponse(ops.summary(store, as_of, ladder=settings.ladder, cache=settings.summaries))
