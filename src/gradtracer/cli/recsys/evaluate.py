"""``gradtracer recsys evaluate`` and ``recommend``: load a saved model directory and use it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from gradtracer.cli.recsys._shared import _SPLITS_DIR, _eval_row, _parse_ints, _remove, _table

__all__ = ["_evaluate", "_load_model", "_load_split_dir", "_ranking_evaluation", "_recommend"]


def _load_model(model_dir: Path) -> Any:
    """The model saved in ``model_dir`` (any registered kind; the directory must be complete)."""
    from gradtracer.durable import require_complete
    from gradtracer.recsys.models import load_model
    from gradtracer.recsys.models.artifact import is_artifact

    if model_dir.is_dir():
        require_complete(model_dir)
        if not is_artifact(model_dir):
            raise FileNotFoundError(
                f"{model_dir / 'model.json'}: missing (not a model directory; train one first)"
            )
    return load_model(model_dir)


def _load_split_dir(model_dir: Path, name: str, model: Any) -> Any:
    """Saved split ``name`` with the id maps of ``model`` (or of the saved train split)."""
    from gradtracer.recsys.data import Interactions

    path = model_dir / _SPLITS_DIR / name
    if not (path / "interactions.parquet").is_file():
        return None
    ix = Interactions.load(path)
    if hasattr(model, "user_ids"):
        return Interactions(ix.frame, model.user_ids, model.item_ids, ix.source)
    return ix


def _ranking_evaluation(
    model: Any, heldout: Any, mask: Any, cutoffs: tuple[int, ...], split: str
) -> Any:
    """CF-style result (ranking metrics only) of a model without rating predictions."""
    import time

    import numpy as np

    from gradtracer.findings import metric_key
    from gradtracer.recsys.cf import RANKING_METRICS, CFEvaluation
    from gradtracer.recsys.cf.evaluate import usable_ks
    from gradtracer.recsys.metrics import evaluate_topk

    start = time.perf_counter()
    target = heldout.user_items()
    target.data[:] = 1.0
    seen = target.multiply(mask).tocsr()
    target = (target - seen).tocsr()
    target.eliminate_zeros()
    if target.nnz == 0:
        raise ValueError(f"{heldout.source}: no held-out row of the {split} split is unseen")
    ks = usable_ks(cutoffs, target.shape[1])
    result = evaluate_topk(
        model, target, exclude=mask, ks=ks, metrics=RANKING_METRICS, progress=False
    )
    keys = [metric_key(m, k) for m in RANKING_METRICS for k in ks]
    info = {"heldout_rows": int(heldout.frame.height), "seen_target_pairs": int(seen.nnz)}
    return CFEvaluation(
        split=split,
        n_factors=int(getattr(model, "n_factors", 0)),
        rmse=float("nan"),
        accuracy=float("nan"),
        n_ratings=0,
        mean={k: float(result.mean[k]) for k in keys},
        per_user={k: np.asarray(result.per_user[k]) for k in keys},
        users=np.asarray(result.users),
        info=info,
        seconds=time.perf_counter() - start,
    )


def _evaluate(model_dir: Path, ks: str, as_json: bool) -> None:
    from gradtracer.durable import atomic_write_json
    from gradtracer.recsys.cf import CFModel, evaluate, plot_valid_vs_test

    model = _load_model(model_dir)
    cutoffs = _parse_ints(ks, "--ks")
    test = _load_split_dir(model_dir, "test", model)
    if test is None:
        test_dir = model_dir / _SPLITS_DIR / "test"
        raise FileNotFoundError(f"{test_dir}: no saved test split (train or tune the model first)")
    valid = _load_split_dir(model_dir, "valid", model)
    results = []
    if isinstance(model, CFModel):
        if valid is not None:
            results.append(evaluate(model, valid, ks=cutoffs, split="valid"))
        results.append(evaluate(model, test, ks=cutoffs, exclude=valid, split="test"))
    else:
        train = _load_split_dir(model_dir, "train", model)
        if train is None:
            raise FileNotFoundError(f"{model_dir / _SPLITS_DIR / 'train'}: no saved train split")
        mask = train.user_items()
        mask.data[:] = 1.0
        if valid is not None:
            results.append(_ranking_evaluation(model, valid, mask, cutoffs, "valid"))
            extra = valid.user_items()
            mask = ((mask + extra) > 0).astype("float32").tocsr()
        results.append(_ranking_evaluation(model, test, mask, cutoffs, "test"))
    # metrics.json is written last: when it exists, the figure beside it is of the same run
    for name in ("metrics.json", "valid_vs_test.png", "valid_vs_test.svg"):
        _remove(model_dir / name)
    if valid is not None:
        plot_valid_vs_test(results[0], results[1], model_dir / "valid_vs_test.png")
    document = [r.to_dict() for r in results]
    atomic_write_json(model_dir / "metrics.json", document)
    if as_json:
        typer.echo(json.dumps(document, indent=2, sort_keys=True))
        return
    name = model.config.solver if isinstance(model, CFModel) else model.kind
    size = f", n_factors={model.n_factors}" if hasattr(model, "n_factors") else ""
    typer.echo(f"{name}{size}, model {model_dir}")
    typer.echo(_table([_eval_row(r) for r in results]))


def _recommend(user: str, k: int, model_dir: Path, as_json: bool) -> None:
    from gradtracer.recsys.cf import CFModel
    from gradtracer.recsys.models import RawIdRecommender

    model = _load_model(model_dir)
    if isinstance(model, CFModel):
        raw = model.raw()
    else:
        train = _load_split_dir(model_dir, "train", model)
        if train is None:
            raise FileNotFoundError(f"{model_dir / _SPLITS_DIR / 'train'}: no saved train split")
        seen = train.user_items()
        raw = RawIdRecommender(
            model, train.user_ids, train.item_ids, seen=seen, source=train.source
        )
    recs = raw.recommend(user, k)
    if as_json:
        typer.echo(json.dumps(recs.to_dict()))
        return
    typer.echo(
        _table(
            [
                {"rank": r + 1, "item_id": i, "score": float(s)}
                for r, (i, s) in enumerate(zip(recs.item_ids, recs.scores, strict=True))
            ]
        )
    )
