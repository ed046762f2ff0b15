"""Export compressed tables to TorchRec's quantized ``EmbeddingBagCollection`` (optional).

TorchRec (``torchrec.quant.embedding_modules.EmbeddingBagCollection``) serves row-wise
quantized tables through FBGEMM's table-batched inference kernels. A
:class:`~gradtracer.compress.table.QuantizedTable` of one precision (fp32, fp16, int8,
int4 or int2) maps onto one TorchRec table of that data type; a
:class:`~gradtracer.compress.table.LowRankTable` exports its factors, and
:class:`TorchRecExport` multiplies the pooled factors by the basis. The packed codes move
as they are; int4 and int2 rows keep their float16 scale and bias, so their pooled rows
match :meth:`QuantizedTable.embedding_bag` up to float32 summation order. TorchRec stores
int8 rows with a float16 scale and bias where ours are float32: exported int8 tables are
rounded there (pooled rows differ by about ``1e-3`` of the row's range).

Mixed-precision tables and tables with dropped rows are refused: a TorchRec table holds
one data type. Nothing here is imported by the rest of GradTracer: TorchRec is an optional
extra (``pip install gradtracer[torchrec]``; on CPU ``fbgemm-gpu-cpu==1.8.0`` and
``torchrec==1.8.0 --no-deps`` work with torch 2.13).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from gradtracer.compress.rowwise import _padded_dim
from gradtracer.compress.table import LowRankTable, QuantizedTable

__all__ = ["TorchRecExport", "to_torchrec", "torchrec_available"]

_DATA_TYPES = {"fp32": "FP32", "fp16": "FP16", "int8": "INT8", "int4": "INT4", "int2": "INT2"}


def torchrec_available() -> bool:
    """True when ``torchrec`` and its quantized modules import."""
    try:
        import torchrec.quant.embedding_modules  # noqa: F401
    except Exception:  # ImportError, or fbgemm's native library failing to load
        return False
    return True


@dataclass
class TorchRecExport:
    """A TorchRec quantized ``EmbeddingBagCollection`` holding exported tables.

    Attributes:
        ebc: the TorchRec module (feature ``name`` reads table ``name``).
        dims: each table's output dimension.
        bases: for low-rank tables, the ``(rank, dim)`` basis applied after pooling.
    """

    ebc: Any
    dims: dict[str, int]
    bases: dict[str, torch.Tensor] = field(default_factory=dict)

    def pooled(
        self, features: Mapping[str, tuple[torch.Tensor, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """Sum-pooled rows per table: ``{name: (n_bags, dim)}`` float32.

        Args:
            features: ``{name: (indices (N,), lengths (n_bags,))}``, every exported table,
                all with the same number of bags.
        """
        from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

        missing = sorted(set(self.dims) - set(features))
        if missing:
            raise ValueError(f"features missing for tables {missing}")
        keys = list(self.dims)
        values = torch.cat([torch.as_tensor(features[k][0]).to(torch.int64) for k in keys])
        lengths = torch.cat([torch.as_tensor(features[k][1]).to(torch.int64) for k in keys])
        kjt = KeyedJaggedTensor(keys=keys, values=values, lengths=lengths)
        out = self.ebc(kjt).to_dict()
        result = {}
        for k in keys:
            pooled = out[k].to(torch.float32)[:, : self._stored_dim(k)]
            result[k] = pooled @ self.bases[k] if k in self.bases else pooled
        return result

    def _stored_dim(self, name: str) -> int:
        return int(self.bases[name].shape[0]) if name in self.bases else self.dims[name]


def to_torchrec(tables: Mapping[str, QuantizedTable | LowRankTable]) -> TorchRecExport:
    """Build a TorchRec quantized ``EmbeddingBagCollection`` from compressed tables.

    Args:
        tables: ``{feature name: table}``; each table of a single precision (or low rank
            with single-precision factors), its stored width a multiple of 4 columns.

    Raises:
        ImportError: torchrec (or fbgemm-gpu-cpu) is not importable.
        ValueError: a mixed-precision table, dropped rows, or a width TorchRec cannot take.
    """
    if not torchrec_available():
        raise ImportError(
            "TorchRec export needs torchrec and fbgemm-gpu (CPU: pip install "
            "fbgemm-gpu-cpu==1.8.0 && pip install torchrec==1.8.0 --no-deps)"
        )
    from torchrec.modules.embedding_configs import DataType, EmbeddingBagConfig, PoolingType
    from torchrec.quant.embedding_modules import EmbeddingBagCollection

    configs, weights, dims, bases = [], {}, {}, {}
    for name, table in tables.items():
        q = table.factors if isinstance(table, LowRankTable) else table
        if isinstance(table, LowRankTable):
            bases[name] = torch.from_numpy(table.basis.copy())
        if len(q.levels) != 1 or q.levels[0] == "drop":
            raise ValueError(
                f"table {name!r} stores precisions {q.levels}: a TorchRec table holds one "
                "data type (mixed-precision and dropped-row tables cannot be exported)"
            )
        p = q.levels[0]
        width = _padded_dim(p, q.dim)
        if width % 4:
            raise ValueError(
                f"table {name!r}: {width} stored columns; TorchRec's kernels need a multiple of 4"
            )
        block = q.blocks[p]
        if p in ("fp32", "fp16"):
            pair: tuple[torch.Tensor, torch.Tensor | None] = (
                block.contiguous().view(torch.uint8),
                None,
            )
        elif p == "int8":
            w = block[:, :width]
            qparams = block[:, width:].contiguous().view(torch.float32).to(torch.float16)
            pair = (w.contiguous(), qparams.contiguous().view(torch.uint8))
        else:
            pair = (block[:, :-4].contiguous(), block[:, -4:].contiguous())
        weights[name] = pair
        dims[name] = table.dim
        configs.append(
            EmbeddingBagConfig(
                num_embeddings=q.n_rows,
                embedding_dim=width,
                name=name,
                feature_names=[name],
                pooling=PoolingType.SUM,
                data_type=getattr(DataType, _DATA_TYPES[p]),
            )
        )
    ebc = EmbeddingBagCollection(
        configs,
        is_weighted=False,
        device=torch.device("cpu"),
        table_name_to_quantized_weights=weights,
    )
    return TorchRecExport(ebc, dims, bases)
