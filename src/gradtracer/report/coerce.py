"""Turn what a renderer or exporter was given (a Report, a tracker, a manager) into a Report."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from gradtracer.findings import Report

__all__ = ["SupportsReport", "as_report"]


@runtime_checkable
class SupportsReport(Protocol):
    """Anything with ``to_report() -> Report`` (trackers, FlowManager, analyzers)."""

    def to_report(self) -> Report: ...


def as_report(obj: Any) -> Report:
    """Return ``obj`` if it is a :class:`Report`, else ``obj.to_report()``.

    Raises:
        TypeError: ``obj`` is neither a Report nor has a ``to_report()`` returning one.
    """
    if isinstance(obj, Report):
        return obj
    to_report = getattr(obj, "to_report", None)
    if not callable(to_report):
        raise TypeError(
            f"expected a Report or an object with to_report() (a tracker or FlowManager), "
            f"got {type(obj).__name__}"
        )
    report = to_report()
    if not isinstance(report, Report):
        raise TypeError(
            f"{type(obj).__name__}.to_report() returned {type(report).__name__}, expected Report"
        )
    return report
