"""labelImg's three annotation formats: Pascal VOC XML (the spec's), YOLO txt + ``classes.txt``, CreateML JSON.

Readers accept what real labelImg files carry: foreign absolute ``<path>``s, ``<filename>``s whose extension
differs from the image beside them, float coordinates, UTF-8 names. Every XML read goes through defusedxml,
so entity-expansion bombs and external entities are refused. The VOC writer reproduces labelImg's bytes
(element order, tab indentation, ``truncated`` rule) so files round-trip through labelImg unchanged.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from xml.etree.ElementTree import Element, ParseError, SubElement, tostring

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException


class AnnotationError(ValueError):
    """An annotation file that cannot be read; the message names the file."""


@dataclass(frozen=True)
class Box:
    """One labelled box in pixel coordinates (labelImg's: left/top inclusive, right/bottom exclusive)."""

    name: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    truncated: bool = False
    difficult: bool = False
    pose: str = "Unspecified"

    @property
    def width(self) -> float:
        return self.xmax - self.xmin

    @property
    def height(self) -> float:
        return self.ymax - self.ymin

    def pixel_box(self) -> tuple[int, int, int, int]:
        """Integer (left, top, right, bottom). Fractions are truncated as labelImg's own reader does, except
        that values within 1/1000 px of a whole number are snapped to it: YOLO's six decimals and float
        arithmetic turn 10 into 9.99999, which is not meant to lose a pixel row."""
        return (_pixel(self.xmin), _pixel(self.ymin), _pixel(self.xmax), _pixel(self.ymax))


def _pixel(value: float) -> int:
    nearest = round(value)
    return int(nearest) if abs(value - nearest) < 1e-3 else math.floor(value)


@dataclass
class Annotation:
    """Everything one annotation file says about one image."""

    filename: str
    width: int = 0  # 0 when the file does not say (YOLO, CreateML, or a VOC file labelImg wrote size-less)
    height: int = 0
    depth: int = 3
    boxes: list[Box] = field(default_factory=list)
    folder: str = ""
    path: str | None = None
    verified: bool = False
    source: Path | None = None  # the annotation file this was read from


# --- Pascal VOC ---


def _text(elem: Element | None, tag: str, default: str | None = None, *, where: Path) -> str:
    child = elem.find(tag) if elem is not None else None
    if child is None or child.text is None:
        if default is not None:
            return default
        raise AnnotationError(f"{where}: missing <{tag}>")
    return child.text.strip()


def _number(text: str, tag: str, where: Path) -> float:
    try:
        value = float(text)
    except ValueError:
        raise AnnotationError(f"{where}: <{tag}> is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise AnnotationError(f"{where}: <{tag}> is not finite: {text!r}")
    return value


def read_voc(path: Path) -> Annotation:
    """Read a Pascal VOC XML file written by labelImg (or anything close to it)."""
    path = Path(path)
    try:
        root = SafeET.parse(str(path)).getroot()
    except DefusedXmlException as exc:
        raise AnnotationError(f"{path}: refused unsafe XML ({type(exc).__name__}: entities or DTDs)") from None
    except ParseError as exc:
        raise AnnotationError(f"{path}: malformed XML: {exc}") from None
    except OSError as exc:
        raise AnnotationError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if root.tag != "annotation":
        raise AnnotationError(f"{path}: not a Pascal VOC file (root element <{root.tag}>, expected <annotation>)")
    size = root.find("size")
    width = int(_number(_text(size, "width", "0", where=path), "width", path))
    height = int(_number(_text(size, "height", "0", where=path), "height", path))
    depth = int(_number(_text(size, "depth", "3", where=path) or "3", "depth", path))
    boxes = []
    for i, obj in enumerate(root.findall("object")):
        name = _text(obj, "name", where=path)
        bnd = obj.find("bndbox")
        if bnd is None:
            raise AnnotationError(f"{path}: object {i} ({name}) has no <bndbox>")
        coords = [_number(_text(bnd, t, where=path), t, path) for t in ("xmin", "ymin", "xmax", "ymax")]
        boxes.append(
            Box(
                name,
                *coords,
                truncated=_text(obj, "truncated", "0", where=path) not in ("0", ""),
                difficult=_text(obj, "difficult", "0", where=path) not in ("0", ""),
                pose=_text(obj, "pose", "Unspecified", where=path),
            )
        )
    return Annotation(
        filename=_text(root, "filename", path.stem, where=path),
        width=width,
        height=height,
        depth=depth,
        boxes=boxes,
        folder=_text(root, "folder", "", where=path),
        path=_text(root, "path", "", where=path) or None,
        verified=root.get("verified") == "yes",
        source=path,
    )


def _fmt_coord(value: float) -> str:
    # labelImg writes whatever number its canvas holds; integers are written without a decimal point.
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def voc_bytes(ann: Annotation) -> bytes:
    """The bytes labelImg would write for ``ann``."""
    top = Element("annotation")
    if ann.verified:
        top.set("verified", "yes")
    SubElement(top, "folder").text = ann.folder
    SubElement(top, "filename").text = ann.filename
    if ann.path is not None:
        SubElement(top, "path").text = ann.path
    SubElement(SubElement(top, "source"), "database").text = "Unknown"
    size = SubElement(top, "size")
    SubElement(size, "width").text = str(ann.width)
    SubElement(size, "height").text = str(ann.height)
    SubElement(size, "depth").text = str(ann.depth)
    SubElement(top, "segmented").text = "0"
    for box in ann.boxes:
        obj = SubElement(top, "object")
        SubElement(obj, "name").text = box.name
        SubElement(obj, "pose").text = box.pose
        SubElement(obj, "truncated").text = "1" if box.truncated else "0"
        SubElement(obj, "difficult").text = "1" if box.difficult else "0"
        bnd = SubElement(obj, "bndbox")
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            SubElement(bnd, tag).text = _fmt_coord(getattr(box, tag))
    return _pretty(top)


def _pretty(elem: Element, depth: int = 0) -> bytes:
    # labelImg pretty-prints with lxml (two spaces a level) and then turns every two spaces into a tab.
    # Reproduced here without lxml; a text holding two spaces gets the same tab labelImg would give it.
    pad = b"\t" * depth
    tag = elem.tag.encode()
    attrs = b"".join(b' %s="%s"' % (k.encode(), v.encode()) for k, v in elem.attrib.items())
    children = list(elem)
    if not children:
        body = tostring(elem, encoding="utf-8", xml_declaration=False) if elem.text else b"<%s%s/>" % (tag, attrs)
        return pad + body.replace(b"  ", b"\t") + b"\n"
    out = pad + b"<%s%s>\n" % (tag, attrs)
    out += b"".join(_pretty(child, depth + 1) for child in children)
    return out + pad + b"</%s>\n" % tag


def labelimg_truncated(box: Box, width: int, height: int) -> bool:
    """labelImg's own rule: a box touching the right or bottom edge, or starting at pixel 1, is truncated."""
    return int(box.ymax) == int(height) or int(box.ymin) == 1 or int(box.xmax) == int(width) or int(box.xmin) == 1


# --- YOLO ---


def read_yolo(path: Path, image_size: tuple[int, int], classes: list[str] | None = None) -> Annotation:
    """Read a YOLO txt file; ``image_size`` is (width, height); ``classes`` default to ``classes.txt`` beside it."""
    path = Path(path)
    width, height = image_size
    if classes is None:
        classes_file = path.parent / "classes.txt"
        if not classes_file.exists():
            raise AnnotationError(f"{path}: YOLO annotation without a classes.txt beside it")
        classes = [c for c in classes_file.read_text(encoding="utf-8").strip("\n").split("\n")]
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"{path}: cannot read: {exc}") from None
    boxes = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 5:
            raise AnnotationError(f"{path}:{lineno}: expected 'class x_center y_center width height'")
        try:
            index = int(parts[0])
            xc, yc, w, h = (float(p) for p in parts[1:])
        except ValueError:
            raise AnnotationError(f"{path}:{lineno}: not numbers: {line.strip()!r}") from None
        if not 0 <= index < len(classes):
            raise AnnotationError(f"{path}:{lineno}: class index {index} not in classes.txt ({len(classes)} classes)")
        boxes.append(
            Box(
                classes[index], (xc - w / 2) * width, (yc - h / 2) * height, (xc + w / 2) * width, (yc + h / 2) * height
            )
        )
    return Annotation(filename=path.stem, width=width, height=height, boxes=boxes, source=path)


def yolo_text(ann: Annotation, classes: list[str]) -> str:
    """labelImg's YOLO lines; labels missing from ``classes`` are appended to it (as labelImg does)."""
    lines = []
    for box in ann.boxes:
        if box.name not in classes:
            classes.append(box.name)
        xc = (box.xmin + box.xmax) / 2 / ann.width
        yc = (box.ymin + box.ymax) / 2 / ann.height
        lines.append(
            f"{classes.index(box.name)} {xc:.6f} {yc:.6f} {box.width / ann.width:.6f} {box.height / ann.height:.6f}\n"
        )
    return "".join(lines)


# --- CreateML ---


def read_createml(path: Path, image_name: str | None = None) -> Annotation:
    """Read the entry for ``image_name`` (default: the only or first entry) from a CreateML JSON list."""
    path = Path(path)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AnnotationError(f"{path}: not CreateML JSON: {exc}") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "image" in e for e in entries):
        raise AnnotationError(f"{path}: not CreateML JSON (expected a list of {{'image', 'annotations'}})")
    entry = None
    if image_name is not None:
        stem = Path(image_name).stem
        entry = next((e for e in entries if e["image"] == image_name), None) or next(
            (e for e in entries if Path(str(e["image"])).stem == stem), None
        )
    elif entries:
        entry = entries[0]
    if entry is None:
        raise AnnotationError(f"{path}: no entry for image {image_name!r}")
    boxes = []
    for i, shape in enumerate(entry.get("annotations", [])):
        try:
            c = shape["coordinates"]
            x, y, w, h = (float(c[k]) for k in ("x", "y", "width", "height"))
            boxes.append(Box(str(shape["label"]), x - w / 2, y - h / 2, x + w / 2, y + h / 2))
        except (KeyError, TypeError, ValueError):
            raise AnnotationError(f"{path}: annotation {i} of {entry['image']!r} is malformed") from None
    return Annotation(filename=str(entry["image"]), boxes=boxes, verified=bool(entry.get("verified")), source=path)


def createml_entry(ann: Annotation) -> dict:
    return {
        "image": ann.filename,
        "verified": ann.verified,
        "annotations": [
            {
                "label": b.name,
                "coordinates": {
                    "x": b.xmin + b.width / 2,
                    "y": b.ymin + b.height / 2,
                    "width": b.width,
                    "height": b.height,
                },
            }
            for b in ann.boxes
        ],
    }


# --- pairing images with their annotations ---


@dataclass(frozen=True)
class AnnotationFile:
    path: Path
    format: str  # "voc", "yolo" or "createml"


@dataclass(frozen=True)
class Siblings:
    """A folder's files by stem, so that each screenshot's annotation is found without scanning the folder
    (a scan per screenshot made extracting 6000 screenshots spend 90% of its time there)."""

    names: frozenset[str]
    by_stem: dict[str, dict[str, Path]]  # stem -> lower-case suffix -> the first such file

    @classmethod
    def of(cls, folder: Path) -> Siblings:
        """The files of ``folder``; OSError when it cannot be listed."""
        by_stem: dict[str, dict[str, Path]] = {}
        names = []
        for p in folder.iterdir():
            names.append(p.name)
            stem, dot, suffix = p.name.rpartition(".")
            if dot:
                by_stem.setdefault(stem, {}).setdefault("." + suffix.lower(), p)
        return cls(frozenset(names), by_stem)


def find_annotation(image: Path) -> AnnotationFile | None:
    """The annotation beside ``image``, matched by stem whatever the case of either extension.

    Pascal VOC wins over CreateML over YOLO when several exist. A ``.txt`` counts as YOLO only with a
    ``classes.txt`` beside it, so notes that happen to share a screenshot's name are not mistaken for labels.
    """
    image = Path(image)
    try:
        siblings = Siblings.of(image.parent)
    except OSError:
        return None
    return pick_annotation(image, siblings)


def pick_annotation(image: Path, siblings: Siblings) -> AnnotationFile | None:
    """What :func:`find_annotation` finds, from a listing of the folder made once for all its screenshots."""
    by_suffix = {suffix: p for suffix, p in siblings.by_stem.get(image.stem, {}).items() if p.name != image.name}
    if ".xml" in by_suffix:
        return AnnotationFile(by_suffix[".xml"], "voc")
    if ".json" in by_suffix:
        return AnnotationFile(by_suffix[".json"], "createml")
    if ".txt" in by_suffix and image.stem != "classes" and "classes.txt" in siblings.names:
        return AnnotationFile(by_suffix[".txt"], "yolo")
    return None


def read_annotation(file: AnnotationFile, image_name: str, image_size: tuple[int, int]) -> Annotation:
    """Read any supported format; ``image_size`` (width, height) is needed by YOLO's relative coordinates."""
    if file.format == "voc":
        return read_voc(file.path)
    if file.format == "yolo":
        ann = read_yolo(file.path, image_size)
        return replace(ann, filename=image_name)
    if file.format == "createml":
        return read_createml(file.path, image_name)
    raise AnnotationError(f"{file.path}: unknown annotation format {file.format!r}")
