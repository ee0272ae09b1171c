"""Times: text parsed as wall-clock time in data.timezone (offsets converted, or a configured strftime format),
zone-aware timestamps converted to it, and the end of an as_of day."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from tiering.exceptions import ConfigError

if TYPE_CHECKING:
    import ibis.expr.types as ir

# text that carries its own UTC offset: a time of day followed by Z or +hh[:mm] / -hh[:mm]
_OFFSET = r"\d{2}:\d{2}(:\d{2}(\.\d+)?)?\s*([Zz]|[+-]\d{2}(:?\d{2})?)$"


def day_after(as_of: dt.date):
    """Midnight after the ``as_of`` day: a row at or after it is after_as_of."""
    import ibis

    return ibis.timestamp(dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time()))


def to_zone(aware: ir.TimestampValue, zone: str) -> ir.TimestampValue:
    """An instant as naive wall-clock time in ``zone``."""
    import ibis.expr.datatypes as dt

    if aware._find_backend(use_default=True).name == "pyspark":
        if zone != "UTC":
            raise ConfigError(f"data.timezone = {zone!r} is supported on the duckdb engine only; the spark engine reads UTC.")
        return aware.cast(dt.Timestamp())
    return _duckdb_timezone(zone, aware)


def _duckdb_timezone(zone: str, ts: ir.TimestampValue) -> ir.TimestampValue:
    """DuckDB's timezone(zone, timestamptz): the naive local time of an instant in ``zone``."""
    import ibis
    import ibis.expr.datatypes as idt

    def timezone(zone, ts): ...

    # types set directly: this module's postponed annotations would resolve `dt` to the datetime module
    timezone.__annotations__ = {"zone": idt.string, "ts": idt.Timestamp(timezone="UTC"), "return": idt.timestamp}
    return ibis.udf.scalar.builtin(timezone, name="timezone")(zone, ts)


def _duckdb_try_strptime(text: ir.StringValue, fmt: str) -> ir.TimestampValue:
    """DuckDB's try_strptime(text, format): null where the text does not match."""
    import ibis
    import ibis.expr.datatypes as idt

    def try_strptime(text, fmt): ...

    try_strptime.__annotations__ = {"text": idt.string, "fmt": idt.string, "return": idt.timestamp}
    return ibis.udf.scalar.builtin(try_strptime, name="try_strptime")(text, fmt)


def parse_time(text: ir.StringValue, zone: str, fmt: str | None = None) -> ir.TimestampValue:
    """Text as naive wall-clock time in ``zone``: with an offset (Z, +08:00), converted; without, as written.
    With ``fmt`` (a strftime format), parsed by it instead (null where a value does not match)."""
    import ibis
    import ibis.expr.datatypes as dt

    if fmt is not None:
        if text._find_backend(use_default=True).name != "duckdb":
            raise ConfigError(
                "data.<table>.timestamp_format is supported on the duckdb engine only; write ISO 8601 "
                "times (2024-05-01 13:45:00) for the spark engine."
            )
        return _duckdb_try_strptime(text, fmt)

    aware = to_zone(text.try_cast(dt.Timestamp(timezone="UTC")), zone)
    return ibis.ifelse(text.re_search(_OFFSET), aware, text.try_cast("timestamp"))
