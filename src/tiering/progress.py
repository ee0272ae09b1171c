"""Progress of long work on stderr: one display for the command line and the Python API.

The jobs (tiering.train.fit, tiering.backtest.backtest, predict, report, ...) report progress through a
``progress`` callback that takes one message per step, and batch scoring through ``on_chunk(stage, done,
total)``. :class:`ProgressDisplay` is both: used as a context manager it shows, on a terminal (or in
Jupyter), a spinner with the current step and its elapsed time, a bar per chunked stage, and a line
``✓ step (12.3s)`` for every finished step; elsewhere (stderr piped to a log file) one plain line
``- step`` per step as it starts and one per finished stage, so a scheduler's log says what is running.
Disabled, it writes nothing at all. Results never go through it: stdout stays the result's.

    with ProgressDisplay(enabled=None) as step:   # None: on only when stderr is a terminal (or Jupyter)
        fit(tables, as_of=day, cfg=cfg, progress=step)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

_STAGES = {"score": "scoring", "write": "writing to the store"}


def stderr_console():
    """A rich Console on stderr (looked up at each write, so redirections made later are honoured)."""
    return Console(stderr=True)


def is_interactive(console=None) -> bool:
    """Whether a person is watching stderr: a terminal, or a Jupyter notebook's output."""
    c = console or stderr_console()
    return bool(c.is_terminal or c.is_jupyter)


def wanted(progress: bool | None, console=None) -> bool:
    """``progress`` as given; None means on only when a person is watching stderr (:func:`is_interactive`)."""
    if progress is None:
        return is_interactive(console)
    if not isinstance(progress, bool):
        from tiering.exceptions import ConfigError

        raise ConfigError(f"progress= takes True, False or None (on only when stderr is a terminal); got {progress!r}.")
    return progress


def _seconds(s: float) -> str:
    return f"{s:.1f}s" if s < 60 else f"{int(s // 60)}m{s % 60:04.1f}s"


class ProgressDisplay:
    """Steps and chunked stages on stderr (see the module doc); call it with a message, or ``chunk(...)``.

    ``enabled``: True, False, or None (on only when stderr is a terminal or Jupyter); ``console``: the rich
    Console to draw on (default stderr); ``live``: animate (spinner, bars) rather than print plain lines
    (default: when the console is a terminal or Jupyter); ``redact``: applied to every message shown.
    """

    def __init__(self, enabled: bool | None = True, *, console=None, live: bool | None = None, redact: Callable[[str], str] | None = None):
        self.console = console or stderr_console()
        self.enabled = wanted(enabled, self.console)
        self.live = self.enabled and (is_interactive(self.console) if live is None else live)
        self._redact = redact or (lambda text: text)
        self._progress: Any = None
        self._step: tuple[Any, str, float] | None = None  # (task id, text, started)
        self._stages: dict[str, tuple[Any, float]] = {}  # stage -> (task id, started)
        self._done_stages: set[str] = set()

    # ----------------------------------------------------------------------------------- lifecycle
    def __enter__(self) -> ProgressDisplay:
        if self.live:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                _ChunkedOnly(BarColumn()),
                _ChunkedOnly(MofNCompleteColumn()),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
                redirect_stdout=False,
            )
            self._progress.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.live or self._progress is None:
            return
        self._progress.stop()
        failed = exc_type is not None
        for stage, (task_id, started) in self._stages.items():
            if stage not in self._done_stages:
                task = self._progress.tasks[task_id]
                self._line(f"{_STAGES.get(stage, stage)} {_count(task.completed, task.total)}", started, failed=failed)
        if self._step is not None:
            _, text, started = self._step
            self._line(text, started, failed=failed)
        self._progress = None

    # ----------------------------------------------------------------------------------- reports
    def __call__(self, message: str) -> None:
        """One step begins (the previous one, if any, is done)."""
        if not self.enabled:
            return
        text = escape(self._redact(str(message)))
        if not self.live:
            self.console.print(f"[dim]- {text}[/dim]", highlight=False)
            return
        if self._progress is None:  # called outside ``with``: start now, stopped by the interpreter's exit
            self.__enter__()
        now = time.perf_counter()
        if self._step is None:
            self._step = (self._progress.add_task(text, total=None), text, now)
            return
        task_id, previous, started = self._step
        self._line(previous, started)
        self._progress.reset(task_id, description=text, total=None)
        self._step = (task_id, text, now)

    def chunk(self, stage: str, done: int, total: int) -> None:
        """Chunked work: ``done`` of ``total`` in ``stage`` ("score", "write", ...); batch scoring's ``on_chunk``."""
        if not self.enabled:
            return
        label = _STAGES.get(stage, stage)
        if not self.live:
            if done >= total and stage not in self._done_stages:
                self._done_stages.add(stage)
                self.console.print(f"[dim]- {label}: {_count(done, total)}[/dim]", highlight=False)
            return
        if self._progress is None:
            self.__enter__()
        if stage not in self._stages:
            self._stages[stage] = (self._progress.add_task(label, total=total), time.perf_counter())
        task_id, started = self._stages[stage]
        self._progress.update(task_id, completed=done, total=total)
        if done >= total and stage not in self._done_stages:
            self._done_stages.add(stage)
            self._line(f"{label} {_count(done, total)}", started)
            self._progress.remove_task(task_id)

    def _line(self, text: str, started: float, *, failed: bool = False) -> None:
        mark = "[red]✗[/red]" if failed else "[green]✓[/green]"
        self.console.print(f"{mark} {text} [dim]({_seconds(time.perf_counter() - started)})[/dim]", highlight=False)


def _count(done: float, total: float | None) -> str:
    return f"{int(done):,}/{int(total):,}" if total is not None else f"{int(done):,}"


class _ChunkedOnly(ProgressColumn):
    """``column`` (a bar, ``done/total``) for chunked stages; nothing for a step (its length is unknown)."""

    def __init__(self, column: ProgressColumn):
        super().__init__()
        self.column = column

    def render(self, task):
        return self.column.render(task) if task.total is not None else Text("")
