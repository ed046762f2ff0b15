"""TensorBoard bridge: write a report's metrics as scalars (and findings as text).

Uses :class:`torch.utils.tensorboard.SummaryWriter`, which needs the ``tensorboard``
package (extra ``gradtracer[tensorboard]``); imported only when a writer is created.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

from gradtracer._optional import require
from gradtracer.export.metrics import report_metrics
from gradtracer.report.coerce import as_report
from gradtracer.report.text import render_text

__all__ = ["FINDINGS_TEXT_TAG", "TensorBoardExporter", "write_tensorboard"]

#: tag of the text summary holding the rendered report
FINDINGS_TEXT_TAG = "gradtracer/report"


class TensorBoardExporter:
    """Writes reports to a TensorBoard log folder; one instance per run, ``close()`` at the end.

    Args:
        log_dir: event-file folder (created), or pass ``writer``.
        writer: an existing ``SummaryWriter`` to write into (not closed by :meth:`close`).
        text: also write the rendered report as a text summary on each :meth:`log`.
    """

    def __init__(
        self, log_dir: str | Path | None = None, *, writer: Any = None, text: bool = True
    ) -> None:
        if (log_dir is None) == (writer is None):
            raise ValueError("pass exactly one of log_dir= or writer=")
        if writer is None:
            require("tensorboard")
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(log_dir=str(log_dir))
            self._owns_writer = True
        else:
            self._owns_writer = False
        self.writer = writer
        self.text = text

    def log(self, tracker_or_report: Any, step: int | None = None) -> dict[str, float]:
        """Write every metric of the report at ``step`` (default: the report's step)."""
        report = as_report(tracker_or_report)
        if step is None:
            found = report.metadata.get("step", report.stats.get("step"))
            step = found if isinstance(found, int) and not isinstance(found, bool) else 0
        metrics = report_metrics(report)
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, global_step=int(step))
        if self.text:
            body = render_text(report).replace("\n", "  \n")  # markdown line breaks
            self.writer.add_text(FINDINGS_TEXT_TAG, body, global_step=int(step))
        self.writer.flush()
        return metrics

    def close(self) -> None:
        """Flush and close the writer if this exporter created it."""
        if self._owns_writer:
            self.writer.close()
        else:
            self.writer.flush()

    def __enter__(self) -> TensorBoardExporter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def write_tensorboard(
    tracker_or_report: Any, log_dir: str | Path, step: int | None = None
) -> dict[str, float]:
    """Write one report to ``log_dir`` and close the file; return the scalars written."""
    with TensorBoardExporter(log_dir) as exporter:
        return exporter.log(tracker_or_report, step=step)
