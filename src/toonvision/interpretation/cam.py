"""The arithmetic of class activation maps, in numpy: Grad-CAM, Grad-CAM++, where a layer's feature grid
sits on the crop (receptive fields), and maps brought to the crop's size.

The gradients these need come from :class:`toonvision.interpretation.explainer.Explainer`; nothing here
imports Keras or TensorFlow except :func:`class_scores`, which builds its score with Keras' backend-neutral ops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import keras

CAM_METHODS: tuple[str, ...] = ("gradcam", "gradcam++", "scorecam")


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


def grad_cam(features: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017): feature maps weighted by their spatially averaged gradient,
    summed, rectified and scaled to [0, 1]. ``features``, ``grads``: (N, h, w, k) -> (N, h, w)."""
    weights = grads.mean(axis=(1, 2), keepdims=True)
    return normalise_maps(np.maximum((features * weights).sum(axis=-1), 0))


def grad_cam_plus_plus(features: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """Grad-CAM++ (Chattopadhyay et al. 2018) in its usual closed form: with an exponential of the score
    the higher derivatives are powers of the first one, and positive gradients are weighed per location,
    so several separate pieces of evidence each count in full."""
    g2, g3 = grads**2, grads**3
    total = features.sum(axis=(1, 2), keepdims=True)
    denom = 2 * g2 + total * g3
    alpha = g2 / np.where(denom != 0, denom, 1.0)
    weights = (alpha * np.maximum(grads, 0)).sum(axis=(1, 2), keepdims=True)
    return normalise_maps(np.maximum((features * weights).sum(axis=-1), 0))


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


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two heatmaps (1: same places hot; 0: unrelated); nan when one is flat."""
    a, b = a.ravel().astype("float64"), b.ravel().astype("float64")
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def normalise_maps(maps: np.ndarray) -> np.ndarray:
    """Each map scaled to [0, 1] by its maximum; an all-zero map stays zero (no evidence found)."""
    peak = maps.reshape(len(maps), -1).max(axis=1)[:, None, None]
    return np.where(peak > 0, maps / np.where(peak > 0, peak, 1), 0).astype("float32")
