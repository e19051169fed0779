"""Pre-annotation: the detector finds every Toon and Cog of a screenshot, the classifiers give each a full label,
and the result is written as the labelImg file a person opens to correct, with the models' confidence per box in
a sidecar labelImg never reads (see :mod:`toonvision.data.review` for how a reviewed file is told from one).

Nothing a person wrote is ever replaced: a new annotation file is created only where no file of its name exists
(also against a concurrent writer), and a pre-annotation is refreshed only while its bytes are still exactly the
ones written here.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toonvision.data.annotations import Annotation, Box, createml_entry, voc_bytes, yolo_text
from toonvision.data.detection import screenshot_array
from toonvision.data.files import create_exclusive, write_bytes_atomic
from toonvision.data.review import (
    PRE_ANNOTATED,
    REVIEWED,
    SIDECAR_KIND,
    ReviewState,
    file_sha256,
    machine_written,
    read_sidecar,
    sidecar_path,
)
from toonvision.data.taxonomy import SUITS, TASKS

FORMATS = ("voc", "yolo", "createml")
SUFFIX = {"voc": ".xml", "yolo": ".txt", "createml": ".json"}
NEEDED = TASKS  # a full label for every box needs a classifier of each task (and the detector)
SUIT_OF_NAME = {name: suit.short for suit in SUITS for name in suit.cogs}


@dataclass
class Proposal:
    """What the models see in one screenshot: boxes with full labels, and what each model said of each."""

    image: Path
    width: int
    height: int
    boxes: list[Box] = field(default_factory=list)
    details: list[dict[str, Any]] = field(default_factory=list)  # per box, in the order of ``boxes``

    @property
    def confidence(self) -> float | None:
        """The least sure box's confidence: how much a person's look is needed here (None: no box found)."""
        return min((d["confidence"] for d in self.details), default=None)


def label_boxes(crops: Sequence[Any], classifiers: dict[str, Any]) -> list[tuple[str, float, dict[str, Any]]]:
    """A full taxonomy label per crop with its confidence and what each classifier said.

    Cogs: the suit and name models are read together: the label is the Cog name with the highest
    p(name) x p(its suit), so the suit and the name never disagree, its confidence that product normalised over
    the 32 names. Toons: the animal model's best. The confidence of the label is times the binary model's.
    """
    crops = list(crops)
    kinds, suits, names, animals = (classifiers[task].predict(crops) for task in ("binary", "suit", "name", "animal"))
    suit_classes, name_classes = classifiers["suit"].classes, classifiers["name"].classes
    suit_index = np.array([suit_classes.index(SUIT_OF_NAME[n]) for n in name_classes])
    out = []
    for kind, suit, name, animal in zip(kinds, suits, names, animals, strict=True):
        said = {
            "kind": kind.label,
            "kind_confidence": round(kind.confidence, 4),
            "suit": suit.label,
            "suit_confidence": round(suit.confidence, 4),
            "name": name.label,
            "name_confidence": round(name.confidence, 4),
            "animal": animal.label,
            "animal_confidence": round(animal.confidence, 4),
        }
        if kind.label == "cog":
            joint = np.asarray(name.probabilities) * np.asarray(suit.probabilities)[suit_index]
            best = int(np.argmax(joint))
            cog = name_classes[best]
            sure = float(joint[best] / joint.sum()) if joint.sum() > 0 else 0.0
            out.append((f"cog_{SUIT_OF_NAME[cog]}_{cog}", kind.confidence * sure, said))
        else:
            out.append((f"toon_{animal.label}", kind.confidence * animal.confidence, said))
    return out


def propose(image: Path, detector: Any, classifiers: dict[str, Any]) -> Proposal:
    """Detect and label every Toon and Cog of ``image`` (a :class:`toonvision.Detector` and classifiers for
    binary, suit, name and animal, as :data:`NEEDED` lists). ImageError for an image that cannot be read."""
    from PIL import Image

    array = screenshot_array(image)  # the checks a detector input passes: readable, not 1x1, not 8000x8000
    img = Image.fromarray(array)
    proposal = Proposal(Path(image), img.width, img.height)
    boxes, classes, scores = detector.detect(array)
    # labelImg stores whole pixels; a box is clipped to the screenshot as labelImg's canvas clips it.
    rounded = np.rint(np.asarray(boxes, np.float64).reshape(-1, 4)).astype(int)
    rounded = np.clip(rounded, 0, [img.width, img.height, img.width, img.height])
    pixel_boxes = [tuple(b) for b in rounded.tolist()]
    kept = [i for i, (left, top, right, bottom) in enumerate(pixel_boxes) if right > left and bottom > top]
    if not kept:
        return proposal
    crops = [img.crop(pixel_boxes[i]) for i in kept]
    detector_names = detector.names(classes)
    for i, (label, sure, said) in zip(kept, label_boxes(crops, classifiers), strict=True):
        score = float(scores[i])
        proposal.boxes.append(Box(label, *map(float, pixel_boxes[i])))
        proposal.details.append(
            {
                "box": list(pixel_boxes[i]),
                "label": label,
                "confidence": round(score * sure, 4),
                "detector_class": detector_names[i],
                "detector_score": round(score, 4),
                **said,
            }
        )
    return proposal


# --- what to do with each screenshot ---


@dataclass(frozen=True)
class Step:
    state: ReviewState
    action: str  # "write", "refresh", or why it is left alone: "reviewed", "pre-annotated"
    format: str  # the format written: --format for a new file, the existing file's own on refresh


def plan(states: Sequence[ReviewState], fmt: str, refresh: bool = False) -> list[Step]:
    """What annotate does with each screenshot: a person's annotation (reviewed) is always left alone, an
    earlier pre-annotation only refreshed with ``refresh`` (in its own format), an unlabelled one written."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    steps = []
    for state in states:
        if state.status == REVIEWED:
            steps.append(Step(state, "reviewed", fmt))
        elif state.status == PRE_ANNOTATED:
            own = state.annotation.format if state.annotation else fmt
            steps.append(Step(state, "refresh" if refresh else "pre-annotated", own))
        else:
            steps.append(Step(state, "write", fmt))
    return steps


# --- writing ---


def yolo_classes(folder: Path, labels: Sequence[str]) -> list[str]:
    """The class list of ``folder``'s classes.txt, with ``labels`` it lacks appended (existing lines keep their
    order, so every YOLO file already there keeps its meaning); written only when it changes."""
    path = folder / "classes.txt"
    classes = [line.strip() for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    missing = [label for label in labels if label not in classes]
    if missing or not path.is_file():
        classes += missing
        write_bytes_atomic(path, "".join(f"{c}\n" for c in classes).encode())
    return classes


def annotation_bytes(proposal: Proposal, fmt: str, classes: list[str] | None = None) -> bytes:
    """The file labelImg would write for ``proposal`` (not verified: nobody has looked yet)."""
    image = proposal.image
    ann = Annotation(
        filename=image.name,
        width=proposal.width,
        height=proposal.height,
        boxes=list(proposal.boxes),
        folder=image.parent.name,
        path=str(image.resolve()),
    )
    if fmt == "voc":
        return voc_bytes(ann)
    if fmt == "yolo":
        return yolo_text(ann, list(classes or [])).encode()
    if fmt == "createml":
        return json.dumps([createml_entry(ann)]).encode()
    raise ValueError(f"unknown format {fmt!r}")


class Changed(Exception):
    """The annotation changed (a person saved it) between planning and writing: it is theirs now."""


def write_proposal(step: Step, proposal: Proposal, models: dict[str, str], all_labels: Sequence[str]) -> Path:
    """Write the pre-annotation of ``step``'s screenshot: the sidecar first (listing the bytes about to be
    written), then the annotation file, so a kill between the two never leaves machine boxes that pass for a
    person's. Returns the annotation file; Changed when a person's file got there first."""
    image = step.state.image
    if step.action == "refresh":
        target = step.state.annotation.path
        before = step.state.sidecar or {}
    else:
        target = image.with_suffix(SUFFIX[step.format])
        before = {}
    classes = yolo_classes(image.parent, all_labels) if step.format == "yolo" else None
    data = annotation_bytes(proposal, step.format, classes)
    digest = hashlib.sha256(data).hexdigest()
    record = {
        "kind": SIDECAR_KIND,
        "annotation": target.name,
        "format": step.format,
        "written": [*before.get("written", []), digest][-20:],
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "models": models,
        "confidence": proposal.confidence,
        "boxes": proposal.details,
    }
    if step.action == "refresh":
        current = read_sidecar(image)
        if current is None or not machine_written(current, file_sha256(target)):
            raise Changed(f"{target} was changed since annotate planned to refresh it: left as it is now")
    write_bytes_atomic(sidecar_path(image), json.dumps(record, indent=1).encode())
    if step.action == "refresh":
        if file_sha256(target) not in record["written"]:  # saved by a person in the last instant
            raise Changed(f"{target} was changed since annotate planned to refresh it: left as it is now")
        write_bytes_atomic(target, data)
    elif not create_exclusive(target, data):
        raise Changed(f"{target} appeared while annotate worked (a person's?): left as it is")
    return target


@dataclass
class AnnotateSummary:
    written: list[tuple[Path, Proposal]] = field(default_factory=list)
    refreshed: list[tuple[Path, Proposal]] = field(default_factory=list)
    left: list[tuple[Path, str]] = field(default_factory=list)  # (screenshot, why it was left alone)
    problems: list[tuple[Path, str]] = field(default_factory=list)  # (file, what went wrong): skipped
    boxes: int = 0
    seconds: float = 0.0


def annotate_screenshots(
    steps: Sequence[Step],
    detector: Any,
    classifiers: dict[str, Any],
    models: dict[str, str],
    all_labels: Sequence[str],
    *,
    dry_run: bool = False,
    on_screenshot: Callable[[Path], None] | None = None,
) -> AnnotateSummary:
    """Pre-annotate every screenshot whose step is write or refresh; each bad screenshot or unwritable folder
    is a problem named in the summary, and the others go on."""
    from toonvision.data.images import ImageError

    summary = AnnotateSummary()
    start = time.perf_counter()
    for step in steps:
        image = step.state.image
        try:
            if step.action not in ("write", "refresh"):
                summary.left.append((image, step.action))
                continue
            try:
                proposal = propose(image, detector, classifiers)
            except (ImageError, OSError, ValueError) as exc:
                summary.problems.append((image, f"not read: {exc}"))
                continue
            summary.boxes += len(proposal.boxes)
            done = summary.refreshed if step.action == "refresh" else summary.written
            if dry_run:
                done.append((image.with_suffix(SUFFIX[step.format]), proposal))
                continue
            try:
                done.append((write_proposal(step, proposal, models, all_labels), proposal))
            except Changed as exc:
                summary.left.append((image, str(exc)))
            except OSError as exc:
                summary.problems.append((image, f"not written: {exc.strerror or exc}"))
        finally:
            if on_screenshot:
                on_screenshot(image)
    summary.seconds = time.perf_counter() - start
    return summary
