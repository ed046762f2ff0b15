"""Checking an Auto-Fix checkpoint (:meth:`AutoFixController.state_dict` output) before use.

:func:`validate_state` checks every value of a saved controller state (version, layer,
policy, array shapes and dtypes, counters, loss window, pending rows) and returns them
converted, so that ``load_state_dict`` changes nothing when a state is rejected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from gradtracer.embedding.autofix.policy import AutoFixPolicy, LossTrend

__all__ = ["STATE_VERSION", "validate_state"]

#: Version of the controller ``state_dict`` layout.
STATE_VERSION = 1


def _field(state: Mapping[str, Any], key: str) -> Any:
    if key not in state:
        raise ValueError(f"Auto-Fix state is missing {key!r}")
    return state[key]


def _count(state: Mapping[str, Any], key: str) -> int:
    value = _field(state, key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"Auto-Fix state {key!r}: expected an int >= 0, got {value!r}")
    return value


def _array(state: Mapping[str, Any], key: str, n: int, dtype: torch.dtype) -> np.ndarray:
    value = _field(state, key)
    if not isinstance(value, torch.Tensor) or tuple(value.shape) != (n,) or value.dtype != dtype:
        got = (
            f"{tuple(value.shape)} {value.dtype}"
            if isinstance(value, torch.Tensor)
            else type(value).__name__
        )
        raise ValueError(f"Auto-Fix state {key!r}: expected ({n},) {dtype}, got {got}")
    return value.detach().cpu().numpy().copy()


def validate_state(
    state: Mapping[str, Any], layer_name: str, policy: AutoFixPolicy
) -> dict[str, Any]:
    """Every value of a controller ``state_dict``, checked (see ``load_state_dict``)."""
    if not isinstance(state, Mapping):
        raise ValueError(f"Auto-Fix state must be a dict, got {type(state).__name__}")
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"Auto-Fix state version {state.get('version')!r} != {STATE_VERSION}")
    if state.get("layer_name") != layer_name:
        raise ValueError(
            f"Auto-Fix state is for layer {state.get('layer_name')!r}, "
            f"this controller is for {layer_name!r}"
        )
    saved = AutoFixPolicy.from_dict(dict(_field(state, "policy")))
    if saved != policy:
        mine = policy.to_dict()
        diff = {k: (v, mine[k]) for k, v in saved.to_dict().items() if mine[k] != v}
        raise ValueError(
            f"Auto-Fix state was written under another policy (field: (saved, this)) {diff}"
        )
    n = _count(state, "n_seen")
    scale = _array(state, "scale", n, torch.float32)
    if not (np.isfinite(scale).all() and (scale > 0).all() and (scale <= 1).all()):
        bad = np.flatnonzero(~(np.isfinite(scale) & (scale > 0) & (scale <= 1)))[0]
        raise ValueError(
            f"Auto-Fix state 'scale': factor {scale[bad]!r} of row {bad} is outside (0, 1]"
        )
    out: dict[str, Any] = {
        "n_seen": n,
        "scale": scale,
        "dead": _array(state, "dead", n, torch.bool),
        "ever": _array(state, "ever", n, torch.bool),
    }
    for key in ("step", "last_decision", "n_decisions", "n_interventions", "n_scaled"):
        out[key] = _count(state, key)
    if out["n_scaled"] != int((scale < 1).sum()):
        raise ValueError(
            f"Auto-Fix state 'n_scaled': {out['n_scaled']} but "
            f"{int((scale < 1).sum())} factors are below 1"
        )
    losses = []
    for item in _field(state, "losses"):
        t, v = item
        if isinstance(t, bool) or not isinstance(t, int) or not isinstance(v, (int, float)):
            raise ValueError(f"Auto-Fix state 'losses': bad entry {item!r}")
        losses.append((int(t), float(v)))
    out["losses"] = losses
    try:
        out["last_trend"] = LossTrend.from_dict(_field(state, "last_trend"))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"Auto-Fix state 'last_trend': {exc!r}") from exc
    rows = _field(state, "pending_rows")
    if not isinstance(rows, torch.Tensor) or rows.ndim != 1 or rows.is_floating_point():
        raise ValueError(
            f"Auto-Fix state 'pending_rows': expected a 1-D integer tensor, got {rows!r}"
        )
    legacy = state.get("pending_evidence") or []  # written before 1.1: (rows, ...) tensors
    if legacy:
        rows = torch.cat([rows.cpu(), legacy[0].detach().cpu()])
    if rows.numel() and int(rows.min()) < 0:
        raise ValueError(f"Auto-Fix state 'pending_rows': negative row id {int(rows.min())}")
    out["pending_rows"] = torch.unique(rows.cpu().to(torch.int64))
    out["run_id"] = str(_field(state, "run_id"))
    return out
