"""The one labelling rule against the way before it, on screenshots no model trained on.

Renders ``--screenshots`` held-out 1280x720 screenshots (a seed far from any training seed) and runs a
workspace's models over them (the ones ``toonvision predict`` picks: the newest detector and the best binary,
suit, name and animal models, exported to ONNX here), two ways on the same detections:

- before ``toonvision.Pipeline``: each model's answer taken apart, as ``predict`` and ``watch`` did: the binary
  model's kind overrides the detector's class; a Cog gets the suit model's best and the name model's best, a Toon
  the animal model's best;
- ``toonvision.Pipeline``: the one rule (the detector's class scores and every classifier weighed together into
  the most probable label of the taxonomy; disagreements said).

Prints for each: labels the game does not have (a Cog name outside its suit), labels that contradict the
detector's class without saying so, the share of true boxes (IoU >= 0.5) whose label is exactly right, and the
p50/p90 time per screenshot (detect + crops + classifiers + rule) through ONNX Runtime on ``--threads`` threads.

    python benchmarks/pipeline_labels.py [--root demo] [--screenshots 100] [--seed 60000] [--conf 0.3]

Needs a workspace with all five models: ``make demo`` makes one in demo/.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

import _common  # quiets TensorFlow before anything imports it
from annotate_quality import render


def before(pipe, array: np.ndarray, found) -> tuple[list[tuple[str, str, None]], list]:
    """(label, detector class, no conflict: nothing was flagged then) per box, each model's answer taken apart
    (the code predict and watch ran), and the boxes."""
    from toonvision.serving.pipeline import pixel_box

    height, width = array.shape[:2]
    out, crops, classes, boxes = [], [], [], []
    for corner, cls in zip(found.boxes, found.classes, strict=True):
        box = pixel_box(corner, width, height)
        if box is not None:
            crops.append(array[box[1] : box[3], box[0] : box[2]])
            classes.append(pipe.detector.classes[int(cls)])
            boxes.append(box)
    if not crops:
        return out, boxes
    models = pipe.classifiers
    kinds = models["binary"].predict(crops)
    # As watch did: the suit and name models on the Cogs, the animal model on the Toons, each in one batch.
    cogs = [i for i, kind in enumerate(kinds) if kind.label == "cog"]
    toons = [i for i, kind in enumerate(kinds) if kind.label != "cog"]
    said = {
        task: dict(zip(which, models[task].predict([crops[i] for i in which]), strict=True)) if which else {}
        for task, which in (("suit", cogs), ("name", cogs), ("animal", toons))
    }
    for i, cls in enumerate(classes):
        if i in said["suit"]:
            label = f"cog_{said['suit'][i].label}_{said['name'][i].label}"
        else:
            label = f"toon_{said['animal'][i].label}"
        out.append((label, cls, None))
    return out, boxes


def judge(rows, truth_boxes, proposed_boxes) -> Counter:
    """Impossible and unflagged contradictory labels; true boxes matched (IoU >= 0.5) with the exact label."""
    from toonvision.data.detection import iou_matrix
    from toonvision.data.taxonomy import LabelError, parse_label
    from toonvision.serving.labeling import LABEL_TEXT, class_labels

    out = Counter(boxes=len(rows), truths=len(truth_boxes))
    for label, cls, conflict in rows:
        try:
            parse_label(label)
        except LabelError:
            out["impossible"] += 1
            continue
        inside = {t for t, m in zip(LABEL_TEXT, class_labels(cls), strict=True) if m}
        if label not in inside and not conflict:
            out["contradictory"] += 1
    if truth_boxes and proposed_boxes:
        t = np.array([[b.xmin, b.ymin, b.xmax, b.ymax] for b in truth_boxes])
        overlap = iou_matrix(t, np.array(proposed_boxes, np.float64))
        used: set[int] = set()
        for r in range(len(truth_boxes)):
            for c in np.argsort(-overlap[r]):
                if overlap[r, c] < 0.5:
                    break
                if c not in used:
                    used.add(int(c))
                    out["exact"] += rows[c][0] == truth_boxes[r].name
                    break
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("demo"), help="workspace with the five models")
    parser.add_argument("--screenshots", type=int, default=100)
    parser.add_argument("--seed", type=int, default=60_000, help="render seed, far from any training seed")
    parser.add_argument("--conf", type=float, default=0.3, help="detector score a box needs (predict's --conf)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from toonvision.data.annotations import find_annotation, read_annotation
    from toonvision.data.detection import screenshot_array
    from toonvision.serving.pipeline import Pipeline

    best, detector = _common.workspace_models(args.root)
    with tempfile.TemporaryDirectory() as tmp:
        held = render(Path(tmp) / "held", args.screenshots, args.seed, (1280, 720))
        shots = sorted(held.screenshots.glob("*.png"))
        truths = [read_annotation(find_annotation(s), s.name, (1280, 720)).boxes for s in shots]
        onnx, detector_onnx = _common.export_models(best, detector, Path(tmp) / "models")
        pipe = Pipeline.load(args.root, models=onnx, detector=detector_onnx, conf=args.conf, threads=args.threads)
        arrays = [screenshot_array(s) for s in shots]
    print(f"{len(shots)} held-out 1280x720 screenshots (seed {args.seed}), --conf {args.conf}, {args.threads} threads")
    for task, path in pipe.models.items():
        print(f"  {task:7s} {path}")

    old, new = Counter(), Counter()
    old_ms, new_ms = [], []
    for array, truth in zip(arrays, truths, strict=True):
        start = time.perf_counter()
        found = pipe.detector.detect(array)
        rows, boxes = before(pipe, array, found)
        old_ms.append((time.perf_counter() - start) * 1000)
        old += judge(rows, truth, boxes)
        start = time.perf_counter()
        results = pipe(array)
        new_ms.append((time.perf_counter() - start) * 1000)
        rows = [(b.label or b.shown, b.detector_class, b.conflict) for b in results.boxes]
        new += judge(rows, truth, [b.xyxy for b in results.boxes])
        new["flagged"] += sum(b.conflict is not None for b in results.boxes)
    print(f"\n{'':34s}{'impossible':>12s}{'contradictory':>15s}{'exact label':>13s}{'p50 ms':>9s}{'p90 ms':>9s}")
    for name, c, ms in (("each model apart (before)", old, old_ms), ("toonvision.Pipeline (one rule)", new, new_ms)):
        n = max(c["boxes"], 1)
        print(
            f"{name:34s}{c['impossible'] / n:12.3f}{c['contradictory'] / n:15.3f}"
            f"{c['exact'] / max(c['truths'], 1):13.3f}{np.percentile(ms, 50):9.1f}{np.percentile(ms, 90):9.1f}"
        )
    print(
        f"\nboxes: {old['boxes']} before, {new['boxes']} with the Pipeline; true boxes {new['truths']}; "
        f"disagreements the Pipeline flagged (a bot may skip them; annotate ranks them first): {new['flagged']}"
    )


if __name__ == "__main__":
    main()
