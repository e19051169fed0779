"""Does ``--rank uncertain`` put the work first? The review queue's front against the boxes a person must fix.

Renders ``--screenshots`` held-out screenshots with known truth (as annotate_quality.py does), pre-annotates
them with a workspace's models (ONNX exports of the ones ``toonvision annotate`` would pick, through annotate's own
code, position spread and game-rule flags included), and counts per screenshot the boxes a person would have to
fix: a wrong label, a box with IoU < ``--iou`` (0.7) with its truth, a false box, a missed true box (each counted
once; matched one to one by the Hungarian method on IoU, as annotate_quality.py does). Then prints which share of
all those fixes lies in the first ``--front`` (20%) of the queue for:

- this ranking (``rank_uncertain`` on the scores annotate records), and the same score without the position
  spread, without the game-rule flags and without the near misses (what each adds);
- score-only: the screenshot whose least sure box has the lowest detector score first;
- the most proposed boxes first (what the score would be if every box were doubtful);
- random order, averaged over ``--shuffles`` shuffles;
- the best order there is (by the true count of boxes to fix): the ceiling.

The aim is at least twice the random share, and more than score-only. Figures are printed, not asserted.

    python benchmarks/review_ranking.py [--root demo] [--screenshots 300] [--seed 40000] [--conf 0.3]

Needs a workspace with all five models: ``make demo`` makes one in demo/ (exit 2 without one).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

import _common
from annotate_quality import held_out, held_out_options, person_edits, pre_annotate


def fixes(truth, proposal, iou: float, touched: list[bool]) -> int:
    """The boxes a person touches to turn ``proposal`` into ``truth``: every proposed box not left as it is,
    every missed one; ``touched`` gets, per proposed box, whether it is one of them."""
    box_touched: list[bool] = []
    edits = person_edits(truth, proposal.results.annotation_boxes(), iou, box_touched)
    touched.extend(box_touched)
    return edits["truths"] - edits["untouched"] + edits["delete false"]


def auc(values: Sequence[float], positive: Sequence[bool]) -> float:
    """The chance that a random positive has a higher value than a random negative (ties count half)."""
    values, positive = np.asarray(values, np.float64), np.asarray(positive, bool)
    pos, neg = values[positive], values[~positive]
    if not len(pos) or not len(neg):
        return float("nan")
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def signals(proposals: list, touched: list[bool]) -> None:
    """Print whether each signal of the score tells the boxes a person touches from the ones left alone."""
    details = [d for p in proposals for d in p.details]
    if not details:
        return
    from toonvision.data.review import box_doubt

    print(f"per proposed box: {sum(touched)} of {len(touched)} touched by a person; AUC of each signal (0.5: none):")
    columns = {
        "1 - label confidence": [1 - d["label_confidence"] for d in details],
        "1 - detector score": [1 - (d["detector_score"] or 0.0) for d in details],
        "position spread": [d["position_spread"] or 0.0 for d in details],
        "game-rule flags": [len(d["flags"]) for d in details],
        "the box's doubt (all together)": [box_doubt(d) for d in details],
    }
    for name, values in columns.items():
        print(f"  {name:32s} {auc(values, touched):.3f}")
    flagged = [bool(d["flags"]) for d in details]
    for rule in sorted({f["rule"] for d in details for f in d["flags"]}):
        hit = [t for d, t in zip(details, touched, strict=True) if any(f["rule"] == rule for f in d["flags"])]
        print(f"  flagged {rule}: {sum(hit)} of {len(hit)} touched")
    rest = [t for f, t in zip(flagged, touched, strict=True) if not f]
    print(f"  not flagged: {sum(rest)} of {len(rest)} touched")


def front_share(order: Sequence[int], work: np.ndarray, front: float) -> float:
    """The share of all the work that lies in the first ``front`` of the queue ``order`` (screenshot indexes)."""
    first = max(1, math.ceil(front * len(order)))
    return float(work[list(order[:first])].sum() / max(work.sum(), 1))


def ranked_by(proposals: list, score: Callable[[list[dict], list[dict]], float]) -> list[int]:
    """The screenshots in ``rank_uncertain``'s order when annotate's score is ``score`` of their box records and
    near misses."""
    from toonvision.data.review import PRE_ANNOTATED, ReviewState, rank_uncertain

    states = [
        ReviewState(p.image, None, PRE_ANNOTATED, {"uncertainty": score(p.details, p.near_misses)}) for p in proposals
    ]
    index = {p.image: i for i, p in enumerate(proposals)}
    return [index[state.image] for state, _ in rank_uncertain(states)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    held_out_options(parser, screenshots=300)
    parser.add_argument("--iou", type=float, default=0.7, help="a box looser than this with its truth is fixed")
    parser.add_argument("--front", type=float, default=0.2, help="the front of the queue measured")
    parser.add_argument("--shuffles", type=int, default=2000, help="random orders averaged")
    parser.add_argument("--shipped", action="store_true", help="the models ToonVision ships instead of --root's")
    args = parser.parse_args()

    from toonvision.data.review import uncertainty
    from toonvision.data.workspace import Workspace

    ws = Workspace(args.root)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        bare, truths = held_out(Path(tmp), args.screenshots, args.seed, size)
        if args.shipped:
            onnx_paths, detector_onnx, _, _ = _common.shipped_models()
        else:
            best, detector = _common.workspace_models(args.root)
            onnx_paths, detector_onnx = _common.export_models(best, detector, Path(tmp) / "models")
        start = time.perf_counter()
        summary, used = pre_annotate(bare, ws, onnx_paths, detector_onnx, args.conf)
        seconds = time.perf_counter() - start
    proposals = [proposal for _, proposal in summary.written]
    touched: list[bool] = []
    work = np.array([fixes(truths[p.image.name], p, args.iou, touched) for p in proposals], np.float64)

    def without(key: str, empty: object) -> Callable[[list[dict], list[dict]], float]:
        return lambda boxes, near: uncertainty([{**b, key: empty} for b in boxes], near)

    least_score = [min((d["detector_score"] or 0.0 for d in p.details), default=0.0) for p in proposals]
    orders = {
        "this ranking (uncertainty score)": ranked_by(proposals, uncertainty),
        "  without the position spread": ranked_by(proposals, without("position_spread", None)),
        "  without the game-rule flags": ranked_by(proposals, without("flags", [])),
        "  without the near misses": ranked_by(proposals, lambda boxes, _: uncertainty(boxes)),
        "score-only (least detector score first)": sorted(range(len(proposals)), key=lambda i: least_score[i]),
        "most proposed boxes first": sorted(range(len(proposals)), key=lambda i: -len(proposals[i].boxes)),
    }
    rng = np.random.default_rng(0)
    shuffled = [front_share(rng.permutation(len(proposals)), work, args.front) for _ in range(args.shuffles)]

    boxes = sum(len(p.boxes) for p in proposals)
    flagged = sum(p.flagged for p in proposals)
    near = sum(len(p.near_misses) for p in proposals)
    spreads = [d["position_spread"] for p in proposals for d in p.details if d["position_spread"] is not None]
    print(
        f"review ranking on {len(proposals)} held-out {args.size} screenshots (seed {args.seed}), --conf {args.conf}, "
        f"annotate at {len(proposals) / max(summary.seconds, 1e-9):.2f} screenshots/s with the position spread "
        f"({seconds:.1f} s with loading)"
    )
    for task, path in used.items():
        print(f"  {task:7s} {path}")
    print(
        f"{boxes} proposed boxes ({flagged} flagged by a game rule; median position spread "
        f"{np.median(spreads) if spreads else float('nan'):.3f}), {near} near misses, {int(work.sum())} boxes to fix "
        f"(wrong label, IoU < {args.iou}, false or missed) in {int((work > 0).sum())} screenshots"
    )
    first = max(1, math.ceil(args.front * len(proposals)))
    print(f"share of the boxes to fix in the first {args.front:.0%} of the queue ({first} screenshots):")
    random_share = float(np.mean(shuffled))
    for name, order in orders.items():
        share = front_share(order, work, args.front)
        print(f"  {name:42s} {share:.3f}  ({share / max(random_share, 1e-9):.2f}x random)")
    print(f"  {'random order (mean of ' + str(args.shuffles) + ' shuffles)':42s} {random_share:.3f}")
    ceiling = front_share(np.argsort(-work, kind="stable"), work, args.front)
    print(f"  {'best order there is (true boxes to fix first)':42s} {ceiling:.3f}")
    signals(proposals, touched)


if __name__ == "__main__":
    main()
