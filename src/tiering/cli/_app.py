"""The typer apps of the command line: the root app (its --version and --verbose), ``tiers`` and ``experiment``.

The commands are registered on them in tiering.cli, in the order ``tiering --help`` lists them.
"""

from __future__ import annotations

from typing import Annotated

import typer

from tiering.output import EXIT_HELP, result_stream

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    epilog=EXIT_HELP,
    help="Customer tiering: features, churn and CLV models, tiers, MLflow registry, batch scoring.\n\n"
    "Every command that reads a config takes --config PATH and --set KEY=VALUE (repeatable), a dotted "
    "config key set over the file for one run: --set model.horizon_days=120 --set features.windows_days=[30,90].",
)
tiers_app = typer.Typer(no_args_is_help=True, help="Ops lookups over the scores store.", epilog=EXIT_HELP)
app.add_typer(tiers_app, name="tiers")
experiment_app = typer.Typer(no_args_is_help=True, help="Comparisons of model variants, each a folder with spec.yaml.", epilog=EXIT_HELP)
app.add_typer(experiment_app, name="experiment")


def _version(value: bool) -> None:
    if value:
        from tiering import __version__

        result_stream().write(f"tiering {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_version, help="Print the version and exit.")] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", help="Show third-party warnings and INFO logs, and tracebacks of bugs (on any command, anywhere on the line)."
        ),
    ] = False,
) -> None:
    """Customer tiering: features, churn and CLV models, tiers, MLflow registry, batch scoring."""
