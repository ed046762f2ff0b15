"""Plain-text tables for result objects (``__str__``); no third-party dependency."""

from __future__ import annotations

from collections.abc import Sequence


def format_value(value: object) -> str:
    """Floats with 4 decimals (scientific below 1e-4), everything else via ``str``."""
    if isinstance(value, float):
        if value != 0.0 and abs(value) < 1e-4:
            return f"{value:.3e}"
        return f"{value:.4f}"
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str = "") -> str:
    """Return an aligned text table (first column left-aligned, the rest right-aligned)."""
    cells = [[format_value(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(values: Sequence[str]) -> str:
        parts = [values[0].ljust(widths[0])]
        parts += [v.rjust(w) for v, w in zip(values[1:], widths[1:], strict=True)]
        return "  ".join(parts).rstrip()

    out = [title] if title else []
    out.append(line(list(headers)))
    out.append("  ".join("-" * w for w in widths))
    out.extend(line(row) for row in cells)
    return "\n".join(out)
