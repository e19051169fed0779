"""The spec's augmentation as one vectorised resampling per batch, for the training input pipeline.

The spec puts three Keras layers in the model (RandomFlip horizontal, RandomRotation 0.075, RandomZoom
0.2), which resample every image twice (rotation, then zoom) inside the training step. Flip, rotation and
zoom are all affine maps about the image centre, so here they are composed into one transform per image and
applied to the whole batch in a single ``ImageProjectiveTransformV3`` call, off the training step, in the
tf.data pipeline (so it overlaps with training). Same distributions as the Keras layers: a flip with
probability 1/2, an angle uniform in +-0.075 turns (+-27 degrees), a zoom factor uniform in [0.8, 1.2],
bilinear interpolation and reflected borders. The random parameters are drawn with NumPy from the run's
seed, so augmented batches are reproducible.

Backend dependency: the transform is TensorFlow's raw op (the Keras layers use the same op on this backend).
"""

from __future__ import annotations

import numpy as np

from toonvision.models import AUGMENTATION


def draw_params(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3) float32: flip (1 or -1), angle in radians, zoom factor."""
    flip = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    turn = AUGMENTATION["rotation"]
    angle = rng.uniform(-turn, turn, n) * 2 * np.pi
    zoom = 1.0 + rng.uniform(-AUGMENTATION["zoom"], AUGMENTATION["zoom"], n)
    return np.stack([flip, angle, zoom], axis=1).astype(np.float32)


def transforms(params, height: int, width: int):
    """Projective transforms (output pixel -> input pixel) for ``ImageProjectiveTransformV3``."""
    import tensorflow as tf

    flip, angle, zoom = params[:, 0], params[:, 1], params[:, 2]
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    c, s = tf.cos(angle) * zoom, tf.sin(angle) * zoom
    # input = centre + R(angle) * zoom * F * (output - centre), F = diag(flip, 1)
    a0, a1 = c * flip, -s
    b0, b1 = s * flip, c
    a2 = cx - a0 * cx - a1 * cy
    b2 = cy - b0 * cx - b1 * cy
    zeros = tf.zeros_like(a0)
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def augment_batch(images, params):
    """Apply one composed flip/rotation/zoom per image to a float32 (N, H, W, 3) batch."""
    import tensorflow as tf

    shape = tf.shape(images)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms(params, images.shape[1], images.shape[2]),
        output_shape=shape[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )
