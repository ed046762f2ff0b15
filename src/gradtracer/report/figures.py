"""Figures of embedding and manager reports, each written as PNG and SVG (matplotlib, Agg).

:func:`plot_report` takes a :class:`~gradtracer.findings.Report` (live from
``tracker.to_report()`` / ``manager.to_report()``, or read back from JSON) and draws:

* per embedding table (``<subject>_dynamics``): mean update velocity and gradient norm over
  the optimizer steps with the zombie count beside them; the exposure Lorenz curve (Gini,
  top-1% share); the mean row norm per popularity bucket; how the rows divide into never
  exposed, frozen, zombie and the rest;
* per manager (``<subject>_towers``): each tracked table's mean velocity relative to its
  first snapshot, the loss when it was recorded, and the health score;
* per FlowTracker (``<subject>_flow``): loss (and learning rate), mean velocity and
  gradient norm over the tracked steps, and every layer's health score with its update
  ratio, least healthy first.

The curves over steps come from the report's ``metadata["history"]`` (the tracker's
history snapshots, thinned by :func:`gradtracer.report.history.thin_history`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gradtracer._plotting import save_png_svg, subplots
from gradtracer.findings import Report
from gradtracer.report.history import MAX_HISTORY_POINTS, history_series, thin_history

__all__ = [
    "MAX_HISTORY_POINTS",
    "plot_embedding_report",
    "plot_flow_report",
    "plot_manager_report",
    "plot_report",
    "thin_history",
]


def _as_report(report: Report | Mapping[str, Any]) -> Report:
    if isinstance(report, Report):
        return report
    if isinstance(report, Mapping) and "kind" in report:
        return Report.from_dict(report)
    raise TypeError(f"expected a Report or its to_dict() form, got {type(report).__name__}")


def plot_report(report: Report | Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Draw every figure ``report`` supports into ``out_dir``; return the files written.

    An ``embedding`` or ``flow`` report gives one figure; a ``manager`` report gives its
    tower figure plus one figure per embedding or flow child.

    Raises:
        ValueError: the report (and its children) hold nothing these figures draw.
    """
    rep = _as_report(report)
    paths: list[Path] = []
    single = {"embedding": plot_embedding_report, "flow": plot_flow_report}
    if rep.kind in single:
        paths += single[rep.kind](rep, out_dir)
    elif rep.kind == "manager":
        paths += plot_manager_report(rep, out_dir)
        for child in _unique_subjects([c for c in rep.children if c.kind in single]):
            if child.kind in single:
                paths += single[child.kind](child, out_dir)
    if not paths:
        raise ValueError(
            f"no figure for a {rep.kind!r} report (figures exist for 'embedding', 'flow' "
            "and 'manager' reports)"
        )
    return paths


def _history(rep: Report) -> list[Mapping[str, Any]]:
    hist = rep.metadata.get("history") or []
    return [h for h in hist if isinstance(h, Mapping) and h.get("step") is not None]


def _series(hist: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """Steps and finite values of ``key`` (:func:`gradtracer.report.history.history_series`)."""
    by_step = history_series(hist, key)
    return [float(x) for x in by_step], list(by_step.values())


def _no_data(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


#: Longest subject part of a figure file name (characters); longer subjects are cut and
#: tagged with a hash of the full subject, so file names stay within file-system limits.
MAX_STEM_SUBJECT = 80


def _file_stem(subject: str, suffix: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in subject) or "report"
    safe = safe.lstrip(".") or "report"  # never a hidden file
    if len(safe) > MAX_STEM_SUBJECT:
        digest = hashlib.sha1(subject.encode("utf-8")).hexdigest()[:10]
        safe = f"{safe[:MAX_STEM_SUBJECT]}-{digest}"
    return f"{safe}_{suffix}"


def _unique_subjects(reports: Sequence[Report]) -> list[Report]:
    """The reports with repeated subjects numbered (``name``, ``name_2``, ...) for file names."""
    seen: dict[str, int] = {}
    out = []
    for rep in reports:
        n = seen.get(rep.subject, 0) + 1
        seen[rep.subject] = n
        out.append(rep if n == 1 else dataclasses.replace(rep, subject=f"{rep.subject}_{n}"))
    return out


def plot_embedding_report(report: Report | Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """The four-panel figure of one embedding table (``<subject>_dynamics.png/.svg``)."""
    rep = _as_report(report)
    if rep.kind != "embedding":
        raise ValueError(f"expected an 'embedding' report, got {rep.kind!r}")
    s = rep.stats
    fig, axes = subplots(2, 2, width=10.0, height=7.5)
    fig.suptitle(
        f"{rep.subject}: {s.get('num_embeddings', '?')} x {s.get('embedding_dim', '?')}, "
        f"step {s.get('step', '?')}"
    )
    _panel_dynamics(axes[0][0], _history(rep))
    _panel_lorenz(axes[0][1], s)
    _panel_norm_buckets(axes[1][0], s)
    _panel_row_kinds(axes[1][1], s)
    return save_png_svg(fig, out_dir, _file_stem(rep.subject, "dynamics"), dpi=110)


def _panel_dynamics(ax: Any, hist: Sequence[Mapping[str, Any]]) -> None:
    ax.set_title("Training dynamics", fontsize=10)
    if not _velocity_curves(ax, hist):
        _no_data(ax, "no history snapshots yet\n(fewer steps than track_interval)")
        return
    ax.set_ylabel("per touched step")
    xs_z, zombies = _series(hist, "zombie_count")
    lines, labels = ax.get_legend_handles_labels()
    if xs_z:
        twin = ax.twinx()
        twin.plot(xs_z, zombies, color="tab:red", linestyle="--", label="zombie rows")
        twin.set_ylabel("zombie rows", color="tab:red")
        twin.set_ylim(bottom=0)
        from matplotlib.ticker import MaxNLocator

        twin.yaxis.set_major_locator(MaxNLocator(integer=True))
        more = twin.get_legend_handles_labels()
        lines, labels = lines + more[0], labels + more[1]
    ax.legend(lines, labels, fontsize=8, loc="best")


def _velocity_curves(ax: Any, hist: Sequence[Mapping[str, Any]]) -> bool:
    """Mean velocity and mean gradient norm over steps (log scale when positive); False
    when the history holds neither."""
    xs_v, vel = _series(hist, "mean_velocity")
    xs_g, gn = _series(hist, "mean_grad_norm")
    if not xs_v and not xs_g:
        return False
    ax.plot(xs_v, vel, color="tab:blue", label="mean velocity")
    ax.plot(xs_g, gn, color="tab:orange", label="mean grad norm")
    if all(v > 0 for v in vel + gn):
        ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.grid(True, alpha=0.3)
    return True


def _panel_lorenz(ax: Any, s: Mapping[str, Any]) -> None:
    ax.set_title("Exposure concentration (Lorenz curve)", fontsize=10)
    x, y = s.get("lorenz_x"), s.get("lorenz_y")
    if not x or not y or len(x) != len(y):
        _no_data(ax, "no exposure curve in the report")
        return
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle=":", label="equal exposure")
    ax.plot(x, y, color="tab:purple", label="rows by exposure")
    ax.fill_between(x, y, x, color="tab:purple", alpha=0.1)
    gini, top = s.get("popularity_gini"), s.get("top1pct_share")
    text = []
    if gini is not None:
        text.append(f"Gini {gini:.3f}")
    if top is not None:
        text.append(f"top 1% of rows: {100 * top:.1f}% of exposure")
    if text:
        ax.text(0.03, 0.92, "\n".join(text), transform=ax.transAxes, fontsize=8, va="top")
    ax.set_xlabel("share of rows (least exposed first)")
    ax.set_ylabel("share of exposure")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="lower right")


def _panel_norm_buckets(ax: Any, s: Mapping[str, Any]) -> None:
    ratio = s.get("norm_popularity_ratio")
    extra = "" if ratio is None else f" (most / least exposed: {ratio:.2f}x)"
    ax.set_title(f"Row norm by popularity bucket{extra}", fontsize=10)
    buckets = [b for b in s.get("norm_by_popularity") or [] if isinstance(b, Mapping)]
    if not buckets:
        _no_data(ax, "no popularity buckets in the report")
        return
    labels = [f"{b.get('min_exposure', '?')}-{b.get('max_exposure', '?')}" for b in buckets]
    values = [float(b.get("mean_norm") or 0.0) for b in buckets]
    ax.bar(range(len(values)), values, color="tab:green")
    ax.set_xticks(range(len(values)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_xlabel("exposure range of the bucket (equal-size buckets, rarest first)")
    ax.set_ylabel("mean row L2 norm")
    ax.grid(True, axis="y", alpha=0.3)


def _panel_row_kinds(ax: Any, s: Mapping[str, Any]) -> None:
    ax.set_title("Rows", fontsize=10)
    total = s.get("num_embeddings")
    if not total:
        _no_data(ax, "no row counts in the report")
        return
    unexposed = int(s.get("unexposed_count") or 0)
    frozen = int(s.get("frozen_count") or 0)
    zombie = int(s.get("zombie_count") or 0)
    rest = max(int(total) - unexposed - frozen - zombie, 0)
    names = ["never exposed", "frozen", "zombie", "other exposed"]
    counts = [unexposed, frozen, zombie, rest]
    colors = ["tab:grey", "tab:cyan", "tab:red", "tab:blue"]
    bars = ax.barh(names, counts, color=colors)
    for bar, c in zip(bars, counts):
        ax.text(
            bar.get_width(),
            bar.get_y() + bar.get_height() / 2,
            f" {c:,} ({100 * c / int(total):.1f}%)",
            va="center",
            fontsize=8,
        )
    ax.set_xlim(0, max(counts) * 1.35 if max(counts) else 1)
    ax.invert_yaxis()
    ax.set_xlabel("rows")


def plot_manager_report(report: Report | Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Each tracked table's relative velocity and the loss over steps (``<subject>_towers``)."""
    rep = _as_report(report)
    if rep.kind != "manager":
        raise ValueError(f"expected a 'manager' report, got {rep.kind!r}")
    fig, axes = subplots(1, 2, width=11.0, height=4.2)
    health = rep.stats.get("health_score")
    fig.suptitle(
        f"{rep.subject}: {len(rep.children)} tracked tables"
        + ("" if health is None else f", health score {health:.0f}/100")
    )
    ax = axes[0][0]
    ax.set_title("Mean velocity relative to the first snapshot", fontsize=10)
    drawn = False
    spread = []
    for child in rep.children:
        xs, vel = _series(_history(child), "mean_velocity")
        pairs = [(x, v) for x, v in zip(xs, vel) if v > 0]
        if len(pairs) < 2:
            continue
        base = pairs[0][1]
        label = str(child.metadata.get("tracker_key", child.subject))
        rel = [p[1] / base for p in pairs]
        spread += rel
        ax.plot([p[0] for p in pairs], rel, label=label)
        drawn = True
    if drawn:
        if max(spread) / min(spread) > 10:
            ax.set_yscale("log")
        ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("velocity / first velocity")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    else:
        _no_data(ax, "fewer than two history snapshots per table")
    ax = axes[0][1]
    ax.set_title("Loss", fontsize=10)
    loss = max(
        (_series(_history(c), "loss") for c in rep.children),
        key=lambda p: len(p[0]),
        default=([], []),
    )
    if len(loss[0]) >= 2:
        ax.plot(loss[0], loss[1], color="black")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss")
        ax.grid(True, alpha=0.3)
    else:
        _no_data(ax, "no loss recorded\n(pass loss= to step())")
    return save_png_svg(fig, out_dir, _file_stem(rep.subject, "towers"), dpi=110)


#: layers shown in the flow figure's health panel (least healthy first)
MAX_FLOW_LAYERS = 30


def plot_flow_report(report: Report | Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Loss, dynamics over steps and per-layer health of a FlowTracker (``<subject>_flow``)."""
    rep = _as_report(report)
    if rep.kind != "flow":
        raise ValueError(f"expected a 'flow' report, got {rep.kind!r}")
    s = rep.stats
    hist = _history(rep)
    fig, axes = subplots(1, 3, width=15.0, height=4.6)
    health = s.get("health")
    fig.suptitle(
        f"{rep.subject}: {s.get('n_layers', '?')} tracked tensors, "
        f"{s.get('n_parameters', 0):,} parameters, step {s.get('step', '?')}"
        + ("" if health is None else f", health {health:.0f}/100")
    )
    ax = axes[0][0]
    ax.set_title("Loss", fontsize=10)
    xs, loss = _series(hist, "loss")
    if len(xs) >= 2:
        ax.plot(xs, loss, color="black", label="loss")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss")
        ax.grid(True, alpha=0.3)
        xs_lr, lr = _series(hist, "lr")
        if len(set(lr)) > 1:  # a schedule: show it beside the loss
            twin = ax.twinx()
            twin.plot(xs_lr, lr, color="tab:green", linestyle="--")
            twin.set_ylabel("learning rate", color="tab:green")
    else:
        _no_data(ax, "no loss recorded\n(pass loss= to step())")
    ax = axes[0][1]
    ax.set_title("Mean update velocity and gradient norm", fontsize=10)
    if _velocity_curves(ax, hist):
        ax.legend(fontsize=8)
    else:
        _no_data(ax, "no history snapshots yet")
    _panel_layer_health(axes[0][2], s.get("layers") or {})
    return save_png_svg(fig, out_dir, _file_stem(rep.subject, "flow"), dpi=110)


def _panel_layer_health(ax: Any, layers: Mapping[str, Any]) -> None:
    rows = [(name, d) for name, d in layers.items() if isinstance(d, Mapping)]
    rows.sort(key=lambda item: (float(item[1].get("health") or 0.0), item[0]))
    shown = rows[:MAX_FLOW_LAYERS]
    more = "" if len(rows) <= len(shown) else f", {len(shown)} least healthy of {len(rows)}"
    ax.set_title(f"Layer health (update ratio){more}", fontsize=10)
    if not shown:
        _no_data(ax, "no layers in the report")
        return
    scores = [float(d.get("health") or 0.0) for _, d in shown]
    colors = ["tab:green" if h >= 80 else "tab:orange" if h >= 50 else "tab:red" for h in scores]
    bars = ax.barh([name for name, _ in shown], scores, color=colors)
    for bar, (_, d) in zip(bars, shown):
        ratio = d.get("update_ratio")
        label = "n/a" if ratio is None else f"{ratio:.1e}"
        ax.text(
            bar.get_width(),
            bar.get_y() + bar.get_height() / 2,
            f" {label}",
            va="center",
            fontsize=7,
        )
    ax.set_xlim(0, 125)
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlabel("health score (0-100)")
