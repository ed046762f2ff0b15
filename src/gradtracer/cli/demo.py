"""CLI: ``gradtracer demo`` -- synthetic data, tracked implicit MF vs popularity, findings.

The pipeline (:func:`run_demo`) only composes public library functions:
``make_implicit`` -> ``leave_one_out`` -> ``train_mf`` with a
:class:`~gradtracer.manager.FlowManager` of two
:class:`~gradtracer.embedding.tracker.EmbeddingTracker` (user and item tables) stepped from
the ``on_backward`` hook -> ``evaluate_topk`` for the model and for popularity -> the
manager's :class:`~gradtracer.findings.Report`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

#: Columns of the printed table (metric keys of ``RankingResult.mean``).
DEMO_METRICS: tuple[str, ...] = ("hr@10", "ndcg@10", "recall@10", "mrr@10")


def run_demo(
    *,
    seed: int = 0,
    epochs: int = 5,
    dim: int = 32,
    lr: float = 0.01,
    n_users: int = 943,
    n_items: int = 1682,
    n_interactions: int = 55_000,
    on_backward: Callable[[float], None] | None = None,
    progress: bool | None = None,
    track: bool = True,
    track_interval: int = 20,
    auto_fix: bool = False,
    audit_dir: Path | None = None,
) -> dict[str, Any]:
    """Return the demo's results as a JSON-safe dict (data, split, config, metrics per model).

    Generates MovieLens-100K-shaped synthetic implicit data (``make_implicit``), holds out
    each user's last interaction, trains :class:`~gradtracer.recsys.models.ImplicitMF`
    (BCE, 4 negatives, batch 256, Adam) and evaluates it and the popularity baseline by
    full ranking with training items excluded (conservative ties).

    With ``track=True`` (default) an ``EmbeddingTracker`` watches each table
    (``track_interval`` 20) through a ``FlowManager``; the summary then holds the manager's
    report under ``"report"`` (a ``Report.to_dict()``), and ``"manager"`` holds the live
    manager (dropped before JSON is written). ``auto_fix`` turns on Auto-Fix on the item
    table, auditing into ``audit_dir`` (default ``.gradtracer``).
    """
    from gradtracer.recsys.data import leave_one_out, make_implicit
    from gradtracer.recsys.metrics import evaluate_topk
    from gradtracer.recsys.models import (
        ImplicitMF,
        MFTrainConfig,
        PopularityRecommender,
        train_mf,
    )

    data = make_implicit(
        n_users=n_users, n_items=n_items, n_interactions=n_interactions, random_state=seed
    )
    split = leave_one_out(data)
    train, test = split.train.user_items(), split.test.user_items()
    config = MFTrainConfig(n_epochs=epochs, learning_rate=lr, random_state=seed)
    model = ImplicitMF(data.n_users, data.n_items, n_factors=dim, random_state=seed)
    manager = None
    hook = on_backward
    if track:
        manager = _make_manager(model, track_interval, auto_fix, audit_dir)

        def hook(loss: float) -> None:
            manager.step(loss=loss)
            if on_backward is not None:
                on_backward(loss)

    start = time.perf_counter()
    losses = train_mf(model, split.train, config, on_backward=hook, progress=progress)
    train_seconds = time.perf_counter() - start
    results = {
        "popularity": evaluate_topk(
            PopularityRecommender().fit(split.train), test, exclude=train, progress=progress
        ),
        "implicit_mf": evaluate_topk(model, test, exclude=train, progress=progress),
    }
    out: dict[str, Any] = {
        "data": {
            "source": data.source,
            "rows": len(data),
            "n_users": data.n_users,
            "n_items": data.n_items,
        },
        "split": split.info,
        "config": {"dim": dim, **config.to_dict()},
        "train_seconds": train_seconds,
        "losses": losses,
        "results": {name: res.to_dict() for name, res in results.items()},
    }
    if manager is not None:
        report = manager.to_report()
        manager.detach()
        out["report"] = report.to_dict()
        out["manager"] = manager
    return out


def _make_manager(model: Any, track_interval: int, auto_fix: bool, audit_dir: Path | None) -> Any:
    from gradtracer.embedding.tracker import EmbeddingTracker
    from gradtracer.manager import FlowManager

    manager = FlowManager("implicit_mf")
    manager.add_tracker(
        "user", EmbeddingTracker(model.user_emb, name="user_emb", track_interval=track_interval)
    )
    fix: Any = False
    if auto_fix:
        from gradtracer.embedding.autofix import AutoFixController

        fix = AutoFixController(
            layer_name="item_emb", audit="default" if audit_dir is None else audit_dir
        )
    manager.add_tracker(
        "item",
        EmbeddingTracker(
            model.item_emb, name="item_emb", auto_fix=fix, track_interval=track_interval
        ),
    )
    return manager


def format_demo(summary: dict[str, Any]) -> str:
    """Return the demo's printed report: data line, one table row per model."""
    from gradtracer.recsys.metrics._table import format_table

    data, cfg = summary["data"], summary["config"]
    rows = []
    for name, res in summary["results"].items():
        rows.append([name, *(res["mean"][key] for key in DEMO_METRICS)])
    any_result = next(iter(summary["results"].values()))
    title = (
        f"{data['source']}: {data['rows']:,} interactions, {data['n_users']:,} users, "
        f"{data['n_items']:,} items | leave-one-out | {any_result['protocol']}, "
        f"training items excluded, ties={any_result['ties']}\n"
        f"implicit MF: dim {cfg['dim']}, {cfg['loss']}, {cfg['n_negatives']} negatives, "
        f"{cfg['n_epochs']} epochs in {summary['train_seconds']:.1f}s, final loss "
        f"{summary['losses'][-1]:.4f}\n"
    )
    text = format_table(["model", *DEMO_METRICS], rows, title=title)
    if "report" in summary:
        text += "\n\n" + format_findings(summary["report"])
    return text


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def format_findings(report: dict[str, Any], limit: int = 8) -> str:
    """Return the tracked run's health score and its most severe findings, one per line."""
    findings = list(report.get("findings", []))
    for child in report.get("children", []):
        findings.extend(child.get("findings", []))
    order = {"critical": 0, "warning": 1, "info": 2}
    findings.sort(key=lambda f: (order.get(f["severity"], 3), -f["confidence"]))
    stats = report.get("stats", {})
    # a manager's report carries the run-level health of the diagnosis; a tracker's its own
    health = stats.get("run_health", stats.get("health_score"))
    lines = [
        f"GradTracer findings ({len(findings)}; health score "
        f"{'n/a' if health is None else f'{health:.0f}/100'}):"
    ]
    for child in report.get("children", []):
        st = child.get("stats", {})
        lines.append(
            f"  {child['subject']}: coverage {_fmt(st.get('active_coverage_pct'))}%, "
            f"exposure Gini {_fmt(st.get('popularity_gini'))}, zombies {st.get('zombie_count', 0)}, "
            f"dead {st.get('dead_count', 0)}, effective rank {_fmt(st.get('effective_rank'))}"
        )
    if not findings:
        lines.append("  no findings: every tracked table looks healthy")
    for f in findings[:limit]:
        lines.append(f"  [{f['severity']}] {f['subject']}: {f['type']} -> {f['action']}")
        lines.append(f"      {f['premise']}")
    if len(findings) > limit:
        lines.append(f"  ... {len(findings) - limit} more in the JSON report (--out)")
    return "\n".join(lines)


#: default fault of the side-by-side part: a table initialised with 200x the usual std
DEMO_FAULT = "init_huge_std"


def run_fault_demo(fault: str = DEMO_FAULT, *, seed: int = 0, intensity: int = 1) -> dict[str, Any]:
    """Healthy vs faulty implicit MF (BCE) side by side, the diagnosis, and the remedy.

    Returns a JSON-safe dict: ``healthy``/``faulty``/``remedied`` each with ``quality``
    (NDCG@10) and ``health``; ``finding`` (the top cause of the faulty run, a finding dict,
    or None) and ``recovered`` (remedied quality / healthy quality).

    Raises:
        ValueError: unknown fault, or one that does not apply to implicit MF.
    """
    import dataclasses

    from gradtracer.fault_suite import RunSpec, fault_spec, train_run
    from gradtracer.fault_suite.loop import cause_findings
    from gradtracer.fault_suite.runner import top_remedies

    spec = fault_spec(fault)
    family = "mf_bce" if "mf_bce" in spec.families else "mf_bpr"
    if family not in spec.families:
        raise ValueError(
            f"fault {fault!r} does not apply to implicit MF ({', '.join(spec.families)})"
        )
    base = RunSpec(family, random_state=seed, variant=spec.variant)
    healthy = train_run(base)
    broken = RunSpec(family, random_state=seed, variant=spec.variant, fault=fault,
                     intensity=intensity)  # fmt: skip
    faulty = train_run(broken)
    final = faulty.final.findings if faulty.final else []
    causes = cause_findings(final)
    top = causes[0] if causes else None
    out: dict[str, Any] = {
        "fault": fault, "description": spec.description, "family": family,
        "healthy": {"quality": healthy.quality,
                    "health": healthy.final.health if healthy.final else None},
        "faulty": {"quality": faulty.quality,
                   "health": faulty.final.health if faulty.final else None},
        "finding": top, "remedied": None, "recovered": None,
    }  # fmt: skip
    fix = top_remedies(final)
    if top is not None and fix is not None:
        remedy, more = fix  # the top cause's remedy, for every subject named with that cause
        fixed = train_run(dataclasses.replace(broken, remedy=remedy, more_remedies=more))
        out["remedied"] = {"quality": fixed.quality,
                           "health": fixed.final.health if fixed.final else None}  # fmt: skip
        out["recovered"] = fixed.quality / healthy.quality if healthy.quality > 0 else None
    return out


def format_fault_demo(result: dict[str, Any]) -> str:
    """The side-by-side part of the demo as text."""
    lines = [
        f"Healthy vs faulty run ({result['family']}, same data, seed, batches and negatives)",
        f"  injected fault: {result['fault']} ({result['description']})",
        f"  healthy : NDCG@10 {result['healthy']['quality']:.4f}, health "
        f"{result['healthy']['health']:.0f}/100",
        f"  faulty  : NDCG@10 {result['faulty']['quality']:.4f}, health "
        f"{result['faulty']['health']:.0f}/100",
    ]
    top = result["finding"]
    if top is None:
        lines.append("  diagnosis: no WARNING or CRITICAL finding named a cause")
        return "\n".join(lines)
    lines.append(f"  diagnosis: [{top['severity']}] {top['subject']}: {top['type']}")
    lines.append(f"      {top['premise']}")
    lines.append(f"      action: {top['action']}; remedy: {top.get('remedy')}")
    if result["remedied"] is not None:
        lines.append(
            f"  remedied: NDCG@10 {result['remedied']['quality']:.4f} "
            f"({100 * (result['recovered'] or 0.0):.0f}% of the healthy run)"
        )
    return "\n".join(lines)


def demo(
    seed: int = typer.Option(0, "--seed", help="Seed of data, split, init and sampling."),
    epochs: int = typer.Option(5, "--epochs", help="Training epochs."),
    dim: int = typer.Option(32, "--dim", help="Embedding dimension."),
    lr: float = typer.Option(0.01, "--lr", help="Adam learning rate."),
    n_users: int = typer.Option(943, "--n-users", help="Synthetic users."),
    n_items: int = typer.Option(1682, "--n-items", help="Synthetic items."),
    n_interactions: int = typer.Option(
        55_000, "--n-interactions", help="Approximate synthetic interactions."
    ),
    threads: int = typer.Option(
        1, "--threads", help="torch CPU threads (default 1: the batches are small)."
    ),
    track: bool = typer.Option(
        True, "--track/--no-track", help="Track both embedding tables and print findings."
    ),
    track_interval: int = typer.Option(20, "--track-interval", help="Tracker analysis interval."),
    auto_fix: bool = typer.Option(False, "--auto-fix", help="Damp oscillating item rows."),
    fault: str = typer.Option(
        DEMO_FAULT,
        "--fault",
        help="Fault of the healthy-vs-faulty part (a suite fault for implicit MF; 'none' skips).",
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Directory for demo_results.json, report.json, agent_report.json and figures/.",
    ),
) -> None:
    """Train implicit MF on synthetic data and compare it with popularity (HR/NDCG/Recall/MRR@10)."""
    import torch

    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        summary = run_demo(
            seed=seed,
            epochs=epochs,
            dim=dim,
            lr=lr,
            n_users=n_users,
            n_items=n_items,
            n_interactions=n_interactions,
            track=track,
            track_interval=track_interval,
            auto_fix=auto_fix,
            audit_dir=None if out is None else out / ".gradtracer",
        )
        side = None if fault == "none" else run_fault_demo(fault, seed=seed)
    finally:
        torch.set_num_threads(previous)
    typer.echo(format_demo(summary))
    if side is not None:
        summary["fault_demo"] = side
        typer.echo("\n" + format_fault_demo(side))
    manager = summary.pop("manager", None)
    if out is not None:
        from gradtracer.durable import atomic_write_text

        out.mkdir(parents=True, exist_ok=True)
        path = out / "demo_results.json"
        atomic_write_text(path, json.dumps(summary, indent=2, sort_keys=True))
        typer.echo(f"\nwrote {path}")
        if manager is not None:
            from gradtracer.agent import AgentExporter
            from gradtracer.export.json_report import dumps_stable
            from gradtracer.export.schema import validate_report

            validate_report(summary["report"])
            atomic_write_text(out / "report.json", dumps_stable(summary["report"]) + "\n")
            atomic_write_text(
                out / "agent_report.json", AgentExporter.export_manager(manager) + "\n"
            )
            typer.echo(f"wrote {out / 'report.json'} and {out / 'agent_report.json'}")
            from gradtracer.report.figures import plot_report

            figures = plot_report(summary["report"], out / "figures")
            pngs = ", ".join(p.name for p in figures if p.suffix == ".png")
            typer.echo(f"wrote {out / 'figures'}: {pngs} (and SVG)")


def register(app: typer.Typer) -> None:
    """Add ``gradtracer demo`` to the root app."""
    app.command("demo")(demo)
