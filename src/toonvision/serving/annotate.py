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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from toonvision.data.files import create_exclusive, write_bytes_atomic
from toonvision.data.game_rules import box_flags
from toonvision.data.review import (
    PRE_ANNOTATED,
    REVIEWED,
    SIDECAR_KIND,
    ReviewState,
    file_sha256,
    machine_written,
    read_sidecar,
    sidecar_path,
    uncertainty,
)
from toonvision.serving.pipeline import ANNOTATION_FORMATS, ANNOTATION_SUFFIX, Pipeline, Results, yolo_classes

FORMATS = ANNOTATION_FORMATS
SUFFIX = ANNOTATION_SUFFIX


@dataclass
class Proposal:
    """What the pipeline sees in one screenshot, as annotate writes it: full labels, and per box what each
    model said, how far its edges move, and the game rules it breaks (the sidecar's record)."""

    results: Results

    @property
    def image(self) -> Path:
        return self.results.path  # type: ignore[return-value]

    @property
    def boxes(self) -> list[Any]:
        return self.results.boxes

    @cached_property
    def details(self) -> list[dict[str, Any]]:
        """Per box: everything the pipeline said, with ``confidence`` the detector's score times the label's
        probability (how sure the whole answer is), and the game rules it breaks (``flags``, each with why).
        Made once: the table, the sidecar and the score all read it."""
        boxes = self.results.boxes
        width, height = self.results.width, self.results.height
        flags = box_flags([b.xyxy or (0, 0, width, height) for b in boxes], width, height, [b.conflict for b in boxes])
        return [
            {**b.to_dict(), "label_confidence": round(b.confidence, 4), "confidence": round(b.score, 4), "flags": f}
            for b, f in zip(boxes, flags, strict=True)
        ]

    @property
    def confidence(self) -> float | None:
        """The least sure box's confidence: how much a person's look is needed here (None: no box found)."""
        return min((round(b.score, 4) for b in self.results.boxes), default=None)

    @property
    def conflicts(self) -> int:
        """Boxes the detector and the classifiers disagree on: a person should look at those first."""
        return sum(1 for b in self.results.boxes if b.conflict)

    @property
    def flagged(self) -> int:
        """Boxes that break a game rule (a disagreement between the models among them)."""
        return sum(1 for d in self.details if d["flags"])

    @property
    def near_misses(self) -> list[dict[str, Any]]:
        """The detector's peaks just below the threshold (box and score): Toons or Cogs it may have missed."""
        return self.results.near_misses_dicts()

    @property
    def uncertainty(self) -> float:
        """The boxes a person can expect to fix here (:func:`toonvision.data.review.uncertainty`): what
        ``--rank uncertain`` goes by."""
        return uncertainty(self.details, self.near_misses)


def propose(image: Path, pipeline: Pipeline) -> Proposal:
    """Detect and label every Toon and Cog of ``image``, with how unsure each box's place is and what the
    detector nearly found (what the ranking needs, at two more detector passes). ImageError for an image that
    cannot be read."""
    return Proposal(pipeline.detect(Path(image), position_spread=True))


# --- what to do with each screenshot ---


@dataclass(frozen=True)
class Step:
    state: ReviewState
    action: str  # "write", "refresh", or why it is left alone: "reviewed", "pre-annotated", "other-detector"
    format: str  # the format written: --format for a new file, the existing file's own on refresh


def plan(
    states: Sequence[ReviewState],
    fmt: str,
    refresh: bool = False,
    *,
    detector: str | None = None,
    any_detector: bool = False,
) -> list[Step]:
    """What annotate does with each screenshot: a person's annotation (reviewed) is always left alone, an
    earlier pre-annotation only refreshed with ``refresh`` (in its own format), an unlabelled one written.
    A refresh replaces only what ``detector`` (the model file) proposed itself, unless ``any_detector``: a
    one-epoch experiment must not silently empty a queue a better detector filled."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    steps = []
    for state in states:
        if state.status == REVIEWED:
            steps.append(Step(state, "reviewed", fmt))
        elif state.status == PRE_ANNOTATED:
            own = state.annotation.format if state.annotation else fmt
            before = ((state.sidecar or {}).get("models") or {}).get("detect")
            if refresh and not any_detector and detector is not None and before not in (None, detector):
                steps.append(Step(state, "other-detector", own))
            else:
                steps.append(Step(state, "refresh" if refresh else "pre-annotated", own))
        else:
            steps.append(Step(state, "write", fmt))
    return steps


# --- writing ---


class Changed(Exception):
    """The annotation changed (a person saved it) between planning and writing: it is theirs now."""


def write_proposal(
    step: Step,
    proposal: Proposal,
    models: dict[str, str],
    all_labels: Sequence[str],
    *,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write the pre-annotation of ``step``'s screenshot: the sidecar first (listing the bytes about to be
    written), then the annotation file, so a kill between the two never leaves machine boxes that pass for a
    person's. ``extra`` adds fields to the sidecar (watch --collect: why the frame was kept). Returns the
    annotation file; Changed when a person's file got there first."""
    image = step.state.image
    if step.action == "refresh":
        target = step.state.annotation.path
        before = step.state.sidecar or {}
    else:
        target = image.with_suffix(SUFFIX[step.format])
        before = {}
    classes = yolo_classes(image.parent, all_labels) if step.format == "yolo" else None
    data = proposal.results.annotation(step.format, classes)
    digest = hashlib.sha256(data).hexdigest()
    record = {
        "kind": SIDECAR_KIND,
        "annotation": target.name,
        "format": step.format,
        "written": [*before.get("written", []), digest][-20:],
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "models": models,
        "confidence": proposal.confidence,
        "conflicts": proposal.conflicts,
        "flagged": proposal.flagged,
        "uncertainty": proposal.uncertainty,
        "boxes": proposal.details,
        "near_misses": proposal.near_misses,
        **(extra or {}),
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
    pipeline: Pipeline,
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
                proposal = propose(image, pipeline)
            except (ImageError, OSError, ValueError) as exc:
                summary.problems.append((image, f"not read: {exc}"))
                continue
            summary.boxes += len(proposal.boxes)
            done = summary.refreshed if step.action == "refresh" else summary.written
            if dry_run:
                done.append((image.with_suffix(SUFFIX[step.format]), proposal))
                continue
            try:
                done.append((write_proposal(step, proposal, pipeline.models, all_labels), proposal))
            except Changed as exc:
                summary.left.append((image, str(exc)))
            except OSError as exc:
                summary.problems.append((image, f"not written: {exc.strerror or exc}"))
        finally:
            if on_screenshot:
                on_screenshot(image)
    summary.seconds = time.perf_counter() - start
    return summary
