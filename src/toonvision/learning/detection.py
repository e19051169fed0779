"""The detector: an anchor-free centre-heatmap network (CenterNet / TTFNet family), its targets, loss and decoding.

For every cell of a stride-4 grid the network outputs one score per class (is an object of that class centred
here?) and four distances (left, top, right, bottom, in input pixels) from the cell to the edges of that object's
box. Decoding keeps the cells that are the maximum of their 5x5 neighbourhood (a max-pool) and the top-k of
those: no anchors and no non-maximum suppression, so the exported graph is plain convolutions and decoding is
a few NumPy operations shared by the Keras and the ONNX Runtime paths.

Targets follow TTFNet: an elliptical Gaussian per box on the heatmap (focal loss, CenterNet's variant), and box
distances learned on the cells under that Gaussian, weighted by it, with a GIoU loss: many cells per box learn
its size, which trains several times faster than CenterNet's single centre cell.

Detectors are registered by name like the classifiers (``DETECTORS``); adding one is one function
``(inputs, num_classes) -> outputs`` of the functional API.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from toonvision.data.detection import Detections
from toonvision.learning.models import Architecture, register

if TYPE_CHECKING:
    import keras

STRIDE = 4
INPUT_SIZE: tuple[int, int] = (384, 640)  # height, width: a 1280x720 screenshot at half size, letterboxed
GAUSSIAN_ALPHA = 0.54  # TTFNet's: the Gaussian's sigma is alpha * side / 6
DISTANCE_SCALE = 16.0  # px: distances are softplus(raw) * this, so an untrained net predicts ~11 px
# Decoding: a detection is the maximum of its 5x5 cells. With 3x3, tall Toons peaked twice; on 300 held-out
# screenshots 5x5 took AP50 from 0.933 to 0.945 and false positives from 85 to 50 (7x7 and wider: no better).
POOL = 5
# A box is the mean of the boxes its class's cells predict within REFINE cells of its peak, each weighted by its
# score squared, rather than the peak cell's alone: each cell's distances are a noisy guess, and the cells around
# a peak guess the same box. Only cells scoring REFINE_SHARE of the peak or more take part: training teaches
# distances where the target's Gaussian is above 0.05 only, and what a cell says outside that is no guess at all.
# On the shipped detector's 300 held-out screenshots, AP50:95 0.598 -> 0.613 (radius 1: 0.608; scores not
# squared: 0.606; every cell of the radius: 0.612; cells from half the peak: 0.613 and AP50 down a little).
REFINE = 2
REFINE_SHARE = 0.25
HEAT_PRIOR = 0.01  # the heatmap's initial score (RetinaNet's prior): training starts from "nothing here"


DETECTORS: dict[str, Architecture] = {}  # the classifiers' registry is models.REGISTRY: a detector is no classifier


def register_detector(fn: Callable) -> Callable:
    return register(fn, DETECTORS)


def detector_architecture(name: str) -> Architecture:
    arch = DETECTORS.get(name)
    if arch is None:
        raise ValueError(f"unknown detector {name!r} (choose from {', '.join(DETECTORS)}; see 'toonvision models')")
    return arch


def create_detector(
    name: str, num_classes: int, input_size: tuple[int, int] = INPUT_SIZE, model_name: str | None = None
) -> keras.Model:
    """Build detector ``name`` for ``num_classes`` classes on letterboxed ``input_size`` (height, width) images.
    The output is (batch, height / 4, width / 4, num_classes + 4): class scores in [0, 1], then distances."""
    import keras

    if input_size[0] % 32 or input_size[1] % 32:
        raise ValueError(f"the detector's input size must be a multiple of 32 on each side, got {input_size}")
    inputs = keras.Input(shape=(*input_size, 3), name="screenshot")
    outputs = detector_architecture(name).build(inputs, num_classes)
    return keras.Model(inputs, outputs, name=model_name or name)


# --- architectures ---


def _conv(x, filters: int, strides: int = 1, kernel: int = 3):
    from keras import layers

    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=0.9)(x)
    return layers.ReLU()(x)


def _separable(x, filters: int):
    """Depthwise 3x3 then pointwise: a 3x3 convolution's reach for about a ninth of its multiplications, where
    the grid is large."""
    from keras import layers

    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.Conv2D(filters, 1, use_bias=False)(x)
    x = layers.BatchNormalization(momentum=0.9)(x)
    return layers.ReLU()(x)


def _residual(x, filters: int):
    from keras import layers

    y = _separable(x, filters)
    y = _separable(y, filters)
    return layers.Add()([x, y])


def _heads(x, num_classes: int, width: int):
    """Class scores and box distances from the stride-4 features, concatenated into one output."""
    from keras import initializers, layers

    heat = _separable(x, width)
    heat = layers.Conv2D(
        num_classes,
        1,
        bias_initializer=initializers.Constant(-np.log((1 - HEAT_PRIOR) / HEAT_PRIOR)),
        dtype="float32",  # scores near 0 and 1 need more than bfloat16's 8 bits
        name="heat_logits",
    )(heat)
    heat = layers.Activation("sigmoid", dtype="float32", name="heat")(heat)
    box = _separable(x, width)
    box = layers.Conv2D(4, 1, dtype="float32", name="distance_logits")(box)
    box = layers.Activation("softplus", dtype="float32")(box)
    box = layers.Rescaling(DISTANCE_SCALE, dtype="float32", name="distances")(box)
    return layers.Concatenate(dtype="float32", name="detections")([heat, box])


@register_detector
def centernet(inputs, num_classes: int):
    """A small CenterNet: strided 3x3 convolutions to stride 32, a feature pyramid back up to stride 4, two heads.

    Dense 3x3 convolutions throughout the backbone: more multiplications than centernet_separable's, but in the
    large kernels a CPU's matrix units run well; it trains 30% faster on 2 cores (24 against 18 screenshots/s,
    bfloat16, 640x384) for 15 ms against 12 ms a screenshot through ONNX Runtime."""
    from keras import layers

    x = layers.Rescaling(1.0 / 255)(inputs)
    x = _conv(x, 16, strides=2)  # /2
    c2 = _conv(x, 24, strides=2)  # /4
    c3 = _conv(_conv(c2, 48, strides=2), 48)  # /8
    c4 = _conv(_conv(c3, 80, strides=2), 80)  # /16
    c5 = _conv(_conv(c4, 128, strides=2), 128)  # /32
    p = _conv(c5, 64, kernel=1)
    for lateral, width in ((c4, 64), (c3, 48)):
        p = layers.Add()([layers.UpSampling2D(2)(_conv(p, width, kernel=1)), _conv(lateral, width, kernel=1)])
        p = _conv(p, width)
    p = layers.Add()([layers.UpSampling2D(2)(_conv(p, 24, kernel=1)), _conv(c2, 24, kernel=1)])
    p = _conv(p, 24)
    return _heads(p, num_classes, 24)


@register_detector
def centernet_separable(inputs, num_classes: int):
    """centernet with depthwise-separable convolutions: fewer multiplications, slower to train on a CPU."""
    from keras import layers

    x = layers.Rescaling(1.0 / 255)(inputs)
    x = _conv(x, 16, strides=2)  # /2
    c2 = _conv(x, 32, strides=2)  # /4
    c3 = _residual(_conv(c2, 64, strides=2), 64)  # /8
    c4 = _residual(_conv(c3, 96, strides=2), 96)  # /16
    c5 = _residual(_residual(_conv(c4, 128, strides=2), 128), 128)  # /32: sees a whole 600-px Cog
    # Top-down: each level gets the coarser level's context, upsampled, added to its own (projected) features.
    p = _conv(c5, 64, kernel=1)
    for lateral in (c4, c3):
        p = layers.Add()([layers.UpSampling2D(2)(p), _conv(lateral, 64, kernel=1)])
        p = _separable(p, 64)
    p = layers.Add()([layers.UpSampling2D(2)(_conv(p, 32, kernel=1)), _conv(c2, 32, kernel=1)])
    p = _separable(p, 32)
    return _heads(p, num_classes, 32)


# --- targets ---


def encode_targets(
    boxes: np.ndarray,
    classes: np.ndarray,
    difficult: np.ndarray,
    num_classes: int,
    input_size: tuple[int, int] = INPUT_SIZE,
) -> np.ndarray:
    """The training target of one image, (H/4, W/4, num_classes + 6) float32: the class heatmaps, the box
    (x1 y1 x2 y2, input pixels) each cell should predict, its regression weight and a mask that is 0 where a
    difficult box lies (no loss there: a detector neither learns to find it nor to ignore it)."""
    gh, gw = input_size[0] // STRIDE, input_size[1] // STRIDE
    target = np.zeros((gh, gw, num_classes + 6), np.float32)
    heat, box, weight, mask = (
        target[..., :num_classes],
        target[..., num_classes : num_classes + 4],
        target[..., num_classes + 4],
        target[..., num_classes + 5],
    )
    mask[:] = 1.0
    ys, xs = np.arange(gh, dtype=np.float32)[:, None], np.arange(gw, dtype=np.float32)[None, :]
    for b in np.asarray(boxes, np.float32).reshape(-1, 4)[np.asarray(difficult, bool)]:
        x1, y1, x2, y2 = np.clip(np.round(b / STRIDE).astype(int), 0, [gw, gh, gw, gh])
        mask[y1 : y2 + 1, x1 : x2 + 1] = 0.0
    keep = ~np.asarray(difficult, bool)
    boxes, classes = np.asarray(boxes, np.float32).reshape(-1, 4)[keep], np.asarray(classes)[keep]
    # Large boxes first, so that where boxes overlap the smaller (nearer the camera's focus of attention,
    # and harder) one owns the shared cells' regression target.
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for i in np.argsort(-areas):
        x1, y1, x2, y2 = boxes[i]
        w, h = (x2 - x1) / STRIDE, (y2 - y1) / STRIDE
        if w <= 0 or h <= 0:
            continue
        cx = min(int((x1 + x2) / 2 / STRIDE), gw - 1)
        cy = min(int((y1 + y2) / 2 / STRIDE), gh - 1)
        sx, sy = max(GAUSSIAN_ALPHA * w / 6, 0.3), max(GAUSSIAN_ALPHA * h / 6, 0.3)
        g = np.exp(-((xs - cx) ** 2) / (2 * sx * sx) - ((ys - cy) ** 2) / (2 * sy * sy))
        np.maximum(heat[..., int(classes[i])], g, out=heat[..., int(classes[i])])
        # Regression on the cells under the Gaussian that lie inside the box.
        centres_x, centres_y = xs * STRIDE + STRIDE / 2, ys * STRIDE + STRIDE / 2
        inside = (centres_x > x1) & (centres_x < x2) & (centres_y > y1) & (centres_y < y2)
        region = (g > 0.05) & inside
        region[cy, cx] = True
        g_region = np.where(region, g, 0.0)
        box[region] = (x1, y1, x2, y2)
        # Each box weighs log(area) in all, spread over its cells by the Gaussian (TTFNet's weighting).
        weight[region] = (g_region[region] / g_region.sum()) * np.log(max((x2 - x1) * (y2 - y1), 2.0))
    return target


def grid_centres(input_size: tuple[int, int] = INPUT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    gh, gw = input_size[0] // STRIDE, input_size[1] // STRIDE
    return (
        np.arange(gw, dtype=np.float32) * STRIDE + STRIDE / 2,
        np.arange(gh, dtype=np.float32) * STRIDE + STRIDE / 2,
    )


def detection_loss(num_classes: int, input_size: tuple[int, int] = INPUT_SIZE, box_weight: float = 5.0):
    """CenterNet's focal loss on the heatmaps plus TTFNet's weighted GIoU loss on the boxes, as a Keras loss."""
    from keras import ops

    cx, cy = grid_centres(input_size)
    centre_x, centre_y = cx[None, None, :], cy[None, :, None]

    def loss(y_true, y_pred):
        heat_true, heat = y_true[..., :num_classes], y_pred[..., :num_classes]
        mask = y_true[..., num_classes + 5 : num_classes + 6]
        heat = ops.clip(heat, 1e-4, 1 - 1e-4)
        positive = ops.cast(ops.equal(heat_true, 1.0), "float32")
        pos_loss = -ops.log(heat) * (1 - heat) ** 2 * positive
        neg_loss = -ops.log(1 - heat) * heat**2 * (1 - heat_true) ** 4 * (1 - positive) * mask
        n_pos = ops.maximum(ops.sum(positive), 1.0)
        heat_loss = (ops.sum(pos_loss) + ops.sum(neg_loss)) / n_pos

        target = y_true[..., num_classes : num_classes + 4]
        weight = y_true[..., num_classes + 4]
        dist = y_pred[..., num_classes : num_classes + 4]
        px1, py1 = centre_x - dist[..., 0], centre_y - dist[..., 1]
        px2, py2 = centre_x + dist[..., 2], centre_y + dist[..., 3]
        tx1, ty1, tx2, ty2 = (target[..., k] for k in range(4))
        iw = ops.maximum(ops.minimum(px2, tx2) - ops.maximum(px1, tx1), 0.0)
        ih = ops.maximum(ops.minimum(py2, ty2) - ops.maximum(py1, ty1), 0.0)
        inter = iw * ih
        union = (px2 - px1) * (py2 - py1) + (tx2 - tx1) * (ty2 - ty1) - inter + 1e-6
        hull = (ops.maximum(px2, tx2) - ops.minimum(px1, tx1)) * (ops.maximum(py2, ty2) - ops.minimum(py1, ty1)) + 1e-6
        giou = inter / union - (hull - union) / hull
        box_loss = ops.sum(weight * (1 - giou)) / (ops.sum(weight) + 1e-4)
        return heat_loss + box_weight * box_loss

    return loss


# --- decoding ---


def decode(
    output: np.ndarray, num_classes: int, *, top_k: int = 100, threshold: float = 0.05, pool: int = POOL
) -> Detections:
    """One image's network output (H, W, num_classes + 4) -> boxes (input pixels), classes, scores, best first,
    and every class's score at each box's peak (what the labelling rule weighs against the classifiers).

    A cell is a detection when its score is the maximum of its ``pool`` x ``pool`` neighbourhood in its class (a
    max-pool does what non-maximum suppression does for heatmaps) and among the ``top_k`` best above
    ``threshold``."""
    import cv2

    heat = np.ascontiguousarray(output[..., :num_classes], dtype=np.float32)
    dist = output[..., num_classes : num_classes + 4]
    # cv2.dilate is a max-pool with stride 1, channel by channel (at most 4 channels a call).
    pooled = np.concatenate(
        [
            cv2.dilate(heat[..., c : c + 4], np.ones((pool, pool), np.uint8)).reshape(*heat.shape[:2], -1)
            for c in range(0, num_classes, 4)
        ],
        axis=-1,
    )
    scores = np.where((heat == pooled) & (heat >= threshold), heat, 0.0).ravel()
    k = min(top_k, int(np.count_nonzero(scores)))
    if k == 0:
        return Detections.empty(num_classes)
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    ys, rest = np.divmod(top, heat.shape[1] * num_classes)
    xs, classes = np.divmod(rest, num_classes)
    boxes = refined_boxes(heat, np.asarray(dist, np.float32), ys, xs, classes)
    return Detections(boxes, classes.astype(np.int64), scores[top].astype(np.float32), heat[ys, xs])


def refined_boxes(
    heat: np.ndarray, dist: np.ndarray, ys: np.ndarray, xs: np.ndarray, classes: np.ndarray, radius: int = REFINE
) -> np.ndarray:
    """(k, 4) boxes for the peaks at cells (``ys``, ``xs``) of ``classes``: the score-squared-weighted mean of the
    boxes predicted by the cells within ``radius`` of each peak (see :data:`REFINE`)."""
    offsets = np.arange(-radius, radius + 1)
    rows = ys[:, None, None] + offsets[None, :, None]  # (k, n, 1)
    cols = xs[:, None, None] + offsets[None, None, :]  # (k, 1, n)
    inside = (rows >= 0) & (rows < heat.shape[0]) & (cols >= 0) & (cols < heat.shape[1])
    rows, cols = np.clip(rows, 0, heat.shape[0] - 1), np.clip(cols, 0, heat.shape[1] - 1)
    score = heat[rows, cols, classes[:, None, None]]  # (k, n, n)
    peak = heat[ys, xs, classes][:, None, None]
    weight = score**2 * inside * (score >= REFINE_SHARE * peak)
    d = dist[rows, cols]  # (k, n, n, 4)
    cx, cy = cols * STRIDE + STRIDE / 2, rows * STRIDE + STRIDE / 2
    cells = np.stack(np.broadcast_arrays(cx - d[..., 0], cy - d[..., 1], cx + d[..., 2], cy + d[..., 3]), axis=-1)
    total = np.maximum(weight.sum(axis=(1, 2)), 1e-12)[:, None]
    return ((cells * weight[..., None]).sum(axis=(1, 2)) / total).astype(np.float32)


def decode_batch(
    outputs: np.ndarray, num_classes: int, letterboxes: Sequence, *, top_k: int = 100, threshold: float = 0.05
) -> list[Detections]:
    """Network outputs of a batch -> one :class:`Detections` per image, in each screenshot's own pixels."""
    out = []
    for output, box in zip(outputs, letterboxes, strict=True):
        found = decode(output, num_classes, top_k=top_k, threshold=threshold)
        out.append(found.placed(box.to_image(found.boxes)))
    return out
