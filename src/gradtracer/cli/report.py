"""CLI: ``gradtracer report validate|render|agent|xml|plot FILE.json`` over saved report JSON."""

from __future__ import annotations

from pathlib import Path

import typer

report_app = typer.Typer(
    help="Validate and render saved GradTracer report JSON (written by write_json / --out).",
    no_args_is_help=True,
)

_FILE = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="Report JSON file.")


def _render_problems(document: dict[str, object]) -> list[str]:
    """Why ``document`` (schema-valid) cannot be loaded or rendered; empty when it can."""
    from gradtracer.export.agent_json import to_agent_json
    from gradtracer.export.agent_xml import to_agent_xml
    from gradtracer.findings import Report
    from gradtracer.report.text import render_text

    try:
        report = Report.from_dict(document)
    except (ValueError, TypeError, KeyError) as exc:
        return [f"not a valid report: {exc}"]
    problems = []
    for what, render in (
        ("text", render_text),
        ("agent JSON", to_agent_json),
        ("agent XML", to_agent_xml),
    ):
        try:
            render(report)
        except Exception as exc:  # a renderer's refusal is what validate must catch
            problems.append(f"cannot be rendered as {what}: {type(exc).__name__}: {exc}")
    return problems


@report_app.command("validate")
def validate(path: Path = _FILE) -> None:
    """Check PATH against the shipped schema and the renderers; exit 1 listing every problem.

    A file that passes can be rendered by ``render``, ``agent`` and ``xml``: JSON only
    (no NaN/Infinity), schema-valid, loadable as a Report, and accepted by each renderer.
    """
    from gradtracer.export.json_report import loads_strict
    from gradtracer.export.schema import schema_errors

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    document = loads_strict(text, source=str(path))
    errors = schema_errors(document, "report")
    if not errors:
        errors = _render_problems(document)
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
    from gradtracer.report.text import render_text

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
    from gradtracer.export.json_report import read_json
    from gradtracer.report.figures import plot_report

    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out} exists and is not a directory", param_hint="--out")
    report = read_json(path)
    try:
        written_files = plot_report(report, out)
    except (OSError, MemoryError):
        raise
    except Exception as exc:  # a figure that cannot be drawn: one line, not a traceback
        raise RuntimeError(
            f"{path}: cannot draw the figures ({type(exc).__name__}: {exc})"
        ) from exc
    for written in written_files:
        typer.echo(f"wrote {written}")


def register(app: typer.Typer) -> None:
    """Add the ``report`` group to the root app."""
    app.add_typer(report_app, name="report")
