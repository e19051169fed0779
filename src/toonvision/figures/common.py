"""What every figure shares: matplotlib without a display, atomic PNG writes, and the colours of classes."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from toonvision.data.files import write_bytes_atomic
from toonvision.data.taxonomy import SUIT_BY_SHORT, TOON_COLOR, parse_label

DESIRED_COLOR = "#2ca02c"
AVERAGE_COLOR = "#d62728"
SPLIT_COLORS = {"unsorted": "#9e9e9e", "train": "#1f77b4", "validate": "#ff7f0e", "test": "#9467bd"}
GRID_MAX_INCHES = 40  # the tallest image grid drawn
DPI = 110  # of every PNG figure
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
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    pyplot().close(fig)
    write_bytes_atomic(path, buf.getvalue())
    return path


def plot_image_grid(
    images: Sequence[np.ndarray],
    titles: Sequence[str],
    path: Path,
    title: str,
    *,
    columns: int,
    tile_inches: float,
    fontsize: float = 7,
    title_colors: Sequence[str] | None = None,
    placeholder: Sequence[str | None] | None = None,
    pixelated: bool = False,
) -> Path:
    """Images (each scaled to the first one's shape) as one titled grid, drawn as a single picture with the
    tiles' titles over it: a grid of one Axes per tile costs matplotlib seconds of layout per figure (the spec's
    32 wrong predictions: 2.2 s against 1.2 s, most of it the PNG's encoding), which every evaluation and report
    pays. ``placeholder``: a text drawn over a tile instead of a picture worth looking at (e.g. a silent filter).
    ``pixelated``: small images enlarged pixel by pixel rather than smoothly."""
    from PIL import Image

    plt = pyplot()
    # The tiles at the PNG's own resolution: matplotlib then draws the picture pixel for pixel, where
    # resampling a large one would cost more than the rest of the figure.
    h0, w0 = images[0].shape[:2]
    columns = max(1, min(columns, len(images)))
    rows = -(-len(images) // columns)
    resample = Image.Resampling.NEAREST if pixelated else Image.Resampling.LANCZOS
    lines = max(t.count("\n") + 1 for t in titles) if titles else 0
    title_px = math.ceil((lines * fontsize * 1.3 / 72 + 0.06) * DPI) if lines else 0
    gap = max(2, round(0.1 * DPI))
    # Many tall tiles (explain --wrong --top 200) would make a picture no viewer scrolls through: smaller
    # tiles keep the grid within GRID_MAX_INCHES.
    room = GRID_MAX_INCHES * DPI / rows - title_px - gap
    tile_inches = max(0.2, min(tile_inches, room * w0 / h0 / DPI))
    w = round(tile_inches * DPI)
    h = max(1, round(h0 * w / w0))
    cell_h, cell_w = title_px + h + gap, w + gap
    mosaic = np.full((rows * cell_h, columns * cell_w - gap, 3), 255, np.uint8)
    for k, image in enumerate(images):
        r, c = divmod(k, columns)
        tile = np.asarray(image)
        tile = np.repeat(tile[..., None], 3, axis=2) if tile.ndim == 2 else tile[..., :3]
        tile = np.asarray(Image.fromarray(tile).resize((w, h), resample))
        mosaic[r * cell_h + title_px : r * cell_h + title_px + h, c * cell_w : c * cell_w + w] = tile
    header = 0.25 + 0.2 * (title.count("\n") + 1)
    width, body = mosaic.shape[1] / DPI, mosaic.shape[0] / DPI
    fig = plt.figure(figsize=(width, body + header))
    ax = fig.add_axes((0, 0, 1, body / (body + header)))
    ax.imshow(mosaic, interpolation="nearest")
    ax.axis("off")
    for k, text in enumerate(titles):
        r, c = divmod(k, columns)
        x, top = c * cell_w + w / 2, r * cell_h + title_px
        color = title_colors[k] if title_colors else "black"
        ax.text(x, top - 0.02 * DPI, text, ha="center", va="bottom", fontsize=fontsize, color=color)
        if placeholder and placeholder[k]:
            ax.text(x, top + h / 2, placeholder[k], ha="center", va="center", fontsize=fontsize + 1, color="#757575")
    fig.suptitle(title, fontsize=11, y=1 - 0.1 / (body + header), va="top")
    return save_figure(fig, path)


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
