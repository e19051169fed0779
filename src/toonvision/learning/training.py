"""Training one model: configuration, optimizer and schedules, fit, and the run folder.

The article's configurations are recipes (``--config`` of ``compare``):

- ``baseline``: the article's model, Adam 1e-3, no augmentation, no dropout, no decay;
- ``article``: what the article's code ran for its "optimized" model: dropout 0.9 and inverse-time
  learning-rate decay 1e-5, and no augmentation: its listing passes ``inputs`` rather than the augmented
  tensor to ``Rescaling``, so the augmentation layers it built never reached the network;
- ``optimized``: what the article meant: ``article`` with the augmentation (flip, rotation, zoom) applied.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from toonvision.data.files import new_run_dir, write_bytes_atomic, write_json
from toonvision.data.samples import Sample, TaskData, find_samples, load_task
from toonvision.data.splitting import DEFAULT_RATIOS, plan_split
from toonvision.data.taxonomy import task_classes
from toonvision.learning.backend import PRECISIONS, available_cores, dtype_policy, resolve_precision, seed_everything
from toonvision.learning.evaluation import measure
from toonvision.learning.models import architecture, create_model, pooled_stem
from toonvision.learning.tasks import CLASSIFIER_DEFAULTS

if TYPE_CHECKING:
    import keras

    from toonvision.data.workspace import Workspace
    from toonvision.learning.models import PooledStem

EpochHook = Callable[[int, dict[str, float]], None]  # (epoch, metrics) after every epoch

# Every optimizer the spec compared, by the name users type.
OPTIMIZERS: dict[str, str] = {
    "sgd": "SGD",
    "adam": "Adam",
    "rmsprop": "RMSprop",
    "adadelta": "Adadelta",
    "adagrad": "Adagrad",
    "adamax": "Adamax",
    "nadam": "Nadam",
    "ftrl": "Ftrl",
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one training run (its seed included), so any run can be repeated."""

    name: str = "baseline"
    task: str = "binary"
    model: str = CLASSIFIER_DEFAULTS.model
    epochs: int = CLASSIFIER_DEFAULTS.epochs
    lr: float = CLASSIFIER_DEFAULTS.lr
    optimizer: str = "adam"
    augment: bool = CLASSIFIER_DEFAULTS.augment
    dropout: float = 0.0
    decay: float = 0.0  # inverse-time decay per step: lr / (1 + decay * step), the spec's Adam(decay=...)
    lr_step_every: int = 0  # step schedule: multiply lr by lr_step_factor every N epochs (0 = off)
    lr_step_factor: float = 0.1
    batch_size: int = CLASSIFIER_DEFAULTS.batch_size
    class_weight: str | None = None  # None or "balanced"
    pad: bool = False  # pad crops to 600x200 instead of stretching them
    precision: str = "auto"  # "float32", "bfloat16" (mixed) or "auto": bfloat16 where the CPU computes it natively
    seed: int = 0
    weights: str | None = None  # a .keras model of the same architecture to start from (fine-tuning)

    def validate(self) -> TrainConfig:
        """The configuration with the architecture's current name; ValueError naming what is wrong."""
        task_classes(self.task)  # raises on an unknown task
        arch = architecture(self.model)
        if self.optimizer.lower() not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r} (choose from {', '.join(OPTIMIZERS)})")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs, batch size and learning rate must be positive")
        if self.class_weight not in (None, "balanced"):
            raise ValueError(f"class weight must be 'balanced' or none, got {self.class_weight!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        return replace(self, model=arch.name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def run_name(self) -> str:
        """The run folder's name under runs/train (a new -N suffix when taken): <task>-<name>."""
        return f"{self.task}-{self.name.replace(':', '-')}"


RECIPES: dict[str, TrainConfig] = {
    "baseline": TrainConfig(name="baseline"),
    "article": TrainConfig(name="article", dropout=0.9, decay=1e-5),
    "optimized": TrainConfig(name="optimized", augment=True, dropout=0.9, decay=1e-5),
}
# What each recipe is, in words, for the report and `compare --help`.
RECIPE_NOTES: dict[str, str] = {
    "baseline": "the article's baseline: its model, Adam 1e-3, no augmentation, dropout or decay",
    "article": (
        "what the article's code ran for its 'optimized' model: dropout 0.9 and learning-rate decay 1e-5; its "
        "listing feeds the input, not the augmented images, to Rescaling, so its augmentation never ran"
    ),
    "optimized": "what the article meant: the same with its augmentation (flip, rotation 0.075, zoom 0.2) applied",
}


def recipe_note(name: str) -> str:
    """What configuration ``name`` (a recipe, or ``<recipe>:<model>`` / ``<recipe>-<model>``) is, in words."""
    for sep in (":", "-"):
        base, _, model = name.partition(sep)
        if base in RECIPE_NOTES:
            return RECIPE_NOTES[base] + (f", on {model}" if model else "")
    return ""


def recipe(name: str, **overrides: Any) -> TrainConfig:
    """A recipe by name, e.g. ``baseline``, ``article``, ``optimized``, or ``<recipe>:<model>`` such as
    ``optimized:gap_convnet`` for the same recipe on another architecture."""
    base, _, model = name.partition(":")
    if base not in RECIPES:
        raise ValueError(f"unknown configuration {base!r} (choose from {', '.join(RECIPES)})")
    cfg = replace(RECIPES[base], name=name, **overrides)
    return replace(cfg, model=model) if model else cfg


# --- Keras pieces ---


def build_optimizer(cfg: TrainConfig) -> keras.optimizers.Optimizer:
    import keras

    lr: Any = cfg.lr
    if cfg.decay:
        # Keras 3 dropped the optimizers' `decay` argument; InverseTimeDecay with decay_steps=1 is the same
        # formula the spec's Adam(learning_rate=LR, decay=1e-5) applied per step.
        lr = keras.optimizers.schedules.InverseTimeDecay(cfg.lr, decay_steps=1, decay_rate=cfg.decay)
    return getattr(keras.optimizers, OPTIMIZERS[cfg.optimizer.lower()])(learning_rate=lr)


def step_schedule(cfg: TrainConfig):
    """The spec's lr_schedule callback: lr * factor ** (epoch // every)."""

    def schedule(epoch: int, lr: float) -> float:
        return cfg.lr * cfg.lr_step_factor ** (epoch // cfg.lr_step_every)

    return schedule


def compile_model(model: keras.Model, cfg: TrainConfig) -> keras.Model:
    import keras

    if cfg.task == "binary":
        loss, metric = "binary_crossentropy", keras.metrics.BinaryAccuracy(name="accuracy")
    else:
        loss, metric = "sparse_categorical_crossentropy", keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    model.compile(optimizer=build_optimizer(cfg), loss=loss, metrics=[metric])
    return model


def class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    """scikit-learn's 'balanced' weights; classes absent from ``y`` get weight 1."""
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(y)
    weights = compute_class_weight("balanced", classes=present, y=y)
    out = {i: 1.0 for i in range(n_classes)}
    out.update({int(c): float(w) for c, w in zip(present, weights, strict=True)})
    return out


@dataclass
class FitResult:
    model: Any
    history: dict[str, list[float]]
    test: dict[str, float] = field(default_factory=dict)
    precision: str = "float32"


def build(cfg: TrainConfig, precision: str = "float32") -> keras.Model:
    """The model of ``cfg``, compiled, computing in ``precision`` ("float32" or "bfloat16"). Augmentation is
    not part of it: the input pipeline augments (see :func:`training_batches`), which gives the same images for
    a fraction of the cost."""
    with dtype_policy(precision):
        model = create_model(
            cfg.model,
            cfg.task,
            augment=False,
            dropout=cfg.dropout,
            seed=cfg.seed,
            model_name=cfg.name.replace(":", "_"),
        )
    return compile_model(model, cfg)


def as_float32(model: keras.Model, cfg: TrainConfig) -> keras.Model:
    """The float32 twin of a model trained in mixed precision: same layers, names and (float32) weights. It is
    what is saved, evaluated and exported, so a model file never depends on the CPU it was trained on."""
    import keras

    def float32_layer(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    twin = keras.models.clone_model(model, clone_function=float32_layer)
    twin.set_weights(model.get_weights())
    return compile_model(twin, cfg)


def training_batches(data: TaskData, cfg: TrainConfig, stem: PooledStem | None = None):
    """Shuffled (and, with ``cfg.augment``, augmented) float32 batches from the decoded uint8 crops.

    The crops are held once as a uint8 tensor: nothing is decoded again. A small Python generator yields only
    each batch's indices and augmentation parameters, drawn from a NumPy generator seeded by (seed, epoch), so
    every epoch is reproducible; gathering, augmenting (OpenCV, which releases the GIL: see
    :mod:`toonvision.augmentation`) and the float conversion run in tf.data's parallel map, ahead of the
    training step (prefetch), so they overlap with it.

    With a ``stem`` (a model that opens with Rescaling and a max-pool) the batches are what its tail takes:
    augmented at full size, then max-pooled on the uint8 pixels and rescaled (without augmentation the whole
    set is pooled once, up front). The numbers are those the model's own first two layers would give, for a
    quarter of the bytes through the pipeline and none of that work in the training step.
    """
    import tensorflow as tf

    from toonvision.learning.augmentation import augment_batch, draw_params

    x, y = data.x, _targets(data.y, cfg.task)
    n, epoch = len(y), [0]

    def generate():
        rng = np.random.default_rng([cfg.seed, epoch[0]])
        epoch[0] += 1
        order = rng.permutation(n)
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            yield idx, draw_params(rng, len(idx)) if cfg.augment else np.zeros((len(idx), 3), np.float32)

    def augment(batch: np.ndarray, params: np.ndarray) -> np.ndarray:
        batch = augment_batch(batch, params)
        return batch if stem is None else stem.pool_pixels(batch)

    if stem is not None and not cfg.augment:
        x = stem.pool_pixels(x)
    shape = x.shape[1:] if stem is None or not cfg.augment else stem.pool_pixels(x[:1]).shape[1:]
    images, targets = tf.constant(x), tf.constant(y)

    def assemble(idx, params):
        batch = tf.gather(images, idx)
        if cfg.augment:
            batch = tf.numpy_function(augment, [batch, params], tf.uint8, stateful=False)
            batch.set_shape((None, *shape))
        batch = tf.cast(batch, tf.float32)
        if stem is not None:
            batch = batch * np.float32(stem.scale)
        return batch, tf.gather(targets, idx)

    signature = (tf.TensorSpec((None,), tf.int64), tf.TensorSpec((None, 3), tf.float32))
    batches = -(-n // cfg.batch_size)
    # A known length tells Keras where an epoch ends (a generator's length is otherwise unknown).
    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(batches))
    dataset = dataset.map(assemble, num_parallel_calls=pipeline_threads(), deterministic=True)
    return dataset.prefetch(2).with_options(pipeline_options())


def pipeline_threads() -> int:
    """Parallel batch assembly: as many as the training step's threads (a compare worker's share of cores)."""
    import tensorflow as tf

    return tf.config.threading.get_intra_op_parallelism_threads() or available_cores()


def pipeline_options():
    """tf.data options of the training and validation inputs: fixed parallelism, no autotuner.

    tf.data's autotuner stalled the first step of about one epoch in two on a 2-core CPU, halving those
    epochs (the README's speed section has the figures), more than it could gain on a pipeline this light;
    batch assembly runs at a fixed parallelism instead.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def fit(
    cfg: TrainConfig,
    train: TaskData,
    validate: TaskData | None = None,
    test: TaskData | None = None,
    *,
    on_epoch: EpochHook | None = None,
) -> FitResult:
    """Train a model from ``cfg`` (seeded; from ``cfg.weights`` when given, else from random weights) and
    evaluate it on ``test`` when given; ``on_epoch`` is called after every epoch with its metrics."""
    import keras
    import tensorflow as tf

    cfg = cfg.validate()
    if len(train.y) == 0:
        raise ValueError(f"the training split of the {cfg.task!r} task is empty")
    seed_everything(cfg.seed)
    precision = resolve_precision(cfg.precision)
    model = build(cfg, precision)
    if cfg.weights:
        from toonvision.learning.zoo import start_from

        start_from(model, Path(cfg.weights))
    # The article's model's Rescaling and first max-pool run in the input pipeline, on uint8 pixels; its tail,
    # which shares every weight with it, is what trains.
    stem = pooled_stem(model)
    trainee = compile_model(stem.tail, cfg) if stem is not None else model
    cbs = []
    if on_epoch is not None:
        cbs.append(keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: on_epoch(epoch, dict(logs or {}))))
    if cfg.lr_step_every:
        cbs.append(keras.callbacks.LearningRateScheduler(step_schedule(cfg)))
    n_classes = len(task_classes(cfg.task))
    weights = class_weights(train.y, n_classes) if cfg.class_weight == "balanced" else None
    validation = None
    if validate is not None and len(validate.y) > 0:
        val_x = validate.x if stem is None else stem.tail_inputs(validate.x)
        validation = tf.data.Dataset.from_tensor_slices((val_x, _targets(validate.y, cfg.task)))
        validation = validation.batch(cfg.batch_size).with_options(pipeline_options())
    batches = training_batches(train, cfg, stem)
    history = trainee.fit(
        # Repeated, with the epoch's length given: one iterator for the whole run, so the pipeline does not
        # drain and refill at every epoch boundary (the generator still reshuffles each epoch).
        batches.repeat(),
        steps_per_epoch=int(batches.cardinality()),
        epochs=cfg.epochs,
        validation_data=validation,
        shuffle=False,  # the batches are shuffled already, reproducibly
        class_weight=weights,
        callbacks=cbs,
        verbose=0,
    )
    if precision != "float32":
        model = as_float32(model, cfg)
    result = FitResult(model, {k: [float(v) for v in vals] for k, vals in history.history.items()}, precision=precision)
    if test is not None and len(test.y):
        result.test = measure(model, test)
    return result


def _targets(y: np.ndarray, task: str) -> np.ndarray:
    return y.astype("float32").reshape(-1, 1) if task == "binary" else y


# --- run folders ---


def keras_archive(model: keras.Model) -> bytes:
    """The model as the bytes of a ``.keras`` file. Keras writes the archive into a private temporary folder
    (it insists on a ``.keras`` name, so a killed save could not leave a temporary name that the workspace's
    clean-up knows)."""
    with tempfile.TemporaryDirectory(prefix="toonvision-") as folder:
        saved = Path(folder) / "model.keras"
        model.save(saved)
        return saved.read_bytes()


def save_model(model: keras.Model, path: Path) -> Path:
    """Save atomically: :func:`keras_archive`'s bytes replace ``path`` with
    :func:`~toonvision.data.files.write_bytes_atomic`."""
    write_bytes_atomic(path, keras_archive(model))
    return path


# --- one run, start to finish ---


def resolve_split(
    samples: list[Sample], split_seed: int | None, ratios: tuple[float, float, float] = DEFAULT_RATIOS
) -> tuple[dict[str, str | None], str]:
    """The split to train on: the workspace's folders when crops are split there and no seed is given,
    otherwise a stratified split planned in memory from ``split_seed`` (folders untouched)."""
    if split_seed is None and any(s.split for s in samples):
        return {s.name: s.split for s in samples}, "folders"
    seed = 0 if split_seed is None else split_seed
    return plan_split(samples, ratios, seed=seed), f"seed {seed}"


def train_run(
    ws: Workspace,
    cfg: TrainConfig,
    *,
    split_seed: int | None = None,
    out: Path | None = None,
    on_epoch: EpochHook | None = None,
) -> tuple[Path, FitResult]:
    """Train ``cfg`` on the workspace and write a run folder: model.keras, history.json, config.json,
    metrics.json and split.json. Returns the folder and the result."""
    cfg = cfg.validate()
    samples = find_samples(ws)
    data = load_task(samples, cfg.task, pad=cfg.pad, ws=ws)
    plan, source = resolve_split(data.samples, split_seed)
    parts = data.by_plan(plan)
    if not len(parts["train"].y):
        raise ValueError("the training split is empty: run 'toonvision split' or give --split-seed")
    start = time.perf_counter()
    result = fit(cfg, parts["train"], parts["validate"], parts["test"], on_epoch=on_epoch)
    seconds = round(time.perf_counter() - start, 1)
    out = out or new_run_dir(ws.runs / "train", cfg.run_name())
    save_model(result.model, out / "model.keras")
    write_json(out / "history.json", result.history)
    write_json(
        out / "config.json",
        {
            **cfg.to_dict(),
            "precision_used": result.precision,
            "split": source,
            "counts": {k: len(v.y) for k, v in parts.items()},
        },
    )
    write_json(out / "metrics.json", {"test": result.test, "params": result.model.count_params(), "seconds": seconds})
    write_json(out / "split.json", plan)
    return out, result


@dataclass
class OptimizerComparison:
    """The spec's optimizer comparison: one history and one test result per optimizer (by display name)."""

    out: Path
    histories: dict[str, dict[str, list[float]]]
    test: dict[str, dict[str, float]]


def compare_optimizers(
    ws: Workspace,
    optimizers: list[str],
    *,
    task: str = "binary",
    model: str = "small_convnet",
    epochs: int = 20,
    lr: float = 1e-3,
    seed: int = 0,
    on_done: Callable[[str, FitResult], None] | None = None,
) -> OptimizerComparison:
    """The same model, data, split and static learning rate trained once per optimizer; histories.json in a
    new folder runs/optimizers/<task>-<model>[-N]."""
    configs = [
        TrainConfig(name=o, task=task, model=model, epochs=epochs, lr=lr, optimizer=o, seed=seed).validate()
        for o in optimizers
    ]
    data = load_task(find_samples(ws), task, ws=ws)
    plan, _ = resolve_split(data.samples, None)
    parts = data.by_plan(plan)
    histories, test = {}, {}
    for cfg in configs:
        result = fit(cfg, parts["train"], parts["validate"], parts["test"])
        histories[OPTIMIZERS[cfg.optimizer]] = result.history
        test[OPTIMIZERS[cfg.optimizer]] = result.test
        if on_done:
            on_done(OPTIMIZERS[cfg.optimizer], result)
    out = new_run_dir(ws.runs / "optimizers", f"{task}-{configs[0].model}")
    write_json(out / "histories.json", {"histories": histories, "test": test, "lr": lr, "epochs": epochs})
    return OptimizerComparison(out, histories, test)
