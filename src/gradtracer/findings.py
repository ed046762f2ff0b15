"""The one data model every GradTracer output renders: :class:`Finding` and :class:`Report`.

Trackers and analyzers produce findings; exporters (JSON, XML, text, W&B, TensorBoard)
render a :class:`Report` and never recompute analysis. ``Report.to_dict()`` is the
canonical in-memory form; the JSON Schema shipped in ``gradtracer/schema`` describes it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from gradtracer._version import __version__

__all__ = [
    "SCHEMA_VERSION",
    "Finding",
    "FindingType",
    "Remedy",
    "Report",
    "Severity",
    "metric_key",
]

#: Version of the report layout; bumped on any incompatible change of ``Report.to_dict()``.
SCHEMA_VERSION = "1.0"

Scalar = float | int | str | bool | None


class Severity(str, Enum):
    """How urgent a finding is. Ordered: ``info < warning < critical``."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0 for info, 1 for warning, 2 for critical (for sorting)."""
        return {"info": 0, "warning": 1, "critical": 2}[self.value]


class FindingType(str, Enum):
    """Every finding type GradTracer emits. The value is the string written in reports.

    New members are appended at the end (with their entry at the end of
    :data:`gradtracer.report.catalog.CATALOG`).
    """

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    # embeddings
    ZOMBIE_EMBEDDINGS = "ZOMBIE_EMBEDDINGS"
    DEAD_EMBEDDINGS = "DEAD_EMBEDDINGS"
    FROZEN_EMBEDDINGS = "FROZEN_EMBEDDINGS"  # exposed but not moving
    POPULARITY_BIAS = "POPULARITY_BIAS"
    REPRESENTATION_COLLAPSE = "REPRESENTATION_COLLAPSE"
    LOW_EFFECTIVE_RANK = "LOW_EFFECTIVE_RANK"
    COLD_START = "COLD_START"
    NORM_POPULARITY_SKEW = "NORM_POPULARITY_SKEW"
    NON_FINITE_GRADIENT = "NON_FINITE_GRADIENT"
    AUTOFIX_APPLIED = "AUTOFIX_APPLIED"
    AUDIT_INCOMPLETE = "AUDIT_INCOMPLETE"
    COMPRESSION_CANDIDATE = "COMPRESSION_CANDIDATE"
    # several trackers
    TOWER_IMBALANCE = "TOWER_IMBALANCE"
    EXPOSURE_MISALIGNMENT = "EXPOSURE_MISALIGNMENT"
    # layers (FlowTracker)
    STAGNATING_LAYER = "STAGNATING_LAYER"
    VANISHING_GRADIENT = "VANISHING_GRADIENT"
    EXPLODING_GRADIENT = "EXPLODING_GRADIENT"
    HIGH_UPDATE_RATIO = "HIGH_UPDATE_RATIO"
    LOW_GRADIENT_SNR = "LOW_GRADIENT_SNR"
    DEAD_ACTIVATIONS = "DEAD_ACTIVATIONS"
    LOSS_PLATEAU = "LOSS_PLATEAU"
    LOSS_DIVERGENCE = "LOSS_DIVERGENCE"
    RUN_REGRESSION = "RUN_REGRESSION"
    # boosted trees
    TREE_STAGNATION = "TREE_STAGNATION"
    TREE_EXPLOSION = "TREE_EXPLOSION"
    FEATURE_DOMINANCE = "FEATURE_DOMINANCE"
    OVERFITTING_ONSET = "OVERFITTING_ONSET"
    # features
    COLLINEAR_FEATURES = "COLLINEAR_FEATURES"
    FEATURE_INTERACTION = "FEATURE_INTERACTION"
    CONSTANT_FEATURE = "CONSTANT_FEATURE"
    MISSING_VALUES = "MISSING_VALUES"
    # compression / distillation
    DISTILLATION_GAP = "DISTILLATION_GAP"
    # run-level causes (gradtracer.diagnosis)
    LEARNING_RATE_TOO_HIGH = "LEARNING_RATE_TOO_HIGH"
    LEARNING_RATE_TOO_LOW = "LEARNING_RATE_TOO_LOW"
    PARAMETERS_NOT_UPDATED = "PARAMETERS_NOT_UPDATED"
    BAD_INITIALIZATION = "BAD_INITIALIZATION"
    UNREACHABLE_ROWS = "UNREACHABLE_ROWS"
    HASH_COLLISIONS = "HASH_COLLISIONS"
    NEGATIVE_SAMPLING_PROBLEM = "NEGATIVE_SAMPLING_PROBLEM"
    NON_FINITE_LOSS = "NON_FINITE_LOSS"
    GRADIENT_ACCUMULATION = "GRADIENT_ACCUMULATION"
    NORM_GROWTH = "NORM_GROWTH"
    WEIGHT_DECAY_COLLAPSE = "WEIGHT_DECAY_COLLAPSE"
    NO_LEARNING_SIGNAL = "NO_LEARNING_SIGNAL"
    LOSS_OUTPUT_MISMATCH = "LOSS_OUTPUT_MISMATCH"


def metric_key(*parts: str | int) -> str:
    """Compose a metric key from parts: ``metric_key("item_emb", "zombie_ratio")`` -> ``"item_emb/zombie_ratio"``.

    ``metric_key("ndcg", 10)`` -> ``"ndcg@10"`` (an int part is attached with ``@``).
    """
    out = ""
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"@{part}"
        else:
            out = f"{out}/{part}" if out else str(part)
    return out


def _clean(value: Any) -> Any:
    """Make ``value`` JSON-safe: numpy/torch scalars to Python, non-finite floats to None."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    item = getattr(value, "item", None)  # numpy / torch scalar
    if callable(item) and getattr(value, "ndim", 0) == 0:
        return _clean(item())
    tolist = getattr(value, "tolist", None)  # numpy / torch array
    if callable(tolist):
        return _clean(tolist())
    raise TypeError(f"cannot put a value of type {type(value).__name__} into a report")


@dataclass(frozen=True)
class Remedy:
    """A machine-readable fix, next to a finding's text ``action``.

    Attributes:
        kind: what to change, e.g. ``"scale_learning_rate"``, ``"clip_gradients"``.
        params: its parameters (JSON scalars), e.g. ``{"subject": "item_emb", "factor": 0.1}``.
    """

    kind: str
    params: Mapping[str, Scalar] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not self.kind:
            raise ValueError(f"Remedy.kind must be a non-empty str, got {self.kind!r}")
        object.__setattr__(self, "params", dict(self.params))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe ``{"kind": ..., "params": {...}}``."""
        return {"kind": self.kind, "params": _clean(dict(self.params))}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Remedy:
        """Inverse of :meth:`to_dict`."""
        return cls(kind=data["kind"], params=dict(data.get("params") or {}))


def _finding_type(value: Any, what: str) -> FindingType:
    try:
        return FindingType(value)
    except ValueError:
        raise ValueError(
            f"{what} must be a FindingType value, got {value!r} "
            f"(known: {', '.join(t.value for t in FindingType)})"
        ) from None


@dataclass(frozen=True)
class Finding:
    """One diagnosis: what was seen, what it implies, and what to do about it.

    Findings are normally built by :func:`gradtracer.report.catalog.make_finding`, which
    fills ``implies``/``action``/``expected_effect`` from the catalog.

    Attributes:
        type: the :class:`FindingType` (its string value is accepted and converted).
        severity: :class:`Severity`.
        subject: the layer / tracker / model the finding is about (e.g. ``"item_emb"``).
        premise: what was measured, with numbers, in one sentence.
        implies: what that means for training, in one sentence.
        action: a machine-readable prescription in UPPER_SNAKE_CASE
            (e.g. ``"DECREASE_LR_OR_USE_SPARSE_ADAM"``).
        expected_effect: what applying the action should change.
        confidence: in [0, 1].
        evidence: the metrics behind the verdict (name -> number/string).
        sample_ids: up to a few dozen row / feature / layer ids that show the problem.
        remedy: an optional machine-readable fix (:class:`Remedy`).
        consequence_of: the finding type this one is a side effect of, if any.
    """

    type: FindingType
    severity: Severity
    subject: str
    premise: str
    implies: str
    action: str
    expected_effect: str
    confidence: float
    evidence: Mapping[str, Scalar] = field(default_factory=dict)
    sample_ids: tuple[int | str, ...] = ()
    remedy: Remedy | None = None
    consequence_of: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", _finding_type(self.type, "Finding.type"))
        if self.consequence_of is not None:
            object.__setattr__(
                self, "consequence_of", _finding_type(self.consequence_of, "Finding.consequence_of")
            )
        if self.remedy is not None and not isinstance(self.remedy, Remedy):
            raise TypeError(
                f"Finding.remedy must be a Remedy or None, got {type(self.remedy).__name__}"
            )
        if not isinstance(self.severity, Severity):
            object.__setattr__(self, "severity", Severity(self.severity))
        conf = float(self.confidence)
        if not (0.0 <= conf <= 1.0) or math.isnan(conf):
            raise ValueError(f"Finding.confidence must be in [0, 1], got {self.confidence!r}")
        # rounded once here so that ordering and the written value always agree
        object.__setattr__(self, "confidence", round(conf, 4))
        object.__setattr__(self, "sample_ids", tuple(self.sample_ids))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict with the keys of the shipped schema (``remedy`` and
        ``consequence_of`` only when set)."""
        out = {
            "type": self.type.value,
            "severity": self.severity.value,
            "subject": self.subject,
            "premise": self.premise,
            "implies": self.implies,
            "action": self.action,
            "expected_effect": self.expected_effect,
            "confidence": self.confidence,
            "evidence": _clean(dict(self.evidence)),
            "sample_ids": _clean(list(self.sample_ids)),
        }
        if self.remedy is not None:
            out["remedy"] = self.remedy.to_dict()
        if self.consequence_of is not None:
            out["consequence_of"] = str(self.consequence_of)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        """Inverse of :meth:`to_dict`."""
        return cls(
            type=data["type"],
            severity=Severity(data["severity"]),
            subject=data["subject"],
            premise=data["premise"],
            implies=data["implies"],
            action=data["action"],
            expected_effect=data["expected_effect"],
            confidence=data["confidence"],
            evidence=dict(data.get("evidence", {})),
            sample_ids=tuple(data.get("sample_ids", ())),
            remedy=Remedy.from_dict(data["remedy"]) if data.get("remedy") else None,
            consequence_of=data.get("consequence_of"),
        )


@dataclass
class Report:
    """Findings plus summary statistics and run metadata for one subject.

    Attributes:
        kind: what produced it: ``"embedding"``, ``"manager"``, ``"flow"``, ``"trees"``,
            ``"features"``, ``"validation"``...
        subject: name of the tracked thing (layer name, model name).
        stats: JSON-safe summary statistics (numbers, strings, small lists, nested dicts).
        findings: the diagnoses, most severe first after :meth:`sorted_findings`.
        metadata: run metadata (step, run id, ...); ``to_dict`` adds version and time.
        children: sub-reports (e.g. one per tracker of a FlowManager).
    """

    kind: str
    subject: str
    stats: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    children: list[Report] = field(default_factory=list)

    def sorted_findings(self) -> list[Finding]:
        """Findings ordered by severity (critical first), then confidence."""
        return sorted(self.findings, key=lambda f: (-f.severity.rank, -f.confidence, f.type))

    def all_findings(self) -> list[Finding]:
        """This report's findings and every child's, most severe first."""
        out = list(self.findings)
        for child in self.children:
            out.extend(child.all_findings())
        return sorted(out, key=lambda f: (-f.severity.rank, -f.confidence, f.type))

    def to_dict(self) -> dict[str, Any]:
        """Canonical JSON-safe form (validated against the shipped schema in the tests)."""
        meta: dict[str, Any] = {"gradtracer_version": __version__, "schema_version": SCHEMA_VERSION}
        meta.setdefault("created_unix", round(time.time(), 3))
        meta.update(_clean(self.metadata))
        return {
            "kind": self.kind,
            "subject": self.subject,
            "metadata": meta,
            "stats": _clean(self.stats),
            "findings": [f.to_dict() for f in self.sorted_findings()],
            "children": [c.to_dict() for c in self.children],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        """Inverse of :meth:`to_dict` (metadata kept as written)."""
        return cls(
            kind=data["kind"],
            subject=data["subject"],
            stats=dict(data.get("stats", {})),
            findings=[Finding.from_dict(f) for f in data.get("findings", [])],
            metadata=dict(data.get("metadata", {})),
            children=[cls.from_dict(c) for c in data.get("children", [])],
        )

    @staticmethod
    def merge(kind: str, subject: str, reports: Sequence[Report], **stats: Any) -> Report:
        """A parent report whose children are ``reports``."""
        return Report(kind=kind, subject=subject, stats=dict(stats), children=list(reports))
