"""How the commands print: rich tables on stdout, strict JSON under --json, progress on stderr, secrets masked.

The output contract itself (streams, JSON encoding, exit statuses) lives in tiering.output; this module is
the command line's side of it.
"""

from __future__ import annotations

from typing import Any

from tiering.output import result_stream, to_json

# secret values of the config read by this command (and the API token): masked in everything printed
SECRETS: list[str] = []


def console():
    """The result console: stdout (tables); progress goes to stderr (steps)."""
    from rich.console import Console

    return Console(file=result_stream())


def safe(text: str) -> str:
    """Printed text with every secret masked (URL passwords, the config's secret values)."""
    from tiering.redact import redact_text

    return redact_text(text, SECRETS)


def emit(as_json: bool, payload: Any, render) -> None:
    """The command's result: ``payload`` as JSON under --json, else ``render(console)``."""
    if as_json:
        result_stream().write(to_json(payload, tuple(SECRETS)) + "\n")
    else:
        render(console())


def table(title: str, df, formats: dict[str, str] | None = None):
    """A rich table of ``df``: numbers right-aligned, ``formats`` (column -> format string) applied, NaN blank."""
    from rich.table import Table

    t = Table(title=title)
    for c in df.columns:  # overflow="fold": a long cell wraps onto more lines, it is never cut with "…"
        t.add_column(str(c), justify="right" if df[c].dtype.kind in "fiu" else "left", overflow="fold")
    for row in df.itertuples(index=False):
        t.add_row(*cells(df.columns, row, formats))
    return t


def cells(columns, row, formats: dict[str, str] | None) -> list[str]:
    """One row's cells as text: blank for None/NaN, else the column's format or str()."""
    out = []
    for c, v in zip(columns, row):
        fmt = (formats or {}).get(c)
        out.append("" if v is None or v != v else (fmt.format(v) if fmt else str(v)))
    return out


def show(c, title: str, df, formats: dict[str, str] | None = None, *, key: str) -> None:
    """A table when it fits the console's width; otherwise one small field/value table per row, titled by
    its ``key`` column (a narrow terminal, or 80 columns when stdout is not a terminal)."""
    from rich.table import Table

    widths = [
        max([len(str(col))] + [len(s) for s in col_cells])
        for col, col_cells in zip(df.columns, zip(*[cells(df.columns, r, formats) for r in df.itertuples(index=False)]))
    ]
    if sum(widths) + 3 * len(widths) + 1 <= c.width:
        c.print(table(title, df, formats))
        return
    c.print(f"[bold]{title}[/bold]")
    for row in df.itertuples(index=False):
        values = dict(zip(df.columns, cells(df.columns, row, formats)))
        t = Table(title=f"{key} {values[key]}", show_header=False, title_justify="left")
        t.add_column("field", style="dim", no_wrap=True)
        t.add_column("value", overflow="fold")
        for field, value in values.items():
            if field != key:
                t.add_row(str(field), value)
        c.print(t)


def steps():
    """Progress on stderr for one command's job (under --json too: stdout holds only the result): a spinner with
    the step and its elapsed time on a terminal, one line per step otherwise (tiering.progress)."""
    from tiering.progress import ProgressDisplay

    return ProgressDisplay(True, redact=safe)
