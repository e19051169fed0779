"""The spec's augmentation as one affine resampling per image, for the training input pipeline.

The spec puts three Keras layers in the model (RandomFlip horizontal, RandomRotation 0.075, RandomZoom
0.2), which resample every image twice (rotation, then zoom) inside the training step. Flip, rotation and
zoom are all affine maps about the image centre, so here they are composed into one transform per image and
applied off the training step, in the prefetched input pipeline (so it overlaps with training). Same
distributions as the Keras layers: a flip with probability 1/2, an angle uniform in +-0.075 turns (+-27
degrees), a zoom factor uniform in [0.8, 1.2], bilinear interpolation and reflected borders. The random
parameters are drawn with NumPy from the run's seed, so augmented batches are reproducible.

The resampling is OpenCV's ``warpAffine`` on the uint8 crops, several times faster than TensorFlow's
``ImageProjectiveTransformV3`` (the op the Keras layers use), which made augmentation cost as much as the
training step itself (the README's speed section has the figures). Both are given the same matrices and
border rule; they agree to within rounding to whole grey levels (``tests/test_pipeline.py`` checks it
against :func:`augment_batch_tf`, kept as the reference).
"""

from __future__ import annotations

import numpy as np

from toonvision.learning.models import AUGMENTATION


def draw_params(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3) float32: flip (1 or -1), angle in radians, zoom factor."""
    flip = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    turn = AUGMENTATION["rotation"]
    angle = rng.uniform(-turn, turn, n) * 2 * np.pi
    zoom = 1.0 + rng.uniform(-AUGMENTATION["zoom"], AUGMENTATION["zoom"], n)
    return np.stack([flip, angle, zoom], axis=1).astype(np.float32)


def affine_matrices(params: np.ndarray, height: int, width: int) -> np.ndarray:
    """(n, 2, 3) maps from output pixel (x, y, 1) to input pixel, pixel centres at integer coordinates."""
    params = np.asarray(params, dtype=np.float64)
    flip, angle, zoom = params[:, 0], params[:, 1], params[:, 2]
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    c, s = np.cos(angle) * zoom, np.sin(angle) * zoom
    # input = centre + R(angle) * zoom * F * (output - centre), F = diag(flip, 1)
    a0, a1 = c * flip, -s
    b0, b1 = s * flip, c
    a2 = cx - a0 * cx - a1 * cy
    b2 = cy - b0 * cx - b1 * cy
    return np.stack([np.stack([a0, a1, a2], axis=1), np.stack([b0, b1, b2], axis=1)], axis=1)


def augment_batch(images: np.ndarray, params: np.ndarray) -> np.ndarray:
    """A new uint8 (N, H, W, 3) batch: each image flipped, rotated and zoomed by its row of ``params``."""
    import cv2

    height, width = images.shape[1:3]
    out = np.empty_like(images)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP  # the matrices map output to input, as TensorFlow's do
    for i, matrix in enumerate(affine_matrices(params, height, width)):
        cv2.warpAffine(images[i], matrix, (width, height), dst=out[i], flags=flags, borderMode=cv2.BORDER_REFLECT)
    return out


def augment_batch_tf(images, params):
    """The same augmentation with TensorFlow's ``ImageProjectiveTransformV3`` on a float32 batch (the
    reference the OpenCV version is tested against; the spec's Keras layers use this op)."""
    import tensorflow as tf

    matrices = affine_matrices(np.asarray(params), images.shape[1], images.shape[2]).reshape(-1, 6)
    transforms = np.concatenate([matrices, np.zeros((len(matrices), 2))], axis=1).astype(np.float32)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=tf.constant(transforms),
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )
