"""Figures of the dataset: the spec's balance charts, the split per class, and crop sizes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from toonvision.data.taxonomy import ANIMALS, SUITS, TOON_COLOR
from toonvision.figures.common import AVERAGE_COLOR, DESIRED_COLOR, SPLIT_COLORS, label_color, pyplot, save_figure

if TYPE_CHECKING:
    from toonvision.data.stats import DatasetStats, Desired


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
    plt = pyplot()
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
    return save_figure(fig, path)


def plot_split_balance(stats: DatasetStats, path: Path) -> Path:
    """Crops per class in each split, and each split's share of every class."""
    plt = pyplot()
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
    return save_figure(fig, path)


def plot_crop_sizes(stats: DatasetStats, path: Path) -> Path:
    """Scatter of crop width x height coloured by class: how close up the entities were."""
    plt = pyplot()
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
    return save_figure(fig, path)
