"""Model interpretation: what a trained ToonVision model sees (the spec's "Model interpretation and
visualization").

Three views, for any model of any task (binary, suit, name, animal):

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from toonvision.data.samples import find_samples, load_task
from toonvision.data.taxonomy import task_classes, task_for_units
from toonvision.interpretation.cam import (
    CAM_METHODS,
    Geometry,
    class_probability,
    class_scores,
    grad_cam,
    grad_cam_plus_plus,
    layer_geometry,
    normalise_maps,
    upsample,
)
from toonvision.learning.evaluation import evaluate_model

if TYPE_CHECKING:
    import keras

    from toonvision.data.workspace import Workspace
    from toonvision.learning.evaluation import Prediction

FEATURE_KINDS = ("Conv2D", "MaxPooling2D")


class ExplainError(ValueError):
    """Bad input from the user (missing crop, unknown layer, class out of range); the message names the
    choices."""


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

    ``task`` names the classes ("binary", "suit", "name", "animal"); without it they are guessed from the number of
    outputs, else numbered. ``cam_layer`` is the layer whose feature maps the heatmaps weigh (default: the
    output of the last convolution block, see :func:`default_cam_layer`).
    """

    def __init__(self, model: keras.Model, task: str | None = None, cam_layer: str | None = None) -> None:
        _require_gradient_backend()
        self.model = model
        self.units = int(model.output_shape[-1])
        self.task = task
        if task is None:
            try:
                self.task = task_for_units(self.units)
            except ValueError:
                self.task = None  # an unknown model: its classes are numbered
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
        return normalise_maps(maps)

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


# --- wrong predictions ---


@dataclass
class WrongItem:
    image: np.ndarray
    prediction: Prediction
    true_label: str  # the crop's label, e.g. cog_lb_bloodsucker
    predicted: str  # the predicted class's name


def wrong_predictions(
    explainer: Explainer,
    ws: Workspace,
    top: int,
    *,
    pad: bool = False,
    split: dict[str, str | None] | None = None,
) -> tuple[list[WrongItem], int, int]:
    """The model's wrong predictions over the whole dataset of workspace ``ws`` (crops fitted as the model
    was trained: ``pad``; ``split`` its run's split), highest error first (evaluation's ranking), the top
    ``top`` with their crops. Also returns the counts (wrong, all)."""
    if explainer.task is None:
        raise ExplainError("--wrong needs the model's task: give --task binary, suit, name or animal")
    try:
        data = load_task(find_samples(ws), explainer.task, pad=pad, ws=ws)
    except ValueError as exc:
        raise ExplainError(f"no crops to evaluate in workspace {ws.root}: {exc}") from None
    ev = evaluate_model(explainer.model, data, explainer.task, split)
    wrong = ev.wrong()
    index = {s.name: i for i, s in enumerate(data.samples)}
    items = [
        WrongItem(data.x[index[p.name]], p, str(data.samples[index[p.name]].label), ev.classes[p.predicted])
        for p in wrong[:top]
    ]
    return items, len(wrong), len(ev.predictions)
