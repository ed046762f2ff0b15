"""Next-item evaluation over every position of every test session, full ranking.

For each test session ``i_1 .. i_n`` a model sees ``i_1 .. i_t`` and ranks the whole
catalog for the target ``i_{t+1}``, for every ``t = 1 .. n-1``. Ranks use the conservative
tie rule of :func:`gradtracer.recsys.metrics.ranks.target_ranks` (a target tied with
other items is ranked below all of them); metric values come from
:func:`~gradtracer.recsys.metrics.ranks.metrics_from_ranks`. Per-prediction arrays are
ordered by the target's event position, so two models evaluated on the same
:class:`SessionArrays` give aligned arrays for paired significance tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from gradtracer.recsys.sessions.batching import SessionArrays, iterate_session_parallel

if TYPE_CHECKING:
    from gradtracer.recsys.models.next_item import NextItemRecommender, NextItemScorer

__all__ = ["DEFAULT_KS", "NextItemResult", "compare_next_item", "evaluate_next_item"]

#: Cut-offs of the session study (Recall@K, MRR@K, NDCG@K).
DEFAULT_KS: tuple[int, ...] = (5, 10, 20)
_REPORTED = ("recall", "mrr", "ndcg")


@dataclass
class NextItemResult:
    """Per-prediction results of one model on one test set.

    Attributes:
        model: model name.
        ranks: ``(P,)`` int64 1-based conservative rank of each target.
        target_events: ``(P,)`` int64 event position of each target in the test arrays
            (sorted ascending; the alignment key between models).
        positions: ``(P,)`` int64 1-based position of the target inside its session
            (1 = predicting the second event from the first).
        per_position: metric key (``"recall@20"``) -> ``(P,)`` float64 values.
        mean: metric key -> mean over all predictions.
        ks: the cut-offs.
    """

    model: str
    ranks: np.ndarray
    target_events: np.ndarray
    positions: np.ndarray
    per_position: dict[str, np.ndarray]
    ks: tuple[int, ...]
    mean: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        self.mean = {
            k: float(v.mean()) if len(v) else float("nan") for k, v in self.per_position.items()
        }

    @property
    def n_predictions(self) -> int:
        return len(self.ranks)

    def to_dict(self, *, per_position: bool = False) -> dict[str, Any]:
        """JSON-ready dict (means; per-prediction arrays as lists when asked)."""
        out: dict[str, Any] = {
            "model": self.model,
            "n_predictions": self.n_predictions,
            "ks": list(self.ks),
            "mean": dict(sorted(self.mean.items())),
        }
        if per_position:
            out["ranks"] = self.ranks.tolist()
            out["target_events"] = self.target_events.tolist()
        return out

    def save(self, path: str | Path) -> Path:
        """Write ``ranks``, ``target_events`` and ``positions`` as an ``.npz`` file (atomically).

        ``.npz`` is appended when ``path`` has another suffix, as ``np.savez`` does.
        Returns the path written.
        """
        from gradtracer.durable import atomic_savez

        p = Path(path)
        if p.suffix != ".npz":
            p = p.with_name(p.name + ".npz")
        return atomic_savez(
            p,
            ranks=self.ranks,
            target_events=self.target_events,
            positions=self.positions,
            ks=np.asarray(self.ks),
            model=np.asarray(self.model),
        )

    @classmethod
    def load(cls, path: str | Path) -> NextItemResult:
        """Read a result written by :meth:`save` (metrics are recomputed from the ranks).

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a result file (names the file and the missing arrays).
        """
        from gradtracer.recsys.metrics.ranks import metrics_from_ranks
        from gradtracer.recsys.models.artifact import load_arrays

        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such result file (write it with evaluate --out)")
        z = load_arrays(p, required=("ranks", "target_events", "positions", "ks", "model"))
        ks = tuple(int(k) for k in z["ks"])
        ranks = z["ranks"]
        return cls(
            str(z["model"]),
            ranks,
            z["target_events"],
            z["positions"],
            _keep(metrics_from_ranks(ranks, ks)),
            ks,
        )


def _keep(metrics: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v for k, v in metrics.items() if k.split("@")[0] in _REPORTED}


def evaluate_next_item(
    model: NextItemScorer | NextItemRecommender,
    test: SessionArrays,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 512,
    name: str | None = None,
) -> NextItemResult:
    """Return :class:`NextItemResult` of ``model`` on every next-item prediction in ``test``.

    Args:
        model: a next-item model (its :meth:`scorer` is evaluated) or a scorer, anything
            with ``n_items``, ``init_state(B)`` and ``advance(state, batch)``.
        test: test sessions in the model's item space (unseen items already filtered).
        ks: cut-offs, ints in ``[1, n_items]`` (default 5, 10, 20).
        batch_size: sessions scored in parallel (memory ``batch_size * n_items`` floats).
        name: model name in the result (default: the model's ``name`` attribute).

    Scores stay on the device the model returns them on (GRU4Rec: its parameters' device).

    Raises:
        ValueError: another item space, no predictions, a cut-off outside the catalog, or
            NaN scores (they would drop out of the ranking and inflate every metric).
    """
    from gradtracer.recsys.metrics.ranks import metrics_from_ranks, target_ranks

    scorer: NextItemScorer = model.scorer() if hasattr(model, "scorer") else model
    label = str(name or getattr(model, "name", type(model).__name__))
    if test.n_items != scorer.n_items:
        raise ValueError(
            f"test sessions use an item space of {test.n_items} items, model has {scorer.n_items}"
        )
    if test.n_predictions == 0:
        raise ValueError("test split has no session with two or more events (0 predictions)")
    ks = _check_ks(ks, scorer.n_items)
    ranks, events = [], []
    state = scorer.init_state(min(batch_size, test.n_sessions))
    with torch.no_grad():
        for batch in iterate_session_parallel(test, batch_size):
            scores, state = scorer.advance(state, batch)
            nan_rows = torch.isnan(scores).any(dim=1)
            if bool(nan_rows.any()):
                rows = nan_rows.nonzero().flatten().cpu()
                event = int(batch.target_events[rows[0]])
                raise ValueError(
                    f"{label} scored NaN for {len(rows)} of {batch.size} predictions "
                    f"(first at test event {event}); NaN scores cannot be ranked"
                )
            targets = batch.targets.to(scores.device)
            ranks.append(target_ranks(scores, targets, ties="conservative").cpu())
            events.append(batch.target_events)
    rank_arr = torch.cat(ranks).numpy().astype(np.int64)
    event_arr = torch.cat(events).numpy().astype(np.int64)
    order = np.argsort(event_arr, kind="stable")
    rank_arr, event_arr = rank_arr[order], event_arr[order]
    session_of = np.searchsorted(test.offsets, event_arr, side="right") - 1
    positions = event_arr - test.offsets[session_of]
    return NextItemResult(
        model=label,
        ranks=rank_arr,
        target_events=event_arr,
        positions=positions,
        per_position=_keep(metrics_from_ranks(rank_arr, ks)),
        ks=ks,
    )


def _check_ks(ks: Sequence[int], n_items: int) -> tuple[int, ...]:
    """Return the cut-offs as ints; ``ValueError`` naming one outside ``[1, n_items]``."""
    out = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n_items:
            raise ValueError(
                f"cut-off K={k!r} must be an int in [1, {n_items}] (the catalog has {n_items} items)"
            )
        out.append(int(k))
    if not out:
        raise ValueError("ks is empty; give at least one cut-off")
    return tuple(out)


def compare_next_item(
    a: NextItemResult, b: NextItemResult, *, metrics: Sequence[str] = ("recall@20", "mrr@20")
) -> dict[str, dict[str, Any]]:
    """Return paired tests of ``a`` vs ``b`` per metric over aligned predictions.

    H0 of the paired t-test: the mean per-prediction difference ``a - b`` is zero; H0 of
    the Wilcoxon signed-rank test: the differences are symmetric around zero. Both
    results must come from the same test arrays (same ``target_events``).
    """
    from gradtracer.recsys import stats

    if not np.array_equal(a.target_events, b.target_events):
        raise ValueError(
            f"results of {a.model!r} and {b.model!r} are not aligned "
            f"({a.n_predictions} vs {b.n_predictions} predictions); evaluate both on the same split"
        )
    out: dict[str, dict[str, Any]] = {}
    for key in metrics:
        x, y = a.per_position[key], b.per_position[key]
        t = stats.paired_ttest(x, y)
        w = stats.wilcoxon(x, y)
        out[key] = {
            "mean_a": float(x.mean()),
            "mean_b": float(y.mean()),
            "diff": float(x.mean() - y.mean()),
            "ttest_p": float(t.p_value),
            "wilcoxon_p": float(w.p_value),
            "ttest_verdict": t.verdict,
            "effect_size": float(t.effect_size),
        }
    return out
