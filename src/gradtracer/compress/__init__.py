"""Compression of embedding-heavy models, guided by training dynamics and measured honestly.

- :mod:`~gradtracer.compress.rowwise` / :mod:`~gradtracer.compress.table`: row-wise
  quantized tables in the FBGEMM layouts (FP16/INT8/INT4/INT2, dropped rows reading a
  fallback row, low-rank factors), every byte counted, lookups through the
  ``torch.ops.quantized`` CPU kernels.
- :mod:`~gradtracer.compress.saliency`: row signals (magnitude, frequency, Fisher,
  frequency-aware dynamics saliency) and layer saliency.
- :mod:`~gradtracer.compress.allocate` / :mod:`~gradtracer.compress.advisor`: bit
  allocation under a byte budget and the :class:`QuantizationAdvisor` that picks a plan.
- :mod:`~gradtracer.compress.recipe`: the versioned, checksummed recipe, its
  ``COMPRESSION_CANDIDATE`` finding, and :func:`apply_recipe`.
- :mod:`~gradtracer.compress.model`: :class:`CompressedMF`, the inference module the
  evaluators accept, saved as a checksummed npz.
- :mod:`~gradtracer.compress.session`: :class:`CompressedGRU4Rec`, a compressed GRU4Rec
  (quantized item tables, per-matrix dense precision) the session evaluator accepts.
- :mod:`~gradtracer.compress.export`: optional export to TorchRec's quantized
  ``EmbeddingBagCollection`` (where torchrec installs).
- :mod:`~gradtracer.compress.distill`: :class:`DistillationTracker` (minibatch CKA, linear
  probes, SVCCA coverage).
- :mod:`~gradtracer.compress.study`: the equal-bytes comparison over paired seeds.
"""

from gradtracer.compress.advisor import QuantizationAdvisor, dense_layer_advice, score_error
from gradtracer.compress.allocate import BudgetError, allocate, table_costs
from gradtracer.compress.distill import DistillationTracker, linear_cka, topk_overlap
from gradtracer.compress.model import ArtifactError, CompressedMF, load_compressed, save_compressed
from gradtracer.compress.recipe import (
    RECIPE_VERSION,
    Recipe,
    RecipeError,
    apply_recipe,
    load_recipe,
    recipe_finding,
    recipe_report,
)
from gradtracer.compress.rowwise import PRECISIONS, row_bytes
from gradtracer.compress.saliency import ROW_SIGNALS, layer_saliency, row_saliency, row_stats_of
from gradtracer.compress.session import CompressedGRU4Rec
from gradtracer.compress.table import LowRankTable, QuantizedTable

__all__ = [
    "PRECISIONS",
    "RECIPE_VERSION",
    "ROW_SIGNALS",
    "ArtifactError",
    "BudgetError",
    "CompressedGRU4Rec",
    "CompressedMF",
    "DistillationTracker",
    "LowRankTable",
    "QuantizationAdvisor",
    "QuantizedTable",
    "Recipe",
    "RecipeError",
    "allocate",
    "apply_recipe",
    "dense_layer_advice",
    "layer_saliency",
    "linear_cka",
    "load_compressed",
    "load_recipe",
    "recipe_finding",
    "recipe_report",
    "row_bytes",
    "row_saliency",
    "row_stats_of",
    "save_compressed",
    "score_error",
    "table_costs",
    "topk_overlap",
]
