"""The catalogue of injected faults: what each breaks, where, and what counts as a right answer.

Every :class:`FaultSpec` states, independently of any result, the finding types that
name its cause (``right_causes``) and the remedy kinds that fix it (``right_remedies``).
The training loop (:mod:`gradtracer.fault_suite.loop`) reads the fault's name and
intensity at the points where the fault enters: initialisation, optimizer groups, id
mapping, negative sampling, the loss, gradient handling and the architecture.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["FAMILIES", "FAULTS", "REAL_DATA_RUNS", "FaultSpec", "fault_spec"]

#: model families of the suite
FAMILIES: tuple[str, ...] = ("mf_bce", "mf_bpr", "two_tower", "gru", "mlp")

_MF = ("mf_bce", "mf_bpr")
_EMB = ("mf_bce", "mf_bpr", "two_tower", "gru")


@dataclass(frozen=True)
class FaultSpec:
    """One fault kind.

    Attributes:
        name: identifier used on the command line and in reports.
        description: what is broken, in one sentence.
        families: model families the fault applies to.
        intensities: the two strengths (their meaning is in ``description``).
        right_causes: finding types that name the cause.
        right_remedies: remedy kinds that fix the cause.
        variant: healthy variant the fault is injected into (default ``"default"``).
        onsets: onsets (share of training) the fault can start at; a fault that is the whole
            run (training past the point the data supports, a table built too small, an
            architecture) has only 0.0.
    """

    name: str
    description: str
    families: tuple[str, ...]
    intensities: tuple[float, float]
    right_causes: frozenset[str]
    right_remedies: frozenset[str]
    variant: str = "default"
    onsets: tuple[float, ...] = (0.0, 0.3)


def _f(name: str, description: str, families: tuple[str, ...], intensities: tuple[float, float],
       causes: set[str], remedies: set[str], variant: str = "default",
       onsets: tuple[float, ...] = (0.0, 0.3)) -> tuple[str, FaultSpec]:  # fmt: skip
    return name, FaultSpec(
        name,
        description,
        families,
        intensities,
        frozenset(causes),
        frozenset(remedies),
        variant,
        onsets,
    )


_LR = {"scale_learning_rate"}
FAULTS: Mapping[str, FaultSpec] = MappingProxyType(dict([
    _f("lr_high_embedding", "learning rate of the embedding tables multiplied by the intensity "
       "(dense Adam)", _EMB, (30.0, 100.0), {"LEARNING_RATE_TOO_HIGH", "HIGH_UPDATE_RATIO"}, _LR),
    _f("lr_high_sparse", "learning rate of sparse tables under sparse Adagrad multiplied by the "
       "intensity", _MF, (30.0, 100.0), {"LEARNING_RATE_TOO_HIGH", "HIGH_UPDATE_RATIO"}, _LR,
       variant="sparse"),
    _f("lr_high_dense", "learning rate of the dense layers multiplied by the intensity",
       ("two_tower", "gru", "mlp"), (30.0, 100.0),
       {"LEARNING_RATE_TOO_HIGH", "HIGH_UPDATE_RATIO", "EXPLODING_GRADIENT"}, _LR),
    _f("lr_too_low", "every learning rate divided by the intensity", ("mf_bce", "mf_bpr",
       "two_tower", "gru", "mlp"), (1e3, 1e4), {"LEARNING_RATE_TOO_LOW", "STAGNATING_LAYER"},
       _LR),
    _f("table_not_in_optimizer", "an embedding table (item; user at the second intensity; the "
       "GRU's only table at both) is left out of the optimizer", _EMB, (0.0, 1.0),
       {"PARAMETERS_NOT_UPDATED", "FROZEN_EMBEDDINGS"}, {"add_to_optimizer"}),
    _f("layer_not_in_optimizer", "the first dense layer (first two at the second intensity) is "
       "left out of the optimizer", ("two_tower", "mlp"), (1.0, 2.0),
       {"PARAMETERS_NOT_UPDATED", "STAGNATING_LAYER"}, {"add_to_optimizer"}),
    _f("frozen_table", "requires_grad=False on an embedding table (item; user at the second "
       "intensity)", _EMB, (0.0, 1.0), {"PARAMETERS_NOT_UPDATED", "FROZEN_EMBEDDINGS"},
       {"set_requires_grad"}),
    _f("unreachable_rows", "an id-mapping bug folds the top share (intensity) of the user ids "
       "onto lower ids, so those rows are never used", _MF,
       (0.25, 0.5), {"UNREACHABLE_ROWS", "DEAD_EMBEDDINGS"}, {"fix_id_mapping"}),
    _f("hash_collisions", "item ids hashed (modulo) into 1/intensity as many rows (the table "
       "is built that small, so the fault is in the run from step 0)",
       _MF + ("two_tower",), (4.0, 16.0), {"HASH_COLLISIONS"}, {"enlarge_table"},
       onsets=(0.0,)),
    _f("negatives_tiny_pool", "negatives drawn from a pool of only `intensity` items", _MF,
       (8.0, 2.0), {"NEGATIVE_SAMPLING_PROBLEM"}, {"sample_negatives_from_catalog"}),
    _f("negatives_include_positive", "a share (intensity) of the negatives is the positive item "
       "itself", _MF, (0.5, 1.0), {"NEGATIVE_SAMPLING_PROBLEM", "NO_LEARNING_SIGNAL"},
       {"exclude_positives_from_negatives"}),
    _f("popularity_negatives_no_logq", "sampled-softmax negatives drawn by popularity^intensity "
       "without the logQ correction", ("two_tower",), (0.75, 1.0),
       {"NEGATIVE_SAMPLING_PROBLEM"}, {"apply_logq_correction"}, variant="sampled"),
    _f("init_huge_std", "tables (dense weights for the MLP) initialised with intensity x the "
       "healthy standard deviation", _EMB + ("mlp",), (50.0, 200.0), {"BAD_INITIALIZATION"},
       {"reinitialize"}),
    _f("init_identical_rows", "a share (intensity) of the rows of every table start as one "
       "identical vector", _EMB, (0.9, 1.0), {"BAD_INITIALIZATION"}, {"reinitialize"}),
    _f("init_zero", "tables (dense weights for the MLP) initialised to zero (item table only at "
       "the first intensity)", _MF + ("mlp",), (0.0, 1.0),
       {"BAD_INITIALIZATION", "PARAMETERS_NOT_UPDATED"}, {"reinitialize"}),
    _f("norm_growth", "no regularisation and an intensity x learning rate on the item table, "
       "trained for the whole run", ("mf_bce",), (5.0, 15.0),
       {"NORM_GROWTH", "LEARNING_RATE_TOO_HIGH"}, {"add_weight_decay", "scale_learning_rate"}),
    _f("weight_decay_collapse", "decoupled weight decay of `intensity` on every table", _MF +
       ("two_tower",), (5.0, 20.0), {"WEIGHT_DECAY_COLLAPSE", "REPRESENTATION_COLLAPSE"},
       {"scale_weight_decay"}),
    _f("tower_lr_skew", "learning rate of the item tower (embedding + MLP) divided by the "
       "intensity", ("two_tower",), (300.0, 3000.0),
       {"TOWER_IMBALANCE", "LEARNING_RATE_TOO_LOW", "STAGNATING_LAYER"}, _LR),
    _f("detached_tower", "the item tower's output is detached (user tower at the second "
       "intensity)", ("two_tower",), (0.0, 1.0), {"PARAMETERS_NOT_UPDATED", "TOWER_IMBALANCE"},
       {"reconnect_gradient"}),
    _f("non_finite_loss", "a share (intensity) of the batches carries a NaN score into the loss",
       FAMILIES, (0.05, 0.3), {"NON_FINITE_LOSS", "NON_FINITE_GRADIENT"},
       {"skip_non_finite_batches"}),
    _f("missing_zero_grad", "zero_grad() is not called (called every `intensity` steps; "
       "0 = never)", FAMILIES, (8.0, 0.0), {"GRADIENT_ACCUMULATION"}, {"call_zero_grad"}),
    _f("gru_exploding", "GRU recurrent and input weights scaled by the intensity (the "
       "family's Adam optimizer), no gradient clipping", ("gru",), (4.0, 8.0),
       {"EXPLODING_GRADIENT"}, {"clip_gradients"}),
    _f("dead_relu", "biases of the ReLU layers initialised to -intensity", ("mlp", "two_tower"),
       (3.0, 10.0), {"DEAD_ACTIVATIONS"}, {"reinitialize"}),
    _f("vanishing_sigmoid", "the MLP becomes `intensity` sigmoid layers deep (an "
       "architecture: in the run from step 0)", ("mlp",),
       (8.0, 14.0), {"VANISHING_GRADIENT"}, {"change_activation"}, onsets=(0.0,)),
    _f("probabilities_as_logits", "the model's sigmoid output is fed to a loss that applies the "
       "sigmoid again (second intensity: outputs squashed to [0, 0.1] first)", ("mf_bce",
       "mlp"), (1.0, 0.1), {"LOSS_OUTPUT_MISMATCH"}, {"fix_loss_input"}),
    _f("labels_no_signal", "a share (intensity) of the training positives (labels for the MLP) "
       "replaced by random ones", _MF + ("mlp",), (0.9, 1.0), {"NO_LEARNING_SIGNAL"},
       {"check_labels"}),
    _f("overfitting", "a small, noisily labelled training set trained for `intensity` x the "
       "usual epochs without early stopping or regularisation (the twin stops at the usual "
       "epochs; the extra epochs continue the same run)", ("mlp",), (4.0, 8.0),
       {"OVERFITTING_ONSET"}, {"early_stop", "add_weight_decay"}, variant="small_noisy",
       onsets=(0.0,)),
]))  # fmt: skip


_REAL_MF = ("table_not_in_optimizer", "init_huge_std", "lr_too_low", "lr_high_embedding",
            "non_finite_loss", "missing_zero_grad")  # fmt: skip

#: real-data runs per kind of file (:func:`~gradtracer.fault_suite.data.real_data_kind`):
#: (families, faults), each fault at its strong intensity from step 0 with a healthy twin
REAL_DATA_RUNS: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = MappingProxyType({
    "movielens": (("mf_bce",), _REAL_MF),
    "amazon": (_MF, (*_REAL_MF, "frozen_table", "labels_no_signal", "unreachable_rows")),
    "sessions": (("gru",), ("table_not_in_optimizer", "frozen_table", "init_huge_std",
                            "lr_too_low", "lr_high_embedding", "lr_high_dense",
                            "non_finite_loss", "missing_zero_grad")),
})  # fmt: skip


def fault_spec(name: str) -> FaultSpec:
    """The :class:`FaultSpec` called ``name``.

    Raises:
        ValueError: unknown fault (the message lists the known ones).
    """
    try:
        return FAULTS[name]
    except KeyError:
        raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}") from None
