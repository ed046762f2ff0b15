"""GRU4Rec as a next-item recommender: the network plus fit, scoring and persistence."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from gradtracer.recsys.models.gru4rec.config import GRU4RecConfig
from gradtracer.recsys.models.gru4rec.network import GRU4RecNetwork
from gradtracer.recsys.models.gru4rec.train import EpochProgress, GRU4RecTrainLog, train_network
from gradtracer.recsys.models.next_item import NextItemRecommender, TrainingHooks
from gradtracer.recsys.models.registry import register_model
from gradtracer.recsys.sessions.batching import SessionArrays

__all__ = ["GRU4Rec", "fit_gru4rec", "train_gru4rec"]


@register_model("gru4rec")
class GRU4Rec(GRU4RecNetwork, NextItemRecommender):
    """GRU4Rec network and next-item recommender (Hidasi et al., 2016; Hidasi & Karatzoglou, 2018).

    Args:
        n_items: size of the item index space.
        config: hyperparameters (:class:`GRU4RecConfig`; default: the official defaults).

    See :class:`~gradtracer.recsys.models.gru4rec.network.GRU4RecNetwork` for the tables
    (``item_emb``, ``output_emb``) an EmbeddingTracker can attach to.
    """

    name = "gru4rec"
    legacy_arrays_file = "weights.npz"

    def __init__(self, n_items: int, config: GRU4RecConfig | None = None) -> None:
        super().__init__(n_items, config)
        self.train_log: GRU4RecTrainLog | None = None

    @classmethod
    def create(cls, n_items: int, **options: Any) -> GRU4Rec:
        """Return an unfitted model; ``options``: ``config=`` (a config or a dict) or config fields."""
        config = options.pop("config", None)
        if isinstance(config, Mapping):
            config = GRU4RecConfig.from_dict(dict(config))
        if options:
            base = config.to_dict() if config is not None else {}
            config = GRU4RecConfig.from_dict({**base, **options})
        return cls(n_items, config)

    def fit(
        self,
        train: SessionArrays,
        *,
        hooks: TrainingHooks | None = None,
        device: str | torch.device | None = None,
    ) -> GRU4Rec:
        """Train on ``train`` for ``config.n_epochs`` epochs; return ``self``.

        Args:
            train: training sessions in this model's item space.
            hooks: callbacks (``on_backward`` to step a tracker, ``on_epoch`` /
                ``on_progress`` for log lines, ``progress`` for a bar).
            device: where to train (default: where the parameters are).

        The measurements are in :attr:`train_log` (per-epoch loss, seconds, events/s).
        """
        h = hooks or TrainingHooks()
        self.train_log = train_network(
            self,
            train,
            on_backward=h.on_backward,
            on_epoch=h.on_epoch,
            on_progress=h.on_progress,
            progress=h.progress,
            device=device,
        )
        return self

    def scorer(self) -> GRU4Rec:
        """The network itself, switched to evaluation mode (no dropout)."""
        self.eval()
        return self

    def training_log(self) -> dict[str, Any]:
        """Per-epoch loss and seconds, events per second, steps per epoch (empty before fit)."""
        return {} if self.train_log is None else dict(self.train_log.to_dict())

    # --- persistence -------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {"n_items": self.n_items, "config": self.config.to_dict()}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy() for k, v in self.state_dict().items()}

    @classmethod
    def _from_artifact(
        cls,
        meta: Mapping[str, Any],
        arrays: Mapping[str, np.ndarray],
        device: str | torch.device = "cpu",
        **kwargs: Any,
    ) -> GRU4Rec:
        if kwargs:
            raise TypeError(f"unexpected argument(s) {sorted(kwargs)}")
        model = cls(int(meta["n_items"]), GRU4RecConfig.from_dict(dict(meta["config"])))
        model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()})
        return model.to(device).eval()


def train_gru4rec(
    model: GRU4Rec,
    train: SessionArrays,
    *,
    on_backward: Callable[[float], None] | None = None,
    on_epoch: Callable[[EpochProgress], None] | None = None,
    on_progress: Callable[[EpochProgress], None] | None = None,
    progress: bool | None = False,
    device: str | torch.device | None = None,
) -> GRU4RecTrainLog:
    """Train ``model`` in place (:meth:`GRU4Rec.fit`) and return its :class:`GRU4RecTrainLog`.

    ``on_backward(loss)`` is called after ``loss.backward()`` and before the optimiser
    step, where a FlowManager or EmbeddingTracker is stepped.
    """
    hooks = TrainingHooks(
        on_backward=on_backward, on_epoch=on_epoch, on_progress=on_progress, progress=progress
    )
    model.fit(train, hooks=hooks, device=device)
    assert model.train_log is not None
    return model.train_log


def fit_gru4rec(
    train: SessionArrays, config: GRU4RecConfig | None = None, **kwargs: Any
) -> tuple[GRU4Rec, GRU4RecTrainLog]:
    """Build a :class:`GRU4Rec` for ``train``'s item space, train it, return ``(model, log)``."""
    model = GRU4Rec(train.n_items, config)
    return model, train_gru4rec(model, train, **kwargs)
