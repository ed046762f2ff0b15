"""Choosing a compressed GRU4Rec plan: candidates scored on validation sessions.

:func:`advise_session` builds every plan of
:func:`~gradtracer.compress.session.table_candidates`, scores each on validation
sessions (NDCG@10, or fidelity to the float model's next-item rankings,
:func:`ranking_fidelity`) and returns the
:class:`~gradtracer.compress.session_recipe.SessionRecipe` of the winner.
:func:`split_half_selection` compares selection rules on two halves of the validation
sessions, without touching test data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gradtracer.compress.session import CompressedGRU4Rec, hidden_gram, table_candidates
from gradtracer.compress.session_recipe import (
    SessionRecipe,
    _encode_metric,
    _signal_of,
    describe_table,
    model_signature,
)
from gradtracer.compress.table import LowRankTable
from gradtracer.recsys.models.gru4rec.network import GRU4RecNetwork
from gradtracer.recsys.sessions.batching import SessionArrays

__all__ = [
    "SELECTION_RULES",
    "SessionCandidate",
    "advise_session",
    "ranking_fidelity",
    "session_hidden",
    "session_scores_fn",
    "split_half_selection",
]

#: How :func:`advise_session` ranks candidates: validation NDCG@10, or fidelity to the
#: float model's rankings on validation sessions (see :func:`ranking_fidelity`).
SELECTION_RULES = ("valid_ndcg", "fidelity")


@dataclass
class SessionCandidate:
    """One plan :func:`advise_session` considered, with its validation scores."""

    label: str
    model: CompressedGRU4Rec
    valid_ndcg: float
    fidelity: float | None = None

    def score(self, rule: str) -> float:
        value = self.valid_ndcg if rule == "valid_ndcg" else self.fidelity
        return float("-inf") if value is None else float(value)


def session_hidden(model: Any, sessions: SessionArrays, *, batch_size: int = 256) -> torch.Tensor:
    """``(n_predictions, d)`` top GRU states of ``model`` (GRU4Rec or
    :class:`CompressedGRU4Rec`) at every prediction of ``sessions``, in batching order."""
    from gradtracer.recsys.models.gru4rec.network import adjust_state
    from gradtracer.recsys.sessions.batching import iterate_session_parallel

    state = model.init_state(min(batch_size, max(sessions.n_sessions, 1)))
    out = []
    with torch.no_grad():
        for batch in iterate_session_parallel(sessions, batch_size):
            state = adjust_state(state, batch)
            out.append(model.hidden(batch.inputs, state).to("cpu", torch.float32))
    if not out:
        raise ValueError("sessions have no prediction (every session has one event)")
    return torch.cat(out)


def session_scores_fn(
    model: CompressedGRU4Rec, sessions: SessionArrays
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``prediction index (B,) -> (B, n_items)`` scores of ``model`` at the predictions of
    ``sessions`` (states computed once, scores on demand)."""
    h = session_hidden(model, sessions)
    return lambda idx: model.output_scores(h[idx])


def ranking_fidelity(
    candidate: CompressedGRU4Rec | Callable[[torch.Tensor], torch.Tensor],
    reference: CompressedGRU4Rec | Callable[[torch.Tensor], torch.Tensor],
    sessions: SessionArrays,
    *,
    k: int = 10,
    measure: str = "ndcg",
) -> float:
    """Mean fidelity (0-1) of ``candidate``'s next-item top-``k`` to ``reference``'s over
    every prediction in ``sessions``
    (:func:`~gradtracer.compress.fidelity.topk_fidelity`, ``measure`` ``ndcg``,
    ``overlap`` or ``expected``); no labels are used. Either model may be a
    :func:`session_scores_fn` already built (its GRU states are then not recomputed)."""
    from gradtracer.compress.fidelity import topk_fidelity

    def fn(m: Any) -> Callable[[torch.Tensor], torch.Tensor]:
        return session_scores_fn(m, sessions) if isinstance(m, CompressedGRU4Rec) else m

    ref, cand = fn(reference), fn(candidate)
    per = topk_fidelity(ref, cand, np.arange(sessions.n_predictions), k=k, measure=measure)
    return float(np.mean(per))


def _valid_ndcg(model: Any, sessions: SessionArrays) -> float:
    from gradtracer.recsys.sessions.evaluate import evaluate_next_item

    return float(evaluate_next_item(model, sessions, ks=(10,)).mean["ndcg@10"])


def advise_session(
    model: GRU4RecNetwork,
    train: SessionArrays,
    valid: SessionArrays,
    budget_bytes: int,
    *,
    signals: Mapping[str, np.ndarray] | None = None,
    dense: str | Mapping[str, str] = "fp32",
    select: str = "valid_ndcg",
    fidelity_sessions: SessionArrays | None = None,
    fidelity_k: int = 10,
    fidelity_measure: str = "ndcg",
    metric: np.ndarray | None = None,
    fidelity: bool | None = None,
    candidates: Sequence[SessionCandidate] | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[SessionRecipe, list[SessionCandidate]]:
    """Build every item-table plan within ``budget_bytes``, score each on validation, pick one.

    Args:
        model: the trained float GRU4Rec (constrained embedding: one item table).
        train: training sessions (the score metric, :func:`hidden_gram`).
        valid: validation sessions (NDCG@10 of every candidate).
        budget_bytes: bytes the item table may take.
        signals: ``{name: (n_items,) row importance}`` weighting score-metric allocations
            (``frequency`` also drives frequency pruning).
        dense: GRU matrix precision(s) of every candidate (default fp32).
        select: ``"valid_ndcg"`` (default) or ``"fidelity"``: agreement with the float
            model's rankings (:func:`ranking_fidelity`) on ``fidelity_sessions``
            (default ``valid``), at cut-off ``fidelity_k`` by ``fidelity_measure``.
        metric: the score metric, if already computed.
        fidelity: also measure fidelity when not selecting by it (default: only then).
        candidates: plans already built and scored by an earlier call (same model,
            budget and sessions): only the selection runs.
        progress: called with one line per candidate.

    Returns:
        ``(recipe, candidates)``; the recipe's ``candidates`` list every plan's scores.

    Raises:
        ValueError: an unknown ``select`` rule.
        BudgetError: no plan fits ``budget_bytes``.
    """
    from gradtracer.compress.allocate import BudgetError

    if select not in SELECTION_RULES:
        raise ValueError(f"select must be one of {SELECTION_RULES}, got {select!r}")
    model.eval()
    layers = model.embedding_layers()
    if list(layers) != ["output_emb"]:
        raise ValueError(
            f"advise_session compresses the one item table of a constrained-embedding GRU4Rec; "
            f"this model has {sorted(layers)}"
        )
    g = hidden_gram(model, train) if metric is None else np.asarray(metric, dtype=np.float64)
    w = model.output_emb.weight.detach().to("cpu", torch.float32)
    fp32_bytes = int(w.numel()) * 4
    reference = CompressedGRU4Rec(model, dense=dense, name="float")
    float_ndcg = _valid_ndcg(reference, valid)
    fid_on = valid if fidelity_sessions is None else fidelity_sessions
    want_fid = select == "fidelity" or bool(fidelity)
    ref_fn = session_scores_fn(reference, fid_on) if want_fid and candidates is None else None
    scored: list[SessionCandidate] = list(candidates or [])
    if candidates is None:
        cands = table_candidates(w, int(budget_bytes), metric=g, signals=signals)
        for label, table in cands.items():
            cm = CompressedGRU4Rec(model, {"output_emb": table}, dense=dense, name=label)
            fid = (
                ranking_fidelity(cm, ref_fn, fid_on, k=fidelity_k, measure=fidelity_measure)
                if ref_fn is not None
                else None
            )
            scored.append(SessionCandidate(label, cm, _valid_ndcg(cm, valid), fid))
            if progress is not None:
                progress(
                    f"  {label}: {cm.table_bytes()} bytes, validation NDCG@10 "
                    f"{scored[-1].valid_ndcg:.4f}"
                )
    elif want_fid and any(c.fidelity is None for c in scored):
        raise ValueError("select='fidelity' needs candidates scored with fidelity=True")
    fitting = [c for c in scored if c.model.table_bytes() <= budget_bytes]
    if not fitting:
        smallest = min((c.model.table_bytes() for c in scored), default=None)
        raise BudgetError(
            f"no item-table plan fits {budget_bytes} bytes (smallest plan built: {smallest})"
        )
    ranked = sorted(fitting, key=lambda c: -c.score(select))
    best = ranked[0]
    table = best.model.tables["output_emb"]
    params: dict[str, Any] = {
        "selection": select,
        **({"fidelity": f"{fidelity_measure}@{fidelity_k}"} if select == "fidelity" else {}),
        "metric": "score" if best.label.startswith(("mixed_score", "score_svd")) else "row",
    }
    if isinstance(table, LowRankTable) and best.label.startswith("score_svd"):
        params["score_metric"] = _encode_metric(g)
    runner = (
        f"; second {ranked[1].label} ({ranked[1].score(select):.4f})" if len(ranked) > 1 else ""
    )
    recipe = SessionRecipe(
        model=model_signature(model),
        budget_bytes=int(budget_bytes),
        fp32_bytes=fp32_bytes,
        method=best.label,
        params=params,
        decisions={"output_emb": describe_table(table, best.label)},
        dense_layers=[
            {
                "name": k,
                "precision": p,
                "bytes": int(best.model.dense_tables[k].nbytes()),
                "driver": "given" if p != "fp32" else "kept at float32",
            }
            for k, p in best.model.dense_precision.items()
        ],
        candidates=[
            {
                "method": c.label,
                "bytes": int(c.model.table_bytes()),
                "valid_ndcg@10": c.valid_ndcg,
                **({} if c.fidelity is None else {"fidelity": c.fidelity}),
            }
            for c in scored
        ],
        predicted={
            "valid_ndcg@10": best.valid_ndcg,
            "float_valid_ndcg@10": float_ndcg,
            "relative_loss": (1.0 - best.valid_ndcg / float_ndcg) if float_ndcg > 0 else None,
            **({} if best.fidelity is None else {"fidelity": best.fidelity}),
        },
        driver=(
            f"{best.label} ({_signal_of(best.label)}) has the best {select.replace('_', ' ')} "
            f"({best.score(select):.4f}) of {len(fitting)} plans within the budget{runner}"
        ),
    )
    best.model.info.update({"method": best.label, "recipe_fingerprint": recipe.fingerprint})
    return recipe, scored


# --- choosing the selection rule ------------------------------------------------------
def _parse_rule(rule: str) -> tuple[str, int]:
    if rule == "valid_ndcg":
        return rule, 10
    kind, _, spec = rule.partition(":")
    measure, _, k = spec.partition("@")
    if kind != "fidelity" or not measure or not k.isdigit():
        raise ValueError(
            f"rule must be 'valid_ndcg' or 'fidelity:<measure>@<k>' (e.g. fidelity:ndcg@10), got {rule!r}"
        )
    return measure, int(k)


def split_half_selection(
    model: GRU4RecNetwork,
    train: SessionArrays,
    valid: SessionArrays,
    budgets: Sequence[int],
    *,
    signals: Mapping[str, np.ndarray] | None = None,
    rules: Sequence[str] = ("valid_ndcg", "fidelity:ndcg@10", "fidelity:overlap@10"),
    random_state: int = 0,
    metric: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Compare plan-selection rules on validation data alone, by split halves.

    The validation sessions are cut at random into two halves. For each budget every
    plan of :func:`~gradtracer.compress.session.table_candidates` is scored on both
    halves; each rule picks a plan on one half, and the pick's NDCG@10 on the **other**
    half, relative to the float model's there, is the rule's outcome (both directions).
    The ``oracle`` rows are the best plan of the other half (an upper bound).

    Args:
        model: the trained float GRU4Rec.
        train: training sessions (the score metric).
        valid: validation sessions (split in two; test data is never touched).
        budgets: item-table byte budgets.
        signals: row signals for the weighted allocations.
        rules: ``valid_ndcg`` or ``fidelity:<measure>@<k>`` (measures of
            :func:`ranking_fidelity`).
        random_state: seed of the session split.
        metric: the score metric, if already computed.

    Returns:
        One row per (budget, direction, rule): ``budget``, ``direction`` (``A->B`` or
        ``B->A``), ``rule``, ``picked``, ``change`` (relative NDCG@10 on the other half).
    """
    from gradtracer.compress.session import subset_sessions

    parsed = {r: _parse_rule(r) for r in rules}
    rng = np.random.default_rng(random_state)
    first = rng.permutation(valid.n_sessions) % 2 == 0
    halves = {"A": subset_sessions(valid, first), "B": subset_sessions(valid, ~first)}
    g = hidden_gram(model, train) if metric is None else np.asarray(metric, dtype=np.float64)
    w = model.output_emb.weight.detach().to("cpu", torch.float32)
    ref = CompressedGRU4Rec(model, name="float")
    ref_fns = {h: session_scores_fn(ref, s) for h, s in halves.items()}
    base = {h: _valid_ndcg(ref, s) for h, s in halves.items()}
    out: list[dict[str, Any]] = []
    for budget in budgets:
        scores: list[dict[Any, Any]] = []
        for label, table in table_candidates(w, int(budget), metric=g, signals=signals).items():
            cm = CompressedGRU4Rec(model, {"output_emb": table}, name=label)
            if cm.table_bytes() > budget:
                continue
            entry: dict[Any, Any] = {"label": label}
            for h, s in halves.items():
                entry[("valid_ndcg", h)] = _valid_ndcg(cm, s)
                cand = session_scores_fn(cm, s)  # the GRU pass once per half, for every rule
                for r, (measure, k) in parsed.items():
                    if r != "valid_ndcg":
                        entry[(r, h)] = ranking_fidelity(cand, ref_fns[h], s, k=k, measure=measure)
            scores.append(entry)
        for pick_on, judge_on in (("A", "B"), ("B", "A")):
            for r in [*rules, "oracle"]:
                key = ("valid_ndcg", judge_on) if r == "oracle" else (r, pick_on)
                best = max(scores, key=lambda e, key=key: e[key])  # type: ignore[misc]
                out.append(
                    {
                        "budget": int(budget),
                        "direction": f"{pick_on}->{judge_on}",
                        "rule": r,
                        "picked": best["label"],
                        "change": best[("valid_ndcg", judge_on)] / base[judge_on] - 1.0
                        if base[judge_on] > 0
                        else float("nan"),
                    }
                )
    return out
