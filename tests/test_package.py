"""Package-level promises: cheap import, lazy public names, version, ``python -m gradtracer``."""

from __future__ import annotations

import subprocess
import sys

import pytest

import gradtracer


def test_import_is_cheap():
    code = (
        "import sys, gradtracer; "
        "print(','.join(m for m in ('torch', 'matplotlib', 'scipy', 'pandas', 'polars', 'wandb', "
        "'xgboost') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("name", sorted(n for n in gradtracer.__all__ if n != "__version__"))
def test_every_public_name_resolves(name):
    obj = getattr(gradtracer, name)
    aliases = {"BoostingTracker": "TreeDynamicsTracker"}
    assert obj.__name__ == aliases.get(name, name)
    assert name in dir(gradtracer)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        gradtracer.Nope  # noqa: B018


def test_module_entry_point_prints_version():
    out = subprocess.run(
        [sys.executable, "-m", "gradtracer", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"gradtracer {gradtracer.__version__}"
