"""Detection metrics on hand-made screenshots whose AP is worked out by hand (COCO's 101-point interpolation)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from toonvision.data.detection import Detections, Truth
from toonvision.learning.detection_metrics import evaluate_detections, image_errors, worst_screenshots

CLASSES = ["toon", "cog"]
A = (0, 0, 100, 100)
B = (200, 200, 300, 300)
ELSEWHERE = (500, 500, 600, 600)
# Two truths, detected in the order TP (.9), FP (.8), TP (.7): precision 1 up to recall .5, then 2/3 up to
# recall 1. COCO's envelope at its 101 recall thresholds 0, .01, ..., 1: 51 thresholds (0-.5) at 1 and 50
# (.51-1) at 2/3.
HAND_AP = (51 * 1 + 50 * 2 / 3) / 101  # 0.83498...


def truth(boxes, classes=None, difficult=None, name="a.png", size=(1280, 720)) -> Truth:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(boxes)
    return Truth(
        Path(name),
        size[0],
        size[1],
        boxes,
        np.asarray(classes if classes is not None else [0] * n, np.int64),
        np.asarray(difficult if difficult is not None else [False] * n, bool),
    )


def dets(boxes, scores, classes=None) -> Detections:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    return Detections(
        boxes,
        np.asarray(classes if classes is not None else [0] * len(boxes), np.int64),
        np.asarray(scores, np.float32),
    )


def hand_case(extra_truth=(), extra_difficult=(), extra_dets=()):
    boxes = [A, B, *extra_truth, *extra_difficult]
    difficult = [False] * (2 + len(extra_truth)) + [True] * len(extra_difficult)
    d_boxes = [A, ELSEWHERE, B, *(b for b, _ in extra_dets)]
    scores = [0.9, 0.8, 0.7, *(s for _, s in extra_dets)]
    return truth(boxes, difficult=difficult), dets(d_boxes, scores)


def test_perfect_detections_score_one():
    t = truth([A, B, ELSEWHERE], classes=[0, 1, 1])
    d = dets([A, B, ELSEWHERE], [0.9, 0.8, 0.7], classes=[0, 1, 1])
    m = evaluate_detections([t], [d], CLASSES)
    assert m.ap50 == pytest.approx(1.0) and m.ap == pytest.approx(1.0) and m.recall50 == pytest.approx(1.0)
    assert [c.ap50 for c in m.per_class] == [pytest.approx(1.0)] * 2
    assert (m.true_positives, m.misses, m.false_positives) == (3, 0, 0)


def test_one_false_positive_between_two_hits_gives_the_hand_worked_ap():
    t, d = hand_case()
    m = evaluate_detections([t], [d], CLASSES)
    assert m.ap50 == pytest.approx(HAND_AP)
    assert m.ap == pytest.approx(HAND_AP)  # the boxes are exact: every IoU threshold agrees
    toon = m.per_class[0]
    assert toon.ap50 == pytest.approx(HAND_AP) and toon.recall50 == pytest.approx(1.0)
    assert toon.precision50[:51] == [pytest.approx(1.0)] * 51
    assert toon.precision50[51:] == [pytest.approx(2 / 3)] * 50
    errors = m.images[0]
    assert (errors.true_positives, errors.misses, errors.false_positives) == (2, 0, 1)
    assert errors.false.tolist() == [False, True, False] and errors.missed.tolist() == [False, False]


def test_ap50_95_averages_over_iou_thresholds():
    # One truth, one detection shifted so IoU = 80*100 / (120*100) = 2/3: a hit at IoU .5, .55, .6, .65 and a
    # miss from .7 up, so AP50:95 = 4/10.
    t = truth([(0, 0, 100, 100)])
    d = dets([(20, 0, 120, 100)], [0.9])
    m = evaluate_detections([t], [d], CLASSES)
    assert m.ap50 == pytest.approx(1.0) and m.ap == pytest.approx(0.4) and m.ap75 == pytest.approx(0.0)


def test_a_detection_on_a_difficult_box_changes_nothing():
    base = evaluate_detections(*map(list, zip(hand_case(), strict=True)), CLASSES)
    # Scored .85, between the first hit and the false positive: were the box not difficult it would be a hit.
    t, d = hand_case(extra_difficult=[(700, 100, 800, 200)], extra_dets=[((700, 100, 800, 200), 0.85)])
    m = evaluate_detections([t], [d], CLASSES)
    assert m.ap50 == pytest.approx(base.ap50) == pytest.approx(HAND_AP)
    assert m.ap == pytest.approx(HAND_AP)
    e = m.images[0]
    assert (e.true_positives, e.misses, e.false_positives) == (2, 0, 1)
    assert e.false.tolist() == [False, True, False, False]
    assert m.per_class[0].truths == 2 and m.per_class[0].difficult == 1


def test_a_missed_difficult_box_changes_nothing():
    t, d = hand_case(extra_difficult=[(700, 100, 800, 200)])
    m = evaluate_detections([t], [d], CLASSES)
    assert m.ap50 == pytest.approx(HAND_AP) and m.ap == pytest.approx(HAND_AP)
    assert m.recall50 == pytest.approx(1.0)
    assert m.images[0].misses == 0 and m.images[0].missed.tolist() == [False, False, False]


def test_difficult_boxes_are_matched_with_ordinary_iou_and_only_once():
    """The chosen route (ignore, not iscrowd): a small box inside a big difficult truth is a false positive
    (a crowd truth would excuse it: intersection / detection area = 1), and so is a duplicate on it."""
    big = (400, 100, 800, 700)
    t, d = hand_case(extra_difficult=[big], extra_dets=[((500, 200, 540, 240), 0.95)])
    m = evaluate_detections([t], [d], CLASSES)
    assert m.images[0].false_positives == 2
    # First detection (.95) ranked FP, then TP, FP, TP: precision 1/2 at recall .5, 2/4 at recall 1 -> 1/2.
    assert m.ap50 == pytest.approx(0.5)
    t, d = hand_case(extra_difficult=[big], extra_dets=[(big, 0.95), (big, 0.94)])
    m = evaluate_detections([t], [d], CLASSES)
    assert m.images[0].false.tolist() == [False, True, False, False, True]


def test_size_buckets_go_by_height_at_720():
    # Heights 40 (small), 60 (medium: the lower edge is in), 100 (medium), 200 (large); on a 640x360 screenshot a
    # 40-px box is 80 px at 720: medium. Widths do not matter.
    t1 = truth([(0, 0, 300, 40), (400, 0, 410, 60), (500, 0, 600, 100), (700, 0, 720, 200)], name="big.png")
    t2 = truth([(0, 0, 30, 40)], name="small.png", size=(640, 360))
    # Only the medium boxes are found, with a false positive of medium height.
    d1 = dets([(400, 0, 410, 60), (500, 0, 600, 100), (900, 300, 1000, 400)], [0.9, 0.8, 0.7])
    d2 = dets([(0, 0, 30, 40)], [0.9])
    m = evaluate_detections([t1, t2], [d1, d2], CLASSES)
    assert {k: v["truths"] for k, v in m.by_size.items()} == {"all": 5, "small": 1, "medium": 3, "large": 1}
    assert m.by_size["medium"]["ap50"] == pytest.approx(1.0)  # the FP scores below all three hits
    assert m.by_size["small"]["ap50"] == pytest.approx(0.0)
    assert m.by_size["large"]["ap50"] == pytest.approx(0.0)
    # all: hits at 1, 2, 3 of 5 truths then an FP: precision 1 up to recall .6 (61 thresholds), then nothing.
    assert m.by_size["all"]["ap50"] == pytest.approx(61 / 101) == pytest.approx(m.ap50)


def test_no_detections_score_zero_and_serialise():
    t, _ = hand_case()
    m = evaluate_detections([t, truth([B], classes=[1], name="b.png")], [Detections.empty()] * 2, CLASSES)
    assert m.ap50 == 0.0 and m.ap == 0.0 and m.recall50 == 0.0
    assert [c.ap50 for c in m.per_class] == [0.0, 0.0]
    assert (m.true_positives, m.misses, m.false_positives) == (0, 3, 0)
    json.dumps(m.to_dict(), allow_nan=False)


def test_a_class_without_true_boxes_has_no_ap_and_stays_out_of_the_mean():
    t, d = hand_case()
    # A cog detection on a screenshot without cogs: a false positive, but cog has no AP to speak of.
    d = dets([*d.boxes, (900, 100, 1000, 200)], [*d.scores, 0.6], classes=[0, 0, 0, 1])
    m = evaluate_detections([t], [d], CLASSES)
    cog = m.per_class[1]
    assert cog.ap50 is None and cog.ap is None and cog.recall50 is None and cog.precision50 is None
    assert m.ap50 == pytest.approx(HAND_AP)
    assert m.images[0].false_positives == 2
    out = m.to_dict()
    assert out["per_class"]["cog"]["ap50"] is None and out["by_size"]["small"]["ap50"] is None
    json.dumps(out, allow_nan=False)


def test_nothing_to_find_gives_none():
    m = evaluate_detections([truth([], name="empty.png")], [dets([A], [0.9])], CLASSES)
    assert m.ap50 is None and m.ap is None and m.images[0].false_positives == 1
    assert evaluate_detections([], [], CLASSES).ap50 is None


def test_counts_use_the_score_threshold_but_ap_uses_every_detection():
    t, d = hand_case()
    m = evaluate_detections([t], [d], CLASSES, score_threshold=0.75)
    assert m.ap50 == pytest.approx(HAND_AP)
    e = m.images[0]  # the hit at .7 no longer counts: B is a miss
    assert (e.true_positives, e.misses, e.false_positives) == (1, 1, 1)
    assert e.missed.tolist() == [False, True]


def test_a_detection_of_the_wrong_class_is_a_miss_and_a_false_positive():
    e = image_errors(truth([A], classes=[1]), dets([A], [0.9], classes=[0]), CLASSES)
    assert (e.true_positives, e.misses, e.false_positives) == (0, 1, 1)


def test_worst_screenshots_rank_by_misses_plus_false_positives():
    t_ok, d_ok = truth([A], name="ok.png"), dets([A], [0.9])
    t_two, d_two = truth([A, B], name="two_misses.png"), Detections.empty()
    t_one, d_one = truth([A], name="one_fp.png"), dets([A, B], [0.9, 0.8])
    t_mix, d_mix = truth([A], name="mix.png"), dets([B], [0.9])  # a miss and a false positive
    truths, detections = [t_ok, t_one, t_two, t_mix], [d_ok, d_one, d_two, d_mix]
    m = evaluate_detections(truths, detections, CLASSES)
    worst = worst_screenshots(truths, detections, m, n=2)
    assert [w.truth.name for w in worst] == ["two_misses.png", "mix.png"]  # a tie: more misses first
    assert worst[1].errors.errors == 2 and worst[1].image == Path("mix.png")
    assert [w.truth.name for w in worst_screenshots(truths, detections, m, n=10)][-1] == "one_fp.png"


def test_bad_input_is_refused():
    t, d = hand_case()
    with pytest.raises(ValueError, match="screenshots"):
        evaluate_detections([t], [d, d], CLASSES)
    with pytest.raises(ValueError, match="out of range"):
        evaluate_detections([t], [dets([A], [0.9], classes=[5])], CLASSES)


def test_pycocotools_stays_quiet(capsys):
    t, d = hand_case()
    evaluate_detections([t], [d], CLASSES)
    assert capsys.readouterr().out == ""
