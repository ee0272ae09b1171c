"""The checks of what a caller passes, so the CLI, the API and the page refuse the same input with the same words.

Every refusal is a ConfigError (bad input) naming the parameter, the value received and what is allowed.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

from tiering.exceptions import ConfigError
from tiering.schemas import TIERS
from tiering.store import ID_MAX_LENGTH

_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

# what a customer id may be (the store's own column width; see ``tiering.store``): any non-empty text
# without control characters. Ids are compared exactly as stored (Unicode, leading zeros and inner
# spaces kept, so '007' and '7' are two customers); a lookup always binds the id as a parameter.
CUSTOMER_ID_MAX_LENGTH = ID_MAX_LENGTH
# the largest row count, limit or offset a query takes: a signed 64-bit integer (SQLite and PostgreSQL)
MAX_ROWS = 2**63 - 1
FORMATS = ("table", "csv", "json")  # of a tier listing (the API takes json and csv)


def check_customer_id(customer_id: str) -> str:
    """The id as given; ConfigError (bad input) when no stored id can look like it.

    Refused: empty or blank text, more than CUSTOMER_ID_MAX_LENGTH characters, control characters
    (tab, newline, NUL, ...) and text that is not valid Unicode (undecodable bytes on a command line).
    """
    cid = str(customer_id)
    problem = None
    if not cid.strip():
        problem = "it is empty"
    elif len(cid) > CUSTOMER_ID_MAX_LENGTH:
        problem = f"it has {len(cid):,} characters, more than the {CUSTOMER_ID_MAX_LENGTH} an id can have"
    elif bad := next((ch for ch in cid if unicodedata.category(ch) in ("Cc", "Cs")), None):
        problem = f"it contains the control or undecodable character U+{ord(bad):04X}"
    if problem:
        shown = cid if len(cid) <= 80 else cid[:80] + "..."
        raise ConfigError(
            f"Customer id {shown!r} is not valid: {problem}. An id is 1 to {CUSTOMER_ID_MAX_LENGTH} "
            "characters of text without control characters, exactly as in the scores store "
            "(percent-encode it in a URL)."
        )
    return cid


def check_tier(tier: str) -> str:
    if tier not in TIERS:
        raise ConfigError(f"Unknown tier {tier!r}; tiers are {list(TIERS)}.")
    return tier


def check_rows(value: int | None, name: str, *, minimum: int = 0, maximum: int = MAX_ROWS) -> int | None:
    """A limit or offset: None, or a whole number in [minimum, maximum]; ConfigError naming ``name`` otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be a whole number from {minimum} to {maximum:,}; got {value!r}.")
    return value


def check_flag(value, name: str) -> bool | None:
    """None, True or False (numpy booleans too); anything else is a ConfigError naming ``name``."""
    if value is None or isinstance(value, bool) or type(value).__name__ == "bool_":
        return None if value is None else bool(value)
    raise ConfigError(f"{name} must be true, false or left out; got {value!r}.")


def check_format(fmt: str, name: str = "--format", choices: tuple[str, ...] = FORMATS) -> str:
    if fmt not in choices:
        raise ConfigError(f"{name} must be {', '.join(choices[:-1])} or {choices[-1]}; got {fmt!r}.")
    return fmt


def parse_as_of(value: str | dt.date | None, name: str = "--as-of") -> dt.date | None:
    """A scoring date written YYYY-MM-DD (nothing else: no timestamps, no numbers); None stays None."""
    if value is None or isinstance(value, dt.date):
        return value
    text = str(value)
    if _DATE_RE.fullmatch(text):
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            pass
    shown = text if len(text) <= 40 else text[:40] + "..."
    raise ConfigError(f"{name} must be a date as YYYY-MM-DD; got {shown!r}.")
