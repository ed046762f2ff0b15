"""Per-row tracker state kept as a few packed tensors on the layer's own device.

Layout (per row, default 32-bit direction sketch): 8 int32 words = 32 bytes, i.e. 12.5% of
a float32 row of dimension 64 and 25% at dimension 32. Exposure, last-seen step (with the
zombie flag in its top bit), the agree/disagree pair counts (16 bits each), four float32
EMAs and the sketch word live in one ``(N, 7 + words)`` int32 tensor
(:attr:`RowState.packed`), so a row's state is one aligned half cache line and the
per-step update is one row gather and one row scatter.

The previous gradient direction of each row is stored as a sign sketch (SimHash,
Charikar 2002): ``bits = sign(g @ P)`` with a fixed Gaussian ``P`` of shape
``(dim, n_bits)``. For two vectors at angle ``theta`` each bit differs with probability
``theta / pi``, so ``cos(pi * hamming / n_bits)`` estimates their cosine; the angle's
standard error is ``pi * sqrt(p (1 - p) / n_bits)``: at most 0.28 rad for the default 32
bits (0.20 rad for 64), and the sign of the cosine (all the oscillation counts use) is
exact for exact reversals.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from gradtracer.embedding.evidence import RowEvidence

__all__ = [
    "COUNT_MAX",
    "FloatCol",
    "IntCol",
    "RowState",
    "SignSketch",
    "decode_ints",
    "encode_ints",
]


class IntCol:
    """Column indices of :attr:`RowState.ints` (int32)."""

    EXPOSURE = 0  # steps in which the row was touched
    LAST_SEEN = 1  # last step (1-based) in which the row was touched, 0 = never
    N_AGREE = 2  # consecutive-exposure gradient pairs with positive cosine
    N_DISAGREE = 3  # ... with negative cosine
    ZOMBIE = 4  # 1 when the row was judged a zombie at its last touch
    COUNT = 5


class FloatCol:
    """Column indices of :attr:`RowState.floats` (float32)."""

    VELOCITY = 0  # EMA of the L2 norm of the row's actual displacement per touched step
    GRAD_NORM = 1  # EMA of the L2 norm of the row's gradient
    COS = 2  # EMA of the cosine between consecutive gradients of the row
    GRAD_PEAK = 3  # running maximum of GRAD_NORM
    COUNT = 4


_POPCOUNT = torch.tensor([bin(i).count("1") for i in range(256)], dtype=torch.int16)


class SignSketch:
    """Fixed random sign projection of ``dim``-vectors to ``n_bits`` bits (packed uint8)."""

    def __init__(
        self, dim: int, n_bits: int = 32, *, seed: int = 0, device: torch.device | str = "cpu"
    ) -> None:
        if n_bits <= 0 or n_bits % 8:
            raise ValueError(f"n_bits must be a positive multiple of 8, got {n_bits}")
        gen = torch.Generator(device="cpu")
        gen.manual_seed(seed)
        self.n_bits = n_bits
        self.n_bytes = n_bits // 8
        self.n_words = -(-self.n_bytes // 4)  # int32 words holding the bytes
        self.projection = torch.randn(dim, n_bits, generator=gen).to(device)  # (d, n_bits)
        self._weights = (2 ** torch.arange(8, dtype=torch.int16)).to(device)  # (8,)
        self._popcount = _POPCOUNT.to(device)

    def to(self, device: torch.device | str) -> SignSketch:
        self.projection = self.projection.to(device)
        self._weights = self._weights.to(device)
        self._popcount = self._popcount.to(device)
        return self

    def signs(self, x: torch.Tensor) -> torch.Tensor:
        """Unpacked sign bits of ``x @ P``: ``(R, d)`` float -> ``(R, n_bits)`` bool."""
        return (x.to(self.projection.dtype) @ self.projection) > 0

    def pack(self, bits: torch.Tensor) -> torch.Tensor:
        """``(R, n_bits)`` bool -> ``(R, n_bytes)`` uint8 (bit ``j`` of byte ``i`` = sign ``8i + j``)."""
        b = bits.view(-1, self.n_bytes, 8).to(torch.int16)
        return (b * self._weights).sum(-1, dtype=torch.int16).to(torch.uint8)

    def hamming(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Differing bits of packed sketches ``(R, n_bytes)`` (or any uint8 view): ``(R,)`` float."""
        diff = torch.bitwise_xor(a, b).view(torch.uint8).reshape(a.shape[0], -1).long()
        return self._popcount[diff].sum(-1, dtype=torch.float32)

    def encode_numpy(self, x: torch.Tensor) -> np.ndarray:
        """:meth:`encode` for CPU tensors, packed by NumPy into int32 words.

        Returns ``(R, n_words)`` int32, ``n_words = ceil(n_bytes / 4)``, whose little-endian
        bytes are :meth:`encode`'s bytes (then zero padding). Two operations (the projection
        and ``np.packbits``) instead of :meth:`pack`'s five torch dispatches.
        """
        proj = x.to(self.projection.dtype) @ self.projection  # (R, n_bits)
        packed = np.packbits(proj.numpy() > 0, axis=1, bitorder="little")  # (R, n_bytes)
        if self.n_bytes % 4:
            padded = np.zeros((packed.shape[0], 4 * self.n_words), dtype=np.uint8)
            padded[:, : self.n_bytes] = packed
            packed = padded
        return packed.view(np.int32)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Packed sign bits of ``x @ P``: ``(R, d)`` float -> ``(R, n_bytes)`` uint8."""
        return self.pack(self.signs(x))

    def cosine(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Estimated cosine between the vectors behind packed sketches ``a`` and ``b``: ``(R,)``."""
        return torch.cos(self.hamming(a, b) * (math.pi / self.n_bits))


COUNT_MAX = 0xFFFF  # the agree/disagree counts are 16-bit; see RowState


class RowState:
    """Per-row tensors of one tracked table (``N`` rows).

    A packed state (:meth:`zeros`) keeps each row in ``7 + n_words`` int32 words (32 bytes
    with the default 32-bit sketch): exposure; last-seen step (bits 0-30) with the zombie
    flag in bit 31; the agree (bits 0-15) and disagree (bits 16-31) pair counts; the four
    float32 columns of :class:`FloatCol`; the sketch words. :attr:`floats` and
    :attr:`sketch` are views of it; :attr:`ints` decodes the integer columns into an
    ``(N, IntCol.COUNT)`` int32 copy. When a count would pass 65,535 both counts are
    halved first (their ratio is kept; older pairs then weigh half).

    An unpacked state (``RowState(ints, floats, sketch)``, e.g. merged across ranks) holds
    the three tensors as they are.
    """

    SKETCH_COL = 7  # first sketch word of a packed row
    FLOAT_COL = 3  # first float word of a packed row
    W_EXPOSURE, W_SEEN, W_COUNTS = 0, 1, 2  # integer words of a packed row

    def __init__(
        self,
        ints: torch.Tensor | None,
        floats: torch.Tensor,
        sketch: torch.Tensor,
        packed: torch.Tensor | None = None,
    ) -> None:
        if ints is None and packed is None:
            raise ValueError("an unpacked RowState needs its ints tensor")
        self._ints = ints
        self.floats = floats  # (N, FloatCol.COUNT) float32
        self.sketch = sketch  # (N, n_bytes) uint8, sign sketch of the last gradient
        self.packed = packed  # (N, SKETCH_COL + n_words) int32, or None

    @classmethod
    def zeros(cls, n_rows: int, n_bytes: int, device: torch.device | str) -> RowState:
        n_words = -(-n_bytes // 4)
        packed = torch.zeros(n_rows, cls.SKETCH_COL + n_words, dtype=torch.int32, device=device)
        return cls(
            ints=None,
            floats=packed[:, cls.FLOAT_COL : cls.SKETCH_COL].view(torch.float32),
            sketch=packed[:, cls.SKETCH_COL :].view(torch.uint8)[:, :n_bytes],
            packed=packed,
        )

    @property
    def ints(self) -> torch.Tensor:
        """``(N, IntCol.COUNT)`` int32: exposure, last seen, agree, disagree, zombie flag
        (a decoded copy for a packed state)."""
        if self._ints is not None:
            return self._ints
        return decode_ints(self.packed[:, : self.FLOAT_COL])  # type: ignore[index]

    def ints_of(self, rows: torch.Tensor) -> torch.Tensor:
        """:attr:`ints` of ``rows`` only: ``(R, IntCol.COUNT)`` int32."""
        if self._ints is not None:
            return self._ints.index_select(0, rows)
        assert self.packed is not None
        return decode_ints(self.packed[:, : self.FLOAT_COL].index_select(0, rows))

    def write_ints(self, rows: torch.Tensor, ints: torch.Tensor) -> None:
        """Store ``(R, IntCol.COUNT)`` integer columns for ``rows`` (counts must fit 16 bits)."""
        if self._ints is not None:
            self._ints.index_copy_(0, rows, ints.to(self._ints.dtype))
            return
        assert self.packed is not None
        self.packed[:, : self.FLOAT_COL].index_copy_(0, rows, encode_ints(ints))

    def packed_numpy(self) -> np.ndarray:
        """Zero-copy NumPy view of :attr:`packed` (CPU only; cached)."""
        cached = getattr(self, "_packed_np", None)
        if cached is None:
            if self.packed is None:
                raise ValueError("this RowState is not packed")
            cached = self.packed.numpy()
            self._packed_np = cached
        return cached

    def packed_numpy_f32(self) -> np.ndarray:
        """The same memory as :meth:`packed_numpy` viewed as float32 (cached)."""
        cached = getattr(self, "_packed_np_f32", None)
        if cached is None:
            cached = self.packed_numpy().view(np.float32)
            self._packed_np_f32 = cached
        return cached

    @property
    def n_rows(self) -> int:
        return int(self.floats.shape[0])

    def nbytes(self) -> int:
        """Bytes held by the per-row tensors."""
        if self.packed is not None:
            return self.packed.numel() * self.packed.element_size()
        return sum(t.numel() * t.element_size() for t in (self.ints, self.floats, self.sketch))

    def col(self, name: str) -> torch.Tensor:
        """A named column: ``exposure``, ``last_seen``, ``n_agree``, ``n_disagree``,
        ``zombie`` (int32), ``velocity_ema``, ``grad_norm_ema``, ``cos_ema``,
        ``grad_norm_peak`` (float32 views)."""
        floats = {
            "velocity_ema": FloatCol.VELOCITY,
            "grad_norm_ema": FloatCol.GRAD_NORM,
            "cos_ema": FloatCol.COS,
            "grad_norm_peak": FloatCol.GRAD_PEAK,
        }
        if name in floats:
            return self.floats[:, floats[name]]
        ints = {
            "exposure": IntCol.EXPOSURE,
            "last_seen": IntCol.LAST_SEEN,
            "n_agree": IntCol.N_AGREE,
            "n_disagree": IntCol.N_DISAGREE,
            "zombie": IntCol.ZOMBIE,
        }
        if name not in ints:
            raise KeyError(f"unknown row-state column {name!r}")
        if self._ints is not None:
            return self._ints[:, ints[name]]
        p = self.packed
        assert p is not None
        if name == "exposure":
            return p[:, self.W_EXPOSURE]
        return decode_ints(p[:, : self.FLOAT_COL])[:, ints[name]]

    def evidence(
        self, rows: torch.Tensor, *, step: int, layer: str, loss: float | None
    ) -> RowEvidence:
        """The current state of the unique ``rows`` as :class:`RowEvidence` (fresh tensors)."""
        packed = self.packed
        if packed is not None and packed.device.type == "cpu" and rows.device.type == "cpu":
            # one gather of the whole packed records (half the cost of two strided ones)
            whole = torch.from_numpy(np.take(self.packed_numpy(), rows.numpy(), axis=0))
            ints = decode_ints(whole[:, : self.FLOAT_COL])
            fl = whole[:, self.FLOAT_COL : self.SKETCH_COL].view(torch.float32)
        else:
            ints = self.ints_of(rows)
            fl = self.floats.index_select(0, rows)
        return RowEvidence(
            step=step,
            layer=layer,
            rows=rows,
            n_agree=ints[:, IntCol.N_AGREE],
            n_disagree=ints[:, IntCol.N_DISAGREE],
            cos_ema=fl[:, FloatCol.COS],
            grad_norm_ema=fl[:, FloatCol.GRAD_NORM],
            velocity_ema=fl[:, FloatCol.VELOCITY],
            exposure=ints[:, IntCol.EXPOSURE],
            loss=loss,
        )

    def to_dict(self) -> dict[str, torch.Tensor]:
        """CPU copies of the tensors (for ``state_dict``; integer columns decoded)."""
        return {
            "ints": self.ints.cpu().contiguous(),
            "floats": self.floats.cpu().contiguous(),
            "sketch": self.sketch.cpu().contiguous(),
        }

    def load_dict(self, data: dict[str, torch.Tensor]) -> None:
        """Copy tensors saved by :meth:`to_dict` in place, checking shapes and dtypes.

        Agree/disagree counts above 65,535 (a state saved by an unpacked layout) are halved
        together until they fit.
        """
        shapes = {
            "ints": ((self.n_rows, IntCol.COUNT), torch.int32),
            "floats": (tuple(self.floats.shape), self.floats.dtype),
            "sketch": (tuple(self.sketch.shape), self.sketch.dtype),
        }
        for key, (shape, dtype) in shapes.items():
            theirs = data[key]
            if tuple(theirs.shape) != shape or theirs.dtype != dtype:
                raise ValueError(
                    f"row state {key!r}: expected {shape} {dtype}, "
                    f"got {tuple(theirs.shape)} {theirs.dtype}"
                )
        ints = data["ints"].to(torch.int64)
        counts = ints[:, IntCol.N_AGREE : IntCol.N_DISAGREE + 1]
        while bool((counts > COUNT_MAX).any()):
            over = (counts > COUNT_MAX).any(dim=1, keepdim=True)
            counts = torch.where(over, counts // 2, counts)
        ints[:, IntCol.N_AGREE : IntCol.N_DISAGREE + 1] = counts
        device = self.floats.device
        self.write_ints(torch.arange(self.n_rows, device=device), ints.to(device))
        self.floats.copy_(data["floats"].to(device))
        self.sketch.copy_(data["sketch"].to(device))


def decode_ints(words: torch.Tensor) -> torch.Tensor:
    """``(R, 3)`` packed integer words -> ``(R, IntCol.COUNT)`` int32 columns."""
    out = torch.empty((words.shape[0], IntCol.COUNT), dtype=torch.int32, device=words.device)
    out[:, IntCol.EXPOSURE] = words[:, 0]
    torch.bitwise_and(words[:, 1], 0x7FFFFFFF, out=out[:, IntCol.LAST_SEEN])
    out[:, IntCol.ZOMBIE] = words[:, 1] < 0
    torch.bitwise_and(words[:, 2], COUNT_MAX, out=out[:, IntCol.N_AGREE])
    torch.bitwise_and(words[:, 2] >> 16, COUNT_MAX, out=out[:, IntCol.N_DISAGREE])
    return out


def encode_ints(ints: torch.Tensor) -> torch.Tensor:
    """``(R, IntCol.COUNT)`` integer columns -> ``(R, 3)`` packed int32 words."""
    i = ints.to(torch.int64)
    seen = i[:, IntCol.LAST_SEEN] - (i[:, IntCol.ZOMBIE] != 0).to(torch.int64) * (1 << 31)
    counts = i[:, IntCol.N_AGREE] | (i[:, IntCol.N_DISAGREE] << 16)
    counts = torch.where(counts >= (1 << 31), counts - (1 << 32), counts)
    return torch.stack([i[:, IntCol.EXPOSURE], seen, counts], dim=1).to(torch.int32)
