"""Flatten a report into scalar metrics keyed by :func:`~gradtracer.findings.metric_key`.

Shared by the W&B and TensorBoard bridges so both log the same keys:
``<subject>/<stat>`` for every numeric statistic (nested dicts add path parts,
e.g. ``flow_manager/tracker_health/item``), ``<subject>/findings/<TYPE>`` = number of
findings of that type and ``<subject>/findings/total``. Children are flattened under
their own subject.

>>> from gradtracer.findings import Report
>>> report_metrics(Report(kind="embedding", subject="item_emb", stats={"zombie_ratio": 0.25}))
{'item_emb/findings/total': 0.0, 'item_emb/zombie_ratio': 0.25}
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from gradtracer._numeric import finite_or_none
from gradtracer.findings import Report, metric_key
from gradtracer.report.coerce import as_report

__all__ = ["report_metrics"]


def _numeric(value: Any) -> float | None:
    """A logged scalar: bools as 0/1, finite ints and floats; strings and the rest are skipped."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return finite_or_none(value)
    return None


def _flatten(prefix: tuple[str, ...], stats: Mapping[str, Any], out: dict[str, float]) -> None:
    for name, value in stats.items():
        path = (*prefix, str(name))
        if isinstance(value, Mapping):
            _flatten(path, value, out)
            continue
        number = _numeric(value)
        if number is not None:
            out[metric_key(*path)] = number


def _collect(report: Report, out: dict[str, float]) -> None:
    subject = report.subject or report.kind
    _flatten((subject,), report.to_dict()["stats"], out)
    counts = Counter(f.type for f in report.findings)
    out[metric_key(subject, "findings", "total")] = float(len(report.findings))
    for kind, n in counts.items():
        out[metric_key(subject, "findings", kind)] = float(n)
    for child in report.children:
        _collect(child, out)


def report_metrics(report_or_tracker: Any) -> dict[str, float]:
    """Return ``{metric key: float}`` for every finite numeric statistic, sorted by key.

    Lists (e.g. per-pair records) are skipped; None/NaN statistics are left out.
    """
    out: dict[str, float] = {}
    _collect(as_report(report_or_tracker), out)
    return dict(sorted(out.items()))
