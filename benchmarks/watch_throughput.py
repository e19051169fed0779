"""Live mode throughput: ``toonvision watch``'s loop on rendered 1280x720 frames, as fast as it goes and capped at
10 frames a second, with the threads it takes by default (one core left to the game).

Prints frames per second, p50/p95 latency of each stage (capture, detect, classify) and the CPU the loop takes
(process CPU seconds per wall second: 1.0 is one core kept busy). Frames are rendered once by the synth renderer
and held in memory, so "capture" is the loop's own overhead, not a screen grab's (mss takes a few ms a grab).

The detector is a trained run (``--detector``) or, by default, an untrained one: latency barely depends on the
weights, except through how many boxes get classified, so the untrained one keeps its ``--boxes`` best boxes a
frame (a busy street) whatever their score. Classifiers are untrained registry models (binary, suit, name)
exported to ONNX, as a workspace's exports would be.

    python benchmarks/watch_throughput.py [--detector RUN] [--frames 30] [--seconds 15] [--boxes 8]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import _common  # noqa: F401 - quiets TensorFlow before anything imports it


def render_frames(n: int, size: tuple[int, int], seed: int) -> list[np.ndarray]:
    from toonvision.synth.dataset import SynthConfig
    from toonvision.synth.render import get_renderer

    cfg = SynthConfig.from_preset("seed", seed=seed, width=size[0], height=size[1])
    renderer = get_renderer(*size)
    return [renderer.render_index(cfg.seed, i, dict(cfg.weights), cfg.realism).image.copy() for i in range(n)]


def untrained_detector(folder: Path) -> Path:
    """A detector run folder (model.keras and the config.json that names its classes) with initial weights."""
    from toonvision.data.detection import scheme_classes
    from toonvision.learning.detection import create_detector

    classes = scheme_classes("suit")
    run = folder / "detect-untrained"
    run.mkdir()
    create_detector("centernet", len(classes)).save(run / "model.keras")
    (run / "config.json").write_text(json.dumps({"task": "detect", "class_names": classes}))
    return run


def run_loop(frames, detector, classifiers, fps: float, seconds: float) -> dict:
    from toonvision.serving.watch import WatchStats, watch

    def endless():
        i = 0
        while True:
            yield f"frame {i}", frames[i % len(frames)]
            i += 1

    stats = WatchStats()
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    from toonvision.serving.pipeline import Pipeline

    pipe = Pipeline(classifiers, detector)
    for _ in watch(endless(), pipe, fps=fps, on_frame=stats.add):
        if time.perf_counter() - wall_start >= seconds:
            break
    summary = stats.summary()
    summary["cpu_cores"] = (time.process_time() - cpu_start) / (time.perf_counter() - wall_start)
    return summary


def show(name: str, summary: dict) -> None:
    stages = "  ".join(
        f"{stage} {v['p50']:6.1f}/{v['p95']:6.1f}" for stage, v in summary["latency_ms"].items() if stage != "total"
    )
    total = summary["latency_ms"]["total"]
    print(
        f"{name:<22} {summary['mean_fps']:5.1f} frames/s  p50/p95 ms: {stages}  total {total['p50']:6.1f}/"
        f"{total['p95']:6.1f}  CPU {summary['cpu_cores']:.2f} cores  ({summary['boxes'] / summary['frames']:.1f} "
        "boxes/frame)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detector", type=Path, help="a detector run folder or .onnx (default: untrained)")
    parser.add_argument("--frames", type=int, default=30, help="frames to render (played in a loop)")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long each setting runs")
    parser.add_argument("--boxes", type=int, default=8, help="boxes a frame an untrained detector keeps")
    parser.add_argument("--threads", type=int, help="inference threads (default: as watch: cores - 1, min 1)")
    args = parser.parse_args()

    from toonvision.learning.backend import available_cores
    from toonvision.learning.models import create_model
    from toonvision.serving.detector import Detector
    from toonvision.serving.export import export
    from toonvision.serving.inference import Classifier
    from toonvision.serving.watch import leave_a_core

    threads = args.threads or leave_a_core()
    start = time.perf_counter()
    frames = render_frames(args.frames, (1280, 720), seed=900_000)
    print(
        f"{len(frames)} frames 1280x720 rendered in {time.perf_counter() - start:.0f} s; {available_cores()} cores, "
        f"ONNX Runtime {threads} threads; load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run = args.detector or untrained_detector(tmp)
        onnx = run if str(run).endswith(".onnx") else export(run, tmp / "detector.onnx").path
        detector = Detector.load(onnx, threads=threads)
        if args.detector is None:
            detector.threshold, detector.top_k = 0.0, args.boxes
        classifiers = {}
        for task in ("binary", "suit", "name", "animal"):
            create_model("small_convnet", task).save(tmp / f"{task}.keras")
            path = export(tmp / f"{task}.keras", tmp / f"{task}.onnx", task=task).path
            classifiers[task] = Classifier.load(path, threads=threads)
        print(f"detector {run}\n", flush=True)
        run_loop(frames, detector, classifiers, 0, 2.0)  # warm-up: first allocations, caches
        show("as fast as it goes", run_loop(frames, detector, classifiers, 0, args.seconds))
        show("--fps 10 (default)", run_loop(frames, detector, classifiers, 10, args.seconds))


if __name__ == "__main__":
    main()
