"""The live screen mode: ``toonvision watch``."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer

from toonvision.cli.common import (
    BoxScore,
    MaxBoxes,
    Root,
    ServingDetector,
    ServingModels,
    ShippedModels,
    err,
    fail,
    shipped_note,
    warn,
    workspace,
)
from toonvision.serving.thresholds import BOX_SCORE, COLLECT_FORMAT, COLLECT_PER_MINUTE, MAX_BOXES

if TYPE_CHECKING:  # the CLI starts without numpy: the serving stage is imported when a verb runs
    from toonvision.serving.collect import Collector
    from toonvision.serving.pipeline import Pipeline

SOURCES = "screen, synth, a folder of screenshots or a video file"


def watch(
    source: Annotated[
        str,
        typer.Option(
            "--source",
            "-s",
            help="Where frames come from: [bold]screen[/] (every monitor, --region, or --window), [bold]synth[/] "
            "(the renderer's streets, a demo with no game), a folder of screenshots, or a video file.",
        ),
    ] = "screen",
    root: Root = Path("img"),
    model: ServingModels = None,
    detector: ServingDetector = None,
    shipped: ShippedModels = True,
    conf: BoxScore = BOX_SCORE,
    max_det: MaxBoxes = MAX_BOXES,
    region: Annotated[
        str | None, typer.Option(help="The part of the screen to watch: x,y,width,height in pixels.")
    ] = None,
    window_title: Annotated[
        str | None,
        typer.Option(
            "--window",
            help="Watch the window whose title holds this text (e.g. 'Toontown'), followed as it moves; the "
            "source ends when it closes.",
        ),
    ] = None,
    fps: Annotated[
        float, typer.Option(min=0.0, help="At most this many frames a second (0: as fast as it goes).")
    ] = 10.0,
    threads: Annotated[
        int | None,
        typer.Option(min=1, help="Inference threads; default: one per core but one, which is left to the game."),
    ] = None,
    max_frames: Annotated[int | None, typer.Option(min=1, help="Stop after this many frames.")] = None,
    loop: Annotated[bool, typer.Option("--loop", help="Play a folder or video over and over.")] = False,
    size: Annotated[str, typer.Option(help="Frame size of the synth source, WIDTHxHEIGHT.")] = "1280x720",
    seed: Annotated[int, typer.Option(help="First street of the synth source.")] = 0,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the JSON lines to this file instead of stdout.")
    ] = None,
    save: Annotated[Path | None, typer.Option(help="Write every frame, its boxes drawn, to this folder.")] = None,
    show: Annotated[bool, typer.Option("--show", help="Draw the frames in a window (needs a display).")] = False,
    collect: Annotated[
        Path | None,
        typer.Option(
            help="Keep the frames where the models are unsure (a conflict, a label that flips, a score near --conf, "
            "an unsure label, a Toon or Cog the detector almost saw) in this folder, pre-annotated for "
            "'toonvision review'.",
        ),
    ] = None,
    per_minute: Annotated[
        int | None,
        typer.Option(
            "--collect-per-minute",
            min=1,
            help=f"With --collect: keep at most this many frames a minute [default: {COLLECT_PER_MINUTE}].",
            show_default=False,
        ),
    ] = None,
    collect_format: Annotated[
        str | None,
        typer.Option(
            "--collect-format",
            help="With --collect: the annotation written beside each kept frame: voc (labelImg's XML), yolo "
            f"(.txt with classes.txt) or createml (.json) [default: {COLLECT_FORMAT}].",
            show_default=False,
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No status line.")] = False,
) -> None:
    """Watch the screen live: every frame, find each Toon and Cog, and name it (Cog or Toon; a Cog's suit and
    name, a Toon's animal).

    Models are picked as [bold]predict[/] picks them, and every box is labelled by the same rule. One JSON line
    per frame (frame, source, time, boxes with their label, confidence, kind, suit, name and animal with
    confidences, the detector's class and score and any disagreement, latency_ms per stage, and the model files)
    goes to stdout or --out; a status line on stderr shows frames per second and the latency of capture, detect
    and classify. --collect DIR keeps the frames where the models are unsure as pre-annotations to review.
    Ctrl-C (or the end of the source, or --max-frames) stops it with a summary on stderr and exit code 0.
    """
    from toonvision.serving.pipeline import Pipeline
    from toonvision.serving.watch import SourceError, WatchStats, leave_a_core
    from toonvision.serving.watch import watch as watch_loop

    failed = None

    stop = threading.Event()

    def interrupted(signum: int, frame: Any) -> None:
        stop.set()  # finish the frame in hand, then the summary
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C stops at once

    check_outputs(out, save, collect, per_minute, collect_format)
    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        frames = open_source(source, region, loop, size, seed, window_title)
        window = open_window() if show else None
        threads = threads or leave_a_core()
        ws = workspace(root)
        pipe = Pipeline.load(
            ws.root,
            models=model or [],
            detector=detector,
            conf=conf,
            threads=threads,
            shipped=shipped,
            max_det=max_det,
        )
        if pipe.detector is None:
            raise ValueError(f"no trained detector in {ws.runs}: train one with 'toonvision train --task detect'")
        if "binary" not in pipe.classifiers:
            raise ValueError(f"no trained binary model in {ws.runs}: run 'toonvision train' or give --model")
        collector = None
        if collect is not None:
            collector = open_collector(
                collect, pipe, conf, per_minute or COLLECT_PER_MINUTE, collect_format or COLLECT_FORMAT
            )
    except (SourceError, OSError, ValueError, RuntimeError) as exc:
        signal.signal(signal.SIGINT, previous)
        raise fail(str(exc)) from None
    err.print(
        f"[bold]toonvision watch[/]: source={source} fps={fps or 'unlimited'} threads={threads} "
        + " ".join(f"{task}={path}" for task, path in pipe.models.items()),
        highlight=False,
        soft_wrap=True,
    )
    shipped_note(pipe.models, err)
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
    stats = WatchStats()
    sink: IO[str] = out.open("a", encoding="utf-8") if out is not None else sys.stdout
    status = None if quiet or not err.is_terminal else _status()
    try:
        if status is not None:
            status.start()
        keep_image = bool(save or show or collector)
        records = watch_loop(
            frames,
            pipe,
            fps=fps,
            max_frames=max_frames,
            stop=stop,
            keep_image=keep_image,
            near_misses=collector is not None,  # a Toon or Cog the detector almost saw is a frame to review
        )
        for record in records:
            stats.add(record)
            line = record.to_dict()
            kept = collector.add(record) if collector is not None else None
            if kept is not None:
                line["collected"] = str(kept.image)
            sink.write(json.dumps(line) + "\n")
            sink.flush()
            if save is not None:
                record.results.save(save / f"frame_{record.index:06d}.png", fast=True)
            if window is not None and not window(record):
                break
            if status is not None:
                status.update(_status_text(stats))
    except BrokenPipeError:  # stdout piped into head and closed: the reader has what it wanted
        pass
    except SourceError as exc:  # a frame that cannot be looked at: what came before is written, then one line
        failed = str(exc)
    finally:
        if status is not None:
            status.stop()
        if out is not None:
            sink.close()
        signal.signal(signal.SIGINT, previous)
    print_summary(stats, stopped=stop.is_set())
    if collector is not None:
        print_collected(collector)
    if failed is not None:
        raise fail(failed)


def check_outputs(
    out: Path | None,
    save: Path | None,
    collect: Path | None = None,
    per_minute: int | None = None,
    collect_format: str | None = None,
) -> None:
    """--out must be a file in a folder that exists, --save and --collect folders (made when missing), apart:
    said before any model loads or frame is taken."""
    if out is not None:
        if out.is_dir():
            raise fail(f"--out {out} is a folder: give the file to write the JSON lines to")
        if not out.parent.is_dir():
            raise fail(f"--out {out}: the folder {out.parent} does not exist")
    if save is not None and save.exists() and not save.is_dir():
        raise fail(f"--save {save} is a file: give a folder for the drawn frames")
    for option, given in (("--collect-per-minute", per_minute), ("--collect-format", collect_format)):
        if given is not None and collect is None:
            raise fail(f"{option} goes with --collect DIR (the folder to keep unsure frames in)")
    if collect_format is not None:
        from toonvision.serving.pipeline import ANNOTATION_FORMATS

        if collect_format not in ANNOTATION_FORMATS:
            raise fail(f"--collect-format {collect_format!r}: choose from {', '.join(ANNOTATION_FORMATS)}")
    if collect is not None:
        if collect.exists() and not collect.is_dir():
            raise fail(f"--collect {collect} is a file: give a folder for the frames to review")
        if save is not None and save.resolve() == collect.resolve():
            # The drawn frames would sit among the screenshots to review, as unlabelled screenshots of their own.
            raise fail("--save and --collect are the same folder: give each its own")


def open_collector(folder: Path, pipe: Pipeline, conf: float, per_minute: int, fmt: str = COLLECT_FORMAT) -> Collector:
    """The collector of --collect; ValueError when the models cannot give every box a full label, which a
    labelImg file needs (as annotate needs it)."""
    from toonvision.serving.collect import Collector

    missing = pipe.missing_for_full_labels()
    if missing:
        raise ValueError(
            f"--collect writes labelImg files, which need a full label per box: train the {', '.join(missing)} "
            f"model{'s' if len(missing) > 1 else ''} ('toonvision train --task {missing[0]}') or give --model"
        )
    return Collector(folder, conf=conf, per_minute=per_minute, format=fmt)


def open_source(
    source: str, region: str | None, loop: bool, size: str, seed: int, window_title: str | None = None
) -> Iterator[Any]:
    """The frames of ``--source``; SourceError (or ValueError) says why there are none."""
    from toonvision.serving.watch import (
        RegionError,
        SourceError,
        find_window,
        folder_frames,
        parse_region,
        screen_frames,
        video_frames,
    )

    if (region is not None or window_title is not None) and source != "screen":
        raise ValueError(f"--{'region' if region is not None else 'window'} goes with --source screen")
    if region is not None and window_title is not None:
        raise ValueError("give --region or --window, not both")
    if source == "screen":
        try:
            window = find_window(window_title) if window_title is not None else None
            return screen_frames(parse_region(region) if region else None, window)
        except RegionError:
            raise
        except SourceError as exc:
            raise SourceError(f"{exc}; without a screen, watch {SOURCES.replace('screen, ', '')}") from None
    if source == "synth":
        return synth_frames(size, seed)
    path = Path(source)
    if path.is_dir():
        return folder_frames(path, repeat=loop, on_skip=lambda p, why: warn(f"skipped {p.name}: {why}"))
    if path.is_file():
        frames = video_frames(path)
        return _repeat_video(path, frames) if loop else frames
    raise SourceError(f"{source} does not exist (give --source {SOURCES})")


def _repeat_video(path: Path, first: Iterator[Any]) -> Iterator[Any]:
    from toonvision.serving.watch import video_frames

    frames = first
    while True:
        yield from frames
        frames = video_frames(path)


def synth_frames(size: str, seed: int) -> Iterator[Any]:
    """The synth renderer's streets, one new screenshot a frame, for as long as wanted: a demo with no game.
    Built here, not in the serving stage, which may not import the renderer."""
    from toonvision.synth.dataset import SynthConfig, parse_size
    from toonvision.synth.render import get_renderer

    width, height = parse_size(size)
    cfg = SynthConfig.from_preset("seed", seed=seed, width=width, height=height)
    renderer = get_renderer(width, height)  # now, so that a renderer that cannot start is said before the loop

    def frames() -> Iterator[Any]:
        index = 0
        while True:
            yield f"synth {seed}:{index}", renderer.render_index(cfg.seed, index, dict(cfg.weights), cfg.realism).image
            index += 1

    return frames()


def open_window():
    """A function that draws a record in an OpenCV window and says whether to go on (q or Esc: stop)."""
    import os

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise RuntimeError("--show needs a display ($DISPLAY is not set); use --save DIR to see the frames")
    import cv2
    import numpy as np

    try:
        cv2.namedWindow("toonvision watch", cv2.WINDOW_NORMAL)
    except cv2.error:
        raise RuntimeError(
            "--show needs OpenCV with its windows (opencv-python; this one is headless); use --save DIR"
        ) from None

    def draw(record) -> bool:
        img = record.results.plot()
        cv2.imshow("toonvision watch", cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2BGR))
        return cv2.waitKey(1) & 0xFF not in (ord("q"), 27)

    return draw


def _status():
    from rich.live import Live

    return Live("starting...", console=err, refresh_per_second=4, transient=True)


def _status_text(stats) -> str:
    stages = " ".join(f"{s} {stats.recent_ms(s):.0f} ms" for s in ("capture", "detect", "classify"))
    return f"{stats.frames} frames, {stats.recent_fps:.1f} frames/s | {stages} | {stats.boxes} boxes"


def print_collected(collector: Collector) -> None:
    """How many frames --collect kept and why (a frame may have several reasons), and what it skipped."""
    summary = collector.summary()
    why = ", ".join(f"{reason} {n}" for reason, n in summary["reasons"].items())
    skipped = ", ".join(f"{n} {what}" for what, n in summary["skipped"].items())
    err.print(
        f"collected: {summary['kept']} frames into {summary['folder']}"
        + (f" ({why})" if why else "")
        + (f"; skipped {skipped}" if skipped else ""),
        highlight=False,
        soft_wrap=True,
    )
    for problem in dict.fromkeys(collector.problems):
        warn(f"--collect: {problem}")


def print_summary(stats, stopped: bool) -> None:
    summary = stats.summary()
    how = "stopped (Ctrl-C)" if stopped else "done"
    stages = ", ".join(f"{s} {v['p50']:.1f}/{v['p95']:.1f}" for s, v in summary["latency_ms"].items())
    err.print(
        f"{how}: {summary['frames']} frames in {summary['seconds']:.1f} s, {summary['mean_fps']:.1f} frames/s; "
        f"latency p50/p95 ms: {stages}",
        highlight=False,
        soft_wrap=True,
    )
