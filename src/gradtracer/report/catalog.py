"""The findings catalog: what every finding type means and what to do about it.

One :class:`FindingSpec` per :class:`~gradtracer.findings.FindingType` holds the default
severity and the ``implies`` / ``action`` / ``expected_effect`` texts (``str.format``
templates) and, optionally, a function that builds the machine-readable
:class:`~gradtracer.findings.Remedy`. Detectors measure and decide; they build their
finding with :func:`make_finding`, passing only what they measured (subject, premise,
confidence, evidence, sample ids and the template fields). Adding a finding type means
appending a member to ``FindingType``, an entry at the end of :data:`CATALOG`, and one
detector.

Length: this module is long because it is the vocabulary itself (one entry per finding
type); keeping every entry in one table is what lets a reader find any finding's meaning
in one place.

>>> f = make_finding(
...     FindingType.TOWER_IMBALANCE, subject="item vs user", premise="item is slow.",
...     confidence=0.9, slow="item", fast="user")
>>> f.severity.value, f.action
('warning', 'RAISE_LR_OR_CHECK_GRADIENT_FLOW_OF_STAGNANT_TOWER')
>>> f.implies.split(";")[0]
"'item' is stagnating while 'user' keeps learning"
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from gradtracer.findings import Finding, FindingType, Remedy, Severity

__all__ = ["CATALOG", "FindingSpec", "Remedy", "make_finding", "spec_for", "template_fields"]

#: signature of a remedy builder: ``(subject=..., evidence=..., **template_fields)``
RemedyBuilder = Callable[..., Remedy | None]


@dataclass(frozen=True)
class FindingSpec:
    """What one finding type means, independent of the run that produced it.

    Attributes:
        type: the finding type.
        severity: default severity (a detector may pass a stronger or weaker one).
        implies: what the finding means for training (``str.format`` template).
        action: machine-readable prescription, UPPER_SNAKE_CASE (template).
        expected_effect: what applying the action should change (template).
        remedy: optional builder of the machine-readable :class:`Remedy`, called as
            ``remedy(subject=..., evidence=..., **template_fields)``.
    """

    type: FindingType
    severity: Severity
    implies: str
    action: str
    expected_effect: str
    remedy: RemedyBuilder | None = None


def template_fields(spec: FindingSpec) -> frozenset[str]:
    """The ``{field}`` names the spec's templates need (``make_finding`` keyword arguments)."""
    names: set[str] = set()
    for text in (spec.implies, spec.action, spec.expected_effect):
        for _, field_name, _, _ in string.Formatter().parse(text):
            if field_name:
                names.add(field_name.split(".")[0].split("[")[0])
    return frozenset(names)


def _spec(
    type: FindingType,
    severity: Severity,
    implies: str,
    action: str,
    expected_effect: str,
    remedy: RemedyBuilder | None = None,
) -> tuple[FindingType, FindingSpec]:
    return type, FindingSpec(type, severity, implies, action, expected_effect, remedy)


_T, _S = FindingType, Severity

#: every finding type's spec, in the order of :class:`FindingType` (new entries at the end)
CATALOG: Mapping[FindingType, FindingSpec] = MappingProxyType(
    dict(
        [
            # --- embeddings (EmbeddingTracker, Auto-Fix) -----------------------------------
            _spec(
                _T.ZOMBIE_EMBEDDINGS,
                _S.WARNING,
                "These rows oscillate instead of converging: their updates cancel out.",
                "DAMP_OSCILLATING_ROWS_OR_LOWER_EMBEDDING_LR",
                "Oscillating rows settle; ranking quality of affected items improves.",
            ),
            _spec(
                _T.DEAD_EMBEDDINGS,
                _S.WARNING,
                "Those rows keep their initial values: cold-start items or broken negative "
                "sampling.",
                "CHECK_NEGATIVE_SAMPLING_OR_PRUNE_UNUSED_ROWS",
                "Every row is trained or removed; memory is not spent on noise.",
            ),
            _spec(
                _T.FROZEN_EMBEDDINGS,
                _S.WARNING,
                "Their updates vanish (zero learning rate, saturated optimizer state or frozen "
                "weights).",
                "CHECK_OPTIMIZER_PARAM_GROUPS_AND_LR",
                "Exposed rows move and learn.",
            ),
            _spec(
                _T.POPULARITY_BIAS,
                _S.WARNING,
                "Training optimises mostly for popular rows; long-tail rows learn little.",
                "APPLY_LOG_Q_CORRECTION_OR_INVERSE_FREQUENCY_SAMPLING",
                "Debiased logits and better long-tail coverage.",
            ),
            _spec(
                _T.REPRESENTATION_COLLAPSE,
                _S.CRITICAL,
                "Rows point the same way, so scores barely separate items.",
                "LOWER_LR_OR_ADD_UNIFORMITY_REGULARISATION",
                "Rows spread out; ranking metrics recover.",
            ),
            _spec(
                _T.LOW_EFFECTIVE_RANK,
                _S.WARNING,
                "Most embedding dimensions are unused: capacity is wasted.",
                "REDUCE_EMBEDDING_DIM_OR_ADD_DECORRELATION",
                "Same quality with a smaller table, or better use of the dimensions.",
            ),
            _spec(
                _T.COLD_START,
                _S.INFO,
                "Many rows are cold: their embeddings are barely trained.",
                "ADD_CONTENT_FEATURES_OR_SHARE_EMBEDDINGS_FOR_RARE_ROWS",
                "Rare rows get useful representations.",
            ),
            _spec(
                _T.NORM_POPULARITY_SKEW,
                _S.INFO,
                "Dot-product scores favour popular rows through their norm alone.",
                "NORMALISE_EMBEDDINGS_OR_ADD_NORM_PENALTY",
                "Scores depend on direction rather than popularity-driven norm.",
            ),
            _spec(
                _T.NON_FINITE_GRADIENT,
                _S.CRITICAL,
                "Training is numerically unstable; the affected rows may already hold NaN weights.",
                "LOWER_LR_OR_CLIP_GRADIENTS",
                "Finite gradients and weights; statistics cover every step again.",
            ),
            _spec(
                _T.AUTOFIX_APPLIED,
                _S.INFO,
                "Oscillating rows were slowed down during training.",
                "REVIEW_AUTOFIX_AUDIT_LOG",
                "Confirm the damping with a paired evaluation against a baseline run.",
            ),
            _spec(
                _T.AUDIT_INCOMPLETE,
                _S.WARNING,
                "Some interventions cannot be replayed or verified from the log.",
                "FIX_AUDIT_DIRECTORY_PERMISSIONS_OR_SET_GRADTRACER_DIR",
                "A complete, replayable audit log on the next run.",
            ),
            _spec(
                _T.COMPRESSION_CANDIDATE,
                _S.INFO,
                "The table holds more precision or rows than the model uses; it can shrink "
                "with little loss of ranking quality.",
                "COMPRESS_EMBEDDING_TABLE",
                "A smaller table with near-equal ranking quality.",
            ),
            # --- several trackers (FlowManager) --------------------------------------------
            _spec(
                _T.TOWER_IMBALANCE,
                _S.WARNING,
                "'{slow}' is stagnating while '{fast}' keeps learning; the dot product is "
                "driven by one side only.",
                "RAISE_LR_OR_CHECK_GRADIENT_FLOW_OF_STAGNANT_TOWER",
                "Both towers move at comparable rates and '{slow}' starts learning.",
            ),
            _spec(
                _T.EXPOSURE_MISALIGNMENT,
                _S.WARNING,
                "The towers are trained on very different shares of their rows; the rarely "
                "exposed side lags and pairs are scored with stale vectors.",
                "REBALANCE_NEGATIVE_SAMPLING_OR_APPLY_LOG_Q_CORRECTION",
                "Comparable coverage and skew on both towers; better long-tail recall.",
            ),
            # --- layers (FlowTracker) ------------------------------------------------------
            _spec(
                _T.STAGNATING_LAYER,
                _S.WARNING,
                "The layer has effectively stopped learning.",
                "INCREASE_LAYER_LR_OR_UNFREEZE",
                "Update ratio near 1e-3 and renewed progress of the layer.",
            ),
            _spec(
                _T.VANISHING_GRADIENT,
                _S.WARNING,
                "The layer receives almost no learning signal.",
                "CHECK_ACTIVATIONS_OR_ADD_RESIDUAL_OR_NORMALIZATION",
                "Gradient reaches the layer and its weights start to move.",
            ),
            _spec(
                _T.EXPLODING_GRADIENT,
                _S.CRITICAL,
                "Updates of this layer are unstable and can wreck the weights in one step.",
                "CLIP_GRADIENTS_OR_LOWER_LR_OR_ADD_WARMUP",
                "Bounded gradient norms and a smoother loss curve.",
            ),
            _spec(
                _T.HIGH_UPDATE_RATIO,
                _S.WARNING,
                "Each step rewrites a large part of the layer's weights; training may oscillate.",
                "LOWER_LAYER_LR_OR_ADD_WARMUP",
                "Update ratio near 1e-3 and steadier loss.",
            ),
            _spec(
                _T.LOW_GRADIENT_SNR,
                _S.INFO,
                "Step-to-step gradients mostly cancel; progress is driven by noise.",
                "INCREASE_BATCH_SIZE_OR_LOWER_LR",
                "A higher signal-to-noise ratio and more consistent descent.",
            ),
            _spec(
                _T.DEAD_ACTIVATIONS,
                _S.WARNING,
                "Dead units waste capacity and pass no gradient.",
                "USE_LEAKY_ACTIVATION_OR_LOWER_LR_OR_REINITIALIZE",
                "Fewer dead units and more usable capacity.",
            ),
            _spec(
                _T.LOSS_PLATEAU,
                _S.INFO,
                "Training has stopped improving the objective.",
                "DECAY_LR_OR_STOP_EARLY",
                "Either renewed progress or saved compute.",
            ),
            _spec(
                _T.LOSS_DIVERGENCE,
                _S.CRITICAL,
                "Training is diverging: the optimiser moves away from a minimum, or the loss "
                "is no longer finite.",
                "LOWER_LR_OR_ADD_WARMUP_AND_CLIP_GRADIENTS",
                "A falling, finite loss curve.",
            ),
            _spec(
                _T.RUN_REGRESSION,
                _S.INFO,
                "A change in code, data or hyperparameters altered how this layer trains.",
                "DIFF_CONFIG_AGAINST_EARLIER_RUNS",
                "The cause of the changed dynamics is identified before it costs accuracy.",
            ),
            # --- boosted trees -------------------------------------------------------------
            _spec(
                _T.TREE_STAGNATION,
                _S.WARNING,
                "The last {wasted} rounds barely change predictions: training time is wasted.",
                "USE_EARLY_STOPPING_OR_FEWER_ROUNDS",
                "Same accuracy with fewer trees, faster training and inference.",
            ),
            _spec(
                _T.TREE_EXPLOSION,
                _S.CRITICAL,
                "Boosting is diverging: each new tree overcorrects the previous ones, or the "
                "gradients overflowed to NaN/inf.",
                "DECREASE_LEARNING_RATE_OR_CHECK_LABELS",
                "Finite leaves whose spread decays round over round; the eval metric stabilises.",
            ),
            _spec(
                _T.FEATURE_DOMINANCE,
                _S.WARNING,
                "The ensemble leans on one feature: check it for target leakage, and expect "
                "the model to break if that feature drifts.",
                "CHECK_FEATURE_FOR_LEAKAGE_OR_INCREASE_COLSAMPLE",
                "Split gain spreads over more features; more robust predictions.",
            ),
            _spec(
                _T.OVERFITTING_ONSET,
                _S.WARNING,
                "The ensemble started overfitting at round {onset}.",
                "USE_EARLY_STOPPING_OR_INCREASE_REGULARIZATION",
                "Stopping near round {onset} keeps the best validation score.",
            ),
            # --- features (FeatureAnalyzer) ------------------------------------------------
            _spec(
                _T.COLLINEAR_FEATURES,
                _S.WARNING,
                "Its coefficient and importance are unstable and split with its collinear "
                "partners.",
                "DROP_OR_COMBINE_COLLINEAR_FEATURE",
                "Stable coefficients and importances; fewer redundant columns.",
            ),
            _spec(
                _T.FEATURE_INTERACTION,
                _S.INFO,
                "The effect of one feature depends on the other; a model without the product "
                "misses it.",
                "ADD_INTERACTION_FEATURE",
                "About {delta_adj_r2:.4f} more adjusted R^2 in a linear model; easier splits "
                "for trees.",
            ),
            _spec(
                _T.CONSTANT_FEATURE,
                _S.WARNING,
                "They carry no information and make linear models singular.",
                "DROP_CONSTANT_FEATURES",
                "Same model quality with fewer columns.",
            ),
            _spec(
                _T.MISSING_VALUES,
                _S.INFO,
                "The analysis ran on complete cases only, which can bias it if values are "
                "not missing at random.",
                "IMPUTE_OR_ADD_MISSING_INDICATOR",
                "All rows and columns take part in the analysis.",
            ),
            _spec(
                _T.DISTILLATION_GAP,
                _S.WARNING,
                "The student's representation at that layer diverges from the teacher's; "
                "the layer may be too narrow or poorly supervised.",
                "WIDEN_OR_ADD_HINT_LOSS",
                "A higher CKA at the flagged layer and better student ranking quality.",
            ),
            # --- run-level causes (gradtracer.diagnosis) -----------------------------------
            _spec(
                _T.LEARNING_RATE_TOO_HIGH,
                _S.WARNING,
                "Each update moves '{who}' too far for its scale, so the loss stops "
                "improving or rises.",
                "LOWER_LEARNING_RATE_OF_{who_upper}",
                "The loss decreases steadily again and ranking quality recovers.",
                lambda subject, evidence, **_: Remedy(
                    "scale_learning_rate", {"subject": subject, "factor": 0.1}
                ),
            ),
            _spec(
                _T.LEARNING_RATE_TOO_LOW,
                _S.WARNING,
                "Updates are too small to change '{who}' within the run.",
                "RAISE_LEARNING_RATE_OF_{who_upper}",
                "The loss starts decreasing within the same number of steps.",
                lambda subject, evidence, **_: Remedy(
                    "scale_learning_rate", {"subject": subject, "factor": 100.0}
                ),
            ),
            _spec(
                _T.PARAMETERS_NOT_UPDATED,
                _S.CRITICAL,
                "'{who}' never changes, so the model trains without it.",
                "{action_text}",
                "'{who}' is updated every step and the model uses it.",
                lambda subject, evidence, **_: Remedy(
                    str(evidence.get("remedy_kind", "add_to_optimizer")), {"subject": subject}
                ),
            ),
            _spec(
                _T.BAD_INITIALIZATION,
                _S.CRITICAL,
                "The initial values of '{who}' ({how}) saturate or cancel the scores, "
                "so gradients cannot train it properly.",
                "REINITIALIZE_{who_upper}_WITH_SMALL_RANDOM_VALUES",
                "Scores start near zero with distinct rows; the loss falls from chance level.",
                lambda subject, evidence, **_: Remedy(
                    "reinitialize", {"subject": subject, "std": 0.1}
                ),
            ),
            _spec(
                _T.UNREACHABLE_ROWS,
                _S.WARNING,
                "A contiguous block of '{who}' rows is never looked up: ids are mapped "
                "onto the wrong rows.",
                "FIX_ID_MAPPING_OF_{who_upper}",
                "Every id reaches its own row; the affected users or items get their own "
                "representation.",
                lambda subject, evidence, **_: Remedy("fix_id_mapping", {"subject": subject}),
            ),
            _spec(
                _T.HASH_COLLISIONS,
                _S.WARNING,
                "Several ids share rows of '{who}', so their gradients conflict.",
                "ENLARGE_{who_upper}_OR_USE_MORE_HASH_BUCKETS",
                "Each id gets its own row and its updates stop cancelling.",
                lambda subject, evidence, **_: Remedy("enlarge_table", {"subject": subject}),
            ),
            _spec(
                _T.NEGATIVE_SAMPLING_PROBLEM,
                _S.WARNING,
                "The negatives do not represent the catalogue ({how}), so the model learns "
                "to separate the wrong things.",
                "{action_text}",
                "Negatives drawn from the right distribution; ranking quality recovers.",
                lambda subject, evidence, **_: Remedy(
                    str(evidence.get("remedy_kind", "sample_negatives_from_catalog")),
                    {"subject": subject},
                ),
            ),
            _spec(
                _T.NON_FINITE_LOSS,
                _S.CRITICAL,
                "A NaN or infinite loss was back-propagated; the weights it touches become "
                "non-finite.",
                "SKIP_NON_FINITE_BATCHES_AND_CHECK_INPUTS",
                "No NaN reaches the weights; training continues on finite batches.",
                lambda subject, evidence, **_: Remedy("skip_non_finite_batches", {}),
            ),
            _spec(
                _T.GRADIENT_ACCUMULATION,
                _S.CRITICAL,
                "Gradients keep accumulating across steps (zero_grad() is not called), so "
                "every update repeats all earlier ones.",
                "CALL_ZERO_GRAD_EVERY_STEP",
                "Each update uses only the current batch; the loss decreases normally.",
                lambda subject, evidence, **_: Remedy("call_zero_grad", {}),
            ),
            _spec(
                _T.NORM_GROWTH,
                _S.WARNING,
                "Row norms of '{who}' keep growing, so scores become over-confident.",
                "ADD_WEIGHT_DECAY_TO_{who_upper}",
                "Norms stabilise and scores stay calibrated.",
                lambda subject, evidence, **_: Remedy(
                    "add_weight_decay", {"subject": subject, "weight_decay": 0.1}
                ),
            ),
            _spec(
                _T.WEIGHT_DECAY_COLLAPSE,
                _S.WARNING,
                "Weight decay on '{who}' outweighs the gradient and shrinks its rows "
                "towards zero and onto a few directions.",
                "REDUCE_WEIGHT_DECAY_OF_{who_upper}",
                "Rows keep their scale and spread; ranking quality recovers.",
                lambda subject, evidence, **_: Remedy(
                    "scale_weight_decay", {"subject": subject, "factor": 0.01}
                ),
            ),
            _spec(
                _T.NO_LEARNING_SIGNAL,
                _S.WARNING,
                "The loss stays at its starting level although the weights move: the "
                "targets carry no information the model can learn.",
                "CHECK_LABELS_AND_POSITIVE_PAIRS",
                "With correct targets the loss falls below its starting level.",
                lambda subject, evidence, **_: Remedy("check_labels", {}),
            ),
            _spec(
                _T.LOSS_OUTPUT_MISMATCH,
                _S.WARNING,
                "The loss receives outputs in the wrong form (probabilities where it expects "
                "logits, or the reverse), which bounds the loss and shrinks its gradient.",
                "FEED_LOGITS_TO_THE_LOGITS_LOSS",
                "The loss can approach zero and its gradients regain their scale.",
                lambda subject, evidence, **_: Remedy("fix_loss_input", {}),
            ),
            # new entries go here, in the order their FindingType members were appended
        ]
    )
)


def spec_for(type: FindingType | str) -> FindingSpec:
    """The :class:`FindingSpec` of ``type`` (a member or its string value).

    Raises:
        KeyError: ``type`` has no catalog entry.
    """
    try:
        return CATALOG[FindingType(type)]
    except (KeyError, ValueError):
        raise KeyError(f"no catalog entry for finding type {type!r}") from None


def _fill(spec: FindingSpec, name: str, template: str, fields: Mapping[str, Any]) -> str:
    try:
        return template.format(**fields)
    except KeyError as exc:
        need = ", ".join(sorted(template_fields(spec)))
        raise TypeError(
            f"make_finding({spec.type.value}) needs the template field {exc.args[0]!r} for "
            f"its {name} (fields of this type: {need})"
        ) from None


def make_finding(
    type: FindingType,
    *,
    subject: str,
    premise: str,
    confidence: float,
    evidence: Mapping[str, Any] | None = None,
    sample_ids: Sequence[Any] = (),
    severity: Severity | None = None,
    remedy: Remedy | None = None,
    consequence_of: FindingType | None = None,
    **template_fields: Any,
) -> Finding:
    """Build the :class:`~gradtracer.findings.Finding` of ``type`` from its catalog entry.

    Args:
        type: the finding type.
        subject: layer / tracker / model the finding is about.
        premise: what was measured, with numbers, in one sentence.
        confidence: in [0, 1].
        evidence: the metrics behind the verdict.
        sample_ids: ids that show the problem.
        severity: overrides the catalog's default severity.
        remedy: overrides the catalog's remedy builder.
        consequence_of: the finding type this one is a side effect of.
        **template_fields: values for the ``{field}`` placeholders of the catalog texts.

    Raises:
        KeyError: ``type`` has no catalog entry.
        TypeError: a template field is missing.
    """
    spec = spec_for(type)
    ev = dict(evidence or {})
    if remedy is None and spec.remedy is not None:
        remedy = spec.remedy(subject=subject, evidence=ev, **template_fields)
    return Finding(
        type=spec.type,
        severity=spec.severity if severity is None else severity,
        subject=subject,
        premise=premise,
        implies=_fill(spec, "implies", spec.implies, template_fields),
        action=_fill(spec, "action", spec.action, template_fields),
        expected_effect=_fill(spec, "expected_effect", spec.expected_effect, template_fields),
        confidence=confidence,
        evidence=ev,
        sample_ids=tuple(sample_ids),
        remedy=remedy,
        consequence_of=consequence_of,
    )
