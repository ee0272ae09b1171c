"""Reading one configured source file (Parquet or CSV) as an Ibis table, columns untouched; CSV with every
column as text and a fixed dialect (the package docstring)."""

from __future__ import annotations

import codecs
import csv
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from tiering.config import SourceConfig
from tiering.exceptions import ConfigError, DataQualityError, SchemaError, TieringError
from tiering.io._engine import NAME_SERIAL, private_folder
from tiering.io._read_errors import PEEK_BYTES, encoding_error, explain_read_error

if TYPE_CHECKING:
    import ibis.expr.types as ir

_DELIMITERS = ",;\t|"


def read_source(con, source: SourceConfig, table: str) -> ir.Table:
    """Read one configured source file (Parquet or CSV) as an Ibis table, columns untouched."""
    if not source.path:
        raise ConfigError(f"No path is configured for the {table} table. Set data.{table}.path in the config or pass --{table} PATH.")
    path = Path(source.path)
    if not path.exists():
        raise ConfigError(
            f"The {table} source '{path}' does not exist (resolved against {Path.cwd()}). "
            f"Fix data.{table}.path in the config or pass --{table} PATH."
        )
    fmt = source.format
    if fmt == "auto":
        suffix = "".join(path.suffixes).lower() if path.is_file() else ".parquet"
        fmt = "csv" if ".csv" in suffix or suffix.endswith(".tsv") else "parquet"
    # a Spark session's temp views are shared by every Ibis connection on it: a fixed name would
    # let a later read silently replace the table behind an earlier, still lazy, expression
    name = f"src_{table}_{next(NAME_SERIAL)}"
    try:
        # absolute: a Spark JVM resolves relative paths against its own working directory
        if fmt == "csv":
            return _read_csv(con, path, source, table, name)
        return con.read_parquet(str(path.resolve()), table_name=name)
    except (TieringError, FileNotFoundError):
        raise
    except Exception as exc:  # the engine's own parse error, reworded
        raise explain_read_error(exc, table, source) from None


def _read_csv(con, path: Path, source: SourceConfig, table: str, name: str) -> ir.Table:
    """Every column as text under the header's names; the dialect fixed, never sniffed (tiering.io docstring)."""
    header, delim, only_header = _csv_header(path, source, table)
    if only_header:
        raise DataQualityError(
            f"The {table} file '{path}' has a header but no rows (columns {header}). Export the rows too, or point "
            f"data.{table}.path (or --{table}) at the right file."
        )
    if con.name == "pyspark":
        return con.read_csv(
            str(path.resolve()),
            table_name=name,
            inferSchema=False,
            header=True,
            sep=delim,
            encoding=source.encoding,
            multiLine=True,
            mode="FAILFAST",
            quote='"',
            escape='"',
        )
    folder = private_folder(con, "tiering-csv-")
    text_path = path if _is_utf8(source.encoding) else _utf8_copy(path, source.encoding, table, folder)
    columns = {c: "VARCHAR" for c in header}
    text = con.read_csv(
        str(text_path.resolve()),
        table_name=f"{name}_csv",
        header=True,
        auto_detect=False,
        delim=delim,
        quote='"',
        escape='"',
        columns=columns,
    )
    # parsed once into Parquet: the file is scanned once (parse errors surface here, named by the caller), and
    # DuckDB then types repeated values once per distinct value (dictionary pages): Online Retail II as CSV
    # validates 3-4x faster this way than straight from the text
    copy = folder / f"{name}.parquet"
    text.to_parquet(str(copy))
    return con.read_parquet(str(copy), table_name=name)


def _is_utf8(encoding: str) -> bool:
    return codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")


def _csv_header(path: Path, source: SourceConfig, table: str) -> tuple[list[str], str, bool]:
    """The header's column names, the delimiter, and whether the file holds nothing after its header."""
    raw = path.open("rb").read(PEEK_BYTES)
    if not raw.lstrip(codecs.BOM_UTF8).strip():
        raise DataQualityError(
            f"The {table} file '{path}' is empty ({path.stat().st_size} bytes). Point data.{table}.path (or --{table}) "
            "at a CSV with a header line and rows."
        )
    enc = "utf-8-sig" if _is_utf8(source.encoding) else source.encoding
    decoder = codecs.getincrementaldecoder(enc)(errors="strict")
    try:
        text = decoder.decode(raw, final=len(raw) < PEEK_BYTES)
    except UnicodeDecodeError as exc:
        raise encoding_error(path, table, source.encoding, raw, exc.start) from None
    lines = text.splitlines()
    first = lines[0]
    delim = source.delimiter or max(_DELIMITERS, key=first.count)
    header = next(csv.reader([first], delimiter=delim, quotechar='"'))
    names = [h.strip() or f"column{i}" for i, h in enumerate(header)]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SchemaError(
            f"The {table} file '{path}' names column(s) {repeated} more than once in its header {names} "
            f"(delimiter {delim!r}). Rename them in the file, or set data.{table}.delimiter if the split is wrong."
        )
    only_header = len(raw) < PEEK_BYTES and not any(line.strip() for line in lines[1:])
    return names, delim, only_header


def _utf8_copy(path: Path, encoding: str, table: str, folder: Path) -> Path:
    """``path`` transcoded to UTF-8 in ``folder``."""
    out = folder / path.name
    with path.open("r", encoding=encoding, newline="") as src, out.open("w", encoding="utf-8", newline="") as dst:
        try:
            shutil.copyfileobj(src, dst, 1 << 20)
        except UnicodeDecodeError as exc:
            raise encoding_error(path, table, encoding, exc.object, exc.start, approximate=True) from None
    return out
