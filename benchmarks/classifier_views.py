"""What limits a classifier: its accuracy by how far each Toon or Cog has turned its back on the camera.

A Toon's animal shows in its face (snout, beak, muzzle) and its ears; a Cog's name in its face and build. Seen
from behind, a duck, a monkey and a pig are a round head on a body that any animal could wear. This renders
held-out screenshots (the zoo's seed and preset: ``tools/train_zoo.py`` judges the shipped classifiers on the
same ones), extracts their crops, renders each screenshot again to learn where everyone faces, and classifies the
crops with the shipped model of ``--task`` (through ONNX Runtime, as the package runs it). Prints the accuracy
per band of the angle between where one looks and where the camera is (0: straight at it, 180: its back
turned), per class among the backs, and the accuracy if every crop were judged as well as those facing the
camera.

    python benchmarks/classifier_views.py [--task animal] [--root DIR] [--screenshots 300] [--seed 900000]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

import _common  # quiets TensorFlow before anything imports it
from toonvision.data.extraction import PNG_KEY, PNG_SOURCE

BANDS = ((0, 60, "facing the camera (0-60)"), (60, 120, "side on (60-120)"), (120, 181, "back turned (120-180)"))
SHOT = re.compile(r"_(\d+)\.png$")


def prepare(root: Path, screenshots: int, seed: int) -> None:
    """The held-out workspace: rendered as the zoo renders it, and extracted (each command resumes)."""
    cli = [sys.executable, "-m", "toonvision.cli"]
    render = ["synth", "--preset", "balanced", "-n", str(screenshots), "--seed", str(seed)]
    for args in (render, ["extract"]):
        print(f"preparing {root}: toonvision {' '.join(args)}", flush=True)
        subprocess.run([*cli, *args, "--root", str(root)], check=True, stdout=subprocess.DEVNULL)


def facings(root: Path, seed: int) -> dict[tuple[str, str], float]:
    """(screenshot name, 'label:x1,y1,x2,y2') -> the facing in degrees of whoever is in that box, by rendering
    each screenshot again (same seed and preset, same scene)."""
    from toonvision.data.workspace import Workspace
    from toonvision.synth.dataset import SynthConfig
    from toonvision.synth.render import Renderer

    cfg = SynthConfig.from_preset("balanced", seed=seed)
    renderer = Renderer(cfg.width, cfg.height)
    found = {}
    shots = sorted(Workspace(root).screenshots.glob("*.png"))
    for i, shot in enumerate(shots):
        index = int(SHOT.search(shot.name).group(1))
        result = renderer.render_index(seed, index, dict(cfg.weights), cfg.realism, conditions=cfg.conditions)
        for inst in result.instances:
            if inst.box is not None:
                b = inst.box
                key = f"{b.name}:{int(b.xmin)},{int(b.ymin)},{int(b.xmax)},{int(b.ymax)}"
                found[(shot.name, key)] = inst.facing
        if (i + 1) % 50 == 0:
            print(f"  rendered {i + 1}/{len(shots)} again", flush=True)
    return found


def main() -> None:
    from PIL import Image

    from toonvision import Classifier
    from toonvision.data.samples import find_samples, task_samples
    from toonvision.data.taxonomy import task_classes
    from toonvision.data.workspace import Workspace
    from toonvision.learning.zoo import shipped

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="animal", choices=["binary", "suit", "name", "animal"])
    parser.add_argument("--root", type=Path, default=_common.DEFAULT_ROOT / "views")
    parser.add_argument("--screenshots", type=int, default=300)
    parser.add_argument("--seed", type=int, default=900_000, help="the zoo's held-out seed")
    parser.add_argument("--model", type=Path, default=None, help="a classifier of --task (default: the shipped one)")
    args = parser.parse_args()

    prepare(args.root, args.screenshots, args.seed)
    model = args.model or shipped(args.task).path
    clf = Classifier.load(model, threads=2)
    classes = task_classes(args.task)
    pairs = task_samples(find_samples(Workspace(args.root)), args.task)
    angle = facings(args.root, args.seed)
    rows = []  # (facing, true class, predicted class)
    for start in range(0, len(pairs), 256):
        batch = pairs[start : start + 256]
        for (sample, truth), result in zip(batch, clf.predict([s.path for s, _ in batch]), strict=True):
            with Image.open(sample.path) as img:
                source, box = Path(img.text[PNG_SOURCE]).name, img.text[PNG_KEY].split(":", 1)[1]
            if (source, box) in angle:
                rows.append((angle[(source, box)], classes[truth], result.label))
    missing = len(pairs) - len(rows)
    facing = np.array([r[0] for r in rows])
    right = np.array([r[1] == r[2] for r in rows])
    print(f"\n{args.task} classifier: {model}")
    print(f"{len(rows)} crops of {args.screenshots} held-out screenshots (seed {args.seed})", end="")
    print(f"; {missing} not matched to a rendered Toon" if missing else "")
    print(f"accuracy {right.mean():.3f} overall\n")
    print(f"{'facing':<26} {'crops':>6} {'accuracy':>9}")
    for low, high, name in BANDS:
        sel = (facing >= low) & (facing < high)
        print(f"{name:<26} {sel.sum():>6} {right[sel].mean() if sel.any() else float('nan'):>9.3f}")
    front = facing < 60
    if front.any():
        # Each band at the front's accuracy: what a classifier that sees through the back of a head would reach.
        print(f"\nif every crop were judged as well as those facing the camera: {right[front].mean():.3f}")
    back = facing >= 120
    confused = defaultdict(lambda: [0, 0])
    for (_, truth, found), is_back in zip(rows, back, strict=True):
        if is_back:
            confused[truth][0] += 1
            confused[truth][1] += truth == found
    print(f"\nbacks turned, per {args.task} class (crops, accuracy):")
    print("  " + ", ".join(f"{a} {n} {ok / n:.2f}" for a, (n, ok) in sorted(confused.items())))


if __name__ == "__main__":
    main()
