"""The README's Python quickstart runs as written, and its set-up commands match the Makefile."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_quickstart_runs(capsys):
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(), re.S | re.M)
    assert blocks, "README has no python block"
    namespace: dict[str, object] = {"__name__": "readme"}
    exec(compile(blocks[0], "README.md[quickstart]", "exec"), namespace)
    ndcg, health = (float(x) for x in capsys.readouterr().out.split())
    assert 0.0 <= ndcg <= 1.0 and 0.0 <= health <= 100.0
    assert '"gradtracer_embedding_report"' in namespace["agent_json"]


def test_readme_setup_commands_exist_in_makefile():
    text = README.read_text()
    makefile = (README.parent / "Makefile").read_text()
    for target in ("demo", "test"):
        assert f"make {target}" in text
        assert re.search(rf"^{target}:", makefile, re.M)
    assert "make test" in (README.parent / ".ci" / "run").read_text()
