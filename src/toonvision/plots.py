"""Figures. matplotlib is imported inside each function (Agg backend, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from toonvision.taxonomy import ANIMALS, SUIT_BY_SHORT, SUITS, TOON_COLOR, parse_label

if TYPE_CHECKING:
    from toonvision.stats import DatasetStats, Desired

DESIRED_COLOR = "#2ca02c"
AVERAGE_COLOR = "#d62728"
SPLIT_COLORS = {"unsorted": "#9e9e9e", "train": "#1f77b4", "validate": "#ff7f0e", "test": "#9467bd"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _integer_epochs(*axes) -> None:
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _save(fig, path: Path) -> Path:
    import io

    from toonvision.workspace import write_bytes_atomic

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    write_bytes_atomic(path, buf.getvalue())
    return path


def save_message(text: str, path: Path) -> Path:
    """A small figure that only says ``text`` (e.g. when there is nothing to plot)."""
    fig, ax = _pyplot().subplots(figsize=(6, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=14)
    return _save(fig, path)


def label_color(label: str) -> str:
    """Suit colour for Cogs, the Toon colour for Toons."""
    parsed = parse_label(label, strict=False)
    return SUIT_BY_SHORT[parsed.suit].color if parsed.is_cog else TOON_COLOR


def _bars(ax, names, values, colors, title, desired=None, rotate=False):
    xs = range(len(names))
    bars = ax.bar(xs, values, color=colors, edgecolor="black", linewidth=0.4)
    for bar, v in zip(bars, values, strict=True):
        ax.annotate(
            str(v),
            (bar.get_x() + bar.get_width() / 2, v),
            ha="center",
            va="bottom",
            fontsize=7,
            xytext=(0, 1),
            textcoords="offset points",
        )
    if values:
        avg = sum(values) / len(values)
        ax.axhline(avg, color=AVERAGE_COLOR, linestyle="--", linewidth=1.2, label=f"average {avg:.1f}")
    if desired:
        ax.axhline(desired, color=DESIRED_COLOR, linewidth=1.5, label=f"desired {desired}")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names, rotation=60 if rotate else 0, ha="right" if rotate else "center", fontsize=8)
    ax.set_title(title)
    ax.set_ylabel("crops")
    ax.legend(fontsize=7, loc="upper right")
    ax.margins(y=0.15)


def plot_balance(stats: DatasetStats, desired: Desired, path: Path) -> Path:
    """The spec's balance charts: per binary class, suit, street, animal and Cog name, with the desired
    (green) and average (red) lines."""
    plt = _pyplot()
    fig = plt.figure(figsize=(16, 13), layout="constrained")
    grid = fig.add_gridspec(3, 3, height_ratios=[1, 1, 1.2])
    kinds = ["cog", "toon"]
    _bars(
        fig.add_subplot(grid[0, 0]),
        kinds,
        [stats.per_kind[k] for k in kinds],
        [SUITS[0].color, TOON_COLOR],
        "Cogs vs Toons",
        desired.binary,
    )
    _bars(
        fig.add_subplot(grid[0, 1]),
        [s.long for s in SUITS],
        [stats.per_suit[s.short] for s in SUITS],
        [s.color for s in SUITS],
        "Cog suits",
        desired.suit,
    )
    streets = sorted(stats.per_street)
    _bars(
        fig.add_subplot(grid[0, 2]),
        streets,
        [stats.per_street[s] for s in streets],
        ["#607d8b"] * len(streets),
        "Streets (where the screenshot was taken)",
    )
    animals = list(ANIMALS) + sorted(set(stats.per_animal) - set(ANIMALS))
    _bars(
        fig.add_subplot(grid[1, :]),
        animals,
        [stats.per_animal[a] for a in animals],
        [TOON_COLOR] * len(animals),
        "Toon animals",
        desired.animal,
    )
    cogs = [lbl for lbl in stats.labels_in_order() if lbl.startswith("cog_")]
    _bars(
        fig.add_subplot(grid[2, :]),
        [c[4:] for c in cogs],
        [stats.per_label[c] for c in cogs],
        [label_color(c) for c in cogs],
        "Cog names (ladder order within each suit)",
        desired.label,
        rotate=True,
    )
    fig.suptitle(f"Dataset balance: {stats.total} crops", fontsize=14)
    return _save(fig, path)


def plot_split_balance(stats: DatasetStats, path: Path) -> Path:
    """Crops per class in each split, and each split's share of every class."""
    plt = _pyplot()
    groups = ["cog", "toon"] + [s.short for s in SUITS] + [a for a in ANIMALS if stats.per_animal[a]]
    splits = stats.splits_present() or ["unsorted"]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(14, 8), layout="constrained", height_ratios=[2, 1])
    width = 0.8 / len(splits)
    for i, split in enumerate(splits):
        values = [stats.per_split_group[(split, g)] for g in groups]
        xs = [x + (i - (len(splits) - 1) / 2) * width for x in range(len(groups))]
        ax.bar(xs, values, width=width, label=split, color=SPLIT_COLORS.get(split), edgecolor="black", linewidth=0.3)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=45, ha="right")
    ax.set_ylabel("crops")
    ax.set_title("Crops per class in each split")
    ax.legend()
    totals = [sum(stats.per_split_group[(s, g)] for s in splits) or 1 for g in groups]
    bottom = [0.0] * len(groups)
    for split in splits:
        share = [stats.per_split_group[(split, g)] / t for g, t in zip(groups, totals, strict=True)]
        ax2.bar(
            range(len(groups)),
            share,
            bottom=bottom,
            color=SPLIT_COLORS.get(split),
            label=split,
            edgecolor="black",
            linewidth=0.3,
        )
        bottom = [b + s for b, s in zip(bottom, share, strict=True)]
    for y in (0.6, 0.8):
        ax2.axhline(y, color=DESIRED_COLOR, linewidth=1, linestyle=":")
    ax2.set_xticks(range(len(groups)))
    ax2.set_xticklabels(groups, rotation=45, ha="right")
    ax2.set_ylabel("share of the class")
    ax2.set_ylim(0, 1)
    ax2.set_title("Share of each class per split (green dotted: the 60/20/20 targets)")
    return _save(fig, path)


def plot_crop_sizes(stats: DatasetStats, path: Path) -> Path:
    """Scatter of crop width x height coloured by class: how close up the entities were."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 7), layout="constrained")
    groups = [(s.long, s.color, lambda c, s=s: c.label.suit == s.short) for s in SUITS]
    groups.append(("toon", TOON_COLOR, lambda c: not c.label.is_cog))
    for name, color, member in groups:
        pts = [(c.width, c.height) for c in stats.crops if member(c)]
        if pts:
            ax.scatter(
                *zip(*pts, strict=True), s=12, alpha=0.7, color=color, label=f"{name} ({len(pts)})", edgecolors="none"
            )
    ax.axhline(600, color="#555555", linestyle=":", linewidth=1)
    ax.axvline(200, color="#555555", linestyle=":", linewidth=1)
    ax.annotate("model input 200x600", (200, 600), xytext=(6, 6), textcoords="offset points", fontsize=8)
    from matplotlib.ticker import FuncFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):  # plain pixel counts, not 2x10^1
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if str(int(v))[0] in "25" else ""))
    ax.set_xlabel("crop width (px)")
    ax.set_ylabel("crop height (px)")
    ax.set_title(f"Crop sizes ({stats.total} crops)")
    ax.legend()
    return _save(fig, path)


# --- training ---

MODEL_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
PANELS = (
    ("accuracy", "Training accuracy"),
    ("val_accuracy", "Validation accuracy"),
    ("loss", "Training loss"),
    ("val_loss", "Validation loss"),
)


def plot_history(history: dict[str, list[float]], path: Path, title: str = "") -> Path:
    """Accuracy and loss per epoch, training and validation, as the spec's training plots."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
    for ax, metric in zip(axes, ("accuracy", "loss"), strict=True):
        epochs = range(1, len(history.get(metric, [])) + 1)
        ax.plot(epochs, history.get(metric, []), "o-", color=MODEL_COLORS[0], label=f"training {metric}", ms=3)
        if history.get(f"val_{metric}"):
            ax.plot(epochs, history[f"val_{metric}"], "s--", color=MODEL_COLORS[1], label=f"validation {metric}", ms=3)
            best = (min if metric == "loss" else max)(range(len(epochs)), key=lambda i: history[f"val_{metric}"][i])
            ax.axvline(best + 1, color="#999999", linestyle=":", linewidth=1)
        ax.set_xlabel("epoch")
        _integer_epochs(ax)
        ax.set_ylabel(metric)
        ax.set_title(metric.capitalize())
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_histories(runs: dict[str, list[dict[str, list[float]]]], path: Path, title: str = "") -> Path:
    """Every run faint, the mean bold, one colour per model: the spec's averaged-history figure."""
    import numpy as np

    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(13, 9), layout="constrained", sharex=True)
    for (key, panel_title), ax in zip(PANELS, axes.flat, strict=True):
        for i, (name, histories) in enumerate(runs.items()):
            color = MODEL_COLORS[i % len(MODEL_COLORS)]
            curves = [h[key] for h in histories if h.get(key)]
            if not curves:
                continue
            length = min(len(c) for c in curves)
            stack = np.array([c[:length] for c in curves])
            epochs = np.arange(1, length + 1)
            for curve in stack:
                ax.plot(epochs, curve, color=color, alpha=max(0.04, min(0.3, 3 / len(stack))), linewidth=0.8)
            ax.plot(epochs, stack.mean(axis=0), color=color, linewidth=2.5, label=f"{name} (mean of {len(stack)})")
        ax.set_title(panel_title)
        ax.set_xlabel("epoch")
        _integer_epochs(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        if "loss" in key:
            ax.set_ylim(bottom=0)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_boxplots(values: dict[str, dict[str, list[float]]], path: Path, title: str = "") -> Path:
    """Box plots of test accuracy and test loss per model (``values[metric][model] = [per run]``)."""
    plt = _pyplot()
    metrics = [m for m in ("accuracy", "loss") if m in values]
    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 5), layout="constrained", squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        names = list(values[metric])
        data = [values[metric][n] for n in names]
        box = ax.boxplot(data, patch_artist=True, showmeans=False)
        ax.set_xticks(range(1, len(names) + 1), names)
        for patch, color in zip(box["boxes"], MODEL_COLORS, strict=False):
            patch.set_facecolor(color)
            patch.set_alpha(0.5)
        for i, d in enumerate(data, start=1):
            if d:
                med = sorted(d)[len(d) // 2] if len(d) % 2 else sum(sorted(d)[len(d) // 2 - 1 : len(d) // 2 + 1]) / 2
                ax.annotate(
                    f"median {med:.3f}", (i, med), xytext=(8, 0), textcoords="offset points", fontsize=8, va="center"
                )
        ax.set_title(f"Test {metric} over {max((len(d) for d in data), default=0)} runs")
        ax.set_ylabel(f"test {metric}")
        ax.grid(alpha=0.3, axis="y")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_optimizers(histories: dict[str, dict[str, list[float]]], path: Path, title: str = "") -> Path:
    """The spec's optimizer comparison: one curve per optimizer in each of the four panels."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(13, 9), layout="constrained", sharex=True)
    cmap = plt.get_cmap("tab10")
    for (key, panel_title), ax in zip(PANELS, axes.flat, strict=True):
        for i, (name, history) in enumerate(histories.items()):
            if history.get(key):
                ax.plot(range(1, len(history[key]) + 1), history[key], color=cmap(i), label=name, linewidth=1.8)
        ax.set_title(panel_title)
        ax.set_xlabel("epoch")
        _integer_epochs(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


# --- evaluation ---


def plot_confusion(matrix, classes: list[str], path: Path, title: str = "") -> Path:
    """Confusion matrix with counts, rows normalised for colour (so rare classes stay visible)."""
    import numpy as np

    plt = _pyplot()
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
    return _save(fig, path)


def plot_wrong_predictions(items: list[dict], path: Path, title: str = "", columns: int = 8) -> Path:
    """The spec's wrong-predictions grid: each crop titled with its true label, error E and output A,
    ranked from the highest error. ``items``: dicts with ``image`` (array), ``label``, ``error``, ``output``
    and ``predicted``."""
    plt = _pyplot()
    if not items:
        return save_message("No wrong predictions", path)
    columns = min(columns, len(items))
    rows = -(-len(items) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 5.0 * rows), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, item in zip(axes.flat, items, strict=False):
        ax.imshow(item["image"])
        ax.set_title(
            f"{item['label']}\nE={item['error']:.2f} A={item['output']:.2f}\n-> {item['predicted']}", fontsize=7
        )
    fig.suptitle(title or "Wrong predictions, highest error first")
    return _save(fig, path)


# --- architecture ---

LAYER_COLORS = {
    "InputLayer": "#bdbdbd",
    "Sequential": "#9ecae1",
    "Rescaling": "#c7e9c0",
    "Conv2D": "#fdae6b",
    "MaxPooling2D": "#e6550d",
    "BatchNormalization": "#fdd0a2",
    "Activation": "#fee6ce",
    "Dropout": "#9e9ac8",
    "SpatialDropout2D": "#9e9ac8",
    "Flatten": "#74c476",
    "GlobalAveragePooling2D": "#31a354",
    "Dense": "#6baed6",
}


def plot_architecture(model, path: Path, title: str = "") -> Path:
    """A layered drawing in the spirit of visualkeras (which fails on Keras 3): each layer a box whose
    height and width follow its output's spatial size and whose depth follows its channels."""
    import math

    from matplotlib.patches import Patch, Polygon

    plt = _pyplot()
    layers = []
    for layer in model.layers:
        shape = tuple(layer.output.shape[1:]) if hasattr(layer, "output") else ()
        layers.append((type(layer).__name__, layer.name, shape, layer.count_params()))
    max_hw = max((max(s[0], s[1]) for _, _, s, _ in layers if len(s) == 3), default=1)
    fig, ax = plt.subplots(figsize=(max(10, 1.25 * len(layers)), 6.5), layout="constrained")
    x = 0.0
    for kind, _name, shape, params in layers:
        color = LAYER_COLORS.get(kind, "#dddddd")
        if len(shape) == 3:
            h = 1 + 4 * math.log1p(shape[0]) / math.log1p(max_hw)
            w = 0.3 + 1.2 * math.log1p(shape[1]) / math.log1p(max_hw)
            d = 0.15 + 0.25 * math.log2(max(shape[2], 1))
        else:
            h, w, d = 1 + 4 * math.log1p(shape[0] if shape else 1) / math.log1p(max(max_hw, 12000)), 0.25, 0.2
        # front face, top and side of a box seen slightly from the right and above
        dx, dy = d * 0.6, d * 0.45
        front = [(x, -h / 2), (x + w, -h / 2), (x + w, h / 2), (x, h / 2)]
        top = [(x, h / 2), (x + w, h / 2), (x + w + dx, h / 2 + dy), (x + dx, h / 2 + dy)]
        side = [(x + w, -h / 2), (x + w + dx, -h / 2 + dy), (x + w + dx, h / 2 + dy), (x + w, h / 2)]
        for poly, shade in ((front, 1.0), (top, 0.85), (side, 0.7)):
            ax.add_patch(Polygon(poly, closed=True, facecolor=color, edgecolor="black", linewidth=0.6, alpha=shade))
        label = "x".join(str(v) for v in shape)
        ax.text(
            x + w / 2,
            -h / 2 - 0.25,
            f"{label}\n{params:,} p" if params else label,
            ha="center",
            va="top",
            fontsize=7,
            rotation=0,
        )
        x += w + dx + 0.35
    ax.set_xlim(-0.3, x + 0.3)
    ax.set_ylim(-4.2, 3.8)
    ax.axis("off")
    kinds = list(dict.fromkeys(k for k, _, _, _ in layers))
    ax.legend(
        handles=[Patch(facecolor=LAYER_COLORS.get(k, "#dddddd"), edgecolor="black", label=k) for k in kinds],
        loc="upper center",
        ncol=min(6, len(kinds)),
        fontsize=8,
        frameon=False,
    )
    ax.set_title(title or f"{model.name}: {model.count_params():,} parameters", pad=18)
    return _save(fig, path)
