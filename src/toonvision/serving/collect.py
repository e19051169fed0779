"""Live play feeds the review queue: ``watch --collect`` keeps the frames where the models are unsure, each
written as ``annotate`` writes a pre-annotation (the screenshot, its sidecar, then the labelImg file), so that
``toonvision review --rank uncertain`` shows them to a person, least sure first.

    collector = Collector(Path("queue"), conf=0.3)
    for record in watch(screen_frames(), pipeline, keep_image=True):
        kept = collector.add(record)           # a Kept (the files and the reasons) or None

A frame is kept for any of these reasons, each named in its sidecar's ``collected`` with the boxes that gave it:

- ``conflict``: the detector and the classifiers disagree on a box (:attr:`BoxResult.conflict`);
- ``label-flip``: a Toon or Cog followed from frame to frame (:class:`Tracker`) changed its label within the last
  :data:`FLIP_FRAMES` frames: one of the two labels is wrong;
- ``near-threshold``: the detector scored a box less than :data:`COLLECT_SCORE_MARGIN` above ``conf``;
- ``unsure-label``: the rule gives a box's label less than :data:`COLLECT_LABEL_BELOW`.

At most ``per_minute`` frames are kept in any 60 seconds, and a frame too like the last one kept (its small grey
thumbnail barely differs, or it shows the same tracked Toons and Cogs with the same labels) is skipped: a person
should correct each confusion once, not a minute of the same street.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toonvision.data.detection import iou_matrix, screenshot_array
from toonvision.data.files import create_exclusive
from toonvision.data.review import UNLABELLED, ReviewState, sidecar_path
from toonvision.data.taxonomy import all_labels
from toonvision.serving.annotate import FORMATS, SUFFIX, Changed, Proposal, Step, write_proposal
from toonvision.serving.pipeline import BoxResult, Pixels
from toonvision.serving.thresholds import (
    BOX_SCORE,
    COLLECT_FORMAT,
    COLLECT_LABEL_BELOW,
    COLLECT_PER_MINUTE,
    COLLECT_SCORE_MARGIN,
)
from toonvision.serving.watch import FrameRecord

REASONS = ("conflict", "label-flip", "near-threshold", "unsure-label", "near-miss")
TRACK_IOU = 0.3  # a box continues a track from the last frame when they overlap this much (greedy, best first)
FLIP_FRAMES = 5  # a track remembers its labels of this many frames, and is forgotten after as many unseen
NEAR_DUPLICATE = 0.02  # mean difference (0-1) of two grey thumbnails below which two frames show the same thing
THUMBNAIL = (32, 18)  # small enough that a few pixels of noise or a blinking nametag do not count as a change
WINDOW = 60.0  # seconds over which per_minute is counted


@dataclass
class Track:
    """One Toon or Cog followed from frame to frame: where it was last seen, and its recent labels."""

    id: int
    box: Pixels
    labels: deque[str]  # the label shown (or the deepest part decided) on each of the last frames it was seen
    last_seen: int  # the tracker's frame count when it was last matched

    @property
    def flipped(self) -> bool:
        """Whether its label changed within the frames remembered."""
        return len(set(self.labels)) > 1


class Tracker:
    """Follows boxes across frames: each box continues the track of the last frame it overlaps most (IoU at least
    ``iou``, greedy, best overlap first), or starts a new one. A track unseen for ``memory`` frames is forgotten,
    and remembers the labels of its last ``memory`` frames."""

    def __init__(self, iou: float = TRACK_IOU, memory: int = FLIP_FRAMES) -> None:
        self.iou, self.memory = iou, memory
        self.tracks: list[Track] = []
        self.frames = 0
        self._next_id = 0

    def update(self, boxes: Sequence[BoxResult]) -> list[Track | None]:
        """Match one frame's boxes to the tracks: per box its track (None for a box with no place)."""
        self.frames += 1
        placed = [i for i, b in enumerate(boxes) if b.xyxy is not None]
        overlap = iou_matrix([t.box for t in self.tracks], [boxes[i].xyxy for i in placed])
        pairs = sorted(zip(*np.nonzero(overlap >= self.iou), strict=True), key=lambda p: -overlap[p])
        out: list[Track | None] = [None] * len(boxes)
        taken_tracks: set[int] = set()
        for t, j in pairs:
            if t in taken_tracks or out[placed[j]] is not None:
                continue
            taken_tracks.add(t)
            track = self.tracks[t]
            track.box, track.last_seen = boxes[placed[j]].xyxy, self.frames  # type: ignore[assignment]
            track.labels.append(boxes[placed[j]].shown)
            out[placed[j]] = track
        for i in placed:
            if out[i] is None:
                track = Track(self._next_id, boxes[i].xyxy, deque([boxes[i].shown], self.memory), self.frames)  # type: ignore[arg-type]
                self._next_id += 1
                self.tracks.append(track)
                out[i] = track
        self.tracks = [t for t in self.tracks if self.frames - t.last_seen < self.memory]
        return out


@dataclass(frozen=True)
class Kept:
    """A frame written to the review queue: the screenshot, its annotation, and why (reason -> box indexes)."""

    image: Path
    annotation: Path
    reasons: dict[str, list[int]]


@dataclass
class Collector:
    """Fed every :class:`FrameRecord` of a watch (with its image), keeps the unsure frames in ``folder`` as
    pre-annotations. ``conf`` is the detector score the watch keeps boxes from; ``clock`` (seconds) counts the
    per-minute cap. Counts what it kept per reason and what it skipped, and why."""

    folder: Path
    conf: float = BOX_SCORE
    per_minute: int = COLLECT_PER_MINUTE
    clock: Callable[[], float] = time.monotonic
    format: str = COLLECT_FORMAT  # of the annotation beside each kept frame: the one the user's queue is labelled in
    tracker: Tracker = field(default_factory=Tracker)
    kept: list[Kept] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)  # reason -> frames kept that it was given for
    skipped: Counter[str] = field(default_factory=Counter)  # "near-duplicate", "over the cap", "not written"
    problems: list[str] = field(default_factory=list)  # why frames were not written (a full disk, a person's file)
    _stamps: deque[float] = field(default_factory=deque, repr=False)
    _thumbnail: np.ndarray | None = field(default=None, repr=False)
    _signature: frozenset[tuple[int, str]] | None = field(default=None, repr=False)
    _labels: list[str] = field(default_factory=lambda: [str(label) for label in all_labels()], repr=False)

    def __post_init__(self) -> None:
        if self.per_minute < 1:
            raise ValueError(f"per_minute must be at least 1, not {self.per_minute}")
        if self.format not in FORMATS:
            raise ValueError(f"unknown annotation format {self.format!r} (choose from {', '.join(FORMATS)})")
        self.folder = Path(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)  # now, so that a folder that cannot be made is said first

    def why(
        self, boxes: Sequence[BoxResult], tracks: Sequence[Track | None], near: Sequence[Any] = ()
    ) -> dict[str, list[int]]:
        """The reasons to keep a frame, each with the indexes of the boxes that give it (empty: not unsure);
        "near-miss" indexes the detector's near misses (``near``): a Toon or Cog it almost saw, to draw."""
        found: dict[str, list[int]] = {reason: [] for reason in REASONS}
        found["near-miss"] = list(range(len(near)))
        for i, (box, track) in enumerate(zip(boxes, tracks, strict=True)):
            if box.conflict:
                found["conflict"].append(i)
            if track is not None and track.flipped:
                found["label-flip"].append(i)
            if box.detector_score is not None and box.detector_score < self.conf + COLLECT_SCORE_MARGIN:
                found["near-threshold"].append(i)
            if box.confidence < COLLECT_LABEL_BELOW:
                found["unsure-label"].append(i)
        return {reason: indexes for reason, indexes in found.items() if indexes}

    def add(self, record: FrameRecord) -> Kept | None:
        """Track the frame's boxes and keep the frame when it is unsure, new enough and under the cap: the files
        written, or None. ValueError for a record without its image (watch with keep_image)."""
        if record.image is None:
            raise ValueError("collecting needs the frames themselves: watch(..., keep_image=True)")
        boxes = record.results.boxes
        tracks = self.tracker.update(boxes)
        reasons = self.why(boxes, tracks, record.results.near_misses or ())
        if not reasons:
            return None
        array = screenshot_array(record.image, record.name)
        thumbnail = _thumbnail(array)
        signature = frozenset((t.id, b.shown) for b, t in zip(boxes, tracks, strict=True) if t is not None)
        if self._thumbnail is not None and (
            (signature and signature == self._signature)
            or float(np.mean(np.abs(thumbnail - self._thumbnail))) < NEAR_DUPLICATE
        ):
            self.skipped["near-duplicate"] += 1
            return None
        now = self.clock()
        while self._stamps and now - self._stamps[0] >= WINDOW:
            self._stamps.popleft()
        if len(self._stamps) >= self.per_minute:
            self.skipped["over the cap"] += 1
            return None
        try:
            kept = self._write(record, array, reasons)
        except (Changed, OSError, ValueError) as exc:
            self.skipped["not written"] += 1
            self.problems.append(str(exc))
            return None
        self._stamps.append(now)
        self._thumbnail, self._signature = thumbnail, signature
        self.kept.append(kept)
        self.reasons.update(reasons.keys())
        return kept

    def _write(self, record: FrameRecord, array: np.ndarray, reasons: dict[str, list[int]]) -> Kept:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(array).save(buf, format="PNG")
        image = self._claim(frame_stem(record), buf.getvalue())
        results = dataclasses.replace(record.results, path=image)
        extra = {
            "collected": {
                "reasons": reasons,
                "frame": record.index,
                "source": record.name,
                "time": round(record.time, 3),
                "conf": self.conf,
            }
        }
        step = Step(ReviewState(image, None, UNLABELLED, None), "write", self.format)
        try:
            annotation = write_proposal(step, Proposal(results), results.models, self._labels, extra=extra)
        except Exception:
            if not image.with_suffix(SUFFIX[self.format]).exists():  # nothing of a person's here: take back ours
                for path in (sidecar_path(image), image):
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
            raise
        return Kept(image, annotation, reasons)

    def _claim(self, stem: str, data: bytes) -> Path:
        """Write the screenshot under the first name (``stem``, ``stem-2``...) whose screenshot, annotation and
        sidecar are all free, never over a file."""
        n = 1
        while True:
            image = self.folder / f"{stem if n == 1 else f'{stem}-{n}'}.png"
            taken = (image, image.with_suffix(SUFFIX[self.format]), sidecar_path(image))
            if not any(path.exists() for path in taken) and create_exclusive(image, data):
                return image
            n += 1

    def summary(self) -> dict[str, Any]:
        """Frames kept, per reason (a frame may have several), and frames skipped, per why."""
        return {
            "kept": len(self.kept),
            "folder": str(self.folder),
            "reasons": {reason: self.reasons[reason] for reason in REASONS if self.reasons[reason]},
            "skipped": dict(self.skipped),
        }


def frame_stem(record: FrameRecord) -> str:
    """The name a kept frame is written under (before any ``-2`` that a taken name gets): when it was watched,
    to the second, and its number, so that frames of every watch sort in the order they were seen."""
    return f"watch_{time.strftime('%Y%m%d-%H%M%S', time.localtime(record.time))}_{record.index:06d}"


def _thumbnail(array: np.ndarray) -> np.ndarray:
    from PIL import Image

    grey = Image.fromarray(array).convert("L").resize(THUMBNAIL, Image.Resampling.BOX)
    return np.asarray(grey, np.float32) / 255.0
