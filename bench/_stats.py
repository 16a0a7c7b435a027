"""Small helpers shared by the benchmarks: percentiles of a sample and a plain aligned text table."""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Sequence
from typing import Any, TextIO

__all__ = ["format_ms", "format_table", "percentiles", "print_table"]

_NUMERIC = re.compile(r"^[<>~≈]?-?\d[\d,.]*(\s*[a-zA-Z%/]+)?$")


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    """p50, p90, p95 (linear interpolation between closest ranks), mean and count of `samples`."""
    if not samples:
        raise ValueError("percentiles of an empty sample")
    ordered = sorted(float(s) for s in samples)
    return {
        "p50": _quantile(ordered, 0.50),
        "p90": _quantile(ordered, 0.90),
        "p95": _quantile(ordered, 0.95),
        "mean": math.fsum(ordered) / len(ordered),
        "n": len(ordered),
    }


def _quantile(ordered: Sequence[float], q: float) -> float:
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def format_ms(value: float) -> str:
    """Milliseconds with three significant-ish digits: 0.604, 12.31, 605."""
    return f"{value:.3f}" if abs(value) < 1 else f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"


def format_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain text table: a title, a header, a rule, one line per row; numeric columns right-aligned."""
    cells = [["" if value is None else str(value) for value in row] for row in rows]
    for row in cells:
        if len(row) != len(columns):
            raise ValueError(f"row has {len(row)} cells for {len(columns)} columns: {row!r}")
    widths = [max([len(col)] + [len(row[i]) for row in cells]) for i, col in enumerate(columns)]
    right = [
        any(row[i] for row in cells) and all(not row[i] or _NUMERIC.match(row[i]) for row in cells)
        for i in range(len(columns))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)]
        return "  ".join(parts).rstrip()

    out = [title, line(list(columns)), "  ".join("-" * w for w in widths)]
    out.extend(line(row) for row in cells)
    return "\n".join(out)


def print_table(
    title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], file: TextIO | None = None
) -> None:
    """Write `format_table(...)` to `file` (standard output by default)."""
    print(format_table(title, columns, rows), file=file or sys.stdout, flush=True)
