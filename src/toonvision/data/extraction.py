"""Extraction: the spec's ``process_images``. Screenshots + labelImg annotations -> one PNG crop per box.

Guarantees, also when killed at any instant and run again:
- a crop is written under a temporary name and hard-linked into place, so it is complete or absent, and it
  never replaces an existing file (two extractions may run at once: a taken name is skipped);
- every crop records, in its PNG metadata and in the workspace's journal, which box of which screenshot
  (by content hash) it came from, so a box already extracted is never extracted twice;
- a screenshot is moved to ``raw/processed`` only after all its crops exist, by link-then-unlink moves that
  a later run completes;
- a screenshot with bad input is skipped as a whole and left where it was.
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, PngImagePlugin

from toonvision.data.annotations import (
    Annotation,
    AnnotationError,
    AnnotationFile,
    Box,
    Siblings,
    pick_annotation,
    read_annotation,
)
from toonvision.data.files import create_exclusive, file_lock, move_no_clobber, remove_stale_tmp
from toonvision.data.images import ImageError, decode_image, header_size, is_image
from toonvision.data.journal import Journal
from toonvision.data.review import (
    PRE_ANNOTATED,
    SIDECAR_SUFFIX,
    ReviewState,
    is_sidecar,
    review_state,
    sidecar_path,
)
from toonvision.data.samples import find_samples, max_indexes
from toonvision.data.taxonomy import Label, LabelError, parse_label, street_of
from toonvision.data.workspace import Workspace

PNG_KEY = "toonvision:box"  # PNG text chunk naming the box a crop came from
PNG_SOURCE = "toonvision:source"


@dataclass(frozen=True)
class Problem:
    path: Path
    kind: str  # short category, e.g. "corrupt image", "unknown label"
    detail: str
    fatal: bool = True  # fatal problems skip the screenshot; others are warnings

    def __str__(self) -> str:
        return f"{self.path}: {self.kind}: {self.detail}"


@dataclass(frozen=True)
class PlannedCrop:
    label: Label
    box: tuple[int, int, int, int]  # left, top, right, bottom after clipping
    key: str  # identity of the box: screenshot content hash + label + box


@dataclass
class ScreenshotPlan:
    image: Path
    annotation: AnnotationFile
    sha256: str
    crops: list[PlannedCrop]
    warnings: list[Problem]
    # The pixels planning decoded (None when every crop was extracted before): the crops are cut from these, the
    # very bytes the keys hash, rather than from a second read and decode of the file.
    pixels: Image.Image | None = field(default=None, repr=False)


@dataclass
class ExtractSummary:
    screenshots: int = 0
    extracted: int = 0  # screenshots whose boxes are all extracted now
    crops_written: list[Path] = field(default_factory=list)
    already_extracted: int = 0  # boxes found in the journal, not written again
    moved: int = 0
    problems: list[Problem] = field(default_factory=list)
    per_label: Counter = field(default_factory=Counter)
    planned: list[tuple[Path, str]] = field(default_factory=list)  # dry run: (screenshot, crop name)
    unreviewed: list[Path] = field(default_factory=list)  # pre-annotations nobody has reviewed: not extracted

    @property
    def skipped(self) -> list[Problem]:
        return [p for p in self.problems if p.fatal]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if not p.fatal]


class ScreenshotError(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


# --- planning: everything that can go wrong is found before anything is written ---


def _read_image(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ScreenshotError(Problem(path, "missing image", "the image file does not exist")) from None
    except OSError as exc:
        raise ScreenshotError(Problem(path, "unreadable image", exc.strerror or str(exc))) from None


def _corrupt(path: Path, exc: ImageError) -> ScreenshotError:
    return ScreenshotError(Problem(path, "corrupt image", str(exc).removeprefix(f"{path} ")))


def _decode(data: bytes, path: Path) -> Image.Image:
    try:
        return decode_image(data, path)  # all of it now: truncated or corrupt files fail here rather than mid-crop
    except ImageError as exc:
        raise _corrupt(path, exc) from None


def _image_size(data: bytes, path: Path) -> tuple[int, int]:
    try:
        return header_size(data, path)
    except ImageError as exc:
        raise _corrupt(path, exc) from None


def _check_box(
    box: Box, index: int, width: int, height: int, allowed: set[str], ann_path: Path
) -> tuple[Label, tuple[int, int, int, int], Problem | None]:
    where = f"box {index} ({box.name})"
    try:
        label = parse_label(box.name, strict=False)
    except LabelError as exc:
        raise ScreenshotError(Problem(ann_path, "unknown label", f"{where}: {exc}")) from None
    if str(label) not in allowed:
        raise ScreenshotError(
            Problem(ann_path, "unknown label", f"{where}: {box.name!r} is not in predefined_classes.txt")
        )
    left, top, right, bottom = box.pixel_box()
    if right <= left or bottom <= top:
        raise ScreenshotError(
            Problem(ann_path, "zero-area box", f"{where}: ({left}, {top}, {right}, {bottom}) has no area")
        )
    clipped = (max(left, 0), max(top, 0), min(right, width), min(bottom, height))
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        raise ScreenshotError(
            Problem(
                ann_path,
                "box outside image",
                f"{where}: ({left}, {top}, {right}, {bottom}) lies outside the {width}x{height} image",
            )
        )
    warning = None
    if clipped != (left, top, right, bottom):
        warning = Problem(
            ann_path,
            "box clipped",
            f"{where}: ({left}, {top}, {right}, {bottom}) clipped to {clipped} ({width}x{height} image)",
            fatal=False,
        )
    return label, clipped, warning


def plan_screenshot(
    image: Path, annotation: AnnotationFile, allowed: set[str], done: Container[str] = frozenset()
) -> ScreenshotPlan:
    """Read and check one screenshot and its annotation; raises ScreenshotError naming the bad file.

    The image is decoded whole (a truncated or corrupt file fails here) unless every box's crop is in ``done``,
    the keys extracted before: a rerun over a folder of extracted screenshots then costs a hash of each, not a
    decode (6000 screenshots: 209 s before).
    """
    data = _read_image(image)
    width, height = _image_size(data, image)
    try:
        ann: Annotation = read_annotation(annotation, image.name, (width, height))
    except AnnotationError as exc:
        kind = "unsafe XML" if "unsafe XML" in str(exc) else "malformed annotation"
        raise ScreenshotError(Problem(annotation.path, kind, str(exc).split(": ", 1)[-1])) from None
    if ann.width and ann.height and (ann.width, ann.height) != (width, height):
        raise ScreenshotError(
            Problem(
                annotation.path,
                "size mismatch",
                f"annotation says {ann.width}x{ann.height}, {image.name} is {width}x{height}",
            )
        )
    sha = hashlib.sha256(data).hexdigest()
    crops, warnings = [], []
    for i, box in enumerate(ann.boxes):
        label, clipped, warning = _check_box(box, i, width, height, allowed, annotation.path)
        if warning:
            warnings.append(warning)
        key = f"{sha}:{label}:{','.join(map(str, clipped))}"
        crops.append(PlannedCrop(label, clipped, key))
    pixels = _decode(data, image) if not crops or any(crop.key not in done for crop in crops) else None
    return ScreenshotPlan(image, annotation, sha, crops, warnings, pixels)


# --- the journal ---


class ExtractionRecord:
    """What the journal says: which box keys are done (and as which file), and moves not yet finished."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.offset = 0
        self.done: dict[str, dict] = {}
        self.intents: dict[str, dict] = {}
        self.moves: dict[str, dict] = {}
        self.refresh()

    def refresh(self) -> None:
        """Take in what was appended since the last read (by this process or a concurrent one)."""
        records, self.offset = self.journal.read_from(self.offset)
        for rec in records:
            op = rec.get("op")
            if op == "crop":
                self.done[rec["key"]] = rec
                self.intents.pop(rec["key"], None)
            elif op == "intent" and rec.get("key") not in self.done:
                self.intents[rec["key"]] = rec
            elif op == "move":
                self.moves[rec["id"]] = rec
            elif op == "moved":
                self.moves.pop(rec["id"], None)

    def files(self) -> Iterable[str]:
        yield from (r["file"] for r in self.done.values())
        yield from (r["file"] for r in self.intents.values())


def journal_for(ws: Workspace) -> Journal:
    return Journal(ws.state / "extracted.jsonl")


def crop_records(ws: Workspace) -> dict[str, dict]:
    """Journal records of every crop ever extracted in the workspace, by crop file name."""
    return {r["file"]: r for r in ExtractionRecord(journal_for(ws)).done.values()}


def _png_key(path: Path) -> str | None:
    try:
        with Image.open(path) as img:
            return img.text.get(PNG_KEY)  # type: ignore[attr-defined]
    except (OSError, AttributeError):
        return None


def _recover(ws: Workspace, journal: Journal, record: ExtractionRecord, paths: dict[str, Path]) -> None:
    """Finish what a killed extraction left: adopt crops written but not recorded, complete moves."""
    for key, intent in list(record.intents.items()):
        path = paths.get(intent["file"])
        if path is not None and _png_key(path) == key:
            done = {**intent, "op": "crop"}
            journal.append(done)
            record.done[key] = done
        record.intents.pop(key, None)
    for move_id, move in list(record.moves.items()):
        for src, dst in move["files"]:
            src_path, dst_path = ws.root / src, ws.root / dst
            if src_path.exists():
                move_no_clobber(src_path, dst_path)
        journal.append({"op": "moved", "id": move_id})
        record.moves.pop(move_id)


# --- extraction ---


def _annotation_files(folder: Path) -> list[Path]:
    out = []
    for p in sorted(folder.rglob("*")):
        if is_sidecar(p):
            continue  # annotate's record of a pre-annotation, not an annotation
        if (p.is_file() and p.suffix.lower() in (".xml", ".json") and not p.name.startswith(".")) or (
            p.is_file()
            and p.suffix.lower() == ".txt"
            and p.name != "classes.txt"
            and (p.parent / "classes.txt").exists()
        ):
            out.append(p)
    return out


def find_screenshots(
    folder: Path, name_filter: str = ""
) -> tuple[list[tuple[Path, AnnotationFile | None]], list[Path]]:
    """Screenshots under ``folder`` paired with their annotations, and annotations that have no image."""
    pairs: list[tuple[Path, AnnotationFile | None]] = []
    claimed: set[Path] = set()
    listings: dict[Path, Siblings] = {}
    for img in sorted(folder.rglob("*")):
        if not img.is_file() or not is_image(img) or img.name.startswith("."):
            continue
        siblings = listings.get(img.parent)
        if siblings is None:
            siblings = listings[img.parent] = Siblings.of(img.parent)
        ann = pick_annotation(img, siblings)
        if ann is not None:
            claimed.add(ann.path)
        rel = img.relative_to(folder).as_posix()
        if name_filter and name_filter not in rel:
            continue
        pairs.append((img, ann))
    orphans = [
        p
        for p in _annotation_files(folder)
        if p not in claimed and (not name_filter or name_filter in p.relative_to(folder).as_posix())
    ]
    return pairs, orphans


def screenshot_states(folder: Path) -> list[ReviewState]:
    """Every screenshot under ``folder`` with who labelled it (see :mod:`toonvision.data.review`)."""
    return [review_state(image, annotation) for image, annotation in find_screenshots(folder)[0]]


def _crop_png(img: Image.Image, box: tuple[int, int, int, int], key: str, source: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text(PNG_KEY, key)
    info.add_text(PNG_SOURCE, source)
    buf = io.BytesIO()
    img.crop(box).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def _move_screenshot(ws: Workspace, journal: Journal, plan: ScreenshotPlan) -> None:
    """Move a screenshot and its annotation to ``raw/processed`` under one stem that is free for both."""
    rel_dir = plan.image.parent.relative_to(ws.screenshots)
    dst_dir = ws.processed / rel_dir
    # A reviewed pre-annotation's sidecar (the models' confidences) goes along with it.
    suffixes = {plan.image: plan.image.suffix, plan.annotation.path: plan.annotation.path.suffix}
    if sidecar_path(plan.image).is_file():
        suffixes[sidecar_path(plan.image)] = SIDECAR_SUFFIX
    stem, n = plan.image.stem, 1
    while any((dst_dir / (stem + suffix)).exists() for suffix in suffixes.values()):
        n += 1
        stem = f"{plan.image.stem}__{n}"
    pairs = [(ws.relative(f), ws.relative(dst_dir / (stem + suffix))) for f, suffix in suffixes.items()]
    move_id = f"{plan.sha256}:{pairs[0][0]}"
    journal.append({"op": "move", "id": move_id, "files": pairs})
    for src, dst in pairs:
        move_no_clobber(ws.root / src, ws.root / dst)
    if plan.annotation.format == "yolo":
        classes = plan.annotation.path.parent / "classes.txt"
        if classes.exists():
            create_exclusive(dst_dir / "classes.txt", classes.read_bytes())
    journal.append({"op": "moved", "id": move_id})


def _screenshot_lock(ws: Workspace, sha: str):
    """Non-blocking per-screenshot lock, so two extractions never crop the same screenshot at once."""
    return file_lock(ws.state / "locks" / f"{sha[:32]}.lock", blocking=False)


@dataclass
class _Run:
    ws: Workspace
    journal: Journal
    record: ExtractionRecord
    next_index: dict[str, int]
    summary: ExtractSummary
    move: bool
    dry_run: bool

    def screenshot(self, image: Path, ann_file: AnnotationFile | None, allowed: set[str]) -> None:
        if ann_file is None:
            self.summary.problems.append(Problem(image, "no annotation", "no .xml/.json/.txt beside it", fatal=False))
            return
        try:
            plan = plan_screenshot(image, ann_file, allowed, self.record.done)
        except ScreenshotError as exc:
            self.summary.problems.append(exc.problem)
            return
        self.summary.problems.extend(plan.warnings)
        if self.dry_run:
            self._plan_only(plan)
            return
        with _screenshot_lock(self.ws, plan.sha256) as locked:
            if not locked:
                self.summary.problems.append(
                    Problem(image, "busy", "another extraction is working on it; left for it", fatal=False)
                )
                return
            self.record.refresh()  # a concurrent run may have finished this screenshot meanwhile
            if not image.exists():
                return  # moved away by that run
            self._crop_all(plan)
            self.summary.extracted += 1
            if self.move:
                _move_screenshot(self.ws, self.journal, plan)
                self.summary.moved += 1

    def _plan_only(self, plan: ScreenshotPlan) -> None:
        for crop in plan.crops:
            if crop.key in self.record.done:
                self.summary.already_extracted += 1
                continue
            label = str(crop.label)
            index = self.next_index.get(label, 0)
            self.summary.planned.append((plan.image, f"{label}_{index}.png"))
            self.next_index[label] = index + 1

    def _crop_all(self, plan: ScreenshotPlan) -> None:
        img = plan.pixels
        source = self.ws.relative(plan.image)
        street = street_of(plan.image.name)
        for crop in plan.crops:
            if crop.key in self.record.done:
                self.summary.already_extracted += 1
                continue
            if img is None:  # the journal only grows, so planning saw this crop as new and decoded: kept for safety
                img = _decode(_read_image(plan.image), plan.image)
            label = str(crop.label)
            data = _crop_png(img, crop.box, crop.key, source)
            folder = self.ws.unsorted_dir(crop.label.kind)
            index = self.next_index.get(label, 0)
            while True:
                name = f"{label}_{index}.png"
                entry = {
                    "key": crop.key,
                    "file": name,
                    "label": label,
                    "source": source,
                    "sha256": plan.sha256,
                    "box": list(crop.box),
                    "street": street,
                }
                # The intent comes first: if we die after the link, the next run finds the file through
                # it and adopts it instead of extracting the box again.
                self.journal.append({**entry, "op": "intent"})
                if create_exclusive(folder / name, data):
                    break
                index += 1  # taken by a concurrent extraction, or by a file we did not know of
            self.journal.append({**entry, "op": "crop"})
            self.record.done[crop.key] = entry
            self.next_index[label] = index + 1
            self.summary.crops_written.append(folder / name)
            self.summary.per_label[label] += 1


def extract(
    ws: Workspace,
    *,
    name_filter: str = "",
    move: bool = False,
    dry_run: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_screenshot: Callable[[Path], None] | None = None,
    include_unreviewed: bool = False,
) -> ExtractSummary:
    """Extract every annotated screenshot under ``ws.screenshots`` into ``unsorted/<kind>/``.

    Pre-annotations that nobody has reviewed (see :mod:`toonvision.data.review`) are left out and listed in
    ``summary.unreviewed``, unless ``include_unreviewed``.

    ``on_start(total)`` and ``on_screenshot(path)`` drive a progress display.
    """
    ws.init()
    allowed = {str(label) for label in ws.labels()}
    summary = ExtractSummary()
    journal = journal_for(ws)
    with ws.lock(shared=True):
        samples = find_samples(ws)
        paths = {s.name: s.path for s in samples}
        record = ExtractionRecord(journal)
        if not dry_run:
            for _, _, folder in ws.sample_dirs():
                remove_stale_tmp(folder)
            _recover(ws, journal, record, paths)
        next_index = {k: v + 1 for k, v in max_indexes([*paths, *record.files()]).items()}
        run = _Run(ws, journal, record, next_index, summary, move, dry_run)

        pairs, orphans = find_screenshots(ws.screenshots, name_filter)
        summary.screenshots = len(pairs)
        for orphan in orphans:
            summary.problems.append(
                Problem(orphan, "missing image", "annotation with no image of the same name beside it")
            )
        if on_start:
            on_start(len(pairs))
        for image, ann_file in pairs:
            try:
                if not include_unreviewed and review_state(image, ann_file).status == PRE_ANNOTATED:
                    summary.unreviewed.append(image)
                    continue
                run.screenshot(image, ann_file, allowed)
            finally:
                if on_screenshot:
                    on_screenshot(image)
    return summary
