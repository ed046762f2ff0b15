"""The ``gradtracer`` command line: thin wrappers over the public library functions.

Each sub-module owns one command group and exposes ``register(app)``; heavy imports
happen inside the commands so that ``gradtracer --help`` stays fast.

Errors reach the user as one line on stderr, never as a traceback (``--debug`` or
``GRADTRACER_DEBUG=1`` shows it). Exit codes:

==== =================================================================================
code meaning
==== =================================================================================
0    success
1    the command failed while running: disk full, permission denied, read-only file
     system, network failure, an incomplete earlier output, a failed check
2    usage: unknown command or option, bad option value, missing or malformed input
     (a file that does not exist, a directory where a file was expected, bad data)
3    ``audit replay``: the log is damaged (verified up to the damage)
130  interrupted (Ctrl-C)
==== =================================================================================
"""

from __future__ import annotations

import errno
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import Any

import typer
from typer import _click as _vendored_click

from gradtracer._version import __version__

__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "app", "error_message", "main", "run"]

#: Exit code of a command that failed while running (I/O, network, failed check).
EXIT_FAILURE = 1
#: Exit code of a usage error (bad command line, missing or malformed input).
EXIT_USAGE = 2
#: Environment variable that, when set to a non-empty value other than ``0``, shows tracebacks.
DEBUG_ENV = "GRADTRACER_DEBUG"

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
    debug: bool = typer.Option(
        False, "--debug", help=f"Show Python tracebacks on errors (also {DEBUG_ENV}=1)."
    ),
) -> None:
    """GradTracer command line."""


def _register_all() -> None:
    from gradtracer.cli import audit, compress, data, demo, recsys, report, sessions, validate

    for module in (demo, data, recsys, sessions, report, audit, validate, compress):
        module.register(app)


_register_all()


def _click_exception_types() -> tuple[type[BaseException], ...]:
    """ClickException classes of typer's vendored click and of ``click`` when installed."""
    types: list[type[BaseException]] = [_vendored_click.exceptions.ClickException]
    try:
        import click
    except ImportError:  # pragma: no cover - click is optional with typer >= 0.20
        pass
    else:
        types.append(click.ClickException)
    return tuple(types)


def _exit_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [typer.Exit]
    try:
        import click
    except ImportError:  # pragma: no cover
        pass
    else:
        types.append(click.exceptions.Exit)
    return tuple(types)


def _abort_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [typer.Abort]
    try:
        import click
    except ImportError:  # pragma: no cover
        pass
    else:
        types.append(click.exceptions.Abort)
    return tuple(types)


#: errno values that mean "the input the user named is wrong" (usage) rather than
#: "the environment failed" (runtime).
_INPUT_ERRNOS = {errno.ENOENT, errno.EISDIR, errno.ENOTDIR}

_OS_HINTS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.EISDIR: "is a directory",
    errno.ENOTDIR: "not a directory",
    errno.ENOENT: "no such file or directory",
    errno.EEXIST: "already exists",
    errno.EFBIG: "file too large",
    errno.ENAMETOOLONG: "file name too long",
}

#: Paths longer than this are shortened in messages (head ... tail).
_MAX_SHOWN_PATH = 240


def _short(path: object) -> str:
    text = str(path)
    if len(text) <= _MAX_SHOWN_PATH:
        return text
    return f"{text[:160]}...{text[-60:]} ({len(text)} characters)"


def _os_message(exc: OSError) -> str:
    """``"<file>: <reason>"`` for an OSError, naming both files of a failed rename."""
    reason = _OS_HINTS.get(exc.errno or -1) or exc.strerror or str(exc)
    if exc.filename is None:
        text = str(exc)
        return text if text and exc.strerror is None else reason
    where = _short(exc.filename)
    if exc.filename2 is not None:
        where = f"{where} -> {_short(exc.filename2)}"
    return f"{where}: {reason}"


def error_message(exc: BaseException) -> tuple[str, int]:
    """Return ``(one-line message, exit code)`` for an exception a command raised."""
    import urllib.error

    from gradtracer.errors import DataFormatError, MissingExtraError

    if isinstance(exc, urllib.error.URLError):
        reason = getattr(exc, "reason", exc)
        return f"network error: {reason}", EXIT_FAILURE
    if isinstance(exc, DataFormatError):
        return str(exc), EXIT_USAGE
    if isinstance(exc, OSError):
        if exc.errno is None:  # raised by GradTracer with its own "path: reason" message
            named_input = isinstance(
                exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError)
            )
            return str(exc) or type(exc).__name__, EXIT_USAGE if named_input else EXIT_FAILURE
        return _os_message(exc), EXIT_USAGE if exc.errno in _INPUT_ERRNOS else EXIT_FAILURE
    if isinstance(exc, MissingExtraError):
        return str(exc), EXIT_FAILURE
    if isinstance(exc, (ValueError, TypeError, KeyError, IndexError)):
        text = str(exc) if not isinstance(exc, KeyError) else str(exc.args[0] if exc.args else exc)
        return text or type(exc).__name__, EXIT_USAGE
    if isinstance(exc, (ImportError, RuntimeError, MemoryError)):
        return str(exc) or type(exc).__name__, EXIT_FAILURE
    return f"{type(exc).__name__}: {exc}", EXIT_FAILURE


def _debug_requested(args: Sequence[str]) -> bool:
    env = os.environ.get(DEBUG_ENV, "")
    return (env not in ("", "0")) or "--debug" in args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    Never raises for user-facing errors: usage errors print a short message and return 2,
    runtime failures one line naming the file and return 1 (see the module docstring).
    """
    command = typer.main.get_command(app)
    args = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(args)
    with warnings.catch_warnings():
        if not debug:
            warnings.showwarning = _show_warning
        return _run(command, args, debug)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """Warnings as one ``warning: ...`` line on stderr (no source location)."""
    typer.secho(f"warning: {message}", fg="yellow", err=True)


def _run(command: Any, args: list[str], debug: bool) -> int:
    try:
        # with standalone_mode=False click returns the code of a typer.Exit instead of raising
        rv: Any = command.main(args=args, prog_name="gradtracer", standalone_mode=False)
    except _exit_types() as exc:
        return int(getattr(exc, "exit_code", 0) or 0)
    except _click_exception_types() as exc:
        exc.show()  # type: ignore[attr-defined]
        return int(getattr(exc, "exit_code", EXIT_USAGE))
    except _abort_types():
        typer.echo("Aborted.", err=True)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        typer.echo("Interrupted.", err=True)
        return 130
    except Exception as exc:  # the one place that turns errors into messages
        if debug:
            traceback.print_exc()
        message, code = error_message(exc)
        typer.secho(f"error: {message}", fg="red", err=True)
        return code
    return rv if isinstance(rv, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
