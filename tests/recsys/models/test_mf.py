"""Implicit MF: protocol defaults, losses, sparse optimizers, determinism, hook, save/load."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
import torch

from gradtracer.recsys.data import Interactions
from gradtracer.recsys.metrics import evaluate_topk
from gradtracer.recsys.models import ImplicitMF, MFTrainConfig, Recommender, train_mf


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny batches: one torch thread is fastest (and restored afterwards)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _two_groups(n_users: int = 40, n_items: int = 20) -> Interactions:
    """Even users like items 0..9, odd users like items 10..19 (each user all but one)."""
    rows = []
    for u in range(n_users):
        base = 0 if u % 2 == 0 else n_items // 2
        for j in range(n_items // 2):
            if j != u % (n_items // 2):
                rows.append((u, base + j))
    users, items = zip(*rows, strict=True)
    frame = pl.DataFrame({"user": users, "item": items, "rating": 1.0, "timestamp": 0})
    return Interactions.from_raw(
        frame.with_columns(
            pl.col("user").cast(pl.Utf8).str.zfill(3), pl.col("item").cast(pl.Utf8).str.zfill(3)
        )
    )


@pytest.fixture(scope="module")
def groups() -> Interactions:
    return _two_groups()


def test_published_protocol_defaults():
    model = ImplicitMF(10, 20)
    config = MFTrainConfig()
    assert model.n_factors == 32 and model.init_std == 0.01
    assert (config.loss, config.n_negatives, config.batch_size) == ("bce", 4, 256)
    std = model.item_emb.weight.std().item()
    assert 0.007 < std < 0.013


@pytest.mark.filterwarnings("ignore:Sparse invariant checks:UserWarning")  # torch's Adagrad
@pytest.mark.parametrize(
    ("loss", "optimizer", "sparse"),
    [
        ("bce", "adam", False),
        ("bpr", "adam", False),
        ("bce", "sparse_adam", True),
        ("bpr", "adagrad", True),
        ("bce", "sgd", True),
        ("bce", "adamw", False),
    ],
)
def test_learns_planted_groups(groups, loss, optimizer, sparse):
    model = ImplicitMF(groups.n_users, groups.n_items, n_factors=8, sparse=sparse, init_std=0.1)
    lr = {"sgd": 50.0, "adagrad": 0.5}.get(optimizer, 0.05)
    config = MFTrainConfig(
        loss=loss,
        optimizer=optimizer,
        learning_rate=lr,
        n_epochs=30,
        batch_size=64,
        weight_decay=1e-4,
    )
    losses = train_mf(model, groups, config)
    assert losses[-1] < losses[0]
    # each user's one unseen in-group item must be ranked first among its 11 unseen items
    held_out = [(u, (0 if u % 2 == 0 else 10) + u % 10) for u in range(groups.n_users)]
    rows, cols = zip(*held_out, strict=True)
    test = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(groups.n_users, 20))
    res = evaluate_topk(model, test, exclude=groups.user_items(), ks=(1,))
    assert res.mean["hr@1"] >= 0.9


def test_deterministic_for_a_seed(groups):
    def run(seed):
        model = ImplicitMF(groups.n_users, groups.n_items, n_factors=4, random_state=seed)
        losses = train_mf(model, groups, MFTrainConfig(n_epochs=2, random_state=seed))
        return losses, model.item_emb.weight.detach().clone()

    la, wa = run(3)
    lb, wb = run(3)
    lc, wc = run(4)
    assert la == lb and torch.equal(wa, wb)
    assert not torch.equal(wa, wc)


def test_on_backward_sees_gradients_before_step(groups):
    model = ImplicitMF(groups.n_users, groups.n_items, n_factors=4)
    seen = []

    def hook(loss: float) -> None:
        grad = model.item_emb.weight.grad
        seen.append((loss, grad is not None and bool(grad.abs().sum() > 0)))
        # weights not yet updated by this step: the grad is of the current weights
        assert model.item_emb.weight.grad is not None

    config = MFTrainConfig(n_epochs=2, batch_size=100)
    train_mf(model, groups, config, on_backward=hook)
    n_batches = 2 * int(np.ceil(len(groups) / 100))
    assert len(seen) == n_batches
    assert all(has_grad and loss > 0 for loss, has_grad in seen)


def test_invalid_configurations():
    with pytest.raises(ValueError, match="'hinge'"):
        MFTrainConfig(loss="hinge")
    with pytest.raises(ValueError, match="n_negatives must be a positive int, got 0"):
        MFTrainConfig(n_negatives=0)
    with pytest.raises(ValueError, match="learning_rate"):
        MFTrainConfig(learning_rate=-1.0)
    with pytest.raises(ValueError, match="n_factors"):
        ImplicitMF(3, 3, n_factors=0)
    data = _two_groups(4, 4)
    with pytest.raises(ValueError, match="cannot update sparse"):
        train_mf(ImplicitMF(4, 4, sparse=True), data, MFTrainConfig(optimizer="adam"))
    with pytest.raises(ValueError, match="needs ImplicitMF"):
        train_mf(ImplicitMF(4, 4), data, MFTrainConfig(optimizer="sparse_adam"))
    with pytest.raises(ValueError, match="do not fit a model of 2 users"):
        train_mf(ImplicitMF(2, 4), data)


def test_save_load_roundtrip_and_interface(tmp_path, groups):
    model = ImplicitMF(groups.n_users, groups.n_items, n_factors=4, random_state=1)
    train_mf(model, groups, MFTrainConfig(n_epochs=1))
    assert isinstance(model, Recommender)
    model.save(tmp_path / "mf")
    assert sorted(p.name for p in (tmp_path / "mf").iterdir()) == ["arrays.npz", "model.json"]
    loaded = ImplicitMF.load(tmp_path / "mf")
    np.testing.assert_array_equal(loaded.score([0, 5]), model.score([0, 5]))
    seen = groups.user_items()
    recs = model.recommend([0, 1], k=5, exclude=seen)
    assert recs.shape == (2, 5)
    for row, u in zip(recs, (0, 1), strict=True):
        assert not set(row.tolist()) & set(seen[u].indices.tolist())
    test = sp.csr_matrix(np.eye(groups.n_users, groups.n_items, dtype=np.float32))
    a = evaluate_topk(model, test)
    b = evaluate_topk(model.scorer(), test)
    assert a.mean == b.mean
    with pytest.raises(ValueError, match="k must be an int"):
        model.recommend([0], k=0)
