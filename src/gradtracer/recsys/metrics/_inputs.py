"""Normalising evaluator inputs: scorers, CSR matrices, user selections, batches of rows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Union

import numpy as np
import scipy.sparse as sp
import torch

#: What evaluators accept as a model: ``(user_factors (n_users, d), item_factors (n_items, d))``
#: as numpy arrays or torch tensors, a callable ``scores(user_idx (B,) LongTensor) -> (B,
#: n_items) Tensor``, or an object with a ``scorer()`` method returning either.
Scorer = Union[tuple[Any, Any], Callable[[torch.Tensor], torch.Tensor], Any]

ScoreFn = Callable[[torch.Tensor], torch.Tensor]


def as_score_fn(scorer: Scorer, n_users: int, n_items: int) -> tuple[ScoreFn, bool]:
    """Return ``(fn, owns_output)``: ``fn(user_idx) -> (B, n_items)`` float scores.

    ``owns_output`` is True when ``fn`` returns a tensor the evaluator may modify; for
    factor pairs it is a buffer reused by the next call, so each result must be used (or
    copied) before the next call.
    """
    method = getattr(scorer, "scorer", None)
    if callable(method):
        scorer = method()
    if isinstance(scorer, (tuple, list)):
        if len(scorer) != 2:
            raise ValueError(
                f"a factor scorer must be a (user_factors, item_factors) pair, got {len(scorer)} items"
            )
        users_f, items_f = (_as_float_tensor(x, name) for x, name in zip(scorer, ("user", "item")))
        if users_f.ndim != 2 or items_f.ndim != 2 or users_f.shape[1] != items_f.shape[1]:
            raise ValueError(
                f"factor shapes must be (n_users, d) and (n_items, d); got user "
                f"{tuple(users_f.shape)} and item {tuple(items_f.shape)}"
            )
        if users_f.shape[0] != n_users or items_f.shape[0] != n_items:
            raise ValueError(
                f"factors are for {users_f.shape[0]} users x {items_f.shape[0]} items but the "
                f"test matrix is {n_users} x {n_items}"
            )
        if users_f.dtype != items_f.dtype:  # float32 with float64: score in float64
            users_f, items_f = users_f.double(), items_f.double()
        items_t = items_f.t()
        # One output buffer for every call: a fresh multi-MB result per call is mapped and
        # page-faulted anew each time, which costs more than the product itself (3x at
        # MovieLens-100K scale). Callers use each result before asking for the next.
        buf: list[torch.Tensor] = []

        def factor_scores(idx: torch.Tensor) -> torch.Tensor:
            u = users_f[idx.to(users_f.device)]  # (B, d)
            if not buf or buf[0].shape[0] < u.shape[0]:
                buf[:] = [torch.empty((u.shape[0], n_items), dtype=u.dtype, device=u.device)]
            return torch.mm(u, items_t, out=buf[0][: u.shape[0]])  # (B, d) @ (d, n_items)

        return factor_scores, True
    if callable(scorer):

        def call_scores(idx: torch.Tensor) -> torch.Tensor:
            out = scorer(idx)
            if not isinstance(out, torch.Tensor):
                out = torch.as_tensor(np.asarray(out))
            if out.shape != (idx.shape[0], n_items):
                raise ValueError(
                    f"scorer returned shape {tuple(out.shape)} for {idx.shape[0]} users; "
                    f"expected ({idx.shape[0]}, {n_items})"
                )
            return out if out.is_floating_point() else out.to(torch.float32)

        return call_scores, False
    raise TypeError(
        "scorer must be a (user_factors, item_factors) pair, a callable "
        f"scores(user_idx) -> (B, n_items), or have a scorer() method; got {type(scorer).__name__}"
    )


def _as_float_tensor(x: Any, name: str) -> torch.Tensor:
    t = x.detach() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    if not t.is_floating_point():
        raise TypeError(f"{name} factors must be floating point, got {t.dtype}")
    return t if t.dtype in (torch.float32, torch.float64) else t.to(torch.float32)


def as_csr(matrix: Any, name: str, shape: tuple[int, int] | None = None) -> sp.csr_matrix:
    """Return canonical CSR (sorted indices, no duplicates, no explicit zeros).

    The input is returned as is when it already is canonical; otherwise a fixed copy.
    """
    if not sp.issparse(matrix):
        raise TypeError(f"{name} must be a scipy sparse matrix, got {type(matrix).__name__}")
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {matrix.shape}")
    if shape is not None and matrix.shape != shape:
        raise ValueError(f"{name} has shape {matrix.shape} but the test matrix has shape {shape}")
    if matrix.format == "csr" and matrix.has_canonical_format and np.all(matrix.data != 0):
        return matrix
    out = sp.csr_matrix(matrix, copy=True)
    out.sum_duplicates()
    out.eliminate_zeros()
    out.sort_indices()
    return out


def select_users(
    test: sp.csr_matrix, users: Sequence[int] | np.ndarray | None
) -> tuple[np.ndarray, int]:
    """Return ``(users with >= 1 held-out item, number skipped for having none)``."""
    counts = np.diff(test.indptr)
    if users is None:
        candidates = np.arange(test.shape[0], dtype=np.int64)
    else:
        candidates = np.unique(np.asarray(users, dtype=np.int64))
        if candidates.size and (candidates[0] < 0 or candidates[-1] >= test.shape[0]):
            raise ValueError(
                f"users must be in [0, {test.shape[0]}), got min {candidates[0]}, max {candidates[-1]}"
            )
    keep = counts[candidates] > 0
    return candidates[keep], int((~keep).sum())


def take_rows(matrix: sp.csr_matrix, rows: np.ndarray) -> sp.csr_matrix:
    """Rows of a CSR matrix; a cheap slice when ``rows`` is a contiguous ascending range."""
    if rows.size and rows[-1] - rows[0] + 1 == rows.size:
        if rows.size == matrix.shape[0]:
            return matrix
        return matrix[int(rows[0]) : int(rows[-1]) + 1]
    return matrix[rows]


def flat_positions(block: sp.csr_matrix) -> torch.Tensor:
    """Return int64 positions ``row * n_cols + col`` of a CSR block's stored entries."""
    counts = np.diff(block.indptr)
    rows = np.repeat(np.arange(block.shape[0], dtype=np.int64) * block.shape[1], counts)
    return torch.from_numpy(rows + block.indices)


def row_coords(block: sp.csr_matrix) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(rows, cols)`` int64 tensors of the stored entries of a CSR block."""
    counts = np.diff(block.indptr)
    rows = np.repeat(np.arange(block.shape[0], dtype=np.int64), counts)
    return torch.from_numpy(rows), torch.from_numpy(block.indices.astype(np.int64))


def padded_rows(block: sp.csr_matrix, fill: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(indices (B, R_max) padded with fill, counts (B,))`` of a CSR block."""
    counts = np.diff(block.indptr).astype(np.int64)
    width = max(int(counts.max(initial=0)), 1)
    out = np.full((block.shape[0], width), fill, dtype=np.int64)
    rows = np.repeat(np.arange(block.shape[0]), counts)
    cols = np.arange(block.nnz) - np.repeat(block.indptr[:-1], counts)
    out[rows, cols] = block.indices
    return torch.from_numpy(out), torch.from_numpy(counts)
