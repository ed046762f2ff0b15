"""The Auto-Fix audit log: writer, damage-tolerant reader and run summaries.

The log is written during training (by the Auto-Fix controller) and read back by
``gradtracer audit`` and the replay; see :mod:`gradtracer.audit.log`.
"""

from __future__ import annotations

from gradtracer.audit.log import (
    AUDIT_FILENAME,
    AUDIT_FORMAT_VERSION,
    AuditDamage,
    AuditLog,
    AuditLogger,
    audit_files,
    check_event,
    decode_ids,
    default_audit_dir,
    encode_ids,
    iter_runs,
    read_audit,
    split_event,
    summarize_audit,
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
