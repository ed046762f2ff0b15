"""GRU4Rec (Hidasi et al., ICLR 2016; Hidasi & Karatzoglou, CIKM 2018) in PyTorch.

Follows the behaviour of the official PyTorch implementation
(``hidasib/GRU4Rec_PyTorch_Official``): session-parallel mini-batches, output scores
over the batch's targets (in-batch negatives) plus ``n_sample`` shared negatives drawn
from ``popularity ** sample_alpha``, cross-entropy (with optional logQ correction) or
BPR-max (with ELU on the scores) loss summed over the batch and divided by
``batch_size``, three input modes (constrained: input = output embedding; a separate
embedding; one-hot through a GRU layer whose input matrix is an embedding table), dropout
on the input and on every hidden layer's output, Glorot-uniform initialisation per gate,
and Adagrad with momentum applied only to the rows a sparse gradient touches.

Modules: :mod:`~.config` (hyperparameters, official presets), :mod:`~.losses`,
:mod:`~.network`, :mod:`~.sampler` (negative sampling), :mod:`~.train` (the loop),
:mod:`~.model` (:class:`GRU4Rec`: fit / score / recommend / save / load); the optimiser is
:class:`gradtracer.recsys.models.optim.AdagradMomentum`.
"""

from gradtracer.recsys.models.gru4rec.config import (
    OFFICIAL_PARAMS,
    PRESETS,
    GRU4RecConfig,
    preset_config,
)
from gradtracer.recsys.models.gru4rec.losses import (
    bpr_max_loss,
    cross_entropy_loss,
    logq_correction,
)
from gradtracer.recsys.models.gru4rec.model import GRU4Rec, fit_gru4rec, train_gru4rec
from gradtracer.recsys.models.gru4rec.network import GRU4RecNetwork, OneHotGRULayer
from gradtracer.recsys.models.gru4rec.sampler import NegativeSampler
from gradtracer.recsys.models.gru4rec.train import EpochProgress, GRU4RecTrainLog, train_network
from gradtracer.recsys.models.optim import AdagradMomentum

__all__ = [
    "OFFICIAL_PARAMS",
    "PRESETS",
    "AdagradMomentum",
    "EpochProgress",
    "GRU4Rec",
    "GRU4RecConfig",
    "GRU4RecNetwork",
    "GRU4RecTrainLog",
    "NegativeSampler",
    "OneHotGRULayer",
    "bpr_max_loss",
    "cross_entropy_loss",
    "fit_gru4rec",
    "logq_correction",
    "preset_config",
    "train_gru4rec",
    "train_network",
]
