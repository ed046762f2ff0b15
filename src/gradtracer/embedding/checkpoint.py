"""Checkpoints of an :class:`~gradtracer.embedding.tracker.EmbeddingTracker`: validation.

:func:`validate_state` checks a loaded ``state_dict`` completely (every key, type, shape,
dtype and value range) before the tracker changes anything, and returns the values in a
:class:`Checkpoint`; the tracker then applies them all at once. A rejected checkpoint
therefore leaves the live tracker exactly as it was. Errors name the key and the bad value.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from gradtracer.embedding.state import FloatCol, IntCol
from gradtracer.embedding.summary import NormStats
from gradtracer.embedding.sums import (
    DAMPED,
    EXPOSED,
    N_ACC,
    NONFINITE_ROWS,
    NONFINITE_STEPS,
    PAIRED,
    ZOMBIE,
)
from gradtracer.errors import GradTracerWarning

if TYPE_CHECKING:
    from gradtracer.embedding.tracker import EmbeddingTracker

__all__ = ["STATE_VERSION", "Checkpoint", "load_state", "save_state", "validate_state"]

STATE_VERSION = 1
MAX_STEP = (1 << 31) - 1  # the last-seen step is stored in 31 bits
_COS_SLACK = 1e-4  # float32 rounding of an EMA of cosines in [-1, 1]
_NEG_SLACK = 1e-6  # float32 rounding of non-negative EMAs after damping corrections
_INT_NAMES = {
    IntCol.EXPOSURE: "exposure",
    IntCol.LAST_SEEN: "last_seen",
    IntCol.N_AGREE: "n_agree",
    IntCol.N_DISAGREE: "n_disagree",
    IntCol.ZOMBIE: "zombie",
}
_FLOAT_NAMES = {
    FloatCol.VELOCITY: "velocity_ema",
    FloatCol.GRAD_NORM: "grad_norm_ema",
    FloatCol.COS: "cos_ema",
    FloatCol.GRAD_PEAK: "grad_norm_peak",
}
_COUNT_SUMS = {
    EXPOSED: "exposed rows",
    PAIRED: "paired rows",
    ZOMBIE: "zombie rows",
    NONFINITE_ROWS: "non-finite rows",
    NONFINITE_STEPS: "non-finite steps",
    DAMPED: "damped updates",
}


@dataclass(frozen=True)
class Checkpoint:
    """A validated tracker checkpoint (CPU tensors and plain values)."""

    step: int
    last_loss: float | None
    accumulators: torch.Tensor
    history: list[dict[str, Any]]
    rows: dict[str, torch.Tensor]
    autofix_scales: torch.Tensor | None
    autofix_damped_ever: torch.Tensor | None
    intervention: Mapping[str, Any] | None
    initial_norms: NormStats | None
    in_optimizer: bool
    backward_passes: int


def _bad(key: str, message: str) -> ValueError:
    return ValueError(f"tracker state {key!r}: {message}")


def _get(state: Mapping[str, Any], key: str) -> Any:
    if key not in state:
        raise ValueError(f"tracker state is missing {key!r}")
    return state[key]


def _int(key: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(key, f"expected an int, got {type(value).__name__} {value!r}")
    if not lo <= value <= hi:
        raise _bad(key, f"{value!r} is outside [{lo}, {hi}]")
    return value


def _tensor(key: str, value: Any, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise _bad(key, f"expected a tensor, got {type(value).__name__}")
    if tuple(value.shape) != shape or value.dtype != dtype:
        raise _bad(key, f"expected {shape} {dtype}, got {tuple(value.shape)} {value.dtype}")
    return value.detach().cpu()


def _first_bad(key: str, what: str, mask: torch.Tensor, values: torch.Tensor) -> None:
    if bool(mask.any()):
        row = int(torch.nonzero(mask)[0, 0]) if mask.ndim else 0
        raise _bad(key, f"{what} {values.reshape(-1)[row].item()!r} at row {row}")


def _check_rows(
    state: Mapping[str, Any], n_rows: int, n_bytes: int, step: int
) -> dict[str, torch.Tensor]:
    ints = _tensor("row_ints", _get(state, "row_ints"), (n_rows, IntCol.COUNT), torch.int32)
    for col, name in _INT_NAMES.items():
        c = ints[:, col]
        _first_bad("row_ints", f"column {name}: negative value", c < 0, c)
    for col in (IntCol.EXPOSURE, IntCol.LAST_SEEN):
        c = ints[:, col]
        what = f"column {_INT_NAMES[col]}: more than the {step} steps seen:"
        _first_bad("row_ints", what, c > step, c)
    z = ints[:, IntCol.ZOMBIE]
    _first_bad("row_ints", "column zombie: not 0 or 1:", z > 1, z)
    floats = _tensor(
        "row_floats", _get(state, "row_floats"), (n_rows, FloatCol.COUNT), torch.float32
    )
    for col, name in _FLOAT_NAMES.items():
        c = floats[:, col]
        _first_bad("row_floats", f"column {name}: non-finite value", ~torch.isfinite(c), c)
        if col == FloatCol.COS:
            out = c.abs() > 1.0 + _COS_SLACK
            _first_bad("row_floats", f"column {name}: outside [-1, 1]:", out, c)
        else:
            _first_bad("row_floats", f"column {name}: negative value", c < -_NEG_SLACK, c)
    sketch = _tensor("row_sketch", _get(state, "row_sketch"), (n_rows, n_bytes), torch.uint8)
    return {"ints": ints, "floats": floats, "sketch": sketch}


def _check_accumulators(value: Any, n_rows: int) -> torch.Tensor:
    acc = _tensor("accumulators", value, (N_ACC,), torch.float64)
    _first_bad("accumulators", "non-finite value", ~torch.isfinite(acc), acc)
    for index, name in _COUNT_SUMS.items():
        x = float(acc[index])
        if x < 0 or x != math.floor(x):
            raise _bad("accumulators", f"{name} must be a non-negative count, got {x!r}")
        if index in (EXPOSED, PAIRED, ZOMBIE) and x > n_rows:
            raise _bad("accumulators", f"{name} {x!r} exceeds the table's {n_rows} rows")
    return acc


def _check_history(value: Any, step: int) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _bad("history", f"expected a list, got {type(value).__name__}")
    last = -1
    for i, entry in enumerate(value):
        if not isinstance(entry, Mapping) or "step" not in entry:
            raise _bad("history", f"entry {i} is not a snapshot with a 'step'")
        s = _int(f"history[{i}].step", entry["step"], 0, step)
        if s < last:
            raise _bad("history", f"entry {i} has step {s} after step {last}")
        last = s
    return [dict(h) for h in value]


def _check_loss(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad("last_loss", f"expected a number or None, got {type(value).__name__}")
    return float(value)


def _check_norms(value: Any) -> NormStats | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise _bad("initial_row_norms", f"expected [mean, std, max], got {value!r}")
    for x in value:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x < 0:
            raise _bad("initial_row_norms", f"expected non-negative finite numbers, got {value!r}")
    return NormStats(*(float(x) for x in value))


def validate_state(
    state: Mapping[str, Any], *, shape: tuple[int, int], sketch_bits: int, seed: int
) -> Checkpoint:
    """Check a tracker ``state_dict`` against a tracker of ``shape``/``sketch_bits``/``seed``.

    Raises:
        ValueError: a missing key, another version, shape, sketch or seed, a wrong type,
            shape or dtype, or a value out of range (NaN or Inf floats, negative counts,
            counts beyond the steps seen); the message names the key and the value.
    """
    if not isinstance(state, Mapping):
        raise ValueError(f"tracker state must be a dict, got {type(state).__name__}")
    if state.get("version") != STATE_VERSION:
        raise _bad("version", f"{state.get('version')!r} != {STATE_VERSION}")
    for key, mine in (("shape", list(shape)), ("sketch_bits", sketch_bits), ("seed", seed)):
        theirs = _get(state, key)
        if theirs != mine:
            raise _bad(key, f"{theirs!r} does not match this tracker ({mine!r})")
    n_rows = shape[0]
    step_key = "step" if "step" in state else "n_updates"  # the name before version 1.1
    step = _int(step_key, _get(state, step_key), 0, MAX_STEP)
    rows = _check_rows(state, n_rows, sketch_bits // 8, step)
    acc = _check_accumulators(_get(state, "accumulators"), n_rows)
    history = _check_history(state.get("history", []), step)
    scales = damped = None
    if "autofix_scales" in state:
        scales = _tensor("autofix_scales", state["autofix_scales"], (n_rows,), torch.float32)
        bad = ~torch.isfinite(scales) | (scales < 0) | (scales > 1)
        _first_bad("autofix_scales", "factor outside [0, 1]:", bad, scales)
        damped = _tensor(
            "autofix_damped_ever", _get(state, "autofix_damped_ever"), (n_rows,), torch.bool
        )
    intervention = state.get("intervention")
    if intervention is not None and not isinstance(intervention, Mapping):
        raise _bad("intervention", f"expected a dict, got {type(intervention).__name__}")
    in_opt = state.get("in_optimizer", False)
    if not isinstance(in_opt, bool):
        raise _bad("in_optimizer", f"expected a bool, got {in_opt!r}")
    return Checkpoint(
        step=step,
        last_loss=_check_loss(state.get("last_loss")),
        accumulators=acc,
        history=history,
        rows=rows,
        autofix_scales=scales,
        autofix_damped_ever=damped,
        intervention=intervention,
        initial_norms=_check_norms(state.get("initial_row_norms")),
        in_optimizer=in_opt,
        backward_passes=_int("backward_passes", state.get("backward_passes", 0), 0, 1 << 62),
    )


def save_state(tracker: EmbeddingTracker) -> dict[str, Any]:
    """``tracker.state_dict()`` (the tracker has folded every buffered step)."""
    t = tracker
    init = t._initial_norms
    out: dict[str, Any] = {
        "version": STATE_VERSION,
        "name": t.name,
        "shape": list(t._weight.shape),
        "sketch_bits": t._sketch.n_bits,
        "seed": t.seed,
        "step": t._rec.step,
        "last_loss": t._rec.last_loss,
        "accumulators": t._acc.cpu().clone(),
        "history": [dict(h) for h in t._rec.history.entries],
        "in_optimizer": t._watch.stepped,
        "backward_passes": t._capture.backward_passes,
        "initial_row_norms": None if init is None else [init.mean, init.std, init.max],
        **{f"row_{k}": v for k, v in t._state.to_dict().items()},
    }
    if t._rec.damped_ever is not None:
        out["autofix_scales"] = t.autofix_scales().cpu()
        out["autofix_damped_ever"] = t._rec.damped_ever.cpu().clone()
    save = getattr(t._intervention, "state_dict", None)
    if callable(save):
        out["intervention"] = save()
    return out


def load_state(tracker: EmbeddingTracker, state: Mapping[str, Any]) -> None:
    """``tracker.load_state_dict(state)``: validate everything, then apply it all at once."""
    t = tracker
    w = t._weight
    ck = validate_state(
        state,
        shape=(int(w.shape[0]), int(w.shape[1])),
        sketch_bits=t._sketch.n_bits,
        seed=t.seed,
    )
    load = getattr(t._intervention, "load_state_dict", None)
    if ck.intervention is not None and callable(load):
        load(ck.intervention)  # validates before it changes anything, like this one
    elif ck.intervention is not None:
        warnings.warn(
            f"tracker {t.name!r}: the state holds Auto-Fix state but this tracker has no "
            "intervention that can load it; it is ignored",
            GradTracerWarning,
            stacklevel=3,
        )
    elif callable(load):
        warnings.warn(
            f"tracker {t.name!r}: the state holds no Auto-Fix state; the intervention starts "
            "afresh (every factor 1)",
            GradTracerWarning,
            stacklevel=3,
        )
    t._state.load_dict(ck.rows)
    t._acc.copy_(ck.accumulators.to(t._acc.device))
    rec = t._rec
    rec.step = ck.step
    rec.last_loss = ck.last_loss
    rec.history.load(ck.history)
    rec.backend.clear()
    t._initial_norms = ck.initial_norms
    t._watch.stepped = ck.in_optimizer
    t._capture.backward_passes = ck.backward_passes
    if rec.damped_ever is not None:
        device = rec.damped_ever.device
        if ck.autofix_damped_ever is not None and ck.autofix_scales is not None:
            rec.damped_ever.copy_(ck.autofix_damped_ever.to(device))
            rec.table = ck.autofix_scales.to(device)
        else:
            rec.damped_ever.zero_()
            rec.table = None
    rec.pending = None
    rec.version += 1
    t._capture.clear()
