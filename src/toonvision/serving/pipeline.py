"""One object a bot holds: the detector and the classifiers together, and what they see as :class:`Results`.

    from toonvision import Pipeline
    pipe = Pipeline.load("img")                  # the workspace's best models (or models=[...], detector=...)
    results = pipe("shot.png")                   # a path, PIL image or RGB array; a list gives a list
    for box in results.boxes:
        print(box.label, box.confidence, box.xyxy, box.kind, box.suit, box.name, box.animal)
    results.save("shot.predicted.png")           # the boxes drawn
    results.save_annotation("voc")               # labelImg's file beside the screenshot

Every verb that names what is in a box (predict, watch, annotate, the demo, the report) goes through this
object, and every label comes from one rule (:mod:`toonvision.serving.labeling`): no other code classifies
detected boxes.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toonvision.data.annotations import Annotation, Box, createml_entry, voc_bytes, yolo_text
from toonvision.data.detection import Detections, screenshot_array
from toonvision.data.files import create_exclusive, write_bytes_atomic
from toonvision.data.taxonomy import SUIT_BY_SHORT, TASKS, TOON_COLOR
from toonvision.serving.labeling import Evidence, Informed, cog_probability, decide
from toonvision.serving.thresholds import BOX_SCORE, MAX_BOXES

ANNOTATION_FORMATS = ("voc", "yolo", "createml")
ANNOTATION_SUFFIX = {"voc": ".xml", "yolo": ".txt", "createml": ".json"}
# A model that only knows one kind (suit, name: Cogs; animal: Toons) is asked about a box only while that kind
# keeps this much probability: below it, its answer could not change the label, and skipping it is what keeps
# a frame of Cogs from paying for the animal model.
ASK_FROM = 0.01
Pixels = tuple[int, int, int, int]


def pixel_box(xyxy: Sequence[float], width: int, height: int) -> Pixels | None:
    """A box in whole pixels (rounded, as labelImg stores them), clipped to the image; None when nothing of
    it is left. The one way a detected box becomes pixels, for every verb."""
    left, top, right, bottom = (int(v) for v in np.rint(np.asarray(xyxy, np.float64)))
    left, top, right, bottom = max(left, 0), max(top, 0), min(right, width), min(bottom, height)
    return (left, top, right, bottom) if right > left and bottom > top else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


@dataclass
class BoxResult:
    """One Toon or Cog: where it is, its label under the one rule, the parts of the label, what found it."""

    xyxy: Pixels | None  # left, top, right, bottom in pixels; None for a crop classified whole
    label: str | None  # always a label of the taxonomy; None where the models present cannot name it
    confidence: float  # probability of the label (of the deepest part decided, when label is None)
    kind: str
    kind_confidence: float
    suit: str | None = None  # bb, lb, cb or sb
    suit_confidence: float | None = None
    name: str | None = None
    name_confidence: float | None = None
    animal: str | None = None
    animal_confidence: float | None = None
    detector_class: str | None = None  # what the detector called it, and how sure it was that a box is there
    detector_score: float | None = None
    conflict: str | None = None  # why the detector and the classifiers disagree (labeling.py): a bot may skip the box
    true_label: str | None = None  # from the screenshot's annotation, when its boxes came from one
    position_spread: float | None = None  # how far its edges move under test-time augmentation, when asked

    @property
    def score(self) -> float:
        """How sure the whole answer is: the detector's score times the label's probability (ranking by it puts
        doubtful boxes and doubtful labels alike first); the label's probability for a box that was given."""
        return self.confidence * (self.detector_score if self.detector_score is not None else 1.0)

    @property
    def unsure(self) -> bool:
        return self.conflict is not None

    @property
    def shown(self) -> str:
        """The label, or the deepest part of it the models could decide (``cog_sb``, ``cog``, ``toon``)."""
        if self.label is not None:
            return self.label
        return f"cog_{self.suit}" if self.kind == "cog" and self.suit else self.kind

    @property
    def caption(self) -> str:
        """As drawn on a screenshot: ``bb_flunky 0.88``, ``toon cat 0.91``; a trailing ``?`` for a conflict."""
        what = self.shown.removeprefix("cog_") if self.kind == "cog" and self.shown != "cog" else self.shown
        text = f"{what.replace('_', ' ') if self.kind == 'toon' else what} {self.confidence:.2f}"
        return f"{text} ?" if self.conflict else text

    @property
    def color(self) -> str:
        if self.kind == "toon":
            return TOON_COLOR
        return SUIT_BY_SHORT[self.suit].color if self.suit in SUIT_BY_SHORT else "#444444"

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": list(self.xyxy) if self.xyxy is not None else None,
            "label": self.label,
            "confidence": _round(self.confidence),
            "kind": self.kind,
            "kind_confidence": _round(self.kind_confidence),
            "suit": self.suit,
            "suit_confidence": _round(self.suit_confidence),
            "name": self.name,
            "name_confidence": _round(self.name_confidence),
            "animal": self.animal,
            "animal_confidence": _round(self.animal_confidence),
            "detector_class": self.detector_class,
            "detector_score": _round(self.detector_score),
            "conflict": self.conflict,
            "true_label": self.true_label,
            "position_spread": _round(self.position_spread),
        }


@dataclass
class Results:
    """What the pipeline saw in one screenshot (or crop): its boxes, and the model files that saw them."""

    source: str  # the file, or a name the caller gave (a frame number)
    width: int
    height: int
    boxes: list[BoxResult] = field(default_factory=list)
    models: dict[str, str] = field(default_factory=dict)  # task -> model file
    depth: int = 3  # 1 for a grey screenshot, as labelImg records it
    path: Path | None = None  # the screenshot's file, when it came from one
    image: np.ndarray | None = field(default=None, repr=False)  # the pixels, when they came from memory
    # The detector's peaks just below the threshold, (box, score): Toons or Cogs it may have missed. Looked for
    # with the position spread only (None: not looked for).
    near_misses: list[tuple[Pixels, float]] | None = None

    def __len__(self) -> int:
        return len(self.boxes)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "source": self.source,
            "width": self.width,
            "height": self.height,
            "models": self.models,
            "boxes": [b.to_dict() for b in self.boxes],
        }
        if self.near_misses is not None:
            out["near_misses"] = self.near_misses_dicts()
        return out

    def near_misses_dicts(self) -> list[dict[str, Any]]:
        """The near misses as the sidecar and :meth:`to_dict` record them: ``{"box": [...], "detector_score"}``."""
        return [{"box": list(box), "detector_score": _round(score)} for box, score in self.near_misses or []]

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def plot(self) -> Any:
        """A PIL image of the screenshot with each box, its label and confidence (and the detector's class and
        score), in suit and Toon colours."""
        from PIL import Image

        if self.image is not None:
            img = Image.fromarray(self.image).convert("RGB")
        elif self.path is not None:
            img = Image.fromarray(screenshot_array(self.path))
        else:
            raise ValueError("these results keep no image to draw on")
        return draw_boxes(img, self.boxes)

    def save(self, path: str | Path, *, fast: bool = False) -> Path:
        """The drawn screenshot as a PNG, written atomically (``fast``: less compression, for a live mode)."""
        buf = io.BytesIO()
        self.plot().save(buf, format="PNG", compress_level=1 if fast else 6)
        write_bytes_atomic(Path(path), buf.getvalue())
        return Path(path)

    def annotation_boxes(self) -> list[Box]:
        """The boxes as an annotation holds them (label and corners). ValueError for a box the models could not
        name (no full label) or a crop classified whole."""
        unnamed = [b for b in self.boxes if b.label is None or b.xyxy is None]
        if unnamed:
            raise ValueError(
                f"{self.source}: {len(unnamed)} boxes have no full label (a model for it is missing) or no place"
            )
        return [Box(b.label, *map(float, b.xyxy)) for b in self.boxes]  # type: ignore[arg-type, misc]

    def annotation(self, fmt: str = "voc", classes: list[str] | None = None, *, verified: bool = False) -> bytes:
        """The boxes as the file labelImg writes: ``voc`` (Pascal VOC), ``yolo`` (one line a box; ``classes``
        is the class list, extended in place with labels it lacks) or ``createml``. ValueError as
        :meth:`annotation_boxes` says."""
        boxes = self.annotation_boxes()
        name = self.path.name if self.path is not None else f"{self.source}.png"
        ann = Annotation(
            filename=name,
            width=self.width,
            height=self.height,
            depth=self.depth,
            boxes=boxes,
            folder=self.path.parent.name if self.path is not None else "",
            path=str(self.path.resolve()) if self.path is not None else None,
            verified=verified,
        )
        if fmt == "voc":
            return voc_bytes(ann)
        if fmt == "yolo":
            return yolo_text(ann, classes if classes is not None else []).encode()
        if fmt == "createml":
            return json.dumps([createml_entry(ann)]).encode()
        raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(ANNOTATION_FORMATS)})")

    def save_annotation(self, fmt: str = "voc", path: str | Path | None = None) -> Path:
        """Write :meth:`annotation` beside the screenshot (or at ``path``); never over an existing file, which
        may be a person's: FileExistsError then. YOLO files get the folder's classes.txt, extended as needed."""
        if path is None:
            if self.path is None:
                raise ValueError("these results came from memory: give the path to write")
            path = self.path.with_suffix(ANNOTATION_SUFFIX.get(fmt, ".xml"))
        path = Path(path)
        classes = yolo_classes(path.parent, [b.label for b in self.boxes if b.label]) if fmt == "yolo" else None
        if not create_exclusive(path, self.annotation(fmt, classes)):
            raise FileExistsError(f"{path} exists: left as it is")
        return path


def yolo_classes(folder: Path, labels: Sequence[str]) -> list[str]:
    """The class list of ``folder``'s classes.txt, with ``labels`` it lacks appended (existing lines keep their
    order, so every YOLO file already there keeps its meaning); written only when it changes."""
    path = Path(folder) / "classes.txt"
    classes = [line.strip() for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    missing = [label for label in dict.fromkeys(labels) if label not in classes]
    if missing or not path.is_file():
        classes += missing
        write_bytes_atomic(path, "".join(f"{c}\n" for c in classes).encode())
    return classes


def draw_boxes(img: Any, boxes: Sequence[BoxResult]) -> Any:
    """Each box drawn on ``img`` (a PIL image, changed in place and returned) with its caption; a box found by
    the detector also shows the detector's class and score."""
    from PIL import ImageDraw, ImageFont

    draw = ImageDraw.Draw(img)
    size = max(14, img.height // 45)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size only
        font = ImageFont.load_default()
    for b in boxes:
        box = b.xyxy or (0, 0, img.width, img.height)
        draw.rectangle(box, outline=b.color, width=max(2, img.height // 300))
        text = b.caption
        if b.detector_class is not None:
            text = f"{b.detector_class} {b.detector_score:.2f} | {text}"
        tb = draw.textbbox((box[0], box[1]), text, font=font)
        y = box[1] - (tb[3] - tb[1]) - 6 if box[1] > (tb[3] - tb[1]) + 6 else box[1]
        draw.rectangle((box[0], y, box[0] + tb[2] - tb[0] + 8, y + tb[3] - tb[1] + 6), fill=b.color)
        draw.text((box[0] + 4, y + 1), text, fill="white" if b.kind == "cog" else "black", font=font)
    return img


GREY_MODES = ("1", "L", "I", "I;16", "F")  # Pillow's one-channel modes


def _depth(item: Any) -> int:
    """1 for a grey image, 3 otherwise: what labelImg writes in <depth>."""
    from PIL import Image

    if isinstance(item, (str, Path)):
        try:
            with Image.open(item) as img:
                return 1 if img.mode in GREY_MODES else 3
        except OSError:
            return 3
    if isinstance(item, Image.Image):
        return 1 if item.mode in GREY_MODES else 3
    array = np.asarray(item)
    return 1 if array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 1) else 3


class Pipeline:
    """A detector and classifiers (binary, suit, name, animal; any may be absent) behind one call.

    ``pipe(image)`` finds every Toon and Cog with the detector and labels each box; ``pipe.predict(image,
    boxes)`` labels the boxes given; ``pipe.classify(crops)`` labels crops whole. ``models`` names the file
    each model came from; every :class:`Results` carries it."""

    def __init__(
        self,
        classifiers: Mapping[str, Any] | None = None,
        detector: Any | None = None,
        *,
        models: Mapping[str, str] | None = None,
    ) -> None:
        self.classifiers = dict(classifiers or {})
        unknown = [task for task in self.classifiers if task not in TASKS]
        if unknown:
            raise ValueError(f"unknown task {unknown[0]!r} (choose from {', '.join(TASKS)})")
        self.detector = detector
        self.models = dict(models or {})
        self.informed = Informed.of(list(self.classifiers), detector.classes if detector is not None else ())

    @classmethod
    def load(
        cls,
        root: str | Path = "img",
        *,
        models: Sequence[str | Path] = (),
        detector: str | Path | None = None,
        conf: float = BOX_SCORE,
        threads: int | None = None,
        with_detector: bool = True,
        shipped: bool = True,
        max_det: int = MAX_BOXES,
    ) -> Pipeline:
        """The models of the workspace at ``root``: for each task the best classifier (highest test accuracy)
        and the newest detector, their ONNX exports where there are some; ``models`` (run folders, .keras or
        .onnx files, a detector among them if wished) and ``detector`` replace those of their task, and the
        workspace fills in the other tasks, and the models ToonVision ships fill in what the workspace lacks (unless
        ``shipped=False``); ``with_detector=False`` loads classifiers only; the detector keeps at most ``max_det``
        boxes a screenshot, the highest scores. ModelError (a ValueError) or
        FileNotFoundError says what is wrong."""
        from toonvision.serving.loading import load_models

        found, classifiers, used = load_models(
            Path(root), list(models), detector, conf, threads, with_detector, shipped, max_det
        )
        return cls(classifiers, found, models=used)

    @property
    def names_everything(self) -> bool:
        """Whether every box gets a full label (the models can tell every Cog name and every Toon animal)."""
        return self.informed.names_everything and ("binary" in self.classifiers or self.detector is not None)

    def missing_for_full_labels(self) -> list[str]:
        """The classifier tasks to add so that every box gets a full label."""
        missing = [] if "binary" in self.classifiers or self.detector is not None else ["binary"]
        missing += [] if self.informed.cog_name else ["name"]
        missing += [] if self.informed.toon_animal else ["animal"]
        return missing

    def __call__(self, images: Any, *, conf: float | None = None) -> Results | list[Results]:
        """Find and label every Toon and Cog of one screenshot (a path, PIL image or RGB array) or of a list of
        them (a list of Results). ValueError without a detector; ImageError for an image that cannot be read."""
        if isinstance(images, (list, tuple)):
            return [self.detect(image, conf=conf) for image in images]
        return self.detect(images, conf=conf)

    def detect(
        self, image: Any, *, conf: float | None = None, source: str | None = None, position_spread: bool = False
    ) -> Results:
        """:meth:`__call__` for one screenshot. ``position_spread``: also measure how unsure the detector is of
        each box's edges, place each box by the mean of two looks (plain and mirrored), and list its near misses
        (:mod:`toonvision.serving.position`; two more detector passes, so only annotate asks)."""
        array = screenshot_array(image)  # find() refuses a pipeline without a detector
        found, near = self.find(array, conf=conf, near_misses=position_spread)
        if not position_spread:
            return self.label_found(image, found, array=array, source=source)
        from toonvision.serving.position import look_again

        threshold = self.detector.threshold if conf is None else conf
        spreads, found = look_again(self.detector, array, found, threshold)
        results = self._results(image, array, found.boxes, found=found, source=source, spreads=spreads)
        results.near_misses = near
        return results

    def find(
        self, array: np.ndarray, *, conf: float | None = None, near_misses: bool = False
    ) -> tuple[Detections, list[tuple[Pixels, float]] | None]:
        """The detector's boxes of a screenshot array (RGB) from ``conf`` (default: the detector's threshold), and
        with ``near_misses`` the peaks just below it that overlap none of them (a Toon or Cog it almost saw, in
        whole pixels; :mod:`toonvision.serving.position`), else None. One pass either way."""
        if self.detector is None:
            raise ValueError("this pipeline has no detector: give one, or the boxes (predict)")
        if not near_misses:
            return self.detector.detect(array, conf), None
        from toonvision.serving.position import NEAR_MISS
        from toonvision.serving.position import near_misses as near_of

        # One pass down to the near misses: the boxes above the threshold are the ones a pass at it gives.
        threshold = self.detector.threshold if conf is None else conf
        low = self.detector.detect(array, threshold * NEAR_MISS)
        height, width = array.shape[:2]
        near = [(pixels, score) for box, score in near_of(low, threshold) if (pixels := pixel_box(box, width, height))]
        return low.above(threshold), near

    def label_found(
        self, image: Any, found: Detections, *, array: np.ndarray | None = None, source: str | None = None
    ) -> Results:
        """Label what the detector found in ``image`` (the second half of :meth:`detect`, for a caller that times
        the two halves apart, as the live mode does)."""
        array = screenshot_array(image) if array is None else array
        return self._results(image, array, found.boxes, found=found, source=source)

    def predict(self, image: Any, boxes: Sequence[Box], *, source: str | None = None) -> Results:
        """Label the given boxes of a screenshot (as an annotation gives them: a box's name is its true label)."""
        array = screenshot_array(image)
        corners = [b.pixel_box() for b in boxes]
        return self._results(image, array, corners, truths=[b.name or None for b in boxes], source=source)

    def classify(self, crops: Sequence[Any]) -> list[BoxResult]:
        """Label crops whole (each a path, PIL image or array): no detector, no box."""
        return self._label(list(crops), [None] * len(crops), None)

    def _results(
        self,
        image: Any,
        array: np.ndarray,
        corners: Any,
        *,
        found: Detections | None = None,
        truths: Sequence[str | None] | None = None,
        source: str | None = None,
        spreads: np.ndarray | None = None,
    ) -> Results:
        height, width = array.shape[:2]
        path = Path(image) if isinstance(image, (str, Path)) else None
        results = Results(
            source if source is not None else (str(path) if path is not None else "image"),
            width,
            height,
            models=dict(self.models),
            depth=_depth(image),
            path=path,
            image=None if path is not None else array,
        )
        kept, pixels = [], []
        for i, corner in enumerate(corners):
            box = pixel_box(corner, width, height)
            if box is not None:
                kept.append(i)
                pixels.append(box)
        if not kept:
            return results
        crops = [array[top:bottom, left:right] for left, top, right, bottom in pixels]
        detected = None
        if found is not None:
            names = self.detector.classes
            scores = found.class_scores
            detected = [
                (
                    names[int(found.classes[i])],
                    float(found.scores[i]),
                    dict(zip(names, map(float, scores[i]), strict=True)) if scores is not None else None,
                )
                for i in kept
            ]
        results.boxes = self._label(crops, pixels, detected)
        for box, i in zip(results.boxes, kept, strict=True):
            box.true_label = truths[i] if truths is not None else None
            box.position_spread = float(spreads[i]) if spreads is not None else None
        return results

    def _label(
        self,
        crops: list[Any],
        pixels: Sequence[Pixels | None],
        detected: Sequence[tuple[str, float, dict[str, float] | None]] | None,
    ) -> list[BoxResult]:
        """The one rule over every crop: each classifier asked only where its answer can matter."""
        n = len(crops)
        if n == 0:
            return []
        said: dict[str, list[np.ndarray | None]] = {task: [None] * n for task in TASKS}
        if "binary" in self.classifiers:
            said["binary"] = list(self._probabilities("binary", crops))
        det_scores = [d[2] if d[2] is not None else {d[0]: d[1]} for d in detected] if detected else [None] * n
        cog = np.array(
            [cog_probability(Evidence(kind=said["binary"][i], detector=det_scores[i])) for i in range(n)], np.float64
        )
        for task, which in (("suit", cog >= ASK_FROM), ("name", cog >= ASK_FROM), ("animal", 1 - cog >= ASK_FROM)):
            index = np.flatnonzero(which)
            if task in self.classifiers and len(index):
                for i, p in zip(index, self._probabilities(task, [crops[i] for i in index]), strict=True):
                    said[task][i] = p
        out = []
        for i in range(n):
            evidence = Evidence(
                kind=said["binary"][i],
                suit=said["suit"][i],
                name=said["name"][i],
                animal=said["animal"][i],
                detector=det_scores[i],
                detector_class=detected[i][0] if detected else None,
            )
            d = decide(evidence, self.informed)
            out.append(
                BoxResult(
                    pixels[i],
                    d.label,
                    d.confidence,
                    d.kind,
                    d.kind_confidence,
                    d.suit,
                    d.suit_confidence,
                    d.name,
                    d.name_confidence,
                    d.animal,
                    d.animal_confidence,
                    detected[i][0] if detected else None,
                    detected[i][1] if detected else None,
                    d.conflict,
                )
            )
        return out

    def _probabilities(self, task: str, crops: list[Any]) -> np.ndarray:
        """A task's probabilities in the taxonomy's class order (a model may list its classes in another)."""
        from toonvision.data.taxonomy import task_classes

        clf = self.classifiers[task]
        probs = np.asarray(clf.probabilities(crops), np.float64)
        order = task_classes(task)
        if list(clf.classes) == order:
            return probs
        index = [list(clf.classes).index(c) for c in order]
        return probs[:, index]
