"""The bad-input corpus: each case runs the command line in-process, as `tiering ...` would, and
checks the exit status, the message and that no row was lost (rows_in = rows_valid + rows_quarantined).

``cli(*args, cwd=...)`` returns (returncode, stdout, stderr); an exception escaping ``tiering.cli.main``
is a bug and fails the test as it would crash the command.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, cwd: str | Path) -> CliResult:
    from tiering.cli import main

    out, err = io.StringIO(), io.StringIO()
    old_argv, old_cwd = sys.argv, os.getcwd()
    sys.argv = ["tiering", *map(str, args)]
    code = 0
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli(tmp_path):
    """Run `tiering ARGS` in tmp_path (its own configs, stores and outputs)."""
    return lambda *args, cwd=tmp_path: run_cli(*args, cwd=cwd)


def assert_rows_kept(report: dict) -> None:
    """Nothing lost: every row read is either valid or quarantined with a reason."""
    assert report["rows_in"] == report["rows_valid"] + report["rows_quarantined"], report
