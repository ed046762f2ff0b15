"""The audit trail of one :class:`~gradtracer.embedding.autofix.AutoFixController`.

:class:`AuditTrail` opens the audit log (:mod:`gradtracer.audit`) lazily on the first
event, writes the ``run_start`` event before it, and turns a log that cannot be written
into ONE :class:`~gradtracer.errors.GradTracerWarning` and a count of lost events:
training never stops because of the audit.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gradtracer.audit import AuditLogger
from gradtracer.errors import GradTracerWarning

__all__ = ["DEFAULT_AUDIT", "AuditTrail"]

logger = logging.getLogger(__name__)

#: ``audit=`` value for ``.gradtracer/audit.jsonl`` in the CWD (or in ``$GRADTRACER_DIR``).
DEFAULT_AUDIT = "default"


class AuditTrail:
    """Appends a controller's events to its audit log; never raises on a write failure.

    Args:
        spec: ``"default"``, a directory (str/Path), an :class:`AuditLogger` (shared; synced
            but not closed here), or ``None`` for no audit log.
        layer_name: the controller's layer (named in the warning).
        run_start: builds the ``run_start`` event, written before the first event.
    """

    def __init__(
        self,
        spec: AuditLogger | None | str | Path,
        layer_name: str,
        run_start: Callable[[], dict[str, Any]],
    ) -> None:
        self._spec = spec
        self._log: AuditLogger | None = spec if isinstance(spec, AuditLogger) else None
        self._owns_log = not isinstance(spec, AuditLogger)
        self._layer_name = layer_name
        self._run_start = run_start
        self.started = False  # the run_start event was written (or attempted)
        self.failed = False
        self.events_lost = 0

    @property
    def path(self) -> Path | None:
        """The audit file being written (``None`` when disabled or not opened yet)."""
        return None if self._log is None else self._log.path

    def emit(self, event: dict[str, Any]) -> None:
        """Append ``event`` (after ``run_start`` on the first call); count it lost on failure."""
        if self._spec is None or self.failed:
            if self.failed:
                self.events_lost += 1
            return
        try:
            if self._log is None:
                spec = self._spec  # a logger given is already self._log
                assert spec is not None and not isinstance(spec, AuditLogger)
                directory = None if spec == DEFAULT_AUDIT else Path(spec)
                self._log = AuditLogger(directory)
            if not self.started:
                self.started = True
                self._log.write(self._run_start())
            self._log.write(event)
        except (OSError, ValueError) as exc:
            self.events_lost += 1
            self._failure(exc)

    def close(self) -> None:
        """Close the log this trail opened, or fsync a shared one."""
        if self._log is not None and self._owns_log:
            try:
                self._log.close()
            except OSError as exc:
                self._failure(exc, stacklevel=4)
        elif self._log is not None:
            try:
                self._log.sync()
            except (OSError, ValueError) as exc:
                self._failure(exc, stacklevel=4)

    def _failure(self, exc: BaseException, stacklevel: int = 3) -> None:
        if self.failed:
            return
        self.failed = True
        warnings.warn(
            f"Auto-Fix audit log for layer {self._layer_name!r} cannot be written ({exc}); "
            "training continues, the audit is incomplete.",
            GradTracerWarning,
            stacklevel=stacklevel,
        )
        logger.debug("audit failure", exc_info=exc)
