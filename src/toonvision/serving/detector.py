"""Finding every Toon and Cog in a screenshot from a program: the detector's library API for bots.

    from toonvision import Detector
    det = Detector.load("img/runs/train/detect-suit")        # a run folder, a .keras file or an .onnx file
    boxes, classes, scores = det.detect(screenshot)          # a path, a PIL image or an RGB array
    names = det.names(classes)                               # "toon", "bossbot", ...

Like :class:`toonvision.Classifier`, two engines behind one API: Keras for a run folder or ``.keras`` file, ONNX
Runtime for an ``.onnx`` export (no TensorFlow imported; the classes and input size travel inside the file).
Both share the letterboxing and the decoding (:func:`toonvision.learning.detection.decode`), so they give the
same boxes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from toonvision.data.detection import Detections, Letterbox, letterbox_image, screenshot_array
from toonvision.learning.detection import decode
from toonvision.learning.model_files import ModelError, load_keras_model, locate_model
from toonvision.learning.models import forward_function
from toonvision.learning.tasks import is_detector
from toonvision.serving.inference import onnx_metadata, onnx_session
from toonvision.serving.thresholds import BOX_SCORE, MAX_BOXES


class Detector:
    """Boxes, classes and scores for screenshots, from a Keras detector or an ONNX Runtime session."""

    def __init__(
        self,
        model: Any,
        classes: Sequence[str],
        *,
        input_size: tuple[int, int] | None = None,
        threshold: float = BOX_SCORE,
        top_k: int = MAX_BOXES,
    ) -> None:
        self.model = model
        self.classes = list(classes)
        self.threshold = threshold
        self.top_k = top_k
        if type(model).__module__.startswith("onnxruntime"):
            self.engine = "onnx"
            shape = model.get_inputs()[0].shape
            self.input_size = input_size or (int(shape[1]), int(shape[2]))
            input_name, output_name = model.get_inputs()[0].name, model.get_outputs()[0].name
            self._forward = lambda x: model.run([output_name], {input_name: x})[0]
            self._dtype = np.uint8
        else:
            self.engine = "keras"
            self.input_size = input_size or tuple(model.input_shape[1:3])
            self._forward = forward_function(model, self.input_size)
            self._dtype = np.float32
        channels = (model.get_outputs()[0].shape if self.engine == "onnx" else model.output_shape)[-1]
        if channels != len(self.classes) + 4:
            raise ValueError(
                f"the detector outputs {channels} channels; {len(self.classes)} classes need {len(self.classes) + 4}"
            )

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        threshold: float = BOX_SCORE,
        max_det: int = MAX_BOXES,
        threads: int | None = None,
        spin: bool = False,
        root: Path | None = None,
    ) -> Detector:
        """Load a detector run folder, its ``model.keras`` or an ``.onnx`` export, keeping at most ``max_det``
        boxes a screenshot. FileNotFoundError when there is no such model; ModelError (a ValueError) when it is not
        a detector (a classifier, say)."""
        try:
            source = locate_model(path, root)
        except ModelError as exc:
            if not Path(path).exists():
                raise FileNotFoundError(str(exc)) from None
            raise
        if source.is_onnx:
            session = onnx_session(source.path, threads, spin=spin)
            meta = onnx_metadata(session)
            if not is_detector(meta.get("task")):
                raise ModelError(f"{source.path} is a {meta.get('task') or 'non-ToonVision'} model, not a detector")
            return cls(session, meta["classes"], input_size=tuple(meta["size"]), threshold=threshold, top_k=max_det)
        if source.task is not None and not source.is_detector:
            raise ModelError(
                f"{source.path} is a {source.task} classifier, not a detector (train one with --task detect)"
            )
        classes = source.config.get("class_names")
        if not classes:
            raise ModelError(
                f"{source.path} has no detector config.json beside it (the class names are recorded there)"
            )
        model = load_keras_model(source.keras_file())
        if len(model.output_shape) != 4:
            raise ModelError(f"{source.path} is a classifier, not a detector")
        return cls(model, classes, threshold=threshold, top_k=max_det)

    def names(self, classes: Sequence[int]) -> list[str]:
        return [self.classes[int(c)] for c in classes]

    def prepare(self, image: Any) -> tuple[np.ndarray, Letterbox]:
        """A screenshot (path, PIL image or array) letterboxed to the input size, and how it was placed."""
        return letterbox_image(screenshot_array(image), self.input_size)

    def raw(self, batch: np.ndarray) -> np.ndarray:
        """Network outputs for a batch of letterboxed uint8 inputs."""
        return np.asarray(self._forward(batch.astype(self._dtype, copy=False)), np.float32)

    def detect(self, image: Any, threshold: float | None = None) -> Detections:
        """Boxes (x1 y1 x2 y2 in the screenshot's pixels), class indexes and scores, best first; unpacks as
        ``boxes, classes, scores``."""
        return self.detect_batch([image], threshold)[0]

    def detect_batch(self, images: Sequence[Any], threshold: float | None = None) -> list[Detections]:
        threshold = self.threshold if threshold is None else threshold
        prepared = [self.prepare(image) for image in images]
        outputs = self.raw(np.stack([p[0] for p in prepared])) if prepared else []
        found = []
        for output, (_, box) in zip(outputs, prepared, strict=True):
            decoded = decode(output, len(self.classes), top_k=self.top_k, threshold=threshold)
            found.append(decoded.placed(box.to_image(decoded.boxes)))
        return found
