"""The closing step the plotting examples share: lay out the figure, write it, and say which
files the run wrote. Imported by the examples, not run itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def save_figure(fig: Any, path: Path, *written: Path, note: str = "") -> None:
    """Write ``fig`` to ``path`` (PNG, 120 dpi, tight layout) and print ``wrote <written...>,
    <path><note>`` so the reader finds every output in one line."""
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {', '.join(str(p) for p in (*written, path))}{note}")
