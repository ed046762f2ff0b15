"""Session models and the study under failure: kill -9 mid-save, old layouts, interrupted runs, NaN."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from gradtracer.durable import IncompleteOutputError
from gradtracer.recsys.models.artifact import ArtifactError
from gradtracer.recsys.models.gru4rec import GRU4Rec, GRU4RecConfig, train_gru4rec
from gradtracer.recsys.models.markov import MarkovChain
from gradtracer.recsys.models.next_item import (
    NextItemRecommender,
    TrainingHooks,
    score_prefixes,
)
from gradtracer.recsys.models.registry import load_model, register_model
from gradtracer.recsys.models.session_popularity import SessionPopularity
from gradtracer.recsys.sessions import evaluate_next_item
from gradtracer.recsys.sessions.study import (
    SessionStudyConfig,
    load_study_results,
    run_study,
)

SMALL = dict(layers=(16,), batch_size=16, n_sample=32, n_epochs=1, random_state=3)

CHILD = textwrap.dedent(
    """
    import sys
    import torch
    from gradtracer.recsys.models.gru4rec import GRU4Rec, GRU4RecConfig

    torch.set_num_threads(1)
    models = [GRU4Rec(20000, GRU4RecConfig(layers=(64,), random_state=s)) for s in (1, 2)]
    models[0].save(sys.argv[1])
    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        models[i % 2].save(sys.argv[1])
    """
)


def test_kill_during_save_leaves_the_previous_or_the_new_model(tmp_path):
    """SIGKILL a process that saves two models in turn into one directory, at random moments."""
    candidates = [
        GRU4Rec(20000, GRU4RecConfig(layers=(64,), random_state=s)).output_emb.weight
        for s in (1, 2)
    ]
    rng = np.random.default_rng(0)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for round_ in range(3):
        d = tmp_path / f"model{round_}"
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(d)], stdout=subprocess.PIPE, env=env, text=True
        )
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
            time.sleep(float(rng.uniform(0.05, 0.8)))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        loaded = load_model(d)
        assert isinstance(loaded, GRU4Rec)
        weight = loaded.output_emb.weight
        assert any(torch.equal(weight, c) for c in candidates), f"round {round_}: a mixed model"
        # a later save over whatever the kill left behaves normally
        GRU4Rec(20000, GRU4RecConfig(layers=(64,), random_state=2)).save(d)
        assert torch.equal(load_model(d).output_emb.weight, candidates[1])


def _legacy_save(model: NextItemRecommender, directory) -> None:
    """Write ``model`` the way releases before ``kind`` did (model.json "model" + own npz)."""
    directory.mkdir(parents=True)
    if isinstance(model, SessionPopularity):
        meta, name, arrays = {"n_items": model.n_items}, "counts.npz", {"counts": model.counts}
    elif isinstance(model, MarkovChain):
        coo = model.transitions.tocoo()
        meta = {"n_items": model.n_items, "alpha": model.alpha}
        name, arrays = (
            "markov.npz",
            dict(row=coo.row, col=coo.col, data=coo.data, counts=model.counts),
        )
    else:
        config = model.config.to_dict()
        config["embedding"] = config.pop("embedding_dim")  # the old spelling
        meta = {"n_items": model.n_items, "config": config}
        name = "weights.npz"
        arrays = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    (directory / "model.json").write_text(json.dumps({"model": model.name, **meta}))
    np.savez(directory / name, **arrays)


def test_old_layouts_still_load_and_are_rewritten_in_the_new_one(
    tmp_path, train_arrays, test_arrays
):
    gru = GRU4Rec(train_arrays.n_items, GRU4RecConfig(**SMALL, dropout_p_hidden=0.2))
    models = [
        SessionPopularity(train_arrays.n_items).fit(train_arrays),
        MarkovChain(train_arrays.n_items, 0.3).fit(train_arrays),
        gru.fit(train_arrays),
    ]
    for model in models:
        d = tmp_path / model.name
        _legacy_save(model, d)
        loaded = load_model(d)
        assert type(loaded) is type(model)
        assert np.array_equal(
            evaluate_next_item(loaded, test_arrays).ranks,
            evaluate_next_item(model, test_arrays).ranks,
        )
        loaded.save(d)  # the new layout replaces the old arrays file
        meta = json.loads((d / "model.json").read_text())
        assert meta["kind"] == model.kind and meta["format_version"] == 2
        assert sorted(p.name for p in d.iterdir()) == ["arrays.npz", "model.json"]


def test_unreadable_artifacts_are_named(tmp_path, train_arrays):
    model = SessionPopularity(train_arrays.n_items).fit(train_arrays)
    d = model.save(tmp_path / "pop")
    meta = json.loads((d / "model.json").read_text())
    (d / "model.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ArtifactError, match="format_version 99 is newer"):
        SessionPopularity.load(d)
    model.save(d)
    (d / "arrays.npz").write_bytes((d / "arrays.npz").read_bytes()[:40])
    with pytest.raises(ArtifactError, match=r"arrays\.npz: cannot read the arrays"):
        load_model(d)
    with pytest.raises(FileNotFoundError, match="missing"):
        load_model(tmp_path)


@register_model("test_session_model_that_fails")
class _FailsWhileFitting(SessionPopularity):
    name = "fails_while_fitting"

    def fit(self, train, *, hooks=None):
        raise RuntimeError("fit failed on purpose")


def test_an_interrupted_study_is_marked_and_leaves_no_stale_models(tmp_path):
    out = tmp_path / "run"
    base = dict(source="synthetic", n_sessions=300, n_items=60, alphas=(0.0,), ks=(5, 10))
    run_study(SessionStudyConfig(**base, models=("markov", "popularity")), out)
    assert load_study_results(out)["models"].keys() == {"markov", "popularity"}
    (out / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError, match="on purpose"):
        run_study(SessionStudyConfig(**base, models=("popularity", "fails_while_fitting")), out)
    with pytest.raises(IncompleteOutputError, match="did not finish"):
        load_study_results(out)
    assert not (out / "models" / "markov").exists()  # the old run's model is gone
    assert not (out / "results.json").exists()
    assert (out / "notes.txt").read_text() == "mine"  # files the study does not write stay
    run_study(SessionStudyConfig(**base, models=("popularity",)), out)
    assert set(load_study_results(out)["models"]) == {"popularity"}
    assert sorted(p.name for p in (out / "models").iterdir()) == ["popularity"]


class _NaNScorer:
    """Popularity scores with NaN at one item that is never a target."""

    def __init__(self, model, item):
        self.inner, self.item, self.n_items = model.scorer(), item, model.n_items

    def init_state(self, batch_size):
        return None

    def advance(self, state, batch):
        scores, _ = self.inner.advance(state, batch)
        scores = scores.clone()
        scores[:, self.item] = float("nan")
        return scores, None


def test_nan_scores_are_refused_even_off_target(train_arrays, test_arrays):
    pop = SessionPopularity(train_arrays.n_items).fit(train_arrays)
    never = np.setdiff1d(np.arange(train_arrays.n_items), test_arrays.items)
    item = int(never[0]) if len(never) else 0
    with pytest.raises(ValueError, match="NaN"):
        evaluate_next_item(_NaNScorer(pop, item), test_arrays)
    with pytest.raises(ValueError, match="NaN after prefix 0"):
        score_prefixes(_NaNScorer(pop, item), [[1]])
    with pytest.raises(ValueError, match=r"cut-off K=200 must be an int in \[1, 199\]"):
        evaluate_next_item(pop, test_arrays, ks=(5, train_arrays.n_items + 1))


def test_fit_and_train_gru4rec_train_identically(train_arrays):
    cfg = GRU4RecConfig(**{**SMALL, "n_epochs": 2, "dropout_p_embed": 0.2, "momentum": 0.1})
    a = GRU4Rec(train_arrays.n_items, cfg)
    epochs, steps = [], []
    a.fit(train_arrays, hooks=TrainingHooks(on_epoch=epochs.append, on_progress=steps.append))
    b = GRU4Rec(train_arrays.n_items, cfg)
    log = train_gru4rec(b, train_arrays)
    assert log.epoch_loss == a.train_log.epoch_loss
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    assert [e.epoch for e in epochs] == [1, 2] and all(e.done for e in epochs)
    assert [e.loss for e in epochs] == log.epoch_loss
    assert steps and all(not s.done and 0 < s.rows < s.total_rows for s in steps)
    assert "epoch 1/2" in epochs[0].line() and "events/s" in epochs[0].line()
