"""The ```python blocks of docs/reports.md run, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "reports.md"


def test_reports_doc_examples_run(capsys: pytest.CaptureFixture[str]) -> None:
    if not DOC.exists():
        pytest.fail(f"{DOC} is missing")
    blocks = re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.S | re.M)
    assert len(blocks) >= 6
    namespace: dict[str, object] = {"__name__": "reports_doc"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{DOC.name}[python block {i}]", "exec"), namespace)
    assert "GradTracer manager report" in capsys.readouterr().out
