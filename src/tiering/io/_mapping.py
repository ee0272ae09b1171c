"""Mapping source columns to contract columns: by name, or by arithmetic over source columns written in config
(parsed with ``ast`` into Ibis, never into SQL text)."""

from __future__ import annotations

import ast
import operator
import re
from typing import TYPE_CHECKING

from tiering.exceptions import ConfigError, SchemaError
from tiering.schemas import TableContract

if TYPE_CHECKING:
    import ibis.expr.types as ir

_BACKTICK = re.compile(r"`([^`]+)`")
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def map_columns(raw: ir.Table, contract: TableContract, mapping: dict[str, str]) -> ir.Table:
    """Select the contract columns from ``raw``, renamed or derived as ``mapping`` says.

    A contract column without a mapping is taken by its own name. A required column that
    cannot be found raises SchemaError naming the table, the column, the source columns and
    the config key to set. Optional columns that are absent are left out.
    """
    unknown = sorted(set(mapping) - {c.name for c in contract.columns})
    if unknown:
        raise ConfigError(
            f"data.{contract.name}.columns maps {unknown}, which are not columns of the {contract.name} contract. "
            f"Contract columns: {[c.name for c in contract.columns]}."
        )
    selected = {}
    for col in contract.columns:
        spec = mapping.get(col.name)
        if spec is None:
            if col.name in raw.columns:
                selected[col.name] = raw[col.name]
            elif col.required:
                raise SchemaError(
                    f"The {contract.name} table is missing column '{col.name}'. Got columns {list(raw.columns)}. "
                    f"Map a source column under data.{contract.name}.columns.{col.name} in the config "
                    f"(e.g. {col.name}: SourceName)."
                )
            continue
        selected[col.name] = compile_expression(spec, raw, f"data.{contract.name}.columns.{col.name}", contract.name)
    return raw.select(**selected)


def compile_expression(spec: str, raw: ir.Table, key: str, table: str) -> ir.Value:
    """A source column name, or arithmetic (+ - * /, numbers, parentheses) over source columns.

    Names with spaces or symbols are written in backticks. Parsed with ``ast`` into Ibis, so
    no SQL text is ever built from config and the same mapping runs on every engine.
    """
    if spec in raw.columns:
        return raw[spec]
    quoted: dict[str, str] = {}

    def _placeholder(m: re.Match) -> str:
        quoted[f"__col{len(quoted)}"] = m.group(1)
        return f"__col{len(quoted) - 1}"

    text = _BACKTICK.sub(_placeholder, spec)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise ConfigError(
            f"{key} = {spec!r} is neither a column of the {table} source nor an arithmetic expression. "
            f"Source columns: {list(raw.columns)}. Put names with spaces in backticks, e.g. '`Customer ID`'."
        ) from None

    def build(node: ast.AST):
        import ibis

        if isinstance(node, ast.Expression):
            return build(node.body)
        if isinstance(node, ast.Name):
            name = quoted.get(node.id, node.id)
            if name not in raw.columns:
                raise SchemaError(
                    f"The {table} source has no column '{name}' (used by {key} = {spec!r}). "
                    f"Got columns {list(raw.columns)}. Fix {key} in the config."
                )
            return raw[name]
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return ibis.literal(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = build(node.operand)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
            left, right = (_as_number(build(side), key, spec, table) for side in (node.left, node.right))
            return _BINARY[type(node.op)](left, right)
        raise ConfigError(
            f"{key} = {spec!r} uses something other than column names, numbers and + - * /. Only arithmetic over source columns is allowed."
        )

    return build(tree)


def _as_number(side: ir.Value, key: str, spec: str, table: str) -> ir.Value:
    """An arithmetic operand: numbers as they are, text (every CSV column) parsed value by value (bad ones: null)."""
    if side.type().is_string():
        return trim_text(side).try_cast("float64")
    if not side.type().is_numeric():
        raise SchemaError(
            f"{key} = {spec!r} does arithmetic on a non-numeric {table} column of type {side.type()}. "
            f"Map a numeric column, or fix the source."
        )
    return side


def trim_text(text: ir.StringValue) -> ir.StringValue:
    """Surrounding whitespace removed. Not Ibis's strip() on Spark: it passes '\\v' in a SQL literal, which Spark
    reads as the letter v, so 'view' came out as 'iew'."""
    import ibis

    if text._find_backend(use_default=True).name == "pyspark":
        return text.re_replace(r"^\s+|\s+$", "")
    # DuckDB's trim with a character list (what strip() compiles to) costs ~3x a value's other checks; the
    # characters it removes are all <= ' ', so only a value that starts or ends with such a character needs it
    # (validation of 2M transaction lines: 2.4 -> 0.85 CPU s for the four text columns)
    edge = (text.ascii_str() <= 32) | (text.right(1).ascii_str() <= 32)
    return ibis.ifelse(edge, text.strip(), text)
