"""CLI: ``gradtracer report validate|render|agent|xml|plot FILE.json`` over saved report JSON."""

from __future__ import annotations

from pathlib import Path

import typer

report_app = typer.Typer(
    help="Validate and render saved GradTracer report JSON (written by write_json / --out).",
    no_args_is_help=True,
)

_FILE = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="Report JSON file.")


@report_app.command("validate")
def validate(path: Path = _FILE) -> None:
    """Check PATH against the shipped report schema; exit 1 listing every violation."""
    import json

    from gradtracer.export.schema import schema_errors

    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    errors = schema_errors(document, "report")
    if errors:
        for err in errors:
            typer.echo(f"{path}: {err}", err=True)
        raise typer.Exit(1)
    n = len(document.get("findings", [])) + sum(
        len(c.get("findings", [])) for c in document.get("children", [])
    )
    typer.echo(f"{path}: valid report ({document['kind']} {document['subject']!r}, {n} findings)")


@report_app.command("render")
def render(path: Path = _FILE) -> None:
    """Print PATH as readable text."""
    from gradtracer.export.json_report import read_json
    from gradtracer.export.text import render_text

    typer.echo(render_text(read_json(path)))


@report_app.command("agent")
def agent(path: Path = _FILE) -> None:
    """Print PATH as the agent JSON (gradtracer_embedding_report / gradtracer_manager_report)."""
    from gradtracer.export.agent_json import to_agent_json
    from gradtracer.export.json_report import read_json

    typer.echo(to_agent_json(read_json(path)))


@report_app.command("xml")
def xml(path: Path = _FILE) -> None:
    """Print PATH as the legacy agent XML."""
    from gradtracer.export.agent_xml import to_agent_xml
    from gradtracer.export.json_report import read_json

    typer.echo(to_agent_xml(read_json(path)))


@report_app.command("plot")
def plot(
    path: Path = _FILE,
    out: Path = typer.Option(
        Path("figures"), "--out", "-o", help="Directory for the PNG and SVG files."
    ),
) -> None:
    """Draw PATH's figures (embedding, flow and manager reports) into --out as PNG and SVG."""
    from gradtracer.export.figures import plot_report
    from gradtracer.export.json_report import read_json

    for written in plot_report(read_json(path), out):
        typer.echo(f"wrote {written}")


def register(app: typer.Typer) -> None:
    """Add the ``report`` group to the root app."""
    app.add_typer(report_app, name="report")
