"""Figures of an evaluation: the confusion matrix and the spec's grid of wrong predictions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from toonvision.figures.common import plot_image_grid, pyplot, save_figure, save_message

if TYPE_CHECKING:
    from toonvision.data.samples import TaskData
    from toonvision.learning.evaluation import Evaluation


def plot_confusion(matrix, classes: list[str], path: Path, title: str = "") -> Path:
    """Confusion matrix with counts, rows normalised for colour (so rare classes stay visible)."""
    plt = pyplot()
    matrix = np.asarray(matrix)
    n = len(classes)
    size = max(5, min(22, 0.45 * n + 3))
    fig, ax = plt.subplots(figsize=(size + 1.5, size), layout="constrained")
    rows = matrix.sum(axis=1, keepdims=True)
    norm = np.divide(matrix, rows, out=np.zeros_like(matrix, dtype=float), where=rows > 0)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fontsize = 10 if n <= 8 else 6
    for i in range(n):
        for j in range(n):
            if matrix[i, j]:
                ax.text(
                    j,
                    i,
                    str(matrix[i, j]),
                    ha="center",
                    va="center",
                    fontsize=fontsize,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    ax.set_xticks(range(n), classes, rotation=90 if n > 8 else 0, fontsize=fontsize + 1)
    ax.set_yticks(range(n), classes, fontsize=fontsize + 1)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax, shrink=0.8, label="share of the true class")
    ax.set_title(title or "Confusion matrix")
    return save_figure(fig, path)


def plot_wrong_predictions(items: list[dict], path: Path, title: str = "", columns: int = 8) -> Path:
    """The spec's wrong-predictions grid: each crop titled with its true label, error E and output A,
    ranked from the highest error. ``items``: dicts with ``image`` (array), ``label``, ``error``, ``output``
    and ``predicted``."""
    if not items:
        return save_message("No wrong predictions", path)
    return plot_image_grid(
        [np.clip(np.asarray(item["image"]), 0, 255).astype(np.uint8) for item in items],
        [f"{item['label']}\nE={item['error']:.2f} A={item['output']:.2f}\n-> {item['predicted']}" for item in items],
        path,
        title or "Wrong predictions, highest error first",
        columns=columns,
        tile_inches=1.75,
    )


def draw_evaluation(ev: Evaluation, data: TaskData, out: Path, *, top: int = 32) -> dict[str, Path]:
    """confusion.png and wrong_predictions.png (the ``top`` worst) of an evaluation, under ``out``."""
    split = ev.judged_split
    index = {s.name: i for i, s in enumerate(data.samples)}
    wrong = ev.wrong()
    items = [
        {
            "image": data.x[index[p.name]],
            "label": str(data.samples[index[p.name]].label),
            "error": p.error,
            "output": p.output,
            "predicted": ev.classes[p.predicted],
        }
        for p in wrong[:top]
    ]
    return {
        "confusion": plot_confusion(
            ev.confusion(split), ev.classes, out / "confusion.png", f"Confusion matrix ({split or 'all crops'})"
        ),
        "wrong": plot_wrong_predictions(
            items,
            out / "wrong_predictions.png",
            f"{len(wrong)} wrong predictions over {len(ev.predictions)} crops, highest error first",
        ),
    }
