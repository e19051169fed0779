"""Detection data: the labelled screenshots of a workspace as boxes and classes, split by screenshot.

A detector learns from whole screenshots (``raw/screenshots`` and ``raw/processed``, any of labelImg's three
formats). Its classes come from a *scheme*:

- ``suit`` (default): toon and the four suits, 5 classes;
- ``kind``: cog and toon;
- ``label``: every label of ``raw/data/predefined_classes.txt``.

Screenshots of any size are letterboxed (scaled to fit, centred on black, never stretched) to the detector's
input; :class:`Letterbox` maps boxes both ways. Boxes marked ``difficult`` are kept as such: the metric
neither counts them as misses nor a detection on them as a false positive.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toonvision.data.annotations import AnnotationError, read_annotation
from toonvision.data.extraction import find_screenshots
from toonvision.data.images import ImageError, image_size, open_image
from toonvision.data.review import PRE_ANNOTATED, review_state
from toonvision.data.splitting import DEFAULT_RATIOS, check_ratios
from toonvision.data.taxonomy import KINDS, SUITS, LabelError, parse_label, read_label_list

SCHEMES: tuple[str, ...] = ("suit", "kind", "label")
SPLITS: tuple[str, ...] = ("train", "validate", "test")
MIN_SIDE = 32  # px: a smaller "screenshot" holds nothing a detector could find
MAX_PIXELS = 50_000_000  # 8000x8000 and beyond: refused rather than decoded into gigabytes
MIN_BOX = 2.0  # px: a box thinner than this (after clipping to the image) is a slip of the mouse


class DetectionDataError(ValueError):
    """Detection data that cannot be used; the message says what to do."""


def scheme_classes(scheme: str, labels: Sequence[str] | None = None) -> list[str]:
    """The class names of ``scheme``, in the order the detector's outputs use. ``labels`` (the workspace's
    predefined classes) is needed for the ``label`` scheme only."""
    if scheme == "suit":
        return ["toon", *(s.long for s in SUITS)]
    if scheme == "kind":
        return list(KINDS)
    if scheme == "label":
        if not labels:
            raise DetectionDataError("the 'label' classes need raw/data/predefined_classes.txt (run 'toonvision init')")
        return list(dict.fromkeys(labels))
    raise DetectionDataError(f"unknown classes {scheme!r} (choose from {', '.join(SCHEMES)})")


def class_of(label: str, scheme: str, classes: Sequence[str]) -> int | None:
    """The class index of a box labelled ``label`` under ``scheme``; None when it has none."""
    try:
        parsed = parse_label(label, strict=False)
    except LabelError:
        return None
    if scheme == "label":
        key = str(parsed)
    elif scheme == "kind":
        key = parsed.kind
    else:
        key = "toon" if parsed.kind == "toon" else parsed.suit_long
    return classes.index(key) if key in classes else None


@dataclass(frozen=True)
class Truth:
    """The true boxes of one screenshot: (N, 4) float32 ``x1 y1 x2 y2`` in the screenshot's pixels, their class
    indexes and ``difficult`` flags."""

    image: Path
    width: int
    height: int
    boxes: np.ndarray
    classes: np.ndarray
    difficult: np.ndarray

    @property
    def name(self) -> str:
        return self.image.name


@dataclass(frozen=True)
class Detections:
    """What a detector found in one screenshot: (M, 4) float32 ``x1 y1 x2 y2`` in the screenshot's pixels,
    class indexes and scores, highest score first; ``class_scores`` (M, classes) holds every class's score at
    each box's peak, when the detector gave them."""

    boxes: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
    class_scores: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def __iter__(self):  # so that `boxes, classes, scores = detector.detect(shot)` works
        return iter((self.boxes, self.classes, self.scores))

    @classmethod
    def empty(cls, num_classes: int = 0) -> Detections:
        return cls(
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.int64),
            np.zeros(0, np.float32),
            np.zeros((0, num_classes), np.float32),
        )

    def placed(self, boxes: np.ndarray) -> Detections:
        """The same detections with ``boxes`` (moved into another frame: the screenshot's pixels)."""
        return Detections(boxes, self.classes, self.scores, self.class_scores)

    def above(self, threshold: float) -> Detections:
        keep = self.scores >= threshold
        class_scores = self.class_scores[keep] if self.class_scores is not None else None
        return Detections(self.boxes[keep], self.classes[keep], self.scores[keep], class_scores)


@dataclass
class DetectionSet:
    """The usable screenshots of a workspace (or folder) and what was skipped, with why."""

    scheme: str
    classes: list[str]
    truths: list[Truth] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason): the screenshot is not used
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (file, what): used, with this left out
    unreviewed: list[str] = field(default_factory=list)  # pre-annotations nobody has reviewed: not used
    unlabelled: list[str] = field(default_factory=list)  # screenshots without an annotation: nothing to use
    # Boxes left out because their label has no class here, by label: one count per label rather than one
    # warning per box, so that a misspelt label on hundreds of boxes reads as one line.
    unknown_labels: Counter[str] = field(default_factory=Counter)

    def unknown_labels_note(self, shown: int = 5) -> str | None:
        """One sentence counting and naming the boxes left out for their labels (the commonest first); None
        when there are none."""
        if not self.unknown_labels:
            return None
        total = sum(self.unknown_labels.values())
        common = self.unknown_labels.most_common()
        named = ", ".join(f"{label} ({n})" for label, n in common[:shown])
        hidden = len(common) - shown
        more = f" and {hidden} more label{'s' if hidden > 1 else ''}" if hidden > 0 else ""
        boxes, were = ("1 box with a label", "was") if total == 1 else (f"{total} boxes with labels", "were")
        return f"{boxes} this detector does not know ({', '.join(self.classes)}) {were} left out: {named}{more}"

    def why_empty(self, where: str) -> str:
        """Why no screenshot of ``where`` is usable, for a set without truths: no images, none labelled, none
        reviewed, or none readable."""
        if self.skipped:
            image, reason = self.skipped[0]
            return f"none of the {len(self.skipped)} labelled screenshots in {where} can be used ({image}: {reason})"
        if self.unreviewed:
            return (
                f"the {len(self.unreviewed)} labelled screenshots in {where} are unreviewed pre-annotations: "
                "review them in labelImg first"
            )
        if self.unlabelled:
            return (
                f"none of the {len(self.unlabelled)} screenshots in {where} has an annotation (a labelImg file "
                "beside it): there is nothing to measure against"
            )
        return f"there are no screenshots in {where}"

    def box_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(self.classes, 0)
        for t in self.truths:
            for c in t.classes:
                counts[self.classes[int(c)]] += 1
        return counts


@dataclass(frozen=True)
class Letterbox:
    """How a ``width x height`` screenshot sits in a detector input of ``size`` (height, width): scaled by
    ``new_width / width`` and ``new_height / height`` (rounded to whole pixels), offset by ``left``, ``top``.
    The same arithmetic as :func:`toonvision.data.images.fit_image` with ``pad``, so cached pixels match."""

    width: int
    height: int
    new_width: int
    new_height: int
    left: int
    top: int

    @classmethod
    def fit(cls, width: int, height: int, size: tuple[int, int]) -> Letterbox:
        out_h, out_w = size
        scale = min(out_w / width, out_h / height)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        return cls(width, height, new_w, new_h, (out_w - new_w) // 2, (out_h - new_h) // 2)

    @property
    def scale(self) -> tuple[float, float]:
        return self.new_width / self.width, self.new_height / self.height

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        """Screenshot pixels -> input pixels."""
        sx, sy = self.scale
        out = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
        out[:, 0::2] = out[:, 0::2] * sx + self.left
        out[:, 1::2] = out[:, 1::2] * sy + self.top
        return out

    def to_image(self, boxes: np.ndarray) -> np.ndarray:
        """Input pixels -> screenshot pixels, clipped to the screenshot."""
        sx, sy = self.scale
        out = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
        out[:, 0::2] = np.clip((out[:, 0::2] - self.left) / sx, 0, self.width)
        out[:, 1::2] = np.clip((out[:, 1::2] - self.top) / sy, 0, self.height)
        return out


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``a`` (N, 4) with every box of ``b`` (M, 4), ``x1 y1 x2 y2``: an
    (N, M) matrix (0 where a box has no area)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def screenshot_array(item: Any, name: str = "image") -> np.ndarray:
    """A screenshot as a uint8 (height, width, 3) RGB array, from a path, a PIL image or an array (grayscale,
    RGB or RGBA). ImageError names what is wrong: not an image, too small to hold anything, too large."""
    from PIL import Image

    if isinstance(item, (str, Path)):
        name = str(item)
        if Path(item).is_file() and image_size(Path(item)) == (0, 0):
            raise ImageError(f"{item} is not an image that can be read")
        item = open_image(Path(item))
    if isinstance(item, Image.Image):
        item = np.asarray(item.convert("RGB"))
    array = np.asarray(item)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ImageError(f"{name}: expected an image (height, width, 3), got an array of shape {array.shape}")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    array = array[..., :3]
    height, width = array.shape[:2]
    if min(width, height) < MIN_SIDE:
        raise ImageError(f"{name} is {width}x{height}: too small to hold a Toon or Cog (at least {MIN_SIDE} px a side)")
    if width * height > MAX_PIXELS:
        raise ImageError(f"{name} is {width}x{height}: too large (at most {MAX_PIXELS:,} pixels)")
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    return array


def letterbox_image(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """A uint8 RGB screenshot scaled to fit ``size`` (height, width), centred on black, and how it was placed.
    OpenCV's area interpolation when shrinking (what a screenshot usually is): sharp, alias-free, and several
    times faster than Pillow's filters, so a bot pays little for it; training and serving both use it."""
    import cv2

    box = Letterbox.fit(image.shape[1], image.shape[0], size)
    shrink = box.new_width < box.width
    resized = cv2.resize(
        np.ascontiguousarray(image),
        (box.new_width, box.new_height),
        interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR,
    )
    out = np.zeros((*size, 3), np.uint8)
    out[box.top : box.top + box.new_height, box.left : box.left + box.new_width] = resized
    return out, box


def load_letterboxed(
    paths: Sequence[Path], size: tuple[int, int], *, pad: bool = True, threads: int | None = None
) -> np.ndarray:
    """Screenshots as letterboxed uint8 arrays (N, height, width, 3), decoded on several threads."""
    from concurrent.futures import ThreadPoolExecutor

    out = np.empty((len(paths), *size, 3), np.uint8)

    def fill(i: int) -> None:
        out[i] = letterbox_image(screenshot_array(paths[i]), size)[0]

    with ThreadPoolExecutor(max_workers=threads or min(8, (os.cpu_count() or 1) * 2)) as pool:
        list(pool.map(fill, range(len(paths))))
    return out


def read_truth(image: Path, annotation, scheme: str, classes: Sequence[str], out: DetectionSet) -> Truth | None:
    """One screenshot's boxes under ``scheme``; None (recorded in ``out.skipped``) when it cannot be used.
    Boxes are clipped to the image; boxes outside it are left out and named in ``out.warnings``, boxes with a
    label the scheme has no class for are left out and counted in ``out.unknown_labels``."""
    width, height = image_size(image)
    if width == 0:
        out.skipped.append((str(image), "not an image that can be read"))
        return None
    if min(width, height) < MIN_SIDE:
        out.skipped.append((str(image), f"{width}x{height} is too small (at least {MIN_SIDE} px a side)"))
        return None
    if width * height > MAX_PIXELS:
        out.skipped.append((str(image), f"{width}x{height} is too large (at most {MAX_PIXELS:,} pixels)"))
        return None
    try:
        ann = read_annotation(annotation, image.name, (width, height))
    except (AnnotationError, LabelError, OSError, ValueError) as exc:
        out.skipped.append((str(image), f"annotation cannot be read: {exc}"))
        return None
    if ann.width and ann.height and (ann.width, ann.height) != (width, height):
        out.warnings.append(
            (str(image), f"annotation says {ann.width}x{ann.height}, image is {width}x{height}: the image's size used")
        )
    boxes, labels, difficult = [], [], []
    for box in ann.boxes:
        index = class_of(box.name, scheme, classes)
        if index is None:
            out.unknown_labels[box.name] += 1
            continue
        x1, x2 = np.clip([box.xmin, box.xmax], 0, width)
        y1, y2 = np.clip([box.ymin, box.ymax], 0, height)
        if x2 - x1 < MIN_BOX or y2 - y1 < MIN_BOX:
            out.warnings.append((str(image), f"box {box.name!r} lies outside the image: left out"))
            continue
        boxes.append((x1, y1, x2, y2))
        labels.append(index)
        difficult.append(box.difficult)
    if not ann.boxes:
        out.warnings.append((str(image), "annotation has no boxes: used as a screenshot with nothing to find"))
    return Truth(
        image,
        width,
        height,
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(labels, np.int64),
        np.asarray(difficult, bool),
    )


def load_detection_set(
    folders: Sequence[Path],
    scheme: str = "suit",
    classes_file: Path | None = None,
    classes: Sequence[str] | None = None,
    include_unreviewed: bool = False,
) -> DetectionSet:
    """Every annotated screenshot under ``folders`` (recursively) with its boxes under ``scheme``; ``classes``
    (a trained detector's) fixes the class names and their order instead of the scheme's own. Pre-annotations
    nobody has reviewed are no truth to learn from or measure against: listed in ``unreviewed``, not used,
    unless ``include_unreviewed``."""
    labels = None
    if scheme == "label" and classes is None and classes_file is not None and classes_file.is_file():
        labels = [str(label) for label in read_label_list(classes_file)]
    out = DetectionSet(scheme, list(classes) if classes is not None else scheme_classes(scheme, labels))
    for folder in folders:
        if not Path(folder).is_dir():
            continue
        pairs, _orphans = find_screenshots(Path(folder))
        for image, annotation in pairs:
            if annotation is None:
                out.unlabelled.append(str(image))  # nothing to learn from or to measure against
                continue
            if not include_unreviewed and review_state(image, annotation).status == PRE_ANNOTATED:
                out.unreviewed.append(str(image))
                continue
            truth = read_truth(image, annotation, scheme, out.classes, out)
            if truth is not None:
                out.truths.append(truth)
    return out


def split_by_screenshot(
    names: Sequence[str], ratios: Sequence[float] = DEFAULT_RATIOS, seed: int = 0
) -> dict[str, str]:
    """Screenshot name -> train/validate/test, seeded: every box of a screenshot lands in its screenshot's
    split. The order of ``names`` does not matter; the same names and seed give the same split."""
    ratios = check_ratios(ratios)
    ordered = sorted(set(names))
    if len(ordered) < 3:
        raise DetectionDataError(f"{len(ordered)} labelled screenshot(s): a detector needs at least 3 to split")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ordered))
    n = len(ordered)
    n_val = max(1, round(n * ratios[1])) if ratios[1] else 0
    n_test = max(1, round(n * ratios[2])) if ratios[2] else 0
    n_train = n - n_val - n_test
    if n_train < 1:
        raise DetectionDataError(f"{n} screenshots leave none to train on with ratios {ratios}")
    split = {}
    for rank, i in enumerate(order):
        split[ordered[i]] = "train" if rank < n_train else "validate" if rank < n_train + n_val else "test"
    return split
