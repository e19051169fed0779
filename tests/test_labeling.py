"""The one rule for a box's label, through the Pipeline that every verb uses, on models that say what we choose."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from toonvision.data.annotations import find_annotation, read_annotation
from toonvision.data.detection import Detections, scheme_classes
from toonvision.data.taxonomy import ANIMALS, TASKS, all_labels, parse_label, task_classes
from toonvision.serving.labeling import Evidence, Informed, class_labels, decide
from toonvision.serving.pipeline import Pipeline, pixel_box

TAXONOMY = {str(label) for label in all_labels()}


class Said:
    """A classifier that answers with the rows it was given, one per crop in turn."""

    def __init__(self, task: str, rows):
        self.task, self.classes = task, task_classes(task)
        self.rows = np.asarray(rows, np.float64).reshape(-1, len(self.classes))
        self.asked = 0

    def probabilities(self, crops):
        out = self.rows[self.asked : self.asked + len(crops)]
        self.asked += len(crops)
        return out


class Finds:
    """A detector that finds the boxes it was given, with every class's score at their peaks."""

    def __init__(self, classes, boxes, class_scores):
        self.classes = list(classes)
        self.class_scores = np.asarray(class_scores, np.float32).reshape(len(boxes), len(self.classes))
        self.boxes = np.asarray(boxes, np.float32).reshape(-1, 4)

    def detect(self, image, threshold=None):
        best = self.class_scores.argmax(axis=1)
        return Detections(self.boxes, best, self.class_scores.max(axis=1), self.class_scores)


def one_hot(task: str, cls: str, sure: float = 0.9) -> np.ndarray:
    classes = task_classes(task)
    row = np.full(len(classes), (1 - sure) / (len(classes) - 1))
    row[classes.index(cls)] = sure
    return row


SHOT = np.full((240, 320, 3), 90, np.uint8)
SUITS5 = scheme_classes("suit")  # toon, bossbot, lawbot, cashbot, sellbot


def test_suit_and_name_are_never_chosen_apart():
    """The defect: predict and watch chose the suit (sellbot) and the name (flunky, a bossbot) separately and
    printed cog_sb_flunky, a label the game does not have."""
    models = {
        "binary": Said("binary", [0.95, 0.05]),
        "suit": Said("suit", one_hot("suit", "sb", 0.7)),
        "name": Said("name", one_hot("name", "flunky", 0.6)),
        "animal": Said("animal", one_hot("animal", "cat")),
    }
    box = Pipeline(models).predict(SHOT, [_box(10, 10, 60, 160)]).boxes[0]
    assert box.label in TAXONOMY
    assert box.label != "cog_sb_flunky"
    parsed = parse_label(box.label)
    assert (box.kind, box.suit, box.name) == ("cog", parsed.suit, parsed.name)


def test_a_strong_disagreement_between_detector_and_classifiers_is_flagged():
    """The defect: a box the detector calls sellbot 0.33 came out as toon_mouse and nothing said so."""
    scores = [0.01, 0.02, 0.01, 0.01, 0.33]
    models = {
        "binary": Said("binary", [0.03, 0.97]),
        "suit": Said("suit", one_hot("suit", "sb")),
        "name": Said("name", one_hot("name", "coldcaller")),
        "animal": Said("animal", one_hot("animal", "mouse")),
    }
    results = Pipeline(models, Finds(SUITS5, [(10, 10, 60, 160)], scores))(SHOT)
    box = results.boxes[0]
    assert box.detector_class == "sellbot" and box.detector_score == pytest.approx(0.33)
    assert box.label in TAXONOMY and box.kind == parse_label(box.label).kind
    assert box.conflict is not None and "sellbot" in box.conflict and box.unsure
    assert json.loads(results.to_json())["boxes"][0]["conflict"] == box.conflict


def test_agreeing_models_give_a_sure_label_and_no_conflict():
    models = {
        "binary": Said("binary", [0.02, 0.98]),
        "animal": Said("animal", one_hot("animal", "duck", 0.95)),
        "suit": Said("suit", one_hot("suit", "bb")),
        "name": Said("name", one_hot("name", "flunky")),
    }
    box = Pipeline(models, Finds(SUITS5, [(5, 5, 50, 120)], [0.8, 0.01, 0.01, 0.01, 0.01]))(SHOT).boxes[0]
    assert (box.label, box.conflict) == ("toon_duck", None)
    assert box.confidence > 0.9
    assert models["suit"].asked == 0 and models["name"].asked == 0  # a sure Toon never pays for the Cog models


def test_without_a_name_model_a_cog_is_named_as_far_as_the_models_can():
    box = Pipeline({"binary": Said("binary", [0.9, 0.1]), "suit": Said("suit", one_hot("suit", "lb"))}).predict(
        SHOT, [_box(0, 0, 40, 100)]
    )
    b = box.boxes[0]
    assert (b.label, b.kind, b.suit, b.name, b.shown) == (None, "cog", "lb", None, "cog_lb")


def test_pixel_boxes_are_rounded_and_clipped_once_for_every_verb():
    assert pixel_box((10.4, 20.6, 30.5, 40.49), 320, 240) == (10, 21, 30, 40)
    assert pixel_box((-5, -5, 400, 300), 320, 240) == (0, 0, 320, 240)
    assert pixel_box((330, 10, 340, 20), 320, 240) is None


def test_results_write_labelimg_files_with_the_depth_of_the_screenshot(tmp_path):
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((240, 320), 100, np.uint8)).save(grey)
    models = {t: Said(t, one_hot(t, task_classes(t)[0])) for t in TASKS}
    results = Pipeline(models).predict(grey, [_box(10, 10, 50, 100)])
    path = results.save_annotation("voc")
    assert b"<depth>1</depth>" in path.read_bytes()
    ann = read_annotation(find_annotation(grey), grey.name, (320, 240))
    assert [b.name for b in ann.boxes] == [results.boxes[0].label]
    with pytest.raises(FileExistsError):
        results.save_annotation("voc")  # never over an existing file: it may be a person's


# --- the property: whatever the models say, and whichever are there, the label is in the taxonomy ----------


def _vector(draw, n: int) -> np.ndarray:
    values = np.asarray(draw(st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=n, max_size=n)), np.float64)
    return values / values.sum() if values.sum() > 0 else values


@st.composite
def evidence_and_models(draw):
    present = draw(st.sets(st.sampled_from(TASKS)))
    scheme = draw(st.sampled_from([None, "suit", "kind", "label"]))
    classes = scheme_classes(scheme, sorted(TAXONOMY)) if scheme else []
    detector = None
    detector_class = None
    if classes:
        scores = draw(st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=len(classes), max_size=len(classes)))
        detector = dict(zip(classes, scores, strict=True))
        detector_class = classes[int(np.argmax(scores))]
    evidence = Evidence(
        kind=_vector(draw, 2) if "binary" in present else None,
        suit=_vector(draw, 4) if "suit" in present else None,
        name=_vector(draw, 32) if "name" in present else None,
        animal=_vector(draw, len(ANIMALS)) if "animal" in present else None,
        detector=detector,
        detector_class=detector_class,
    )
    return evidence, Informed.of(sorted(present), classes)


@settings(max_examples=400, deadline=None)
@given(evidence_and_models())
def test_no_label_is_ever_outside_the_taxonomy(case):
    evidence, informed = case
    d = decide(evidence, informed)
    assert d.label is None or d.label in TAXONOMY
    assert d.kind in ("cog", "toon")
    assert 0.0 <= d.confidence <= 1.0 + 1e-9 and 0.0 <= d.kind_confidence <= 1.0 + 1e-9
    if d.label is not None:
        parsed = parse_label(d.label)
        assert parsed.kind == d.kind  # the kind never contradicts the label
        if parsed.is_cog:
            assert (d.suit, d.name, d.animal) == (parsed.suit, parsed.name, None)  # a name always of its suit
        else:
            assert (d.suit, d.name, d.animal) == (None, None, parsed.animal)
    elif informed.cog_name and informed.toon_animal:
        pytest.fail("every kind can be named, yet no label")
    if d.conflict is not None:
        assert evidence.detector_class is not None
    if evidence.detector_class is not None:
        said = class_labels(evidence.detector_class)
        answer = [str(label) for label, inside in zip(all_labels(), said, strict=True) if inside]
        agrees = (d.label in answer) if d.label else any(parse_label(a).kind == d.kind for a in answer)
        if d.suit and not d.label:
            agrees = any(parse_label(a).suit == d.suit for a in answer)
        assert agrees or d.conflict, "a label that contradicts the detector always says so"


@settings(max_examples=60, deadline=None)
@given(st.sets(st.sampled_from(TASKS)), st.sampled_from([None, "suit", "kind", "label"]), st.integers(0, 2**31))
def test_the_pipeline_labels_stay_in_the_taxonomy_for_every_combination_of_models(present, scheme, seed):
    rng = np.random.default_rng(seed)
    boxes = [(10, 10, 60, 150), (100, 40, 150, 200), (200, 5, 260, 120)]
    models = {t: Said(t, rng.dirichlet(np.ones(len(task_classes(t))), len(boxes))) for t in present}
    detector = None
    if scheme:
        classes = scheme_classes(scheme, sorted(TAXONOMY))
        detector = Finds(classes, boxes, rng.random((len(boxes), len(classes))))
    pipe = Pipeline(models, detector)
    results = pipe(SHOT) if detector else pipe.predict(SHOT, [_box(*b) for b in boxes])
    assert len(results.boxes) == 3
    for box in results.boxes:
        assert box.label is None or box.label in TAXONOMY
        assert box.label is not None or not pipe.names_everything
        assert box.label is None or parse_label(box.label).kind == box.kind


def _box(*corners):
    from toonvision.data.annotations import Box

    return Box("", *map(float, corners))


def test_a_pipeline_without_a_detector_says_so_when_asked_to_find_boxes():
    pipe = Pipeline({"binary": Said("binary", [0.9, 0.1])})
    for ask in (lambda: pipe(SHOT), lambda: pipe.detect(SHOT, position_spread=True)):
        with pytest.raises(ValueError, match="no detector"):
            ask()
    assert pipe.predict(SHOT, [_box(10, 10, 60, 160)]).boxes[0].kind == "cog"  # with the boxes given it labels
