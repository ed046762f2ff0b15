"""QuantizationAdvisor: choose and explain a compression plan for a byte budget.

For a budget the advisor builds every candidate plan that fits (uniform precision,
mixed precision allocated under each row signal and metric, low-rank score
factorisations stored row-wise at each precision, in two-scale tables (1-byte row
exponent, fp16 column scales) at 2-8 bits with each tower refitted to the other's
quantized factors, or
with per-row precisions (rare rows dropped) at 1-2x the uniform rank, L2-norm and
frequency row pruning with the kept rows at fp32/int8/int4, per-table SVD with
fp32/int8/int4 factors), scores each one, and keeps the best under a selection rule
(:data:`SELECTION_RULES`, :func:`select_plan`):

- ``"fidelity_plus_validation"`` (default with a ``validate`` callable): the sum of
  the standardized fidelity (below) and the standardized validation NDCG@10 over all
  candidates (weights :data:`COMBINED_FIDELITY_WEIGHT` and one minus it); equal sums
  go to the lower score error. Both signals are noisy in different ways (fidelity
  cannot see a plan that ranks better than the float model, one held-out item per user
  cannot separate close plans), so neither alone decides.
- ``"fidelity_validation"``: the
  :data:`SHORTLIST` plans most faithful to the float model's rankings (fidelity below),
  then the best of those on validation NDCG@10.
- ``"fidelity"`` (default without one): NDCG@50 of each plan's top-50 against the float
  model's top-50 for every user, training items excluded
  (:func:`~gradtracer.compress.fidelity.topk_fidelity`). It reads no held-out data.
- ``"validation"``: validation NDCG@10 from the ``validate`` callable (one held-out
  item per user; the earlier default).
- ``"score_error"``: the relative squared error of the dot-product scores on a sample
  of users.

The default won a split-half comparison (pick on half of the validation users, judge
the pick on the other half; docs/compression.md): one held-out item per user is too
noisy a judge among ~30 plans, and fidelity alone cannot see a plan that ranks better
than the float model. Every rule's score is recorded for every candidate that it can be
computed for.

The recipe records every candidate with its score, the winning method, and which
signal drove each table's decision, so a reader can see when the dynamics-aware
signal lost to a plain one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from gradtracer.compress import methods
from gradtracer.compress.allocate import BudgetError
from gradtracer.compress.model import CompressedMF
from gradtracer.compress.recipe import Recipe, describe_model
from gradtracer.compress.rowwise import packed_width
from gradtracer.compress.saliency import ROW_SIGNALS, layer_saliency, row_saliency

__all__ = [
    "SELECTION_KEYS",
    "SELECTION_RULES",
    "SHORTLIST",
    "QuantizationAdvisor",
    "select_plan",
    "dense_layer_advice",
    "score_error",
]

Validate = Callable[[CompressedMF], float]

#: Least-squares refit rounds of the two-scale score-SVD candidates
#: (:func:`~gradtracer.compress.methods.refit_quantized`).
TWO_SCALE_REFIT = 3
#: Plan-selection rules of :class:`QuantizationAdvisor`.
SELECTION_RULES: tuple[str, ...] = (
    "fidelity_plus_validation",
    "fidelity_validation",
    "fidelity",
    "validation",
    "score_error",
)
#: Weight of the standardized fidelity in the ``fidelity_plus_validation`` rule (the
#: standardized validation NDCG@10 gets one minus it).
COMBINED_FIDELITY_WEIGHT = 0.5
#: Plans the ``fidelity_validation`` rule keeps (most faithful first) before validation.
SHORTLIST = 5
#: Cutoff of the fidelity rule (top-K of the float model reproduced).
FIDELITY_K = 50
#: Recorded score key of each rule (higher is better; the hybrid rule's final key).
SELECTION_KEYS = {
    "fidelity_plus_validation": "valid_ndcg@10",
    "fidelity_validation": "valid_ndcg@10",
    "fidelity": f"fidelity_ndcg@{FIDELITY_K}",
    "validation": "valid_ndcg@10",
    "score_error": "neg_score_error",
}


def score_error(
    model: CompressedMF, user: Any, item: Any, *, n_users: int = 512, random_state: int = 0
) -> float:
    """Relative squared error of the scores on up to ``n_users`` sampled users."""
    u = torch.as_tensor(user).detach().float()
    i = torch.as_tensor(item).detach().float()
    rng = np.random.default_rng(random_state)
    rows = torch.from_numpy(
        np.sort(rng.choice(u.shape[0], size=min(n_users, u.shape[0]), replace=False))
    )
    exact = u[rows] @ i.T
    approx = model.scorer()(rows)
    return float(((approx - exact) ** 2).sum() / (exact**2).sum().clamp_min(1e-30))


def select_plan(scores: Sequence[Mapping[str, Any]], rule: str) -> int:
    """Index of the plan ``rule`` (one of :data:`SELECTION_RULES`) picks from per-plan
    recorded scores (the keys of :data:`SELECTION_KEYS`; higher is better; the first of
    equal scores wins).

    >>> s = [{"fidelity_ndcg@50": f, "valid_ndcg@10": v}
    ...      for f, v in [(0.9, 0.1), (0.8, 0.3), (0.1, 0.9), (0.7, 0.2), (0.6, 0.2), (0.5, 0.2)]]
    >>> select_plan(s, "fidelity"), select_plan(s, "validation"), select_plan(s, "fidelity_validation")
    (0, 2, 1)
    >>> select_plan(s, "fidelity_plus_validation")
    1
    """
    if rule not in SELECTION_RULES:
        raise ValueError(f"rule must be one of {SELECTION_RULES}, got {rule!r}")
    if not scores:
        raise ValueError("no plans to select from")
    fid = SELECTION_KEYS["fidelity"]
    if rule == "fidelity_plus_validation":
        return _combined_pick(scores)
    if rule == "fidelity_validation":
        order = sorted(range(len(scores)), key=lambda j: -float(scores[j][fid]))
        short = order[:SHORTLIST]
        key = SELECTION_KEYS["validation"]
        return max(short, key=lambda j: (float(scores[j][key]), -short.index(j)))
    key = SELECTION_KEYS[rule]
    return max(range(len(scores)), key=lambda j: (float(scores[j][key]), -j))


def _standardized(values: Sequence[float]) -> np.ndarray:
    """(x - mean) / std over the plans; zeros where all values are equal."""
    x = np.asarray(values, dtype=np.float64)
    sd = float(x.std())
    return np.zeros_like(x) if sd <= 0.0 else (x - x.mean()) / sd


def _combined_pick(scores: Sequence[Mapping[str, Any]]) -> int:
    """The ``fidelity_plus_validation`` pick (see the module docstring)."""
    w = COMBINED_FIDELITY_WEIGHT
    fid = _standardized([float(s[SELECTION_KEYS["fidelity"]]) for s in scores])
    val = _standardized([float(s[SELECTION_KEYS["validation"]]) for s in scores])
    total = w * fid + (1.0 - w) * val
    err = [float(s.get(SELECTION_KEYS["score_error"], 0.0)) for s in scores]
    return max(range(len(scores)), key=lambda j: (round(float(total[j]), 12), err[j], -j))


def dense_layer_advice(
    tracker_or_snapshots: Any, *, keep_share: float = 0.25
) -> list[dict[str, Any]]:
    """Per-layer precision advice for dense layers from FlowTracker saliency.

    The most salient ``keep_share`` of layers stay ``fp16``, the rest ``int8``; layers
    with a latest gradient SNR below 0.1 (updates mostly noise) may go to ``int8`` even
    when salient. Each entry names the layer, the precision and the signal values that
    drove it. This is a rule, not a measured plan.
    """
    scores = layer_saliency(tracker_or_snapshots)
    snaps = (
        tracker_or_snapshots.snapshots()
        if hasattr(tracker_or_snapshots, "snapshots")
        else tracker_or_snapshots
    )
    snr = {s.name: float(s.snr) for s in snaps}
    n_keep = max(1, int(round(keep_share * len(scores)))) if scores else 0
    out = []
    for rank, (name, score) in enumerate(scores.items()):
        salient = rank < n_keep and not (np.isfinite(snr.get(name, np.nan)) and snr[name] < 0.1)
        out.append(
            {
                "name": name,
                "precision": "fp16" if salient else "int8",
                "driver": "layer saliency (update ratio x gradient SNR)",
                "saliency": float(score),
                "snr": snr.get(name),
            }
        )
    return out


class QuantizationAdvisor:
    """Plans the compression of a two-table dot-product model.

    Args:
        user: float user table ``(n_users, d)``.
        item: float item table ``(n_items, d)``.
        user_stats, item_stats: per-row tracker columns
            (:func:`~gradtracer.compress.saliency.row_stats_of`); without them only the
            ``uniform`` and ``magnitude`` signals are used.
        signals: row signals tried in the mixed allocation (default all available).
        validate: ``model -> quality`` on validation data (higher is better); needed by
            ``selection="validation"``, recorded for every plan when given.
        dense_layers: optional FlowTracker (or snapshots) for per-layer advice.
        selection: one of :data:`SELECTION_RULES` (default ``"fidelity_plus_validation"``
            with ``validate``, ``"fidelity"`` without).
        exclude: ``(n_users, n_items)`` sparse matrix of items the fidelity rule never
            ranks (the training items; default none).
        fidelity_users: users the fidelity rule compares (default all); an int samples
            that many with ``random_state``.
        random_state: seed of the user samples (fidelity and score error).
    """

    def __init__(
        self,
        user: Any,
        item: Any,
        *,
        user_stats: Mapping[str, np.ndarray] | None = None,
        item_stats: Mapping[str, np.ndarray] | None = None,
        signals: Sequence[str] | None = None,
        validate: Validate | None = None,
        dense_layers: Any = None,
        selection: str | None = None,
        exclude: Any = None,
        fidelity_users: int | None = None,
        random_state: int = 0,
    ) -> None:
        self.user = torch.as_tensor(user).detach().to("cpu", torch.float32)
        self.item = torch.as_tensor(item).detach().to("cpu", torch.float32)
        if self.user.ndim != 2 or self.item.ndim != 2 or self.user.shape[1] != self.item.shape[1]:
            raise ValueError(
                f"user and item tables must be (n, d) with one d, got {tuple(self.user.shape)} and {tuple(self.item.shape)}"
            )
        have_stats = user_stats is not None and item_stats is not None
        default = ROW_SIGNALS if have_stats else ("uniform", "magnitude")
        self.signals = tuple(signals) if signals is not None else default
        for s in self.signals:
            if s not in ROW_SIGNALS:
                raise ValueError(f"unknown signal {s!r}; choose from {ROW_SIGNALS}")
            if s not in ("uniform", "magnitude") and not have_stats:
                raise ValueError(f"signal {s!r} needs user_stats and item_stats")
        self.user_stats, self.item_stats = user_stats, item_stats
        if selection is None:
            selection = "fidelity_plus_validation" if validate is not None else "fidelity"
        if selection not in SELECTION_RULES:
            raise ValueError(f"selection must be one of {SELECTION_RULES}, got {selection!r}")
        if selection in ("validation", "fidelity_validation", "fidelity_plus_validation") and (
            validate is None
        ):
            raise ValueError(f"selection={selection!r} needs a validate callable")
        n_users = int(self.user.shape[0])
        if exclude is not None:
            import scipy.sparse as sp

            if not sp.issparse(exclude) or exclude.shape != (n_users, int(self.item.shape[0])):
                raise ValueError(
                    f"exclude must be a sparse ({n_users}, {int(self.item.shape[0])}) matrix, "
                    f"got {type(exclude).__name__} of shape {getattr(exclude, 'shape', None)}"
                )
            exclude = sp.csr_matrix(exclude)
        if fidelity_users is not None and (
            isinstance(fidelity_users, bool)
            or not isinstance(fidelity_users, int)
            or fidelity_users < 1
        ):
            raise ValueError(
                f"fidelity_users must be a positive int or None, got {fidelity_users!r}"
            )
        if fidelity_users is None or fidelity_users >= n_users:
            self._fid_users = np.arange(n_users)
        else:
            rng = np.random.default_rng(random_state)
            self._fid_users = np.sort(rng.choice(n_users, size=fidelity_users, replace=False))
        self.selection = selection
        self.exclude = exclude
        self.random_state = random_state
        self.validate = validate
        self.dense_layers = dense_layers
        self.fp32_bytes = methods.fp32_bytes(self.user, self.item)
        self._baseline: float | None = None

    def weights(self, signal: str) -> tuple[np.ndarray, np.ndarray]:
        """Row weights of both tables under ``signal``."""
        return (
            row_saliency(signal, weight=self.user, stats=self.user_stats),
            row_saliency(signal, weight=self.item, stats=self.item_stats),
        )

    def candidates(self, budget_bytes: int) -> list[tuple[str, dict[str, Any], CompressedMF]]:
        """Every plan that fits ``budget_bytes``: ``(label, params, model)``."""
        u, i = self.user, self.item
        out: list[tuple[str, dict[str, Any], CompressedMF]] = []
        d = u.shape[1]
        n = u.shape[0] + i.shape[0]
        fitting = [
            p for p in ("fp16", "int8", "int4", "int2") if n * packed_width(p, d) <= budget_bytes
        ]
        if fitting:
            out.append(("uniform", {"precision": fitting[0]}, methods.uniform(u, i, fitting[0])))
        for metric in ("identity", "score"):
            for signal in self.signals:
                if metric == "identity" and signal != "uniform":
                    continue
                wu, wi = self.weights(signal)
                try:
                    model = methods.mixed(
                        u, i, budget_bytes, user_weights=wu, item_weights=wi, metric=metric
                    )
                except BudgetError:
                    continue
                out.append(("mixed", {"signal": signal, "metric": metric}, model))
        for p in ("fp16", "int8", "int4", "int2"):
            try:
                model = methods.score_svd(u, i, budget_bytes, precision=p)
            except BudgetError:
                continue
            out.append(("score_svd", {"precision": p, "rank": model.info["rank"]}, model))
        for bits in sorted(methods.TWO_SCALE_BITS, reverse=True):
            try:
                model = methods.score_svd_twoscale(
                    u, i, budget_bytes, bits=bits, refit=TWO_SCALE_REFIT
                )
            except BudgetError:
                continue
            params_ts = {"bits": bits, "rank": model.info["rank"], "refit": TWO_SCALE_REFIT}
            out.append(("score_svd_twoscale", params_ts, model))
        for rank in methods.mixed_ranks(n, d, budget_bytes):
            try:
                model = methods.score_svd_mixed(u, i, budget_bytes, rank=rank)
            except BudgetError:
                continue
            out.append(("score_svd_mixed", {"rank": rank}, model))
        prune_signals = {"l2norm": ("magnitude", "magnitude")}
        if self.user_stats is not None and self.item_stats is not None:
            prune_signals["frequency"] = ("frequency", "frequency")
        for label, (su, si) in prune_signals.items():
            sig_u = row_saliency(su, weight=u, stats=self.user_stats)
            sig_i = row_saliency(si, weight=i, stats=self.item_stats)
            for p in ("fp32", "int8", "int4"):
                try:
                    model = methods.prune_quantize(
                        u, i, budget_bytes, user_signal=sig_u, item_signal=sig_i, precision=p
                    )
                except BudgetError:
                    continue
                params: dict[str, Any] = {"signal": label}
                if p != "fp32":
                    params["precision"] = p
                out.append(("prune", params, model))
        for p in ("fp32", "int8", "int4"):
            try:
                model = methods.table_svd(u, i, budget_bytes, precision=p)
            except BudgetError:
                continue
            out.append(("table_svd", {"precision": p, "ranks": model.info["ranks"]}, model))
        # a plan whose fixed overhead (index maps, fallback rows) alone exceeds a tiny budget
        # is built over it: such a plan does not fit
        smallest = min((m.nbytes() for _, _, m in out), default=None)
        out = [(lbl, prm, m) for lbl, prm, m in out if m.nbytes() <= budget_bytes]
        if not out:
            least = "" if smallest is None else f"; the smallest plan built needs {smallest} bytes"
            raise BudgetError(
                f"no plan fits {budget_bytes} bytes ({self.fp32_bytes / budget_bytes:.0f}x smaller "
                f"than the {self.fp32_bytes}-byte float32 tables){least}"
            )
        return out

    def fidelity(self, model: CompressedMF) -> float:
        """Mean NDCG@:data:`FIDELITY_K` of ``model``'s rankings against the float model's."""
        from gradtracer.compress.fidelity import scores_fn, topk_fidelity

        k = min(FIDELITY_K, int(self.item.shape[0]))
        if self.exclude is not None:
            k = min(k, int(self.item.shape[0] - np.diff(self.exclude.indptr).max()))
        per_user = topk_fidelity(
            scores_fn((self.user, self.item)),
            scores_fn(model),
            self._fid_users,
            k=max(k, 1),
            exclude=self.exclude,
        )
        return float(per_user.mean())

    def scores(self, model: CompressedMF) -> dict[str, float]:
        """Every rule's score of ``model`` that can be computed (keys of the recipe)."""
        out = {SELECTION_KEYS["fidelity"]: self.fidelity(model)}
        if self.validate is not None:
            out[SELECTION_KEYS["validation"]] = float(self.validate(model))
        out[SELECTION_KEYS["score_error"]] = -score_error(
            model, self.user, self.item, random_state=self.random_state
        )
        return out

    def advise(
        self,
        budget_bytes: int,
        plans: Sequence[tuple[str, dict[str, Any], CompressedMF]] | None = None,
    ) -> Recipe:
        """The best plan within ``budget_bytes``, as a :class:`Recipe`.

        ``plans`` (default: :meth:`candidates` of the budget) lets a caller that also
        measures every candidate build them once; plans over the budget are refused.
        """
        if (
            isinstance(budget_bytes, bool)
            or not isinstance(budget_bytes, (int, np.integer))
            or budget_bytes <= 0
        ):
            raise ValueError(f"budget_bytes must be a positive int, got {budget_bytes!r}")
        budget_bytes = int(budget_bytes)
        if plans is None:
            plans = self.candidates(budget_bytes)
        over = [
            (lbl, prm) for lbl, prm, m in plans if lbl != "uniform" and m.nbytes() > budget_bytes
        ]
        if over:
            raise ValueError(f"plans over the budget of {budget_bytes} bytes: {over}")
        if not plans:
            raise BudgetError(f"no plan fits {budget_bytes} bytes")
        key = SELECTION_KEYS[self.selection]
        all_scores = [self.scores(model) for _, _, model in plans]
        pick = select_plan(all_scores, self.selection)
        # the chosen plan first, then the rest by the rule's key
        scored = [
            (sc[key], label, params, model, sc)
            for j, (sc, (label, params, model)) in enumerate(zip(all_scores, plans))
            if j != pick
        ]
        scored.sort(key=lambda t: -t[0])
        first = plans[pick]
        scored.insert(0, (all_scores[pick][key], first[0], first[1], first[2], all_scores[pick]))
        best_q, label, params, model, best_scores = scored[0]
        if self.validate is not None and self._baseline is None:
            self._baseline = float(self.validate(_identity_model(self.user, self.item)))
        base = self._baseline
        decisions = describe_model(model)
        signal = params.get("signal")
        for name in decisions:
            decisions[name]["driver"] = (
                f"mixed allocation weighted by the {signal} signal, {params.get('metric')} error metric"
                if label == "mixed"
                else f"{label} ({', '.join(f'{k}={v}' for k, v in params.items())})"
            )
        runner_up = next((s for s in scored[1:] if s[1] != label or s[2] != params), None)
        among = (
            f"among the {min(SHORTLIST, len(scored))} plans most faithful to the float model's "
            f"rankings ({SELECTION_KEYS['fidelity']})"
            if self.selection == "fidelity_validation"
            else f"of {len(scored)} plans"
        )
        driver = f"{label} {params} had the best {key} ({best_q:.5g}) {among}"
        if self.selection == "fidelity_plus_validation":
            driver = (
                f"{label} {params} had the best sum of standardized {SELECTION_KEYS['fidelity']} "
                f"and {key} of {len(scored)} plans ({key} {best_q:.5g})"
            )
        if runner_up is not None:
            driver += f"; next: {runner_up[1]} {runner_up[2]} ({runner_up[0]:.5g})"
        mixed_by_signal = {
            s[2]["signal"]: s[0] for s in scored if s[1] == "mixed" and s[2]["metric"] == "score"
        }
        if "dynamics" in mixed_by_signal:
            best_plain = max(
                (v for k, v in mixed_by_signal.items() if k != "dynamics"), default=None
            )
            if best_plain is not None and mixed_by_signal["dynamics"] < best_plain:
                driver += "; the dynamics-aware signal did not beat the plain signals here"
        predicted: dict[str, Any] = {"selected_by": self.selection, **best_scores}
        valid_q = best_scores.get(SELECTION_KEYS["validation"])
        if base is not None and base > 0 and valid_q is not None:
            predicted["fp32_valid_ndcg@10"] = base
            predicted["relative_loss"] = 1.0 - valid_q / base
        recipe = Recipe(
            tables={
                "user": {"n_rows": int(self.user.shape[0]), "dim": int(self.user.shape[1])},
                "item": {"n_rows": int(self.item.shape[0]), "dim": int(self.item.shape[1])},
            },
            budget_bytes=budget_bytes,
            fp32_bytes=self.fp32_bytes,
            method=label,
            params=dict(params),
            decisions=decisions,
            dense_layers=dense_layer_advice(self.dense_layers)
            if self.dense_layers is not None
            else [],
            candidates=[
                {"method": lbl, "params": prm, "bytes": int(m.nbytes()), **sc}
                for _, lbl, prm, m, sc in scored
            ],
            predicted=predicted,
            driver=driver,
        )
        return recipe


def _identity_model(user: torch.Tensor, item: torch.Tensor) -> CompressedMF:
    return methods.uniform(user, item, "fp32")
