"""GRU4Rec's network: input modes, stacked GRU cells, dropout, output scores, initialisation.

Embedding tables are ``nn.Embedding`` modules (``item_emb``: the input table;
``output_emb``: the output table; they are one module when ``constrained_embedding``), so
an :class:`~gradtracer.embedding.tracker.EmbeddingTracker` can attach to them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gradtracer._random import torch_generator
from gradtracer.recsys.models.gru4rec.config import GRU4RecConfig
from gradtracer.recsys.sessions.batching import SessionBatch

__all__ = ["GRU4RecNetwork", "OneHotGRULayer", "adjust_state"]


def _glorot_blocks_(weight: torch.Tensor, fan_in: int, fan_out: int, gen: torch.Generator) -> None:
    """Fill ``weight`` uniformly in ``±sqrt(6 / (fan_in + fan_out))`` (Glorot, per gate)."""
    sigma = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        weight.copy_(torch.rand(weight.shape, generator=gen) * 2 * sigma - sigma)


class OneHotGRULayer(nn.Module):
    """First GRU layer fed by a one-hot item vector: its input matrix is an embedding table.

    ``W_x`` (``nn.Embedding(n_items, 3 * hidden)``) holds the candidate, reset and update
    gate input weights per item; ``W_rz`` and ``W_h`` are the recurrent weights.
    """

    def __init__(self, n_items: int, hidden: int, sparse: bool) -> None:
        super().__init__()
        self.W_x = nn.Embedding(n_items, 3 * hidden, sparse=sparse)
        self.W_rz = nn.Parameter(torch.empty(hidden, 2 * hidden))
        self.W_h = nn.Parameter(torch.empty(hidden, hidden))
        self.bias = nn.Parameter(torch.zeros(3 * hidden))

    def forward(self, items: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Return the next hidden state ``(B, hidden)`` after items ``(B,)`` from state ``h``."""
        vx_h, vx_r, vx_z = (self.W_x(items) + self.bias).chunk(3, dim=1)
        vh_r, vh_z = (h @ self.W_rz).chunk(2, dim=1)
        r = torch.sigmoid(vx_r + vh_r)
        z = torch.sigmoid(vx_z + vh_z)
        candidate = torch.tanh((r * h) @ self.W_h + vx_h)
        return (1.0 - z) * h + z * candidate


def adjust_state(state: list[torch.Tensor], batch: SessionBatch) -> list[torch.Tensor]:
    """Apply ``batch``'s slot changes to ``state``: keep the surviving slots, zero the new ones."""
    if batch.keep is not None:
        keep = batch.keep.to(state[0].device)
        state = [h[keep] for h in state]
    if bool(batch.reset.any()):
        reset = batch.reset.to(state[0].device)
        state = [h.masked_fill(reset[:, None], 0.0) for h in state]
    return state


class GRU4RecNetwork(nn.Module):
    """The GRU4Rec network (no training loop, no persistence).

    Args:
        n_items: size of the item index space.
        config: hyperparameters (:class:`GRU4RecConfig`; default: the official defaults).

    Attributes:
        output_emb: ``nn.Embedding(n_items, layers[-1])``, the output item vectors.
        output_bias: ``nn.Embedding(n_items, 1)``, per-item output bias (initialised to 0).
        item_emb: the input table: ``output_emb`` (constrained), a separate
            ``nn.Embedding(n_items, embedding_dim)``, or the one-hot GRU layer's ``W_x``.
        counts: ``(n_items,)`` training event counts (buffer; set by training).
    """

    counts: torch.Tensor

    def __init__(self, n_items: int, config: GRU4RecConfig | None = None) -> None:
        super().__init__()
        if isinstance(n_items, bool) or not isinstance(n_items, int) or n_items < 1:
            raise ValueError(f"n_items must be a positive int, got {n_items!r}")
        self.config = config or GRU4RecConfig()
        self.n_items = int(n_items)
        cfg = self.config
        layers = cfg.layers
        self.output_emb = nn.Embedding(n_items, layers[-1], sparse=cfg.sparse)
        self.output_bias = nn.Embedding(n_items, 1, sparse=cfg.sparse)
        self.input_emb: nn.Embedding | None = None
        self.onehot: OneHotGRULayer | None = None
        first = 0
        if cfg.input_mode == "constrained":
            n_input = layers[-1]
        elif cfg.input_mode == "embedding":
            self.input_emb = nn.Embedding(n_items, cfg.embedding_dim, sparse=cfg.sparse)
            n_input = cfg.embedding_dim
        else:
            self.onehot = OneHotGRULayer(n_items, layers[0], cfg.sparse)
            n_input, first = layers[0], 1
        self.first_cell = first
        self.cells = nn.ModuleList(
            nn.GRUCell(layers[i - 1] if i > 0 else n_input, layers[i])
            for i in range(first, len(layers))
        )
        self.dropout_generator: torch.Generator | None = None  # set while training
        self.register_buffer("counts", torch.zeros(n_items))
        self.reset_parameters()

    @property
    def item_emb(self) -> nn.Embedding:
        """The input embedding table (see the class attributes)."""
        if self.input_emb is not None:
            return self.input_emb
        if self.onehot is not None:
            return self.onehot.W_x
        return self.output_emb

    def embedding_layers(self) -> dict[str, nn.Embedding]:
        """Return the distinct embedding tables by name (``item_emb``, ``output_emb``)."""
        if self.item_emb is self.output_emb:
            return {"output_emb": self.output_emb}
        return {"item_emb": self.item_emb, "output_emb": self.output_emb}

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Glorot-uniform per gate block, zero biases (seeded by ``config.random_state``)."""
        gen = torch_generator(self.config.random_state)
        n, layers = self.n_items, self.config.layers
        if self.input_emb is not None:
            _glorot_blocks_(self.input_emb.weight, n, self.config.embedding_dim, gen)
        if self.onehot is not None:
            h = layers[0]
            for block in self.onehot.W_x.weight.split(h, dim=1):
                _glorot_blocks_(block, n, h, gen)
            for block in self.onehot.W_rz.split(h, dim=1):
                _glorot_blocks_(block, h, h, gen)
            _glorot_blocks_(self.onehot.W_h, h, h, gen)
            self.onehot.bias.zero_()
        for cell in self.cells:
            assert isinstance(cell, nn.GRUCell)
            hidden, n_in = cell.hidden_size, cell.input_size
            for block in cell.weight_ih.split(hidden, dim=0):
                _glorot_blocks_(block, n_in, hidden, gen)
            for block in cell.weight_hh.split(hidden, dim=0):
                _glorot_blocks_(block, hidden, hidden, gen)
            assert cell.bias_ih is not None and cell.bias_hh is not None
            cell.bias_ih.zero_()
            cell.bias_hh.zero_()
        _glorot_blocks_(self.output_emb.weight, n, layers[-1], gen)
        self.output_bias.weight.zero_()

    # --- forward -----------------------------------------------------------------------
    def init_state(self, batch_size: int) -> list[torch.Tensor]:
        """Return zero hidden states, one ``(batch_size, units)`` tensor per layer."""
        device = self.output_emb.weight.device
        return [torch.zeros(batch_size, h, device=device) for h in self.config.layers]

    def hidden(self, items: torch.Tensor, state: list[torch.Tensor]) -> torch.Tensor:
        """Advance ``state`` in place by one event per row; return the top layer ``(B, d)``."""
        p_embed, p_hidden = self.config.dropout_p_embed, self.config.dropout_p_hidden
        if self.onehot is not None:
            x = self._dropout(self.onehot(items, state[0]), p_embed)
            state[0] = x
        else:
            table = self.input_emb if self.input_emb is not None else self.output_emb
            x = self._dropout(table(items), p_embed)
        for i, cell in enumerate(self.cells, start=self.first_cell):
            x = self._dropout(cell(x, state[i]), p_hidden)
            state[i] = x
        return x

    def _dropout(self, x: torch.Tensor, p: float) -> torch.Tensor:
        """Inverted dropout in training mode, drawn from ``dropout_generator`` when set."""
        if not self.training or p == 0.0:
            return x
        u = torch.rand(x.shape, generator=self.dropout_generator, device=x.device)
        return x * (u >= p).to(x.dtype) / (1.0 - p)

    def forward(
        self, items: torch.Tensor, state: list[torch.Tensor], candidates: torch.Tensor | None
    ) -> torch.Tensor:
        """Return scores ``(B, C)`` for ``candidates`` (``(C,)`` item ids; ``None`` = all)."""
        x = self.hidden(items, state)
        if candidates is None:
            return x @ self.output_emb.weight.T + self.output_bias.weight.T
        return x @ self.output_emb(candidates).T + self.output_bias(candidates).T

    def advance(
        self, state: list[torch.Tensor], batch: SessionBatch
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Apply ``batch``'s slot changes, feed its inputs, return ``(B, n_items)`` scores."""
        state = adjust_state(state, batch)
        device = self.output_emb.weight.device
        with torch.no_grad():
            scores = self.forward(batch.inputs.to(device), state, None)
        return scores, state
