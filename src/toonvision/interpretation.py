"""Model interpretation: what a trained ToonVision model sees (the spec's "Model interpretation and
visualization").

Three views, for any model of any task (binary, suit, name):

- **intermediate activations**: every Conv2D and MaxPooling2D output for one crop, channel by channel;
- **filter patterns**: for a convolution layer, the input that maximally activates each filter, found by
  gradient ascent from noise;
- **class activation heatmaps**: Grad-CAM for a class, with Grad-CAM++ and Score-CAM beside it so one can
  see where the methods agree; also over the model's wrong predictions.

    explainer = Explainer(model, task="binary")
    maps = explainer.cams(images)                # {"gradcam": (N, 600, 200), ...} for the predicted class
    layers = explainer.activations(images[0])    # [LayerActivation(name, kind, values)]
    patterns = explainer.filter_patterns("conv2d")

Everything that depends on the Keras backend (gradients) lives in one section below, "Backend"; the rest
is Keras' backend-neutral API and numpy. Keras and TensorFlow are imported inside functions only.

**Which score a heatmap explains.** Gradients are taken of the class *score before the output activation*
(the logit), as the Grad-CAM paper does for softmax models: the probability saturates for confident
predictions and its gradient vanishes (a sigmoid at 0.99999994 rounds to 1.0 in float32), which would blank
the heatmaps of exactly the confident mistakes one wants to debug. A binary model has one logit z with
p(toon) = sigmoid(z): class toon is explained by z and class cog by -z. Since d(1 - p) = -p(1 - p) dz, this
is the gradient of (1 - p) up to a positive factor per crop, which the heatmap's normalisation removes.
Score-CAM needs no gradient and scores masked inputs by the class probability (p, 1 - p, or softmax), as in
its paper.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer

from toonvision.taxonomy import task_classes

if TYPE_CHECKING:
    import keras

    from toonvision.evaluation import Prediction

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
CAM_METHODS: tuple[str, ...] = ("gradcam", "gradcam++", "scorecam")
METHOD_TITLES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "scorecam": "Score-CAM"}
TASK_BY_UNITS = {1: "binary", 4: "suit", 32: "name"}
FEATURE_KINDS = ("Conv2D", "MaxPooling2D")
HEATMAP_CMAP = "jet"  # the spec's (and Chollet's) heatmap colours: blue cold, red hot
ACTIVATION_CMAP = "viridis"


class ExplainError(ValueError):
    """Bad input from the user (missing crop, unknown layer, class out of range); the message names the
    choices."""


# --- finding the model and its run ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRun:
    """A trained model and what its run recorded about it."""

    model_file: Path
    run_dir: Path | None  # runs/train/<run>, or None for a bare .keras file
    config: dict[str, Any]
    split_file: Path | None
    out_dir: Path  # where the figures go
    prefix: str = ""  # prepended to figure names: models kept by 'compare' share one folder

    @property
    def task(self) -> str | None:
        return self.config.get("task")

    @property
    def pad(self) -> bool:
        return bool(self.config.get("pad", False))


def resolve_model(path: Path) -> ModelRun:
    """A run folder (``runs/train/<run>``) or a ``.keras`` file, with its config and split.

    Mirrors ``toonvision evaluate``: a run folder has ``config.json`` and ``split.json``; a model kept by
    ``compare`` has ``<name>.json`` (its TrainConfig under "config") and ``<name>.split.json`` beside it.
    """
    import json

    path = Path(path)
    if path.is_dir():
        model_file, run_dir = path / "model.keras", path
    elif path.name == "model.keras" and (path.parent / "config.json").exists():
        model_file, run_dir = path, path.parent  # the run's own model file: same as naming the run
    else:
        model_file, run_dir = path, None
    if not model_file.exists():
        raise ExplainError(f"{model_file} does not exist (give a run folder such as runs/train/<run> or a .keras file)")
    if run_dir is not None:
        config_file, split_file = run_dir / "config.json", run_dir / "split.json"
        out_dir, prefix = run_dir / "explain", ""
    else:
        config_file, split_file = model_file.with_suffix(".json"), model_file.with_suffix(".split.json")
        out_dir, prefix = model_file.parent / "explain", f"{model_file.stem}."
    config: dict[str, Any] = {}
    if config_file.exists():
        try:
            raw = json.loads(config_file.read_text())
            config = raw.get("config", raw) if isinstance(raw, dict) else {}
        except (OSError, ValueError):
            config = {}  # a damaged config only costs us the task and pad hints
    return ModelRun(model_file, run_dir, config, split_file if split_file.exists() else None, out_dir, prefix)


def load_model(model_file: Path) -> keras.Model:
    import keras

    try:
        return keras.models.load_model(model_file, compile=False)
    except (OSError, ValueError) as exc:
        raise ExplainError(f"{model_file} is not a Keras model: {exc}") from None


def find_crops(paths: Iterable[Path]) -> list[Path]:
    """Crop files, and the images inside folders (recursively, sorted). Missing paths, files that are not
    images and folders without images are errors."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            inside = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not inside:
                raise ExplainError(f"{p} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            found += inside
        elif p.is_file():
            found.append(p)
        else:
            raise ExplainError(f"crop {p} does not exist")
    return list(dict.fromkeys(found))


def load_crop(path: Path, pad: bool = False) -> np.ndarray:
    """A crop as the model's input: uint8 (600, 200, 3), resized the way the model was trained."""
    from PIL import UnidentifiedImageError

    from toonvision.datasets import load_image

    try:
        return load_image(path, pad=pad)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ExplainError(f"{path} is not an image that can be read ({', '.join(IMAGE_SUFFIXES)}): {exc}") from None


# --- results -------------------------------------------------------------------------------------------------


@dataclass
class LayerActivation:
    name: str
    kind: str  # "Conv2D" or "MaxPooling2D"
    values: np.ndarray  # (height, width, channels)


@dataclass
class CamResult:
    """Heatmaps of a batch of crops: ``maps[method]`` is (N, H, W) in [0, 1] at the input's size and
    ``coarse[method]`` the same at the CAM layer's resolution."""

    classes: np.ndarray  # the class each map explains, per crop
    outputs: np.ndarray  # the model's outputs (N, units)
    layer: str
    geometry: Geometry | None = None  # where the CAM layer's grid sits on the crop
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    coarse: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class FilterPatterns:
    layer: str
    patterns: np.ndarray  # (filters, size, size, 3) uint8, contrast-stretched for display
    activation: np.ndarray  # mean activation each pattern reaches
    silent: np.ndarray  # bool: filters that never responded (no gradient; the pattern is the starting noise)
    receptive_field: int
    canvas: int
    steps: int


# --- the explainer -------------------------------------------------------------------------------------------


class Explainer:
    """Views into one Keras model: activations, filter patterns and class activation maps.

    ``task`` names the classes ("binary", "suit", "name"); without it they are guessed from the number of
    outputs, else numbered. ``cam_layer`` is the layer whose feature maps the heatmaps weigh (default: the
    output of the last convolution block, see :func:`default_cam_layer`).
    """

    def __init__(self, model: keras.Model, task: str | None = None, cam_layer: str | None = None) -> None:
        _require_gradient_backend()
        self.model = model
        self.units = int(model.output_shape[-1])
        self.task = task or TASK_BY_UNITS.get(self.units)
        classes = task_classes(self.task) if self.task else []
        if self.units == 1:
            classes = classes if len(classes) == 2 else ["0", "1"]
        elif len(classes) != self.units:
            classes = [str(i) for i in range(self.units)]
        self.classes: list[str] = classes
        self.feature_layers = [layer for layer in model.layers if type(layer).__name__ in FEATURE_KINDS]
        self.conv_layers = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
        if not self.conv_layers:
            raise ExplainError(f"model {model.name} has no Conv2D layer at its top level to explain")
        self.cam_layer = self.layer(cam_layer, spatial=True) if cam_layer else default_cam_layer(model)
        self._grad_model: keras.Model | None = None

    # --- layers and classes ---

    def layer(self, name: str, *, conv: bool = False, spatial: bool = False) -> keras.layers.Layer:
        """The layer called ``name``; an error names the choices."""
        if conv:
            choices = [layer.name for layer in self.conv_layers]
        elif spatial:
            choices = [layer.name for layer in self.model.layers if len(_output_shape(layer)) == 4]
        else:
            choices = [layer.name for layer in self.model.layers]
        if name not in choices:
            what = "convolution layer" if conv else "layer with feature maps" if spatial else "layer"
            raise ExplainError(f"model {self.model.name} has no {what} {name!r} (choose from {', '.join(choices)})")
        return self.model.get_layer(name)

    def class_index(self, spec: str | int | None) -> int | None:
        """A class given by name (case-insensitive) or index; None means "the predicted class"."""
        if spec is None:
            return None
        text = str(spec).strip()
        names = [c.lower() for c in self.classes]
        if text.lower() in names:
            return names.index(text.lower())
        if text.lstrip("-").isdigit() and 0 <= int(text) < len(self.classes):
            return int(text)
        listing = ", ".join(f"{i}={c}" for i, c in enumerate(self.classes))
        raise ExplainError(f"class {text!r} is not a class of this model (choose a name or index: {listing})")

    def predict(self, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """Model outputs (N, units), in inference mode (augmentation and dropout off)."""
        out = [
            np.asarray(self.model(_as_float(images[i : i + batch_size]), training=False))
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.units), "float32")

    def predicted_classes(self, outputs: np.ndarray) -> np.ndarray:
        if self.units == 1:
            return (outputs[:, 0] > 0.5).astype(int)  # A > 0.5 means class 1 (toon), as in the spec
        return np.argmax(outputs, axis=1)

    def describe(self, output: np.ndarray) -> str:
        """'toon (A=0.93)': the predicted class and the spec's A for one output row."""
        if self.units == 1:
            return f"{self.classes[int(output[0] > 0.5)]} (A={output[0]:.2f})"
        k = int(np.argmax(output))
        return f"{self.classes[k]} (A={output[k]:.2f})"

    # --- intermediate activations ---

    def activations(self, image: np.ndarray) -> list[LayerActivation]:
        """Every Conv2D and MaxPooling2D output for one crop, in model order."""
        import keras

        sub = keras.Model(_single_input(self.model), [layer.output for layer in self.feature_layers])
        outs = sub(_as_float(image[None]), training=False)
        outs = outs if isinstance(outs, list | tuple) else [outs]
        return [
            LayerActivation(layer.name, type(layer).__name__, np.asarray(out)[0])
            for layer, out in zip(self.feature_layers, outs, strict=True)
        ]

    # --- class activation maps ---

    def cams(
        self,
        images: np.ndarray,
        class_index: int | Sequence[int] | None = None,
        methods: Sequence[str] = CAM_METHODS,
        batch_size: int = 8,
    ) -> CamResult:
        """Heatmaps of ``images`` for ``class_index`` (one for all, one per image, or None: the predicted
        class of each) by each of ``methods``."""
        unknown = [m for m in methods if m not in CAM_METHODS]
        if unknown:
            raise ExplainError(f"unknown heatmap method {unknown[0]!r} (choose from {', '.join(CAM_METHODS)})")
        images = _as_float(images)
        features, grads, outputs = [], [], []
        for i in range(0, len(images), batch_size):
            batch = images[i : i + batch_size]
            f, g, o = self._feature_gradients(batch, class_index, i)
            features.append(f)
            grads.append(g)
            outputs.append(o)
        a, g, out = np.concatenate(features), np.concatenate(grads), np.concatenate(outputs)
        classes = self._target_classes(class_index, out)
        geometry = layer_geometry(self.model, self.cam_layer.name)
        result = CamResult(classes, out, self.cam_layer.name, geometry)
        size = images.shape[1:3]
        for method in methods:
            if method == "gradcam":
                coarse = grad_cam(a, g)
            elif method == "gradcam++":
                coarse = grad_cam_plus_plus(a, g)
            else:
                coarse = self._score_cam(images, a, classes, geometry)
            result.coarse[method] = coarse
            result.maps[method] = upsample(coarse, size, geometry)
        return result

    def _target_classes(self, class_index: int | Sequence[int] | None, outputs: np.ndarray) -> np.ndarray:
        if class_index is None:
            return self.predicted_classes(outputs)
        if isinstance(class_index, int | np.integer):
            return np.full(len(outputs), int(class_index))
        return np.asarray(class_index, dtype=int)

    def _feature_gradients(self, batch: np.ndarray, class_index, offset: int):
        """Feature maps of the CAM layer, the gradient of the class score with respect to them, and the
        model's outputs, for one batch."""
        import keras

        if self._grad_model is None:
            # The brief's sub-model (inputs -> [feature maps, output]) plus the head's input, from which the
            # class logits are recomputed (see the module docstring for why logits).
            head = self.model.layers[-1]
            extra = [head.input] if _logit_head(head) else []
            self._grad_model = keras.Model(
                _single_input(self.model), [self.cam_layer.output, self.model.output, *extra]
            )
        if class_index is None or isinstance(class_index, int | np.integer):
            chosen = class_index
        else:
            chosen = np.asarray(class_index)[offset : offset + len(batch)]
        head = self.model.layers[-1]

        def score(outputs: list) -> Any:
            probs = outputs[0]
            logits = _logits(head, outputs[1]) if len(outputs) > 1 else None
            targets = self.predicted_classes(np.asarray(probs)) if chosen is None else chosen
            return class_scores(logits, probs, targets, self.units)

        return _feature_gradients(self._grad_model, batch, score)

    def _score_cam(
        self, images: np.ndarray, features: np.ndarray, classes: np.ndarray, geometry: Geometry
    ) -> np.ndarray:
        """Score-CAM (Wang et al. 2020): each feature map, upsampled and scaled to [0, 1], masks the crop;
        its weight is how much the masked crop alone raises the class probability over a black crop."""
        n, h, w, k = features.shape
        size = images.shape[1:3]
        baseline = self.predict(np.zeros((1, *images.shape[1:]), "float32"))
        maps = np.zeros((n, h, w), "float32")
        for i in range(n):
            acts = features[i].transpose(2, 0, 1)  # (k, h, w)
            lo = acts.reshape(k, -1).min(axis=1)[:, None, None]
            hi = acts.reshape(k, -1).max(axis=1)[:, None, None]
            live = (hi - lo)[:, 0, 0] > 1e-12  # a flat map masks nothing and carries no evidence
            masks = upsample(np.where(hi > lo, (acts - lo) / np.maximum(hi - lo, 1e-12), 0.0), size, geometry)
            weights = np.zeros(k, "float32")
            base = class_probability(baseline, classes[i])[0]
            live_idx = np.flatnonzero(live)
            for first in range(0, live_idx.size, 16):
                # 16 masked crops at a time: all 128 channels of a 600x200 crop at once would take 180 MB.
                chunk = live_idx[first : first + 16]
                probs = self.predict(images[i][None] * masks[chunk, :, :, None])
                weights[chunk] = class_probability(probs, classes[i]) - base
            maps[i] = np.maximum(np.tensordot(weights, acts, axes=1), 0)
        return _normalise(maps)

    # --- filter patterns ---

    def filter_patterns(
        self,
        layer_name: str,
        *,
        steps: int = 40,
        step_size: float = 2.0,
        seed: int = 0,
        batch_size: int = 32,
        on_step: Callable[[int], None] | None = None,
    ) -> FilterPatterns:
        """For each filter of convolution layer ``layer_name``, the input that maximally activates it:
        gradient ascent from noise on the mean activation away from the borders (Chollet's method).

        The ascent runs on a small square canvas, a few receptive fields wide, through the same layers (so
        the same weights), which is many times faster than the full 600x200 input and shows the pattern at
        a readable scale. A ReLU filter that is zero on grey noise has no gradient to climb, so each filter
        starts from the first of a few noises of growing contrast it responds to; filters that respond to
        none are reported as silent. ``on_step`` is called after every step of every batch of filters.
        """
        layer = self.layer(layer_name, conv=True)
        geometry = layer_geometry(self.model, layer.name)
        rf = max(geometry.rf)
        height, width = (int(v) for v in _single_input(self.model).shape[1:3])
        canvas = min(max(2 * rf + 32, 64), 200, height, width)
        extractor, (ch, cw) = _feature_extractor(self.model, layer, canvas)
        n = int(_output_shape(layer)[-1])
        rng = np.random.default_rng(seed)
        patterns, activation, silent = [], [], []
        for first in range(0, n, batch_size):
            chans = np.arange(first, min(n, first + batch_size))
            x0 = _starting_noise(extractor, chans, (ch, cw), rng)
            x, act, fired = _gradient_ascent(extractor, x0, chans, steps, step_size, on_step, seed=seed)
            patterns.append(x)
            activation.append(act)
            silent.append(~fired)
        images = np.concatenate(patterns)
        if (ch, cw) == (canvas, canvas):
            images = _optimised_window(images, layer_geometry(extractor, layer.name), extractor.output.shape[1:3])
        else:
            images = _centre_crop(images, canvas)  # ran on the full input: show a canvas-sized window
        return FilterPatterns(
            layer.name,
            _display_patterns(images),
            np.concatenate(activation),
            np.concatenate(silent),
            rf,
            images.shape[1],
            steps,
        )


def _starting_noise(extractor: keras.Model, chans: np.ndarray, size: tuple[int, int], rng) -> np.ndarray:
    """Per filter, grey noise of the lowest contrast it responds to (it needs a response to have a
    gradient); grey noise for filters that respond to none."""
    shape = (len(chans), *size, 3)
    chosen = 128.0 + rng.uniform(-20, 20, shape)
    pending = np.ones(len(chans), bool)
    for spread in (20, 60, 128, 128, 128):
        x = np.clip(128.0 + rng.uniform(-spread, spread, shape), 0, 255)
        response = _interior_means(np.asarray(extractor(x.astype("float32"), training=False)))[
            np.arange(len(chans)), chans
        ]
        take = pending & (response > 0)
        chosen[take] = x[take]
        pending &= ~take
        if not pending.any():
            break
    return chosen.astype("float32")


def _interior_means(act: np.ndarray) -> np.ndarray:
    """Mean activation per image and channel, two units away from the borders (as the ascent's
    objective)."""
    h, w = act.shape[1:3]
    bh, bw = min(2, (h - 1) // 2), min(2, (w - 1) // 2)
    return act[:, bh : h - bh, bw : w - bw, :].mean(axis=(1, 2))


def _optimised_window(images: np.ndarray, geometry: Geometry, grid: tuple) -> np.ndarray:
    """The part of the canvas the objective's units see (the interior units' receptive fields); the rest
    is untouched noise and only wastes the figure's space."""
    spans = []
    for axis in (0, 1):
        n, size = int(grid[axis]), images.shape[1 + axis]
        border = min(2, (n - 1) // 2)
        half = (geometry.rf[axis] - 1) / 2
        lo = geometry.start[axis] + border * geometry.jump[axis] - half
        hi = geometry.start[axis] + (n - 1 - border) * geometry.jump[axis] + half
        spans.append((max(0, math.floor(lo)), min(size, math.ceil(hi) + 1)))
    side = min(b - a for a, b in spans)  # square tiles: the shorter span, centred in the longer
    (y0, y1), (x0, x1) = spans
    top, left = y0 + (y1 - y0 - side) // 2, x0 + (x1 - x0 - side) // 2
    return images[:, top : top + side, left : left + side]


def default_cam_layer(model: keras.Model) -> keras.layers.Layer:
    """The output of the last convolution block: the last Conv2D, or a layer after it that keeps its
    spatial size (BatchNormalization, Activation), so Grad-CAM weighs rectified features at the finest
    resolution the last convolution has. Pooling changes the size and ends the block."""
    layers = list(model.layers)
    convs = [i for i, layer in enumerate(layers) if type(layer).__name__ == "Conv2D"]
    if not convs:
        raise ExplainError(f"model {model.name} has no Conv2D layer at its top level to explain")
    last = convs[-1]
    shape = _output_shape(layers[last])[1:3]
    chosen = last
    for i in range(last + 1, len(layers)):
        out = _output_shape(layers[i])
        if len(out) != 4 or out[1:3] != shape:
            break
        # Dropout is the identity at inference: the layer before it is the same map, with a clearer name.
        if "Dropout" not in type(layers[i]).__name__:
            chosen = i
    return layers[chosen]


@dataclass(frozen=True)
class Geometry:
    """Where a layer's feature grid sits on the input, per axis (height, width): unit i of the grid is
    centred on input pixel ``start + i * jump`` and sees ``rf`` pixels."""

    rf: tuple[int, int]
    jump: tuple[int, int]
    start: tuple[float, float]


def layer_geometry(model: keras.Model, layer_name: str) -> Geometry:
    """Receptive field, stride and offset of ``layer_name``'s units, walking the model's layers in order
    (exact for the chains in the registry, valid or same padding; an estimate for branching models)."""
    rf, jump, start = [1, 1], [1, 1], [0.0, 0.0]
    for layer in model.layers:
        kernel = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
        if kernel is not None:
            strides = getattr(layer, "strides", None) or kernel
            dilation = getattr(layer, "dilation_rate", None) or (1, 1)
            same = getattr(layer, "padding", "valid") == "same"
            size = _input_shape(layer)
            for axis in (0, 1):
                k = (_axis(kernel, axis) - 1) * _axis(dilation, axis) + 1
                s = _axis(strides, axis)
                pad = 0
                if same and size:
                    n = size[1 + axis] or 0
                    pad = max(k - (s if n % s == 0 else n % s), 0) // 2  # TensorFlow puts the odd pixel last
                start[axis] += ((k - 1) / 2 - pad) * jump[axis]
                rf[axis] += (k - 1) * jump[axis]
                jump[axis] *= s
        if layer.name == layer_name:
            break
    else:
        raise ValueError(f"model {model.name} has no layer {layer_name!r}")
    return Geometry((rf[0], rf[1]), (jump[0], jump[1]), (start[0], start[1]))


def _axis(value: Any, axis: int) -> int:
    return int(value[axis] if isinstance(value, list | tuple) else value)


def _input_shape(layer: Any) -> tuple:
    try:
        return tuple(layer.input.shape)
    except (AttributeError, ValueError):
        return ()


# --- heatmap arithmetic (numpy) ------------------------------------------------------------------------------


def grad_cam(features: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017): feature maps weighted by their spatially averaged gradient,
    summed, rectified and scaled to [0, 1]. ``features``, ``grads``: (N, h, w, k) -> (N, h, w)."""
    weights = grads.mean(axis=(1, 2), keepdims=True)
    return _normalise(np.maximum((features * weights).sum(axis=-1), 0))


def grad_cam_plus_plus(features: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """Grad-CAM++ (Chattopadhyay et al. 2018) in its usual closed form: with an exponential of the score
    the higher derivatives are powers of the first one, and positive gradients are weighed per location,
    so several separate pieces of evidence each count in full."""
    g2, g3 = grads**2, grads**3
    total = features.sum(axis=(1, 2), keepdims=True)
    denom = 2 * g2 + total * g3
    alpha = g2 / np.where(denom != 0, denom, 1.0)
    weights = (alpha * np.maximum(grads, 0)).sum(axis=(1, 2), keepdims=True)
    return _normalise(np.maximum((features * weights).sum(axis=-1), 0))


def class_probability(outputs: np.ndarray, k: int) -> np.ndarray:
    """Probability of class ``k`` per row: p for a sigmoid's class 1, 1 - p for its class 0."""
    if outputs.shape[-1] == 1:
        return outputs[:, 0] if k == 1 else 1.0 - outputs[:, 0]
    return outputs[:, k]


def class_scores(logits: Any, probs: Any, targets: Any, units: int) -> Any:
    """The score whose gradient a heatmap follows, per row, as a backend tensor: the class logit (toon: z,
    cog: -z for a sigmoid), or the probability when the head's logits are not available."""
    from keras import ops

    n = ops.shape(probs)[0]
    targets = ops.convert_to_tensor(np.broadcast_to(np.asarray(targets, "int32"), (int(n),)))
    if units == 1:
        sign = ops.cast(targets, "float32") * 2.0 - 1.0
        if logits is not None:
            return logits[:, 0] * sign
        return ops.where(targets == 1, probs[:, 0], 1.0 - probs[:, 0])
    source = logits if logits is not None else probs
    return ops.sum(source * ops.one_hot(targets, units), axis=-1)


def upsample(maps: np.ndarray, size: tuple[int, int], geometry: Geometry | None = None) -> np.ndarray:
    """(N, h, w) maps interpolated bilinearly over an input of ``size`` (height, width).

    With ``geometry`` each cell lands on the centre of its receptive field: a valid-padded network's grid
    covers a shrunken, offset window of the crop, and stretching it over the whole crop, as Chollet's
    recipe does, shifts the heatmap by up to a cell towards the edges. Without it, the map is stretched.
    """
    h, w = maps.shape[1:]
    height, width = int(size[0]), int(size[1])
    if geometry is None:
        fy = (np.arange(height) + 0.5) * h / height - 0.5
        fx = (np.arange(width) + 0.5) * w / width - 0.5
    else:
        start, jump = geometry.start, geometry.jump
        fy = (np.arange(height) - start[0]) / jump[0]
        fx = (np.arange(width) - start[1]) / jump[1]
    fy, fx = np.clip(fy, 0, h - 1), np.clip(fx, 0, w - 1)  # beyond the outermost centres: hold the edge value
    y0, x0 = np.floor(fy).astype(int), np.floor(fx).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (fy - y0)[None, :, None], (fx - x0)[None, None, :]
    m = maps.astype("float32")
    top = m[:, y0][:, :, x0] * (1 - wx) + m[:, y0][:, :, x1] * wx
    bottom = m[:, y1][:, :, x0] * (1 - wx) + m[:, y1][:, :, x1] * wx
    return (top * (1 - wy) + bottom * wy).astype("float32")


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """The heatmap in colour superimposed on the crop (the spec's superimposed image)."""
    from matplotlib import colormaps

    colours = colormaps[HEATMAP_CMAP](np.clip(heatmap, 0, 1))[..., :3] * 255
    return np.clip(image.astype("float32") * (1 - alpha) + colours * alpha, 0, 255).astype("uint8")


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two heatmaps (1: same places hot; 0: unrelated); nan when one is flat."""
    a, b = a.ravel().astype("float64"), b.ravel().astype("float64")
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _normalise(maps: np.ndarray) -> np.ndarray:
    """Each map scaled to [0, 1] by its maximum; an all-zero map stays zero (no evidence found)."""
    peak = maps.reshape(len(maps), -1).max(axis=1)[:, None, None]
    return np.where(peak > 0, maps / np.where(peak > 0, peak, 1), 0).astype("float32")


def _display_patterns(images: np.ndarray) -> np.ndarray:
    """Chollet's deprocessing: centre, scale to a standard contrast, back to 0..255 per pattern."""
    x = images.astype("float64")
    x -= x.mean(axis=(1, 2, 3), keepdims=True)
    x /= x.std(axis=(1, 2, 3), keepdims=True) + 1e-5
    return np.clip(x * 64 + 128, 0, 255).astype("uint8")


def _centre_crop(images: np.ndarray, side: int) -> np.ndarray:
    h, w = images.shape[1:3]
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return images[:, top : top + side, left : left + side]


def _first(value: Any) -> int:
    return int(value[0] if isinstance(value, list | tuple) else value)


def _as_float(images: np.ndarray) -> np.ndarray:
    return np.asarray(images, dtype="float32")


def _output_shape(layer: Any) -> tuple:
    try:
        return tuple(layer.output.shape)
    except (AttributeError, ValueError):
        return ()


def _single_input(model: keras.Model) -> Any:
    """The model's one input tensor (models are called with one array, not a list, so no structure
    warnings)."""
    if len(model.inputs) != 1:
        raise ExplainError(f"model {model.name} has {len(model.inputs)} inputs; only single-input models are explained")
    return model.inputs[0]


def _logit_head(layer: Any) -> bool:
    """A Dense output layer with a sigmoid or softmax activation: its logits can be recomputed."""
    activation = getattr(getattr(layer, "activation", None), "__name__", "")
    return type(layer).__name__ == "Dense" and activation in ("sigmoid", "softmax")


def _logits(head: Any, head_input: Any) -> Any:
    from keras import ops

    z = ops.matmul(head_input, head.kernel)
    return z + head.bias if head.bias is not None else z


def _feature_extractor(model: keras.Model, layer: Any, canvas: int) -> tuple[keras.Model, tuple[int, int]]:
    """A model from a ``canvas`` x ``canvas`` input to ``layer``'s output through the model's own layers
    (weights shared), and its input size. Augmentation blocks become the identity they are at inference.
    When the graph cannot be re-run at another size, the full-size model and its input size."""
    import keras

    def reuse(inner: Any) -> Any:
        if isinstance(inner, keras.Model) and all(type(x).__name__.startswith("Random") for x in inner.layers):
            return keras.layers.Lambda(lambda t: t, name=inner.name)
        return inner  # the very same layer object: same weights, no copy

    sub = keras.Model(_single_input(model), layer.output)
    try:
        small = keras.models.clone_model(
            sub, input_tensors=keras.Input(shape=(canvas, canvas, 3)), clone_function=reuse
        )
        if min(small.output.shape[1:3]) >= 1:
            return small, (canvas, canvas)
    except (ValueError, TypeError):
        pass
    return sub, tuple(int(v) for v in sub.input.shape[1:3])


# --- Backend -------------------------------------------------------------------------------------------------
# The only code that depends on the Keras backend. Keras 3 has no backend-neutral gradient API, so the two
# gradient computations below use TensorFlow's GradientTape (and tf.function for speed). On the JAX or
# PyTorch backends these two functions would need a jax.grad / torch.autograd counterpart; everything else
# in this module is backend-neutral. Models are always called with training=False, so augmentation
# blocks, Dropout and BatchNormalization behave as in inference.


def _require_gradient_backend() -> None:
    import keras

    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RuntimeError(f"toonvision.interpretation computes gradients with TensorFlow; Keras uses {backend!r}")


def _feature_gradients(grad_model: keras.Model, images: np.ndarray, score: Callable[[list], Any]):
    """(features, d score / d features, model outputs) as numpy for one batch; ``grad_model`` maps the
    input to [features, output, *extras] and ``score`` turns [output, *extras] into one score per row."""
    import tensorflow as tf

    x = tf.convert_to_tensor(images, tf.float32)
    with tf.GradientTape() as tape:
        features, *rest = grad_model(x, training=False)
        tape.watch(features)
        scores = score(rest)
    grads = tape.gradient(scores, features)  # rows are independent: the batch sum separates per crop
    return np.asarray(features), np.asarray(grads), np.asarray(rest[0])


def _gradient_ascent(
    extractor: keras.Model,
    x0: np.ndarray,
    channels: np.ndarray,
    steps: int,
    step_size: float,
    on_step: Callable[[int], None] | None,
    *,
    jitter: int = 2,
    blur_every: int = 4,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ascend each image of ``x0`` on the mean interior activation of its own channel. Returns the images
    (clipped to valid pixels), the final activations, and whether each filter ever gave a gradient.

    Two regularisers of Yosinski et al. (2015) keep the patterns legible: the image is shifted by up to
    ``jitter`` pixels before each step (a max-pool straight after the input otherwise passes gradient to
    one pixel in four, and the pattern becomes a checkerboard of untouched noise), and blurred slightly
    every ``blur_every`` steps (high frequencies that excite a filter barely grow, noise fades).
    """
    import tensorflow as tf

    x = tf.Variable(x0)  # each image's own channel: see _starting_noise for why starts differ
    pull = tf.Variable(tf.zeros(len(x0)))  # largest gradient each image got: 0 means the filter never fired
    n_channels = int(extractor.output.shape[-1])
    select = tf.one_hot(channels, n_channels)  # image i maximises channel channels[i]
    kernel = np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]) / 16.0
    kernel = tf.constant(np.tile(kernel[:, :, None, None], (1, 1, 3, 1)), tf.float32)

    def objective(images: Any) -> Any:
        act = extractor(images, training=False)
        h, w = act.shape[1], act.shape[2]
        bh, bw = min(2, (h - 1) // 2), min(2, (w - 1) // 2)  # Chollet: ignore border artefacts
        interior = act[:, bh : h - bh, bw : w - bw, :]
        return tf.reduce_sum(tf.reduce_mean(interior, axis=(1, 2)) * select, axis=1)

    @tf.function
    def step(dy: Any, dx: Any, blur: Any) -> None:
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(objective(tf.roll(x, shift=[dy, dx], axis=[1, 2])))
        g = tape.gradient(total, x)
        # Normalised steps: each image moves by about step_size grey levels per pixel, whatever its scale.
        rms = tf.sqrt(tf.reduce_mean(tf.square(g), axis=(1, 2, 3), keepdims=True))
        pull.assign(tf.maximum(pull, rms[:, 0, 0, 0]))
        x.assign(tf.clip_by_value(x + step_size * g / (rms + 1e-8), 0.0, 255.0))
        if blur:
            padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
            x.assign(tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID"))

    rng = np.random.default_rng(seed)
    for i in range(steps):
        dy, dx = (int(v) for v in rng.integers(-jitter, jitter + 1, 2)) if jitter else (0, 0)
        step(tf.constant(dy), tf.constant(dx), tf.constant(bool(blur_every) and (i + 1) % blur_every == 0))
        if on_step:
            on_step(i + 1)
    return np.asarray(x), np.asarray(objective(x)), np.asarray(pull) > 0


# --- figures -------------------------------------------------------------------------------------------------

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
    from toonvision.plots import _pyplot, _save

    plt = _pyplot()
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
    return _save(fig, path)


def _activation_height(layers: Sequence[LayerActivation], columns: int, width: float) -> float:
    total = 3.2
    for a in layers:
        h, w, c = a.values.shape
        total += -(-c // columns) * h / (columns * w) * width + 0.35
    return total


def plot_filter_patterns(fp: FilterPatterns, path: Path, title: str = "") -> Path:
    """Each filter's pattern as a tile of a grid, numbered; silent filters are marked."""
    from toonvision.plots import _pyplot, _save

    plt = _pyplot()
    n = len(fp.patterns)
    columns = 8 if n <= 32 else 16
    rows = -(-n // columns)
    tile = min(1.6, 15.0 / columns, MAX_FIGURE_INCHES / max(rows, 1))
    fig, axes = plt.subplots(
        rows, columns, figsize=(columns * tile, rows * tile + 0.9), squeeze=False, layout="constrained"
    )
    for ax in axes.flat:
        ax.axis("off")
    for k, ax in enumerate(axes.flat[:n]):
        if fp.silent[k]:
            # Its "pattern" would be the starting noise, blurred: nothing learned to show.
            ax.imshow(np.full(fp.patterns[k].shape, 235, np.uint8))
            ax.text(
                0.5, 0.5, "no\nresponse", ha="center", va="center", fontsize=8, color="#757575", transform=ax.transAxes
            )
            ax.set_title(f"#{k} silent", fontsize=8, color="#b71c1c")
        else:
            ax.imshow(fp.patterns[k], interpolation="nearest")
            ax.set_title(f"#{k}", fontsize=8)
    silent = int(fp.silent.sum())
    fig.suptitle(
        title
        or (
            f"{fp.layer}: the input that most activates each of its {n} filters\n"
            f"gradient ascent from noise, {fp.steps} steps; receptive field {fp.receptive_field} px, "
            f"shown {fp.canvas}x{fp.canvas} px" + (f"; {silent} silent (no response to any noise)" if silent else "")
        ),
        fontsize=11,
    )
    return _save(fig, path)


def plot_cams(
    image: np.ndarray, result: CamResult, index: int, path: Path, title: str = "", classes: Sequence[str] = ()
) -> Path:
    """One crop: the crop, then per method the heatmap alone (at the CAM layer's own resolution) and
    superimposed on the crop, with each method's agreement with the first."""
    from toonvision.plots import _pyplot, _save

    plt = _pyplot()
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
    return _save(fig, path)


def _grid_extent(result: CamResult, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """imshow extent (left, right, bottom, top) that puts each cell of the CAM grid over its receptive
    field's centre on the crop."""
    gh, gw = next(iter(result.coarse.values())).shape[1:]
    g = result.geometry
    if g is None:
        return (-0.5, size[1] - 0.5, size[0] - 0.5, -0.5)
    (sy, sx), (jy, jx) = g.start, g.jump
    return (sx - jx / 2, sx + (gw - 0.5) * jx, sy + (gh - 0.5) * jy, sy - jy / 2)


@dataclass
class WrongItem:
    image: np.ndarray
    prediction: Prediction
    true_label: str  # the crop's label, e.g. cog_lb_bloodsucker
    predicted: str  # the predicted class's name


def plot_wrong_cams(items: Sequence[WrongItem], result: CamResult, path: Path, title: str = "") -> Path:
    """The spec's wrong-prediction grid with heatmaps: per crop its true label, E and A, the crop, and
    each method's heatmap superimposed."""
    from toonvision.plots import _pyplot, _save, save_message

    plt = _pyplot()
    if not items:
        return save_message("No wrong predictions", path)
    methods = list(result.maps)
    panels = 1 + len(methods)
    per_row = max(1, min(len(items), 16 // panels))
    rows = -(-len(items) // per_row)
    panel_w = 1.05
    fig = plt.figure(
        figsize=(per_row * panels * panel_w + 0.3, min(rows * 3.9 + 0.8, MAX_FIGURE_INCHES)), layout="constrained"
    )
    subfigs = np.atleast_1d(fig.subfigures(rows, per_row, squeeze=False)).ravel()
    for sub in subfigs[len(items) :]:
        sub.set_visible(False)
    for i, (item, sub) in enumerate(zip(items, subfigs, strict=False)):
        p = item.prediction
        axes = sub.subplots(1, panels)
        axes = np.atleast_1d(axes)
        axes[0].imshow(item.image.astype("uint8"))
        axes[0].set_title("crop", fontsize=7)
        for j, method in enumerate(methods):
            axes[1 + j].imshow(overlay(item.image, result.maps[method][i]))
            axes[1 + j].set_title(METHOD_TITLES[method], fontsize=7)
        for ax in axes:
            ax.axis("off")
        sub.suptitle(
            f"{item.true_label}\nE={p.error:.2f} A={p.output:.2f} -> {item.predicted}", fontsize=8, color="#b71c1c"
        )
    fig.suptitle(title or "Wrong predictions, highest error first", fontsize=12)
    return _save(fig, path)


# --- the command ---------------------------------------------------------------------------------------------


def wrong_predictions(explainer: Explainer, run: ModelRun, root: Path, top: int) -> tuple[list[WrongItem], int, int]:
    """The model's wrong predictions over the whole dataset of workspace ``root``, highest error first
    (evaluation's ranking), the top ``top`` with their crops. Also returns the counts (wrong, all)."""
    import json

    from toonvision.datasets import find_samples, load_task
    from toonvision.evaluation import evaluate_model
    from toonvision.workspace import Workspace

    if explainer.task is None:
        raise ExplainError("--wrong needs the model's task: give --task binary, suit or name")
    samples = find_samples(Workspace(root))
    try:
        data = load_task(samples, explainer.task, pad=run.pad)
    except ValueError as exc:
        raise ExplainError(f"no crops to evaluate in workspace {root}: {exc}") from None
    split_of = json.loads(run.split_file.read_text()) if run.split_file else None
    ev = evaluate_model(explainer.model, data, explainer.task, split_of)
    wrong = ev.wrong()
    index = {s.name: i for i, s in enumerate(data.samples)}
    items = [
        WrongItem(data.x[index[p.name]], p, str(data.samples[index[p.name]].label), ev.classes[p.predicted])
        for p in wrong[:top]
    ]
    return items, len(wrong), len(ev.predictions)


def _figure_name(stem: str, taken: set[str]) -> str:
    """Crops of one name from two folders get -2, -3... rather than overwriting each other's figures."""
    name, n = stem, 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}"
    taken.add(name)
    return name


def explain_command(
    model_path: Annotated[
        Path,
        typer.Argument(
            help="A run folder (runs/train/<run>) or a .keras file (e.g. runs/compare/<exp>/best/optimized.keras).",
            show_default=False,
        ),
    ],
    crops: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Crop files or folders of crops to explain (folders are searched recursively).", show_default=False
        ),
    ] = None,
    root: Annotated[
        Path,
        typer.Option(
            "--root", envvar="TOONVISION_ROOT", help="Workspace root folder (for --wrong).", show_default=True
        ),
    ] = Path("img"),
    activations: Annotated[
        bool, typer.Option("--activations", help="Feature maps of every Conv2D and MaxPooling2D layer for each crop.")
    ] = False,
    filters: Annotated[
        bool, typer.Option("--filters", help="The input pattern that maximally activates each filter (slow).")
    ] = False,
    heatmaps: Annotated[
        bool,
        typer.Option(
            "--heatmaps", help="Grad-CAM heatmap of each crop, alone and on the crop, with --compare methods beside it."
        ),
    ] = False,
    wrong: Annotated[
        bool, typer.Option("--wrong", help="Heatmaps of the model's wrong predictions over the workspace's crops.")
    ] = False,
    top: Annotated[
        int, typer.Option(min=1, help="How many wrong predictions --wrong shows, highest error first.")
    ] = 16,
    layer: Annotated[
        list[str] | None,
        typer.Option(
            "--layer", help="Convolution layer for --filters (repeatable; default: every Conv2D).", show_default=False
        ),
    ] = None,
    class_: Annotated[
        str | None,
        typer.Option(
            "--class",
            help="Class the heatmaps explain, by name or index (default: the predicted class).",
            show_default=False,
        ),
    ] = None,
    compare: Annotated[
        list[str] | None,
        typer.Option(
            "--compare",
            help="Methods shown beside Grad-CAM: gradcam++, scorecam (repeatable), or none (default: both)",
            show_default=False,
        ),
    ] = None,
    cam_layer: Annotated[
        str | None,
        typer.Option(
            "--cam-layer",
            help="Layer whose feature maps the heatmaps weigh (default: last convolution block).",
            show_default=False,
        ),
    ] = None,
    steps: Annotated[int, typer.Option(min=1, help="Gradient-ascent steps per filter pattern.")] = 40,
    task: Annotated[
        str | None,
        typer.Option(help="Task of a bare .keras file without its .json (binary, suit, name).", show_default=False),
    ] = None,
) -> None:
    """Look inside a trained model: intermediate activations, filter patterns and class activation heatmaps.

    With crops and no view flags, every view is drawn: the activations and heatmaps of each crop, and the
    filter patterns of the model. Without crops: the filter patterns, or with [bold]--wrong[/] only the
    heatmaps of the wrong predictions. Heatmaps are Grad-CAM with Grad-CAM++ and Score-CAM beside it
    (r = how much each agrees with Grad-CAM). For a binary model, class [bold]cog[/] follows the gradient
    of -logit (the same map as 1 - A, without its vanishing gradient when the model is confident).

    Figures go to <run>/explain/ (for a bare .keras file, <dir>/explain/ with the model's name in front):
    <crop>.activations.png, <crop>.gradcam.png, filters.<layer>.png and wrong.gradcam.png.
    """
    from toonvision.cli import _progress, _quiet_tensorflow, console, fail, header

    try:
        compare_methods = _compare_methods(compare)
        run = resolve_model(model_path)
        crop_files = find_crops(crops or [])
        if (activations or heatmaps) and not crop_files:
            raise ExplainError("--activations and --heatmaps need crops: give crop files or folders after the model")
        if task is not None and task not in TASK_BY_UNITS.values():
            raise ExplainError(f"unknown task {task!r} (choose from binary, suit, name)")
        if not (activations or filters or heatmaps):
            # No view chosen: everything the inputs allow (--wrong alone means just that).
            activations = heatmaps = bool(crop_files)
            filters = bool(crop_files) or not wrong
        _quiet_tensorflow()
        model = load_model(run.model_file)
        explainer = Explainer(model, task or run.task, cam_layer)
        class_index = explainer.class_index(class_)
        layers = [explainer.layer(name, conv=True).name for name in layer] if layer else []
        layers = layers or [lyr.name for lyr in explainer.conv_layers]
        images = [load_crop(p, run.pad) for p in crop_files]  # all read first: a bad crop fails fast
    except ExplainError as exc:
        raise fail(str(exc)) from None

    methods = ["gradcam", *compare_methods]
    header(
        "explain",
        model=run.model_file,
        task=explainer.task,
        classes=len(explainer.classes),
        crops=len(crop_files),
        activations=activations,
        filters=filters,
        heatmaps=heatmaps,
        wrong=wrong,
        top=top,
        layers=",".join(layers) if filters else "-",
        **{"class": class_ if class_ is not None else "predicted"},
        cam_layer=explainer.cam_layer.name,
        methods=",".join(methods),
        steps=steps,
        out=run.out_dir,
    )
    out = run.out_dir
    out.mkdir(parents=True, exist_ok=True)
    suffix = f".class-{explainer.classes[class_index]}" if class_index is not None else ""
    written: list[Path] = []
    taken: set[str] = set()
    with _progress() as progress:
        if crop_files:
            task_id = progress.add_task("crops", total=len(crop_files))
            for path, image in zip(crop_files, images, strict=True):
                stem = run.prefix + _figure_name(path.stem, taken)
                prediction = explainer.describe(explainer.predict(image[None])[0])
                if activations:
                    written.append(
                        plot_activations(
                            explainer.activations(image),
                            image,
                            out / f"{stem}.activations.png",
                            f"{path.name}: intermediate activations (predicted {prediction})",
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
                            out / f"{stem}.gradcam{suffix}.png",
                            f"{path.name}: predicted {prediction}; heatmaps of class {target!r} "
                            f"from layer {result.layer}",
                        )
                    )
                progress.advance(task_id)
        if filters:
            for name in layers:
                n = int(_output_shape(explainer.model.get_layer(name))[-1])
                batch = 32  # filters optimised together; the bar counts steps of every batch
                task_id = progress.add_task(f"filter patterns {name}", total=steps * -(-n // batch))
                fp = explainer.filter_patterns(
                    name, steps=steps, batch_size=batch, on_step=lambda _i, t=task_id: progress.advance(t)
                )
                written.append(plot_filter_patterns(fp, out / f"{run.prefix}filters.{name}.png"))
        if wrong:
            task_id = progress.add_task("wrong predictions", total=None)
            try:
                items, n_wrong, n_all = wrong_predictions(explainer, run, root, top)
            except ExplainError as exc:
                raise fail(str(exc)) from None
            if items:
                result = explainer.cams(np.stack([it.image for it in items]), class_index, methods)
            else:
                result = CamResult(np.zeros(0, int), np.zeros((0, explainer.units)), explainer.cam_layer.name)
            what = "the predicted class" if class_index is None else f"class {explainer.classes[class_index]!r}"
            written.append(
                plot_wrong_cams(
                    items,
                    result,
                    out / f"{run.prefix}wrong.gradcam{suffix}.png",
                    f"{n_wrong} wrong predictions over {n_all} crops, highest error first (top {len(items)}); "
                    f"heatmaps of {what}, layer {result.layer}",
                )
            )
            progress.update(task_id, total=1, completed=1)
            console.print(f"{n_wrong} wrong predictions over {n_all} crops")
    for p in written:
        console.print(f"wrote {p}")


def _compare_methods(compare: Sequence[str] | None) -> list[str]:
    if compare is None:
        return ["gradcam++", "scorecam"]
    chosen: list[str] = []
    for value in compare:
        for item in str(value).split(","):
            item = item.strip().lower()
            if item in ("", "none"):
                continue
            if item not in CAM_METHODS[1:]:
                raise ExplainError(f"unknown --compare method {item!r} (choose from gradcam++, scorecam, none)")
            if item not in chosen:
                chosen.append(item)
    return chosen


__all__ = [
    "CAM_METHODS",
    "CamResult",
    "ExplainError",
    "Explainer",
    "FilterPatterns",
    "Geometry",
    "LayerActivation",
    "ModelRun",
    "agreement",
    "default_cam_layer",
    "explain_command",
    "find_crops",
    "grad_cam",
    "grad_cam_plus_plus",
    "layer_geometry",
    "load_crop",
    "load_model",
    "overlay",
    "plot_activations",
    "plot_cams",
    "plot_filter_patterns",
    "plot_wrong_cams",
    "resolve_model",
    "upsample",
    "wrong_predictions",
]
