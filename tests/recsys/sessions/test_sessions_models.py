"""Popularity, Markov chain and GRU4Rec on planted-transition sessions; losses; persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradtracer.recsys.models.gru4rec import (
    AdagradMomentum,
    GRU4Rec,
    GRU4RecConfig,
    bpr_max_loss,
    cross_entropy_loss,
    logq_correction,
    train_gru4rec,
)
from gradtracer.recsys.models.markov import MarkovChain, transition_counts
from gradtracer.recsys.models.session_popularity import SessionPopularity
from gradtracer.recsys.sessions import evaluate_next_item

SMALL = dict(layers=(32,), batch_size=32, n_sample=64, n_epochs=2, random_state=3)


@pytest.fixture(scope="module")
def popularity_result(train_arrays, test_arrays):
    return evaluate_next_item(
        SessionPopularity(train_arrays.n_items).fit(train_arrays), test_arrays
    )


def test_markov_beats_popularity(train_arrays, test_arrays, popularity_result):
    markov = evaluate_next_item(MarkovChain(train_arrays.n_items).fit(train_arrays), test_arrays)
    for key in ("recall@20", "mrr@20", "ndcg@10"):
        assert markov.mean[key] > popularity_result.mean[key] + 0.05, key


@pytest.mark.parametrize("loss", ["cross-entropy", "bpr-max"])
def test_gru4rec_beats_popularity_after_short_training(
    loss, train_arrays, test_arrays, popularity_result
):
    model = GRU4Rec(train_arrays.n_items, GRU4RecConfig(loss=loss, **SMALL))
    log = train_gru4rec(model, train_arrays)
    result = evaluate_next_item(model, test_arrays)
    assert result.mean["recall@20"] > popularity_result.mean["recall@20"] + 0.05
    assert result.mean["mrr@20"] > popularity_result.mean["mrr@20"]
    assert all(np.isfinite(log.epoch_loss)) and log.epoch_loss[1] < log.epoch_loss[0]
    assert log.events == train_arrays.n_predictions and log.events_per_second > 0


@pytest.mark.parametrize(
    "changes",
    [
        dict(constrained_embedding=False, embedding_dim=16),
        dict(constrained_embedding=False),
        dict(sparse=False, momentum=0.3),
        dict(n_sample=0, layers=(24, 16)),
    ],
    ids=["separate-embedding", "one-hot-input", "dense-grads-momentum", "in-batch-only-2-layers"],
)
def test_gru4rec_variants_train_and_score(changes, train_arrays, test_arrays):
    cfg = GRU4RecConfig(**{**SMALL, "n_epochs": 1, **changes})
    model = GRU4Rec(train_arrays.n_items, cfg)
    log = train_gru4rec(model, train_arrays)
    assert np.isfinite(log.epoch_loss[0])
    result = evaluate_next_item(model, test_arrays, ks=(20,))
    assert result.n_predictions == test_arrays.n_predictions
    assert set(model.embedding_layers()) == (
        {"output_emb"} if cfg.constrained_embedding else {"item_emb", "output_emb"}
    )


def test_losses_are_finite_and_decrease_under_gradient_steps():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 40, generator=gen, requires_grad=True)
    opt = torch.optim.SGD([logits], lr=0.5)
    for fn in (cross_entropy_loss, lambda x: bpr_max_loss(x, bpreg=0.5, elu_param=0.5)):
        values = []
        for _ in range(20):
            opt.zero_grad()
            loss = fn(logits)
            loss.backward()
            opt.step()
            values.append(float(loss.detach()))
        assert np.all(np.isfinite(values)) and values[-1] < values[0]


def test_cross_entropy_matches_the_definition():
    logits = torch.tensor([[2.0, 0.0, 1.0], [0.5, 1.5, -1.0]])
    expected = -(torch.log_softmax(logits, 1)[0, 0] + torch.log_softmax(logits, 1)[1, 1])
    assert torch.isclose(cross_entropy_loss(logits), expected)


def test_bpr_max_ignores_the_target_column_in_its_negative_weights():
    logits = torch.tensor([[1.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    base = bpr_max_loss(logits, bpreg=0.0, elu_param=0.0)
    # row 0 has two equal negatives: -log(sigmoid(1)); row 1: -log(sigmoid(3))
    expected = -np.log(1 / (1 + np.exp(-1.0))) - np.log(1 / (1 + np.exp(-3.0)))
    assert np.isclose(float(base), expected, atol=1e-6)
    # the regulariser weighs squared negative scores by the same softmax weights
    spread = torch.tensor([[1.0, 0.5, -0.5]])
    w = torch.softmax(torch.tensor([0.5, -0.5]), 0)
    reg = float(bpr_max_loss(spread, bpreg=1.0, elu_param=0.0)) - float(
        bpr_max_loss(spread, bpreg=0.0, elu_param=0.0)
    )
    assert np.isclose(reg, float(w[0] * 0.25 + w[1] * 0.25), atol=1e-6)


def test_logq_correction_subtracts_log_sampling_probability():
    counts = torch.tensor([100.0, 10.0, 1.0, 50.0])
    candidates = torch.tensor([0, 1, 3, 2])  # two in-batch targets, two sampled negatives
    logits = torch.zeros(2, 4)
    out = logq_correction(logits, candidates, 2, counts, sample_alpha=0.5, logq=1.0)
    expected = -torch.log(torch.tensor([100.0, 10.0, 50.0**0.5, 1.0**0.5]))
    assert torch.allclose(out, expected.expand(2, 4))
    # popular candidates are pushed down relative to rare ones
    assert out[0, 0] < out[0, 1]
    half = logq_correction(logits, candidates, 2, counts, sample_alpha=0.5, logq=0.5)
    assert torch.allclose(half, expected * 0.5)
    assert logq_correction(logits, candidates, 2, counts, sample_alpha=0.5, logq=0.0) is logits


def test_adagrad_momentum_sparse_and_dense_updates_agree_on_touched_rows():
    torch.manual_seed(0)
    dense = torch.nn.Embedding(6, 3)
    sparse = torch.nn.Embedding(6, 3, sparse=True)
    sparse.weight.data.copy_(dense.weight.data)
    idx = torch.tensor([1, 4, 4])
    opts = [
        AdagradMomentum(m.parameters(), learning_rate=0.1, momentum=0.5) for m in (dense, sparse)
    ]
    for _ in range(3):
        for m, opt in zip((dense, sparse), opts, strict=True):
            opt.zero_grad()
            m(idx).square().sum().backward()
            opt.step()
    assert torch.allclose(dense.weight[[1, 4]], sparse.weight[[1, 4]], atol=1e-6)
    assert torch.equal(sparse.weight[[0, 2, 3, 5]], dense.weight[[0, 2, 3, 5]])


def test_transition_counts_never_cross_session_boundaries(train_arrays):
    counts = transition_counts(train_arrays)
    assert counts.sum() == train_arrays.n_predictions


def test_markov_alpha_blends_towards_popularity(train_arrays):
    chain = MarkovChain(train_arrays.n_items).fit(train_arrays)
    last = train_arrays.items[:5]
    pop = chain.with_alpha(1.0).scores_after(last)
    assert np.allclose(pop, pop[0])  # ignores the last item
    mid = chain.with_alpha(0.5).scores_after(last)
    assert np.allclose(mid, 0.5 * chain.scores_after(last) + 0.5 * pop)
    with pytest.raises(ValueError, match="alpha"):
        MarkovChain(10, alpha=1.5)


def test_save_load_round_trip_gives_identical_scores(tmp_path, train_arrays, test_arrays):
    models = [
        SessionPopularity(train_arrays.n_items).fit(train_arrays),
        MarkovChain(train_arrays.n_items, 0.25).fit(train_arrays),
    ]
    gru = GRU4Rec(train_arrays.n_items, GRU4RecConfig(**{**SMALL, "n_epochs": 1}))
    train_gru4rec(gru, train_arrays)
    models.append(gru)
    for model in models:
        loaded = type(model).load(model.save(tmp_path / model.name))
        a = evaluate_next_item(model, test_arrays)
        b = evaluate_next_item(loaded, test_arrays)
        assert np.array_equal(a.ranks, b.ranks), model.name
    assert not list(tmp_path.rglob("*.pt")) and not list(tmp_path.rglob("*.pkl"))


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="loss"):
        GRU4RecConfig(loss="top1")
    with pytest.raises(ValueError, match="unknown GRU4Rec parameter"):
        GRU4RecConfig.from_dict({"hidden": 3})
    for bad in (
        dict(n_epochs=0),
        dict(batch_size=2.5),
        dict(learning_rate=float("nan")),
        dict(n_sample=-1),
        dict(logq=-1.0),
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            GRU4RecConfig(**bad)
    # the official parameter files' name of the input embedding size is read too
    assert GRU4RecConfig.from_dict({"embedding": 8}).embedding_dim == 8


def test_training_is_reproducible_from_random_state(train_arrays):
    def weights(seed: int) -> torch.Tensor:
        cfg = GRU4RecConfig(
            **{
                **SMALL,
                "n_epochs": 1,
                "random_state": seed,
                "dropout_p_hidden": 0.3,
                "dropout_p_embed": 0.2,
            }
        )
        model = GRU4Rec(train_arrays.n_items, cfg)
        train_gru4rec(model, train_arrays)
        return model.output_emb.weight.detach().clone()

    assert torch.equal(weights(11), weights(11))
    assert not torch.equal(weights(11), weights(12))


def test_adagrad_momentum_reads_the_deprecated_lr_spelling():
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    with pytest.warns(DeprecationWarning, match="learning_rate"):
        old = AdagradMomentum([a], lr=0.3)
    new = AdagradMomentum([b], learning_rate=0.3)
    for p, opt in ((a, old), (b, new)):
        p.grad = torch.tensor([1.0, -2.0, 0.5])
        opt.step()
    assert torch.equal(a, b) and not torch.equal(a, torch.ones(3))
