"""Uncertain boxes first, measured (issue 21, points 3 and 5): how unsure a box's place is (test-time
augmentation), the game-rule flags and their reasons, the uncertainty score and the review order it gives, on
fake models that drive the real Pipeline (no training)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from toonvision.data.detection import Detections, iou_matrix, scheme_classes
from toonvision.data.game_rules import INTERFACE_REGIONS, PERSPECTIVE_FACTOR, box_flags, expected_height
from toonvision.data.review import (
    PRE_ANNOTATED,
    ReviewState,
    box_doubt,
    rank_uncertain,
    read_sidecar,
    review_state,
    uncertainty,
)
from toonvision.data.taxonomy import task_classes
from toonvision.serving.annotate import Proposal, Step, propose, write_proposal
from toonvision.serving.pipeline import Pipeline
from toonvision.serving.position import edge_shift

SUITS5 = scheme_classes("suit")  # toon, bossbot, lawbot, cashbot, sellbot
W, H = 320, 240
FIGURE = (100, 80, 140, 200)  # left, top, right, bottom of the one bright figure of every test screenshot


def shot(box=FIGURE) -> np.ndarray:
    """A dark street with one bright figure in ``box``."""
    array = np.full((H, W, 3), 40, np.uint8)
    left, top, right, bottom = box
    array[top:bottom, left:right] = 230
    return array


class Sees:
    """A detector that finds the bright figure where it is in the image it is shown (a steady detector: its box
    moves with the figure under a flip or a shrink), its box pushed right by ``lean`` of the figure's width (a
    detector whose box sits off the figure the same way whichever way the figure faces: unsteady)."""

    classes = SUITS5
    threshold = 0.3

    def __init__(self, lean: float = 0.0, only_size: tuple[int, int] | None = None):
        self.lean, self.only_size, self.calls = lean, only_size, 0

    def detect(self, image, threshold=None):
        self.calls += 1
        array = np.asarray(image)
        ys, xs = np.nonzero(array[..., 0] > 200)
        if not len(xs) or (self.only_size and array.shape[:2] != self.only_size):
            return Detections.empty(len(self.classes))
        box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
        box[:, 0::2] += self.lean * (box[0, 2] - box[0, 0])
        scores = np.array([[0.02, 0.9, 0.02, 0.02, 0.04]], np.float32)
        return Detections(box, np.array([1]), scores.max(axis=1), scores)


class Said:
    """A classifier that says ``cls`` with probability ``sure`` for every crop."""

    def __init__(self, task: str, cls: str, sure: float = 0.9):
        self.classes = task_classes(task)
        self.row = np.full(len(self.classes), (1 - sure) / (len(self.classes) - 1))
        self.row[self.classes.index(cls)] = sure

    def probabilities(self, crops):
        return np.tile(self.row, (len(crops), 1))


def models() -> dict[str, Said]:
    return {
        "binary": Said("binary", "cog", 0.95),
        "suit": Said("suit", "bb"),
        "name": Said("name", "flunky"),
        "animal": Said("animal", "cat"),
    }


# --- position spread ---


def test_a_detector_whose_box_moves_between_copies_gets_a_higher_spread_than_a_steady_one():
    steady = Pipeline(models(), Sees()).detect(shot(), position_spread=True).boxes[0]
    leaning = Pipeline(models(), Sees(lean=0.2)).detect(shot(), position_spread=True).boxes[0]
    assert steady.position_spread == pytest.approx(0.0, abs=0.02)
    # Mirrored, the lean points the other way: the left and right edges move by 2 x 0.2 of the width, the top and
    # bottom stay; the shrunk copy leans as the plain one. Averaged: 0.1.
    assert leaning.position_spread == pytest.approx(0.1, abs=0.02)
    assert leaning.position_spread > steady.position_spread + 0.05
    assert steady.to_dict()["position_spread"] == pytest.approx(steady.position_spread, abs=1e-4)


def test_the_mirrored_look_places_a_box_that_leans():
    """A box pushed right by a fifth of its width is pushed left in the mirror: their mean is the figure. Plain
    detection (predict, watch) keeps the one look."""
    leaning = Pipeline(models(), Sees(lean=0.2))
    assert leaning.detect(shot(), position_spread=True).boxes[0].xyxy == FIGURE
    assert leaning.detect(shot()).boxes[0].xyxy == (108, 80, 148, 200)


def test_iou_matrix_is_every_pair_and_zero_for_a_box_without_area():
    a = np.array([[0, 0, 10, 10], [5, 5, 5, 20]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    assert iou_matrix(a, b) == pytest.approx(np.array([[1.0, 1 / 3, 0.0], [0.0, 0.0, 0.0]]))
    assert iou_matrix(a, np.zeros((0, 4))).shape == (2, 0)


def test_a_box_no_copy_finds_again_is_as_unsure_as_can_be():
    vanishing = Pipeline(models(), Sees(only_size=(H, W)))  # the mirrored copy has the same size: found there
    spread = vanishing.detect(shot(), position_spread=True).boxes[0].position_spread
    assert spread == pytest.approx(0.5, abs=0.02)  # steady in the mirror, gone in the shrunk copy (1.0)
    assert edge_shift(np.array([0, 0, 10, 20]), np.array([1, 2, 11, 22])) == pytest.approx(0.1)


class Peaks:
    """A detector with fixed peaks: a strong one on the figure, a weak one overlapping it, and weak ones apart
    (one just below the threshold, one below half of it); it keeps those at or above the threshold it is given."""

    classes = SUITS5
    threshold = 0.3

    def detect(self, image, threshold=None):
        boxes = np.array([FIGURE, (104, 84, 144, 204), (200, 60, 230, 150), (250, 60, 280, 150)], np.float32)
        scores = np.array([0.9, 0.25, 0.2, 0.1], np.float32)
        keep = scores >= (self.threshold if threshold is None else threshold)
        class_scores = np.tile(np.array([0.02, 1.0, 0.02, 0.02, 0.02], np.float32), (4, 1)) * scores[:, None]
        return Detections(boxes[keep], np.ones(int(keep.sum()), np.int64), scores[keep], class_scores[keep])


def test_near_misses_are_the_weak_peaks_apart_from_every_proposed_box_and_count_in_the_score():
    results = Pipeline(models(), Peaks()).detect(shot(), position_spread=True)
    assert [b.detector_score for b in results.boxes] == [pytest.approx(0.9)]  # the threshold still decides
    # The weak peak over the figure is the figure seen again; the one below half the threshold is not looked at.
    assert [(box, pytest.approx(score)) for box, score in results.near_misses] == [((200, 60, 230, 150), 0.2)]
    assert Pipeline(models(), Peaks())(shot()).near_misses is None  # predict: not looked for
    proposal = Proposal(results)
    assert proposal.near_misses == [{"box": [200, 60, 230, 150], "detector_score": 0.2}]
    assert proposal.uncertainty == pytest.approx(uncertainty(proposal.details) + 0.2, abs=1e-3)


def test_predict_and_watch_keep_their_speed_only_annotate_measures_the_spread(tmp_path):
    from toonvision.serving.prediction import Target, predict_targets
    from toonvision.serving.watch import watch

    path = tmp_path / "shot.png"
    Image.fromarray(shot()).save(path)
    detector = Sees()
    pipe = Pipeline(models(), detector)
    assert pipe(path).boxes[0].position_spread is None and detector.calls == 1
    target = predict_targets([Target(path, detect=True)], pipe)[0]
    assert target.results.boxes[0].position_spread is None and detector.calls == 2
    record = next(iter(watch(iter([("f", shot())]), pipe, fps=0, max_frames=1)))
    assert record.results.boxes[0].position_spread is None and detector.calls == 3
    proposal = propose(path, pipe)  # annotate: the plain run and two copies
    assert detector.calls == 6 and proposal.details[0]["position_spread"] == pytest.approx(0.0, abs=0.02)


# --- game rules ---


def test_a_disagreement_between_detector_and_classifiers_is_a_flag_with_its_reason():
    (flags,) = box_flags([FIGURE], W, H, ["the detector says sellbot; the classifiers say cog_bb_flunky"])
    assert flags == [
        {"rule": "detector-disagrees", "why": "the detector says sellbot; the classifiers say cog_bb_flunky"}
    ]


def test_a_box_far_too_tall_or_too_short_for_where_it_stands_is_flagged_with_why():
    width, height = 1280, 720
    feet = 360  # half way down: a box 2.5 times too tall for it still fits on the screen
    right = expected_height(feet, height)
    fine = (400, feet - right, 460, feet)
    tall = (500, feet - PERSPECTIVE_FACTOR * right * 1.1, 560, feet)
    short = (600, feet - right / PERSPECTIVE_FACTOR / 1.1, 640, feet)
    at_edge = (0, feet - 3 * PERSPECTIVE_FACTOR * right, 60, feet)  # cut by the screen's edge: not judged
    flags = box_flags([fine, tall, short, at_edge], width, height)
    assert flags[0] == [] and flags[3] == []
    assert [f["rule"] for f in flags[1]] == ["perspective"] and "too tall" in flags[1][0]["why"]
    assert [f["rule"] for f in flags[2]] == ["perspective"] and "too short" in flags[2][0]["why"]
    assert f"feet at y {feet} of {height}" in flags[1][0]["why"]
    # Higher up the screen (further away) the same height is too tall.
    far = (700, 250 - right, 760, 250)
    assert box_flags([far], width, height)[0][0]["rule"] == "perspective"


def test_a_box_mostly_over_the_games_interface_is_flagged_with_the_part_it_covers():
    laff = next(r for r in INTERFACE_REGIONS if r.name == "laff")
    width, height = 1280, 720
    inside = (laff.left * width + 2, laff.top * height + 4, laff.right * width - 4, laff.bottom * height - 4)
    half_out = (laff.right * width - 20, 600, laff.right * width + 60, 700)
    flags = box_flags([inside, half_out], width, height)
    rules = [f["rule"] for f in flags[0]]
    assert "interface" in rules
    assert "Laff meter" in next(f["why"] for f in flags[0] if f["rule"] == "interface")
    assert "interface" not in [f["rule"] for f in flags[1]]


# --- the score and the order ---


def record(label=0.9, detector=0.9, spread=0.0, flags=0) -> dict:
    return {
        "label_confidence": label,
        "detector_score": detector,
        "position_spread": spread,
        "flags": [{"rule": "perspective", "why": "x"}] * flags,
    }


def test_every_kind_of_doubt_raises_the_score():
    sure = box_doubt(record())
    assert box_doubt(record(label=0.4)) > sure
    assert box_doubt(record(detector=0.4)) > sure
    assert box_doubt(record(spread=0.15)) > sure
    assert box_doubt(record(flags=1)) > sure and box_doubt(record(flags=2)) > box_doubt(record(flags=1))
    assert box_doubt(record(spread=5.0)) == pytest.approx(1.0)  # unplaceable
    # A screenshot's score counts the boxes to fix: two doubtful boxes outweigh one.
    assert uncertainty([record(label=0.5), record(label=0.5)]) > uncertainty([record(label=0.5)])
    assert uncertainty([]) == 1.0  # nothing found: only a person can tell a miss from an empty street


def state(tmp_path, name: str, sidecar: dict) -> ReviewState:
    return ReviewState(tmp_path / name, None, PRE_ANNOTATED, sidecar)


def test_rank_uncertain_puts_the_highest_score_first_and_old_sidecars_by_their_confidence(tmp_path):
    new = {
        "sure.png": {"uncertainty": 0.1, "confidence": 0.5, "conflicts": 0},
        "flagged.png": {"uncertainty": 1.4, "confidence": 0.9, "conflicts": 0},
        "loose.png": {"uncertainty": 0.7, "confidence": 0.9, "conflicts": 0},
    }
    old = {  # written before the score: ranked by their least sure box, disagreements first, as before
        "old_conflict.png": {"confidence": 0.8, "conflicts": 1},
        "old_doubt.png": {"confidence": 0.2, "conflicts": 0},
        "old_sure.png": {"confidence": 0.95, "conflicts": 0},
    }
    states = [state(tmp_path, n, s) for n, s in {**new, **old}.items()]
    states.append(ReviewState(tmp_path / "person.png", None, "reviewed", None))
    ranked = rank_uncertain(states)
    order = [s.image.name for s, _ in ranked]
    assert order == ["flagged.png", "old_conflict.png", "old_doubt.png", "loose.png", "sure.png", "old_sure.png"]
    assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
    assert [n for n in order if n.startswith("old")] == ["old_conflict.png", "old_doubt.png", "old_sure.png"]


def test_annotate_writes_spread_flags_and_score_and_the_ranking_reads_them(tmp_path):
    from toonvision.data.annotations import find_annotation
    from toonvision.data.taxonomy import all_labels

    labels = [str(label) for label in all_labels()]
    written = {}
    for name, detector in (("steady.png", Sees()), ("leaning.png", Sees(lean=0.2))):
        path = tmp_path / name
        Image.fromarray(shot()).save(path)
        proposal = propose(path, Pipeline(models(), detector))
        write_proposal(Step(review_state(path, None), "write", "voc"), proposal, {"detect": "fake"}, labels)
        written[name] = read_sidecar(path)
    for side in written.values():
        box = side["boxes"][0]
        assert {"position_spread", "flags", "label_confidence"} <= set(box)
        assert side["uncertainty"] == pytest.approx(uncertainty(side["boxes"]), abs=1e-4)
    assert written["leaning.png"]["uncertainty"] > written["steady.png"]["uncertainty"]
    states = [review_state(tmp_path / n, find_annotation(tmp_path / n)) for n in written]
    assert [s.image.name for s, _ in rank_uncertain(states)] == ["leaning.png", "steady.png"]
    json.dumps(written)  # the flags are plain JSON


def test_proposal_flags_a_box_over_the_interface_and_counts_it():
    from toonvision.serving.pipeline import BoxResult, Results

    results = Results("s", 1280, 720)
    results.boxes = [
        BoxResult((0, 600, 150, 720), "toon_cat", 0.9, "toon", 0.9, detector_score=0.9),
        BoxResult((600, 300, 660, 430), "toon_dog", 0.9, "toon", 0.9, detector_score=0.9),
    ]
    proposal = Proposal(results)
    assert [f["rule"] for f in proposal.details[0]["flags"]] == ["interface"]
    assert proposal.details[1]["flags"] == [] and proposal.flagged == 1
    assert proposal.uncertainty == pytest.approx(uncertainty(proposal.details))
