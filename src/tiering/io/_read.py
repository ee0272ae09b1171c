"""Reading one configured source file (Parquet or CSV; a local path or a URL) as an Ibis table, columns untouched;
CSV with every column as text and a fixed dialect (the package docstring)."""

from __future__ import annotations

import codecs
import csv
import shutil
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tiering.config import SourceConfig
from tiering.exceptions import ConfigError, DataQualityError, SchemaError, TieringError
from tiering.io._engine import NAME_SERIAL, private_folder
from tiering.io._fs import HadoopPath, LocalPath, check_url, display_path, is_url, local_path, name_suffixes, redact_url_text, url_scheme
from tiering.io._read_errors import PEEK_BYTES, encoding_error, explain_read_error

if TYPE_CHECKING:
    import ibis.expr.types as ir

_DELIMITERS = ",;\t|"
# URL schemes DuckDB has readers for (its httpfs and azure extensions); hdfs:// and the rest need Spark
_DUCKDB_SCHEMES = frozenset({"s3", "s3a", "s3n", "gs", "gcs", "r2", "http", "https", "az", "azure", "abfss", "hf"})


def read_source(con, source: SourceConfig, table: str) -> ir.Table:
    """Read one configured source (Parquet or CSV; a local path, or a URL: tiering.io._fs) as an Ibis table,
    columns untouched. On Spark a URL is looked up and peeked at through the session's Hadoop FileSystem; on
    DuckDB a ``file:`` URL is the local file, and other URLs are DuckDB's to read (Parquet) or refused with
    what to do."""
    if not source.path:
        raise ConfigError(f"No path is configured for the {table} table. Set data.{table}.path in the config or pass --{table} PATH.")
    location = source.path
    check_url(location, f"{table} source")
    spark = con.name == "pyspark"
    if is_url(location) and not spark:
        if url_scheme(location) != "file":
            return _read_url_on_duckdb(con, source, table)
        location = str(local_path(location))
    file: HadoopPath | LocalPath
    if is_url(location):
        file, where = HadoopPath(con._session, location), "looked up through Spark's Hadoop FileSystem"
    else:
        file, where = LocalPath(Path(location)), f"resolved against {Path.cwd()}"
    if not file.exists():
        raise _missing(table, str(file), f" ({where})")
    fmt: str = source.format
    if fmt == "auto":
        fmt = _format_of(file.suffixes() if file.is_file() else ".parquet")
    # a Spark session's temp views are shared by every Ibis connection on it: a fixed name would
    # let a later read silently replace the table behind an earlier, still lazy, expression
    name = f"src_{table}_{next(NAME_SERIAL)}"
    try:
        if fmt == "csv":
            return _read_csv(con, file, source, table, name)
        return con.read_parquet(file.engine_path, table_name=name)
    except (TieringError, FileNotFoundError):
        raise
    except Exception as exc:  # the engine's own parse error, reworded
        raise explain_read_error(exc, table, source) from None


def _missing(table: str, shown: str, where: str = "") -> ConfigError:
    return ConfigError(f"The {table} source '{shown}' does not exist{where}. Fix data.{table}.path in the config or pass --{table} PATH.")


def _format_of(suffixes: str) -> str:
    return "csv" if ".csv" in suffixes or suffixes.endswith(".tsv") else "parquet"


def _read_url_on_duckdb(con, source: SourceConfig, table: str) -> ir.Table:
    """A non-file URL on DuckDB: Parquet through DuckDB's own readers where it has one for the scheme (its httpfs
    or azure extension, installed and given credentials by the user); else a ConfigError saying what to do."""
    url, scheme = source.path or "", url_scheme(source.path or "")
    shown = display_path(url)
    fmt = source.format if source.format != "auto" else _format_of(name_suffixes(urlsplit(url).path))
    todo = (
        f"Run with --engine spark (features.engine: spark), whose Hadoop FileSystem reads {scheme}:// with the cluster's "
        f"connectors and credentials, or copy the file to a local path and point data.{table}.path (or --{table}) at it"
    )
    if scheme not in _DUCKDB_SCHEMES or fmt == "csv":
        what = "CSV at a URL" if fmt == "csv" else f"{scheme}:// URLs"
        raise ConfigError(f"The {table} source '{shown}' is a URL, and the duckdb engine reads no {what}. {todo}.")
    try:
        return con.read_parquet(url, table_name=f"src_{table}_{next(NAME_SERIAL)}")
    except Exception as exc:
        text = redact_url_text(str(exc), url).strip().splitlines()[0]
        if "No files found" in text:
            raise _missing(table, shown) from None
        raise ConfigError(
            f"The duckdb engine could not read the {table} source '{shown}': {text}. {todo}; or give DuckDB its "
            f"{'azure' if scheme in ('az', 'azure', 'abfss') else 'httpfs'} extension and a secret for that storage."
        ) from None


def _read_csv(con, file: HadoopPath | LocalPath, source: SourceConfig, table: str, name: str) -> ir.Table:
    """Every column as text under the header's names; the dialect fixed, never sniffed (tiering.io docstring)."""
    header, delim, only_header = _csv_header(file, source, table)
    if only_header:
        raise DataQualityError(
            f"The {table} file '{file}' has a header but no rows (columns {header}). Export the rows too, or point "
            f"data.{table}.path (or --{table}) at the right file."
        )
    if con.name == "pyspark":
        return con.read_csv(
            file.engine_path,
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
    assert isinstance(file, LocalPath), "URLs on DuckDB are read by _read_url_on_duckdb"
    path = file.path
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


def _csv_header(file: HadoopPath | LocalPath, source: SourceConfig, table: str) -> tuple[list[str], str, bool]:
    """The header's column names, the delimiter, and whether the file holds nothing after its header."""
    raw = file.head(PEEK_BYTES)
    if not raw.lstrip(codecs.BOM_UTF8).strip():
        raise DataQualityError(
            f"The {table} file '{file}' is empty ({file.size()} bytes). Point data.{table}.path (or --{table}) "
            "at a CSV with a header line and rows."
        )
    enc = "utf-8-sig" if _is_utf8(source.encoding) else source.encoding
    decoder = codecs.getincrementaldecoder(enc)(errors="strict")
    try:
        text = decoder.decode(raw, final=len(raw) < PEEK_BYTES)
    except UnicodeDecodeError as exc:
        raise encoding_error(str(file), table, source.encoding, raw, exc.start) from None
    lines = text.splitlines()
    first = lines[0]
    delim = source.delimiter or max(_DELIMITERS, key=first.count)
    header = next(csv.reader([first], delimiter=delim, quotechar='"'))
    names = [h.strip() or f"column{i}" for i, h in enumerate(header)]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SchemaError(
            f"The {table} file '{file}' names column(s) {repeated} more than once in its header {names} "
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
