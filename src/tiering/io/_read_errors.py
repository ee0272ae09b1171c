"""Explaining a source file the engine could not read: which file, which line, which byte, and the key to set
(encoding, delimiter, format)."""

from __future__ import annotations

import codecs
import re
from pathlib import Path

from tiering.config import SourceConfig
from tiering.exceptions import SchemaError, TieringError
from tiering.io._fs import display_path, is_url, local_path, redact_url_text, url_scheme

PEEK_BYTES = 1 << 20  # bytes read at a time to look into a file (header, first undecodable byte)
_CSV_LINE = re.compile(r"CSV Error on Line: (\d+)")
_EXPECTED = re.compile(r"Expected Number of Columns: (\d+) Found: (\d+)")


def encoding_error(
    path: str | Path, table: str, encoding: str, data: bytes, offset: int, *, line: int | None = None, approximate: bool = False
) -> SchemaError:
    """Which byte of ``data`` (a chunk of the file) is not ``encoding``, on which line, and what the file probably is."""
    line = line or data[:offset].count(b"\n") + 1
    where = "a chunk of the file" if approximate else f"line {line}"
    guess = _guess_encoding(data[max(0, offset - 2000) : offset + 2000])
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
        while chunk := f.read(PEEK_BYTES):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                return chunk, max(exc.start, 0), lines + chunk[: max(exc.start, 0)].count(b"\n")
            lines += chunk.count(b"\n")
    return None


def explain_read_error(exc: Exception, table: str, source: SourceConfig) -> TieringError:
    """An engine's failure to parse a source file as a message naming the file, the line and the fix (a URL's
    secrets masked, in its name and in the engine's text)."""
    location = source.path or ""
    path = local_path(location) if url_scheme(location) == "file" else None if is_url(location) else Path(location)
    path_text = display_path(location) if is_url(location) else str(path)
    text = redact_url_text(str(exc), location)
    line = _CSV_LINE.search(text)
    at = f" on line {line.group(1)}" if line else ""
    if ("unicode" in text.lower() or "utf-8" in text.lower()) and path is not None and path.is_file():
        found = _first_bad_utf8(path)
        if found is not None:
            chunk, offset, line_no = found
            return encoding_error(path, table, source.encoding, chunk, offset, line=line_no)
    cols = _EXPECTED.search(text)
    if cols:
        return SchemaError(
            f"The {table} file '{path_text}' has a ragged row{at}: {cols.group(2)} fields where the header has {cols.group(1)}. "
            f"Fix that line (quote fields that hold the delimiter), or set data.{table}.delimiter if the split is wrong."
        )
    first = next((ln for ln in text.splitlines() if ln.strip() and not ln.startswith("CSV Error")), text)
    return SchemaError(
        f"The {table} source '{path_text}' could not be read{at}: {first.strip()}. "
        f"Check the file, or set data.{table}.format ('csv' or 'parquet'), .encoding or .delimiter in the config."
    )
