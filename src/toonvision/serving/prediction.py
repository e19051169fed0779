"""Predictions on what is on screen: crops, folders of crops, or screenshots with boxes.

Each box gets a binary prediction (cog or toon) and, when a Cog, a suit and a name prediction, when a Toon, an
animal prediction, from the best models of the workspace (or the models given).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toonvision.data.annotations import Box, find_annotation, read_annotation
from toonvision.data.files import write_bytes_atomic
from toonvision.data.images import ImageError, image_size, is_image, open_image
from toonvision.data.taxonomy import SUIT_BY_SHORT, TOON_COLOR
from toonvision.serving.inference import Classifier


@dataclass
class BoxPrediction:
    source: str
    box: tuple[int, int, int, int] | None  # None for a crop file
    kind: str
    kind_confidence: float
    suit: str | None = None
    suit_confidence: float | None = None
    name: str | None = None
    name_confidence: float | None = None
    animal: str | None = None
    animal_confidence: float | None = None
    true_label: str | None = None  # from the annotation, when there is one
    detector_class: str | None = None  # when the detector found the box: its class and score
    detector_score: float | None = None

    @property
    def label(self) -> str:
        if self.kind == "toon":
            return f"toon_{self.animal}" if self.animal else "toon"
        parts = ["cog", self.suit or "?", self.name or "?"] if self.suit or self.name else ["cog"]
        return "_".join(parts)

    @property
    def confidence(self) -> float:
        """The confidence of the most specific part of the label: the name or animal when there is one."""
        if self.kind == "cog" and self.name:
            return float(self.name_confidence or 0.0)
        if self.kind == "toon" and self.animal:
            return float(self.animal_confidence or 0.0)
        return self.kind_confidence

    @property
    def caption(self) -> str:
        """The label as drawn on a screenshot, e.g. ``bb_flunky 0.88`` or ``toon cat 0.91``."""
        what = self.label.replace("cog_", "") if self.kind == "cog" else self.label.replace("_", " ")
        return f"{what} {self.confidence:.2f}"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()} | {"label": self.label}


def fully_right(prediction: dict[str, Any]) -> bool:
    """Whether a prediction (as :meth:`BoxPrediction.to_dict` writes it) names what its annotation names:
    the kind, the suit and name for Cogs, and the animal for Toons when an animal model gave one (without it
    a Toon is right by its kind, as predictions made before the animal task were)."""
    truth = prediction.get("true_label")
    if not truth:
        return False
    if truth.startswith("toon") and not prediction.get("animal"):
        return prediction.get("kind") == "toon"
    return prediction.get("label") == truth


@dataclass
class Target:
    """One image to predict on, with the boxes to crop from it (None: the whole image is a crop)."""

    image: Path
    boxes: list[Box] | None = None
    predictions: list[BoxPrediction] = field(default_factory=list)
    detect: bool = False  # a screenshot without boxes: the detector finds them
    scores: list[float] | None = None  # the detector's score of each box, when it found them


def detect_targets(targets: list[Target], detector: Any) -> list[Target]:
    """Give every screenshot that needs it the boxes ``detector`` (a :class:`toonvision.Detector`) finds, in
    place; a box's name is the detector's class, its score kept beside it."""
    for target in targets:
        if not target.detect:
            continue
        boxes, classes, scores = detector.detect(target.image)
        target.boxes = [Box(name, *map(float, b)) for b, name in zip(boxes, detector.names(classes), strict=True)]
        target.scores = [float(v) for v in scores]
    return targets


def read_boxes_json(path: Path) -> list[Box]:
    """Boxes as a JSON list of [xmin, ymin, xmax, ymax] or {"xmin":..., "ymin":..., "xmax":..., "ymax":...}."""
    data = json.loads(Path(path).read_text())
    boxes = []
    for i, item in enumerate(data):
        if isinstance(item, dict):
            coords = [item[k] for k in ("xmin", "ymin", "xmax", "ymax")]
            name = str(item.get("name", item.get("label", "")))
        elif isinstance(item, (list, tuple)) and len(item) == 4:
            coords, name = list(item), ""
        else:
            raise ValueError(f"{path}: box {i} is not [xmin, ymin, xmax, ymax] or an object with those keys")
        boxes.append(Box(name, *(float(c) for c in coords)))
    return boxes


# A whole screenshot rather than the crop of one Toon or Cog: wider than tall and at least this wide. Crops of
# standing Toons and Cogs are taller than wide, and no game window is narrower.
SCREENSHOT_MIN_WIDTH = 480


def collect_targets(inputs: list[Path], boxes_json: Path | None = None, *, whole: bool = False) -> list[Target]:
    """Crops, folders of crops, and screenshots with an annotation beside them (any labelImg format) or boxes
    from ``boxes_json``. An image that looks like a whole screenshot and has no boxes is marked ``detect`` (a
    detector must find its boxes: classifying a whole street as one crop means nothing) unless ``whole``.
    ValueError (ImageError for a file that is not an image) names the file."""
    targets = []
    for path in inputs:
        if path.is_dir():
            targets += [_crop(p, whole) for p in sorted(path.rglob("*")) if p.is_file() and is_image(p)]
        elif not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        elif not is_image(path):
            raise ValueError(f"{path} is not an image (png, jpg, jpeg or bmp)")
        elif boxes_json is not None:
            targets.append(Target(path, read_boxes_json(boxes_json)))
        elif (ann := find_annotation(path)) is not None:
            targets.append(Target(path, read_annotation(ann, path.name, _size(path)).boxes))
        else:
            targets.append(_crop(path, whole))
    return targets


def _size(path: Path) -> tuple[int, int]:
    size = image_size(path)
    if size == (0, 0):
        raise ImageError(f"{path} is not an image that can be read")
    return size


def _crop(path: Path, whole: bool) -> Target:
    width, height = _size(path)
    if not whole and width > height and width >= SCREENSHOT_MIN_WIDTH:
        return Target(path, detect=True)
    return Target(path)


def predict_targets(targets: list[Target], models: dict[str, Classifier]) -> list[Target]:
    """Classify every box of every target (the whole image when it has no boxes), in place."""
    if "binary" not in models:
        raise ValueError("no binary (cog vs toon) model: train one or give --model")
    for target in targets:
        img = open_image(target.image)
        if target.boxes is None:
            crops, boxes, truths = [img], [None], [None]
        else:
            crops, boxes, truths, kept = [], [], [], []
            for index, b in enumerate(target.boxes):
                left, top, right, bottom = b.pixel_box()
                left, top = max(left, 0), max(top, 0)
                right, bottom = min(right, img.width), min(bottom, img.height)
                if right <= left or bottom <= top:
                    continue
                crops.append(img.crop((left, top, right, bottom)))
                boxes.append((left, top, right, bottom))
                truths.append(b.name or None)
                kept.append(index)
        if not crops:
            continue
        kinds = models["binary"].predict(crops)
        extra = {t: models[t].predict(crops) for t in ("suit", "name", "animal") if t in models}
        for i, (crop_box, kind) in enumerate(zip(boxes, kinds, strict=True)):
            p = BoxPrediction(str(target.image), crop_box, kind.label, kind.confidence, true_label=truths[i])
            if target.scores is not None:  # found by the detector: its class is not a truth
                p.true_label, p.detector_class, p.detector_score = None, truths[i], target.scores[kept[i]]
            if kind.label == "cog":
                if "suit" in extra:
                    p.suit, p.suit_confidence = extra["suit"][i].label, extra["suit"][i].confidence
                if "name" in extra:
                    p.name, p.name_confidence = extra["name"][i].label, extra["name"][i].confidence
            elif "animal" in extra:
                p.animal, p.animal_confidence = extra["animal"][i].label, extra["animal"][i].confidence
            target.predictions.append(p)
    return targets


def prediction_color(p: BoxPrediction) -> str:
    if p.kind == "toon":
        return TOON_COLOR
    return SUIT_BY_SHORT[p.suit].color if p.suit in SUIT_BY_SHORT else "#444444"


def annotate(target: Target, path: Path) -> Path:
    """A copy of the screenshot with each box, its predicted label and confidence, in suit/Toon colours."""
    img = draw_predictions(open_image(target.image), target.predictions)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    write_bytes_atomic(path, buf.getvalue())
    return path


def annotate_frame(image: Any, predictions: list[BoxPrediction], path: Path) -> Path:
    """:func:`annotate` for a frame in memory (an RGB array, as the live mode has): written atomically, so a
    viewer polling the folder never opens half a PNG."""
    from PIL import Image

    img = draw_predictions(Image.fromarray(image).convert("RGB"), predictions)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)  # a live mode cannot wait on zlib's best
    write_bytes_atomic(path, buf.getvalue())
    return path


def draw_predictions(img: Any, predictions: list[BoxPrediction]) -> Any:
    """Each box drawn on ``img`` (a PIL image, changed in place and returned), its label and confidence."""
    from PIL import ImageDraw, ImageFont

    draw = ImageDraw.Draw(img)
    size = max(14, img.height // 45)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size only
        font = ImageFont.load_default()
    for p in predictions:
        box = p.box or (0, 0, img.width, img.height)
        color = prediction_color(p)
        draw.rectangle(box, outline=color, width=max(2, img.height // 300))
        text = p.caption
        if p.detector_class is not None:
            text = f"{p.detector_class} {p.detector_score:.2f} | {text}"
        tb = draw.textbbox((box[0], box[1]), text, font=font)
        y = box[1] - (tb[3] - tb[1]) - 6 if box[1] > (tb[3] - tb[1]) + 6 else box[1]
        draw.rectangle((box[0], y, box[0] + tb[2] - tb[0] + 8, y + tb[3] - tb[1] + 6), fill=color)
        draw.text((box[0] + 4, y + 1), text, fill="white" if p.kind == "cog" else "black", font=font)
    return img
