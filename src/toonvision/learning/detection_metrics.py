"""How well a detector finds Toons and Cogs in whole screenshots: COCO's average precision, measured by
pycocotools, with size buckets for ToonTown and per-screenshot error counts for ranking the worst screenshots.

- AP50 and AP50:95 use COCO's 101-point interpolated precision (pycocotools' ``COCOeval``; nothing here
  re-implements AP). Averages run over the classes that have true boxes; a class with none has AP ``None``.
- Size buckets go by a box's *height* on a 720-px-high screenshot (Cogs and Toons are tall and thin; their
  width changes as they turn, their height does not): small < 60 px, medium 60-150 px, large 150 px and up
  (a box exactly 60 or 150 px high goes to the bigger bucket).
- Boxes marked ``difficult`` neither count as misses nor make a detection on them a false positive; they are
  matched with ordinary IoU, once (see ``DifficultAwareEval``).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toonvision.data.detection import Detections, Truth

REFERENCE_HEIGHT = 720  # px: sizes are measured as if every screenshot were 720 px high
SIZE_BUCKETS: dict[str, tuple[float, float]] = {  # box height at 720 px: [low, high)
    "all": (0.0, float("inf")),
    "small": (0.0, 60.0),
    "medium": (60.0, 150.0),
    "large": (150.0, float("inf")),
}
ERROR_IOU = 0.5
DEFAULT_SCORE_THRESHOLD = 0.3
MAX_DETECTIONS = 100  # per class per screenshot, as COCO's AP@100
_AREA_CAP = 1e10  # COCO compares with <, >: a finite stand-in for "no upper bound"


@dataclass
class ImageErrors:
    """One screenshot judged at IoU 0.5 and a score threshold. ``missed`` flags each true box (Truth order)
    no detection above the threshold found; ``false`` flags each detection (Detections order) above the
    threshold that found nothing. Difficult boxes are never missed; a detection on one is never false."""

    image: str
    true_positives: int
    misses: int
    false_positives: int
    missed: np.ndarray = field(repr=False)
    false: np.ndarray = field(repr=False)
    score_threshold: float = DEFAULT_SCORE_THRESHOLD

    @property
    def errors(self) -> int:
        return self.misses + self.false_positives

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "true_positives": self.true_positives,
            "misses": self.misses,
            "false_positives": self.false_positives,
        }


@dataclass
class ClassMetrics:
    """One class: AP50, AP50:95 and recall at IoU 0.5 (None without true boxes), and the interpolated
    precision at each of COCO's recall thresholds, IoU 0.5 (None without true boxes)."""

    name: str
    truths: int  # not difficult
    difficult: int
    detections: int
    ap50: float | None
    ap: float | None
    recall50: float | None
    precision50: list[float] | None


@dataclass
class DetectionMetrics:
    """Everything :func:`evaluate_detections` measured; :meth:`to_dict` is what evaluation.json holds."""

    classes: list[str]
    ap50: float | None
    ap: float | None  # AP50:95
    ap75: float | None
    recall50: float | None
    per_class: list[ClassMetrics]
    by_size: dict[str, dict[str, Any]]  # bucket -> ap50, ap, truths
    recall_thresholds: list[float]
    score_threshold: float
    images: list[ImageErrors]

    @property
    def true_positives(self) -> int:
        return sum(e.true_positives for e in self.images)

    @property
    def misses(self) -> int:
        return sum(e.misses for e in self.images)

    @property
    def false_positives(self) -> int:
        return sum(e.false_positives for e in self.images)

    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": list(self.classes),
            "ap50": self.ap50,
            "ap50_95": self.ap,
            "ap75": self.ap75,
            "recall50": self.recall50,
            "per_class": {
                c.name: {
                    "truths": c.truths,
                    "difficult": c.difficult,
                    "detections": c.detections,
                    "ap50": c.ap50,
                    "ap50_95": c.ap,
                    "recall50": c.recall50,
                    "precision50": c.precision50,
                }
                for c in self.per_class
            },
            "by_size": {
                name: {"height_px_at_720": bucket_text(name), **values} for name, values in self.by_size.items()
            },
            "recall_thresholds": list(self.recall_thresholds),
            "errors": {
                "iou": ERROR_IOU,
                "score_threshold": self.score_threshold,
                "true_positives": self.true_positives,
                "misses": self.misses,
                "false_positives": self.false_positives,
                "images": [e.to_dict() for e in self.images],
            },
        }


def bucket_text(name: str) -> str:
    low, high = SIZE_BUCKETS[name]
    if high == float("inf"):
        return f">= {low:g}" if low else "any"
    return f"{low:g}-{high:g}" if low else f"< {high:g}"


def _cocoeval_class():
    from pycocotools.cocoeval import COCOeval

    class DifficultAwareEval(COCOeval):
        """COCOeval that ignores ``difficult`` truths the way it ignores truths outside a size bucket.

        COCOeval._prepare overwrites every truth's ``ignore`` with its ``iscrowd``, so the flag has to be set
        again afterwards. The other route, iscrowd=1, was not taken: a crowd truth scores IoU as
        intersection over the *detection's* area, so a small box anywhere inside a large half-hidden Cog would
        be excused, and one crowd truth absorbs any number of detections. A difficult box is one Toon or Cog:
        here it is matched with ordinary IoU and only once, so a duplicate on it is a false positive like a
        duplicate on any other box, and a detection on it neither scores nor costs."""

        def _prepare(self) -> None:
            super()._prepare()
            for truths in self._gts.values():
                for g in truths:
                    g["ignore"] = int(bool(g["iscrowd"] or g["difficult"]))

    return DifficultAwareEval


def _area(boxes: np.ndarray, image_height: int) -> np.ndarray:
    """COCO's "area" is only compared with the size buckets: here it is the squared height at 720 px."""
    heights = (boxes[:, 3] - boxes[:, 1]).astype(np.float64) * (REFERENCE_HEIGHT / image_height)
    return heights**2


def _coco(images: list[dict], annotations: list[dict], classes: Sequence[str]):
    from pycocotools.coco import COCO

    # Built by hand, not with COCO.loadRes: loadRes rejects an empty list and overwrites "area" with w*h.
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": k, "name": name} for k, name in enumerate(classes)],
        }
        coco.createIndex()
    return coco


def _check(truth: Truth, det: Detections, n_classes: int) -> None:
    for what, values in (("true", truth.classes), ("detected", det.classes)):
        values = np.asarray(values)
        if values.size and (values.min() < 0 or values.max() >= n_classes):
            raise ValueError(f"{truth.name}: {what} class index out of range for {n_classes} classes")
    if len(det.boxes) != len(det.scores) or len(det.classes) != len(det.scores):
        raise ValueError(
            f"{truth.name}: detections have {len(det.boxes)} boxes, {len(det.classes)} classes and "
            f"{len(det.scores)} scores"
        )


def _mean(values: np.ndarray) -> float | None:
    """COCO's mean: -1 marks "no true boxes here" and is left out; nothing left -> None."""
    kept = values[values > -1]
    return float(np.mean(kept)) if kept.size else None


def evaluate_detections(
    truths: Sequence[Truth],
    detections: Sequence[Detections],
    classes: list[str],
    *,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    max_detections: int = MAX_DETECTIONS,
) -> DetectionMetrics:
    """COCO AP of ``detections`` (one per truth, same order) against ``truths``, with per-class, per-size and
    per-screenshot results. AP uses every detection; the per-screenshot counts only those scoring at least
    ``score_threshold``. At most ``max_detections`` per class per screenshot are judged (highest scores)."""
    if len(truths) != len(detections):
        raise ValueError(f"{len(truths)} screenshots but {len(detections)} sets of detections")
    images, gts, dts = [], [], []
    gt_index: dict[int, tuple[int, int]] = {}  # annotation id -> (screenshot, box)
    dt_index: dict[int, tuple[int, int]] = {}
    for i, (truth, det) in enumerate(zip(truths, detections, strict=True)):
        _check(truth, det, len(classes))
        images.append({"id": i, "width": truth.width, "height": truth.height, "file_name": truth.name})
        boxes = np.asarray(truth.boxes, np.float64).reshape(-1, 4)
        difficult = np.asarray(truth.difficult, bool).reshape(-1)
        for j, (box, cls, area) in enumerate(zip(boxes, truth.classes, _area(boxes, truth.height), strict=True)):
            ann_id = len(gts) + 1  # COCOeval marks "unmatched" with id 0
            gt_index[ann_id] = (i, j)
            gts.append(
                {
                    "id": ann_id,
                    "image_id": i,
                    "category_id": int(cls),
                    "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                    "area": float(area),
                    "iscrowd": 0,
                    "difficult": bool(difficult[j]),
                }
            )
        dboxes = np.asarray(det.boxes, np.float64).reshape(-1, 4)
        for j, (box, cls, score, area) in enumerate(
            zip(dboxes, det.classes, det.scores, _area(dboxes, truth.height), strict=True)
        ):
            ann_id = len(dts) + 1
            dt_index[ann_id] = (i, j)
            dts.append(
                {
                    "id": ann_id,
                    "image_id": i,
                    "category_id": int(cls),
                    "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                    "area": float(area),
                    "score": float(score),
                }
            )

    coco_gt = _coco(images, gts, classes)
    coco_dt = _coco(images, dts, classes)
    evaluator = _cocoeval_class()(coco_gt, coco_dt, iouType="bbox")
    p = evaluator.params
    p.imgIds = list(range(len(truths)))
    p.catIds = list(range(len(classes)))
    p.maxDets = [max_detections]
    p.areaRngLbl = list(SIZE_BUCKETS)
    # Heights are squared into "area"; COCO keeps a box when low <= area <= high, so the upper edge is
    # nudged down to make each bucket [low, high) and a box exactly 60 px high medium, not small too.
    p.areaRng = [
        [low**2, _AREA_CAP if high == float("inf") else np.nextafter(high**2, 0)] for low, high in SIZE_BUCKETS.values()
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        if truths and classes:
            evaluator.evaluate()
            evaluator.accumulate()

    n_classes, n_areas = len(classes), len(SIZE_BUCKETS)
    iou_thresholds = np.asarray(p.iouThrs)
    if evaluator.eval:
        precision = evaluator.eval["precision"][..., 0]  # [iou, recall, class, area]
        recall = evaluator.eval["recall"][..., 0]  # [iou, class, area]
    else:
        precision = -np.ones((len(iou_thresholds), len(p.recThrs), n_classes, n_areas))
        recall = -np.ones((len(iou_thresholds), n_classes, n_areas))
    at50 = int(np.argmin(np.abs(iou_thresholds - 0.5)))
    at75 = int(np.argmin(np.abs(iou_thresholds - 0.75)))

    per_class = []
    for k, name in enumerate(classes):
        has_truth = bool((precision[at50, :, k, 0] > -1).any())
        counts = [
            sum(int(((t.classes == k) & ~np.asarray(t.difficult, bool)).sum()) for t in truths),
            sum(int(((t.classes == k) & np.asarray(t.difficult, bool)).sum()) for t in truths),
            sum(int((np.asarray(d.classes) == k).sum()) for d in detections),
        ]
        per_class.append(
            ClassMetrics(
                name,
                *counts,
                ap50=_mean(precision[at50, :, k, 0]),
                ap=_mean(precision[:, :, k, 0]),
                recall50=float(recall[at50, k, 0]) if recall[at50, k, 0] > -1 else None,
                precision50=[float(v) for v in precision[at50, :, k, 0]] if has_truth else None,
            )
        )

    by_size = {}
    for a, bucket in enumerate(SIZE_BUCKETS):
        low, high = SIZE_BUCKETS[bucket]
        n = 0
        for t in truths:
            heights = np.sqrt(_area(np.asarray(t.boxes, np.float64).reshape(-1, 4), t.height))
            n += int(((heights >= low) & (heights < high) & ~np.asarray(t.difficult, bool)).sum())
        by_size[bucket] = {
            "ap50": _mean(precision[at50, :, :, a]),
            "ap50_95": _mean(precision[:, :, :, a]),
            "truths": n,
        }

    errors = _image_errors(evaluator, truths, detections, gt_index, dt_index, score_threshold, at50)
    return DetectionMetrics(
        classes=list(classes),
        ap50=_mean(precision[at50, :, :, 0]),
        ap=_mean(precision[:, :, :, 0]),
        ap75=_mean(precision[at75, :, :, 0]),
        recall50=_mean(recall[at50, :, 0]),
        per_class=per_class,
        by_size=by_size,
        recall_thresholds=[round(float(r), 4) for r in p.recThrs],
        score_threshold=score_threshold,
        images=errors,
    )


def _image_errors(evaluator, truths, detections, gt_index, dt_index, threshold: float, at50: int) -> list[ImageErrors]:
    """Per-screenshot counts from COCOeval's own matching (size bucket "all", IoU 0.5), so they agree with AP.
    COCO matches greedily from the highest score down, so dropping the detections below ``threshold``
    afterwards leaves the matches of those above it unchanged."""
    hit = [np.zeros(len(t.boxes), bool) for t in truths]  # found by a detection above the threshold
    ignored = [np.asarray(t.difficult, bool).reshape(-1).copy() for t in truths]
    judged = [np.zeros(len(d), bool) for d in detections]  # matched, or excused (a difficult box)
    scores = {ann_id: detections[i].scores[j] for ann_id, (i, j) in dt_index.items()}
    for e in evaluator.evalImgs or []:
        if e is None or e["aRng"] != evaluator.params.areaRng[0]:
            continue
        for dt_id, gt_id, dt_ignored in zip(e["dtIds"], e["dtMatches"][at50], e["dtIgnore"][at50], strict=True):
            i, j = dt_index[dt_id]
            if gt_id or dt_ignored:
                judged[i][j] = True
            if gt_id and scores[dt_id] >= threshold:
                hit[gt_index[int(gt_id)][0]][gt_index[int(gt_id)][1]] = True
    out = []
    for t, d, h, ig, ok in zip(truths, detections, hit, ignored, judged, strict=True):
        missed = ~h & ~ig
        # Not matched nor excused by a difficult box; a detection past max_detections was never judged and
        # is counted here too: it is still something the detector claimed.
        false = (np.asarray(d.scores) >= threshold) & ~ok
        tp = int((h & ~ig).sum())
        out.append(ImageErrors(t.name, tp, int(missed.sum()), int(false.sum()), missed, false, threshold))
    return out


@dataclass
class WorstScreenshot:
    """A screenshot to draw (its path, or its pixels as an (H, W, 3) uint8 array) with what was judged."""

    image: Path | np.ndarray
    truth: Truth
    detections: Detections
    errors: ImageErrors | None = None


def worst_screenshots(
    truths: Sequence[Truth], detections: Sequence[Detections], metrics: DetectionMetrics, n: int = 9
) -> list[WorstScreenshot]:
    """The ``n`` screenshots with the most misses plus false positives (ties: more misses first, then name);
    screenshots without an error are left out."""
    order = sorted(
        (i for i, e in enumerate(metrics.images) if e.errors),
        key=lambda i: (-metrics.images[i].errors, -metrics.images[i].misses, metrics.images[i].image),
    )
    return [WorstScreenshot(truths[i].image, truths[i], detections[i], metrics.images[i]) for i in order[:n]]


def image_errors(
    truth: Truth, detections: Detections, classes: list[str], score_threshold: float = DEFAULT_SCORE_THRESHOLD
) -> ImageErrors:
    """One screenshot's :class:`ImageErrors`, judged exactly as :func:`evaluate_detections` would."""
    return evaluate_detections([truth], [detections], classes, score_threshold=score_threshold).images[0]
