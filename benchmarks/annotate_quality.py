"""Pre-annotation quality and speed: ``toonvision annotate`` on rendered screenshots no model trained on.

Renders ``--screenshots`` held-out 1280x720 screenshots (a seed far from the demo's), takes their annotations
away, pre-annotates them with a workspace's models (the ones ``toonvision annotate`` would pick: the newest
detector and the best binary, suit, name and animal models, exported to ONNX here), and
compares with the renderer's true boxes. A true box is one a person would not need to touch when a proposed box
overlaps it with IoU >= ``--iou`` (0.7) and carries its exact label (one proposal per true box, matched by the
Hungarian method on IoU). Prints that fraction, what the person would still do (fix a label, fix a box, draw a
missed one, delete a false one), and boxes per second, against the same models through Keras in the same run.

    python benchmarks/annotate_quality.py [--root demo] [--screenshots 30] [--seed 40000] [--conf 0.3]
    python benchmarks/annotate_quality.py --shipped --screenshots 100     # the models ToonVision ships

Needs a workspace with all five models: ``make demo`` makes one in demo/.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

import _common  # quiets TensorFlow before anything imports it
from toonvision.data.detection import iou_matrix


def render(folder: Path, n: int, seed: int, size: tuple[int, int]):
    from toonvision.data.workspace import Workspace
    from toonvision.synth import SynthConfig, generate

    ws = Workspace(folder).init()
    cfg = SynthConfig.from_preset("seed", screenshots=n, seed=seed, width=size[0], height=size[1])
    generate(ws, cfg, workers=1)
    return ws


def person_edits(truth, proposed, iou: float, touched: list[bool] | None = None) -> Counter:
    """What a person does to turn ``proposed`` boxes into ``truth`` (lists of annotation Boxes); ``touched``, when
    given, is filled with whether the person changes each proposed box (relabels, redraws or deletes it)."""
    from scipy.optimize import linear_sum_assignment

    out = Counter(truths=len(truth), proposed=len(proposed))
    t = np.array([[b.xmin, b.ymin, b.xmax, b.ymax] for b in truth], float).reshape(-1, 4)
    p = np.array([[b.xmin, b.ymin, b.xmax, b.ymax] for b in proposed], float).reshape(-1, 4)
    overlap = iou_matrix(t, p)
    rows, cols = linear_sum_assignment(-overlap) if overlap.size else ([], [])
    matched_t, matched_p, left = set(), set(), set()
    for r, c in zip(rows, cols, strict=True):
        if overlap[r, c] < 0.3:  # too far off to count as the same Toon or Cog: drawn anew
            continue
        matched_t.add(r)
        matched_p.add(c)
        right_label = truth[r].name == proposed[c].name
        tight = overlap[r, c] >= iou
        if right_label and tight:
            out["untouched"] += 1
            left.add(c)
        if not right_label:
            out["fix label"] += 1
        if not tight:
            out["fix box"] += 1
        if truth[r].name.split("_")[0] == proposed[c].name.split("_")[0]:
            out["kind right"] += 1
    out["draw missed"] = len(truth) - len(matched_t)
    out["delete false"] = len(proposed) - len(matched_p)
    if touched is not None:
        touched[:] = [c not in left for c in range(len(proposed))]
    return out


def held_out_options(parser: argparse.ArgumentParser, screenshots: int) -> None:
    """The options of a benchmark on held-out screenshots pre-annotated with a workspace's models."""
    parser.add_argument("--root", type=Path, default=Path("demo"), help="workspace with the five models")
    parser.add_argument("--screenshots", type=int, default=screenshots)
    parser.add_argument("--seed", type=int, default=40_000, help="render seed, far from any training seed")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--conf", type=float, default=0.3, help="detector score a box needs (annotate's --conf)")


def held_out(folder: Path, n: int, seed: int, size: tuple[int, int]) -> tuple[Path, dict[str, list]]:
    """``n`` rendered screenshots copied without their annotations into ``folder``/bare, and their true boxes by
    file name."""
    from toonvision.data.annotations import find_annotation, read_annotation

    held = render(folder / "held", n, seed, size)
    bare = folder / "bare"
    bare.mkdir()
    truths = {}
    for image in sorted(held.screenshots.glob("*.png")):
        truths[image.name] = read_annotation(find_annotation(image), image.name, size).boxes
        shutil.copy(image, bare / image.name)
    return bare, truths


def pre_annotate(folder: Path, ws, model_paths: list[Path], detector: Path, conf: float):
    from toonvision.data.extraction import screenshot_states
    from toonvision.data.taxonomy import all_labels
    from toonvision.serving.annotate import annotate_screenshots, plan
    from toonvision.serving.pipeline import Pipeline

    pipe = Pipeline.load(ws.root, models=model_paths, detector=detector, conf=conf)
    steps = plan(screenshot_states(folder), "voc")
    labels = [str(label) for label in all_labels()]
    annotate_screenshots(steps[:2], pipe, labels, dry_run=True)  # warm-up
    summary = annotate_screenshots(steps, pipe, labels, dry_run=True)
    return summary, pipe.models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    held_out_options(parser, screenshots=30)
    parser.add_argument("--iou", type=float, default=0.7)
    parser.add_argument("--shipped", action="store_true", help="the models ToonVision ships instead of --root's")
    args = parser.parse_args()

    from toonvision.data.workspace import Workspace

    ws = Workspace(args.root)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        bare, truths = held_out(Path(tmp), args.screenshots, args.seed, size)
        shots = sorted(bare.glob("*.png"))
        if args.shipped:
            onnx_paths, detector_onnx, keras_paths, detector_keras = _common.shipped_models()
        else:
            best, detector = _common.workspace_models(args.root)
            keras_paths, detector_keras = [s.path for s in best.values()], detector.path
            onnx_paths, detector_onnx = _common.export_models(best, detector, Path(tmp) / "models")
        start = time.perf_counter()
        fast, used = pre_annotate(bare, ws, onnx_paths, detector_onnx, args.conf)
        fast_wall = time.perf_counter() - start
        slow, _ = pre_annotate(bare, ws, keras_paths, detector_keras, args.conf)

    total = Counter()
    for _, proposal in fast.written:
        total += person_edits(truths[proposal.image.name], proposal.results.annotation_boxes(), args.iou)
    same = sum(
        [b.label for b in a.boxes] == [b.label for b in k.boxes]
        for (_, a), (_, k) in zip(fast.written, slow.written, strict=True)
    )
    n = total["truths"]
    print(f"annotate on {len(shots)} held-out {args.size} screenshots (seed {args.seed}), --conf {args.conf}")
    for task, path in used.items():
        print(f"  {task:7s} {path}")
    print(f"true boxes {n}, proposed {total['proposed']}")
    print(
        f"untouched (IoU >= {args.iou} and the exact label): {total['untouched']} = "
        f"{total['untouched'] / max(n, 1):.3f} of the true boxes; "
        f"{total['untouched'] / max(n + total['delete false'], 1):.3f} of all boxes a person sees or draws"
    )
    print(f"kind right where a box was found: {total['kind right']}")
    print(
        "a person still: "
        + ", ".join(f"{key} {total[key]}" for key in ("fix label", "fix box", "draw missed", "delete false"))
    )
    onnx_rate = fast.boxes / fast.seconds
    keras_rate = slow.boxes / slow.seconds
    print(
        f"speed, ONNX Runtime (what annotate picks): {len(shots) / fast.seconds:.1f} screenshots/s, "
        f"{onnx_rate:.1f} boxes/s ({fast_wall:.1f} s with loading)"
    )
    print(
        f"speed, the same models through Keras: {len(shots) / slow.seconds:.1f} screenshots/s, "
        f"{keras_rate:.1f} boxes/s; ONNX {onnx_rate / keras_rate:.2f}x "
        f"(same labels on {same} of {len(shots)} screenshots)"
    )


if __name__ == "__main__":
    main()
