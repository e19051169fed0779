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
  starts in a fraction of a second), and ONNX Runtime's CPU convolutions are the fastest path for one crop
  (``benchmarks/inference_latency.py``; the README's speed section has the figures). Task, classes and
  how crops are fitted travel inside the file, so it needs nothing beside it.

Both give the same probabilities to 1e-4 (``tests/test_export.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toonvision.data.images import IMAGE_SIZE, fit_image, open_image
from toonvision.data.taxonomy import task_classes, task_for_units
from toonvision.learning.backend import available_cores
from toonvision.learning.model_files import ModelError, load_classifier, locate_model
from toonvision.learning.models import forward_function

ONNX_SUFFIX = ".onnx"
# Keys of the ONNX model's metadata_props that ToonVision writes and reads (values are JSON).
ONNX_META_PREFIX = "toonvision."

# Crops per forward call, by engine (measured with benchmarks/inference_latency.py). ONNX Runtime: since
# exports pool uint8 pixels first, runs of 4 crops beat one at a time, and 8 is no better than 4 (the
# activations of 4 crops still fit the caches). Keras pays a per-call overhead and is best from 8 crops a call.
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


def onnx_session(path: Path, threads: int | None = None, *, spin: bool = False) -> Any:
    """An ONNX Runtime session tuned for latency on a small CPU.

    One intra-op thread per core; operators run one after another (the models are a chain: nothing to
    overlap); every graph optimization (the NCHWc convolution kernels it enables are what make one crop
    fast). Worker threads do not spin by default: a spinning thread keeps a core busy, which starves
    whatever the caller does next (resizing the next crop, the game itself); on cores shared with another
    program, crops took more than twice as long with spinning. ``spin=True`` is for a machine that does
    nothing else, where it is a little faster (the README's speed section has the figures).
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
            self._forward = forward_function(model, self.size, jit_compile)
        self.batch_size = max(1, int(batch_size or BATCH_SIZE[self.engine]))  # crops per forward call

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
        number of outputs; ``task`` overrides it. FileNotFoundError when there is no such model, ValueError
        when it cannot be read."""
        try:
            source = locate_model(path)
        except ModelError as exc:
            if not Path(path).exists():
                raise FileNotFoundError(str(exc)) from None
            raise
        if source.is_onnx:
            return cls.from_onnx(source.path, task, threads=threads, spin=spin)
        model, task = load_classifier(source, task)
        return cls(model, task, pad=source.pad, jit_compile=jit_compile)

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
        task = task_for_units(units, task or meta.get("task"), path)
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
        bilinear resize is the dearest step for a small crop (dearer than the article's model's forward pass
        with ONNX Runtime), so crops of a batch are resized on all cores (Pillow releases the GIL while it
        resizes)."""
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

        if isinstance(item, (str, Path)):
            return fit_image(open_image(Path(item)), self.size, pad=self.pad)
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
