"""Bayesian Auto-Fix: damp the applied updates of rows whose updates oscillate.

:class:`AutoFixController` implements the tracker's
:class:`~gradtracer.embedding.evidence.Intervention` protocol. After each optimizer step
the tracker hands it the touched row ids (``on_step``); every ``policy.update_every`` steps
the controller reads the latest posterior inputs of the rows touched since its last
decision and re-decides their scales with the pure policy in
:mod:`gradtracer.embedding.autofix.policy`. It keeps the per-row
factors in host memory (a zero-copy view is the table the tracker reads on CPU; a device
copy is updated at each decision otherwise). Between decisions the current factor of each
touched row applies; the tracker applies it to the row's *applied* update
(``w = w_before + f * (w_after - w_before)``), which changes what the row moves under
SGD, Adam, AdamW, Adagrad and SparseAdam alike.

Every decision that changes a scale is appended to the audit log
(:mod:`gradtracer.audit`) with the inputs needed to re-derive it
(``gradtracer audit replay``), through :mod:`~gradtracer.embedding.autofix.audit_trail`.
Checkpoint checks live in :mod:`~gradtracer.embedding.autofix.state`, findings in
:mod:`~gradtracer.embedding.autofix.findings`. The class itself stays in one file (past 400
lines): its decision, checkpoint and inspection methods all read and write the same per-row
tables and counters, and splitting it would spread one state machine over several files.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gradtracer._numeric import finite_or_none
from gradtracer.audit import AUDIT_FORMAT_VERSION, AuditLogger, encode_ids
from gradtracer.embedding.autofix.audit_trail import DEFAULT_AUDIT, AuditTrail
from gradtracer.embedding.autofix.findings import (
    detect_audit_incomplete,
    detect_autofix_applied,
    detect_unscaled_dead_rows,
)
from gradtracer.embedding.autofix.policy import (
    NEUTRAL_LOSS_TREND,
    AutoFixPolicy,
    LossTrend,
    damping_factors,
    dead_rows,
    loss_trend_posterior,
    oscillation_confidence,
)
from gradtracer.embedding.autofix.state import STATE_VERSION, validate_state
from gradtracer.embedding.evidence import RowEvidence
from gradtracer.embedding.row_kernel import unique_rows
from gradtracer.findings import Finding

__all__ = ["AutoFixController", "AutoFixPolicy"]


class AutoFixController:
    """Per-row damping of oscillating embedding rows, with an audit trail.

    Args:
        layer_name: name of the tracked layer (written in every audit event).
        policy: the damping rule (default :class:`AutoFixPolicy()`).
        audit: ``"default"`` (``.gradtracer/audit.jsonl`` in the CWD, or in
            ``$GRADTRACER_DIR``), a directory (str/Path), an :class:`AuditLogger`
            (shared; not closed by this controller), or ``None`` for no audit log.
        run_id: identifier written into every event (default: a random 12-hex id).

    Cost: per step ``on_step`` only keeps a reference to the step's row ids and returns the
    scale table while some row is scaled; the evidence of the rows touched since the last
    decision is read once per decision.

    The controller is deterministic: the same evidence sequence gives the same scales.
    If the audit log cannot be written, training continues, ONE
    :class:`GradTracerWarning` is issued and :attr:`audit_complete` becomes False.
    """

    def __init__(
        self,
        layer_name: str,
        policy: AutoFixPolicy | None = None,
        audit: AuditLogger | None | str | Path = DEFAULT_AUDIT,
        run_id: str | None = None,
    ) -> None:
        if not isinstance(layer_name, str) or not layer_name:
            raise ValueError(f"layer_name must be a non-empty string, got {layer_name!r}")
        if policy is not None and not isinstance(policy, AutoFixPolicy):
            raise TypeError(f"policy must be an AutoFixPolicy, got {type(policy).__name__}")
        self.layer_name = layer_name
        self.policy = policy if policy is not None else AutoFixPolicy()
        self.run_id = run_id if run_id is not None else uuid.uuid4().hex[:12]
        self._trail = AuditTrail(audit, layer_name, self._run_start_event)
        # per-row state, grown on demand (index = row id); the scale table has one extra
        # sentinel slot at the end that always holds 1.0 (rows beyond the table read it)
        # The host arrays are the record; ``_scale`` is the table handed to the tracker: a
        # zero-copy view of ``_host`` on CPU, a device copy updated at each decision else.
        self._host: np.ndarray | None = None  # float32, current factor per row (+ sentinel)
        self._scale: torch.Tensor | None = None
        self._dead: np.ndarray | None = None  # bool, dead at last decision
        self._ever: np.ndarray | None = None  # bool, ever scaled below 1
        # row ids touched since the last decision, kept by reference (no work per step)
        self._pending_rows: list[torch.Tensor] = []
        self._scratch: dict[str, Any] = {}  # reusable buffers of unique_rows
        self._n_seen = 0  # one past the largest row id seen
        self._losses: deque[tuple[int, float]] = deque(maxlen=self.policy.loss_window)
        self.step = 0
        self._last_decision = 0  # step of the last decision
        self.n_decisions = 0
        self.n_interventions = 0  # decisions that changed at least one scale
        self.n_scaled = 0  # rows whose current scale is < 1
        self.last_trend: LossTrend = NEUTRAL_LOSS_TREND
        self._closed = False

    # ------------------------------------------------------------------ protocol
    def on_step(
        self,
        step: int,
        rows: torch.Tensor,
        loss: float | None,
        read: Callable[[torch.Tensor], RowEvidence],
    ) -> torch.Tensor | None:
        """The tracker's intervention protocol (see :class:`~gradtracer.embedding.Intervention`).

        Records only the touched row ids; at a decision step the evidence of every row
        touched since the last decision is read once (``read(rows)``, the tracker's current
        row state, which is each row's latest evidence). Returns the whole scale table
        (``(n + 1,)`` float32 indexed by row id, the last slot 1.0) while some row is
        scaled, else ``None``.
        """
        self._record_step(int(step), loss)
        if rows.numel():
            self._pending_rows.append(rows)
        if self._decision_due():
            latest = None
            if self._pending_rows:
                latest = read(unique_rows(self._pending_rows, self._scratch))
                self._pending_rows = []
            self._decide(loss, latest)
        return None if self.n_scaled == 0 else self._table_on(rows.device)

    def _table_on(self, device: torch.device) -> torch.Tensor:
        """The scale table on ``device`` (moved once, e.g. after :meth:`load_state_dict`)."""
        assert self._scale is not None and self._host is not None
        if self._scale.device != device:
            self._scale = torch.from_numpy(self._host).to(device)
        return self._scale

    def _record_step(self, step: int, loss: float | None) -> None:
        self.step = step
        if loss is not None:
            self._losses.append((self.step, float(loss)))

    def _decision_due(self) -> bool:
        if self.step - self._last_decision >= self.policy.update_every:
            self._last_decision = self.step
            return True
        return False

    def close(self) -> None:
        """Write the ``run_end`` event, fsync and close the audit log (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._trail.started:
            self._trail.emit(
                {
                    "kind": "run_end",
                    "run_id": self.run_id,
                    "layer": self.layer_name,
                    "step": self.step,
                    "n_decisions": self.n_decisions,
                    "n_interventions": self.n_interventions,
                    "rows_scaled": self.n_scaled,
                    "events_lost": self.events_lost,
                }
            )
        self._trail.close()

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue with the same factors and decisions.

        Tensors and plain values only (``torch.save`` / ``torch.load(weights_only=True)``):
        the per-row factors, dead and ever-damped flags, the loss window, the decision
        schedule and counters, the rows touched since the last decision, the run id (a
        resumed run keeps writing the same run into the audit log) and the policy.
        """
        n = self._n_seen
        pending_rows = (
            torch.unique(torch.cat([r.cpu() for r in self._pending_rows]))
            if self._pending_rows
            else torch.zeros(0, dtype=torch.int64)
        )
        return {
            "version": STATE_VERSION,
            "layer_name": self.layer_name,
            "run_id": self.run_id,
            "policy": self.policy.to_dict(),
            "n_seen": n,
            "scale": torch.from_numpy(self._table()[:n].copy()),
            "dead": torch.from_numpy(
                np.zeros(0, bool) if self._dead is None else self._dead[:n].copy()
            ),
            "ever": torch.from_numpy(
                np.zeros(0, bool) if self._ever is None else self._ever[:n].copy()
            ),
            "losses": [[int(t), float(v)] for t, v in self._losses],
            "step": self.step,
            "last_decision": self._last_decision,
            "n_decisions": self.n_decisions,
            "n_interventions": self.n_interventions,
            "n_scaled": self.n_scaled,
            "last_trend": self.last_trend.to_dict(),
            "pending_rows": pending_rows,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output into this controller (same layer and policy).

        Everything is checked before anything changes: a rejected state leaves the
        controller as it was.

        Raises:
            ValueError: another state version, layer name or policy (the differing
                fields are named), a missing key, or a bad value (named with its key).
        """
        ck = validate_state(state, self.layer_name, self.policy)
        n = ck["n_seen"]
        self._host = self._dead = self._ever = self._scale = None
        self._n_seen = 0
        if n:
            self._ensure_size(n, torch.device("cpu"))
            assert self._host is not None and self._dead is not None and self._ever is not None
            self._host[:n] = ck["scale"]
            self._dead[:n] = ck["dead"]
            self._ever[:n] = ck["ever"]
        self.run_id = ck["run_id"]
        self._losses.clear()
        self._losses.extend(ck["losses"])
        self.step = ck["step"]
        self._last_decision = ck["last_decision"]
        self.n_decisions = ck["n_decisions"]
        self.n_interventions = ck["n_interventions"]
        self.n_scaled = ck["n_scaled"]
        self.last_trend = ck["last_trend"]
        self._pending_rows = [ck["pending_rows"]] if ck["pending_rows"].numel() else []

    # ------------------------------------------------------------------ inspection
    @property
    def audit_complete(self) -> bool:
        """False when an audit log was requested and some events could not be written."""
        return not self._trail.failed

    @property
    def audit_path(self) -> Path | None:
        """The audit file being written (``None`` when disabled or not opened yet)."""
        return self._trail.path

    @property
    def events_lost(self) -> int:
        """Audit events that could not be written (0 while the audit is complete)."""
        return self._trail.events_lost

    def scales(self, n_rows: int | None = None) -> torch.Tensor:
        """Return the current factor per row, shape ``(n_rows,)`` float32 (1 = untouched).

        Without ``n_rows`` the length is one past the largest row id seen so far.
        """
        size = self._n_seen
        n = size if n_rows is None else int(n_rows)
        if n < size:
            raise ValueError(f"n_rows={n} is smaller than the largest row id seen + 1 ({size})")
        out = np.ones(n, dtype=np.float32)
        if self._host is not None:
            out[:size] = self._host[:size]
        return torch.from_numpy(out).to(self._device())

    def ever_scaled(self, n_rows: int) -> torch.Tensor:
        """Return a bool mask, shape ``(n_rows,)``: rows ever given a factor below 1."""
        out = np.zeros(int(n_rows), dtype=bool)
        if self._ever is not None:
            size = min(int(n_rows), self._ever.size)
            out[:size] = self._ever[:size]
        return torch.from_numpy(out).to(self._device())

    def _device(self) -> torch.device:
        return torch.device("cpu") if self._scale is None else self._scale.device

    def _table(self) -> np.ndarray:
        """The scale table without its sentinel slot."""
        return np.ones(0, dtype=np.float32) if self._host is None else self._host[:-1]

    def summary(self) -> dict[str, Any]:
        """Plain-number summary: decisions, rows scaled now / ever, scale range, loss trend."""
        table = self._table()
        scaled_now = int((table < 1).sum())
        ever = 0 if self._ever is None else int(self._ever.sum())
        dead = 0 if self._dead is None else int(self._dead.sum())
        min_scale = float(table.min()) if table.size else 1.0
        mean_scaled = float(table[table < 1].mean()) if scaled_now else 1.0
        return {
            "step": self.step,
            "run_id": self.run_id,
            "n_decisions": self.n_decisions,
            "n_interventions": self.n_interventions,
            "rows_scaled": scaled_now,
            "rows_ever_scaled": ever,
            "rows_dead": dead,
            "min_scale": min_scale,
            "mean_scale_of_scaled": mean_scaled,
            "p_loss_improving": self.last_trend.p_improving,
            "audit_path": None if self.audit_path is None else str(self.audit_path),
            "audit_complete": self.audit_complete,
            "audit_events_lost": self.events_lost,
        }

    def findings(self) -> list[Finding]:
        """AUTOFIX_APPLIED, DEAD_EMBEDDINGS (rows left unscaled) and AUDIT_INCOMPLETE findings."""
        s = self.summary()
        found = [
            detect_autofix_applied(self.layer_name, s, self._ever),
            detect_unscaled_dead_rows(self.layer_name, s, self._dead),
            detect_audit_incomplete(self.layer_name, s),
        ]
        return [f for f in found if f is not None]

    # ------------------------------------------------------------------ internals
    def _ensure_size(self, n: int, device: torch.device) -> None:
        self._n_seen = max(self._n_seen, n)
        size = 0 if self._host is None else self._host.size - 1
        if n <= size:
            return
        new = max(n, 2 * size, 1024)
        host = np.ones(new + 1, dtype=np.float32)
        dead = np.zeros(new, dtype=bool)
        ever = np.zeros(new, dtype=bool)
        if self._host is not None and self._dead is not None and self._ever is not None:
            host[:size] = self._host[:size]
            dead[:size] = self._dead
            ever[:size] = self._ever
        self._host, self._dead, self._ever = host, dead, ever
        self._scale = torch.from_numpy(host).to(device)  # a view on CPU

    def _decide(self, loss: float | None, latest: RowEvidence | None) -> None:
        """Fit the loss trend and re-decide the scales of the rows touched since the last
        decision from ``latest`` (those rows, unique, each with its latest evidence)."""
        self.n_decisions += 1
        if self._losses:
            steps, losses = zip(*self._losses, strict=True)
            self.last_trend = loss_trend_posterior(
                steps, losses, min_points=self.policy.min_loss_points
            )
        else:
            self.last_trend = NEUTRAL_LOSS_TREND
        if latest is not None:
            self._decide_rows(
                latest.rows,
                _as_count(latest.n_agree),
                _as_count(latest.n_disagree),
                latest.grad_norm_ema.detach().float(),
                loss,
            )

    def _decide_rows(
        self,
        idx: torch.Tensor,
        agree_t: torch.Tensor,
        disagree_t: torch.Tensor,
        grad_t: torch.Tensor,
        loss: float | None,
    ) -> None:
        """Re-decide the scales of rows ``idx`` (unique) from their latest evidence.

        Runs on host arrays (one transfer per decision on an accelerator): a decision
        touches ~10k rows, where a dozen NumPy passes cost a fraction of the tensor ops.
        """
        ids = idx.detach().cpu().numpy()
        if ids.size == 0:
            return
        agree_all = agree_t.cpu().numpy()
        disagree_all = disagree_t.cpu().numpy()
        grad_all = grad_t.cpu().numpy()
        self._ensure_size(int(ids.max()) + 1, idx.device)
        assert self._host is not None and self._dead is not None and self._ever is not None
        pol = self.policy
        self._dead[ids] = dead_rows(grad_all, pol)
        if self.step < pol.warmup_steps and self.n_scaled == 0:
            return
        # only rows that can change are decided: enough pairs (counts only grow), or
        # currently scaled (they may be released); the rest keep factor 1
        sel = np.flatnonzero((agree_all + disagree_all >= pol.min_pairs) | (self._host[ids] < 1))
        if sel.size == 0:
            return
        ids = ids[sel]
        agree, disagree = agree_all[sel], disagree_all[sel]
        dead = self._dead[ids]
        factors = damping_factors(
            agree,
            disagree,
            p_improving=self.last_trend.p_improving,
            step=self.step,
            policy=pol,
            dead=dead,
        )
        old = self._host[ids]
        changed = np.flatnonzero(factors != old)
        if changed.size == 0:
            return
        changed = changed[np.argsort(ids[changed], kind="stable")]
        row_ids = ids[changed]
        new_vals = factors[changed]
        self._host[row_ids] = new_vals
        if self._scale is not None and self._scale.device.type != "cpu":
            dev = self._scale.device
            self._scale[torch.from_numpy(row_ids).to(dev)] = torch.from_numpy(new_vals).to(dev)
        self._ever[row_ids] |= new_vals < 1
        self.n_scaled += int((new_vals < 1).sum()) - int((old[changed] < 1).sum())
        self.n_interventions += 1
        q = oscillation_confidence(agree[changed], disagree[changed], self.policy)
        self._trail.emit(
            {
                "kind": "damp",
                "run_id": self.run_id,
                "layer": self.layer_name,
                "step": self.step,
                "rows": encode_ids(row_ids),
                "scales": factors[changed].tolist(),
                "n_agree": agree[changed].tolist(),
                "n_disagree": disagree[changed].tolist(),
                "q": np.round(q, 6).tolist(),
                "dead": encode_ids(row_ids[dead[changed]]),
                "loss": finite_or_none(loss),
                "loss_trend": self.last_trend.to_dict(),
                "rows_scaled_total": self.n_scaled,
            }
        )

    def _run_start_event(self) -> dict[str, Any]:
        return {
            "kind": "run_start",
            "run_id": self.run_id,
            "layer": self.layer_name,
            "step": self.step,
            "format_version": AUDIT_FORMAT_VERSION,
            "policy": self.policy.to_dict(),
        }


def _as_count(t: torch.Tensor) -> torch.Tensor:
    t = t.detach()
    return t.round().to(torch.int64) if t.is_floating_point() else t.to(torch.int64)
