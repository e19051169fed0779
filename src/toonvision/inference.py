"""Classifying crops from a program: the library API for bots.

    from toonvision import Classifier
    clf = Classifier.load("img/runs/train/binary-model")     # a run folder or a .keras file
    label, confidence = clf.predict(crop)                    # one crop: a PIL image, an array or a path
    results = clf.predict([crop1, crop2])                    # a batch: a list of (label, confidence)

The model is wrapped in a ``tf.function`` traced once for a batch of any size, which avoids the per-call
overhead of ``model.predict`` (building a dataset, a progress bar, callbacks) that makes the spec's
``predict_image`` slow for one crop at a time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toonvision.datasets import IMAGE_SIZE
from toonvision.taxonomy import task_classes


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


class Classifier:
    def __init__(self, model: Any, task: str, *, pad: bool = False, size: tuple[int, int] = IMAGE_SIZE) -> None:
        import tensorflow as tf

        self.model = model
        self.task = task
        self.classes = task_classes(task)
        self.pad = pad
        self.size = size
        # One trace serves every batch size; training=False keeps augmentation and dropout off.
        self._forward = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec([None, *size, 3], tf.float32)],
            reduce_retracing=True,
        )

    @classmethod
    def load(cls, path: str | Path, task: str | None = None) -> Classifier:
        """Load a run folder or a ``.keras`` file; the task comes from the stored configuration or from the
        number of outputs."""
        import keras

        model_file = resolve_model_file(Path(path))
        meta = model_metadata(model_file)
        model = keras.models.load_model(model_file, compile=False)
        units = int(model.output_shape[-1])
        task = task or meta.get("task") or {1: "binary", 4: "suit", 32: "name"}.get(units)
        if task is None:
            raise ValueError(f"cannot tell the task of {model_file} ({units} outputs): pass task=")
        expected = 1 if task == "binary" else len(task_classes(task))
        if units != expected:
            raise ValueError(f"{model_file} has {units} outputs but the {task!r} task needs {expected}")
        return cls(model, task, pad=bool(meta.get("pad", False)))

    def preprocess(self, images: Sequence[Any]) -> np.ndarray:
        """Crops of any size (PIL images, HxWx3 uint8 arrays or paths) -> a float32 batch of the model's size."""
        from PIL import Image

        from toonvision.datasets import fit_image

        batch = np.empty((len(images), *self.size, 3), dtype=np.float32)
        for i, item in enumerate(images):
            if isinstance(item, (str, Path)):
                with Image.open(item) as img:
                    batch[i] = fit_image(img, self.size, pad=self.pad)
            elif isinstance(item, np.ndarray) and item.shape[:2] == self.size and item.ndim == 3:
                batch[i] = item[..., :3]
            else:
                img = item if isinstance(item, Image.Image) else Image.fromarray(np.asarray(item, dtype=np.uint8))
                batch[i] = fit_image(img, self.size, pad=self.pad)
        return batch

    def probabilities(self, images: Sequence[Any]) -> np.ndarray:
        """(N, classes) probabilities for a batch of crops."""
        if not len(images):
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        out = np.asarray(self._forward(self.preprocess(images)))
        if self.task == "binary":
            out = np.concatenate([1.0 - out, out], axis=1)  # [cog, toon]
        return out

    def predict(self, images: Any) -> Result | list[Result]:
        """Label and confidence for one crop (returns a Result) or a list of crops (a list of Results)."""
        single = not isinstance(images, (list, tuple)) and not (isinstance(images, np.ndarray) and images.ndim == 4)
        probs = self.probabilities([images] if single else list(images))
        results = [Result(self.classes[int(np.argmax(p))], float(np.max(p)), tuple(float(v) for v in p)) for p in probs]
        return results[0] if single else results
