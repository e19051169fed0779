"""Figures of training: one run's curves, many runs' curves, box plots of test metrics, optimizers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toonvision.figures.common import MODEL_COLORS, integer_epochs, pyplot, save_figure

PANELS = (
    ("accuracy", "Training accuracy"),
    ("val_accuracy", "Validation accuracy"),
    ("loss", "Training loss"),
    ("val_loss", "Validation loss"),
)


def plot_history(history: dict[str, list[float]], path: Path, title: str = "") -> Path:
    """Accuracy and loss per epoch, training and validation, as the spec's training plots (a detector's history
    has a loss only: one panel)."""
    plt = pyplot()
    metrics = [m for m in ("accuracy", "loss") if history.get(m)] or ["loss"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4.5), layout="constrained", squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        epochs = range(1, len(history.get(metric, [])) + 1)
        ax.plot(epochs, history.get(metric, []), "o-", color=MODEL_COLORS[0], label=f"training {metric}", ms=3)
        if history.get(f"val_{metric}"):
            ax.plot(epochs, history[f"val_{metric}"], "s--", color=MODEL_COLORS[1], label=f"validation {metric}", ms=3)
            best = (min if metric == "loss" else max)(range(len(epochs)), key=lambda i: history[f"val_{metric}"][i])
            ax.axvline(best + 1, color="#999999", linestyle=":", linewidth=1)
        ax.set_xlabel("epoch")
        integer_epochs(ax)
        ax.set_ylabel(metric)
        ax.set_title(metric.capitalize())
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_histories(runs: dict[str, list[dict[str, list[float]]]], path: Path, title: str = "") -> Path:
    """Every run faint, the mean bold, one colour per model: the spec's averaged-history figure."""
    plt = pyplot()
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
        integer_epochs(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        if "loss" in key:
            ax.set_ylim(bottom=0)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_boxplots(values: dict[str, dict[str, list[float]]], path: Path, title: str = "") -> Path:
    """Box plots of test accuracy and test loss per model (``values[metric][model] = [per run]``)."""
    plt = pyplot()
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
    return save_figure(fig, path)


def plot_optimizers(histories: dict[str, dict[str, list[float]]], path: Path, title: str = "") -> Path:
    """The spec's optimizer comparison: one curve per optimizer in each of the four panels."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(13, 9), layout="constrained", sharex=True)
    cmap = plt.get_cmap("tab10")
    for (key, panel_title), ax in zip(PANELS, axes.flat, strict=True):
        for i, (name, history) in enumerate(histories.items()):
            if history.get(key):
                ax.plot(range(1, len(history[key]) + 1), history[key], color=cmap(i), label=name, linewidth=1.8)
        ax.set_title(panel_title)
        ax.set_xlabel("epoch")
        integer_epochs(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def draw_experiment(out: Path, names: list[str], results: list, task: str) -> dict[str, Path]:
    """history.png (every run faint, the mean bold) and boxplots.png (test accuracy and loss) of an
    experiment's results (:class:`toonvision.learning.experiments.RunResult`) under ``out``."""
    n_runs = len({r.run for r in results})
    histories = {n: [r.history for r in results if r.config == n and r.history] for n in names}
    metrics = {
        m: {n: [r.test[m] for r in results if r.config == n and m in r.test] for n in names}
        for m in ("accuracy", "loss")
    }
    return {
        "history": plot_histories(histories, out / "history.png", f"{task}: mean of {n_runs} runs (faint: each run)"),
        "boxplots": plot_boxplots(metrics, out / "boxplots.png", f"{task}: test metrics over {n_runs} runs"),
    }
