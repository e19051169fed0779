"""Figures of what a model sees: the spec's feature-map grid, filter patterns, heatmaps of crops and of
the wrong predictions, and :func:`draw_explanations`, which computes and draws them for a set of crops."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toonvision.figures.common import plot_image_grid, pyplot, save_figure, save_message
from toonvision.interpretation.cam import agreement
from toonvision.interpretation.explainer import CamResult, Explainer, FilterPatterns, LayerActivation, WrongItem

METHOD_TITLES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "scorecam": "Score-CAM"}
HEATMAP_CMAP = "jet"  # the spec's (and Chollet's) heatmap colours: blue cold, red hot
ACTIVATION_CMAP = "viridis"

MAX_FIGURE_INCHES = 40.0  # matplotlib and image viewers cope; beyond this grids stop being looked at


def _mosaic(values: np.ndarray, columns: int, gap: int) -> tuple[np.ndarray, int]:
    """Channels (h, w, c) as one image of ``columns`` tiles a row, each scaled to [0, 1] on its own;
    separators and empty slots are NaN (drawn white). Returns the mosaic and the number of blank channels."""
    h, w, c = values.shape
    rows = -(-c // columns)
    out = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap), np.nan, "float32")
    blank = 0
    for k in range(c):
        ch = values[..., k].astype("float32")
        lo, hi = float(ch.min()), float(ch.max())
        if hi - lo <= 1e-12:
            blank += 1
            tile = np.zeros_like(ch)  # "no activation": the filter's pattern is absent from this crop
        else:
            tile = (ch - lo) / (hi - lo)
        r, q = divmod(k, columns)
        out[r * (h + gap) : r * (h + gap) + h, q * (w + gap) : q * (w + gap) + w] = tile
    return out, blank


def plot_activations(layers: Sequence[LayerActivation], image: np.ndarray, path: Path, title: str = "") -> Path:
    """The spec's feature-map grid: one block per Conv2D / MaxPooling2D layer, every channel a tile
    (brightest = strongest activation, scaled per channel), the crop on top."""
    plt = pyplot()
    width = 16.0
    max_channels = max(a.values.shape[-1] for a in layers)
    # Enough columns that the whole grid stays under the cap; all blocks share them so tiles line up.
    for columns in (16, 24, 32, 48, 64):
        if columns >= max_channels or _activation_height(layers, columns, width) <= MAX_FIGURE_INCHES:
            break
    columns = min(columns, max_channels)
    mosaics = []
    for a in layers:
        gap = max(1, a.values.shape[1] // 25)
        mosaics.append((a, *_mosaic(a.values, columns, gap)))
    crop_h = 3.2
    ratios = [crop_h] + [m.shape[0] / m.shape[1] * width + 0.35 for _, m, _ in mosaics]
    fig = plt.figure(figsize=(width, min(sum(ratios) + 0.8, MAX_FIGURE_INCHES + 4)), layout="constrained")
    grid = fig.add_gridspec(len(ratios), 1, height_ratios=ratios)
    ax = fig.add_subplot(grid[0])
    ax.imshow(image.astype("uint8"))
    ax.set_title(f"input {image.shape[0]}x{image.shape[1]}", loc="left", fontsize=10)
    ax.axis("off")
    cmap = plt.get_cmap(ACTIVATION_CMAP).with_extremes(bad="white")
    for row, (a, mosaic, blank) in enumerate(mosaics, start=1):
        ax = fig.add_subplot(grid[row])
        ax.imshow(mosaic, cmap=cmap, vmin=0, vmax=1, interpolation="nearest", aspect="equal")
        h, w, c = a.values.shape
        note = f", {blank} blank" if blank else ""
        ax.set_title(f"{a.name} ({a.kind}): {h}x{w}, {c} channels{note}", loc="left", fontsize=10)
        ax.axis("off")
    fig.suptitle(title or "Intermediate activations", fontsize=13)
    return save_figure(fig, path)


def _activation_height(layers: Sequence[LayerActivation], columns: int, width: float) -> float:
    total = 3.2
    for a in layers:
        h, w, c = a.values.shape
        total += -(-c // columns) * h / (columns * w) * width + 0.35
    return total


def plot_filter_patterns(fp: FilterPatterns, path: Path, title: str = "") -> Path:
    """Each filter's pattern as a tile of a grid, numbered; silent filters are marked."""
    n = len(fp.patterns)
    columns = 8 if n <= 32 else 16
    rows = -(-n // columns)
    tile = min(1.6, 15.0 / columns, MAX_FIGURE_INCHES / max(rows, 1))
    # A silent filter's "pattern" would be the starting noise, blurred: nothing learned to show.
    blank = np.full(fp.patterns[0].shape, 235, np.uint8)
    images = [blank if fp.silent[k] else np.asarray(fp.patterns[k]) for k in range(n)]
    silent = int(fp.silent.sum())
    return plot_image_grid(
        images,
        [f"#{k} silent" if fp.silent[k] else f"#{k}" for k in range(n)],
        path,
        title
        or (
            f"{fp.layer}: the input that most activates each of its {n} filters\n"
            f"gradient ascent from noise, {fp.steps} steps; receptive field {fp.receptive_field} px, "
            f"shown {fp.canvas}x{fp.canvas} px" + (f"; {silent} silent (no response to any noise)" if silent else "")
        ),
        columns=columns,
        tile_inches=tile,
        fontsize=8,
        title_colors=["#b71c1c" if fp.silent[k] else "black" for k in range(n)],
        placeholder=["no\nresponse" if fp.silent[k] else None for k in range(n)],
        pixelated=True,
    )


def plot_cams(
    image: np.ndarray, result: CamResult, index: int, path: Path, title: str = "", classes: Sequence[str] = ()
) -> Path:
    """One crop: the crop, then per method the heatmap alone (at the CAM layer's own resolution) and
    superimposed on the crop, with each method's agreement with the first."""
    plt = pyplot()
    methods = list(result.maps)
    fig, axes = plt.subplots(
        1, 1 + 2 * len(methods), figsize=(1.75 * (1 + 2 * len(methods)) + 0.6, 6.2), layout="constrained"
    )
    h, w = image.shape[:2]
    axes[0].imshow(image.astype("uint8"))
    axes[0].set_title("crop", fontsize=9)
    reference = methods[0]
    mappable = None
    extent = _grid_extent(result, (h, w))
    for j, method in enumerate(methods):
        heat, full = result.coarse[method][index], result.maps[method][index]
        ax_h, ax_o = axes[1 + 2 * j], axes[2 + 2 * j]
        mappable = ax_h.imshow(heat, cmap=HEATMAP_CMAP, vmin=0, vmax=1, extent=extent, interpolation="nearest")
        ax_h.set_xlim(-0.5, w - 0.5)
        ax_h.set_ylim(h - 0.5, -0.5)
        ax_h.set_facecolor("#d9d9d9")  # crop pixels no unit is centred over (valid padding) show grey
        name = METHOD_TITLES[method]
        note = ""
        if heat.max() <= 0:
            note = "\n(no evidence)"
        elif method != reference:
            r = agreement(full, result.maps[reference][index])
            note = f"\nr={r:.2f} vs {METHOD_TITLES[reference]}" if not math.isnan(r) else ""
        ax_h.set_title(f"{name}\n{heat.shape[0]}x{heat.shape[1]}{note}", fontsize=9)
        ax_o.imshow(overlay(image, full))
        ax_o.set_title(f"{name}\nsuperimposed", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    if mappable is not None:
        fig.colorbar(mappable, ax=list(axes), shrink=0.6, label="class evidence (0..1)", pad=0.01)
    fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)


def _grid_extent(result: CamResult, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """imshow extent (left, right, bottom, top) that puts each cell of the CAM grid over its receptive
    field's centre on the crop."""
    gh, gw = next(iter(result.coarse.values())).shape[1:]
    g = result.geometry
    if g is None:
        return (-0.5, size[1] - 0.5, size[0] - 0.5, -0.5)
    (sy, sx), (jy, jx) = g.start, g.jump
    return (sx - jx / 2, sx + (gw - 0.5) * jx, sy + (gh - 0.5) * jy, sy - jy / 2)


def plot_wrong_cams(items: Sequence[WrongItem], result: CamResult, path: Path, title: str = "") -> Path:
    """The spec's wrong-prediction grid with heatmaps: per crop its true label, E and A, the crop, and
    each method's heatmap superimposed."""
    if not items:
        return save_message("No wrong predictions", path)
    methods = list(result.maps)
    per_row = max(1, min(len(items), 16 // (1 + len(methods))))
    strips = []
    for i, item in enumerate(items):
        crop = item.image.astype("uint8")
        gap = np.full((crop.shape[0], max(2, crop.shape[1] // 20), 3), 255, np.uint8)
        panels = [crop] + [overlay(item.image, result.maps[method][i]) for method in methods]
        strips.append(np.concatenate([x for panel in panels for x in (panel, gap)][:-1], axis=1))
    shown = ", ".join(["the crop", *(METHOD_TITLES[m] for m in methods)])
    return plot_image_grid(
        strips,
        [
            f"{item.true_label}\nE={item.prediction.error:.2f} A={item.prediction.output:.2f} -> {item.predicted}"
            for item in items
        ],
        path,
        (title or "Wrong predictions, highest error first") + f"\neach: {shown} superimposed",
        columns=per_row,
        tile_inches=1.05 * (1 + len(methods)),
        fontsize=8,
        title_colors=["#b71c1c"] * len(items),
    )


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """The heatmap in colour superimposed on the crop (the spec's superimposed image)."""
    from matplotlib import colormaps

    colours = colormaps[HEATMAP_CMAP](np.clip(heatmap, 0, 1))[..., :3] * 255
    return np.clip(image.astype("float32") * (1 - alpha) + colours * alpha, 0, 255).astype("uint8")


def figure_name(stem: str, taken: set[str]) -> str:
    """Crops of one name from two folders get -2, -3... rather than overwriting each other's figures."""
    name, n = stem, 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}"
    taken.add(name)
    return name


# --- computed and drawn: what the explain verb and the demo write ---


def class_suffix(explainer: Explainer, class_index: int | None) -> str:
    """What figure names end in when they explain a chosen class rather than the predicted one."""
    return f".class-{explainer.classes[class_index]}" if class_index is not None else ""


def explain_crop(
    explainer: Explainer,
    image: np.ndarray,
    name: str,
    stem: str,
    out: Path,
    *,
    activations: bool = True,
    heatmaps: bool = True,
    class_index: int | None = None,
    methods: Sequence[str] = ("gradcam", "gradcam++", "scorecam"),
) -> list[Path]:
    """``<stem>.activations.png`` and ``<stem>.gradcam.png`` of one crop (``name`` is shown in the titles)."""
    written = []
    prediction = explainer.describe(explainer.predict(image[None])[0])
    if activations:
        written.append(
            plot_activations(
                explainer.activations(image),
                image,
                out / f"{stem}.activations.png",
                f"{name}: intermediate activations (predicted {prediction})",
            )
        )
    if heatmaps:
        result = explainer.cams(image[None], class_index, methods)
        target = explainer.classes[int(result.classes[0])]
        written.append(
            plot_cams(
                image,
                result,
                0,
                out / f"{stem}.gradcam{class_suffix(explainer, class_index)}.png",
                f"{name}: predicted {prediction}; heatmaps of class {target!r} from layer {result.layer}",
            )
        )
    return written


FILTER_BATCH = 32  # filters optimised together


def filter_steps(explainer: Explainer, layer: str, steps: int) -> int:
    """How many gradient-ascent steps :func:`explain_filters` takes for ``layer`` (for a progress bar)."""
    filters = int(explainer.model.get_layer(layer).output.shape[-1])
    return steps * -(-filters // FILTER_BATCH)


def explain_filters(
    explainer: Explainer, layer: str, out: Path, *, steps: int = 40, on_step: Callable[[int], None] | None = None
) -> Path:
    """``filters.<layer>.png``: the input pattern each filter of ``layer`` responds to most."""
    fp = explainer.filter_patterns(layer, steps=steps, batch_size=FILTER_BATCH, on_step=on_step)
    return plot_filter_patterns(fp, out / f"filters.{layer}.png")


@dataclass
class WrongFigure:
    path: Path
    wrong: int  # wrong predictions over the whole dataset
    total: int  # crops predicted


def explain_wrong(
    explainer: Explainer,
    items: Sequence[WrongItem],
    counts: tuple[int, int],
    out: Path,
    *,
    class_index: int | None = None,
    methods: Sequence[str] = ("gradcam", "gradcam++", "scorecam"),
) -> WrongFigure:
    """``wrong.gradcam.png``: the heatmaps of the worst wrong predictions (from
    :func:`toonvision.interpretation.explainer.wrong_predictions`, which also gives ``counts``)."""
    if items:
        result = explainer.cams(np.stack([it.image for it in items]), class_index, methods)
    else:
        result = CamResult(np.zeros(0, int), np.zeros((0, explainer.units)), explainer.cam_layer.name)
    what = "the predicted class" if class_index is None else f"class {explainer.classes[class_index]!r}"
    n_wrong, n_all = counts
    path = plot_wrong_cams(
        items,
        result,
        out / f"wrong.gradcam{class_suffix(explainer, class_index)}.png",
        f"{n_wrong} wrong predictions over {n_all} crops, highest error first (top {len(items)}); "
        f"heatmaps of {what}, layer {result.layer}",
    )
    return WrongFigure(path, n_wrong, n_all)
