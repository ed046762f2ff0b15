"""Append-only Auto-Fix audit log (JSON lines) with a damage-tolerant reader.

One event per line. Every event carries ``kind``, ``run_id``, ``layer`` and ``step``.
Kinds written by :class:`~gradtracer.embedding.autofix.AutoFixController`:

- ``run_start``: the policy parameters (``policy``) the run decides with (written again,
  with ``"reemitted": true``, at the top of each file the log rotates into).
- ``damp``: one decision that changed row scales: ``rows`` (all affected row ids,
  sorted, run-length/delta encoded by :func:`encode_ids`), ``scales`` (the factors now in
  effect for those rows, aligned with the decoded ids; 1.0 means released), the
  posterior inputs ``n_agree``/``n_disagree`` and ``q`` (oscillation confidence) per
  row, ``loss`` at that step and ``loss_trend`` (:class:`LossTrend` summary). A decision
  on many rows is written as chunk events (``"chunk": [k, n]``) that the reader joins.
- ``run_end``: totals at close.

The writer (:mod:`gradtracer.audit.writer`) appends whole lines under a file lock, ends a
torn line before appending, bounds line size and rotates at ``max_bytes``; the reader
(:mod:`gradtracer.audit.reader`) reports every unusable line and keeps everything else.
This package re-exports both, with the summaries (:mod:`gradtracer.audit.summary`).
"""

from __future__ import annotations

from gradtracer.audit.ids import decode_ids, encode_ids
from gradtracer.audit.reader import AuditDamage, AuditLog, audit_files, check_event, read_audit
from gradtracer.audit.summary import iter_runs, summarize_audit
from gradtracer.audit.writer import (
    AUDIT_FILENAME,
    AUDIT_FORMAT_VERSION,
    AuditLogger,
    default_audit_dir,
    split_event,
)

__all__ = [
    "AUDIT_FILENAME",
    "AUDIT_FORMAT_VERSION",
    "AuditDamage",
    "AuditLog",
    "AuditLogger",
    "audit_files",
    "check_event",
    "decode_ids",
    "default_audit_dir",
    "encode_ids",
    "iter_runs",
    "read_audit",
    "split_event",
    "summarize_audit",
]
