"""``gradtracer==0.9.0`` (the predecessor package on PyPI) as a same-suite baseline.

Its top-level package is also called ``gradtracer``, so it cannot be imported next to
this one as published. :func:`install_legacy` installs it with pip into a private
directory outside the project (``--no-deps``, plus ``seaborn``, which 0.9.0 imports at
start-up without declaring it; numpy, matplotlib and torch come from this environment)
and renames its top-level package to :data:`LEGACY_PACKAGE` by rewriting its own import
lines. :class:`LegacyObserver` then attaches 0.9.0's ``FlowTracker`` (whole model) and one
``EmbeddingTracker`` per ``nn.Embedding`` to the suite's training loop, in-process, so it
watches the same runs as GradTracer. At the end of a run it collects the alerts of the
package's own reports (``FlowTracker.report()`` and ``EmbeddingTracker.report()``, the
printed text) and of its agent exports (``export_for_agent`` / ``export_embedding``,
minus the entries the package itself marks as needing no intervention), mapped to the
finding types that mean the same (:data:`REPORT_NAMES`, :data:`AGENT_NAMES`).

The directory is ``$GRADTRACER_LEGACY_DIR`` or ``~/.cache/gradtracer/legacy-0.9.0``.
Install it with ``gradtracer validate diagnosis --install-legacy`` (or
:func:`install_legacy`); nothing is installed into the project or its environment.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "AGENT_NAMES",
    "LEGACY_PACKAGE",
    "LEGACY_VERSION",
    "REPORT_NAMES",
    "LegacyObserver",
    "install_legacy",
    "legacy_available",
    "legacy_dir",
    "load_legacy",
]

LEGACY_VERSION = "0.9.0"
#: the renamed top-level package of the private install
LEGACY_PACKAGE = "gradtracer_legacy_090"

#: alerts of 0.9.0's printed reports -> finding type with the same meaning (None: no
#: counterpart; still an alarm, never a right cause)
REPORT_NAMES: Mapping[str, str | None] = {
    "STAGNATION": "PARAMETERS_NOT_UPDATED",  # layer weights not moving for 5 steps
    "GRADIENT_EXPLOSION": "EXPLODING_GRADIENT",  # a gradient norm > 100
    "VELOCITY_EXPLOSION": "LEARNING_RATE_TOO_HIGH",  # one step moved a layer by > 100
    "LOW GRADIENT SNR": "LOW_GRADIENT_SNR",
    "DEAD NEURONS": "DEAD_ACTIVATIONS",  # > 50% near-zero weights, "dying ReLU" advice
    "HIGH DEAD RATE": "DEAD_EMBEDDINGS",  # > 5% of rows never updated
    "ZOMBIE COLLAPSE": "ZOMBIE_EMBEDDINGS",
    "EXTREME POPULARITY BIAS": "POPULARITY_BIAS",  # exposure Gini > 0.4
    "REPRESENTATION COLLAPSE": "REPRESENTATION_COLLAPSE",
}
#: finding types of 0.9.0's agent exports -> finding type; those it marks as needing
#: no intervention (BENIGN_NOISE, SAFE_STAGNATION) are not alarms
AGENT_NAMES: Mapping[str, str | None] = {
    "INCONSISTENCY_DETECTED": None,
    "HARMFUL_LOW_SNR": "LOW_GRADIENT_SNR",
    "HARMFUL_STAGNATION": "PARAMETERS_NOT_UPDATED",
    "DEAD_NEURON_COLLAPSE": "DEAD_ACTIVATIONS",
    "GRADIENT_STARVATION_SHORTCUT": None,
    "ZOMBIE_EMBEDDINGS": "ZOMBIE_EMBEDDINGS",
    "DEAD_EMBEDDINGS": "DEAD_EMBEDDINGS",
    "POPULARITY_BIAS": "POPULARITY_BIAS",
}
_NOT_ALARMS = frozenset({"BENIGN_NOISE", "SAFE_STAGNATION"})
_MARKER = "INSTALLED"
_REPORT_LINE = re.compile(
    r"(STAGNATION|GRADIENT_EXPLOSION|VELOCITY_EXPLOSION|LOW GRADIENT SNR|DEAD NEURONS):"
    r"|\[!\] (HIGH DEAD RATE|ZOMBIE COLLAPSE|EXTREME POPULARITY BIAS|REPRESENTATION COLLAPSE)"
)
_IMPORT = re.compile(r"^(\s*)(from|import)\s+gradtracer(?=[\s.])", re.MULTILINE)


def legacy_dir() -> Path:
    """Directory of the private install (``$GRADTRACER_LEGACY_DIR`` or the user cache)."""
    env = os.environ.get("GRADTRACER_LEGACY_DIR")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "gradtracer" / f"legacy-{LEGACY_VERSION}"


def legacy_available(directory: str | Path | None = None) -> bool:
    """Whether a complete private install of 0.9.0 is in ``directory`` (default
    :func:`legacy_dir`)."""
    root = Path(directory) if directory is not None else legacy_dir()
    return (root / _MARKER).is_file() and (root / LEGACY_PACKAGE / "__init__.py").is_file()


def _rename(src: Path, dst: Path) -> int:
    """Copy package ``src`` to ``dst`` with its ``gradtracer`` imports renamed; returns
    the number of import lines rewritten."""
    shutil.copytree(src, dst)
    n = 0
    for path in dst.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        new, k = _IMPORT.subn(lambda m: f"{m.group(1)}{m.group(2)} {LEGACY_PACKAGE}", text)
        if k:
            path.write_text(new, encoding="utf-8")
            n += k
    return n


def install_legacy(
    directory: str | Path | None = None, *, source: str | None = None, python: str | None = None
) -> Path:
    """Install ``gradtracer==0.9.0`` renamed to :data:`LEGACY_PACKAGE` into ``directory``.

    Runs ``python -m pip install --no-deps --target <tmp> <source> seaborn`` (so no torch
    or other dependency is pulled), renames the package and moves it into place; an
    existing install there is replaced.

    Args:
        directory: where to install (default :func:`legacy_dir`).
        source: what pip installs (default ``gradtracer==0.9.0``; a wheel path works).
        python: interpreter whose pip runs (default: this one).

    Returns:
        The directory.

    Raises:
        RuntimeError: pip failed (its output is in the message) or the package it
            installed has no ``gradtracer`` package.
    """
    root = Path(directory) if directory is not None else legacy_dir()
    root.parent.mkdir(parents=True, exist_ok=True)
    spec = source or f"gradtracer=={LEGACY_VERSION}"
    with tempfile.TemporaryDirectory(prefix="gradtracer-legacy-") as tmp:
        target = Path(tmp) / "site"
        cmd = [python or sys.executable, "-m", "pip", "install", "--no-deps", "--quiet",
               "--target", str(target), spec, "seaborn"]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"pip failed ({' '.join(cmd)}):\n{done.stdout}{done.stderr}")
        if not (target / "gradtracer" / "__init__.py").is_file():
            raise RuntimeError(f"{spec!r} installed no 'gradtracer' package into {target}")
        staging = Path(tmp) / "staging"
        staging.mkdir()
        _rename(target / "gradtracer", staging / LEGACY_PACKAGE)
        for extra in target.iterdir():
            if extra.name != "gradtracer" and not extra.name.startswith("gradtracer-"):
                shutil.move(str(extra), staging / extra.name)
        (staging / _MARKER).write_text(f"{spec}\n", encoding="utf-8")
        if root.exists():
            shutil.rmtree(root)
        shutil.move(str(staging), root)
    return root


def load_legacy(directory: str | Path | None = None) -> Any:
    """Import the private install of 0.9.0 (the renamed package module).

    Raises:
        FileNotFoundError: it is not installed there (with the command that installs it).
    """
    root = Path(directory) if directory is not None else legacy_dir()
    if not legacy_available(root):
        raise FileNotFoundError(
            f"gradtracer {LEGACY_VERSION} is not installed in {root}; run "
            "`gradtracer validate diagnosis --install-legacy` (or set GRADTRACER_LEGACY_DIR)"
        )
    if str(root) not in sys.path:
        sys.path.append(str(root))
    return importlib.import_module(LEGACY_PACKAGE)


def _brief(exc: BaseException) -> str:
    """``Type: first line`` of an exception (torch's dispatcher errors run to pages)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300] if lines else ''}"


def _report_alerts(text: str) -> list[str]:
    out = []
    for m in _REPORT_LINE.finditer(text):
        kind = m.group(1) or m.group(2)
        if kind not in out:
            out.append(kind)
    return out


class LegacyObserver:
    """0.9.0's trackers attached to one training run.

    Attach before training (a tracker cannot hook a frozen tensor); call :meth:`step`
    after each ``optimizer.step()`` (0.9.0's documented order) and :meth:`alarms` at the
    end. Errors inside 0.9.0 stop the observer and are reported, never raised into the
    training loop.

    Args:
        model: the trained model.
        optimizer: its optimizer (0.9.0 reads the learning rate and optimizer type).
        directory: the private install (default :func:`legacy_dir`).
    """

    def __init__(self, model: Any, optimizer: Any = None, *, directory: str | Path | None = None):
        from torch import nn

        legacy = load_legacy(directory)
        self._agent = importlib.import_module(f"{LEGACY_PACKAGE}.agent").AgentExporter
        self.error: str | None = None
        self._flow: Any = None
        self._tables: list[Any] = []
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                self._flow = legacy.FlowTracker(model, optimizer=optimizer)
                self._tables = [
                    legacy.EmbeddingTracker(mod, name=name)
                    for name, mod in model.named_modules()
                    if isinstance(mod, nn.Embedding) and mod.weight.requires_grad
                ]
        except Exception as exc:  # noqa: BLE001 - a baseline that cannot attach: its result
            self.error = _brief(exc)
            self.detach()

    def step(self, loss: float) -> None:
        """Record one step (after ``optimizer.step()``)."""
        if self.error is not None:
            return
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                self._flow.step(loss=loss)
                for t in self._tables:
                    t.step()
        except Exception as exc:  # noqa: BLE001 - a baseline's crash is its result
            self.error = _brief(exc)

    def alarms(self) -> dict[str, Any]:
        """The run's alerts: ``report`` (printed reports) and ``agent`` (agent exports),
        each ``[(finding type or raw alert, "warning")]`` in the order 0.9.0 lists them
        (embedding tables first), plus ``raw`` alert names and ``error``."""
        report: list[str] = []
        agent: list[str] = []
        if self.error is None:
            try:
                buf = io.StringIO()
                with contextlib.redirect_stdout(buf):
                    for t in self._tables:
                        t.report()
                    self._flow.report()
                report = _report_alerts(buf.getvalue())
                with contextlib.redirect_stdout(io.StringIO()):
                    exports = [json.loads(self._agent.export_embedding(t)) for t in self._tables]
                    exports.append(json.loads(self._flow.export_for_agent(
                        include_history=False, save=False)))  # fmt: skip
                for doc in exports:
                    body = next(iter(doc.values()))
                    diags = body.get("diagnostics")
                    for d in diags if isinstance(diags, list) else []:
                        kind = str(d.get("type"))
                        if kind not in _NOT_ALARMS and kind not in agent:
                            agent.append(kind)
            except Exception as exc:  # noqa: BLE001
                self.error = _brief(exc)
        self.detach()

        def named(kinds: list[str], names: Mapping[str, str | None]) -> list[tuple[str, str]]:
            return [(names.get(k) or f"LEGACY_{k.replace(' ', '_')}", "warning") for k in kinds]

        return {"report": named(report, REPORT_NAMES), "agent": named(agent, AGENT_NAMES),
                "raw": {"report": report, "agent": agent}, "error": self.error}  # fmt: skip

    def detach(self) -> None:
        """Remove 0.9.0's hooks from the model."""
        with contextlib.suppress(Exception):
            self._flow.detach()
        for t in self._tables:
            with contextlib.suppress(Exception):
                t.detach()
