"""Every ``>>>`` example in every module of the package runs (doctests collected package-wide)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import gradtracer


def _modules() -> list[str]:
    names = [gradtracer.__name__]
    for info in pkgutil.walk_packages(gradtracer.__path__, prefix=f"{gradtracer.__name__}."):
        names.append(info.name)
    return sorted(names)


def _has_examples(name: str) -> bool:
    finder = doctest.DocTestFinder(exclude_empty=True)
    return any(test.examples for test in finder.find(importlib.import_module(name)))


MODULES = _modules()
WITH_EXAMPLES = [name for name in MODULES if _has_examples(name)]


def test_the_walk_finds_the_whole_package() -> None:
    # a walk that silently stopped at the top level would make the test below vacuous
    assert len(MODULES) > 100
    assert (
        "gradtracer.report.catalog" in MODULES and "gradtracer.recsys.metrics.functional" in MODULES
    )


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0, f"{result.failed} failing example(s)"
