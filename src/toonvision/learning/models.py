"""Model registry: each architecture is one function of the Keras functional API, created by name.

    model = create_model("small_convnet", task="binary", augment=True, dropout=0.9)

Add an architecture by writing a function ``(inputs, num_outputs, dropout) -> outputs`` decorated with
``@register``; it then appears in ``toonvision models`` and every ``--model`` option.

The article's model is ``small_convnet``. Earlier versions called the two architectures ``seed`` and
``padded``, next to the ``--seed`` and ``--pad`` options they have nothing to do with; those names still work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from toonvision.data.images import IMAGE_SIZE
from toonvision.data.taxonomy import task_units

if TYPE_CHECKING:
    import keras

INPUT_SHAPE: tuple[int, int, int] = (*IMAGE_SIZE, 3)  # height, width, channels: the spec's crops are tall

# The spec's augmentation: flip half the images, rotate by up to 7.5% of a turn (27 degrees), zoom +-20%.
AUGMENTATION = {"flip": "horizontal", "rotation": 0.075, "zoom": 0.2}


@dataclass(frozen=True)
class Architecture:
    name: str
    build: Callable
    summary: str


REGISTRY: dict[str, Architecture] = {}
ALIASES: dict[str, str] = {"seed": "small_convnet", "padded": "gap_convnet"}  # the names of earlier versions


def register(fn: Callable, registry: dict[str, Architecture] | None = None) -> Callable:
    """Add ``fn`` to ``registry`` (default: the classifiers') under its own name, its docstring's first line
    as its summary."""
    doc = (fn.__doc__ or "").strip().splitlines()
    (REGISTRY if registry is None else registry)[fn.__name__] = Architecture(fn.__name__, fn, doc[0] if doc else "")
    return fn


def architecture(name: str) -> Architecture:
    """The registered architecture called ``name`` (or by an earlier name); ValueError naming the choices."""
    arch = REGISTRY.get(ALIASES.get(name, name))
    if arch is None:
        raise ValueError(f"unknown model {name!r} (choose from {', '.join(REGISTRY)})")
    return arch


def head(x, units: int):
    from keras import layers

    activation = "sigmoid" if units == 1 else "softmax"
    # float32 even in a mixed-precision model: probabilities near 0 and 1 need more than bfloat16's 8 bits.
    return layers.Dense(units=units, activation=activation, name="head", dtype="float32")(x)


def augmentation_block(seed: int | None = None) -> keras.Sequential:
    """Random flip, rotation and zoom, active in training only (Keras skips them in inference)."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            layers.RandomFlip(AUGMENTATION["flip"], seed=seed),
            layers.RandomRotation(AUGMENTATION["rotation"], seed=seed),
            layers.RandomZoom(AUGMENTATION["zoom"], seed=seed),
        ],
        name="augmentation",
    )


def create_model(
    name: str,
    task: str = "binary",
    *,
    augment: bool = False,
    dropout: float = 0.0,
    input_shape: tuple[int, int, int] = INPUT_SHAPE,
    seed: int | None = None,
    model_name: str | None = None,
) -> keras.Model:
    """Build architecture ``name`` for ``task`` ("binary", "suit", "name" or "animal")."""
    import keras

    arch = architecture(name)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    inputs = keras.Input(shape=input_shape, name="crop")
    # The spec's listing feeds `inputs`, not the augmented tensor, to Rescaling, which silently disables
    # augmentation; here the augmented images are what the network sees, as the article intends.
    x = augmentation_block(seed)(inputs) if augment else inputs
    outputs = arch.build(x, task_units(task), dropout)
    return keras.Model(inputs=inputs, outputs=outputs, name=model_name or f"{arch.name}_{task}")


@register
def small_convnet(x, units: int, dropout: float):
    """The article's make_model: 3 small convolutions between 4 max-pools (25,537 parameters for binary)."""
    from keras import layers

    x = layers.Rescaling(1.0 / 255)(x)
    x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Conv2D(filters=16, kernel_size=3, activation="relu")(x)
    x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Conv2D(filters=32, kernel_size=3, activation="relu")(x)
    x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Conv2D(filters=32, kernel_size=3, activation="relu")(x)
    x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Flatten()(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    return head(x, units)


@register
def gap_convnet(x, units: int, dropout: float):
    """The article's improvements: padding, no lossy first pool, batch norm, dropout between blocks, GAP."""
    from keras import layers

    x = layers.Rescaling(1.0 / 255)(x)
    # BatchNormalization uses momentum 0.9, not Keras' 0.99: with ~13 steps an epoch on the spec's data,
    # 0.99 leaves the moving variance near its initial 1.0 (features here vary far less) for most of a
    # 25-epoch run, and inference then sees badly scaled features (validation accuracy stuck at the Toon
    # share while training accuracy climbs; measured).
    # A strided convolution instead of the blind first max-pool: it learns what to keep from full resolution.
    x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.Activation("relu")(x)
    for filters in (32, 64, 96):
        x = layers.MaxPooling2D(pool_size=2)(x)
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.Activation("relu")(x)
        # Light spatial dropout between blocks; the head gets the requested rate (capped: GAP features are few).
        if dropout:
            x = layers.SpatialDropout2D(min(dropout, 0.1))(x)
    x = layers.GlobalAveragePooling2D()(x)
    if dropout:
        x = layers.Dropout(min(dropout, 0.5))(x)
    return head(x, units)


def _conv_bn(x, filters: int, strides: int = 1):
    from keras import layers

    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=0.9)(x)  # 0.9: see gap_convnet
    return layers.Activation("relu")(x)


def _residual_stage(x, filters: int):
    """Downsample by a max-pool, widen with one convolution, then one residual pair of convolutions."""
    from keras import layers

    x = layers.MaxPooling2D(pool_size=2)(x)
    x = _conv_bn(x, filters)
    shortcut = x
    x = _conv_bn(x, filters)
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=0.9, gamma_initializer="zeros")(x)  # each block starts as identity
    return layers.Activation("relu")(layers.Add()([shortcut, x]))


def _residual_convnet(x, units: int, dropout: float, stem: int, widths: tuple[int, ...]):
    from keras import layers

    x = layers.Rescaling(1.0 / 255)(x)
    # The spec's crops are 600x200 and the details that tell animals and names apart survive at half size:
    # averaging 2x2 first quarters every later convolution's cost.
    x = layers.AveragePooling2D(pool_size=2)(x)
    x = _conv_bn(x, stem, strides=2)  # 150x50
    for filters in widths:  # 75x25, 37x12, 18x6
        x = _residual_stage(x, filters)
    x = layers.GlobalAveragePooling2D()(x)
    if dropout:
        x = layers.Dropout(min(dropout, 0.5))(x)
    return head(x, units)


@register
def res_convnet(x, units: int, dropout: float):
    """Residual stages over a half-size crop, for the fine-grained tasks: a Toon's ears, a Cog's face and build."""
    return _residual_convnet(x, units, dropout, stem=24, widths=(32, 64, 128))


@register
def res_convnet_small(x, units: int, dropout: float):
    """res_convnet at half the width (a quarter of the weights), for binary and suit: colours and shapes."""
    return _residual_convnet(x, units, dropout, stem=16, widths=(16, 32, 64))


@dataclass(frozen=True)
class PooledStem:
    """A network that opens with Rescaling(scale) then a max-pool: ``model(x) == tail(max_pool(x) * scale)``.

    Max-pooling commutes with multiplying by a positive scale (rounding keeps order), so the pool can run first,
    on the uint8 pixels: a quarter of the bytes for everything after, and the rescale on a quarter of the
    values. Exactly the same numbers come out.
    """

    scale: float
    pool: tuple[int, int]
    tail: keras.Model  # from the pool's output to the model's output, sharing the model's layers

    def pool_pixels(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W, C) uint8 -> (N, H // ph, W // pw, C) uint8 max-pooled as the model's layer does (valid)."""
        ph, pw = self.pool
        height, width = images.shape[1] // ph * ph, images.shape[2] // pw * pw
        out = images[:, 0:height:ph, 0:width:pw].copy()
        for dy in range(ph):
            for dx in range(pw):
                if dy or dx:
                    np.maximum(out, images[:, dy:height:ph, dx:width:pw], out=out)
        return out

    def tail_inputs(self, images: np.ndarray) -> np.ndarray:
        """What the tail takes for uint8 crops: pooled, then rescaled, as float32."""
        return self.pool_pixels(images).astype(np.float32) * np.float32(self.scale)


def pooled_stem(model: keras.Model) -> PooledStem | None:
    """The model's :class:`PooledStem`, or None unless the inference graph is input -> (augmentation) ->
    Rescaling(scale > 0, no offset) -> MaxPooling2D (valid, strides = pool) with nothing else reading those."""
    import keras
    from keras import layers

    ops = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if ops and ops[0].name == "augmentation":  # inactive at inference
        ops = ops[1:]
    if len(ops) < 3 or not isinstance(ops[0], layers.Rescaling) or not isinstance(ops[1], layers.MaxPooling2D):
        return None
    rescale, pool = ops[0], ops[1]
    scale, offset = np.asarray(rescale.scale, dtype=np.float64), np.asarray(rescale.offset, dtype=np.float64)
    strides = pool.strides or pool.pool_size
    if scale.size != 1 or float(scale) <= 0 or np.any(offset != 0):
        return None
    if pool.padding != "valid" or tuple(strides) != tuple(pool.pool_size) or pool.data_format != "channels_last":
        return None
    try:
        if pool.input is not rescale.output or any(rescale.output is layer.input for layer in ops[2:]):
            return None
        tail = keras.Model(pool.output, model.output, name=f"{model.name}_tail")
    except (AttributeError, ValueError):  # a layer used twice has no single input; not a chain
        return None
    return PooledStem(float(scale), tuple(pool.pool_size), tail)


def forward_function(model: keras.Model, size: tuple[int, int], jit_compile: bool = False) -> Callable:
    """``model`` in inference mode as one traced ``tf.function`` for batches of any size: numpy float32
    (N, height, width, 3) in, numpy out. It avoids ``model.predict``'s per-call overhead (a dataset, a progress
    bar, callbacks), which dominates for a few crops; evaluation and the Classifier use it alike.

    XLA (``jit_compile``) is off by default: on a 2-core CPU it was slower than TensorFlow's oneDNN kernels
    (see the README's speed section) and compiles again for every new batch size.
    """
    import tensorflow as tf

    fn = tf.function(
        lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec([None, *size, 3], tf.float32)],
        reduce_retracing=True,
        jit_compile=jit_compile,
    )
    return lambda x: fn(x).numpy()
