"""Signing in and out of the ops page: ``GET/POST /login``, ``POST /logout`` (see ``_auth`` for the tokens).

Signing in with the API token sets an HttpOnly, SameSite=Strict session cookie holding an HMAC of the token.
Both forms carry a CSRF token (a signed double submit); a POST without a matching one is refused with 403.
Without a token (loopback only) there is nothing to sign in to: both redirect straight on.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from tiering.serve import _auth
from tiering.serve._deps import Settings, SettingsDep, render

router = APIRouter(include_in_schema=False)


def _safe_next(target: str | None) -> str:
    """Only a local path may follow a sign-in (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


async def _form(request: Request) -> dict[str, str]:
    """The posted form's fields (the first value of each)."""
    return {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}


def _login_page(request: Request, settings: Settings, nxt: str, error: str | None, status: int):
    """The sign-in form with a CSRF token: an HMAC of a random nonce that also goes into a SameSite=Strict cookie."""
    nonce = _auth.new_nonce()
    resp = render(
        request,
        "login.html",
        {"next": nxt, "error": error, "dates": [], "as_of_param": None, "csrf": _auth.csrf_value(settings.csrf_key, nonce, "login")},
        status,
    )
    resp.set_cookie(_auth.CSRF_COOKIE, nonce, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/login")
    return resp


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, settings: SettingsDep, next: str = "/"):
    if settings.token is None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _login_page(request, settings, _safe_next(next), None, 200)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, settings: SettingsDep):
    form = await _form(request)
    nxt = _safe_next(form.get("next"))
    if settings.token is None:
        return RedirectResponse(nxt, status_code=303)
    if not _auth.csrf_matches(settings.csrf_key, request.cookies.get(_auth.CSRF_COOKIE), "login", form.get("csrf")):
        return _login_page(request, settings, nxt, _auth.CSRF_REFUSED, 403)
    if not _auth.token_matches(form.get("token", "").strip(), settings.token):
        return _login_page(request, settings, nxt, "That token is not right.", 401)
    resp = RedirectResponse(nxt, status_code=303)
    assert settings.session is not None  # derived from the token
    resp.set_cookie(
        _auth.SESSION_COOKIE, settings.session, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/"
    )
    resp.delete_cookie(_auth.CSRF_COOKIE, path="/login")
    return resp


@router.post("/logout")
async def logout(request: Request, settings: SettingsDep):
    if settings.token is not None:
        form = await _form(request)
        cookie = request.cookies.get(_auth.SESSION_COOKIE)
        if not _auth.csrf_matches(settings.csrf_key, cookie, "logout", form.get("csrf")):
            return JSONResponse({"detail": _auth.CSRF_REFUSED}, status_code=403)
    resp = RedirectResponse("/login" if settings.token else "/", status_code=303)
    resp.delete_cookie(_auth.SESSION_COOKIE, path="/")
    return resp
