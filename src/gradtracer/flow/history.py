"""Run history: FlowTracker summaries saved as JSON, and comparison of a run with earlier ones.

Each run is one file ``<directory>/<model>__<run_id>.json`` holding ``FlowTracker.summary()``.
A layer "behaves differently" when its median gradient norm or mean update-to-weight
ratio differs from the median over earlier runs by more than ``factor`` (default 3x) in
either direction, or when its health score dropped by more than ``health_drop`` points.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gradtracer._numeric import finite_or_none
from gradtracer.durable import atomic_write_text
from gradtracer.findings import Finding, FindingType, Severity
from gradtracer.report.catalog import make_finding

__all__ = [
    "LayerDifference",
    "RunHistory",
    "compare_with_history",
    "detect_run_regression",
    "layer_differences",
]

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class RunHistory:
    """A directory of run summaries (JSON files; default ``.gradtracer/runs``)."""

    def __init__(self, directory: str | Path = ".gradtracer/runs") -> None:
        self.directory = Path(directory)

    def save(self, summary: dict[str, Any]) -> Path:
        """Write ``summary`` (needs ``model`` and ``run_id`` keys); returns the file path."""
        for key in ("model", "run_id"):
            if key not in summary:
                raise ValueError(f"run summary lacks the {key!r} key")
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{_SAFE.sub('_', str(summary['model']))}__{_SAFE.sub('_', str(summary['run_id']))}.json"
        path = self.directory / name
        return atomic_write_text(path, json.dumps(summary, sort_keys=True, default=_json_default))

    def load(self, model: str | None = None) -> list[dict[str, Any]]:
        """All readable run summaries (of ``model`` if given), oldest file first.

        Unreadable files are skipped with a warning naming them.
        """
        import warnings

        from gradtracer.errors import GradTracerWarning

        if not self.directory.is_dir():
            return []
        out = []
        for path in sorted(self.directory.glob("*.json"), key=lambda p: p.stat().st_mtime):
            try:
                data = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                warnings.warn(
                    f"skipping unreadable run file {path}: {exc}", GradTracerWarning, stacklevel=2
                )
                continue
            if model is None or data.get("model") == model:
                out.append(data)
        return out


@dataclass(frozen=True)
class LayerDifference:
    """How one layer of the current run differs from earlier runs."""

    layer: str
    metric: str
    current: float
    earlier_median: float
    ratio: float


def layer_differences(
    current: dict[str, Any],
    earlier: Sequence[dict[str, Any]],
    *,
    factor: float = 3.0,
    health_drop: float = 30.0,
) -> list[LayerDifference]:
    """Layers whose statistics moved beyond ``factor`` (or lost ``health_drop`` health points)."""
    diffs: list[LayerDifference] = []
    for layer, stats in current.get("layers", {}).items():
        for metric in ("grad_norm_median", "update_ratio", "health"):
            past = [
                float(r["layers"][layer][metric])
                for r in earlier
                if layer in r.get("layers", {})
                and finite_or_none(r["layers"][layer].get(metric)) is not None
            ]
            cur = stats.get(metric)
            if not past or finite_or_none(cur) is None:
                continue
            med = float(np.median(past))
            cur = float(cur)
            if metric == "health":
                if med - cur > health_drop:
                    diffs.append(
                        LayerDifference(layer, metric, cur, med, cur / med if med else math.inf)
                    )
                continue
            if med <= 0 or cur <= 0:
                continue
            ratio = cur / med
            if ratio > factor or ratio < 1.0 / factor:
                diffs.append(LayerDifference(layer, metric, cur, med, ratio))
    return diffs


def detect_run_regression(
    layer: str, differences: Sequence[LayerDifference], n_earlier: int, *, subject: str
) -> Finding | None:
    """RUN_REGRESSION for ``layer`` from its :func:`layer_differences` (None without any);
    a warning when its health dropped, else info."""
    if not differences:
        return None
    what = "; ".join(
        f"{d.metric} {d.current:.3g} vs earlier median {d.earlier_median:.3g} ({d.ratio:.2g}x)"
        for d in differences
    )
    return make_finding(
        FindingType.RUN_REGRESSION,
        severity=(
            Severity.WARNING if any(d.metric == "health" for d in differences) else Severity.INFO
        ),
        subject=subject,
        premise=f"Layer {layer} differs from {n_earlier} earlier run(s): {what}.",
        confidence=min(0.95, 0.5 + 0.1 * n_earlier),
        evidence={f"{d.metric}_ratio": d.ratio for d in differences},
        sample_ids=(layer,),
    )


def compare_with_history(
    current: dict[str, Any], earlier: Sequence[dict[str, Any]], *, subject: str, factor: float = 3.0
) -> list[Finding]:
    """One RUN_REGRESSION finding per layer that behaves differently from earlier runs."""
    by_layer: dict[str, list[LayerDifference]] = {}
    for d in layer_differences(current, earlier, factor=factor):
        by_layer.setdefault(d.layer, []).append(d)
    found = (
        detect_run_regression(layer, ds, len(earlier), subject=subject)
        for layer, ds in sorted(by_layer.items())
    )
    return [f for f in found if f is not None]


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")
