"""CLI: ``gradtracer recsys train | tune | evaluate | recommend`` (model-based CF).

``--model svd`` (default; ``--solver sklearn|scipy`` picks the truncated-SVD backend) or
``--model als`` (implicit ALS, optional ``implicit`` extra); ``train`` also takes
``--model mf`` (implicit MF) and ``--model popularity``. ``train`` and ``tune`` write a
model directory: the model (``model.json`` + ``arrays.npz``, see
:mod:`gradtracer.recsys.models.artifact`) plus ``splits/valid`` and ``splits/test`` (saved
:class:`Interactions`; MF and popularity also ``splits/train``, for their id maps and seen
items), so ``evaluate`` scores exactly the rows held out at training time. ``evaluate`` and
``recommend`` load any registered model kind.

A model directory is rewritten as a whole: the fit happens first, then the directory is
marked incomplete, every output of an earlier run that this run does not rewrite (an old
``splits/valid``, metrics, figures, tuning tables, the older five-file layout) is removed,
the new files are written atomically, and the completeness marker comes last. ``evaluate``
and ``recommend`` refuse a directory whose last write did not finish.

``gradtracer recsys svd train|tune|evaluate|recommend [--solver als]`` is the older
spelling of the same commands; it still works and prints a deprecation note.
Heavy imports happen inside the commands.

Modules: :mod:`._shared` (the Typer groups, options, helpers, the model-directory writer),
:mod:`.train` (train, tune), :mod:`.evaluate` (evaluate, recommend), :mod:`.commands`
(the ``recsys`` commands), :mod:`.svd` (the deprecated ``recsys svd`` group).
"""

from __future__ import annotations

import typer

from gradtracer.cli.recsys import commands, svd
from gradtracer.cli.recsys._shared import recsys_app, svd_app
from gradtracer.cli.recsys.commands import evaluate_cmd, recommend_cmd, train_cmd, tune_cmd
from gradtracer.cli.recsys.svd import (
    svd_evaluate_cmd,
    svd_recommend_cmd,
    svd_train_cmd,
    svd_tune_cmd,
)

__all__ = [
    "commands",
    "evaluate_cmd",
    "recommend_cmd",
    "recsys_app",
    "register",
    "svd",
    "svd_app",
    "svd_evaluate_cmd",
    "svd_recommend_cmd",
    "svd_train_cmd",
    "svd_tune_cmd",
    "train_cmd",
    "tune_cmd",
]


def register(app: typer.Typer) -> None:
    """Add ``gradtracer recsys ...`` to the root app."""
    app.add_typer(recsys_app, name="recsys")
