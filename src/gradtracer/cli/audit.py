"""CLI: `gradtracer audit show|replay PATH` over an Auto-Fix audit log."""

from __future__ import annotations

from pathlib import Path

import click
import typer

audit_app = typer.Typer(
    help="Inspect and verify Auto-Fix audit logs (.gradtracer/audit.jsonl).",
    no_args_is_help=True,
)

#: Exit code when the log is damaged before its last line (replay verified only a prefix).
EXIT_DAMAGED = 3
#: Exit code when a replayed scale differs from the logged one.
EXIT_MISMATCH = 1



class AuditCheckFailed(click.ClickException):
    """Replay failure with a specific exit code (``main`` returns ``exit_code``)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


_PATH_HELP = "Audit log file, or a directory holding audit.jsonl (rotated files are included)."


@audit_app.command("show")
def show(
    path: Path = typer.Argument(..., help=_PATH_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Summarise an audit log: one row per run and layer."""
    import json
    import warnings

    from gradtracer.audit import read_audit, summarize_audit
    from gradtracer.recsys.metrics._table import format_table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        log = read_audit(path, warn=False)
    rows = summarize_audit(log.events)
    if as_json:
        typer.echo(json.dumps({"runs": rows, "damage": log.damage, "events": len(log.events)},
                              indent=2, sort_keys=True))
    else:
        headers = ["run_id", "layer", "steps", "interventions", "rows_ever_damped",
                   "rows_damped_at_end", "min_scale", "p_loss_improving", "ended"]
        table = [[r["run_id"], r["layer"], f"{r['first_step']}-{r['last_step']}",
                  r["interventions"], r["rows_ever_damped"], r["rows_damped_at_end"],
                  r["min_scale"], "-" if r["last_p_improving"] is None else r["last_p_improving"],
                  "yes" if r["ended"] else "no"] for r in rows]
        typer.echo(format_table(headers, table,
                                title=f"{len(log.events)} events in {len(log.files)} file(s)"))
    if log.damage:
        typer.secho(f"warning: {log.damage}; events before it were read", fg="yellow", err=True)


@audit_app.command("replay")
def replay(path: Path = typer.Argument(..., help=_PATH_HELP)) -> None:
    """Re-derive every logged scale with the pure policy; exit 1 on any mismatch."""
    from gradtracer.audit import read_audit
    from gradtracer.embedding.autofix_replay import replay_audit

    log = read_audit(path, warn=False)
    result = replay_audit(log.events)
    for mismatch in result.mismatches[:20]:
        typer.secho(f"MISMATCH {mismatch}", fg="red", err=True)
    if len(result.mismatches) > 20:
        typer.secho(f"... {len(result.mismatches) - 20} more mismatches", fg="red", err=True)
    verdict = "OK" if result.ok else "MISMATCH"
    typer.echo(f"{verdict}: {result.n_events} interventions, {result.n_rows} row scales "
               f"replayed over {len(result.runs)} run/layer pair(s); "
               f"{len(result.mismatches)} mismatch(es).")
    if log.damage:
        typer.secho(f"warning: {log.damage}; verified up to there", fg="yellow", err=True)
    if not result.ok:
        raise AuditCheckFailed("replayed scales differ from the logged ones", EXIT_MISMATCH)
    if not log.complete:
        raise AuditCheckFailed(f"log damaged at {log.damage}", EXIT_DAMAGED)


def register(app: typer.Typer) -> None:
    """Add the `audit` command group to the root app."""
    app.add_typer(audit_app, name="audit")
