"""DistillationTracker: which layers a student fails to mimic from its teacher.

Forward hooks capture the outputs of mapped ``(student layer, teacher layer)`` pairs.
Each :meth:`DistillationTracker.step` (after both models ran on the same minibatch)
adds, per pair, the unbiased HSIC estimates of linear CKA (Nguyen, Raghu & Kornblith
2021, minibatch CKA: ``sum HSIC_1(K, L) / sqrt(sum HSIC_1(K, K) sum HSIC_1(L, L))``
over minibatches, which converges to the full-data CKA) and, when the two outputs have
the same width, the hint MSE, and the moments of both outputs (sums, cross products),
from which two linear-probe measures follow: ``fit``, the share of the teacher layer's
variance a least-squares linear map of the student layer reproduces (what a FitNets
regressor could reach), and the SVCCA ``coverage`` (Raghu et al. 2017): the mean squared
canonical correlation over the teacher's principal directions, which counts every
direction the teacher uses, not only the high-variance ones, so a layer too narrow to
hold them scores low even where CKA and ``fit`` are high. :meth:`final_overlap` measures
top-K agreement of the final scores; :meth:`findings` names the pairs that mimic worst
and the action that follows: widen a layer whose representation has a lower rank than
the teacher's, otherwise add a hint loss on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from gradtracer.findings import Finding, FindingType, Report
from gradtracer.report.catalog import make_finding

__all__ = ["DistillationTracker", "PairHistory", "hsic1", "linear_cka", "topk_overlap"]


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Full-batch linear CKA of ``x (n, p)`` and ``y (n, q)`` (feature-centred), in [0, 1].

    >>> import torch
    >>> x = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    >>> round(linear_cka(x, 2 * x), 6)
    1.0
    """
    x = _flat(x).double()
    y = _flat(y).double()
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)
    num = (y.T @ x).pow(2).sum()
    den = (x.T @ x).pow(2).sum().sqrt() * (y.T @ y).pow(2).sum().sqrt()
    return float(num / den) if float(den) > 0 else 0.0


def hsic1(k: torch.Tensor, l: torch.Tensor) -> float:  # noqa: E741 - the paper's name
    """Unbiased HSIC estimator (Song et al. 2012) of two ``(n, n)`` Gram matrices, ``n >= 4``."""
    n = k.shape[0]
    if n < 4:
        raise ValueError(f"the unbiased HSIC needs a minibatch of at least 4 rows, got {n}")
    k = k.clone()
    l = l.clone()  # noqa: E741
    k.fill_diagonal_(0)
    l.fill_diagonal_(0)
    ones = torch.ones(n, 1, dtype=k.dtype)
    term1 = (k * l).sum()
    term2 = (ones.T @ k @ ones) * (ones.T @ l @ ones) / ((n - 1) * (n - 2))
    term3 = 2.0 * (ones.T @ k @ l @ ones) / (n - 2)
    return float((term1 + term2 - term3) / (n * (n - 3)))


def topk_overlap(a: torch.Tensor, b: torch.Tensor, k: int = 10) -> float:
    """Mean share of ``a``'s top-``k`` items per row that are in ``b``'s top-``k`` (``(B, n)`` scores)."""
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(
            f"scores must be two equal (B, n_items) tensors, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    kk = min(int(k), a.shape[1])
    ta = a.topk(kk, dim=1).indices
    tb = b.topk(kk, dim=1).indices
    hits = (ta[:, :, None] == tb[:, None, :]).any(-1).float().sum(1)
    return float((hits / kk).mean())


def _flat(t: torch.Tensor) -> torch.Tensor:
    if isinstance(t, (tuple, list)):
        t = t[0]
    return t.detach().reshape(t.shape[0], -1).to("cpu", torch.float64)


@dataclass
class PairHistory:
    """Accumulated statistics of one (student, teacher) layer pair."""

    student: str
    teacher: str
    hsic_xy: float = 0.0
    hsic_xx: float = 0.0
    hsic_yy: float = 0.0
    n_batches: int = 0
    cka_steps: list[float] = field(default_factory=list)
    mse_steps: list[float] = field(default_factory=list)
    student_width: int = 0
    teacher_width: int = 0
    n_rows: int = 0
    moments: dict[str, np.ndarray] = field(default_factory=dict)  # probe sums (float64)

    def add_probe(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Add one batch of student ``x (n, p)`` and teacher ``y (n, q)`` to the probe sums."""
        xs, ys = x.numpy(), y.numpy()
        parts = {"sx": xs.sum(0), "sy": ys.sum(0), "xx": xs.T @ xs, "xy": xs.T @ ys,
                 "yy": ys.T @ ys}  # fmt: skip
        for k, v in parts.items():
            self.moments[k] = self.moments[k] + v if k in self.moments else v
        self.n_rows += int(xs.shape[0])

    @property
    def cka(self) -> float:
        """Minibatch CKA over every step so far (NaN before the first)."""
        den = math.sqrt(max(self.hsic_xx, 0.0) * max(self.hsic_yy, 0.0))
        return self.hsic_xy / den if den > 0 else math.nan

    @property
    def mse(self) -> float | None:
        """Mean hint MSE over the steps (None when the widths differ)."""
        return float(np.mean(self.mse_steps)) if self.mse_steps else None

    def _covariances(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        m, n = self.moments, self.n_rows
        if n < 2 or not m:
            return None
        mx, my = m["sx"] / n, m["sy"] / n
        return (
            m["xx"] / n - np.outer(mx, mx),
            m["xy"] / n - np.outer(mx, my),
            m["yy"] / n - np.outer(my, my),
        )

    @property
    def fit(self) -> float:
        """Share of the teacher layer's variance a linear map of the student layer reproduces
        (least squares with intercept, a 1e-8 relative ridge), in [0, 1]; NaN without data."""
        cov = self._covariances()
        if cov is None:
            return math.nan
        cxx, cxy, cyy = cov
        var_y = float(np.trace(cyy))
        if var_y <= 0:
            return math.nan
        ridge = 1e-8 * max(float(np.trace(cxx)), 1e-12) / cxx.shape[0]
        coef = np.linalg.solve(cxx + ridge * np.eye(cxx.shape[0]), cxy)
        explained = float((cxy * coef).sum())
        return float(min(1.0, max(0.0, explained / var_y)))

    def coverage(self, keep: float = 0.99) -> tuple[float, int, int]:
        """SVCCA coverage: ``(mean squared canonical correlation over the teacher's
        directions, student rank, teacher rank)``.

        The teacher keeps the principal directions that explain ``keep`` of its variance
        (its rank); the student keeps every direction above ``1e-6`` of its largest
        variance (its numerical rank, so a complete but badly conditioned student is not
        truncated). The coverage is the sum of squared canonical correlations divided by
        the teacher's rank: the mean share of each (whitened) teacher direction the
        student reproduces linearly, regardless of how much variance it has. A student
        layer of rank ``r`` covers at most ``r / teacher rank``. NaN without data.
        """
        cov = self._covariances()
        if cov is None:
            return math.nan, 0, 0
        cxx, cxy, cyy = cov
        wx, rx = _whitener(cxx, 1.0)
        wy, ry = _whitener(cyy, keep)
        if rx == 0 or ry == 0:
            return math.nan, rx, ry
        rho = np.linalg.svd(wx.T @ cxy @ wy, compute_uv=False)
        return float((np.clip(rho, 0.0, 1.0) ** 2).sum() / ry), rx, ry


def _whitener(c: np.ndarray, keep: float, rel_tol: float = 1e-6) -> tuple[np.ndarray, int]:
    """``(W, k)``: ``W (d, k)`` maps onto the top-``k`` principal directions (``keep`` of the
    variance, none below ``rel_tol`` of the largest), scaled to unit variance."""
    evals, evecs = np.linalg.eigh((c + c.T) / 2)
    evals, evecs = evals[::-1].clip(min=0), evecs[:, ::-1]
    total = float(evals.sum())
    if total <= 0:
        return np.zeros((c.shape[0], 0)), 0
    k = min(int(np.searchsorted(np.cumsum(evals) / total, keep - 1e-12) + 1), c.shape[0])
    k = min(k, int((evals > rel_tol * evals[0]).sum()))
    return evecs[:, :k] / np.sqrt(evals[:k]), k


class DistillationTracker:
    """Track how well ``student`` mimics ``teacher`` per mapped layer pair.

    Args:
        teacher: the teacher module.
        student: the student module.
        pairs: ``{student_module_name: teacher_module_name}`` (names as in
            ``named_modules()``).
        cka_threshold: a pair whose CKA is below this is flagged (default 0.6).
        relative_gap: a pair whose CKA is this far below the best pair's is flagged too
            (default 0.1): the student mimics that layer worse than the others.
        window: recent steps whose per-batch CKA is kept for the trend (default 200).
        coverage_threshold: a pair whose SVCCA coverage (:meth:`PairHistory.coverage`) is
            below this is flagged (default 0.5).
        max_probe_width: the probe is kept for layers up to this width (default 1024; its
            sums are ``width x width``).

    Call :meth:`step` after the teacher and the student ran forward on the same batch;
    :meth:`reset` (for example before the last epoch) keeps the statistics of the trained
    student rather than an average over training.
    """

    def __init__(
        self,
        teacher: nn.Module,
        student: nn.Module,
        pairs: Mapping[str, str],
        *,
        cka_threshold: float = 0.6,
        relative_gap: float = 0.1,
        window: int = 200,
        coverage_threshold: float = 0.5,
        max_probe_width: int = 1024,
    ) -> None:
        if not pairs:
            raise ValueError("pairs must map at least one student layer to a teacher layer")
        s_mods, t_mods = dict(student.named_modules()), dict(teacher.named_modules())
        for s, t in pairs.items():
            if s not in s_mods:
                raise KeyError(
                    f"student has no module {s!r}; modules: {sorted(k for k in s_mods if k)}"
                )
            if t not in t_mods:
                raise KeyError(
                    f"teacher has no module {t!r}; modules: {sorted(k for k in t_mods if k)}"
                )
        self.pairs = dict(pairs)
        self.cka_threshold = float(cka_threshold)
        self.relative_gap = float(relative_gap)
        self.window = int(window)
        self.coverage_threshold = float(coverage_threshold)
        self.max_probe_width = int(max_probe_width)
        self.history = {s: PairHistory(s, t) for s, t in self.pairs.items()}
        self._out: dict[tuple[str, str], torch.Tensor] = {}
        self._handles = []
        for s, t in self.pairs.items():
            self._handles.append(s_mods[s].register_forward_hook(self._hook(("student", s))))
            self._handles.append(t_mods[t].register_forward_hook(self._hook(("teacher", t))))
        self.overlap: float | None = None

    def _hook(self, key: tuple[str, str]) -> Any:
        def hook(_m: nn.Module, _inp: Any, out: Any) -> None:
            self._out[key] = out[0] if isinstance(out, (tuple, list)) else out

        return hook

    def step(self) -> dict[str, float]:
        """Add the latest captured batch of every pair; return ``{student layer: batch CKA}``."""
        out = {}
        for s, t in self.pairs.items():
            xs, xt = self._out.get(("student", s)), self._out.get(("teacher", t))
            if xs is None or xt is None:
                raise RuntimeError(
                    f"no captured output for pair {s!r} -> {t!r}; run both models forward first"
                )
            x, y = _flat(xs), _flat(xt)
            if x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"pair {s!r} -> {t!r}: batch sizes differ ({x.shape[0]} vs {y.shape[0]})"
                )
            h = self.history[s]
            if x.shape[0] >= 4:
                k, l = x @ x.T, y @ y.T  # noqa: E741
                xy, xx, yy = hsic1(k, l), hsic1(k, k), hsic1(l, l)
                h.hsic_xy += xy
                h.hsic_xx += xx
                h.hsic_yy += yy
                h.n_batches += 1
                batch = xy / math.sqrt(xx * yy) if xx > 0 and yy > 0 else math.nan
                h.cka_steps = (h.cka_steps + [batch])[-self.window :]
                out[s] = batch
            h.student_width, h.teacher_width = int(x.shape[1]), int(y.shape[1])
            if max(x.shape[1], y.shape[1]) <= self.max_probe_width:
                h.add_probe(x, y)
            if x.shape[1] == y.shape[1]:
                h.mse_steps = (h.mse_steps + [float((x - y).pow(2).mean())])[-self.window :]
        self._out.clear()
        return out

    def reset(self) -> None:
        """Forget accumulated statistics (keep the hooks)."""
        self.history = {s: PairHistory(s, t) for s, t in self.pairs.items()}

    def final_overlap(
        self, teacher_scores: torch.Tensor, student_scores: torch.Tensor, k: int = 10
    ) -> float:
        """Record and return the top-``k`` overlap of final scores (see :func:`topk_overlap`)."""
        self.overlap = topk_overlap(teacher_scores, student_scores, k)
        return self.overlap

    def summary(self) -> dict[str, Any]:
        """Per pair: CKA, hint MSE, batches; and the final top-K overlap."""
        return {
            "pairs": {
                s: {
                    "teacher": h.teacher,
                    "cka": h.cka,
                    "fit": h.fit,
                    "coverage": h.coverage()[0],
                    "student_rank": h.coverage()[1],
                    "teacher_rank": h.coverage()[2],
                    "hint_mse": h.mse,
                    "n_batches": h.n_batches,
                    "student_width": h.student_width,
                    "teacher_width": h.teacher_width,
                }
                for s, h in self.history.items()
            },
            "topk_overlap": self.overlap,
        }

    def findings(self) -> list[Finding]:
        """One ``DISTILLATION_GAP`` finding naming the pairs the student mimics worst, or none.

        A pair is flagged when its SVCCA coverage is below ``coverage_threshold`` or more
        than ``relative_gap`` below the best pair's, or its CKA is (``cka_threshold``,
        ``relative_gap``). Flagged pairs are ordered by coverage (CKA where none was
        measured), worst first; the subject is the worst. ``evidence["action"]`` is the
        remedy: ``"widen"`` when the worst pair's student representation has a lower
        rank than the teacher's (a capacity limit; ``evidence["target"]`` is then the
        narrowest flagged layer that is narrower than its teacher, else the worst one),
        otherwise ``"hint_loss"`` on the worst pair (the information is there but not in
        the teacher's geometry).
        """
        cka = {s: h.cka for s, h in self.history.items() if math.isfinite(h.cka)}
        cov = {s: h.coverage() for s, h in self.history.items()}
        fit = {s: h.fit for s, h in self.history.items()}
        score = {s: c[0] for s, c in cov.items() if math.isfinite(c[0])}

        def weak(values: dict[str, float], threshold: float) -> set[str]:
            best = max(values.values(), default=math.nan)
            return {
                s
                for s, c in values.items()
                if c < threshold or (len(values) > 1 and c < best - self.relative_gap)
            }

        flagged = weak(cka, self.cka_threshold) | weak(score, self.coverage_threshold)
        if not flagged:
            return []
        order = sorted(flagged, key=lambda s: (score.get(s, cka.get(s, 0.0)), cka.get(s, 0.0)))
        worst = order[0]
        _, s_rank, t_rank = cov[worst]
        target = worst
        if 0 < s_rank < t_rank:
            action = "widen"
            narrow = [
                s
                for s in order
                if 0 < self.history[s].student_width < self.history[s].teacher_width
            ]
            if narrow:
                target = min(narrow, key=lambda s: self.history[s].student_width)
        else:
            action = "hint_loss"
        th = self.history[target]

        def describe(s: str) -> str:
            c = f", coverage {score[s]:.2f}" if s in score else ""
            return f"{s} (CKA {cka.get(s, math.nan):.2f}{c} vs teacher {self.history[s].teacher})"

        def rounded(v: float) -> float | None:
            return round(v, 4) if math.isfinite(v) else None

        evidence: dict[str, float | int | str | bool | None] = {
            "worst_layer": worst,
            "worst_cka": rounded(cka.get(worst, math.nan)),
            "worst_coverage": rounded(score.get(worst, math.nan)),
            "student_rank": s_rank,
            "teacher_rank": t_rank,
            "action": action,
            "target": target,
            "student_width": th.student_width,
            "teacher_width": th.teacher_width,
            "cka_threshold": self.cka_threshold,
            "coverage_threshold": self.coverage_threshold,
            "relative_gap": self.relative_gap,
            "n_flagged": len(order),
            "topk_overlap": self.overlap,
        }
        for s in self.history:
            evidence[f"{s}/cka"] = rounded(cka.get(s, math.nan))
            evidence[f"{s}/coverage"] = rounded(score.get(s, math.nan))
            evidence[f"{s}/fit"] = rounded(fit[s])
        value = score.get(worst, cka.get(worst, 0.0))
        threshold = self.coverage_threshold if worst in score else self.cka_threshold
        remedy = (
            f"widen {target} to the teacher's width ({th.teacher_width}): the student's "
            f"representation has rank {s_rank} against the teacher's {t_rank}"
            if action == "widen"
            else f"add a hint loss from {worst} to {self.history[worst].teacher}"
        )
        finding = make_finding(
            FindingType.DISTILLATION_GAP,
            subject=worst,
            premise=(
                f"The student fails to mimic its teacher at {', '.join(map(describe, order))}; "
                f"first step: {remedy}."
            ),
            confidence=float(min(1.0, max(0.0, (threshold - value) / threshold + 0.5))),
            evidence=evidence,
            sample_ids=tuple(order),
        )
        return [finding]

    def to_report(self) -> Report:
        """A ``distillation`` report with :meth:`summary` and :meth:`findings`."""
        return Report(
            kind="distillation", subject="student", stats=self.summary(), findings=self.findings()
        )

    def detach(self) -> None:
        """Remove the forward hooks."""
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def __enter__(self) -> DistillationTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()
