"""GRU4Rec's training loop: session-parallel mini-batches, sampled negatives, Adagrad."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from gradtracer._random import check_random_state, torch_generator
from gradtracer.recsys.models.gru4rec.losses import (
    bpr_max_loss,
    cross_entropy_loss,
    logq_correction,
)
from gradtracer.recsys.models.gru4rec.network import GRU4RecNetwork, adjust_state
from gradtracer.recsys.models.gru4rec.sampler import NegativeSampler
from gradtracer.recsys.models.next_item import check_item_space, item_counts
from gradtracer.recsys.models.optim import AdagradMomentum
from gradtracer.recsys.sessions.batching import SessionArrays, iterate_session_parallel

__all__ = ["EpochProgress", "GRU4RecTrainLog", "train_network"]

logger = logging.getLogger("gradtracer.recsys.models.gru4rec")


@dataclass
class GRU4RecTrainLog:
    """What training measured: per-epoch mean loss and throughput."""

    epoch_loss: list[float] = field(default_factory=list)  # mean per-row loss per epoch
    epoch_seconds: list[float] = field(default_factory=list)
    events: int = 0  # predictions (events with a next event) per epoch
    steps: int = 0  # optimiser steps per epoch

    @property
    def events_per_second(self) -> float:
        """Training throughput over all epochs (events per wall-clock second)."""
        total = sum(self.epoch_seconds)
        return self.events * len(self.epoch_seconds) / total if total > 0 else float("nan")

    def to_dict(self) -> dict[str, float | int | list[float]]:
        """JSON-ready summary (``epoch_loss``, ``epoch_seconds``, ``events_per_second``, ...)."""
        return {
            "epoch_loss": list(self.epoch_loss),
            "epoch_seconds": list(self.epoch_seconds),
            "events_per_second": self.events_per_second,
            "events_per_epoch": self.events,
            "steps_per_epoch": self.steps,
        }


@dataclass(frozen=True)
class EpochProgress:
    """Where training is: handed to ``on_epoch`` (``done``) and ``on_progress`` callbacks.

    Attributes:
        epoch: 1-based epoch number; ``n_epochs``: how many there are.
        rows: predictions trained on so far in this epoch; ``total_rows``: per epoch.
        seconds: wall-clock seconds since the epoch started.
        loss: mean per-row loss of the epoch so far.
        done: True once the epoch has finished.
    """

    epoch: int
    n_epochs: int
    rows: int
    total_rows: int
    seconds: float
    loss: float
    done: bool

    @property
    def events_per_second(self) -> float:
        """Training throughput of the epoch so far."""
        return self.rows / self.seconds if self.seconds > 0 else float("nan")

    def line(self) -> str:
        """One log line, e.g. ``epoch 2/10: loss 5.1234, 12.3 s, 1,584 events/s``."""
        head = f"epoch {self.epoch}/{self.n_epochs}"
        if not self.done:
            head += f" {100.0 * self.rows / max(self.total_rows, 1):.0f}%"
        return (
            f"{head}: loss {self.loss:.4f}, {self.seconds:.1f} s, "
            f"{self.events_per_second:,.0f} events/s"
        )


def train_network(
    network: GRU4RecNetwork,
    train: SessionArrays,
    *,
    on_backward: Callable[[float], None] | None = None,
    on_epoch: Callable[[EpochProgress], None] | None = None,
    on_progress: Callable[[EpochProgress], None] | None = None,
    progress: bool | None = False,
    device: str | torch.device | None = None,
) -> GRU4RecTrainLog:
    """Train ``network`` in place on ``train`` for ``config.n_epochs``; return the log.

    Args:
        network: the network; its ``config`` says how to train.
        train: training sessions in the network's item space.
        on_backward: ``on_backward(loss)`` after ``loss.backward()`` and before the
            optimiser step, where a FlowManager or EmbeddingTracker is stepped.
        on_epoch: called with the :class:`EpochProgress` at the end of every epoch.
        on_progress: called at every 10% of an epoch's predictions (log lines where a
            progress bar cannot be seen).
        progress: a progress bar per epoch: ``True`` always, ``False`` never (default),
            ``None`` only when stderr is a terminal.
        device: where to train (default: where the parameters are).

    Sessions are visited in start-time order every epoch (as in the official
    implementation); randomness comes from dropout and negative sampling, both seeded by
    ``config.random_state``.

    Raises:
        ValueError: ``train`` has another item space or no events.
        RuntimeError: the loss became NaN or infinite (naming the epoch and step).
    """
    from gradtracer._progress import progress as progress_bar

    check_item_space(train, network.n_items)
    cfg = network.config
    dev = torch.device(device) if device is not None else network.output_emb.weight.device
    network.to(dev)
    counts = item_counts(train)
    network.counts.copy_(torch.as_tensor(counts, dtype=torch.float32))
    rng = check_random_state(cfg.random_state + 1)
    gen = torch_generator(rng)
    network.dropout_generator = torch_generator(rng, dev)
    sampler = (
        NegativeSampler(counts, cfg.n_sample, cfg.sample_alpha, cfg.sample_cache, gen, dev)
        if cfg.n_sample > 0
        else None
    )
    counts_t = torch.as_tensor(np.maximum(counts, 1.0), dtype=torch.float32, device=dev)
    optimiser = AdagradMomentum(network.parameters(), cfg.learning_rate, cfg.momentum)
    log = GRU4RecTrainLog(events=train.n_predictions)
    min_active = 1 if sampler is not None else 2
    network.train()
    try:
        for epoch in range(cfg.n_epochs):
            t0 = time.perf_counter()
            state = network.init_state(min(cfg.batch_size, max(train.n_sessions, 1)))
            total, rows, steps = 0.0, 0, 0
            next_report = 0.1 * log.events
            batches = iterate_session_parallel(train, cfg.batch_size, min_active=min_active)
            for batch in progress_bar(batches, desc=f"gru4rec epoch {epoch + 1}", enabled=progress):
                state = [h.detach() for h in adjust_state(state, batch)]
                targets = batch.targets.to(dev)
                candidates = targets if sampler is None else torch.cat([targets, sampler.draw()])
                network.zero_grad(set_to_none=True)
                logits = network(batch.inputs.to(dev), state, candidates)
                if cfg.loss == "cross-entropy":
                    logits = logq_correction(
                        logits,
                        candidates,
                        batch.size,
                        counts_t,
                        sample_alpha=cfg.sample_alpha,
                        logq=cfg.logq,
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
                if on_progress is not None and rows >= next_report and rows < log.events:
                    next_report += 0.1 * log.events
                    on_progress(
                        EpochProgress(
                            epoch + 1,
                            cfg.n_epochs,
                            rows,
                            log.events,
                            time.perf_counter() - t0,
                            total / rows,
                            False,
                        )
                    )
            log.epoch_seconds.append(time.perf_counter() - t0)
            log.epoch_loss.append(total / max(rows, 1))
            log.steps = steps
            done = EpochProgress(
                epoch + 1,
                cfg.n_epochs,
                rows,
                log.events,
                log.epoch_seconds[-1],
                log.epoch_loss[-1],
                True,
            )
            logger.info("gru4rec %s", done.line())
            if on_epoch is not None:
                on_epoch(done)
    finally:
        network.eval()
        network.dropout_generator = None
    return log
