"""GRU4Rec (Hidasi et al., ICLR 2016; Hidasi & Karatzoglou, CIKM 2018) in PyTorch.

Follows the behaviour of the official PyTorch implementation
(``hidasib/GRU4Rec_PyTorch_Official``): session-parallel mini-batches, output scores
over the batch's targets (in-batch negatives) plus ``n_sample`` shared negatives drawn
from ``popularity ** sample_alpha``, cross-entropy (with optional logQ correction) or
BPR-max (with ELU on the scores) loss summed over the batch and divided by
``batch_size``, three input modes (constrained: input = output embedding; a separate
embedding; one-hot through a GRU layer whose input matrix is an embedding table), dropout
on the input and on every hidden layer's output, Glorot-uniform initialisation per gate,
and Adagrad with momentum applied only to the rows a sparse gradient touches.

Embedding tables are ``nn.Embedding`` modules (``item_emb``: the input table;
``output_emb``: the output table; they are one module when ``constrained_embedding``), so
an :class:`~gradtracer.embedding.tracker.EmbeddingTracker` can attach to them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from gradtracer._random import check_random_state, torch_generator
from gradtracer.recsys.models.session_popularity import _check_space, _read_meta, item_counts
from gradtracer.recsys.sessions.batching import (
    SessionArrays,
    SessionBatch,
    iterate_session_parallel,
)

__all__ = [
    "OFFICIAL_PARAMS",
    "AdagradMomentum",
    "GRU4Rec",
    "GRU4RecConfig",
    "GRU4RecTrainLog",
    "bpr_max_loss",
    "config_with",
    "fit_gru4rec",
    "cross_entropy_loss",
    "logq_correction",
    "train_gru4rec",
]

logger = logging.getLogger(__name__)

Loss = Literal["cross-entropy", "bpr-max"]


@dataclass
class GRU4RecConfig:
    """Hyperparameters; defaults are the official implementation's defaults.

    The official tuned settings per dataset are in :data:`OFFICIAL_PARAMS`.
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
    embedding: int = 0  # >0: separate input embedding of this size
    constrained_embedding: bool = True  # input embedding = output embedding
    n_epochs: int = 10  # passes over the training sessions
    bpreg: float = 1.0  # score regularisation of BPR-max
    elu_param: float = 0.5  # ELU alpha applied to scores before BPR-max (0 = off)
    logq: float = 0.0  # weight of the logQ correction of cross-entropy (0 = off)
    sparse: bool = True  # sparse gradients for embedding tables (rows touched only)
    sample_cache: int = 1_000_000  # negatives drawn per refill of the sample buffer
    random_state: int = 42  # seeds initialisation, dropout and negative sampling

    def __post_init__(self) -> None:
        self.layers = tuple(int(x) for x in self.layers)
        if not self.layers or min(self.layers) < 1:
            raise ValueError(f"layers must be positive sizes, got {self.layers}")
        if self.loss not in ("cross-entropy", "bpr-max"):
            raise ValueError(f"loss must be 'cross-entropy' or 'bpr-max', got {self.loss!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.n_sample < 0 or self.embedding < 0 or self.n_epochs < 0:
            raise ValueError("n_sample, embedding and n_epochs must be >= 0")
        for name in ("dropout_p_embed", "dropout_p_hidden"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")

    @property
    def input_mode(self) -> Literal["constrained", "embedding", "onehot"]:
        """How items enter the network (``constrained`` wins over ``embedding``)."""
        if self.constrained_embedding:
            return "constrained"
        return "embedding" if self.embedding else "onehot"

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["layers"] = list(self.layers)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GRU4RecConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown GRU4Rec parameter(s) {unknown}; known: {sorted(known)}")
        return cls(**data)


#: Tuned settings published with the official implementation (``paramfiles/``).
OFFICIAL_PARAMS: dict[str, dict[str, Any]] = {
    "yoochoose": dict(loss="cross-entropy", constrained_embedding=True, embedding=0,
                      elu_param=0.0, layers=(480,), n_epochs=10, batch_size=48,
                      dropout_p_embed=0.0, dropout_p_hidden=0.2, learning_rate=0.07,
                      momentum=0.0, n_sample=2048, sample_alpha=0.2, bpreg=0.0, logq=1.0),
    "diginetica": dict(loss="bpr-max", constrained_embedding=True, embedding=0,
                       elu_param=1.0, layers=(512,), n_epochs=10, batch_size=128,
                       dropout_p_embed=0.5, dropout_p_hidden=0.3, learning_rate=0.05,
                       momentum=0.15, n_sample=2048, sample_alpha=0.3, bpreg=0.9, logq=0.0),
    "retailrocket": dict(loss="bpr-max", constrained_embedding=True, embedding=0,
                         elu_param=0.5, layers=(224,), n_epochs=10, batch_size=80,
                         dropout_p_embed=0.5, dropout_p_hidden=0.05, learning_rate=0.05,
                         momentum=0.4, n_sample=2048, sample_alpha=0.4, bpreg=1.95, logq=0.0),
}


# --- losses (pure) -------------------------------------------------------------------------


def logq_correction(
    logits: torch.Tensor,
    candidates: torch.Tensor,
    n_targets: int,
    counts: torch.Tensor,
    *,
    sample_alpha: float,
    logq: float,
) -> torch.Tensor:
    """Return ``logits - logq * log(q)`` where ``q`` is each candidate's sampling weight.

    Columns ``[:n_targets]`` are the batch's targets (in-batch negatives, drawn with
    probability proportional to ``count``); the rest are sampled negatives (drawn
    proportional to ``count ** sample_alpha``). ``logits``: ``(B, C)``; ``candidates``:
    ``(C,)`` item indices; ``counts``: ``(n_items,)`` training counts (all > 0).
    """
    if logq == 0.0:
        return logits
    q = counts[candidates].to(logits.dtype)
    q = torch.cat([q[:n_targets], q[n_targets:] ** sample_alpha])
    return logits - logq * torch.log(q)


def cross_entropy_loss(logits: torch.Tensor) -> torch.Tensor:
    """Return the summed softmax cross-entropy with row ``i``'s target in column ``i``.

    ``logits``: ``(B, C)`` with ``C >= B``; the diagonal holds the positives.
    """
    n = logits.shape[0]
    logp = torch.log_softmax(logits, dim=1)
    return -logp[torch.arange(n), torch.arange(n)].sum()


def bpr_max_loss(logits: torch.Tensor, *, bpreg: float, elu_param: float) -> torch.Tensor:
    """Return the summed BPR-max loss (Hidasi & Karatzoglou, 2018, eq. 6 + score regulariser).

    For row ``i`` (target in column ``i``) with softmax weights ``s_ij`` over the negatives
    ``j != i``: ``-log(sum_j s_ij * sigmoid(r_ii - r_ij)) + bpreg * sum_j s_ij * r_ij ** 2``,
    where ``r = elu(logits, elu_param)`` when ``elu_param > 0``.
    """
    if elu_param > 0:
        logits = nn.functional.elu(logits, elu_param)
    n = logits.shape[0]
    eye = torch.zeros_like(logits)
    eye[torch.arange(n), torch.arange(n)] = 1.0
    negative = 1.0 - eye
    masked = logits * negative
    weights = torch.exp(masked - masked.max(dim=1, keepdim=True)[0]) * negative
    weights = weights / weights.sum(dim=1, keepdim=True)
    target = logits.diagonal().unsqueeze(1)
    ranking = -torch.log((torch.sigmoid(target - logits) * weights).sum(dim=1) + 1e-24)
    reg = bpreg * (logits.square() * weights).sum(dim=1)
    return (ranking + reg).sum()


# --- optimiser -------------------------------------------------------------------------


class AdagradMomentum(torch.optim.Optimizer):
    """Adagrad with (heavy-ball) momentum; sparse gradients update only their rows.

    ``acc += g**2``; ``m = momentum * m - lr * g / sqrt(acc + eps)``; ``p += m``. For a
    sparse gradient ``acc`` and ``m`` of untouched rows are left as they are (their
    momentum does not decay), as in the official implementation.
    """

    def __init__(
        self, params: Iterable[nn.Parameter], lr: float = 0.05, momentum: float = 0.0,
        eps: float = 1e-6,
    ) -> None:
        if lr <= 0 or momentum < 0 or eps <= 0:
            raise ValueError(f"need lr > 0, momentum >= 0, eps > 0; got {lr}, {momentum}, {eps}")
        super().__init__(params, dict(lr=lr, momentum=momentum, eps=eps))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            lr, momentum, eps = group["lr"], group["momentum"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["acc"] = torch.zeros_like(p)
                    if momentum > 0:
                        state["mom"] = torch.zeros_like(p)
                grad = p.grad
                if grad.is_sparse:
                    grad = grad.coalesce()
                    rows, values = grad.indices()[0], grad.values()
                    acc = state["acc"][rows] + values.square()
                    state["acc"].index_copy_(0, rows, acc)
                    update = values / (acc + eps).sqrt() * -lr
                    if momentum > 0:
                        update = state["mom"][rows].mul_(momentum).add_(update)
                        state["mom"].index_copy_(0, rows, update)
                    p.index_add_(0, rows, update)
                else:
                    state["acc"].add_(grad.square())
                    denom = (state["acc"] + eps).sqrt_()
                    if momentum > 0:
                        state["mom"].mul_(momentum).addcdiv_(grad, denom, value=-lr)
                        p.add_(state["mom"])
                    else:
                        p.addcdiv_(grad, denom, value=-lr)
        return loss


# --- network -------------------------------------------------------------------------


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
        vx_h, vx_r, vx_z = (self.W_x(items) + self.bias).chunk(3, dim=1)
        vh_r, vh_z = (h @ self.W_rz).chunk(2, dim=1)
        r = torch.sigmoid(vx_r + vh_r)
        z = torch.sigmoid(vx_z + vh_z)
        candidate = torch.tanh((r * h) @ self.W_h + vx_h)
        return (1.0 - z) * h + z * candidate


class GRU4Rec(nn.Module):
    """GRU4Rec network and next-item scorer.

    Args:
        n_items: size of the item index space.
        config: hyperparameters (:class:`GRU4RecConfig`).

    Attributes:
        output_emb: ``nn.Embedding(n_items, layers[-1])``, the output item vectors.
        output_bias: ``nn.Embedding(n_items, 1)``, per-item output bias (initialised to 0).
        item_emb: the input table: ``output_emb`` (constrained), a separate
            ``nn.Embedding(n_items, embedding)``, or the one-hot GRU layer's ``W_x``.
        counts: ``(n_items,)`` training event counts (buffer; set by :func:`train_gru4rec`).
    """

    name = "gru4rec"

    def __init__(self, n_items: int, config: GRU4RecConfig | None = None) -> None:
        super().__init__()
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
            self.input_emb = nn.Embedding(n_items, cfg.embedding, sparse=cfg.sparse)
            n_input = cfg.embedding
        else:
            self.onehot = OneHotGRULayer(n_items, layers[0], cfg.sparse)
            n_input, first = layers[0], 1
        self.first_cell = first
        self.cells = nn.ModuleList(
            nn.GRUCell(layers[i - 1] if i > 0 else n_input, layers[i])
            for i in range(first, len(layers))
        )
        self.dropout_generator: torch.Generator | None = None  # set by train_gru4rec
        self.register_buffer("counts", torch.zeros(n_items))
        self.reset_parameters()

    @property
    def item_emb(self) -> nn.Embedding:
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
            _glorot_blocks_(self.input_emb.weight, n, self.config.embedding, gen)
        if self.onehot is not None:
            h = layers[0]
            for block in self.onehot.W_x.weight.split(h, dim=1):
                _glorot_blocks_(block, n, h, gen)
            for block in self.onehot.W_rz.split(h, dim=1):
                _glorot_blocks_(block, h, h, gen)
            _glorot_blocks_(self.onehot.W_h, h, h, gen)
            self.onehot.bias.zero_()
        for cell in self.cells:
            hidden, n_in = cell.hidden_size, cell.input_size
            for block in cell.weight_ih.split(hidden, dim=0):
                _glorot_blocks_(block, n_in, hidden, gen)
            for block in cell.weight_hh.split(hidden, dim=0):
                _glorot_blocks_(block, hidden, hidden, gen)
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
        state = _adjust_state(state, batch)
        device = self.output_emb.weight.device
        with torch.no_grad():
            scores = self.forward(batch.inputs.to(device), state, None)
        return scores, state

    # --- persistence -------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``model.json`` (config) and ``weights.npz`` (state dict) into ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {"model": self.name, "n_items": self.n_items, "config": self.config.to_dict()}
        (d / "model.json").write_text(json.dumps(meta, indent=2))
        arrays = {k: v.detach().cpu().numpy() for k, v in self.state_dict().items()}
        np.savez(d / "weights.npz", **arrays)
        return d

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> GRU4Rec:
        """Read a model written by :meth:`save` (numpy arrays only, no pickle)."""
        d = Path(directory)
        meta = _read_meta(d, cls.name)
        model = cls(meta["n_items"], GRU4RecConfig.from_dict(meta["config"]))
        with np.load(d / "weights.npz", allow_pickle=False) as z:
            state = {k: torch.from_numpy(z[k]) for k in z.files}
        model.load_state_dict(state)
        return model.to(device).eval()


def _adjust_state(state: list[torch.Tensor], batch: SessionBatch) -> list[torch.Tensor]:
    if batch.keep is not None:
        keep = batch.keep.to(state[0].device)
        state = [h[keep] for h in state]
    if bool(batch.reset.any()):
        reset = batch.reset.to(state[0].device)
        state = [h.masked_fill(reset[:, None], 0.0) for h in state]
    return state


# --- training -------------------------------------------------------------------------


class NegativeSampler:
    """Draws ``n_sample`` shared negatives per step with probability ``count ** alpha``.

    Samples are drawn by inverse-CDF in buffers of ``cache`` items, one buffer refill at a time.
    """

    def __init__(
        self, counts: np.ndarray, n_sample: int, alpha: float, cache: int, gen: torch.Generator,
        device: torch.device,
    ) -> None:
        weights = torch.as_tensor(counts, dtype=torch.float64) ** alpha
        cdf = torch.cumsum(weights, 0) / weights.sum()
        cdf[-1] = 1.0
        self.cdf = cdf.to(device)
        self.n_sample = n_sample
        self.rows = max(1, cache // max(n_sample, 1))
        self.gen = gen
        self.device = device
        self._buffer = torch.empty(0, n_sample, dtype=torch.long, device=device)
        self._next = 0

    def draw(self) -> torch.Tensor:
        """Return ``(n_sample,)`` int64 item indices."""
        if self._next >= len(self._buffer):
            u = torch.rand(self.rows * self.n_sample, generator=self.gen, dtype=torch.float64)
            idx = torch.searchsorted(self.cdf, u.to(self.device), right=True)
            self._buffer = idx.clamp_(max=len(self.cdf) - 1).view(self.rows, self.n_sample)
            self._next = 0
        out = self._buffer[self._next]
        self._next += 1
        return out


@dataclass
class GRU4RecTrainLog:
    """What :func:`train_gru4rec` measured: per-epoch mean loss and throughput."""

    epoch_loss: list[float] = field(default_factory=list)  # mean per-row loss per epoch
    epoch_seconds: list[float] = field(default_factory=list)
    events: int = 0  # predictions (events with a next event) per epoch
    steps: int = 0  # optimiser steps per epoch

    @property
    def events_per_second(self) -> float:
        """Training throughput over all epochs (events per wall-clock second)."""
        total = sum(self.epoch_seconds)
        return self.events * len(self.epoch_seconds) / total if total > 0 else float("nan")


def train_gru4rec(
    model: GRU4Rec,
    train: SessionArrays,
    *,
    on_backward: Callable[[float], None] | None = None,
    progress: bool | None = False,
    device: str | torch.device = "cpu",
) -> GRU4RecTrainLog:
    """Train ``model`` in place on ``train`` for ``config.n_epochs``; return the log.

    ``on_backward(loss)`` is called after ``loss.backward()`` and before the optimiser
    step, where a FlowManager or EmbeddingTracker is stepped. Sessions are visited in
    start-time order every epoch (as in the official implementation); randomness comes
    from dropout and negative sampling, both seeded by ``config.random_state``.
    """
    from gradtracer._progress import progress as progress_bar

    _check_space(train, model.n_items)
    cfg = model.config
    device = torch.device(device)
    model.to(device)
    counts = item_counts(train)
    model.counts.copy_(torch.as_tensor(counts, dtype=torch.float32))
    rng = check_random_state(cfg.random_state + 1)
    gen = torch_generator(rng)
    model.dropout_generator = torch_generator(rng, device)
    sampler = (
        NegativeSampler(counts, cfg.n_sample, cfg.sample_alpha, cfg.sample_cache, gen, device)
        if cfg.n_sample > 0 else None
    )
    counts_t = torch.as_tensor(np.maximum(counts, 1.0), dtype=torch.float32, device=device)
    optimiser = AdagradMomentum(model.parameters(), cfg.learning_rate, cfg.momentum)
    log = GRU4RecTrainLog(events=train.n_predictions)
    min_active = 1 if sampler is not None else 2
    model.train()
    for epoch in range(cfg.n_epochs):
        t0 = time.perf_counter()
        state = model.init_state(min(cfg.batch_size, max(train.n_sessions, 1)))
        total, rows, steps = 0.0, 0, 0
        batches = iterate_session_parallel(train, cfg.batch_size, min_active=min_active)
        for batch in progress_bar(batches, desc=f"gru4rec epoch {epoch + 1}", enabled=progress):
            state = [h.detach() for h in _adjust_state(state, batch)]
            targets = batch.targets.to(device)
            candidates = targets if sampler is None else torch.cat([targets, sampler.draw()])
            model.zero_grad(set_to_none=True)
            logits = model(batch.inputs.to(device), state, candidates)
            if cfg.loss == "cross-entropy":
                logits = logq_correction(
                    logits, candidates, batch.size, counts_t,
                    sample_alpha=cfg.sample_alpha, logq=cfg.logq,
                )
                loss = cross_entropy_loss(logits)
            else:
                loss = bpr_max_loss(logits, bpreg=cfg.bpreg, elu_param=cfg.elu_param)
            loss = loss / cfg.batch_size
            loss.backward()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise RuntimeError(
                    f"GRU4Rec loss became {value} at epoch {epoch + 1}, step {steps + 1}; "
                    "lower learning_rate or bpreg"
                )
            if on_backward is not None:
                on_backward(value)
            optimiser.step()
            total += value * cfg.batch_size
            rows += batch.size
            steps += 1
        log.epoch_seconds.append(time.perf_counter() - t0)
        log.epoch_loss.append(total / max(rows, 1))
        log.steps = steps
        logger.info(
            "gru4rec epoch %d: loss %.5f, %.1f s, %.0f events/s", epoch + 1,
            log.epoch_loss[-1], log.epoch_seconds[-1], rows / max(log.epoch_seconds[-1], 1e-9),
        )
    model.eval()
    model.dropout_generator = None
    return log


def fit_gru4rec(
    train: SessionArrays, config: GRU4RecConfig | None = None, **kwargs: Any
) -> tuple[GRU4Rec, GRU4RecTrainLog]:
    """Build a :class:`GRU4Rec` for ``train``'s item space, train it, return ``(model, log)``."""
    model = GRU4Rec(train.n_items, config)
    return model, train_gru4rec(model, train, **kwargs)


def config_with(config: GRU4RecConfig, **changes: Any) -> GRU4RecConfig:
    """Return a copy of ``config`` with ``changes`` applied (validated)."""
    return GRU4RecConfig.from_dict({**config.to_dict(), **changes})

