"""Judging a detector on labelled screenshots: which screenshots, the detections, COCO's AP, evaluation.json.

What the ``evaluate`` verb computes and writes for a detector (``task`` detect) is here; the verb prints it and
draws its figures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from toonvision.data.detection import DetectionDataError, Detections, DetectionSet, Truth, load_detection_set
from toonvision.data.files import write_json
from toonvision.learning.detection_metrics import DetectionMetrics, WorstScreenshot, evaluate_detections
from toonvision.learning.detection_metrics import worst_screenshots as rank_worst
from toonvision.learning.detector_training import truth_key
from toonvision.learning.model_files import ModelSource
from toonvision.learning.tasks import DETECT
from toonvision.serving.detector import Detector

if TYPE_CHECKING:
    from toonvision.data.workspace import Workspace

EVAL_THRESHOLD = 0.05  # every box this confident or more enters the AP: a low threshold is AP's own convention
BATCH = 4  # screenshots a forward call


def evaluation_set(
    source: ModelSource, detector: Detector, ws: Workspace | None, folders: Sequence[Path] | None = None
) -> tuple[DetectionSet, str]:
    """The screenshots to judge ``detector`` on and what they are: ``folders`` when given, else the test split
    its run recorded (split.json) among the workspace's screenshots. DetectionDataError when there is nothing
    to judge it on: a folder that does not exist, holds no screenshots, or none labelled and readable."""
    scheme = source.config.get("classes", "suit")
    if folders:
        for folder in folders:
            if not Path(folder).is_dir():
                raise DetectionDataError(f"{folder} is not a folder of labelled screenshots")
        where = ", ".join(str(f) for f in folders)
        data = load_detection_set(folders, scheme, classes=detector.classes)
        if not data.truths:
            raise DetectionDataError(data.why_empty(where))
        return data, where
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


@dataclass
class DetectorEvaluation:
    """A detector judged on screenshots: its metrics, its worst screenshots, and the folder it was written to."""

    out: Path
    data: DetectionSet
    judged: str  # which screenshots, in words
    detections: list[Detections]
    metrics: DetectionMetrics
    worst: list[WorstScreenshot]

    @property
    def report(self) -> Path:
        return self.out / "evaluation.json"


def evaluate_detector(
    source: ModelSource,
    detector: Detector,
    data: DetectionSet,
    judged: str,
    *,
    top: int = 9,
    on_batch: Callable[[int], None] | None = None,
    root: Path | None = None,
) -> DetectorEvaluation:
    """Run ``detector`` over ``data`` (from :func:`evaluation_set`), compute COCO's AP and rank the ``top`` worst
    screenshots; write evaluation.json into a new results folder of ``source`` (made only once there is
    something to write)."""
    detections = detect_all(detector, data.truths, on_batch=on_batch)
    metrics = evaluate_detections(data.truths, detections, detector.classes)
    out = source.results_dir("evaluate", root)
    write_json(
        out / "evaluation.json",
        {
            "model": str(source.path),
            "task": DETECT,
            "screenshots": judged,
            "n_screenshots": len(data.truths),
            "skipped": [{"image": i, "reason": r} for i, r in data.skipped],
            "unknown_labels": dict(data.unknown_labels.most_common()),
            **metrics.to_dict(),
        },
    )
    worst = rank_worst(data.truths, detections, metrics, n=top)
    return DetectorEvaluation(out, data, judged, detections, metrics, worst)
