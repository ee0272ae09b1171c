"""The `tiering` command line: parses, calls one job (tiering.jobs; the ops lookups: tiering.ops), prints
(rich tables or JSON).

Every command takes --config PATH and --json; source overrides --transactions/--interactions/
--customers PATH replace the configured sources for one run. The output contract (results on
stdout, progress and logs on stderr, strict JSON, exit statuses 0/1/2/3, nothing secret printed)
lives in tiering.output.

One module per group of commands: ``_data`` (simulate, validate, features), ``_model`` (train, backtest,
promote, compare, predict, demo, experiment run), ``_ops`` (tiers get/list/summary, serve, report); the
options they share in ``_options``, how they print in ``_output``, the typer apps in ``_app``. The commands
are registered here, in the order ``tiering --help`` lists them.
"""

from __future__ import annotations

import contextlib
import sys

import typer

from tiering.cli import _data, _model, _ops
from tiering.cli._app import app, experiment_app, tiers_app
from tiering.cli._output import SECRETS, safe
from tiering.output import result_stream, to_json

__all__ = ["app", "main"]

for _command in (
    _data.simulate,
    _data.validate,
    _data.features,
    _model.train,
    _model.backtest,
    _model.promote,
    _model.compare,
    _model.predict,
    _model.demo,
    _ops.serve,
    _ops.report,
):
    app.command()(_command)
tiers_app.command("get")(_ops.tiers_get)
tiers_app.command("list")(_ops.tiers_list)
tiers_app.command("summary")(_ops.tiers_summary)
experiment_app.command("run")(_model.experiment_run)


def main(argv: list[str] | None = None) -> None:
    """`tiering ...`: runs one command under the output contract (tiering.output) and exits with its status."""
    try:
        from typer._click import exceptions as cx  # typer 0.2x carries its own click
    except ImportError:  # older typer runs on click itself
        from click import exceptions as cx  # type: ignore[no-redef]  # the fallback of the import above: same API

    from tiering.output import error_payload, exit_code, quiet_third_party, redirect

    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in args
    args = [a for a in args if a != "--verbose"]  # accepted anywhere on the line, not only before the command
    as_json = "--json" in args
    quiet_third_party(verbose)
    code = 0
    exc: Exception | None = None
    with contextlib.nullcontext() if "--help" in args else redirect():  # help is the result: stdout
        try:
            code = app(args=[*(["--verbose"] if verbose else []), *args], prog_name="tiering", standalone_mode=False) or 0
        except typer.Exit as e:
            code = e.exit_code
        except (KeyboardInterrupt, typer.Abort):
            sys.stderr.write("interrupted\n")
            code = 130
        except cx.NoArgsIsHelpError as e:
            sys.stderr.write(e.ctx.get_help() + "\n")
            code = 2
        except cx.ClickException as e:
            exc, code, message = e, e.exit_code, e.format_message()
            cause = getattr(e.__cause__, "errors", None)  # typer's range checks: name the value found
            if callable(cause) and cause() and "input" in cause()[0]:
                message += f" (got {cause()[0]['input']})"
        except Exception as e:  # noqa: BLE001 - the edge: every error becomes a message and an exit status
            from tiering.io import resource_error  # here: the engines' modules stay out of a lookup's start-up

            exc = resource_error(e) or e  # an engine out of memory or disk: say which and what to change
            code = exit_code(exc)
            message = str(exc) if code != 1 else f"internal error ({type(e).__name__}: {e})"
            if code == 1 and verbose:
                import traceback

                traceback.print_exc()
    if exc is not None:
        message = safe(message)
        sys.stderr.write(f"error: {message}\n")
        if as_json:
            result_stream().write(to_json(error_payload(exc, message, code), tuple(SECRETS)) + "\n")
    sys.stdout.flush()
    sys.exit(code)
