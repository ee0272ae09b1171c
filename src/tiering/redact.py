"""Redaction: nothing secret leaves the process in a log, a tracking run, a printed result or a message.

Three rules, applied to any value (text, or dicts and lists of them, walked deeply):
- a key that names a secret (``token``, ``password``, ``secret``, ``api_key``, ``credentials``, and
  every config field declared ``secret`` in tiering.config) has its value replaced by ``***``;
- a password inside a URL (``postgresql+psycopg://user:PASSWORD@host/db``) becomes ``***``, and so does the
  signature or token in a URL's query (``?sv=...&sig=SIGNATURE``, ``X-Amz-Signature=...``);
- any known secret value (the config's secret fields, the API token from the environment) is
  replaced wherever it appears in text, e.g. inside an error message.

Used at every edge: tracking.py (params, tags, text artifacts), the CLI (results, JSON, errors).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MASK = "***"
# scheme://user:password@host -> scheme://user:***@host (the user stays: it helps find the account)
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s/]+)(?=@)")
# ?sig=... / &X-Amz-Signature=...: the signature of an Azure SAS token or a presigned S3/GCS URL, and the session token
_URL_QUERY_SECRET = re.compile(
    r"(?P<head>[?&](?:sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|token|access_token)=)"
    r"(?P<value>[^&#\s'\"]+)",
    re.I,
)
_SECRET_KEY = re.compile(r"(^|[._\-])(token|password|passwd|pwd|secret|api[_\-]?key|credentials?)($|[._\-])", re.I)


def is_secret_key(key: str) -> bool:
    """Whether a (possibly dotted, flattened) key names a secret: ``serve.token``, ``db_password``."""
    return bool(_SECRET_KEY.search(str(key)))


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with URL passwords and every known secret value (at least 4 characters) masked."""
    out = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    out = _URL_QUERY_SECRET.sub(lambda m: m.group("head") + MASK, out)
    for s in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        out = out.replace(s, MASK)
    return out


def redact(value: Any, secrets: Iterable[str] = (), *, key: str = "") -> Any:
    """A copy of ``value`` (text, numbers, dicts, lists) with every secret masked (see the module doc)."""
    secrets = tuple(secrets)
    if key and is_secret_key(key) and value not in (None, ""):
        return MASK
    if isinstance(value, dict):
        return {k: redact(v, secrets, key=str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v, secrets) for v in value)
    if isinstance(value, str):
        return redact_text(value, secrets)
    return value
