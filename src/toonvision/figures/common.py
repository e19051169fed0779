"""What every figure shares: matplotlib without a display, atomic PNG writes, and the colours of classes."""

from __future__ import annotations

import io
from pathlib import Path

from toonvision.data.files import write_bytes_atomic
from toonvision.data.taxonomy import SUIT_BY_SHORT, TOON_COLOR, parse_label

DESIRED_COLOR = "#2ca02c"
AVERAGE_COLOR = "#d62728"
SPLIT_COLORS = {"unsorted": "#9e9e9e", "train": "#1f77b4", "validate": "#ff7f0e", "test": "#9467bd"}
MODEL_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def integer_epochs(*axes) -> None:
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def save_figure(fig, path: Path) -> Path:
    """Write ``fig`` as a PNG to ``path`` atomically and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    write_bytes_atomic(path, buf.getvalue())
    return path


def save_message(text: str, path: Path) -> Path:
    """A small figure that only says ``text`` (e.g. when there is nothing to plot)."""
    fig, ax = pyplot().subplots(figsize=(6, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=14)
    return save_figure(fig, path)


def label_color(label: str) -> str:
    """Suit colour for Cogs, the Toon colour for Toons."""
    parsed = parse_label(label, strict=False)
    return SUIT_BY_SHORT[parsed.suit].color if parsed.is_cog else TOON_COLOR
