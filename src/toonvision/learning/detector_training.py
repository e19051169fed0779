"""Training a detector on a workspace's labelled screenshots, into a run folder.

Screenshots are letterboxed once into a uint8 cache (``<root>/.toonvision/cache/screenshots``, memory-mapped
rows), so an epoch decodes nothing and memory holds bytes, never float copies of every screenshot. Each batch is
augmented (mirror, scale and shift) and its targets drawn in a background thread while the network trains.

A run folder holds ``config.json`` and ``split.json`` from the start, ``checkpoint.keras`` + ``progress.json``
after every epoch, and ``model.keras`` at the end. Every file is replaced atomically, so a run killed at any
moment resumes from its last finished epoch when the same command is given ``--resume <run>``, and never
leaves a half-written model where a good one was.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from toonvision.data.cache import PixelCache
from toonvision.data.detection import (
    SCHEMES,
    DetectionDataError,
    DetectionSet,
    Letterbox,
    Truth,
    load_detection_set,
    load_letterboxed,
    split_by_screenshot,
)
from toonvision.data.files import new_run_dir, read_json, write_json
from toonvision.data.splitting import DEFAULT_RATIOS
from toonvision.learning.backend import PRECISIONS, dtype_policy, resolve_precision, seed_everything
from toonvision.learning.detection import (
    INPUT_SIZE,
    create_detector,
    detection_loss,
    detector_architecture,
    encode_targets,
)
from toonvision.learning.tasks import DETECT, DETECTOR_DEFAULTS, is_detector
from toonvision.learning.training import save_model

if TYPE_CHECKING:
    import keras

    from toonvision.data.workspace import Workspace

EpochHook = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class DetectConfig:
    """Everything that defines one detector training run, so any run can be repeated."""

    name: str = DETECT
    model: str = DETECTOR_DEFAULTS.model
    classes: str = "suit"  # the class scheme: suit (toon + 4 suits), kind (cog, toon) or label
    epochs: int = DETECTOR_DEFAULTS.epochs
    batch_size: int = DETECTOR_DEFAULTS.batch_size
    lr: float = DETECTOR_DEFAULTS.lr
    warmup_epochs: int = 1
    input_height: int = INPUT_SIZE[0]
    input_width: int = INPUT_SIZE[1]
    augment: bool = DETECTOR_DEFAULTS.augment
    precision: str = "auto"
    seed: int = 0
    include_unreviewed: bool = False  # learn from pre-annotations nobody has reviewed too
    weights: str | None = None  # a .keras detector of the same architecture and classes to start from
    mosaic: float = 0.0  # the share of augmented screenshots made of four at half size (YOLO's mosaic)
    plain_epochs: int = 0  # the last epochs train on the screenshots as they are, without augmentation
    ema: float = 0.0  # the momentum of an exponential moving average of the weights, which is what is saved; 0: none

    @property
    def input_size(self) -> tuple[int, int]:
        return (self.input_height, self.input_width)

    def validate(self) -> DetectConfig:
        detector_architecture(self.model)
        if self.classes not in SCHEMES:
            raise ValueError(f"unknown classes {self.classes!r} (choose from {', '.join(SCHEMES)})")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs, batch size and learning rate must be positive")
        if self.input_height % 32 or self.input_width % 32 or min(self.input_size) < 64:
            raise ValueError(f"input size must be multiples of 32 and at least 64, got {self.input_size}")
        if not 0 <= self.plain_epochs <= self.epochs:
            raise ValueError(f"--plain-epochs must be between 0 and --epochs ({self.epochs}), got {self.plain_epochs}")
        if not 0.0 <= self.mosaic <= 1.0:
            raise ValueError(f"--mosaic is a share of screenshots in [0, 1], got {self.mosaic}")
        if not self.augment and (self.mosaic or self.plain_epochs):
            raise ValueError("--mosaic and --plain-epochs shape the augmentation: they do not go with --no-augment")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"--ema is a momentum in [0, 1), e.g. 0.995, got {self.ema}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "task": DETECT}

    def run_name(self) -> str:
        """The run folder's name under runs/train (a new -N suffix when taken): detect-<classes> for the default
        name, else detect-<name>."""
        return f"{DETECT}-{self.classes if self.name == DETECT else self.name}"

    @classmethod
    def for_width(cls, width: int, **fields: Any) -> DetectConfig:
        """A configuration whose input is ``width`` pixels wide and as high as a 16:9 screenshot (rounded up to
        a multiple of 32); ValueError for a width that is no multiple of 32 or under 64."""
        if width < 64 or width % 32:
            raise ValueError(f"--imgsz must be a multiple of 32 and at least 64, got {width}")
        return cls(input_height=(-(-width * 9 // 16) + 31) // 32 * 32, input_width=width, **fields)


def find_unfinished_run(train_runs: Path) -> Path | None:
    """The newest detector run folder under ``train_runs`` that has no model.keras yet (stopped before its end)."""
    candidates = []
    for config in train_runs.glob("*/config.json"):
        run = config.parent
        if (run / "model.keras").exists():
            continue
        recorded = read_json(config)
        if isinstance(recorded, dict) and is_detector(recorded.get("task")):
            candidates.append((config.stat().st_mtime, run))
    return max(candidates)[1] if candidates else None


def recorded_config(run: Path) -> DetectConfig:
    """The configuration a detector run folder was started with: what its --resume continues with."""
    recorded = read_json(run / "config.json")
    if not isinstance(recorded, dict) or not is_detector(recorded.get("task")):
        raise DetectionDataError(f"{run} is not a detector run folder (no detect config.json)")
    return replace(DetectConfig(), **{k: v for k, v in recorded.items() if k in DetectConfig.__dataclass_fields__})


def truth_key(truth: Truth, ws: Workspace) -> str:
    """A screenshot's name in split.json: its path under raw/ (screenshots/ and processed/ may share names)."""
    try:
        return truth.image.relative_to(ws.raw).as_posix()
    except ValueError:
        return str(truth.image)


def load_screenshots(truths: Sequence[Truth], size: tuple[int, int], ws: Workspace | None):
    """The letterboxed uint8 pixels of ``truths``, indexable by position: through the workspace's cache, read
    from disk as batches need them (5,000 screenshots at 640x384 are 3.7 GB); in memory without a workspace."""
    paths = [t.image for t in truths]
    if ws is None:
        return load_letterboxed(paths, size)
    return PixelCache(ws.state / "cache" / "screenshots", size, pad=True, loader=load_letterboxed).reader(paths)


def input_boxes(truth: Truth, size: tuple[int, int]) -> np.ndarray:
    return Letterbox.fit(truth.width, truth.height, size).to_input(truth.boxes)


def augment(
    image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator, min_side: float = 4.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mirror half the images; scale by 0.6-1.4 about a random point and shift: Toons and Cogs appear at every
    size and place. Returns the image, the boxes (clipped) and which boxes are kept (still visible)."""
    import cv2

    h, w = image.shape[:2]
    boxes = boxes.copy()
    if rng.random() < 0.5:
        image = image[:, ::-1]
        boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
    scale = float(np.exp(rng.uniform(np.log(0.6), np.log(1.4))))
    tx = rng.uniform(min(0.0, w - w * scale), max(0.0, w - w * scale))
    ty = rng.uniform(min(0.0, h - h * scale), max(0.0, h - h * scale))
    matrix = np.array([[scale, 0, tx], [0, scale, ty]], np.float32)
    image = cv2.warpAffine(np.ascontiguousarray(image), matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    boxes = boxes * scale + np.array([tx, ty, tx, ty], np.float32)
    visible_before = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    # A box mostly pushed out of the frame is no longer a Toon or Cog one could point at.
    keep = (boxes[:, 2] - boxes[:, 0] >= min_side) & (boxes[:, 3] - boxes[:, 1] >= min_side)
    keep &= area >= 0.4 * np.maximum(visible_before, 1e-6)
    return image, boxes, keep


def mosaic(
    tiles: Sequence[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator, min_side: float = 4.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four images at half size meeting at a random point, as YOLO's mosaic: every Toon and Cog at half its size,
    as far away as a camera rarely frames them, and four screenshots' worth of them in one. Returns the image,
    the four images' boxes (in order, clipped) and which are kept (still mostly visible)."""
    import cv2

    h, w = tiles[0][0].shape[:2]
    th, tw = h // 2, w // 2
    cx, cy = round(rng.uniform(0.25, 0.75) * w), round(rng.uniform(0.25, 0.75) * h)
    out = np.zeros_like(tiles[0][0])
    placed, kept = [], []
    for k, (image, boxes) in enumerate(tiles):
        small = cv2.resize(np.ascontiguousarray(image), (tw, th), interpolation=cv2.INTER_AREA)
        x0, y0 = cx - tw if k % 2 == 0 else cx, cy - th if k < 2 else cy  # each meets the point with a corner
        left, top, right, bottom = max(x0, 0), max(y0, 0), min(x0 + tw, w), min(y0 + th, h)
        out[top:bottom, left:right] = small[top - y0 : bottom - y0, left - x0 : right - x0]
        b = boxes * np.array([tw / w, th / h, tw / w, th / h], np.float32) + np.array([x0, y0, x0, y0], np.float32)
        whole = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        b[:, 0::2] = b[:, 0::2].clip(left, right)
        b[:, 1::2] = b[:, 1::2].clip(top, bottom)
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        keep = (b[:, 2] - b[:, 0] >= min_side) & (b[:, 3] - b[:, 1] >= min_side)
        kept.append(keep & (area >= 0.4 * np.maximum(whole, 1e-6)))
        placed.append(b)
    return out, np.concatenate(placed).reshape(-1, 4), np.concatenate(kept)


class Batches:
    """Shuffled batches of (uint8 images, targets), reproducible from (seed, epoch); augmented before epoch
    ``plain_from`` (all of them by default)."""

    def __init__(
        self,
        pixels: Sequence[np.ndarray],
        truths: Sequence[Truth],
        num_classes: int,
        size: tuple[int, int],
        batch_size: int,
        *,
        augment: bool,
        seed: int,
        plain_from: int | None = None,
        mosaic: float = 0.0,
    ) -> None:
        self.pixels, self.truths, self.num_classes, self.size = pixels, list(truths), num_classes, size
        self.batch_size, self.augment, self.seed, self.plain_from = batch_size, augment, seed, plain_from
        self.mosaic = mosaic
        self.boxes = [input_boxes(t, size) for t in self.truths]

    def __len__(self) -> int:
        return -(-len(self.truths) // self.batch_size)

    def batch(self, indexes: np.ndarray, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
        images, targets = [], []
        for i in indexes:
            image, boxes = self.pixels[i], self.boxes[i]
            classes, difficult = self.truths[i].classes, self.truths[i].difficult
            # No draw for the mosaic when there is none: runs without it get the batches they always got.
            if rng is not None and self.mosaic and rng.random() < self.mosaic:
                picks = [i, *rng.integers(len(self.truths), size=3)]
                image, boxes, keep = mosaic([(self.pixels[j], self.boxes[j]) for j in picks], rng)
                classes = np.concatenate([self.truths[j].classes for j in picks])[keep]
                difficult = np.concatenate([self.truths[j].difficult for j in picks])[keep]
                boxes = boxes[keep]
            if rng is not None:
                image, boxes, keep = augment(image, boxes, rng)
                classes, difficult, boxes = classes[keep], difficult[keep], boxes[keep]
            images.append(image)
            targets.append(encode_targets(boxes, classes, difficult, self.num_classes, self.size))
        return np.stack(images), np.stack(targets)

    def epoch(self, epoch: int):
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.truths))
        augment = self.augment and (self.plain_from is None or epoch < self.plain_from)
        for start in range(0, len(order), self.batch_size):
            yield self.batch(order[start : start + self.batch_size], rng if augment else None)

    def dataset(self, first_epoch: int = 0):
        """A tf.data pipeline over all epochs from ``first_epoch``, prefetching in a background thread."""
        import tensorflow as tf

        epochs = [first_epoch]

        def generate():
            while True:
                yield from self.epoch(epochs[0])
                epochs[0] += 1

        h, w = self.size
        gh, gw = h // 4, w // 4
        signature = (
            tf.TensorSpec((None, h, w, 3), tf.uint8),
            tf.TensorSpec((None, gh, gw, self.num_classes + 6), tf.float32),
        )
        return tf.data.Dataset.from_generator(generate, output_signature=signature).prefetch(3)


def learning_rate(cfg: DetectConfig, steps_per_epoch: int):
    """Linear warm-up, then cosine decay to 2% of the peak over the run."""
    import keras

    total = cfg.epochs * steps_per_epoch
    warmup = min(cfg.warmup_epochs * steps_per_epoch, max(total - 1, 0))
    return keras.optimizers.schedules.CosineDecay(
        cfg.lr * 0.02 if warmup else cfg.lr,
        decay_steps=max(total - warmup, 1),
        alpha=0.02,
        warmup_target=cfg.lr if warmup else None,
        warmup_steps=warmup,
    )


def optimizer(cfg: DetectConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """AdamW on the run's schedule; with ``cfg.ema`` it also keeps the weights' moving average, which replaces
    the weights when training ends (Keras' ``finalize_variable_values``)."""
    import keras

    return keras.optimizers.AdamW(
        learning_rate(cfg, steps_per_epoch),
        weight_decay=1e-4,
        clipnorm=10.0,
        use_ema=cfg.ema > 0,
        ema_momentum=cfg.ema or 0.99,
    )


def ema_start_share(cfg: DetectConfig, train_screenshots: int) -> tuple[float, int]:
    """The share of the random starting weights still in the moving average when the run ends, and the run's
    steps. Keras' average starts from the starting weights and keeps ``ema ** steps`` of them: nothing after the
    zoo's 4,500 steps at 0.995, but 40% after a 9-step run at 0.9."""
    steps = cfg.epochs * -(-train_screenshots // cfg.batch_size)
    return (cfg.ema**steps if cfg.ema else 0.0), steps


def build_detector(cfg: DetectConfig, num_classes: int, steps_per_epoch: int, precision: str) -> keras.Model:
    with dtype_policy(precision):
        model = create_detector(cfg.model, num_classes, cfg.input_size)
    model.compile(optimizer=optimizer(cfg, steps_per_epoch), loss=detection_loss(num_classes, cfg.input_size))
    # The optimizer's variables made now, not inside the first step: a tf.function that creates variables is
    # traced twice, and tracing this train step is most of a short run (half of a 2-epoch one).
    model.optimizer.build(model.trainable_variables)
    return model


@dataclass
class DetectorRun:
    out: Path
    model: Any
    history: dict[str, list[float]]
    counts: dict[str, int]
    data: DetectionSet
    split: dict[str, str]
    resumed_from: int = 0


def _counts(split: dict[str, str]) -> dict[str, int]:
    return {s: sum(1 for v in split.values() if v == s) for s in ("train", "validate", "test")}


def train_detector(
    ws: Workspace,
    cfg: DetectConfig,
    *,
    split_seed: int | None = None,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    out: Path | None = None,
    resume: Path | None = None,
    on_epoch: EpochHook | None = None,
    on_start: Callable[[DetectionSet, dict[str, int], int], None] | None = None,
) -> DetectorRun:
    """Train a detector on the workspace's labelled screenshots (raw/screenshots and raw/processed), split by
    screenshot with ``split_seed`` (default: the run's seed). With ``resume`` (a run folder of an earlier,
    interrupted run), continue it from its last finished epoch with its own configuration and split."""
    import keras

    cfg = (recorded_config(resume) if resume is not None else cfg).validate()
    data = load_detection_set(
        [ws.screenshots, ws.processed], cfg.classes, ws.classes_file, include_unreviewed=cfg.include_unreviewed
    )
    if not data.truths:
        raise DetectionDataError(
            f"no labelled screenshots under {ws.screenshots} or {ws.processed} (render some with 'toonvision synth')"
        )
    keys = [truth_key(t, ws) for t in data.truths]
    if resume is not None:
        split = read_json(resume / "split.json") or {}
        missing = [k for k in split if k not in set(keys)]
        if missing:
            raise DetectionDataError(f"{len(missing)} screenshot(s) of {resume} are gone (e.g. {missing[0]})")
        out = resume
    else:
        split = split_by_screenshot(keys, ratios, cfg.seed if split_seed is None else split_seed)
    parts = {s: [t for t, k in zip(data.truths, keys, strict=True) if split.get(k) == s] for s in ("train", "validate")}
    counts = _counts(split)
    seed_everything(cfg.seed)
    precision = resolve_precision(cfg.precision)

    def batches(truths: list[Truth], augment: bool) -> Batches:
        pixels = load_screenshots(truths, cfg.input_size, ws)
        plain_from = cfg.epochs - cfg.plain_epochs
        return Batches(
            pixels,
            truths,
            len(data.classes),
            cfg.input_size,
            cfg.batch_size,
            augment=augment,
            seed=cfg.seed,
            plain_from=plain_from,
            mosaic=cfg.mosaic,
        )

    train = batches(parts["train"], cfg.augment)
    val = batches(parts["validate"], False) if parts["validate"] else None
    if out is None:
        out = new_run_dir(ws.runs / "train", cfg.run_name())
    out.mkdir(parents=True, exist_ok=True)
    config = {
        **cfg.to_dict(),
        "class_names": data.classes,
        "precision_used": precision,
        "split": f"seed {cfg.seed if split_seed is None else split_seed}",
        "counts": counts,
    }
    if resume is None:
        write_json(out / "config.json", config)
        write_json(out / "split.json", split)
    model = build_detector(cfg, len(data.classes), len(train), precision)
    if cfg.weights and resume is None:
        from toonvision.learning.zoo import start_from

        start_from(model, Path(cfg.weights))
    progress = read_json(out / "progress.json") or {}
    first_epoch, history = 0, {}
    spent = {"seconds": 0.0, "since": time.perf_counter()}  # training time, summed over a stop and its --resume
    if resume is not None and (out / "checkpoint.keras").is_file() and progress.get("epochs_done"):
        # The whole training state, optimizer moments and step count included: the run continues, it does not
        # start again with a warm model.
        model = keras.models.load_model(out / "checkpoint.keras", compile=False, safe_mode=False)
        model.compile(optimizer=optimizer(cfg, len(train)), loss=detection_loss(len(data.classes), cfg.input_size))
        _restore_optimizer(model, out / "optimizer.npz")
        first_epoch, history = int(progress["epochs_done"]), dict(progress.get("history", {}))
        spent["seconds"] = float(progress.get("seconds", 0.0))
    if on_start is not None:
        on_start(data, counts, first_epoch)

    class Checkpoint(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            for key, value in (logs or {}).items():
                history.setdefault(key, []).append(float(value))
            save_model(self.model, out / "checkpoint.keras")
            _save_optimizer(self.model, out / "optimizer.npz")
            now = time.perf_counter()
            spent["seconds"] += now - spent["since"]
            spent["since"] = now
            seconds = round(spent["seconds"], 1)
            write_json(out / "progress.json", {"epochs_done": epoch + 1, "history": history, "seconds": seconds})
            if on_epoch is not None:
                on_epoch(epoch, dict(logs or {}))

    if first_epoch < cfg.epochs:
        model.fit(
            train.dataset(first_epoch),
            steps_per_epoch=len(train),
            epochs=cfg.epochs,
            initial_epoch=first_epoch,
            validation_data=val.dataset() if val is not None else None,
            validation_steps=len(val) if val is not None else None,
            callbacks=[Checkpoint()],
            shuffle=False,  # the batches are shuffled already, reproducibly
            verbose=0,
        )
    # fit does this at its end, but not when a run resumed after its last epoch skips fit; twice is harmless.
    model.optimizer.finalize_variable_values(model.trainable_variables)
    final = as_float32_detector(model, cfg, len(data.classes)) if precision != "float32" else model
    save_model(final, out / "model.keras")
    write_json(out / "history.json", history)
    spent["seconds"] += time.perf_counter() - spent["since"]
    write_json(out / "metrics.json", {"params": int(final.count_params()), "seconds": round(spent["seconds"], 1)})
    for leftover in ("checkpoint.keras", "optimizer.npz", "progress.json"):
        (out / leftover).unlink(missing_ok=True)  # the finished model replaces them: nothing to resume
    return DetectorRun(out, final, history, counts, data, split, first_epoch)


def as_float32_detector(model: keras.Model, cfg: DetectConfig, num_classes: int) -> keras.Model:
    """The float32 twin of a mixed-precision detector: what is saved and exported."""
    twin = create_detector(cfg.model, num_classes, cfg.input_size, model_name=model.name)
    twin.set_weights(model.get_weights())
    return twin


def _save_optimizer(model: keras.Model, path: Path) -> None:
    import io

    from toonvision.data.files import write_bytes_atomic

    buf = io.BytesIO()
    np.savez(buf, *[np.asarray(v) for v in model.optimizer.variables])
    write_bytes_atomic(path, buf.getvalue())


def _restore_optimizer(model: keras.Model, path: Path) -> None:
    if not path.is_file():
        return
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    with np.load(path) as saved:
        values = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    if len(values) == len(optimizer.variables):
        for variable, value in zip(optimizer.variables, values, strict=True):
            variable.assign(value)
