"""The live screen mode's loop: frames in, every Toon and Cog found and named, one record per frame out.

    for record in watch(folder_frames(Path("shots")), Pipeline.load("img"), fps=10):
        print(record.to_dict())

A source is any iterator of ``(name, RGB uint8 array)``: the screen (:func:`screen_frames`), a folder of
screenshots (:func:`folder_frames`), a video (:func:`video_frames`), or anything a caller makes (the CLI
streams the synth renderer's pictures, which this stage may not import). Every record carries the time spent
waiting for the frame (capture), finding the boxes (detect) and naming them (classify), so a bot can see what
its budget goes to.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toonvision.data.detection import MIN_SIDE, screenshot_array
from toonvision.data.images import ImageError, is_image
from toonvision.learning.backend import available_cores
from toonvision.serving.pipeline import Pipeline, Results

Frame = tuple[str, np.ndarray]  # a name (file, video frame number, "screen") and its RGB uint8 pixels
STAGES = ("capture", "detect", "classify")
DEFAULT_FPS = 10.0


class SourceError(ValueError):
    """A source that cannot give a single frame: a missing folder, a video that does not open, no display."""


class RegionError(SourceError):
    """A --region that is not on the screen: a screen is there, only the region is wrong."""


def leave_a_core() -> int:
    """Threads for inference that leave one core to the game (and to capturing), at least one."""
    return max(1, available_cores() - 1)


# --- sources ---------------------------------------------------------------------------------------------


def folder_frames(
    folder: Path, *, repeat: bool = False, on_skip: Callable[[Path, str], None] | None = None
) -> Iterator[Frame]:
    """The screenshots of ``folder`` (recursively, by name), once or over and over (``repeat``: a stand-in for
    a screen that never ends). A file that is not a readable screenshot is reported to ``on_skip`` and
    skipped, once; SourceError when the folder does not exist or holds no image."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(f"{folder} is not a folder of screenshots (it does not exist)")
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and is_image(p))
    if not paths:
        raise SourceError(f"{folder} holds no screenshots (png, jpg, jpeg or bmp)")
    return _folder_frames(folder, paths, repeat, on_skip)


def _folder_frames(
    folder: Path, paths: list[Path], repeat: bool, on_skip: Callable[[Path, str], None] | None
) -> Iterator[Frame]:
    bad: set[Path] = set()
    while True:
        for path in paths:
            if path in bad:
                continue
            try:
                image = screenshot_array(path)
            except (ImageError, OSError, ValueError) as exc:
                bad.add(path)
                if on_skip is not None:
                    on_skip(path, str(exc))
                continue
            yield str(path.relative_to(folder)), image
        if not repeat or len(bad) == len(paths):  # nothing left to show: stop rather than spin
            return


def video_frames(path: Path) -> Iterator[Frame]:
    """The frames of a video file, in order, named by their number; SourceError when OpenCV cannot open it."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path} does not exist")
    with _native_stderr_silenced():
        capture = cv2.VideoCapture(str(path))
        ok, first = capture.read() if capture.isOpened() else (False, None)
    if not ok:
        capture.release()
        raise SourceError(f"{path} is not a video OpenCV can read")
    height, width = first.shape[:2]
    if min(width, height) < MIN_SIDE:
        capture.release()
        raise SourceError(
            f"{path}: its frames are {width}x{height}, too small to hold a Toon or Cog (at least {MIN_SIDE} px a side)"
        )
    return _video_frames(capture, first)


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """FFmpeg writes its complaints about a file straight to file descriptor 2 (e.g. "moov atom not found");
    the error raised here says it once, plainly, so its lines are muted while a video is opened."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (an embedding host): nothing to mute
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _video_frames(capture: Any, first: np.ndarray) -> Iterator[Frame]:
    import cv2

    try:
        frame, index = first, 0
        while frame is not None:
            yield f"frame {index}", cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            ok, frame = capture.read()
            frame, index = (frame if ok else None), index + 1
    finally:
        capture.release()


def parse_region(text: str) -> tuple[int, int, int, int]:
    """``x,y,w,h`` (pixels of the whole desktop) -> a tuple; ValueError says what is wrong."""
    try:
        x, y, w, h = (int(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise ValueError(f"--region {text!r}: expected x,y,width,height in pixels, e.g. 0,0,1280,720") from None
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise ValueError(f"--region {text!r}: the width and height must be positive, x and y not negative")
    return x, y, w, h


Box = tuple[int, int, int, int]  # x, y, width, height in pixels of the whole desktop


def _check_display() -> None:
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        # mss would fail later and less plainly; Wayland without XWayland is not capturable by mss either.
        raise SourceError("no display to capture ($DISPLAY is not set)")


def find_window(title: str) -> Callable[[], Box | None]:
    """The window whose title holds ``title`` (any case): a function giving its place on the desktop now, or
    None once it is closed, so that capture follows a window being moved. On Linux through X11 (python-xlib:
    every window of the display, also without a window manager), elsewhere through PyWinCtl. SourceError when
    no window matches, naming some that exist."""
    _check_display()
    if sys.platform.startswith("linux"):
        return _x11_window(title)
    try:
        import pywinctl
    except ImportError:
        raise SourceError("capturing a window by title needs PyWinCtl here (pip install pywinctl)") from None
    found = [w for w in pywinctl.getAllWindows() if title.lower() in (w.title or "").lower() and w.isVisible]
    if not found:
        titles = [w.title for w in pywinctl.getAllWindows() if w.title][:5]
        raise SourceError(f"no window titled like {title!r} (open: {', '.join(map(repr, titles)) or 'none'})")
    window = found[0]

    def place() -> Box | None:
        if not window.isAlive:
            return None
        return window.left, window.top, window.width, window.height

    return place


def _x11_window(title: str) -> Callable[[], Box | None]:
    from Xlib import X, display, error

    try:
        screen = display.Display()
    except Exception as exc:  # Xlib's own DisplayError and connection errors
        raise SourceError(f"the display cannot be opened: {exc}") from None
    root = screen.screen().root
    seen: list[str] = []
    match = None
    stack = [root]
    while stack and match is None:  # depth first: top-level windows before their children
        window = stack.pop()
        try:
            name = window.get_wm_name()
            viewable = window.get_attributes().map_state == X.IsViewable
            children = window.query_tree().children
        except error.XError:
            continue  # closed while we looked
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        if name and viewable:
            seen.append(name)
            if title.lower() in name.lower():
                match = window
        stack.extend(reversed(children))
    if match is None:
        shown = ", ".join(map(repr, seen[:5])) or "none with a title"
        raise SourceError(f"no window titled like {title!r} (open: {shown})")

    def place() -> Box | None:
        try:
            geometry = match.get_geometry()
            origin = root.translate_coords(match, 0, 0)
        except error.XError:
            return None
        return origin.x, origin.y, geometry.width, geometry.height

    return place


def screen_frames(region: Box | None = None, window: Callable[[], Box | None] | None = None) -> Iterator[Frame]:
    """The screen (every monitor, ``region`` x, y, width, height, or the place of a :func:`find_window`
    window, followed as it moves) over and over, through mss; SourceError when there is no display to capture.
    A window's frames end when it is closed."""
    _check_display()
    import mss

    try:
        grabber = (getattr(mss, "MSS", None) or mss.mss)()  # mss 10.2 renamed the class, deprecating mss.mss
        monitor = grabber.monitors[0]
        if region is not None:
            monitor = _monitor(_within(region, monitor))
        if window is not None:
            place = window()
            if place is None:
                raise SourceError("the window was closed")
            monitor = _monitor(_on_desktop(place, grabber.monitors[0]))
        shot = grabber.grab(monitor)  # once now, so that a display that refuses is said before the loop
    except SourceError:
        raise
    except Exception as exc:  # mss raises its own ScreenShotError, and XErrors through it
        raise SourceError(f"the screen cannot be captured: {exc}") from None
    return _screen_frames(grabber, monitor, shot, window)


def _monitor(box: Box) -> dict[str, int]:
    return {"left": box[0], "top": box[1], "width": box[2], "height": box[3]}


def _within(region: Box, desktop: dict[str, int]) -> Box:
    """``region`` when the whole of it is on the desktop; SourceError otherwise (X11 answers a grab past the
    screen's edge with a protocol error that says nothing of the region)."""
    x, y, w, h = region
    right, bottom = desktop["left"] + desktop["width"], desktop["top"] + desktop["height"]
    if x < desktop["left"] or y < desktop["top"] or x + w > right or y + h > bottom:
        raise RegionError(
            f"--region {x},{y},{w},{h} is not on the screen, which spans {desktop['left']},{desktop['top']} to "
            f"{right},{bottom}"
        )
    return region


def _on_desktop(box: Box, desktop: dict[str, int]) -> Box:
    """``box`` clipped to the desktop: a window partly off screen is captured where it can be seen."""
    left, top = max(box[0], desktop["left"]), max(box[1], desktop["top"])
    right = min(box[0] + box[2], desktop["left"] + desktop["width"])
    bottom = min(box[1] + box[3], desktop["top"] + desktop["height"])
    if right - left < 1 or bottom - top < 1:
        raise SourceError(f"the window at {box} is off the screen")
    return left, top, right - left, bottom - top


def _screen_frames(
    grabber: Any, monitor: dict[str, int], shot: Any, window: Callable[[], Box | None] | None
) -> Iterator[Frame]:
    try:
        while True:
            # mss gives BGRA rows; its .rgb is a packed copy, which is what the detector wants.
            yield "screen", np.frombuffer(shot.rgb, np.uint8).reshape(shot.height, shot.width, 3)
            if window is not None:
                place = window()
                if place is None:
                    return  # the window was closed: the source has ended
                try:
                    monitor = _monitor(_on_desktop(place, grabber.monitors[0]))
                except SourceError:
                    continue  # moved off screen for now: show the last frame again
            shot = grabber.grab(monitor)
    finally:
        grabber.close()


# --- the loop ----------------------------------------------------------------------------------------------


@dataclass
class FrameRecord:
    """What was found on one frame, and what it cost."""

    index: int
    name: str
    time: float  # wall clock (seconds since the epoch) when the frame was in hand
    results: Results  # the boxes, their labels, and the models that saw them
    latency_ms: dict[str, float]  # capture, detect, classify, total
    image: np.ndarray | None = field(default=None, repr=False)  # the frame itself, for drawing; not in to_dict

    def to_dict(self) -> dict[str, Any]:
        latency = {k: round(v, 2) for k, v in self.latency_ms.items()}
        boxes = [{k: v for k, v in b.to_dict().items() if k != "true_label"} for b in self.results.boxes]
        return {
            "frame": self.index,
            "source": self.name,
            "time": round(self.time, 3),
            "boxes": boxes,
            "latency_ms": latency,
            "models": self.results.models,
        }


def watch(
    frames: Iterable[Frame],
    pipeline: Pipeline,
    *,
    fps: float = DEFAULT_FPS,
    on_frame: Callable[[FrameRecord], None] | None = None,
    max_frames: int | None = None,
    stop: threading.Event | None = None,
    keep_image: bool = False,
    near_misses: bool = False,
) -> Iterator[FrameRecord]:
    """Find and label every Toon and Cog of every frame of ``frames`` with ``pipeline`` (which needs a
    detector), at most ``fps`` a second (0: as fast as it goes), until the source ends, ``max_frames`` were done
    or ``stop`` is set; yields one :class:`FrameRecord` per frame (with the frame itself when ``keep_image``, and
    the detector's near misses in its results with ``near_misses``) after handing it to ``on_frame``.
    SourceError for a frame that cannot be looked at (too small, say)."""
    if pipeline.detector is None:
        raise ValueError("the live mode needs a detector: train one with 'toonvision train --task detect'")
    stop = stop or threading.Event()
    period = 1.0 / fps if fps and fps > 0 else 0.0
    source = iter(frames)
    index = 0
    while not stop.is_set() and (max_frames is None or index < max_frames):
        start = time.perf_counter()
        try:
            name, image = next(source)
        except StopIteration:
            return
        stamp = time.time()
        captured = time.perf_counter()
        try:
            array = screenshot_array(image, name)
        except ImageError as exc:
            raise SourceError(str(exc)) from None
        found, near = pipeline.find(array, near_misses=near_misses)
        detected = time.perf_counter()
        results = pipeline.label_found(array, found, array=array, source=name)
        results.near_misses = near
        done = time.perf_counter()
        latency = {
            "capture": (captured - start) * 1000,
            "detect": (detected - captured) * 1000,
            "classify": (done - detected) * 1000,
            "total": (done - start) * 1000,
        }
        record = FrameRecord(index, name, stamp, results, latency, image if keep_image else None)
        if on_frame is not None:
            on_frame(record)
        yield record
        index += 1
        if period:
            # Sleep off what is left of the frame's slot, so the game keeps the cores; wait() wakes on stop.
            stop.wait(max(0.0, start + period - time.perf_counter()))


@dataclass
class WatchStats:
    """Frames per second and latency percentiles of a watch so far (the status line and the summary)."""

    started: float = field(default_factory=time.perf_counter)
    frames: int = 0
    boxes: int = 0
    latency: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in (*STAGES, "total")})
    stamps: list[float] = field(default_factory=list)  # when the last 21 frames were done: the recent rate

    def add(self, record: FrameRecord) -> None:
        self.stamps.append(time.perf_counter())
        del self.stamps[:-21]
        self.frames += 1
        self.boxes += len(record.results.boxes)
        for stage, ms in record.latency_ms.items():
            self.latency.setdefault(stage, []).append(ms)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def fps(self) -> float:
        return self.frames / self.elapsed if self.frames and self.elapsed > 0 else 0.0

    @property
    def recent_fps(self) -> float:
        """Frames per second over the last 20 frames: what the status line shows, as the rate changes."""
        if len(self.stamps) < 2 or self.stamps[-1] <= self.stamps[0]:
            return self.fps
        return (len(self.stamps) - 1) / (self.stamps[-1] - self.stamps[0])

    def recent_ms(self, stage: str, last: int = 20) -> float:
        values = self.latency.get(stage) or [0.0]
        return float(np.mean(values[-last:]))

    def percentile(self, stage: str, q: float) -> float:
        values = self.latency.get(stage) or [0.0]
        return float(np.percentile(values, q))

    def summary(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "seconds": round(self.elapsed, 2),
            "mean_fps": round(self.fps, 2),
            "boxes": self.boxes,
            "latency_ms": {
                stage: {"p50": round(self.percentile(stage, 50), 2), "p95": round(self.percentile(stage, 95), 2)}
                for stage in (*STAGES, "total")
            },
        }
