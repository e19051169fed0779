"""Dataset generation: presets, per-class weights, files in the workspace, worker processes or Ray, resume.

Screenshot ``i`` of seed ``s`` is a pure function of (s, i, size, weights, realism): the generator of each
screenshot is seeded from (s, i), PNGs are written by Pillow at a fixed compression level with no metadata, so
the same settings give the same bytes whichever process renders which index and in what order. That is
what makes resuming safe: an index whose files exist is done; a missing file is rendered again and comes out
identical; a file that exists but differs is someone else's and is left alone (and reported).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import multiprocessing
import os
import random
import re
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from toonvision.data.annotations import Annotation, AnnotationError, read_voc, voc_bytes, yolo_text
from toonvision.data.files import create_exclusive, remove_stale_tmp, write_text_atomic
from toonvision.data.taxonomy import ANIMALS, SUITS, all_labels
from toonvision.data.workspace import Workspace
from toonvision.synth.scene import Conditions, Realism, street_for

PNG_LEVEL = 3  # zlib level: fixed, so bytes are reproducible; 3 is a good speed/size trade-off here
INDEX_DIGITS = 5

# Relative frequencies shaped like the spec's street data: Cogs about twice as common as Toons, the two top
# Cogs of every suit rare (they live in Cog buildings), some animals over-represented (cat, dog, duck, mouse).
_SEED_COGS: dict[str, tuple[float, ...]] = {
    "bb": (1.3, 1.0, 1.2, 0.9, 1.1, 0.8, 0.25, 0.15),
    "lb": (1.2, 1.4, 0.9, 1.0, 1.1, 0.9, 0.2, 0.2),
    "cb": (1.1, 0.9, 1.0, 1.3, 0.8, 1.0, 0.15, 0.25),
    "sb": (1.4, 1.2, 1.0, 0.9, 1.0, 1.1, 0.2, 0.15),
}
_SEED_TOONS: dict[str, float] = {
    "bear": 0.9,
    "cat": 2.2,
    "crocodile": 0.6,
    "deer": 0.7,
    "dog": 2.0,
    "duck": 1.8,
    "horse": 0.8,
    "monkey": 0.9,
    "mouse": 1.6,
    "pig": 1.0,
    "rabbit": 1.1,
}


def _seed_weights() -> dict[str, float]:
    w = {f"cog_{s.short}_{n}": _SEED_COGS[s.short][i] for s in SUITS for i, n in enumerate(s.cogs)}
    w.update({f"toon_{a}": _SEED_TOONS[a] for a in ANIMALS})
    return w


def _balanced_weights() -> dict[str, float]:
    # The spec's "desired" lines: 20 per Cog label (640 Cogs) and 58 per animal (638 Toons).
    w = {f"cog_{s.short}_{n}": 20.0 for s in SUITS for n in s.cogs}
    w.update({f"toon_{a}": 58.0 for a in ANIMALS})
    return w


@dataclass(frozen=True)
class Preset:
    name: str
    screenshots: int
    weights: dict[str, float]
    description: str


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "seed",
            262,
            _seed_weights(),
            "like the spec's data: ~650 boxes, Cogs ~2:1 over Toons, top Cogs rare, uneven animals",
        ),
        Preset(
            "balanced", 500, _balanced_weights(), "the spec's desired balance: ~20 boxes per Cog label, ~58 per animal"
        ),
        Preset("large", 10000, _balanced_weights(), "balanced classes at scale"),
        Preset("tiny", 12, _seed_weights(), "for a quick look or a test"),
    )
}


@dataclass(frozen=True)
class SynthConfig:
    """Everything that decides the bytes of a synthetic dataset."""

    preset: str = "seed"
    seed: int = 0
    screenshots: int = 262
    width: int = 1280
    height: int = 720
    weights: Mapping[str, float] = field(default_factory=_seed_weights)
    yolo: bool = False
    masks: bool = False
    realism: Realism = field(default_factory=Realism)
    conditions: Conditions = field(default_factory=Conditions)

    @classmethod
    def from_preset(cls, name: str = "seed", **overrides: object) -> SynthConfig:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r} (expected one of {', '.join(PRESETS)})")
        p = PRESETS[name]
        cfg = cls(preset=name, screenshots=p.screenshots, weights=dict(p.weights))
        return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]

    def stem(self, index: int) -> str:
        return f"{street_for(self.seed, index)}_{index:0{INDEX_DIGITS}d}"

    def validate(self) -> SynthConfig:
        """The configuration, or ValueError saying which setting cannot be."""
        self.conditions.validate()
        if self.masks and self.conditions.interface:
            raise ValueError(
                "--masks and --interface do not go together: the masks would show what the interface hides"
            )
        return self

    def fingerprint(self) -> dict:
        d = asdict(self)
        if self.conditions.is_default:
            d.pop("conditions")  # the world as it always was: workspaces rendered before these settings match
        d["weights"] = {k: v for k, v in sorted(self.weights.items())}
        d.pop("screenshots")
        d.pop("yolo")
        d.pop("masks")
        return d


def parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not m:
        raise ValueError(f"bad size {text!r}: expected WIDTHxHEIGHT such as 1280x720")
    w, h = int(m.group(1)), int(m.group(2))
    if not (64 <= w <= 8192 and 64 <= h <= 8192):
        raise ValueError(f"bad size {text!r}: width and height must be between 64 and 8192")
    return w, h


def apply_weights(base: Mapping[str, float], specs: Iterable[str]) -> dict[str, float]:
    """Multiply class weights by ``KEY=FACTOR`` specs.

    KEY is a label (``toon_cat``, ``cog_bb_flunky``), a suit (``cog_bb``), or a kind (``cog``, ``toon``);
    every label it covers has its weight multiplied by FACTOR (0 removes the class).
    """
    out = dict(base)
    labels = [str(lab) for lab in all_labels()]
    for spec in specs:
        key, sep, value = spec.partition("=")
        key = key.strip().lower()
        try:
            factor = float(value)
        except ValueError:
            factor = -1.0
        if not sep or factor < 0 or factor != factor:
            raise ValueError(f"bad weight {spec!r}: expected KEY=FACTOR with FACTOR >= 0, e.g. toon_cat=3")
        hits = [lab for lab in labels if lab == key or lab.startswith(key + "_")]
        if not hits:
            raise ValueError(
                f"bad weight {spec!r}: {key!r} matches no class (use a label such as toon_cat or "
                "cog_bb_flunky, a suit such as cog_bb, or cog / toon)"
            )
        for lab in hits:
            out[lab] = out.get(lab, 0.0) * factor
    if sum(out.values()) <= 0:
        raise ValueError("every class weight is zero: nothing to render")
    return out


# --- workspace files ----------------------------------------------------------------------------------------


def masks_dir(ws: Workspace) -> Path:
    # Beside, not inside, raw/screenshots: extraction must never take a mask for a screenshot.
    return ws.raw / "masks"


@dataclass(frozen=True)
class Targets:
    png: Path
    xml: Path
    yolo: Path | None
    mask: Path | None


def targets(ws: Workspace, cfg: SynthConfig, index: int) -> Targets:
    stem = cfg.stem(index)
    return Targets(
        png=ws.screenshots / f"{stem}.png",
        xml=ws.screenshots / f"{stem}.xml",
        yolo=ws.screenshots / f"{stem}.txt" if cfg.yolo else None,
        mask=masks_dir(ws) / f"{stem}.mask.png" if cfg.masks else None,
    )


def yolo_classes() -> list[str]:
    return [str(lab) for lab in all_labels()]


@dataclass
class IndexResult:
    index: int
    stem: str
    status: str  # written | conflict | error
    boxes: Counter = field(default_factory=Counter)
    conflicts: list[str] = field(default_factory=list)
    message: str = ""


@dataclass
class Summary:
    written: int = 0
    skipped: int = 0  # complete already (in raw/screenshots or moved to raw/processed)
    conflicts: list[str] = field(default_factory=list)  # files that exist with other content, left alone
    errors: list[str] = field(default_factory=list)
    boxes: Counter = field(default_factory=Counter)  # boxes per class in screenshots written by this run
    existing_boxes: Counter = field(default_factory=Counter)  # boxes per class in skipped screenshots
    interrupted: bool = False
    settings_changed: bool = False
    seconds: float = 0.0

    @property
    def total_boxes(self) -> Counter:
        return self.boxes + self.existing_boxes


def encode_png(array, mode: str | None = None) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format="PNG", compress_level=PNG_LEVEL)
    return buf.getvalue()


def render_files(
    renderer, cfg: SynthConfig, index: int, t: Targets, png_path: str | None = None
) -> tuple[dict[Path, bytes], Counter]:
    """Render screenshot ``index`` and return the bytes of each of its files (PNG first, XML last).

    ``png_path`` is the absolute path the XML records (default: ``t.png`` resolved here); a process on
    another machine is given the driver's, so the XML comes out as if the driver had rendered it."""
    res = renderer.render_index(cfg.seed, index, dict(cfg.weights), cfg.realism, conditions=cfg.conditions)
    image, boxes = res.image, res.boxes
    if cfg.conditions.interface:
        from toonvision.synth.interface import draw_interface

        # Its own stream: the street's draws stay the same with and without the interface.
        image, boxes = draw_interface(image, boxes, random.Random(f"toonvision-synth/{cfg.seed}/{index}/interface"))
    if cfg.conditions.jpeg is not None:
        from toonvision.synth.interface import jpeg_roundtrip

        image = jpeg_roundtrip(image, cfg.conditions.jpeg)
    ann = Annotation(
        filename=t.png.name,
        width=cfg.width,
        height=cfg.height,
        depth=3,
        boxes=boxes,
        folder=t.png.parent.name,
        path=png_path or str(t.png.resolve()),
    )
    files: dict[Path, bytes] = {t.png: encode_png(image)}
    if t.mask is not None:
        files[t.mask] = encode_png(res.mask())
    if t.yolo is not None:
        files[t.yolo] = yolo_text(ann, yolo_classes()).encode("utf-8")
    files[t.xml] = voc_bytes(ann)
    return files, Counter(b.name for b in boxes)


def write_files(files: dict[Path, bytes]) -> list[str]:
    """Create every file that is missing; returns the paths that exist with other content (nothing written)."""
    conflicts = []
    for path, data in files.items():
        with contextlib.suppress(FileNotFoundError):
            if path.read_bytes() != data:
                conflicts.append(str(path))
    if conflicts:
        # Someone else's screenshot or annotation has this name: pairing ours with it would corrupt both.
        return conflicts
    for path, data in files.items():
        if not create_exclusive(path, data) and path.read_bytes() != data:
            # Lost a race against another writer with different content.
            conflicts.append(str(path))
    return conflicts


# --- worker processes ---------------------------------------------------------------------------------------


def _worker_init() -> None:
    # Ctrl-C reaches the whole process group; only the parent handles it (it shuts the pool down once the
    # screenshots being drawn are written), so the workers do not each print a traceback.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _worker_task(cfg: SynthConfig, root: str, index: int) -> IndexResult:
    from toonvision.synth.render import get_renderer

    return _do_index(get_renderer(cfg.width, cfg.height), cfg, Workspace(Path(root)), index)


def _do_index(renderer, cfg: SynthConfig, ws: Workspace, index: int) -> IndexResult:
    t = targets(ws, cfg, index)
    stem = t.png.stem
    try:
        files, boxes = render_files(renderer, cfg, index, t)
    except Exception as exc:
        return IndexResult(index, stem, "error", message=f"{stem}: {type(exc).__name__}: {exc}")
    return _store(IndexResult(index, stem, "written", boxes=boxes), files)


def _store(r: IndexResult, files: dict[Path, bytes]) -> IndexResult:
    """Write a rendered screenshot's files; ``r`` as it turned out (written, conflict or error)."""
    if r.status != "written":
        return r
    try:
        conflicts = write_files(files)
    except Exception as exc:
        return IndexResult(r.index, r.stem, "error", message=f"{r.stem}: {type(exc).__name__}: {exc}")
    if conflicts:
        return IndexResult(r.index, r.stem, "conflict", conflicts=conflicts)
    return r


# A worker process that dies (killed, out of memory) takes the pool with it: the screenshots it left are
# rendered by a new pool, this many times, before they are reported as errors; the same command renders them.
PROCESS_RETRIES = 2


def _render_in_processes(
    ws: Workspace, cfg: SynthConfig, todo: list[int], n_workers: int, absorb: Callable[[IndexResult], None]
) -> None:
    """Every index of ``todo`` rendered by ``n_workers`` worker processes, each writing its own files.

    A ProcessPoolExecutor rather than multiprocessing.Pool: a Pool whose worker is killed waits forever for
    the task that worker held (seen: an out-of-memory kill hung a 6000-screenshot run at 5999), while the
    executor says so (BrokenProcessPool), and the indices not yet done go to a new pool."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    left = set(todo)
    task = functools.partial(_worker_task, cfg, str(ws.root))
    for _ in range(PROCESS_RETRIES + 1):
        # spawn: a fresh interpreter per worker, so no Panda3D or thread state is inherited by fork.
        pool = ProcessPoolExecutor(n_workers, multiprocessing.get_context("spawn"), initializer=_worker_init)
        futures = {pool.submit(task, i): i for i in sorted(left)}
        try:
            for future in as_completed(futures):
                absorb(future.result())
                left.discard(futures[future])
        except BrokenProcessPool:
            pass
        finally:
            # After Ctrl-C or an error: no new screenshot starts; the ones being drawn are finished (each is
            # under a second), so every file on disk is complete and the same command resumes.
            pool.shutdown(wait=True, cancel_futures=True)
        if not left:
            return
    why = f"its render worker died (killed, or out of memory) and {PROCESS_RETRIES} retries did not finish it"
    for i in sorted(left):
        stem = targets(ws, cfg, i).png.stem
        absorb(IndexResult(i, stem, "error", message=f"{stem}: {why}"))


# --- Ray tasks ----------------------------------------------------------------------------------------------

# A chunk whose worker dies (killed, out of memory, a lost node) is rendered again this many times by Ray
# before its screenshots are reported as errors; the same command renders them again.
RAY_RETRIES = 2
# What the user can do when the cluster given does not answer; ends RayUnavailable's message.
RAY_FALLBACK = "without --address, synth renders on this machine"


def _render_chunk(
    cfg: SynthConfig, jobs: list[tuple[int, Targets, str]]
) -> list[tuple[IndexResult, dict[Path, bytes]]]:
    """A Ray task: render each (index, targets, XML path) with this worker's renderer. The files come back as
    bytes and the driver writes them, so a node need not see the driver's disk."""
    from toonvision.synth.render import get_renderer

    renderer = get_renderer(cfg.width, cfg.height)
    out = []
    for index, t, png_path in jobs:
        stem = t.png.stem
        try:
            files, boxes = render_files(renderer, cfg, index, t, png_path=png_path)
        except Exception as exc:
            out.append((IndexResult(index, stem, "error", message=f"{stem}: {type(exc).__name__}: {exc}"), {}))
        else:
            out.append((IndexResult(index, stem, "written", boxes=boxes), files))
    return out


def chunk_size(todo: int, slots: int) -> int:
    """Screenshots per Ray task: a few, so that per-task overhead is small, the progress bar moves and a dead
    worker costs little, but enough tasks for every slot to get several (a fast node takes more)."""
    return max(1, min(8, todo // (4 * slots)))


def _render_on_ray(
    ws: Workspace, cfg: SynthConfig, todo: list[int], workers: int, address: str, absorb: Callable[[IndexResult], None]
) -> None:
    """Every index of ``todo`` rendered by Ray tasks (``workers`` at a time, 0: as many as the cluster has
    CPUs), their files written here as they arrive."""
    from toonvision.learning.cluster import death_reason, ray_session

    with ray_session(address, workers, fallback=RAY_FALLBACK):
        import ray
        from ray.exceptions import RayError

        slots = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        # Without a worker count, twice as many tasks as CPUs are queued so that no CPU waits for the driver.
        in_flight = workers or 2 * slots
        size = chunk_size(len(todo), slots)
        chunks = deque(todo[i : i + size] for i in range(0, len(todo), size))
        task = ray.remote(num_cpus=1, max_retries=RAY_RETRIES)(_render_chunk)
        running: dict[Any, list[tuple[int, Targets, str]]] = {}
        try:
            while chunks or running:
                while chunks and len(running) < in_flight:
                    jobs = [(i, t, str(t.png.resolve())) for i in chunks.popleft() for t in [targets(ws, cfg, i)]]
                    running[task.remote(cfg, jobs)] = jobs
                [ref], _ = ray.wait(list(running), num_returns=1)
                jobs = running.pop(ref)
                try:
                    rendered = ray.get(ref)
                except RayError as exc:
                    why = f"its Ray worker died and Ray's {RAY_RETRIES} retries did not finish it ({death_reason(exc)})"
                    for i, t, _ in jobs:
                        absorb(IndexResult(i, t.png.stem, "error", message=f"{t.png.stem}: {why}"))
                    continue
                for r, files in rendered:
                    absorb(_store(r, files))
        except BaseException:
            # Ctrl-C or an error here: nothing more is written, so what is on disk is complete and resumable.
            for ref in running:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            raise


# --- the run ------------------------------------------------------------------------------------------------


def _files_under(folder: Path) -> dict[str, Path]:
    """File name -> path for every file below ``folder`` (extraction may keep sub-folders in processed/)."""
    if not folder.is_dir():
        return {}
    return {p.name: p for p in sorted(folder.rglob("*")) if p.is_file()}


def plan_indices(ws: Workspace, cfg: SynthConfig, summary: Summary) -> list[int]:
    """Indices still to render; complete ones are counted as skipped (their boxes tallied from their XML)."""
    here = {p.name for p in ws.screenshots.iterdir()} if ws.screenshots.is_dir() else set()
    here_masks = {p.name for p in masks_dir(ws).iterdir()} if cfg.masks and masks_dir(ws).is_dir() else set()
    processed = _files_under(ws.processed)
    todo = []
    for i in range(cfg.screenshots):
        t = targets(ws, cfg, i)
        done_here = t.png.name in here and t.xml.name in here
        if done_here and t.yolo is not None:
            done_here = t.yolo.name in here
        if done_here and t.mask is not None:
            done_here = t.mask.name in here_masks
        done_processed = t.png.name in processed and t.xml.name in processed
        if done_here or done_processed:
            summary.skipped += 1
            xml = t.xml if done_here else processed[t.xml.name]
            with contextlib.suppress(AnnotationError, OSError):
                summary.existing_boxes.update(b.name for b in read_voc(xml).boxes)
        else:
            todo.append(i)
    return todo


def _check_settings(ws: Workspace, cfg: SynthConfig, summary: Summary) -> None:
    path = ws.state / "synth.json"
    current = cfg.fingerprint()
    current["realism"] = asdict(cfg.realism)
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = None
    if previous is not None and previous != json.loads(json.dumps(current)):
        summary.settings_changed = True
    write_text_atomic(path, json.dumps(current, indent=2, sort_keys=True) + "\n")


def resolve_workers(workers: int) -> int:
    if workers > 0:
        return workers
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def generate(
    ws: Workspace,
    cfg: SynthConfig,
    workers: int = 0,
    progress: Callable[[IndexResult], None] | None = None,
    on_plan: Callable[[int], None] | None = None,
    address: str | None = None,
) -> Summary:
    """Render ``cfg.screenshots`` screenshots into ``ws``, skipping those already done.

    ``workers`` processes (0 = one per core) each run their own Panda3D; with one worker everything runs in
    this process. With ``address`` (``"local"`` for a private local Ray, ``"auto"``, ``host:port`` or
    ``ray://host:port``) Ray tasks render instead (``workers`` at a time, 0 = the cluster's CPUs) and send the
    files back to be written here; :class:`~toonvision.learning.cluster.RayUnavailable` is raised when no
    cluster answers. The files are the same bytes either way. ``on_plan`` is told how many indices remain;
    ``progress`` is called once per finished index. Ctrl-C stops the run cleanly (``summary.interrupted``);
    every file is complete or absent, so rerunning resumes where it stopped.
    """
    import time

    started = time.monotonic()
    ws.init()
    summary = Summary()
    _check_settings(ws, cfg, summary)
    if cfg.yolo:
        classes = "".join(f"{c}\n" for c in yolo_classes()).encode("utf-8")
        path = ws.screenshots / "classes.txt"
        if not create_exclusive(path, classes) and path.read_bytes() != classes:
            raise ValueError(f"{path} exists with another class list; YOLO indices would not match it")
    if cfg.masks:
        masks_dir(ws).mkdir(parents=True, exist_ok=True)
    stems = {cfg.stem(i) for i in range(cfg.screenshots)}
    remove_stale_tmp([ws.screenshots, masks_dir(ws)], stems)
    todo = plan_indices(ws, cfg, summary)
    if on_plan is not None:
        on_plan(len(todo))
    n_workers = min(resolve_workers(workers), max(1, len(todo)))

    def absorb(r: IndexResult) -> None:
        if r.status == "written":
            summary.written += 1
            summary.boxes.update(r.boxes)
        elif r.status == "conflict":
            summary.conflicts.extend(r.conflicts)
        else:
            summary.errors.append(r.message)
        if progress is not None:
            progress(r)

    try:
        if not todo:
            pass
        elif address:
            _render_on_ray(ws, cfg, todo, workers, address, absorb)
        elif n_workers == 1:
            from toonvision.synth.render import get_renderer

            renderer = get_renderer(cfg.width, cfg.height)
            for i in todo:
                absorb(_do_index(renderer, cfg, ws, i))
        else:
            _render_in_processes(ws, cfg, todo, n_workers, absorb)
    except KeyboardInterrupt:
        summary.interrupted = True
    summary.seconds = time.monotonic() - started
    return summary
