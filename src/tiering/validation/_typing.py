"""Typing contract columns: each mapped column to its kind (id, timestamp, number, text), with the conditions
that set a row aside, in priority order; a column that can never hold its kind is a SchemaError."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tiering.exceptions import SchemaError
from tiering.io import trim_text
from tiering.schemas import Column, TableContract
from tiering.validation._rules import Rules
from tiering.validation._time import parse_time, to_zone

if TYPE_CHECKING:
    import ibis.expr.types as ir

_HEAD_ROWS = 10_000  # rows _check_parseable asks first
_MAX_EXACT_ID = 2**53  # floats above it no longer hold every integer
# a text id column in which every value looks like this was a float column once (13085.0): read as 13085
_FLOAT_TEXT, _FLOAT_TEXT_TAIL = r"^[+-]?\d+\.0+$", r"\.0+$"


def coerce(mapped: ir.Table, contract: TableContract, source: str, rules: Rules) -> tuple[dict, list]:
    """Typed contract columns, and (condition, reason) pairs in priority order.

    A column whose type can never hold its kind raises SchemaError; a text column that should
    be a number or a timestamp is parsed value by value, unparseable values become reasons.
    """
    return _Coercion(mapped, contract, source, rules).run()


@dataclass
class _Coercion:
    """One table's typing: the typed columns and reasons it collects, column by column in contract order, and the
    text columns whose parseability is then checked once for all of them."""

    mapped: ir.Table
    contract: TableContract
    source: str
    rules: Rules
    typed: dict[str, ir.Value] = field(default_factory=dict)
    reasons: list[tuple[ir.BooleanValue, str]] = field(default_factory=list)
    to_check: list[tuple[str, ir.Value, ir.Value]] = field(default_factory=list)  # (column, raw, parsed) for text-typed columns
    ids_as_text: list[tuple[str, ir.StringValue]] = field(default_factory=list)

    def run(self) -> tuple[dict, list]:
        kinds = {"id": self._id, "timestamp": self._timestamp, "number": self._number, "text": self._text}
        for col in self.contract.columns:
            if col.name not in self.mapped.columns:
                continue
            raw = self.mapped[col.name]
            text = _blank_to_null(raw, self.rules) if raw.type().is_string() else None
            kinds[col.kind](col, raw, text)
        for name in _check_parseable(self.mapped, self.contract, self.source, self.to_check, self.ids_as_text):
            self.typed[name] = self.typed[name].re_replace(_FLOAT_TEXT_TAIL, "")
        return self.typed, self.reasons

    def _wrong(self, col: Column, t, expected: str) -> SchemaError:
        name = self.contract.name
        return SchemaError(
            f"The {name} table column '{col.name}' has type {t}; expected {expected}. "
            f"Fix the source '{self.source}' or map another column under data.{name}.columns.{col.name}."
        )

    def _id(self, col: Column, raw: ir.Value, text: ir.StringValue | None) -> None:
        t = raw.type()
        if text is not None:  # a text column
            value = text
            self.ids_as_text.append((col.name, text))
        elif t.is_integer():
            value = raw.cast("string")
        elif t.is_floating():  # ids read as float (e.g. 13085.0 from an export with blanks)
            _check_integral(self.mapped, self.contract, col.name, self.source)
            value = _finite(raw).cast("int64").cast("string")
        else:
            raise self._wrong(col, t, "an identifier (text or integer)")
        self.typed[col.name] = value
        if col.required:
            self.reasons.append((value.isnull(), f"missing_{col.name}"))

    def _timestamp(self, col: Column, raw: ir.Value, text: ir.StringValue | None) -> None:
        t = raw.type()
        missing = raw.isnull()
        if t.is_timestamp():
            value = to_zone(raw, self.rules.timezone) if t.timezone is not None else raw
        elif t.is_date():
            value = raw.cast("timestamp")
        elif text is not None:  # a text column
            missing = text.isnull()
            value = parse_time(text, self.rules.timezone, self.rules.timestamp_format)
            self.to_check.append((col.name, raw, value))
        else:
            raise self._wrong(col, t, "a timestamp (or ISO text such as 2024-05-01 13:45:00)")
        self.typed[col.name] = value
        self.reasons.append((missing, "missing_time"))
        self.reasons.append((value.isnull(), "unparseable_time"))

    def _number(self, col: Column, raw: ir.Value, text: ir.StringValue | None) -> None:
        value, more = _number(raw, text, col.name, functools.partial(self._wrong, col, raw.type()), self.rules)
        self.typed[col.name] = value
        if text is not None:
            self.to_check.append((col.name, raw, value))
        if col.required:
            self.reasons.extend(more)

    def _text(self, col: Column, raw: ir.Value, text: ir.StringValue | None) -> None:
        value = text if text is not None else _blank_to_null(raw.cast("string"), self.rules)
        self.typed[col.name] = value
        if col.required:
            self.reasons.append((value.isnull(), f"missing_{col.name}"))
        if col.name == self.contract.event_type_column and self.rules.settings.unknown_event_types == "quarantine":
            self.reasons.append((~one_of(value, list(self.rules.settings.known_event_types)), "unknown_event_type"))


_LARGEST_DOUBLE = 1.7976931348623157e308


def _number(raw: ir.Value, text: ir.Value | None, name: str, wrong, rules: Rules) -> tuple[ir.Value, list]:
    """A number column typed, and its reasons: missing, unparseable, non-finite, implausible."""
    import ibis

    t = raw.type()
    if t.is_numeric():
        value, missing, parse_failed = raw.cast("float64"), raw.isnull(), ibis.literal(False)
    elif text is not None:
        value = text.try_cast("float64")
        missing, parse_failed = text.isnull(), text.notnull() & value.isnull()
    else:
        raise wrong("a number")
    # not isinf(): Ibis compiles it for Spark as a comparison with CAST('Inf' AS DOUBLE), which Spark does not read as
    # infinity, so an infinite amount was set aside there as implausible; only +-inf lie beyond the largest double
    non_finite = value.isnan() | (value.abs() > _LARGEST_DOUBLE)
    return value, [
        (missing, f"missing_{name}"),
        (parse_failed, f"unparseable_{name}"),
        (non_finite, f"non_finite_{name}"),
        (value.abs() > rules.settings.max_abs_amount, f"implausible_{name}"),
    ]


def _blank_to_null(text: ir.StringValue, rules: Rules) -> ir.StringValue:
    """Text trimmed; blank and every validation.null_tokens value (NULL, None, N/A, ...) become null."""
    import ibis

    trimmed = trim_text(text)
    tokens = sorted({tok.strip() for tok in rules.settings.null_tokens} | {""})
    return ibis.ifelse(one_of(trimmed, tokens), ibis.null("string"), trimmed)


def one_of(value: ir.Value, options: list[str]) -> ir.BooleanValue:
    """``value.isin(options)`` written as equalities joined by OR: DuckDB plans a literal IN list as a
    hash (MARK) join per use, which cost more than the rest of the typing (2 s per id column per 2M rows)."""
    import functools
    import operator

    if not options or len(options) > 32:
        return value.isin(options)
    return functools.reduce(operator.or_, [value == o for o in options])


def _finite(raw: ir.FloatingValue) -> ir.FloatingValue:
    import ibis

    return ibis.ifelse(raw.isnan() | raw.isinf(), ibis.null("float64"), raw)


def _check_integral(mapped: ir.Table, contract: TableContract, name: str, source: str) -> None:
    """A float id column is read as integers only when every value is one (13085.0 -> '13085')."""
    raw = _finite(mapped[name])
    bad = raw.notnull() & ((raw != raw.floor()) | (raw.abs() >= _MAX_EXACT_ID))
    wrong = mapped.filter(bad | (mapped[name].notnull() & raw.isnull()))
    n = int(wrong.count().execute())
    if n:
        examples = wrong.select(v=wrong[name]).limit(3).execute()["v"].tolist()
        raise SchemaError(
            f"The {contract.name} table column '{name}' holds ids as floating-point numbers and {n:,} of them are not "
            f"whole numbers below 2**53 (e.g. {examples}), so the original ids cannot be recovered. Export the ids as "
            f"text from '{source}', or map another column under data.{contract.name}.columns.{name}."
        )


def _check_parseable(mapped: ir.Table, contract: TableContract, source: str, to_check: list, ids_as_text: list) -> list[str]:
    """A text column in which not a single value parses is a mapping error, not bad rows. Returns the text id
    columns written as floats (every value like 13085.0: an export of a float column), read without '.0'.

    Each question is whether some row satisfies a condition; all of them are first asked of the first
    rows only (one query over a LIMIT): on ordinary data those answer every question (an id without
    '.', a value that parses), so the table is not scanned; a question they leave open is asked of the
    whole table (a query that stops at its first match). A full-table aggregate of every text column
    here had cost a tenth of validation.
    """
    import ibis

    if not to_check and not ids_as_text:
        return []
    conds: dict[str, ir.BooleanValue] = {}
    for name, text in ids_as_text:
        conds[f"{name}__id"] = text.notnull()
        # floaty needs every id written like 13085.0 (the regex only where a '.' is)
        conds[f"{name}__plain"] = text.notnull() & ~ibis.ifelse(text.contains("."), text.re_search(_FLOAT_TEXT), False)
    for name, raw, parsed in to_check:
        conds[f"{name}__present"] = raw.notnull()
        conds[f"{name}__parsed"] = parsed.notnull()
    head = mapped.select(**conds).limit(_HEAD_ROWS)
    seen = head.aggregate(**{k: head[k].any() for k in conds}).execute().iloc[0]
    found = {k: bool(seen[k]) for k in conds}

    def exists(key: str) -> bool:
        if not found[key]:
            cond = conds[key]
            found[key] = int(mapped.filter(cond).select(_x=cond).limit(1).count().execute()) > 0
        return found[key]

    floaty = [name for name, _ in ids_as_text if not exists(f"{name}__plain") and exists(f"{name}__id")]
    for name, raw, _ in to_check:
        if not exists(f"{name}__parsed") and exists(f"{name}__present"):
            examples = mapped.select(v=raw).filter(raw.notnull()).limit(3).execute()["v"].tolist()
            kind = contract.column(name).kind
            expected = (
                "numbers"
                if kind == "number"
                else (
                    "timestamps such as 2024-05-01 13:45:00 (ISO 8601; for another layout set "
                    f"data.{contract.name}.timestamp_format, e.g. '%m/%d/%Y %H:%M')"
                )
            )
            raise SchemaError(
                f"The {contract.name} table column '{name}' holds text that does not parse as {expected}; "
                f"e.g. {examples}. Fix the source '{source}' or map another column under "
                f"data.{contract.name}.columns.{name} in the config."
            )
    return floaty
