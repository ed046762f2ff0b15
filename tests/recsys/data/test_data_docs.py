"""The Python examples in docs/data.md run and print what their comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[3] / "docs" / "data.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S) if DOC.exists() else []


@pytest.mark.skipif(not BLOCKS, reason="docs/data.md has no python examples")
@pytest.mark.parametrize("block", BLOCKS, ids=[f"example{k}" for k in range(len(BLOCKS))])
def test_doc_example_prints_what_it_claims(block: str) -> None:
    expected = [m.strip() for m in re.findall(r"^print\(.*\)\s+#\s*(.+)$", block, re.M)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, str(DOC), "exec"), {})
    assert out.getvalue().split("\n")[: len(expected)] == expected
    assert expected, "each example states its output in a comment"
