"""Reading sources: connect an engine, read a configured file, map its columns to the contract;
and writing one result table to one file on any engine.

Nothing here judges rows; that is validation's job. This module only answers "which source
column (or expression over source columns) is each contract column", and fails with one
clear message when it cannot.

Engines: ``connect("duckdb")`` (in-process, the default) or ``connect("spark")`` (a local
PySpark session from tiering._spark; pass ``ibis.pyspark.connect(your_session)`` to use a
cluster's). Every source read gets a fresh table name, so several reads on one Spark session
never replace each other's views.

CSV files are read with every column as text, nothing sniffed: an id such as ``007`` stays
``007``, and validation types amounts and times value by value over the whole file (a bad value
on line 32,143 is a quarantined row, not a crash, as a type sniffed from the first rows would
give). The dialect is fixed, not guessed: the header's own names, the delimiter from
``data.<table>.delimiter`` (default: the most frequent of , ; tab | in the header line), double
quotes (fields may hold the delimiter and newlines), the encoding from ``data.<table>.encoding``
(default utf-8; a UTF-8 byte-order mark is skipped; other encodings are transcoded to a private
temporary UTF-8 copy). An empty file, a header without rows, a ragged line and bytes that are
not in the encoding are each named in the message (file, line, key to set): see
``explain_read_error``.
"""

from __future__ import annotations

import ast
import codecs
import contextlib
import csv
import itertools
import operator
import os
import re
import shutil
import tempfile
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tiering.config import SourceConfig
from tiering.exceptions import ConfigError, DataQualityError, SchemaError, TieringError
from tiering.schemas import TableContract

if TYPE_CHECKING:
    import ibis.expr.types as ir
    import pyarrow as pa

_BACKTICK = re.compile(r"`([^`]+)`")
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_READS = itertools.count()  # numbers source views: src_<table>_<n>, unique per process


_MIB = 1 << 20
_AUTO_LIMIT_FLOOR = 1024 * _MIB  # the automatic DuckDB memory limit never goes below 1 GiB (unless RAM/4 is less)
_AUTO_LIMIT_BYTES_PER_ROW = 48  # ... and grows by 48 bytes per input row beyond that (~22M rows)
_AUTO_LIMIT_PER_THREAD = 512 * _MIB  # ... and is at least 512 MiB per DuckDB thread (fewer: many threads only spill)
_AUTO_LIMIT_MIN = 256 * _MIB


def machine_memory() -> int:
    """Physical memory of this machine in bytes (the cgroup limit when a container sets a lower one)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for f in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):
            total = min(total, int(Path(f).read_text().strip()))
    return total


def auto_memory_limit(rows: int | None = None, memory: int | None = None, threads: int | None = None) -> str:
    """DuckDB's memory_limit when the user sets none (``features.duckdb_memory_limit`` /
    ``predict.duckdb_memory_limit`` unset): 48 bytes per input row to build from (valid transaction +
    interaction rows, at most one customer bucket's ``features.bucket_rows``; unknown: 1 GiB's worth),
    at least 1 GiB and 512 MiB per DuckDB thread (``threads``; None: the cores this process may use), at
    most a quarter of the machine's memory (never below 256 MiB).

    At 1M customers (20M rows) on 2 cores that is 1 GiB: the feature build then peaks at ~1.2 GiB RSS
    instead of ~2 GiB under DuckDB's own default (80% of RAM), for a few percent more time (it spills to
    disk). On 16 cores a 1 GiB limit made every thread past the second only spill (the build took 18.7 s
    against 4.5 s without a limit, benchmarks/results/device_scaling_2026-11-27.txt): hence the per-thread floor.
    """
    memory = machine_memory() if memory is None else memory
    threads = available_cores() if threads is None else max(1, int(threads))
    floor = max(_AUTO_LIMIT_FLOOR, _AUTO_LIMIT_PER_THREAD * threads)
    want = floor if rows is None else max(floor, _AUTO_LIMIT_BYTES_PER_ROW * int(rows))
    limit = max(_AUTO_LIMIT_MIN, min(want, memory // 4))
    return f"{limit // _MIB}MiB"


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one: a container's share)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def set_auto_memory_limit(con, rows: int) -> None:
    """Resize the automatic memory limit of a ``connect("duckdb")`` connection to ``rows`` input rows
    (no-op on Spark and when the user chose a limit)."""
    if getattr(con, "name", None) == "duckdb" and getattr(con, "_tiering_auto_memory_limit", False):
        con.raw_sql(f"SET memory_limit = '{auto_memory_limit(rows, threads=getattr(con, '_tiering_threads', None))}'")


def connect(engine: str = "duckdb", **settings):
    """An Ibis backend: in-process DuckDB by default, a local PySpark session with ``spark``.

    ``settings`` are DuckDB settings, e.g. ``memory_limit="1GB"`` (DuckDB then spills to disk
    instead of growing) or ``threads=2``; ignored for spark. Without a memory_limit, DuckDB gets
    ``auto_memory_limit()`` (1 GiB, or a quarter of RAM when that is less; load_tables raises it
    with the base size) instead of DuckDB's own default of 80% of RAM.
    """
    import ibis

    if engine == "duckdb":
        auto = settings.get("memory_limit") is None
        if auto:
            settings["memory_limit"] = auto_memory_limit(threads=settings.get("threads"))
        con = ibis.duckdb.connect(**settings)
        con._tiering_auto_memory_limit = auto
        con._tiering_threads = settings.get("threads")
        return con
    if engine == "spark":
        from tiering._spark import spark_session

        return ibis.pyspark.connect(spark_session())
    raise ConfigError(f"Unknown engine {engine!r}; use 'duckdb' or 'spark'.")


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
    name = f"src_{table}_{next(_READS)}"
    try:
        # absolute: a Spark JVM resolves relative paths against its own working directory
        if fmt == "csv":
            return _read_csv(con, path, source, table, name)
        return con.read_parquet(str(path.resolve()), table_name=name)
    except (TieringError, FileNotFoundError):
        raise
    except Exception as exc:  # the engine's own parse error, reworded
        raise explain_read_error(exc, table, source) from None


_DELIMITERS = ",;\t|"
_PEEK_BYTES = 1 << 20


def _read_csv(con, path: Path, source: SourceConfig, table: str, name: str) -> ir.Table:
    """Every column as text under the header's names; the dialect fixed, never sniffed (module docstring)."""
    header, delim, only_header = _csv_header(path, source, table)
    if only_header:
        raise DataQualityError(
            f"The {table} file '{path}' has a header but no rows (columns {header}). Export the rows too, or point "
            f"data.{table}.path (or --{table}) at the right file."
        )
    if con.name == "pyspark":
        return con.read_csv(str(path.resolve()), table_name=name, inferSchema=False, header=True, sep=delim,
                            encoding=source.encoding, multiLine=True, mode="FAILFAST", quote='"', escape='"')
    folder = private_folder(con, "tiering-csv-")
    text_path = path if _is_utf8(source.encoding) else _utf8_copy(path, source.encoding, table, folder)
    columns = {c: "VARCHAR" for c in header}
    text = con.read_csv(str(text_path.resolve()), table_name=f"{name}_csv", header=True, auto_detect=False, delim=delim,
                        quote='"', escape='"', columns=columns)
    # parsed once into Parquet: the file is scanned once (parse errors surface here, named by the caller), and
    # DuckDB then types repeated values once per distinct value (dictionary pages): Online Retail II as CSV
    # validates 3-4x faster this way than straight from the text
    copy = folder / f"{name}.parquet"
    text.to_parquet(str(copy))
    return con.read_parquet(str(copy), table_name=name)


def private_folder(con, prefix: str) -> Path:
    """A new temporary folder for files behind lazy tables of ``con``, removed when ``con`` is garbage
    collected (or at exit). It is created beside DuckDB's temp_directory when one is set (batch scoring
    points it into its work dir), else in the system temp folder."""
    spill = con.raw_sql("SELECT current_setting('temp_directory')").fetchone()[0] if con.name == "duckdb" else None
    base = Path(spill).resolve().parent if spill and spill != ".tmp" else None  # ".tmp": DuckDB's default
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    folder = tempfile.mkdtemp(prefix=prefix, dir=base)
    weakref.finalize(con, shutil.rmtree, folder, True)
    return Path(folder)


def _is_utf8(encoding: str) -> bool:
    return codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")


def _csv_header(path: Path, source: SourceConfig, table: str) -> tuple[list[str], str, bool]:
    """The header's column names, the delimiter, and whether the file holds nothing after its header."""
    raw = path.open("rb").read(_PEEK_BYTES)
    if not raw.lstrip(codecs.BOM_UTF8).strip():
        raise DataQualityError(
            f"The {table} file '{path}' is empty ({path.stat().st_size} bytes). Point data.{table}.path (or --{table}) "
            "at a CSV with a header line and rows."
        )
    enc = "utf-8-sig" if _is_utf8(source.encoding) else source.encoding
    decoder = codecs.getincrementaldecoder(enc)(errors="strict")
    try:
        text = decoder.decode(raw, final=len(raw) < _PEEK_BYTES)
    except UnicodeDecodeError as exc:
        raise _encoding_error(path, table, source.encoding, raw, exc.start) from None
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
    only_header = len(raw) < _PEEK_BYTES and not any(line.strip() for line in lines[1:])
    return names, delim, only_header


def _utf8_copy(path: Path, encoding: str, table: str, folder: Path) -> Path:
    """``path`` transcoded to UTF-8 in ``folder``."""
    out = folder / path.name
    with path.open("r", encoding=encoding, newline="") as src, out.open("w", encoding="utf-8", newline="") as dst:
        try:
            shutil.copyfileobj(src, dst, 1 << 20)
        except UnicodeDecodeError as exc:
            raise _encoding_error(path, table, encoding, exc.object, exc.start, approximate=True) from None
    return out


def _encoding_error(path: Path, table: str, encoding: str, data: bytes, offset: int, *, line: int | None = None,
                    approximate: bool = False) -> SchemaError:
    """Which byte of ``data`` (a chunk of the file) is not ``encoding``, on which line, and what the file probably is."""
    line = line or data[:offset].count(b"\n") + 1
    where = "a chunk of the file" if approximate else f"line {line}"
    guess = _guess_encoding(data[max(0, offset - 2000): offset + 2000])
    return SchemaError(
        f"The {table} file '{path}' is not valid {encoding} text: byte {data[offset]:#04x} at {where}. "
        f"It looks like {guess}: set data.{table}.encoding: {guess} in the config (for a file passed with --{table}, "
        f"name it under data.{table}.path in a config file), or save the file as UTF-8."
    )


def _guess_encoding(sample: bytes) -> str:
    """gbk when the bytes decode as GBK into Chinese characters, else latin-1 (Western Excel exports)."""
    try:
        text = sample.decode("gbk")
    except UnicodeDecodeError:
        return "latin-1"
    return "gbk" if any("\u4e00" <= ch <= "\u9fff" for ch in text) else "latin-1"


def _first_bad_utf8(path: Path) -> tuple[bytes, int, int] | None:
    """The chunk holding the file's first byte that is not UTF-8, its offset there and its line, streamed."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = 1
    with path.open("rb") as f:
        while chunk := f.read(_PEEK_BYTES):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                return chunk, max(exc.start, 0), lines + chunk[: max(exc.start, 0)].count(b"\n")
            lines += chunk.count(b"\n")
    return None


_CSV_LINE = re.compile(r"CSV Error on Line: (\d+)")
_EXPECTED = re.compile(r"Expected Number of Columns: (\d+) Found: (\d+)")


def explain_read_error(exc: Exception, table: str, source: SourceConfig) -> TieringError:
    """An engine's failure to parse a source file as a message naming the file, the line and the fix."""
    path, text = Path(source.path or ""), str(exc)
    line = _CSV_LINE.search(text)
    at = f" on line {line.group(1)}" if line else ""
    if ("unicode" in text.lower() or "utf-8" in text.lower()) and path.is_file():
        found = _first_bad_utf8(path)
        if found is not None:
            chunk, offset, line_no = found
            return _encoding_error(path, table, source.encoding, chunk, offset, line=line_no)
    cols = _EXPECTED.search(text)
    if cols:
        return SchemaError(
            f"The {table} file '{path}' has a ragged row{at}: {cols.group(2)} fields where the header has {cols.group(1)}. "
            f"Fix that line (quote fields that hold the delimiter), or set data.{table}.delimiter if the split is wrong."
        )
    first = next((ln for ln in text.splitlines() if ln.strip() and not ln.startswith("CSV Error")), text)
    return SchemaError(
        f"The {table} source '{path}' could not be read{at}: {first.strip()}. "
        f"Check the file, or set data.{table}.format ('csv' or 'parquet'), .encoding or .delimiter in the config."
    )


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
            f"{key} = {spec!r} uses something other than column names, numbers and + - * /. "
            f"Only arithmetic over source columns is allowed."
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
    if text._find_backend(use_default=True).name == "pyspark":
        return text.re_replace(r"^\s+|\s+$", "")
    return text.strip()


def is_spark(expr: ir.Table) -> bool:
    """Whether ``expr`` runs on the PySpark backend."""
    return expr._find_backend(use_default=True).name == "pyspark"


def write_table(expr: ir.Table, path: str | Path) -> int:
    """Execute ``expr`` into one Parquet file (or CSV when ``path`` ends in .csv); return its rows.

    The result streams from the engine to the file, never through pandas: DuckDB writes the file
    itself; Spark writes one part file into a temporary folder beside ``path`` (the computation
    stays parallel, only the final write is a single task), which is then moved to ``path``.
    An existing file is replaced; a folder at ``path`` is replaced only when it is an earlier
    Spark output (it holds _SUCCESS).
    """
    path = Path(path)
    csv = path.suffix.lower() == ".csv"
    if path.is_dir():
        if not (path / "_SUCCESS").exists():
            raise ConfigError(f"The output path '{path}' is a folder; give a file name ending in .parquet or .csv.")
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_spark(expr):
        backend = expr._find_backend(use_default=True)
        tmp = path.resolve().parent / f".{path.name}.{os.getpid()}-{next(_READS)}.tmp"  # absolute, as for reads
        try:
            writer = backend.raw_sql(backend.compile(expr)).repartition(1).write.mode("overwrite")
            if csv:
                writer.option("header", True).csv(str(tmp))
            else:
                writer.parquet(str(tmp))
            parts = sorted(tmp.glob("part-*"))
            if len(parts) != 1:  # cannot happen after repartition(1); never pick one of several silently
                raise RuntimeError(f"Spark wrote {len(parts)} part files to {tmp}; expected 1.")
            parts[0].replace(path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        backend = expr._find_backend(use_default=True)
        duck = backend.name == "duckdb"
        if duck:  # a file's row order is unspecified anyway: let DuckDB write in parallel, with less memory
            before = backend.raw_sql("SELECT current_setting('preserve_insertion_order')").fetchone()[0]
            backend.raw_sql("SET preserve_insertion_order = false")
        try:
            if csv:
                expr.to_csv(str(path))
            else:
                expr.to_parquet(str(path))
        finally:
            if duck:
                backend.raw_sql(f"SET preserve_insertion_order = {'true' if before else 'false'}")
    return _count_rows(path, expr.columns[0] if csv else None)


def _count_rows(path: Path, csv_first_column: str | None) -> int:
    """Rows in a written file: Parquet from its footer, CSV by streaming one column as text."""
    if csv_first_column is None:
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    import pyarrow as pa
    import pyarrow.csv as pacsv

    convert = pacsv.ConvertOptions(column_types={csv_first_column: pa.string()}, include_columns=[csv_first_column])
    n = 0
    with pacsv.open_csv(path, convert_options=convert) as reader:
        for batch in reader:
            n += batch.num_rows
    return n


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary name next to ``path``, renamed to ``path`` when the block completes: a file that exists is complete.

    The name ends in ``.partial``, so a folder's ``*.parquet`` never lists an unfinished file.
    """
    tmp = path.with_name(f".{path.name}.partial")
    yield tmp
    tmp.replace(path)


def parquet_batches(path: Path, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """A Parquet file, or a folder of part files in name order, ``batch_rows`` rows at a time.

    One row group is read at a time (no read-ahead), so memory is set by the batch, not the file;
    a batch never spans two files.
    """
    import pyarrow.parquet as pq

    files = sorted(p for p in path.glob("*.parquet")) if path.is_dir() else [path]
    for file in files:
        with pq.ParquetFile(str(file)) as pf:
            for rb in pf.iter_batches(batch_size=batch_rows):
                if rb.num_rows:
                    yield rb


def write_sorted_parts(exprs: Iterable[ir.Table], folder: Path, order_by: str) -> None:
    """Each DuckDB expression into its own Parquet file in ``folder`` (part-00000.parquet, ...), rows
    sorted by ``order_by``; ``folder`` is emptied first.

    Each part is built into an unsorted file first and sorted in a second statement: at 10M
    customers an ORDER BY on top of the feature build ran out of DuckDB's memory limit, where each
    statement alone spills to disk.
    """
    shutil.rmtree(folder, ignore_errors=True)  # no part of an earlier, interrupted write stays
    folder.mkdir(parents=True)
    unsorted = folder / "unsorted.parquet.tmp"
    for k, expr in enumerate(exprs):
        expr.to_parquet(str(unsorted))
        sorted_part = expr._find_backend(use_default=True).read_parquet(str(unsorted)).order_by(order_by)
        sorted_part.to_parquet(str(folder / f"part-{k:05d}.parquet"))
    unsorted.unlink(missing_ok=True)


def concat_parts(folder: Path, path: Path, schema: pa.Schema, batch_rows: int = 100_000) -> int:
    """The Parquet part files of ``folder`` (name order) as one Parquet file of ``schema``, or CSV when ``path``
    ends in .csv, streamed ``batch_rows`` at a time; atomic (temp name, then rename). Returns the rows written."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    writer_type = pacsv.CSVWriter if path.suffix.lower() == ".csv" else pq.ParquetWriter
    rows = 0
    with atomic_path(path) as tmp, writer_type(str(tmp), schema) as writer:
        for rb in parquet_batches(folder, batch_rows):
            writer.write_batch(rb.cast(schema) if rb.schema != schema else rb)
            rows += rb.num_rows
    return rows
