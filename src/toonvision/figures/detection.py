"""Figures of a detector: precision-recall curves per class, the worst screenshots with their misses and false
positives marked, and one screenshot's detections."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from toonvision.data.taxonomy import SUITS, TOON_COLOR, LabelError
from toonvision.figures.common import MODEL_COLORS, label_color, pyplot, save_figure, save_message
from toonvision.learning.detection_metrics import ERROR_IOU, WorstScreenshot, image_errors

if TYPE_CHECKING:
    from toonvision.data.detection import Detections
    from toonvision.learning.detection_metrics import DetectionMetrics

# Misses and false positives get colours no class uses: the suits are brown, navy, green and maroon, Toons amber,
# so red or orange would read as a Sellbot or a Toon.
MISS_COLOR = "#ff00d4"
FALSE_COLOR = "#00e5ff"
DIFFICULT_COLOR = "#bdbdbd"
COG_COLOR = "#5a5a5a"
MAX_DRAW_WIDTH = 960  # px: screenshots are drawn at most this wide; boxes keep the screenshot's coordinates
PANEL_INCHES = (6.4, 3.6)  # a 16:9 screenshot panel, about 700 px wide at save_figure's dpi


def class_color(name: str, index: int = 0) -> str:
    """Toons amber, each suit its colour, "cog" grey, a Cog label its suit's colour; anything else cycles."""
    suits = {s.long: s.color for s in SUITS}
    if name == "toon":
        return TOON_COLOR
    if name in suits:
        return suits[name]
    if name == "cog":
        return COG_COLOR
    try:
        return label_color(name)
    except (LabelError, KeyError, ValueError):
        return MODEL_COLORS[index % len(MODEL_COLORS)]


def plot_pr_curves(metrics: DetectionMetrics, path: Path, title: str = "") -> Path:
    """Interpolated precision against recall at IoU 0.5, one curve per class with its AP50 in the legend. Each
    curve stops (a dot) at the recall the detector reached: beyond it COCO's precision is 0."""
    plt = pyplot()
    if not any(c.precision50 is not None for c in metrics.per_class):
        return save_message("No true boxes: no precision-recall curve", path)
    fig, ax = plt.subplots(figsize=(6.5, 5), layout="constrained")
    recall = np.asarray(metrics.recall_thresholds)
    for k, c in enumerate(metrics.per_class):
        color = class_color(c.name, k)
        if c.precision50 is None:
            ax.plot([], [], color=color, label=f"{c.name}: no true boxes", linestyle=":")
            continue
        reached = recall <= (c.recall50 or 0.0) + 1e-9
        x, y = recall[reached], np.asarray(c.precision50)[reached]
        ax.plot(x, y, color=color, linewidth=2, alpha=0.85, label=f"{c.name}: AP50 {c.ap50:.2f} ({c.truths} boxes)")
        ax.plot(x[-1:], y[-1:], "o", color=color, markersize=5)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.03)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision (interpolated)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8, framealpha=0.9)
    ap50 = "n/a" if metrics.ap50 is None else f"{metrics.ap50:.3f}"
    ap = "n/a" if metrics.ap is None else f"{metrics.ap:.3f}"
    ax.set_title(title or f"Precision-recall at IoU {ERROR_IOU:g}\nAP50 {ap50}, AP50:95 {ap}", fontsize=11)
    return save_figure(fig, path)


def _pixels(image: Path | str | np.ndarray) -> tuple[np.ndarray, int, int]:
    """The screenshot's pixels, downscaled for drawing, and its full width and height."""
    from PIL import Image

    if isinstance(image, np.ndarray):
        img = Image.fromarray(np.asarray(image, np.uint8))
    else:
        with Image.open(image) as opened:
            img = opened.convert("RGB")
    width, height = img.size
    if width > MAX_DRAW_WIDTH:
        img = img.resize((MAX_DRAW_WIDTH, max(1, round(height * MAX_DRAW_WIDTH / width))), Image.BILINEAR)
    return np.asarray(img.convert("RGB")), width, height


def _show(ax, image: Path | str | np.ndarray) -> tuple[int, int]:
    pixels, width, height = _pixels(image)
    # extent keeps the axes in the screenshot's own pixels, so boxes need no rescaling.
    ax.imshow(pixels, extent=(0, width, height, 0), interpolation="antialiased")
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    return width, height


def _box(
    ax,
    box,
    color: str,
    *,
    style: str = "-",
    width: float = 1.6,
    text: str = "",
    below: bool = False,
    fontsize: float = 6.5,
) -> None:
    """One box with a halo of the opposite lightness (a navy box stays visible on a night scene, an amber one on
    the sky) and an optional tag above it, or below it; a tag that would leave the picture goes inside."""
    from matplotlib import patheffects
    from matplotlib.patches import Rectangle

    x1, y1, x2, y2 = (float(v) for v in box)
    light = _light(color)
    halo = [patheffects.withStroke(linewidth=width + 1.6, foreground="black" if light else "white", alpha=0.6)]
    rect = Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=width, linestyle=style)
    rect.set_path_effects(halo)
    ax.add_patch(rect)
    if not text:
        return
    height = max(ax.get_ylim())
    margin = 0.06 * height * (1 + text.count("\n"))
    if below:
        y, va = (y2, "top") if y2 + margin < height else (y2, "bottom")
    else:
        y, va = (y1, "bottom") if y1 - margin > 0 else (y1, "top")
    ax.text(
        x1,
        y,
        text,
        color="black" if light else "white",
        fontsize=fontsize,
        va=va,
        ha="left",
        bbox={"facecolor": color, "edgecolor": "none", "alpha": 0.85, "pad": 1.0},
        clip_on=True,
    )


def _light(color: str) -> bool:
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(color)
    return 0.299 * r + 0.587 * g + 0.114 * b > 0.55


def _name(classes: Sequence[str], index: int) -> str:
    return classes[index] if 0 <= index < len(classes) else f"class {index}"


def plot_detections(
    image: Path | str | np.ndarray,
    detections: Detections,
    classes: Sequence[str],
    path_or_axes,
    extra_labels: Sequence[str | None] | None = None,
    *,
    score_threshold: float = 0.0,
    title: str | None = None,
):
    """One screenshot with its detections (score >= ``score_threshold``) boxed in their class colours and
    tagged "class score"; ``extra_labels[i]`` (e.g. a classifier's answer for detection i) is added to its tag.
    ``path_or_axes``: a Path to write a PNG to (returned), or matplotlib axes to draw on (returned)."""
    plt = pyplot()
    to_file = isinstance(path_or_axes, str | Path)
    if to_file:
        fig, ax = plt.subplots(figsize=(9.6, 5.4), layout="constrained")
    else:
        ax = path_or_axes
    _show(ax, image)
    shown = 0
    for i, (box, cls, score) in enumerate(zip(detections.boxes, detections.classes, detections.scores, strict=True)):
        if score < score_threshold:
            continue
        shown += 1
        tag = f"{_name(classes, int(cls))} {score:.2f}"
        if extra_labels is not None and i < len(extra_labels) and extra_labels[i]:
            tag += f"\n{extra_labels[i]}"
        _box(ax, box, class_color(_name(classes, int(cls)), int(cls)), width=2.0, text=tag, fontsize=8)
    if title is None:
        name = Path(image).name if not isinstance(image, np.ndarray) else "screenshot"
        title = f"{name}: {shown} detection{'s' * (shown != 1)}"
        if score_threshold > 0:
            title += f" (score >= {score_threshold:.2f})"
    ax.set_title(title, fontsize=9)
    if to_file:
        return save_figure(fig, Path(path_or_axes))
    return ax


def _legend_handles(classes: Sequence[str]) -> list:
    from matplotlib.lines import Line2D

    def line(color: str, style: str, width: float, label: str) -> Line2D:
        return Line2D([], [], color=color, linestyle=style, linewidth=width, label=label)

    handles = [
        line("black", "-", 1.6, "true box"),
        line("black", "--", 1.6, "detection (class score)"),
        line(MISS_COLOR, "-", 3.0, "miss: true box not found"),
        line(FALSE_COLOR, "--", 3.0, "FP: detection that found nothing"),
        line(DIFFICULT_COLOR, ":", 2.0, "difficult (not judged)"),
    ]
    handles += [line(class_color(name, k), "-", 4.0, name) for k, name in enumerate(classes)]
    return handles


def _draw_judged(ax, item: WorstScreenshot, classes: Sequence[str]) -> None:
    errors = item.errors
    t, d = item.truth, item.detections
    difficult = np.asarray(t.difficult, bool).reshape(-1)
    for j, (box, cls) in enumerate(zip(t.boxes, t.classes, strict=True)):
        name = _name(classes, int(cls))
        if difficult[j]:
            _box(ax, box, DIFFICULT_COLOR, style=":", width=2.0, text="difficult", below=True)
        elif errors.missed[j]:
            _box(ax, box, MISS_COLOR, width=3.0, text=f"miss: {name}", below=True)
        else:
            _box(ax, box, class_color(name, int(cls)))
    for j, (box, cls, score) in enumerate(zip(d.boxes, d.classes, d.scores, strict=True)):
        if score < errors.score_threshold:
            continue
        name = _name(classes, int(cls))
        if errors.false[j]:
            _box(ax, box, FALSE_COLOR, style="--", width=3.0, text=f"FP {name} {score:.2f}")
        else:
            _box(ax, box, class_color(name, int(cls)), style="--", text=f"{name} {score:.2f}")


def plot_worst_screenshots(
    items: Sequence[WorstScreenshot], classes: Sequence[str], path: Path, columns: int = 3, title: str = ""
) -> Path:
    """A grid of screenshots (e.g. :func:`~toonvision.learning.detection_metrics.worst_screenshots`): true boxes
    solid, detections dashed, misses and false positives (IoU 0.5, the metrics' score threshold) marked; each
    panel titled with the screenshot's name and counts. An item without ``errors`` is judged here."""
    plt = pyplot()
    if not items:
        return save_message("No screenshot with a miss or a false positive", path)
    columns = max(1, min(columns, len(items)))
    rows = -(-len(items) // columns)
    fig, axes = plt.subplots(
        rows,
        columns,
        figsize=(PANEL_INCHES[0] * columns, (PANEL_INCHES[1] + 0.45) * rows + 0.9),
        squeeze=False,
        layout="constrained",
    )
    for ax in axes.flat:
        ax.axis("off")
    threshold = None
    for ax, item in zip(axes.flat, items, strict=False):
        if item.errors is None:
            item = WorstScreenshot(
                item.image, item.truth, item.detections, image_errors(item.truth, item.detections, list(classes))
            )
        ax.axis("on")
        _show(ax, item.image)
        _draw_judged(ax, item, classes)
        e = item.errors
        threshold = e.score_threshold
        ax.set_title(
            f"{item.truth.name}\n{e.true_positives} found, {e.misses} missed, {e.false_positives} false positive"
            + "s" * (e.false_positives != 1),
            fontsize=9,
        )
    fig.legend(
        handles=_legend_handles(classes),
        loc="outside lower center",
        ncol=min(len(classes) + 5, 5 if columns < 3 else 10),
        fontsize=8,
        frameon=False,
    )
    fig.suptitle(
        title or f"Worst screenshots: most misses + false positives (IoU {ERROR_IOU:g}, score >= {threshold:.2f})",
        fontsize=12,
    )
    return save_figure(fig, path)
