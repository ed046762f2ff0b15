"""Layers one way: parse every import of ``src/gradtracer`` (function-level and
``TYPE_CHECKING`` ones too, and the module names of lazy ``_LAZY`` export maps) and check
the layer rules of docs/architecture.md and that gradtracer's subpackages form no cycle.

The checker is tested on a small synthetic package first, so a planted bad edge is seen
to fail it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: the trackers: they measure and detect, and are rendered by the layers above them
TRACKERS = ("embedding", "flow", "trees", "features")
#: what each unit may never import (a unit is the first name after ``gradtracer.``)
FORBIDDEN: Mapping[str, tuple[str, ...]] = {
    **{t: ("export", "cli", "manager", "diagnosis", "compress", "flowgrad") for t in TRACKERS},
    "export": (*TRACKERS, "manager", "diagnosis", "compress", "cli", "recsys"),
    "report": (*TRACKERS, "manager", "diagnosis", "compress", "export", "cli", "audit", "recsys"),
    "audit": (*TRACKERS, "manager", "diagnosis", "compress", "export", "cli", "report", "recsys"),
    "findings": (*TRACKERS, "manager", "diagnosis", "compress", "export", "cli", "report", "audit"),
    # the manager may run the run-level diagnosis, which must not reach back up to it
    "diagnosis": ("manager", "export", "cli", "flowgrad"),
    "manager": ("compress", "export", "cli", "flowgrad"),
}
#: compatibility modules that re-export a moved name from a higher layer (edges ignored)
SHIMS = frozenset({"gradtracer.flow.manager"})


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def collect_imports(root: Path, package: str) -> dict[str, set[str]]:
    """``{module: {imported module, ...}}`` of every ``.py`` under ``root/package``."""
    graph: dict[str, set[str]] = {}
    maybe_modules: dict[str, set[str]] = {}  # ``from a import b``: b may be a submodule
    for path in sorted((root / package).rglob("*.py")):
        module = _module_name(path, root)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, path.name == "__init__.py", node)
                targets.add(base)
                maybe_modules.setdefault(module, set()).update(
                    f"{base}.{alias.name}" for alias in node.names
                )
            elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets
            ):
                if isinstance(node.value, ast.Dict):
                    targets.update(
                        v.value
                        for v in node.value.values
                        if isinstance(v, ast.Constant) and isinstance(v.value, str)
                    )
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                if node.target.id == "_LAZY" and isinstance(node.value, ast.Dict):
                    targets.update(
                        v.value
                        for v in node.value.values
                        if isinstance(v, ast.Constant) and isinstance(v.value, str)
                    )
        graph[module] = {t for t in targets if t == package or t.startswith(package + ".")}
    for module, names in maybe_modules.items():  # ``from gradtracer.report import text``
        graph[module].update(n for n in names if n in graph)
    return graph


def unit_of(module: str) -> str | None:
    """``gradtracer.flow.tracker`` -> ``flow``; the package root itself -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _edges(graph: Mapping[str, Iterable[str]]) -> Iterable[tuple[str, str, str, str]]:
    for module, targets in graph.items():
        src = unit_of(module)
        if src is None or module in SHIMS:
            continue
        for target in targets:
            dst = unit_of(target)
            if dst is not None and dst != src:
                yield module, target, src, dst


def layer_violations(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """``"a.b imports c.d (b must not import c)"`` for every forbidden edge."""
    out = []
    for module, target, src, dst in _edges(graph):
        if dst in FORBIDDEN.get(src, ()):
            out.append(f"{module} imports {target} ({src} must not import {dst})")
    return sorted(set(out))


def unit_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The cycles between units (strongly connected components of more than one unit)."""
    adj: dict[str, set[str]] = {}
    for _, _, src, dst in _edges(graph):
        adj.setdefault(src, set()).add(dst)
        adj.setdefault(dst, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm (the graph has ~20 nodes)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(adj[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(adj):
        if v not in index:
            visit(v)
    return out


def _edges_between(graph: Mapping[str, Iterable[str]], units: Iterable[str]) -> list[str]:
    members = set(units)
    return sorted(f"{m} -> {t}" for m, t, s, d in _edges(graph) if s in members and d in members)


# --- the checker on a synthetic package -----------------------------------------------


def _write(root: Path, files: Mapping[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


_CLEAN = {
    "gradtracer/__init__.py": "",
    "gradtracer/findings.py": "import math\n",
    "gradtracer/report/__init__.py": "",
    "gradtracer/report/text.py": "from gradtracer.findings import Report\n",
    "gradtracer/flow/__init__.py": '_LAZY: dict[str, str] = {"FlowTracker": "gradtracer.flow.tracker"}\n',
    "gradtracer/flow/tracker.py": (
        "from gradtracer.findings import Finding\n"
        "def report():\n    from ..report import text\n    return text\n"
    ),
    "gradtracer/export/__init__.py": "",
    "gradtracer/export/text.py": "from gradtracer.report.text import render_text\n",
}


def test_checker_passes_a_clean_synthetic_package(tmp_path: Path) -> None:
    _write(tmp_path, _CLEAN)
    graph = collect_imports(tmp_path, "gradtracer")
    # the relative function-level import resolves to gradtracer.report(.text)
    assert {"gradtracer.report", "gradtracer.report.text"} <= graph["gradtracer.flow.tracker"]
    assert layer_violations(graph) == [] and unit_cycles(graph) == []


@pytest.mark.parametrize(
    ("planted", "expected"),
    [
        (  # a tracker reaching up to an exporter from inside a method
            "def plot():\n    import gradtracer.export.text\n",
            "gradtracer.flow.extra imports gradtracer.export.text (flow must not import export)",
        ),
        (  # under TYPE_CHECKING still counts
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from gradtracer.manager import FlowManager\n",
            "gradtracer.flow.extra imports gradtracer.manager (flow must not import manager)",
        ),
        (  # a lazy export map naming a higher module
            '_LAZY = {"X": "gradtracer.cli.report"}\n',
            "gradtracer.flow.extra imports gradtracer.cli.report (flow must not import cli)",
        ),
    ],
)
def test_checker_fails_on_a_planted_bad_edge(tmp_path: Path, planted: str, expected: str) -> None:
    _write(tmp_path, {**_CLEAN, "gradtracer/flow/extra.py": planted})
    assert layer_violations(collect_imports(tmp_path, "gradtracer")) == [expected]


def test_checker_finds_a_cycle_between_units(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            **_CLEAN,
            "gradtracer/recsys/__init__.py": "",
            "gradtracer/recsys/a.py": "from gradtracer.audit.log import x\n",
            "gradtracer/audit/__init__.py": "",
            "gradtracer/audit/log.py": "def f():\n    from gradtracer.recsys import a\n",
        },
    )
    graph = collect_imports(tmp_path, "gradtracer")
    assert unit_cycles(graph) == [["audit", "recsys"]]


# --- the real package ---------------------------------------------------------------


@pytest.fixture(scope="module")
def real_graph() -> dict[str, set[str]]:
    return collect_imports(SRC, "gradtracer")


def test_every_import_goes_down_the_layers(real_graph: dict[str, set[str]]) -> None:
    assert len(real_graph) > 50  # the whole package was parsed
    bad = layer_violations(real_graph)
    assert bad == [], "imports against the layers:\n" + "\n".join(bad)


def test_no_import_cycle_between_subpackages(real_graph: dict[str, set[str]]) -> None:
    cycles = unit_cycles(real_graph)
    detail = [f"{c}: " + ", ".join(_edges_between(real_graph, c)) for c in cycles]
    assert cycles == [], "import cycles:\n" + "\n".join(detail)


def test_the_compatibility_package_sits_above_everything(real_graph: dict[str, set[str]]) -> None:
    """``flowgrad`` (deprecated) imports gradtracer; gradtracer never imports flowgrad."""
    assert not any(t.startswith("flowgrad") for ts in real_graph.values() for t in ts)
    flowgrad = collect_imports(SRC, "flowgrad")
    assert "flowgrad.trackers" in flowgrad
    uses = (SRC / "flowgrad" / "trackers.py").read_text(encoding="utf-8")
    assert "from gradtracer.export.agent_xml import to_agent_xml" in uses
