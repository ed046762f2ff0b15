"""AutoFixController on constructed evidence: scales, audit events, replay, failures."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch
from evidence_rows import EvidenceRows

from gradtracer.embedding.autofix import AutoFixController, AutoFixPolicy
from gradtracer.embedding.autofix_replay import replay_audit
from gradtracer.embedding.evidence import RowEvidence
from gradtracer.errors import GradTracerWarning
from gradtracer.export.audit import AuditLogger, decode_ids, read_audit

FAST = AutoFixPolicy(warmup_steps=5, min_pairs=4, update_every=5, min_loss_points=5)


def _evidence(
    step: int,
    rows: list[int],
    agree: list[int],
    disagree: list[int],
    loss: float | None = 1.0,
    grad: float = 1.0,
) -> RowEvidence:
    n = len(rows)
    return RowEvidence(
        step=step,
        layer="item_emb",
        rows=torch.tensor(rows, dtype=torch.int64),
        n_agree=torch.tensor(agree, dtype=torch.float32),
        n_disagree=torch.tensor(disagree, dtype=torch.float32),
        cos_ema=torch.zeros(n),
        grad_norm_ema=torch.full((n,), grad),
        velocity_ema=torch.ones(n),
        exposure=torch.full((n,), float(step)),
        loss=loss,
    )


def _drive(
    ctrl: AutoFixController, steps: int = 40, loss: bool = True
) -> list[torch.Tensor | None]:
    """Row 0 oscillates, row 3 moves steadily, row 5 is dead (zero gradient)."""
    out = []
    rows = EvidenceRows()
    for s in range(1, steps + 1):
        ev = _evidence(s, [0, 3], [0, s], [s, 0], loss=1.0 if loss else None)
        out.append(rows.drive(ctrl, ev))
        ev_dead = _evidence(s, [5], [0], [s], loss=None, grad=0.0)
        rows.drive(ctrl, ev_dead)
    return out


def test_oscillating_row_scaled_steady_row_not_dead_row_reported(tmp_path: Path) -> None:
    ctrl = AutoFixController("item_emb", policy=FAST, audit=tmp_path, run_id="r1")
    factors = _drive(ctrl)
    assert factors[0] is None  # nothing scaled during warm-up
    last = factors[-1]
    assert last is not None and last[0] < 1.0 and last[1] == 1.0
    scales = ctrl.scales(n_rows=8)
    assert scales.shape == (8,) and scales[0] < 1 and scales[3] == 1 and scales[5] == 1
    types = {f.type for f in ctrl.findings()}
    assert {"AUTOFIX_APPLIED", "DEAD_EMBEDDINGS"} <= types
    assert "AUDIT_INCOMPLETE" not in types
    ctrl.close()
    events = read_audit(tmp_path).events
    assert [e["kind"] for e in events][0] == "run_start"
    assert events[-1]["kind"] == "run_end"
    damp = [e for e in events if e["kind"] == "damp"]
    assert damp and all(decode_ids(e["rows"]).tolist() == [0] for e in damp)
    assert all(e["run_id"] == "r1" and e["layer"] == "item_emb" for e in damp)
    assert damp[-1]["scales"][0] == pytest.approx(float(scales[0]))
    result = replay_audit(events)
    assert result.ok and result.n_rows == len(damp)


def test_deterministic_and_loss_unknown_is_neutral(tmp_path: Path) -> None:
    a = AutoFixController("item_emb", policy=FAST, audit=None)
    b = AutoFixController("item_emb", policy=FAST, audit=None)
    _drive(a, loss=False)
    _drive(b, loss=False)
    assert torch.equal(a.scales(), b.scales())
    assert a.last_trend.p_improving == 0.5


def test_replay_detects_tampered_scale(tmp_path: Path) -> None:
    ctrl = AutoFixController("item_emb", policy=FAST, audit=tmp_path)
    _drive(ctrl)
    ctrl.close()
    events = read_audit(tmp_path).events
    damp = next(e for e in events if e["kind"] == "damp")
    damp["scales"][0] = damp["scales"][0] * 0.5
    result = replay_audit(events)
    assert not result.ok and result.mismatches[0].row == 0


def test_unwritable_audit_dir_warns_once_and_training_continues(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    ctrl = AutoFixController("item_emb", policy=FAST, audit=blocker / "sub")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        factors = _drive(ctrl)
        ctrl.close()
    ours = [w for w in caught if issubclass(w.category, GradTracerWarning)]
    assert len(ours) == 1 and "audit is incomplete" in str(ours[0].message)
    assert factors[-1] is not None and factors[-1][0] < 1  # intervention still happened
    assert not ctrl.audit_complete and ctrl.events_lost > 0
    assert "AUDIT_INCOMPLETE" in {f.type for f in ctrl.findings()}


def test_default_audit_dir_honours_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADTRACER_DIR", str(tmp_path / "gt"))
    ctrl = AutoFixController("item_emb", policy=FAST)
    _drive(ctrl, steps=12)
    ctrl.close()
    assert ctrl.audit_path == tmp_path / "gt" / "audit.jsonl"
    assert os.path.getsize(ctrl.audit_path) > 0


def test_shared_logger_is_not_closed_by_controller(tmp_path: Path) -> None:
    log = AuditLogger(tmp_path)
    users = AutoFixController("user_emb", policy=FAST, audit=log, run_id="r")
    items = AutoFixController("item_emb", policy=FAST, audit=log, run_id="r")
    _drive(users, steps=12)
    _drive(items, steps=12)
    users.close()
    items.close()
    assert not log.closed
    log.close()
    result = replay_audit(read_audit(tmp_path).events)
    assert result.ok and set(result.runs) == {("r", "user_emb"), ("r", "item_emb")}


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="layer_name"):
        AutoFixController("")
    with pytest.raises(TypeError, match="AutoFixPolicy"):
        AutoFixController("x", policy={"floor": 0.3})  # type: ignore[arg-type]
    ctrl = AutoFixController("x", policy=FAST, audit=None)
    assert ctrl.scales().numel() == 0
    table = EvidenceRows()
    for s in range(1, FAST.update_every + 1):
        table.drive(ctrl, _evidence(s, [9], [0], [0]))
    assert ctrl.scales().numel() == 10
    with pytest.raises(ValueError, match="n_rows"):
        ctrl.scales(n_rows=3)


def test_scales_match_a_naive_per_row_reference() -> None:
    """The consolidated-evidence controller equals a dict-based row-by-row reimplementation."""
    import numpy as np

    from gradtracer.embedding.autofix_policy import (
        damping_factors,
        dead_rows,
        loss_trend_posterior,
    )

    policy = AutoFixPolicy(warmup_steps=10, min_pairs=3, update_every=7, min_loss_points=5)
    rng = np.random.default_rng(0)
    n_rows, steps = 40, 120
    agree = np.zeros(n_rows, dtype=np.int64)
    disagree = np.zeros(n_rows, dtype=np.int64)
    bias = rng.uniform(0.1, 0.9, n_rows)  # per-row disagreement rate
    ctrl = AutoFixController("item_emb", policy=policy, audit=None)
    table = EvidenceRows()
    ref_scale = np.ones(n_rows, dtype=np.float32)
    latest: dict[int, tuple[int, int, float]] = {}
    losses: list[tuple[int, float]] = []
    last_decision = 0
    for step in range(1, steps + 1):
        rows = np.unique(rng.integers(0, n_rows, 12))
        flips = rng.random(rows.size) < bias[rows]
        disagree[rows] += flips
        agree[rows] += ~flips
        grad = np.where(rows == 5, 0.0, 1.0)  # row 5 is dead
        loss = float(1.0 + rng.normal(0, 0.1))
        table.drive(
            ctrl,
            RowEvidence(
                step=step,
                layer="item_emb",
                rows=torch.from_numpy(rows),
                n_agree=torch.from_numpy(agree[rows].astype(np.int32)),
                n_disagree=torch.from_numpy(disagree[rows].astype(np.int32)),
                cos_ema=torch.zeros(rows.size),
                grad_norm_ema=torch.from_numpy(grad).float(),
                velocity_ema=torch.ones(rows.size),
                exposure=torch.ones(rows.size),
                loss=loss,
            ),
        )
        # reference
        losses.append((step, loss))
        for r, g in zip(rows.tolist(), grad.tolist(), strict=True):
            latest[r] = (int(agree[r]), int(disagree[r]), g)
        if step - last_decision >= policy.update_every:
            last_decision = step
            window = losses[-policy.loss_window :]
            trend = loss_trend_posterior(
                [s for s, _ in window], [v for _, v in window], min_points=policy.min_loss_points
            )
            ids = sorted(latest)
            a = np.array([latest[r][0] for r in ids])
            d = np.array([latest[r][1] for r in ids])
            dead = dead_rows(np.array([latest[r][2] for r in ids]), policy)
            ref_scale[ids] = damping_factors(
                a, d, p_improving=trend.p_improving, step=step, policy=policy, dead=dead
            )
            latest.clear()
    got = ctrl.scales(n_rows=n_rows).numpy()
    np.testing.assert_array_equal(got, ref_scale)
    assert (got < 1).any() and got[5] == 1.0
