"""Bit allocation under a byte budget and the baseline methods at equal bytes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradtracer.compress import BudgetError, allocate, methods, table_costs


def _tables() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(120, 16, generator=g), torch.randn(200, 16, generator=g)


def test_allocation_meets_budget_and_beats_uniform_error() -> None:
    u, i = _tables()
    budget = methods.fp32_bytes(u, i) // 8
    model = methods.mixed(u, i, budget)
    assert model.nbytes() <= budget
    uniform = methods.uniform(u, i, "int2")  # the uniform precision that fits 8x at d=16
    assert uniform.nbytes() <= budget

    def err(m):  # noqa: ANN001, ANN202
        return float(
            ((m.user_table.dequantize() - u) ** 2).sum()
            + ((m.item_table.dequantize() - i) ** 2).sum()
        )

    # exactly at the budget the allocation may be uniform itself, never worse
    assert err(model) <= err(uniform)
    roomier = methods.mixed(u, i, methods.fp32_bytes(u, i) // 6)
    assert err(roomier) < err(uniform)


def test_weights_move_bits_to_heavy_rows() -> None:
    u, _ = _tables()
    w = np.ones(120)
    w[:10] = 1000.0
    costs = [table_costs("user", u, ("fp16", "int8", "int4", "int2", "drop"), weights=w)]
    plan = allocate(costs, 120 * 20)
    heavy, light = plan["user"][:10], plan["user"][10:]
    rank = {"fp16": 0, "int8": 1, "int4": 2, "int2": 3, "drop": 4}
    assert max(rank[p] for p in heavy) <= min(rank[p] for p in light)


def test_budget_that_cannot_be_met() -> None:
    u, i = _tables()
    with pytest.raises(BudgetError, match="cannot be met"):
        methods.mixed(u, i, 100, precisions=("int8", "int4"))
    with pytest.raises(BudgetError, match="no rank-1"):
        methods.score_svd(u, i, 10)


def test_baselines_fit_their_budget() -> None:
    u, i = _tables()
    budget = methods.fp32_bytes(u, i) // 8
    norms_u, norms_i = u.norm(dim=1).numpy(), i.norm(dim=1).numpy()
    for model in (
        methods.prune(u, i, budget, user_signal=norms_u, item_signal=norms_i),
        methods.table_svd(u, i, budget),
        methods.score_svd(u, i, budget, precision="int4"),
        methods.mixed(u, i, budget, metric="score"),
    ):
        assert 0 < model.nbytes() <= budget


def test_score_svd_is_the_best_low_rank_score_matrix() -> None:
    u, i = _tables()
    uf, vf = methods.score_factors(u, i, 16)
    assert torch.allclose(uf @ vf.T, u @ i.T, atol=1e-3)
    uf4, vf4 = methods.score_factors(u, i, 4)
    s = torch.linalg.svdvals((u @ i.T).double())
    best = float((s[4:] ** 2).sum())
    got = float(((uf4 @ vf4.T - u @ i.T).double() ** 2).sum())
    assert got == pytest.approx(best, rel=1e-3)
