"""GRU4Rec hyperparameters and the official tuned settings (``paramfiles/`` of the official code).

>>> from gradtracer.recsys.models.gru4rec import preset_config
>>> cfg = preset_config("rsc15", n_epochs=2)
>>> cfg.loss, cfg.layers, cfg.logq, cfg.n_epochs
('cross-entropy', (100,), 1.0, 2)
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["OFFICIAL_PARAMS", "PRESETS", "GRU4RecConfig", "Loss", "preset_config"]

Loss = Literal["cross-entropy", "bpr-max"]

#: Parameter names of the official code that this config spells differently.
_ALIASES = {"embedding": "embedding_dim"}


@dataclass
class GRU4RecConfig:
    """Hyperparameters; defaults are the official implementation's defaults.

    The official tuned settings per dataset are in :data:`OFFICIAL_PARAMS`. Note that the
    default ``logq`` is 0 (no logQ correction), while every official cross-entropy setting
    uses ``logq=1.0``; :func:`preset_config` gives the official values.
    """

    layers: tuple[int, ...] = (100,)  # hidden units per GRU layer
    loss: Loss = "cross-entropy"  # "cross-entropy" or "bpr-max"
    batch_size: int = 64  # parallel sessions per mini-batch
    dropout_p_embed: float = 0.0  # dropout on the input embedding
    dropout_p_hidden: float = 0.0  # dropout on each GRU layer's output
    learning_rate: float = 0.05  # Adagrad learning rate
    momentum: float = 0.0  # momentum of Adagrad (0 = plain Adagrad)
    sample_alpha: float = 0.5  # negatives ~ popularity ** sample_alpha
    n_sample: int = 2048  # shared sampled negatives per mini-batch (0 = in-batch only)
    embedding_dim: int = 0  # >0: separate input embedding of this size ("embedding" officially)
    constrained_embedding: bool = True  # input embedding = output embedding
    n_epochs: int = 10  # passes over the training sessions
    bpreg: float = 1.0  # score regularisation of BPR-max
    elu_param: float = 0.5  # ELU alpha applied to scores before BPR-max (0 = off)
    logq: float = 0.0  # weight of the logQ correction of cross-entropy (0 = off; official XE: 1)
    sparse: bool = True  # sparse gradients for embedding tables (rows touched only)
    sample_cache: int = 1_000_000  # negatives drawn per refill of the sample buffer
    random_state: int = 42  # seeds initialisation, dropout and negative sampling

    def __post_init__(self) -> None:
        self.layers = tuple(int(x) for x in self.layers)
        if not self.layers or min(self.layers) < 1:
            raise ValueError(f"layers must be positive sizes, got {self.layers}")
        if self.loss not in ("cross-entropy", "bpr-max"):
            raise ValueError(f"loss must be 'cross-entropy' or 'bpr-max', got {self.loss!r}")
        for name in ("batch_size", "n_epochs", "sample_cache"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        for name in ("n_sample", "embedding_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        for name in ("dropout_p_embed", "dropout_p_hidden"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(
                f"learning_rate must be a positive finite number, got {self.learning_rate}"
            )
        for name in ("momentum", "sample_alpha", "bpreg", "elu_param", "logq"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")

    @property
    def input_mode(self) -> Literal["constrained", "embedding", "onehot"]:
        """How items enter the network (``constrained`` wins over ``embedding_dim``)."""
        if self.constrained_embedding:
            return "constrained"
        return "embedding" if self.embedding_dim else "onehot"

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict (``layers`` as a list)."""
        out = dataclasses.asdict(self)
        out["layers"] = list(self.layers)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GRU4RecConfig:
        """Build a validated config; ``ValueError`` names unknown keys.

        The official parameter files' name ``embedding`` is read as ``embedding_dim``.
        """
        data = {_ALIASES.get(key, key): value for key, value in data.items()}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown GRU4Rec parameter(s) {unknown}; known: {sorted(known)}")
        return cls(**data)


def _official(
    loss: Loss,
    elu: float,
    layers: int,
    batch: int,
    p_embed: float,
    p_hidden: float,
    lr: float,
    momentum: float,
    alpha: float,
    bpreg: float,
    logq: float,
) -> dict[str, Any]:
    return dict(
        loss=loss,
        constrained_embedding=True,
        embedding_dim=0,
        elu_param=elu,
        layers=(layers,),
        n_epochs=10,
        batch_size=batch,
        dropout_p_embed=p_embed,
        dropout_p_hidden=p_hidden,
        learning_rate=lr,
        momentum=momentum,
        n_sample=2048,
        sample_alpha=alpha,
        bpreg=bpreg,
        logq=logq,
    )


#: Tuned settings published with the official implementation (``paramfiles/*_best.py``),
#: keyed by data set: ``rsc15`` is ``rsc15_xe_shared_100_best`` (100 units), ``yoochoose``
#: is ``yoochoose_xe_shared_best`` (480 units); the others are ``<name>_*_shared_best``.
OFFICIAL_PARAMS: dict[str, dict[str, Any]] = {
    "coveo": _official("bpr-max", 1.0, 512, 144, 0.35, 0.0, 0.05, 0.4, 0.2, 1.85, 0.0),
    "diginetica": _official("bpr-max", 1.0, 512, 128, 0.5, 0.3, 0.05, 0.15, 0.3, 0.9, 0.0),
    "rees46": _official("cross-entropy", 0.0, 512, 240, 0.45, 0.0, 0.065, 0.0, 0.5, 0.0, 1.0),
    "retailrocket": _official("bpr-max", 0.5, 224, 80, 0.5, 0.05, 0.05, 0.4, 0.4, 1.95, 0.0),
    "rsc15": _official("cross-entropy", 0.0, 100, 32, 0.0, 0.4, 0.2, 0.2, 0.5, 0.0, 1.0),
    "yoochoose": _official("cross-entropy", 0.0, 480, 48, 0.0, 0.2, 0.07, 0.0, 0.2, 0.0, 1.0),
}

#: Names :func:`preset_config` accepts: ``default`` and every official setting.
PRESETS: tuple[str, ...] = ("default", *sorted(OFFICIAL_PARAMS))


def preset_config(preset: str = "default", **changes: Any) -> GRU4RecConfig:
    """Return the config of ``preset`` (``default`` or an :data:`OFFICIAL_PARAMS` key) with ``changes``.

    Raises:
        ValueError: an unknown preset (naming the choices) or an unknown/invalid parameter.
    """
    if preset == "default":
        base: dict[str, Any] = {}
    elif preset in OFFICIAL_PARAMS:
        base = dict(OFFICIAL_PARAMS[preset])
    else:
        raise ValueError(f"unknown GRU4Rec preset {preset!r}; choose from {list(PRESETS)}")
    return GRU4RecConfig.from_dict({**base, **changes})
