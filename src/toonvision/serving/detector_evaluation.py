"""Running a detector over labelled screenshots: the detections a metric and its figures are computed from."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from toonvision.data.detection import DetectionDataError, Detections, DetectionSet, Truth, load_detection_set
from toonvision.learning.detector_training import truth_key
from toonvision.learning.model_files import ModelSource
from toonvision.serving.detector import Detector

if TYPE_CHECKING:
    from toonvision.data.workspace import Workspace

EVAL_THRESHOLD = 0.05  # every box this confident or more enters the AP: a low threshold is AP's own convention
BATCH = 4  # screenshots a forward call


def evaluation_set(
    source: ModelSource, detector: Detector, ws: Workspace | None, folders: Sequence[Path] | None = None
) -> tuple[DetectionSet, str]:
    """The screenshots to judge ``detector`` on and what they are: ``folders`` when given, else the test split
    its run recorded (split.json) among the workspace's screenshots."""
    scheme = source.config.get("classes", "suit")
    if folders:
        data = load_detection_set(folders, scheme, classes=detector.classes)
        return data, ", ".join(str(f) for f in folders)
    if source.split is None or ws is None:
        raise DetectionDataError(
            f"{source.path} has no split.json beside it: give --screenshots FOLDER of labelled screenshots"
        )
    data = load_detection_set([ws.screenshots, ws.processed], scheme, classes=detector.classes)
    test = {key for key, split in source.split.items() if split == "test"}
    kept = [t for t in data.truths if truth_key(t, ws) in test]
    if not kept:
        raise DetectionDataError(f"none of the {len(test)} test screenshots of {source.path} is in {ws.root}")
    data.truths = kept
    return data, "the run's test split"


def detect_all(
    detector: Detector,
    truths: Sequence[Truth],
    *,
    threshold: float = EVAL_THRESHOLD,
    on_batch: Callable[[int], None] | None = None,
) -> list[Detections]:
    """The detections of every screenshot of ``truths``, in order."""
    found: list[Detections] = []
    for start in range(0, len(truths), BATCH):
        chunk = [t.image for t in truths[start : start + BATCH]]
        found += detector.detect_batch(chunk, threshold)
        if on_batch is not None:
            on_batch(len(chunk))
    return found
