"""Compatibility path: the audit log moved to :mod:`gradtracer.audit`.

``from gradtracer.export.audit import read_audit`` keeps working; new code imports
from ``gradtracer.audit``.
"""

from __future__ import annotations

from gradtracer.audit import (
    AUDIT_FILENAME,
    AUDIT_FORMAT_VERSION,
    AuditLog,
    AuditLogger,
    audit_files,
    decode_ids,
    default_audit_dir,
    encode_ids,
    iter_runs,
    read_audit,
    summarize_audit,
)

__all__ = [
    "AUDIT_FILENAME",
    "AUDIT_FORMAT_VERSION",
    "AuditLog",
    "AuditLogger",
    "audit_files",
    "decode_ids",
    "default_audit_dir",
    "encode_ids",
    "iter_runs",
    "read_audit",
    "summarize_audit",
]
