"""CLI: `gradtracer audit show|replay PATH` over an Auto-Fix audit log.

Both commands read every line of the log and its rotated files; unusable lines are listed
on stderr with file and line and the rest is still summarised / replayed. Exit codes:
0 everything usable (torn lines, the trace of an interrupted write, are only warned about),
1 a replayed scale differs from the logged one (``replay``), 3 the log holds garbage, a
malformed event or a missing chunk (``show`` and ``replay``), 2 no log at PATH.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from gradtracer.audit import AuditLog

audit_app = typer.Typer(
    help="Inspect and verify Auto-Fix audit logs (.gradtracer/audit.jsonl).",
    no_args_is_help=True,
)

#: Exit code when the log holds damage other than torn lines (some events are unusable).
EXIT_DAMAGED = 3
#: Exit code when a replayed scale differs from the logged one.
EXIT_MISMATCH = 1
#: Problems listed on stderr before "... N more".
_SHOWN = 20

_PATH_HELP = "Audit log file, or a directory holding audit.jsonl (rotated files are included)."


def _read(path: Path) -> AuditLog:
    from gradtracer.audit import read_audit

    return read_audit(path, warn=False)


def _report_problems(log: AuditLog) -> None:
    """List unusable lines on stderr (torn lines in yellow, other damage in red)."""
    for problem in log.problems[:_SHOWN]:
        label = "warning" if problem.torn else "damaged"
        typer.secho(f"{label}: {problem}", fg="yellow" if problem.torn else "red", err=True)
    if len(log.problems) > _SHOWN:
        typer.secho(f"... {len(log.problems) - _SHOWN} more unusable line(s)", err=True)
    if log.problems:
        kind = "interrupted write(s)" if log.complete else "damaged line(s)"
        typer.secho(
            f"{len(log.problems)} {kind} skipped; every other line was read",
            fg="yellow" if log.complete else "red",
            err=True,
        )


@audit_app.command("show")
def show(
    path: Path = typer.Argument(..., help=_PATH_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Summarise an audit log: one row per run and layer; exit 3 if lines are damaged."""
    import json

    from gradtracer.audit import summarize_audit
    from gradtracer.recsys.metrics._table import format_table

    log = _read(path)
    rows = summarize_audit(log.events)
    if as_json:
        document = {
            "runs": rows,
            "damage": log.damage,
            "problems": [
                {"file": str(p.file), "line": p.line, "reason": p.reason, "torn": p.torn}
                for p in log.problems
            ],
            "complete": log.complete,
            "events": len(log.events),
        }
        typer.echo(json.dumps(document, indent=2, sort_keys=True, allow_nan=False))
    else:
        headers = [
            "run_id",
            "layer",
            "steps",
            "interventions",
            "rows_ever_damped",
            "rows_damped_at_end",
            "min_scale",
            "p_loss_improving",
            "ended",
        ]
        table = [
            [
                r["run_id"],
                r["layer"],
                f"{r['first_step']}-{r['last_step']}",
                r["interventions"],
                r["rows_ever_damped"],
                r["rows_damped_at_end"],
                r["min_scale"],
                "-" if r["last_p_improving"] is None else r["last_p_improving"],
                "yes" if r["ended"] else "no",
            ]
            for r in rows
        ]
        title = f"{len(log.events)} events in {len(log.files)} file(s)"
        typer.echo(format_table(headers, table, title=title))
    _report_problems(log)
    if not log.complete:
        raise typer.Exit(EXIT_DAMAGED)


@audit_app.command("replay")
def replay(path: Path = typer.Argument(..., help=_PATH_HELP)) -> None:
    """Re-derive every logged scale of every run with the pure policy.

    Exit 1 on any mismatch, 3 when lines are damaged (every readable run is still checked).
    """
    from gradtracer.embedding.autofix.replay import replay_audit

    log = _read(path)
    result = replay_audit(log.events)
    for mismatch in result.mismatches[:_SHOWN]:
        typer.secho(f"MISMATCH {mismatch}", fg="red", err=True)
    if len(result.mismatches) > _SHOWN:
        typer.secho(f"... {len(result.mismatches) - _SHOWN} more mismatches", fg="red", err=True)
    verdict = "OK" if result.ok else "MISMATCH"
    typer.echo(
        f"{verdict}: {result.n_events} interventions, {result.n_rows} row scales "
        f"replayed over {len(result.runs)} run/layer pair(s); "
        f"{len(result.mismatches)} mismatch(es)."
    )
    _report_problems(log)
    if not result.ok:
        typer.secho("error: replayed scales differ from the logged ones", fg="red", err=True)
        raise typer.Exit(EXIT_MISMATCH)
    if not log.complete:
        typer.secho(f"error: log damaged (first at {log.damage})", fg="red", err=True)
        raise typer.Exit(EXIT_DAMAGED)


def register(app: typer.Typer) -> None:
    """Add the `audit` command group to the root app."""
    app.add_typer(audit_app, name="audit")
