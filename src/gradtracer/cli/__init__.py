"""The ``gradtracer`` command line: thin wrappers over the public library functions.

Each sub-module owns one command group and exposes ``register(app)``; heavy imports
happen inside the commands so that ``gradtracer --help`` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click
import typer

from gradtracer._version import __version__

__all__ = ["app", "main", "run"]

app = typer.Typer(
    name="gradtracer",
    help=(
        "GradTracer: training-dynamics diagnostics for embedding-heavy recommender models.\n\n"
        "Start with `gradtracer demo` (synthetic data, no download)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"gradtracer {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    """GradTracer command line."""


def _register_all() -> None:
    from gradtracer.cli import audit, data, demo, recsys, report, sessions, validate

    for module in (demo, data, recsys, sessions, report, audit, validate):
        module.register(app)


_register_all()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    command = typer.main.get_command(app)
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        # with standalone_mode=False click returns the code of a typer.Exit instead of raising
        rv = command.main(args=args, prog_name="gradtracer", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code or 0)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        typer.echo("Aborted.", err=True)
        return 1
    except (ValueError, TypeError, FileNotFoundError, ImportError, RuntimeError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        return 2
    return rv if isinstance(rv, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
