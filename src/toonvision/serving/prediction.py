"""What ``toonvision predict`` is given: crops, folders of crops, screenshots with boxes (an annotation beside
them, or a JSON list) and screenshots without any, for the detector; each is handed to the one
:class:`~toonvision.serving.pipeline.Pipeline`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toonvision.data.annotations import Box, find_annotation, read_annotation
from toonvision.data.images import ImageError, image_size, is_image
from toonvision.serving.pipeline import Pipeline, Results


def fully_right(prediction: dict[str, Any]) -> bool:
    """Whether a box (as :meth:`BoxResult.to_dict` writes it) names what its annotation names: the whole label;
    a Toon judged without an animal model is right by its kind (as predictions made before the animal task
    were)."""
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
    detect: bool = False  # a screenshot without boxes: the detector finds them
    results: Results | None = None  # what the pipeline saw, once asked


def predict_targets(targets: list[Target], pipeline: Pipeline) -> list[Target]:
    """What the pipeline sees in every target, in place: a screenshot to detect is detected, given boxes are
    labelled, a crop is classified whole."""
    for target in targets:
        if target.detect:
            target.results = pipeline.detect(target.image)
        elif target.boxes is not None:
            target.results = pipeline.predict(target.image, target.boxes)
        else:
            from toonvision.data.images import image_size

            width, height = image_size(target.image)
            boxes = pipeline.classify([target.image])
            target.results = Results(str(target.image), width, height, boxes, dict(pipeline.models), path=target.image)
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
        box = Box(name, *(float(c) for c in coords))
        if box.xmax <= box.xmin or box.ymax <= box.ymin:
            raise ValueError(
                f"{path}: box {i} {coords} is inverted or empty: give [xmin, ymin, xmax, ymax] with xmin < xmax "
                "and ymin < ymax"
            )
        boxes.append(box)
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
