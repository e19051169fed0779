"""Who labelled a screenshot: a person, or `toonvision annotate` with nobody having looked yet.

A pre-annotation is an ordinary labelImg file (so labelImg opens it) with a sidecar beside the screenshot,
``<stem>.toonvision.json``, that labelImg never reads: the models' confidence per box, and the SHA-256 of every
version of the annotation file annotate wrote. A screenshot's annotation is

- *reviewed* when it has no sidecar (a person drew it), when labelImg marked it verified (its Verify Image
  button: ``verified="yes"`` in VOC, ``"verified": true`` in CreateML), when its bytes are no longer any
  annotate wrote (a person saved it in labelImg, which is what correcting a box does), or when a person
  accepted exactly these bytes in ``toonvision review`` (the sidecar's ``accepted``: YOLO files have no
  verified flag to carry that);
- *pre-annotated* when its bytes are still exactly what annotate wrote and it is not verified: ground truth for
  nobody until a person has looked, so extraction and detector training leave it out unless asked.

The sidecar is written before the annotation file, and lists every version written: a run killed between the
two leaves a screenshot unlabelled or pre-annotated, never a machine's boxes that pass for a person's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toonvision.data.annotations import AnnotationError, AnnotationFile, read_createml, read_voc
from toonvision.data.files import read_json

SIDECAR_SUFFIX = ".toonvision.json"
SIDECAR_KIND = "toonvision pre-annotation"
# The uncertainty score (see box_doubt): a box whose edges move by SPREAD_LOOSE of its size under test-time
# augmentation is as good as unplaced; each game-rule flag (a disagreement between the detector and the
# classifiers is one) halves the chance that a person leaves the box as it is.
SPREAD_LOOSE = 0.3
FLAG_DOUBT = 0.5
EMPTY_DOUBT = 1.0  # a screenshot where nothing was proposed: only a person can tell an empty street from a miss

UNLABELLED, PRE_ANNOTATED, REVIEWED = "unlabelled", "pre-annotated", "reviewed"
STATUSES = (REVIEWED, PRE_ANNOTATED, UNLABELLED)


def sidecar_path(image: Path) -> Path:
    return Path(image).with_name(Path(image).stem + SIDECAR_SUFFIX)


def is_sidecar(path: Path) -> bool:
    return Path(path).name.endswith(SIDECAR_SUFFIX)


def file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def read_sidecar(image: Path) -> dict[str, Any] | None:
    """The sidecar of ``image``, or None when there is none (or it is not one of ours: then it is ignored)."""
    data = read_json(sidecar_path(image))
    if not isinstance(data, dict) or data.get("kind") != SIDECAR_KIND or not isinstance(data.get("written"), list):
        return None
    return data


def machine_written(sidecar: dict[str, Any], digest: str | None) -> bool:
    """Whether the annotation bytes of SHA-256 ``digest`` are annotate's and nobody has accepted them."""
    return digest in sidecar["written"] and digest not in (sidecar.get("accepted") or [])


def _verified(annotation: AnnotationFile, image: Path) -> bool:
    try:
        if annotation.format == "voc":
            return read_voc(annotation.path).verified
        if annotation.format == "createml":
            return read_createml(annotation.path, image.name).verified
    except AnnotationError:
        return False  # unreadable: extraction names the problem; it is nobody's verified work
    return False  # YOLO has no such flag: a person's edit is what tells


@dataclass(frozen=True)
class ReviewState:
    image: Path
    annotation: AnnotationFile | None
    status: str  # UNLABELLED, PRE_ANNOTATED or REVIEWED
    sidecar: dict[str, Any] | None  # the pre-annotation's record, while it is one


def review_state(image: Path, annotation: AnnotationFile | None) -> ReviewState:
    """Whether ``image``'s annotation (as :func:`~toonvision.data.annotations.pick_annotation` found it) is a
    person's or annotate's."""
    image = Path(image)
    if annotation is None:
        return ReviewState(image, None, UNLABELLED, None)
    sidecar = read_sidecar(image)
    if sidecar is None or sidecar.get("annotation") != annotation.path.name:
        return ReviewState(image, annotation, REVIEWED, None)
    if not machine_written(sidecar, file_sha256(annotation.path)) or _verified(annotation, image):
        return ReviewState(image, annotation, REVIEWED, None)
    return ReviewState(image, annotation, PRE_ANNOTATED, sidecar)


def box_doubt(box: dict[str, Any]) -> float:
    """How likely a person has to touch one pre-annotated box (a sidecar record): one minus the chance that it
    is all right, which needs its label right (``label_confidence``), a Toon or Cog there at all (the detector's
    score), its edges in place (one minus its position spread over :data:`SPREAD_LOOSE`), and each game-rule
    flag passed (:data:`FLAG_DOUBT` off per flag)."""
    label = float(box.get("label_confidence") if box.get("label_confidence") is not None else 1.0)
    found = float(box.get("detector_score") if box.get("detector_score") is not None else 1.0)
    placed = 1.0 - min(float(box.get("position_spread") or 0.0) / SPREAD_LOOSE, 1.0)
    passed = (1.0 - FLAG_DOUBT) ** len(box.get("flags") or [])
    return 1.0 - label * found * placed * passed


def uncertainty(boxes: Sequence[dict[str, Any]], near_misses: Sequence[dict[str, Any]] = ()) -> float:
    """A screenshot's uncertainty score: the boxes a person can expect to fix in it, the sum of the proposed
    boxes' :func:`box_doubt` and of the near misses' detector scores (a peak just below the threshold is a Toon
    or Cog to draw with about that probability). A screenshot with more doubtful boxes costs more of a person's
    look and repays more of it. Where nothing was proposed, at least :data:`EMPTY_DOUBT`."""
    score = sum(box_doubt(box) for box in boxes) + sum(float(m.get("detector_score") or 0.0) for m in near_misses)
    return round(score if boxes else max(score, EMPTY_DOUBT), 4)


def sidecar_uncertainty(sidecar: dict[str, Any]) -> float:
    """The uncertainty score annotate recorded; for a sidecar written before there was one, its old ranking
    as a score on the same scale: one minus its least sure box's confidence, plus one where the detector and
    the classifiers disagree on a box (so those still come first among the old ones)."""
    if sidecar.get("uncertainty") is not None:
        return float(sidecar["uncertainty"])
    return 1.0 - float(sidecar.get("confidence") or 0.0) + (1.0 if sidecar.get("conflicts") else 0.0)


def rank_uncertain(states: Iterable[ReviewState]) -> list[tuple[ReviewState, float]]:
    """The pre-annotated screenshots with their uncertainty score (:func:`sidecar_uncertainty`), the highest
    first: where a person's look is most likely to change something. Ties go by file name."""
    ranked = [
        (state, sidecar_uncertainty(state.sidecar))
        for state in states
        if state.status == PRE_ANNOTATED and state.sidecar is not None
    ]
    return sorted(ranked, key=lambda item: (-item[1], str(item[0].image)))


def link_for_review(ranked: Sequence[ReviewState], folder: Path) -> list[Path]:
    """Symbolic links to each screenshot and its annotation in ``folder`` (new or empty), their names prefixed
    by rank (``0001_shot.png``, ``0001_shot.xml``) so labelImg opens them in that order. labelImg saves through
    the links into the original files, so the review lands where extraction reads it. Returns the image links.
    OSError where links cannot be made (then review in place, in the listed order)."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} is not empty: give a new folder for the review links")
    formats = {state.annotation.format for state in ranked if state.annotation is not None}
    if "createml" in formats:
        raise ValueError(
            "labelImg's CreateML files name their image inside: linked under another name they would get a "
            "second entry; review CreateML pre-annotations in place, in the listed order"
        )
    class_lists = {
        (state.annotation.path.parent / "classes.txt").read_bytes()
        for state in ranked
        if state.annotation is not None and state.annotation.format == "yolo"
    }
    if len(class_lists) > 1:
        raise ValueError("YOLO pre-annotations from folders with different classes.txt: review each folder apart")
    folder.mkdir(parents=True, exist_ok=True)
    width = max(4, len(str(len(ranked))))
    links = []
    for rank, state in enumerate(ranked, 1):
        if state.annotation is None:
            continue
        prefix = f"{rank:0{width}d}_"
        link = folder / (prefix + state.image.name)
        link.symlink_to(state.image.resolve())
        (folder / (prefix + state.annotation.path.name)).symlink_to(state.annotation.path.resolve())
        classes = state.annotation.path.parent / "classes.txt"
        if state.annotation.format == "yolo" and classes.is_file() and not (folder / "classes.txt").exists():
            (folder / "classes.txt").symlink_to(classes.resolve())
        links.append(link)
    return links
