"""Write a suite result: ``diagnosis_suite.json``, ``diagnosis_suite.md`` and a confusion figure."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["plot_confusion", "to_markdown", "write_suite"]


def _pct(r: Mapping[str, Any]) -> str:
    if r.get("n", 0) == 0 or not math.isfinite(r.get("rate", math.nan)):
        return "n/a (0 runs)"
    return (
        f"{100 * r['rate']:.1f}% [{100 * r['low']:.1f}, {100 * r['high']:.1f}] ({r['k']}/{r['n']})"
    )


def _num(r: Mapping[str, Any], key: str) -> str:
    v = r.get(key, math.nan)
    if v is None or not math.isfinite(v):
        return f"n/a (n={r.get('n', 0)})"
    return f"{v:.3g} [{r['low']:.3g}, {r['high']:.3g}] (n={r['n']})"


def _base(m: Mapping[str, Any], name: str, key: str) -> str:
    """A baseline's cell (n/a when the suite had no synthetic runs to score it on)."""
    b = m["baselines"].get(name)
    return _pct(b[key]) if b else "n/a (0 runs)"


def _legacy(m: Mapping[str, Any], key: str) -> str:
    """The ``gradtracer==0.9.0`` cell (its printed-report alerts; agent-export findings
    after the slash), or why there is none."""
    from gradtracer.fault_suite.legacy import legacy_available

    b = m["baselines"]
    if "legacy" not in b:
        return "not run (`--legacy`)" if legacy_available() else "not installed"
    return f"{_pct(b['legacy'][key])} / agent: {_pct(b['legacy_agent'][key])}"


def _latency_rows(m: Mapping[str, Any]) -> list[str]:
    if "dynamics_named_by_10pct" not in m:
        return []
    return [
        f"| steps onset -> right finding, dynamics (steps, median) | "
        f"{_num(m['steps_to_right_steps_dynamics'], 'median')} | | |",
        f"| dynamics faults named by 10% of the run after onset | "
        f"{_pct(m['dynamics_named_by_10pct'])} | | |",
        f"| steps after the first non-finite loss -> named (median) | "
        f"{_num(m['steps_after_first_non_finite'], 'median')} | | |",
        f"| non-finite faults named right after the first non-finite step | "
        f"{_pct(m['non_finite_named_at_first_step'])} | | |",
        f"| latency probes: share of tracked run time | {100 * m['probe_cost_share']:.1f}% | | |",
    ]


def _f3(v: Any) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.3f}"


def _real_data_lines(real: Mapping[str, Any]) -> list[str]:
    """One table per real data file: healthy runs, then one row per faulty run."""
    lines: list[str] = []
    for path, entry in real.items():
        s = entry["summary"]
        lines += ["", f"## Real data: {entry['kind']} (`{Path(path).name}`)", "",
                  f"Right cause first on {s['top1_right']} of {s['harmful']} harmful faulty "
                  f"runs; healthy runs with a WARNING/CRITICAL finding: {s['healthy_alarms']} "
                  f"of {s['n_healthy']}.", "",
                  "| run | family | quality | twin | harmful | top-1 cause | right | remedy "
                  "| recovered |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for h in entry["healthy"]:
            alarms = ", ".join(h["alarms"]) or "none"
            lines.append(f"| healthy s{h['random_state']} | {h['family']} | {_f3(h['quality'])}"
                         f" | | | alarms: {alarms} | | | |")  # fmt: skip
        for r in entry["faulty"]:
            lines.append(
                f"| {r['fault']} | {r['family']} | {_f3(r['quality'])} | "
                f"{_f3(r['twin_quality'])} | {'yes' if r['harmful'] else 'no'} | "
                f"{r['top1'] or 'none'} | {'yes' if r['top1_right'] else 'no'} | "
                f"{r['remedy'] or ''} | {_f3(r['recovered'])} |"
            )
    return lines


def to_markdown(result: Mapping[str, Any]) -> str:
    """The suite's metrics as a Markdown report."""
    m = result["metrics"]
    cfg = result["config"]
    lines = [
        "# Fault-injection diagnosis suite",
        "",
        f"Healthy runs: {m['n_healthy']} (seeds {cfg['healthy_seeds']}); faulty runs: "
        f"{m['n_faulty']} (seeds {cfg['fault_seeds']}), of which {m['n_harmful']} harmful and "
        f"{m['n_benign']} benign (not scored). Thresholds were set on seeds "
        f"{cfg['tuning_seeds']}, which this report does not use.",
        "",
        "| metric | GradTracer | trivial monitor | AUTOTRAINER | gradtracer 0.9.0 |",
        "|---|---|---|---|---|",
        f"| detection recall (harmful) | {_pct(m['detection_recall'])} | "
        f"{_base(m, 'trivial', 'detection_recall')} | "
        f"{_base(m, 'autotrainer', 'detection_recall')} | "
        f"{_legacy(m, 'detection_recall')} |",
        f"| right cause, top-1 | {_pct(m['top1_right_cause'])} | "
        f"{_base(m, 'trivial', 'top1_right_cause')} | "
        f"{_base(m, 'autotrainer', 'top1_right_cause')} | "
        f"{_legacy(m, 'top1_right_cause')} |",
        f"| right cause, top-3 | {_pct(m['top3_right_cause'])} | | |",
        f"| right action (top finding's remedy) | {_pct(m['right_action'])} | | |",
        f"| false alarm on healthy (WARNING or CRITICAL) | {_pct(m['false_alarm_healthy'])} | "
        f"{_base(m, 'trivial', 'false_alarm_healthy')} | "
        f"{_base(m, 'autotrainer', 'false_alarm_healthy')} | "
        f"{_legacy(m, 'false_alarm_healthy')} |",
        f"| CRITICAL on healthy | {_pct(m['critical_alarm_healthy'])} | | |",
        f"| remedy recovers >= 90% of twin quality | {_pct(m['remedy_recovery_90'])} | | |",
        f"| median recovered share | {_num(m['remedy_recovered_median'], 'median')} | | |",
        f"| steps onset -> right finding, dynamics (share of run, median) | "
        f"{_num(m['steps_to_right_share_dynamics'], 'median')} | | |",
        f"| steps onset -> right finding, non-finite (median) | "
        f"{_num(m['steps_to_right_non_finite'], 'median')} | | |",
        *_latency_rows(m),
        "",
        "Rates: 95% Wilson intervals; medians and Spearman: 95% bootstrap intervals over runs.",
        "Findings are read at the end of the run. Latency: the first diagnosis after the onset "
        "with a right cause among the top three; diagnoses every 2% of the run for 20% after "
        "the onset (and right after the first non-finite losses), then every 10%.",
        "",
        "## Per family (harmful faulty runs)",
        "",
        "| family | detected | right cause top-1 |",
        "|---|---|---|",
    ]
    for fam, r in m["per_family"].items():
        lines.append(f"| {fam} | {_pct(r['detected'])} | {_pct(r['top1'])} |")
    lines += ["", "## Health at 20% of training vs final quality (Spearman)", "",
              "A fault whose onset comes after the 20% checkpoint is not in the run when the "
              "health is read, so no score read there can see it; the goal is judged on "
              "`pooled_ndcg_onset_before_20pct` (healthy runs and faulty runs whose fault "
              "had begun by 20%: onset before it, or losses that already differ from the "
              "twin's), pooled over the NDCG@10 families. Rows without the suffix hold every "
              "run; `pooled_relative*` correlate with the share of the healthy twin's "
              "quality a run keeps (comparable across families and data); `real:*` rows "
              "are one real data file each.", "",
              "| population | rho |", "|---|---|"]  # fmt: skip
    for fam, r in m["health20_vs_quality_spearman"].items():
        if fam == "no_checkpoint":
            lines.append(f"| runs without a checkpoint (not scored) | {r.get('n', 0)} |")
            continue
        lines.append(f"| {fam} | {_num(r, 'rho')} |")
    lines += ["", "## Per fault", "",
              "| fault | runs | harmful | detected | top-1 | top-3 | action | top-1 types |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, r in m["per_fault"].items():
        types = ", ".join(f"{k} {v}" for k, v in r["top1_types"].items())
        lines.append(
            f"| {name} | {r['runs']} | {r['harmful']} | {r['detected']} | {r['top1']} | "
            f"{r['top3']} | {r['action']} | {types} |"
        )
    lines += _real_data_lines(m.get("real_data") or {})
    skipped = result.get("skipped") or {}
    if skipped:
        lines += ["", "## Skipped (the fault cannot be applied to the family)", ""]
        lines += [f"- {name}: {', '.join(fams)}" for name, fams in skipped.items()]
    lines += ["", "## False alarms on healthy runs by finding type", ""]
    if m["false_alarm_types"]:
        lines += ["| finding type | healthy runs |", "|---|---|"]
        lines += [f"| {t} | {n} |" for t, n in m["false_alarm_types"].items()]
    else:
        lines.append("none")
    return "\n".join(lines) + "\n"


def plot_confusion(result: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Fault x top-1 finding type (share of harmful runs) as ``diagnosis_confusion.png/svg``."""
    import numpy as np

    from gradtracer._plotting import save_png_svg, subplots

    per_fault = {k: v for k, v in result["metrics"]["per_fault"].items() if v["harmful"]}
    types = sorted({t for v in per_fault.values() for t in v["top1_types"]})
    faults = list(per_fault)
    mat = np.zeros((max(len(faults), 1), max(len(types), 1)))
    for i, name in enumerate(faults):
        for t, n in per_fault[name]["top1_types"].items():
            mat[i, types.index(t)] = n / per_fault[name]["harmful"]
    fig, axes = subplots(
        width=max(6.0, 0.45 * len(types) + 4), height=max(4.0, 0.3 * len(faults) + 2)
    )
    ax = axes[0, 0]
    im = ax.imshow(mat, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(types)), types, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(faults)), faults, fontsize=7)
    ax.set_xlabel("top-ranked cause finding")
    ax.set_title("fault x top-1 finding (share of harmful runs)")
    fig.colorbar(im, ax=ax)
    return save_png_svg(fig, out_dir, "diagnosis_confusion")


def write_suite(result: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write JSON, Markdown and the figure into ``out_dir``; returns their paths."""
    paths = write_json_markdown(result, to_markdown(result), out_dir, "diagnosis_suite")
    paths["figure"] = plot_confusion(result, Path(out_dir))[0]
    return paths


def write_json_markdown(
    result: Mapping[str, Any], markdown: str, out_dir: str | Path, stem: str
) -> dict[str, Path]:
    """Write ``<stem>.json`` (non-finite floats as null) and ``<stem>.md`` atomically into
    ``out_dir`` (created); returns their paths under ``json`` and ``markdown``."""
    from gradtracer.durable import atomic_write_json, atomic_write_text

    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    paths = {"json": d / f"{stem}.json", "markdown": d / f"{stem}.md"}
    atomic_write_json(paths["json"], _json_safe(result))
    atomic_write_text(paths["markdown"], markdown)
    return paths


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value
