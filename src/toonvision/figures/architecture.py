"""Figures of architectures: Keras' plot_model where Graphviz is installed, else ToonVision's own drawing."""

from __future__ import annotations

from pathlib import Path

from toonvision.figures.common import pyplot, save_figure

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

    plt = pyplot()
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
    return save_figure(fig, path)


def draw_architecture(model, path: Path) -> Path:
    """Keras' plot_model where pydot and Graphviz are installed, else :func:`plot_architecture`."""
    import shutil

    if shutil.which("dot"):
        try:
            import keras

            keras.utils.plot_model(model, to_file=str(path), show_shapes=True, show_layer_names=True, dpi=80)
            return path
        except (ImportError, OSError, AttributeError, ValueError):
            pass
    return plot_architecture(model, path)
