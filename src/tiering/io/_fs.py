"""Where a source or an output lives: a local path, or a URL (``s3a://``, ``hdfs://``, ``abfss://``, ``file://``, ...)
reached on Spark through Hadoop's FileSystem API of the active session, so a cluster reads and writes its own
storage with the credentials and connectors it is configured with (the driver needs no client of its own).

A path is a URL when it starts with a scheme of two or more letters and a slash (``file:/tmp/x`` counts, as
Hadoop writes it; ``C:/x`` does not). On DuckDB, a ``file://`` URL is the local file it names; other URLs are
left to DuckDB's own readers (tiering.io._read).

Nothing secret is shown: messages name a URL by :func:`display_path` (the password of ``user:password@`` and
the whole query string, where SAS tokens and presigned signatures live, masked), and any text that comes back
from the JVM passes through :func:`redact_url_text` first.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from tiering.exceptions import ConfigError
from tiering.redact import MASK, redact_text

_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]+):(?P<slashes>/+)")
# Hadoop's answers for a scheme it has no FileSystem for (none configured, or its class not on the classpath), and
# the connector that provides the usual ones
_NO_FS = re.compile(r"No FileSystem for scheme|ClassNotFoundException: Class org\.apache\.hadoop\.fs\.\S+FileSystem not found")
_CONNECTORS = {"s3a": "hadoop-aws", "s3": "hadoop-aws (as s3a://) or the platform's own S3 connector", "abfss": "hadoop-azure",
               "abfs": "hadoop-azure", "wasbs": "hadoop-azure", "gs": "the GCS connector"}  # fmt: skip


def is_url(path: str | Path) -> bool:
    """Whether ``path`` names a location by URL (``scheme:/...``, scheme of two or more characters)."""
    return bool(_URL.match(str(path)))


def url_scheme(path: str | Path) -> str:
    """The URL's scheme, lower case ('' for a local path)."""
    m = _URL.match(str(path))
    return m.group("scheme").lower() if m else ""


def display_path(path: str | Path) -> str:
    """``path`` as messages and reports may show it: a URL's password and query string masked."""
    text = str(path)
    if not is_url(text):
        return text
    head, sep, query = text.partition("?")
    return redact_text(head) + (sep + MASK if query else "")


def url_secrets(path: str | Path) -> list[str]:
    """The secret parts of a URL (password, query string and each of its values of 8 characters or more, so a
    short one such as ``sv=2024`` does not mask every 2024 in a message), raw and unquoted."""
    text = str(path)
    if not is_url(text):
        return []
    found: list[str] = []
    with contextlib.suppress(ValueError):
        parts = urlsplit(text)
        found += [parts.password or "", parts.query]
        found += [v for pair in parts.query.split("&") for v in (pair.partition("=")[2],) if len(v) >= 8]
    return [s for s in dict.fromkeys(found + [unquote(s) for s in found]) if s]


def redact_url_text(text: str, path: str | Path) -> str:
    """``text`` (an engine's message that may quote ``path``) with ``path``'s secrets masked."""
    return redact_text(text, url_secrets(path))


def local_path(url: str) -> Path:
    """The local file a ``file:`` URL names (``file:///data/x.parquet``, ``file:/data/x.parquet``)."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ConfigError(f"'{display_path(url)}' names the host {parts.netloc!r}; a file: URL names a local file: file:///path/to/file.")
    return Path(unquote(parts.path))


def name_suffixes(name: str) -> str:
    """A file name's (or a path's last part's) suffixes, lower case (``.csv.gz``)."""
    return "".join(PurePosixPath(name).suffixes).lower()


def check_url(path: str, what: str) -> None:
    """Refuse a URL whose '//' was collapsed (``s3:/bucket/key``, as pathlib makes of ``s3://bucket/key``)."""
    m = _URL.match(path)
    if m and m.group("scheme").lower() != "file" and len(m.group("slashes")) == 1:
        scheme = m.group("scheme")
        raise ConfigError(
            f"The {what} '{display_path(path)}' has one slash after '{scheme}:'; a {scheme} URL needs two "
            f"({scheme}://bucket-or-host/path). Write it in full in the config or on the command line."
        )


def join_path(base: str | Path, name: str) -> str | Path:
    """``base/name``: a URL stays a URL (its query string, if any, kept at the end), a local path a Path."""
    text = str(base)
    if not is_url(text):
        return Path(base) / name
    head, sep, query = text.partition("?")
    return f"{head.rstrip('/')}/{name}{sep}{query}"


@contextlib.contextmanager
def _java_errors(url: str, doing: str) -> Iterator[None]:
    """A JVM exception while ``doing`` something at ``url`` as a ConfigError naming the URL (redacted) and the fix."""
    try:
        yield
    except Exception as exc:
        if type(exc).__name__ != "Py4JJavaError":
            raise
        java = exc.java_exception  # type: ignore[attr-defined]
        text = redact_url_text(f"{java.getClass().getSimpleName()}: {java.getMessage()}", url)
        if _NO_FS.search(text):
            scheme = url_scheme(url)
            hint = (
                f"This Spark session has no Hadoop FileSystem for '{scheme}://': add its connector "
                f"({_CONNECTORS.get(scheme, 'the connector for that storage')}) to the cluster's classpath, or use the scheme "
                "this cluster is configured for (open-source Spark: s3a://; EMR and Databricks: s3://)."
            )
        else:
            hint = "Check the URL, that the storage is reachable from the driver, and that the cluster's credentials for it allow this."
        first = text.splitlines()[0]
        raise ConfigError(f"Cannot {doing} '{display_path(url)}' through Spark's Hadoop FileSystem: {first}. {hint}") from None


class HadoopPath:
    """One URL on the Hadoop FileSystem of a Spark session: the few operations sources and outputs need.

    ``spark``: a pyspark SparkSession (an Ibis pyspark backend's ``_session``). Every JVM error becomes a
    ConfigError naming the URL (secrets masked)."""

    def __init__(self, spark, url: str):
        self.spark, self.url = spark, url
        with _java_errors(url, "open"):
            self._path = spark._jvm.org.apache.hadoop.fs.Path(url)
            self._fs = self._path.getFileSystem(spark._jsc.hadoopConfiguration())

    @property
    def name(self) -> str:
        return str(self._path.getName())

    def __str__(self) -> str:
        return display_path(self.url)

    def sibling(self, name: str) -> HadoopPath:
        """The URL ``name`` in the same folder."""
        return HadoopPath(self.spark, str(self.spark._jvm.org.apache.hadoop.fs.Path(self._path.getParent(), name).toString()))

    def child(self, name: str) -> HadoopPath:
        return HadoopPath(self.spark, str(join_path(self.url, name)))

    def exists(self) -> bool:
        """Whether anything is at the URL (a glob pattern counts when it matches something)."""
        with _java_errors(self.url, "look up"):
            found = self._fs.globStatus(self._path)
            return found is not None and len(found) > 0

    def is_dir(self) -> bool:
        with _java_errors(self.url, "look up"):
            return bool(self._fs.exists(self._path) and self._fs.getFileStatus(self._path).isDirectory())

    def is_file(self) -> bool:
        with _java_errors(self.url, "look up"):
            return bool(self._fs.exists(self._path) and self._fs.getFileStatus(self._path).isFile())

    def size(self) -> int:
        with _java_errors(self.url, "look up"):
            return int(self._fs.getFileStatus(self._path).getLen())

    def suffixes(self) -> str:
        return name_suffixes(self.name)

    def head(self, n: int) -> bytes:
        """The file's first ``n`` bytes (fewer when it is shorter)."""
        with _java_errors(self.url, "read"):
            stream = self._fs.open(self._path)
            try:
                return bytes(stream.readNBytes(n))
            finally:
                stream.close()

    def parquet_rows(self) -> int:
        """The rows of a Parquet file, from its footer (parquet-hadoop's reader, on Spark's classpath): no Spark job."""
        parquet = self.spark._jvm.org.apache.parquet.hadoop
        with _java_errors(self.url, "read"):
            reader = parquet.ParquetFileReader.open(
                parquet.util.HadoopInputFile.fromPath(self._path, self.spark._jsc.hadoopConfiguration())
            )
            try:
                return int(reader.getRecordCount())
            finally:
                reader.close()

    def children(self) -> list[HadoopPath]:
        """The entries of a folder, in name order."""
        with _java_errors(self.url, "list"):
            found = [HadoopPath(self.spark, str(s.getPath().toString())) for s in self._fs.listStatus(self._path)]
        return sorted(found, key=lambda p: p.name)

    def delete(self) -> None:
        """Remove the file or folder (recursively); nothing there is not an error."""
        with _java_errors(self.url, "delete"):
            self._fs.delete(self._path, True)

    def move_to(self, target: HadoopPath) -> None:
        """Rename onto ``target``, replacing what is there (Hadoop's rename never overwrites: the target goes first)."""
        with _java_errors(target.url, "write"):
            self._fs.delete(target._path, True)
            # on file: URLs the checksum file system would move the part's .crc file along: the raw one moves the file only
            fs = self._fs.getRawFileSystem() if self._fs.getScheme() == "file" else self._fs
            if not fs.rename(self._path, target._path):
                raise ConfigError(
                    f"Spark's Hadoop FileSystem refused to move its output onto '{target}'. Check that the folder exists and "
                    "is writable with the cluster's credentials."
                )

    @property
    def engine_path(self) -> str:
        """The location as the engine reads it."""
        return self.url


class LocalPath:
    """A local file or folder with :class:`HadoopPath`'s reading operations, so a source is read one way."""

    def __init__(self, path: Path):
        self.path = path

    def __str__(self) -> str:
        return str(self.path)

    def exists(self) -> bool:
        return self.path.exists()

    def is_file(self) -> bool:
        return self.path.is_file()

    def size(self) -> int:
        return self.path.stat().st_size

    def suffixes(self) -> str:
        return name_suffixes(self.path.name)

    def head(self, n: int) -> bytes:
        with self.path.open("rb") as f:
            return f.read(n)

    @property
    def engine_path(self) -> str:
        """Absolute: a Spark JVM resolves relative paths against its own working directory."""
        return str(self.path.resolve())
