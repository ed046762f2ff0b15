"""matplotlib helpers shared by the figure modules: headless figures, PNG + SVG output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gradtracer.durable import atomic_open


def subplots(rows: int = 1, cols: int = 1, *, width: float = 6.0, height: float = 4.0) -> Any:
    """``(fig, axes)`` on the Agg backend; ``axes`` is always a ``rows x cols`` array."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(rows, cols, figsize=(width, height), squeeze=False)


def save_png_svg(fig: Any, out_dir: str | Path, stem: str, *, dpi: int = 120) -> list[Path]:
    """Write ``fig`` as ``<out_dir>/<stem>.png`` and ``.svg`` (creating ``out_dir``), close it
    and return both paths. Each file is written atomically (:mod:`gradtracer.durable`)."""
    import matplotlib
    import matplotlib.pyplot as plt

    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    paths = [d / f"{stem}.png", d / f"{stem}.svg"]
    try:
        fig.tight_layout()
        with atomic_open(paths[0], "wb") as handle:  # a killed run keeps the previous figure
            fig.savefig(handle, format="png", dpi=dpi)
        with (
            matplotlib.rc_context({"svg.fonttype": "none"}),  # text stays text in the SVG
            atomic_open(paths[1], "wb") as handle,
        ):
            fig.savefig(handle, format="svg")
    finally:
        plt.close(fig)
    return paths
