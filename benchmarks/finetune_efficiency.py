"""Data efficiency: fine-tuning the shipped detector against training from scratch, on a world it never saw.

A user brings a few labelled screenshots of their own; are they better off starting from the detector ToonVision
ships (`train --task detect --weights pretrained`) than from random weights? Both learn from the same 25, 50,
100 and 200 screenshots of a shifted world (another screen size, a wider and higher camera, dusk light, the
game's interface drawn over the street, JPEG compression: `toonvision synth` options the shipped models never
trained with), for the same epochs, and are judged on the same held-out screenshots of that world with
pycocotools, as `toonvision evaluate` does. The shipped detector as it is (0 screenshots) is the first row.

    python benchmarks/finetune_efficiency.py [--sizes 25 50 100 200] [--epochs 30] [--held-out 150] [--root DIR]
    python benchmarks/finetune_efficiency.py --quick      # a smoke run: 8 and 16 screenshots, 2 epochs
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import DEFAULT_ROOT

# The shifted world: every option a real capture of the game may differ in from the shipped models' renders.
SHIFT = ("--size", "1024x768", "--fov", "70-85", "--camera-height", "1.6", "--time", "dusk", "--interface")
SHIFT_JPEG = ("--jpeg", "60")
POOL_SEED, HELD_OUT_SEED = 500_000, 600_000  # no shipped model's data is rendered from these


def render(root: Path, n: int, seed: int) -> None:
    if (root / "raw" / "screenshots").is_dir() and len(list((root / "raw" / "screenshots").glob("*.png"))) >= n:
        return
    print(f"rendering {n} shifted screenshots (seed {seed}) into {root}", flush=True)
    command = [sys.executable, "-m", "toonvision.cli", "synth", "--root", str(root), "-n", str(n), "--seed", str(seed)]
    subprocess.run([*command, "--preset", "balanced", *SHIFT, *SHIFT_JPEG], check=True, stdout=subprocess.DEVNULL)


def subset(pool: Path, into: Path, n: int) -> Path:
    """A workspace holding the first ``n`` screenshots of the pool (the same ones for both starts)."""
    shots = into / "raw" / "screenshots"
    if not shots.is_dir():
        shots.mkdir(parents=True)
        for png in sorted((pool / "raw" / "screenshots").glob("*.png"))[:n]:
            shutil.copyfile(png, shots / png.name)
            shutil.copyfile(png.with_suffix(".xml"), shots / png.with_suffix(".xml").name)
    return into


def judge(detector_path: Path, held: Path) -> tuple[float, float]:
    from toonvision.data.detection import load_detection_set
    from toonvision.learning.detection_metrics import evaluate_detections
    from toonvision.serving.detector import Detector
    from toonvision.serving.detector_evaluation import detect_all
    from toonvision.serving.thresholds import EVAL_SCORE

    detector = Detector.load(detector_path, threshold=EVAL_SCORE)
    data = load_detection_set([held / "raw" / "screenshots"], "suit", classes=detector.classes)
    metrics = evaluate_detections(data.truths, detect_all(detector, data.truths), detector.classes)
    return metrics.ap50 or 0.0, metrics.ap or 0.0


def train(ws_root: Path, epochs: int, weights: str | None, seed: int) -> tuple[Path, float]:
    from toonvision.data.files import new_run_dir
    from toonvision.data.workspace import Workspace
    from toonvision.learning.detector_training import DetectConfig, train_detector

    cfg = DetectConfig.for_width(640, epochs=epochs, seed=seed, weights=weights).validate()
    ws = Workspace(ws_root)
    start = time.perf_counter()
    run = train_detector(ws, cfg, ratios=(0.9, 0.1, 0.0), out=new_run_dir(ws.runs / "train", "bench"))
    return run.out / "model.keras", time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT / "finetune")
    parser.add_argument("--sizes", type=int, nargs="+", default=[25, 50, 100, 200])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--held-out", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 8 and 16 screenshots, 2 epochs")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.epochs, args.held_out, args.root = [8, 16], 2, 20, args.root.parent / "finetune-quick"

    from toonvision.learning.backend import quiet_tensorflow
    from toonvision.learning.zoo import shipped

    ours = shipped("detect")
    if ours is None:
        sys.exit("this ToonVision ships no detector: python tools/train_zoo.py --install makes one")
    pool, held = args.root / "pool", args.root / "held-out"
    render(pool, max(args.sizes), POOL_SEED)
    render(held, args.held_out, HELD_OUT_SEED)
    quiet_tensorflow()
    print(
        f"shifted world: {' '.join(SHIFT + SHIFT_JPEG)}; held out: {args.held_out} screenshots (seed {HELD_OUT_SEED})"
    )
    zero = judge(ours.path, held)
    print(f"{'screenshots':>11}  {'fine-tuned AP50 / AP50:95':>26}  {'from scratch AP50 / AP50:95':>28}  ratio AP50")
    print(f"{0:>11}  {zero[0]:>12.3f} / {zero[1]:.3f}   {'-':>26}")
    for n in args.sizes:
        start = str(ours.sibling(".keras"))
        tuned_path, tuned_s = train(subset(pool, args.root / f"n{n}-tuned", n), args.epochs, start, args.seed)
        scratch_path, scratch_s = train(subset(pool, args.root / f"n{n}-scratch", n), args.epochs, None, args.seed)
        tuned, scratch = judge(tuned_path, held), judge(scratch_path, held)
        ratio = f"{tuned[0] / scratch[0]:.2f}x" if scratch[0] else "-"
        print(
            f"{n:>11}  {tuned[0]:>12.3f} / {tuned[1]:.3f}   {scratch[0]:>14.3f} / {scratch[1]:.3f}   {ratio:>10}"
            f"  ({tuned_s / 60:.1f} + {scratch_s / 60:.1f} min)",
            flush=True,
        )


if __name__ == "__main__":
    main()
