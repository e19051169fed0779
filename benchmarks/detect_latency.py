"""Detector latency: one 1280x720 screenshot -> boxes, and -> boxes + binary, suit and name for every box.

A bot's budget is a 1280x720 frame 10-30 times a second on a machine that also runs the game. Prints p50 and
p90 wall time and frames per second, each against its aim (detector alone p50 <= 24 ms through ONNX Runtime
on 2 cores; the whole chain p50 <= 40 ms), for:

- the straightforward way: the Keras detector through ``model.predict`` (what a user of Keras calls first);
- ``toonvision.Detector`` on Keras (one traced tf.function) and on ONNX Runtime (the ``toonvision export``
  file): letterboxing, the network and the max-pool/top-k decoding, all included;
- the whole chain through ONNX Runtime, two ways: the one before ``toonvision.Pipeline`` (detect, crop every
  box, the binary model on each, the suit and name models on the Cogs, each answer taken apart), and
  ``toonvision.Pipeline`` (the same, plus the animal model on the Toons and the one labelling rule), which
  ``predict``, ``watch`` and ``annotate`` run;
- with ``--yolo-onnx FILE``: the tool users have today, an Ultralytics YOLO ONNX export (e.g. YOLO26n at
  640x640), run by ONNX Runtime with the same session settings, network only (its letterboxing and box
  decoding not counted).

The detector is a trained run (``--detector``; default: the newest run of ``detect_quality.py``); its weights
decide how many boxes the chain classifies. The classifiers are untrained registry models (latency does not
depend on their weights). Screenshots: the held-out set of ``detect_quality.py`` (rendered if missing).

    python benchmarks/detect_latency.py [--detector RUN] [--frames 100] [--yolo-onnx yolo26n.onnx]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from _common import DEFAULT_ROOT

AIM_DETECT_MS, AIM_CHAIN_MS = 24.0, 40.0


def timed(fn: Callable[[int], object], frames: int) -> np.ndarray:
    fn(0)
    fn(1)  # warm-up: traces, first allocations
    out = []
    for i in range(frames):
        start = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - start)
    return np.array(out) * 1000


def show(name: str, ms: np.ndarray, aim: float | None = None, baseline: float | None = None) -> None:
    p50, p90 = np.percentile(ms, 50), np.percentile(ms, 90)
    line = f"{name:<52} p50 {p50:7.1f} ms  p90 {p90:7.1f} ms  {1000 / p50:6.1f} frames/s"
    if baseline is not None:
        line += f"  {baseline / p50:5.1f}x"
    if aim is not None:
        line += f"  (aim <= {aim:.0f} ms: {'reached' if p50 <= aim else 'not reached'})"
    print(line, flush=True)


def newest_detector(root: Path) -> Path:
    runs = sorted(root.glob("train-*/runs/train/quality*/model.keras"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise SystemExit(f"no trained detector under {root}: run benchmarks/detect_quality.py or give --detector")
    return runs[-1].parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detector", type=Path, help="a detector run folder (default: detect_quality.py's newest)")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT / "detect")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (the aim is for 2 cores)")
    parser.add_argument("--yolo-onnx", type=Path, help="an Ultralytics YOLO ONNX export to time beside ours")
    args = parser.parse_args()

    from toonvision.data.detection import screenshot_array
    from toonvision.learning.models import create_model
    from toonvision.serving.detector import Detector
    from toonvision.serving.export import export
    from toonvision.serving.inference import Classifier, onnx_session
    from toonvision.serving.pipeline import Pipeline

    run = args.detector or newest_detector(args.root)
    held = sorted((args.root / "held-out-300" / "raw" / "screenshots").glob("*.png"))
    if not held:
        from detect_quality import HELD_OUT_SEED, render

        render(args.root / "held-out-300", 300, HELD_OUT_SEED)
        held = sorted((args.root / "held-out-300" / "raw" / "screenshots").glob("*.png"))
    frames = [screenshot_array(p) for p in held[: min(len(held), 50)]]
    print(f"load average {os.getloadavg()[0]:.2f}; {len(frames)} screenshots 1280x720 from {held[0].parent}")
    print(f"detector {run}; ONNX Runtime {args.threads} threads\n")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        onnx_file = export(run, tmp / "detector.onnx").path
        classifiers = {}
        for task in ("binary", "suit", "name", "animal"):
            model = create_model("small_convnet", task)
            model.save(tmp / f"{task}.keras")
            classifiers[task] = Classifier.load(export(tmp / f"{task}.keras", tmp / f"{task}.onnx", task=task).path)
        onnx_det = Detector.load(onnx_file, threads=args.threads)
        keras_det = Detector.load(run)
        frame = lambda i: frames[i % len(frames)]  # noqa: E731

        # The straightforward way: letterbox as we do, then the Keras model's predict.
        keras_model = keras_det.model
        straightforward = timed(
            lambda i: keras_model.predict(onnx_det.prepare(frame(i))[0][None].astype(np.float32), verbose=0),
            max(20, args.frames // 4),
        )
        base = float(np.percentile(straightforward, 50))
        show("Keras model.predict (the straightforward way)", straightforward)
        show(
            "toonvision.Detector, Keras (tf.function)",
            timed(lambda i: keras_det.detect(frame(i)), args.frames),
            None,
            base,
        )
        show(
            "toonvision.Detector, ONNX Runtime",
            timed(lambda i: onnx_det.detect(frame(i)), args.frames),
            AIM_DETECT_MS,
            base,
        )
        boxes = [len(onnx_det.detect(f)) for f in frames]

        def chain(i: int) -> None:
            image = frame(i)
            classify_boxes(image, onnx_det.detect(image).boxes, classifiers)

        show("detect + binary, suit and name on every box (ONNX)", timed(chain, args.frames), AIM_CHAIN_MS, base)
        pipe = Pipeline(classifiers, onnx_det)
        show(
            "toonvision.Pipeline: detect + the one labelling rule, 4 classifiers (ONNX)",
            timed(lambda i: pipe(frame(i)), args.frames),
            AIM_CHAIN_MS,
            base,
        )
        print(f"  boxes per screenshot at score >= {onnx_det.threshold}: mean {np.mean(boxes):.1f}, max {max(boxes)}")
        if args.yolo_onnx:
            session = onnx_session(args.yolo_onnx, args.threads)
            name = session.get_inputs()[0].name
            shape = [d if isinstance(d, int) else 1 for d in session.get_inputs()[0].shape]
            x = np.random.default_rng(0).random(shape, dtype=np.float32)
            show(
                f"{args.yolo_onnx.name} network only, {shape[2]}x{shape[3]}",
                timed(lambda i: session.run(None, {name: x}), args.frames),
            )


def classify_boxes(frame: np.ndarray, boxes: np.ndarray, classifiers: dict) -> None:
    """What ``toonvision predict`` does with a screenshot's boxes, on an in-memory frame (a bot has frames, not
    files): crop every box, tell Cog from Toon, then the suit and the name of the Cogs."""
    crops = []
    for x1, y1, x2, y2 in boxes.astype(int):
        if x2 > x1 and y2 > y1:
            crops.append(frame[y1:y2, x1:x2])
    if not crops:
        return
    kinds = classifiers["binary"].predict(crops)
    cogs = [c for c, k in zip(crops, kinds, strict=True) if k.label == "cog"] or crops[:1]
    classifiers["suit"].predict(cogs)
    classifiers["name"].predict(cogs)


if __name__ == "__main__":
    main()
