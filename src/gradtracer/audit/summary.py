"""Per-run summaries of audit events (what ``gradtracer audit show`` prints)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gradtracer.audit.ids import decode_ids

__all__ = ["iter_runs", "summarize_audit"]


def iter_runs(
    events: Iterable[Mapping[str, Any]],
) -> dict[tuple[str, str], list[Mapping[str, Any]]]:
    """Group events by ``(run_id, layer)`` keeping file order."""
    runs: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for ev in events:
        runs.setdefault((str(ev.get("run_id")), str(ev.get("layer"))), []).append(ev)
    return runs


def summarize_audit(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Return one summary row per ``(run_id, layer)``: steps, interventions, rows, scales.

    Keys: ``run_id``, ``layer``, ``first_step``, ``last_step``, ``interventions`` (``damp``
    events), ``rows_ever_damped``, ``rows_damped_at_end`` (latest logged scale < 1),
    ``min_scale``, ``last_p_improving``, ``ended`` (a ``run_end`` event was written),
    ``header`` (a ``run_start`` with the policy is in the log, first or re-emitted).
    """
    out = []
    for (run_id, layer), evs in iter_runs(events).items():
        latest: dict[int, float] = {}
        ever: set[int] = set()
        n_damp, min_scale, last_g = 0, 1.0, None
        for ev in evs:
            if ev.get("kind") != "damp":
                continue
            n_damp += 1
            rows = decode_ids(ev["rows"]).tolist()
            scales = [float(s) for s in ev["scales"]]
            for r, s in zip(rows, scales, strict=False):
                latest[r] = s
                if s < 1.0:
                    ever.add(r)
            if scales:
                min_scale = min(min_scale, min(scales))
            last_g = (ev.get("loss_trend") or {}).get("p_improving")
        steps = [int(ev["step"]) for ev in evs if "step" in ev]
        out.append(
            {
                "run_id": run_id,
                "layer": layer,
                "first_step": min(steps) if steps else None,
                "last_step": max(steps) if steps else None,
                "interventions": n_damp,
                "rows_ever_damped": len(ever),
                "rows_damped_at_end": sum(1 for s in latest.values() if s < 1.0),
                "min_scale": min_scale,
                "last_p_improving": last_g,
                "ended": any(ev.get("kind") == "run_end" for ev in evs),
                "header": any(ev.get("kind") == "run_start" for ev in evs),
            }
        )
    return out
