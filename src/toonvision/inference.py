"""Classifying crops from a program: the library API for bots.

    from toonvision import Classifier
    clf = Classifier.load("img/runs/train/binary-model")     # a run folder, a .keras file or an .onnx file
    label, confidence = clf.predict(crop)                    # one crop: a PIL image, an array or a path
    results = clf.predict([crop1, crop2])                    # a batch: a list of (label, confidence)

Two engines behind one API, chosen by what is loaded:

- **Keras** (a run folder or a ``.keras`` file): the model wrapped in a ``tf.function`` traced once for a
  batch of any size, which avoids the per-call overhead of ``model.predict`` (building a dataset, a progress
  bar, callbacks) that makes the spec's ``predict_image`` slow for one crop at a time.
- **ONNX Runtime** (an ``.onnx`` file written by ``toonvision export``): TensorFlow is never imported (a bot
  starts in a fraction of a second), and ONNX Runtime's CPU convolutions are 2-4x faster than
  TensorFlow's for one crop on a 2-core CPU (see ``benchmarks/inference_latency.py``). Task, classes and
  how crops are fitted travel inside the file, so it needs nothing beside it.

Both give the same probabilities to 1e-4 (``tests/test_export.py``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toonvision.datasets import IMAGE_SIZE
from toonvision.taxonomy import task_classes

TASK_BY_UNITS = {1: "binary", 4: "suit", 32: "name"}
ONNX_SUFFIX = ".onnx"
# Keys of the ONNX model's metadata_props that ToonVision writes and reads (values are JSON).
ONNX_META_PREFIX = "toonvision."

# Crops per forward call, by engine. ONNX Runtime: since exports pool uint8 pixels first, runs of 4 crops
# beat one at a time (1,230-1,300 against 1,090-1,110 crops/s for batches of 64, 2 cores idle, no spinning),
# and 8 is no better than 4 (the activations of 4 crops still fit the caches). Keras pays a per-call
# overhead and is best from 8 crops a call: 2.1 ms per crop, 2.7 ms one at a time (seed model, 2 cores).
BATCH_SIZE = {"onnx": 4, "keras": 16, "keras+xla": 16}
# Crops fitted to the model's size together, so that their resizing can use every core.
PREPROCESS_BLOCK = 16


@dataclass(frozen=True)
class Result:
    label: str  # a class of the task: "cog"/"toon", a suit short name, or a Cog name
    confidence: float  # probability of that class
    probabilities: tuple[float, ...]  # one per class of the task

    def __iter__(self):  # so that `label, confidence = result` works
        return iter((self.label, self.confidence))


def model_metadata(model_file: Path) -> dict[str, Any]:
    """Training configuration stored beside a model: a run folder's config.json, or the <name>.json that
    'compare' writes beside a kept model. Empty when there is none."""
    model_file = Path(model_file)
    for candidate in (model_file.parent / "config.json", model_file.with_suffix(".json")):
        if candidate.exists():
            data = json.loads(candidate.read_text())
            return data.get("config", data)
    return {}


def resolve_model_file(path: Path) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / "model.keras"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    return path


def resolve_task(units: int, task: str | None, source: Path | str) -> str:
    """The task of a model with ``units`` outputs: ``task`` when given (checked against the outputs), else
    the one its number of outputs implies."""
    task = task or TASK_BY_UNITS.get(units)
    if task is None:
        raise ValueError(f"cannot tell the task of {source} ({units} outputs): pass task=")
    if task not in TASK_BY_UNITS.values():
        raise ValueError(f"unknown task {task!r} (choose from {', '.join(TASK_BY_UNITS.values())})")
    expected = 1 if task == "binary" else len(task_classes(task))
    if units != expected:
        raise ValueError(f"{source} has {units} outputs but the {task!r} task needs {expected}")
    return task


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def onnx_session(path: Path, threads: int | None = None, *, spin: bool = False) -> Any:
    """An ONNX Runtime session tuned for latency on a small CPU.

    One intra-op thread per core; operators run one after another (the models are a chain: nothing to
    overlap); every graph optimization (the NCHWc convolution kernels it enables are what make one crop
    fast: measured 0.7 ms against 1.1-1.4 ms with the basic or extended levels on 2 cores). Worker threads
    never spin: a spinning thread keeps a core busy, which starves whatever the caller does next (resizing
    the next crop, the game itself). Measured on 2 cores shared with another program, a 121x317 crop took
    6.9 ms at the median with spinning, 4.5 ms with spinning stopped after each run
    (session.force_spinning_stop) and 2.8 ms without spinning; a batch of 8 took 26 ms against 15 ms;
    back-to-back 200x600 crops took about the same time either way (1.8 and 1.9 ms). ``spin=True`` is for
    a machine that does nothing else: there, idle, spinning took one crop from 0.89 to 0.76 ms at the median.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or available_cores()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types (InvalidProtobuf, InvalidGraph...)
        raise ValueError(f"{path} is not an ONNX model ONNX Runtime can run: {exc}") from None


def onnx_metadata(session: Any) -> dict[str, Any]:
    """The ToonVision metadata of an exported model (task, classes, pad, size...); empty for other models."""
    meta: dict[str, Any] = {}
    for key, value in session.get_modelmeta().custom_metadata_map.items():
        if key.startswith(ONNX_META_PREFIX):
            try:
                meta[key[len(ONNX_META_PREFIX) :]] = json.loads(value)
            except ValueError:
                meta[key[len(ONNX_META_PREFIX) :]] = value
    return meta


def _is_onnx_session(model: Any) -> bool:
    # Checked by module name so that a Keras model never makes us import onnxruntime, nor the reverse.
    return type(model).__module__.startswith("onnxruntime")


class Classifier:
    """Labels and confidences for crops, from a Keras model or an ONNX Runtime session.

    ``engine`` tells which: "keras", "keras+xla" or "onnx". ``model`` is the Keras model or the
    ``onnxruntime.InferenceSession``.
    """

    def __init__(
        self,
        model: Any,
        task: str,
        *,
        pad: bool = False,
        size: tuple[int, int] | None = None,
        classes: Sequence[str] | None = None,
        jit_compile: bool = False,
        batch_size: int | None = None,
    ) -> None:
        self.model = model
        self.task = task
        self.classes = list(classes) if classes else task_classes(task)
        self.pad = pad
        self._threads: ThreadPoolExecutor | None = None  # preprocessing threads, made when a batch comes
        if _is_onnx_session(model):
            self.engine = "onnx"
            shape = model.get_inputs()[0].shape  # [batch, height, width, 3]; the batch is symbolic
            self.size = size or _fixed_size(shape[1:3])
            # ToonVision's exports take uint8 pixels; other ONNX models float32 values of 0-255.
            self.dtype = np.uint8 if model.get_inputs()[0].type == "tensor(uint8)" else np.float32
            self._forward = self._onnx_forward(model)
        else:
            self.engine = "keras+xla" if jit_compile else "keras"
            self.size = size or _fixed_size(model.input_shape[1:3])
            self.dtype = np.float32
            self._forward = self._keras_forward(model, self.size, jit_compile)
        self.batch_size = max(1, int(batch_size or BATCH_SIZE[self.engine]))  # crops per forward call

    @staticmethod
    def _keras_forward(model: Any, size: tuple[int, int], jit_compile: bool) -> Callable[[np.ndarray], np.ndarray]:
        import tensorflow as tf

        # One trace serves every batch size; training=False keeps augmentation and dropout off.
        # XLA (jit_compile) is off by default: on a 2-core CPU it made the seed model slower, one crop
        # 2.9 ms against 2.6 ms and 440 against 790 crops/s in one call of 64 (TensorFlow's oneDNN
        # convolutions beat the ones XLA emits), and it compiles again for every new batch size. It stays
        # an option for other machines and models.
        fn = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec([None, *size, 3], tf.float32)],
            reduce_retracing=True,
            jit_compile=jit_compile,
        )
        return lambda x: fn(x).numpy()

    @staticmethod
    def _onnx_forward(session: Any) -> Callable[[np.ndarray], np.ndarray]:
        input_name = session.get_inputs()[0].name
        output_names = [session.get_outputs()[0].name]
        return lambda x: session.run(output_names, {input_name: x})[0]

    @classmethod
    def load(
        cls,
        path: str | Path,
        task: str | None = None,
        *,
        jit_compile: bool = False,
        threads: int | None = None,
        spin: bool = False,
    ) -> Classifier:
        """Load a run folder, a ``.keras`` file or an ``.onnx`` file (the last with ONNX Runtime, ``threads``
        intra-op threads, default one per core; ``spin`` lets them spin between runs, faster when nothing
        else needs the cores, slower when the game does). The task comes from the stored configuration or from the
        number of outputs; ``task`` overrides it."""
        model_file = resolve_model_file(Path(path))
        if model_file.suffix.lower() == ONNX_SUFFIX:
            return cls.from_onnx(model_file, task, threads=threads, spin=spin)
        import keras

        meta = model_metadata(model_file)
        model = keras.models.load_model(model_file, compile=False)
        task = resolve_task(int(model.output_shape[-1]), task or meta.get("task"), model_file)
        return cls(model, task, pad=bool(meta.get("pad", False)), jit_compile=jit_compile)

    @classmethod
    def from_onnx(
        cls, path: str | Path, task: str | None = None, *, threads: int | None = None, spin: bool = False
    ) -> Classifier:
        """Run an ``.onnx`` model with ONNX Runtime. A model from ``toonvision export`` carries its task,
        classes and padding; for another ONNX model (NHWC input of 0-255 RGB values, uint8 or float32, one
        sigmoid or a softmax output) the task comes from ``task`` or from the number of outputs."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist")
        session = onnx_session(path, threads, spin=spin)
        meta = onnx_metadata(session)
        units = session.get_outputs()[0].shape[-1]
        if not isinstance(units, int):
            raise ValueError(f"{path}: the number of outputs is not fixed ({units!r})")
        task = resolve_task(units, task or meta.get("task"), path)
        classes = meta.get("classes") if task == meta.get("task") else None
        if classes is not None and len(classes) != (2 if task == "binary" else units):
            raise ValueError(f"{path}: its metadata names {len(classes)} classes for {units} outputs")
        size = tuple(meta["size"]) if isinstance(meta.get("size"), list) else None
        return cls(session, task, pad=bool(meta.get("pad", False)), size=size, classes=classes)

    def preprocess(self, images: Sequence[Any]) -> np.ndarray:
        """Crops of any size (PIL images, HxWx3 uint8 arrays or paths) -> a batch of the model's size, in the
        dtype its input takes (uint8 for ToonVision's ONNX exports, float32 for Keras).

        Each crop is converted once, while it is copied into the batch; a crop already of the model's size is
        not resized. Others are resized exactly as in training (``fit_image``): Pillow's
        bilinear resize is the dearest step for a small crop (about 0.9 ms to bring 121x317 to 200x600, more
        than the seed model's forward pass with ONNX Runtime), so crops of a batch are resized on all cores
        (Pillow releases the GIL while it resizes)."""
        batch = np.empty((len(images), *self.size, 3), dtype=self.dtype)

        def fill(i: int) -> None:
            batch[i] = self._fit(images[i])

        if len(images) > 1 and not all(self._fits(item) for item in images):
            list(self._pool().map(fill, range(len(images))))
        else:  # a copy (and conversion) per crop: cheaper than handing it to a thread
            for i in range(len(images)):
                fill(i)
        return batch

    def _fits(self, item: Any) -> bool:
        return isinstance(item, np.ndarray) and item.ndim == 3 and item.shape[:2] == self.size

    def _fit(self, item: Any) -> np.ndarray:
        """One crop as a (height, width, 3) array of the model's size (uint8, or the caller's own dtype)."""
        from PIL import Image

        from toonvision.datasets import fit_image

        if isinstance(item, (str, Path)):
            with Image.open(item) as img:
                return fit_image(img, self.size, pad=self.pad)
        if self._fits(item):
            return item[..., :3]
        img = item if isinstance(item, Image.Image) else Image.fromarray(np.asarray(item, dtype=np.uint8))
        return fit_image(img, self.size, pad=self.pad)

    def _pool(self) -> ThreadPoolExecutor:
        if self._threads is None:
            self._threads = ThreadPoolExecutor(available_cores(), thread_name_prefix="toonvision-preprocess")
        return self._threads

    def probabilities(self, images: Sequence[Any]) -> np.ndarray:
        """(N, classes) probabilities for a batch of crops."""
        n = len(images)
        out = np.empty((n, len(self.classes)), dtype=np.float32)
        block = max(self.batch_size, PREPROCESS_BLOCK)
        for first in range(0, n, block):
            x = self.preprocess(images[first : first + block])
            for start in range(0, len(x), self.batch_size):
                raw = np.asarray(self._forward(x[start : start + self.batch_size]), dtype=np.float32)
                if self.task == "binary":
                    raw = np.concatenate([1.0 - raw, raw], axis=1)  # [cog, toon]
                out[first + start : first + start + len(raw)] = raw
        return out

    def predict(self, images: Any) -> Result | list[Result]:
        """Label and confidence for one crop (returns a Result) or a list of crops (a list of Results)."""
        single = not isinstance(images, (list, tuple)) and not (isinstance(images, np.ndarray) and images.ndim == 4)
        probs = self.probabilities([images] if single else list(images))
        results = [Result(self.classes[int(np.argmax(p))], float(np.max(p)), tuple(float(v) for v in p)) for p in probs]
        return results[0] if single else results


def _fixed_size(dims: Sequence[Any]) -> tuple[int, int]:
    """(height, width) of a model input, or the spec's size when the model accepts any size."""
    if len(dims) == 2 and all(isinstance(d, int) and d > 0 for d in dims):
        return int(dims[0]), int(dims[1])
    return IMAGE_SIZE
