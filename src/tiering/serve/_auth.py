"""Access control of the ops server: one bearer token, where it comes from, and where the server may listen.

- The token comes from the environment variable TIERING_API_TOKEN, else ``serve.token`` in the config.
- Without a token the server only starts on a loopback address (127.0.0.0/8, ::1, localhost), where
  only this machine can reach it, and then serves without authentication.
- With a token every API call needs ``Authorization: Bearer <token>``; the web page signs in through a
  form that sets an HttpOnly, SameSite=Strict session cookie holding an HMAC of the token (never the
  token itself). Comparisons are constant-time.
- The page's forms (sign in, sign out) carry a CSRF token, a signed double submit: the form's hidden
  field holds an HMAC (keyed by the API token, so every worker process agrees) of the form's name and a
  value the browser also sends as a cookie: a random nonce set with the sign-in form, the session
  cookie for sign-out. A POST whose field does not match its cookie is refused with 403.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets

from tiering.exceptions import ConfigError

TOKEN_ENV = "TIERING_API_TOKEN"
MIN_TOKEN_LENGTH = 16
SESSION_COOKIE = "tiering_session"
CSRF_COOKIE = "tiering_csrf"
CSRF_REFUSED = (
    "Refused: the form was sent without a valid CSRF token (the page expired, cookies are off, or the form "
    "came from another site). Reload the sign-in page and submit it again."
)


def resolve_token(config_token: str | None = None, environ: dict | None = None) -> str | None:
    """The API token: TIERING_API_TOKEN if set (and not blank), else the config's ``serve.token``; None if neither."""
    env = os.environ if environ is None else environ
    token = (env.get(TOKEN_ENV) or "").strip() or (config_token or "").strip() or None
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"The API token is {len(token)} characters long; use at least {MIN_TOKEN_LENGTH} random characters "
            f'(e.g. `python -c "import secrets; print(secrets.token_urlsafe(32))"`) in {TOKEN_ENV} or serve.token.'
        )
    return token


def is_loopback(host: str) -> bool:
    if host.strip().lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen on a non-loopback address without a token."""
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"Refusing to serve on {host!r} without an API token: anyone who can reach that address could read "
            f"every customer's scores. Set {TOKEN_ENV} (or serve.token in the config), or serve on 127.0.0.1."
        )


def token_matches(given: str | None, token: str) -> bool:
    """Constant-time comparison of a presented token with the configured one."""
    return given is not None and hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode("utf-8"))


def session_value(token: str) -> str:
    """What the page's session cookie holds: a keyed hash of the token, so the cookie never carries the token."""
    return hmac.new(token.encode("utf-8"), b"tiering-ops-page-session-v1", hashlib.sha256).hexdigest()


def csrf_key(token: str) -> bytes:
    """The key that signs CSRF tokens: derived from the API token, so all worker processes share it."""
    return hmac.new(token.encode("utf-8"), b"tiering-ops-page-csrf-v1", hashlib.sha256).digest()


def new_nonce() -> str:
    return secrets.token_urlsafe(32)


def csrf_value(key: bytes, nonce: str, form: str) -> str:
    """The hidden field of ``form``: an HMAC of the form's name and the nonce its cookie carries."""
    return hmac.new(key, f"{form}\n{nonce}".encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


def csrf_matches(key: bytes, nonce: str | None, form: str, given: str | None) -> bool:
    """Constant-time check of a submitted CSRF field against the cookie's nonce."""
    if not nonce or not given:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), csrf_value(key, nonce, form).encode())


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def check_port_free(host: str, port: int) -> None:
    """Fail with a clear message, before the server starts, when the address is taken or cannot be bound."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"Cannot serve on host {host!r}: {exc.strerror}. Use an IP address of this machine, e.g. 127.0.0.1.") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as exc:
            raise ConfigError(f"Cannot serve on {host}:{port}: {exc.strerror}. Pick another --port, or stop what listens there.") from None
