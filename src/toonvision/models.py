"""Model registry: each architecture is one function of the Keras functional API, created by name.

    model = create_model("seed", task="binary", augment=True, dropout=0.9)

Add an architecture by writing a function ``(inputs, num_outputs, dropout) -> outputs`` decorated with
``@register``; it then appears in ``toonvision models`` and every ``--model`` option.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from toonvision.taxonomy import task_classes

if TYPE_CHECKING:
    import keras

INPUT_SHAPE: tuple[int, int, int] = (600, 200, 3)  # height, width, channels: the spec's crops are tall

# The spec's augmentation: flip half the images, rotate by up to 7.5% of a turn (27 degrees), zoom +-20%.
AUGMENTATION = {"flip": "horizontal", "rotation": 0.075, "zoom": 0.2}


@dataclass(frozen=True)
class Architecture:
    name: str
    build: Callable
    summary: str


REGISTRY: dict[str, Architecture] = {}


def register(fn: Callable) -> Callable:
    doc = (fn.__doc__ or "").strip().splitlines()
    REGISTRY[fn.__name__] = Architecture(fn.__name__, fn, doc[0] if doc else "")
    return fn


def num_outputs(task: str) -> int:
    """Binary models end in one sigmoid unit; the others in a softmax over the task's classes."""
    return 1 if task == "binary" else len(task_classes(task))


def head(x, units: int):
    from keras import layers

    activation = "sigmoid" if units == 1 else "softmax"
    return layers.Dense(units=units, activation=activation, name="head")(x)


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
    """Build architecture ``name`` for ``task`` ("binary", "suit" or "name")."""
    import keras

    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r} (choose from {', '.join(sorted(REGISTRY))})")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    inputs = keras.Input(shape=input_shape, name="crop")
    # The spec's listing feeds `inputs`, not the augmented tensor, to Rescaling, which silently disables
    # augmentation; here the augmented images are what the network sees, as the article intends.
    x = augmentation_block(seed)(inputs) if augment else inputs
    outputs = REGISTRY[name].build(x, num_outputs(task), dropout)
    return keras.Model(inputs=inputs, outputs=outputs, name=model_name or f"{name}_{task}")


@register
def seed(x, units: int, dropout: float):
    """The spec's make_model: 3 small convolutions between 4 max-pools (25,537 parameters for binary)."""
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
def padded(x, units: int, dropout: float):
    """The spec's improvements: padding, no lossy first pool, batch norm, dropout between blocks, GAP."""
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
