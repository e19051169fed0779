"""`toonvision watch --collect`: the frames where the models are unsure become pre-annotations in the review queue.
Fake models drive the real Pipeline and watch loop; nothing is trained."""

from __future__ import annotations

import json

import numpy as np
import pytest

from toonvision.data.annotations import find_annotation, read_voc
from toonvision.data.detection import Detections, iou_matrix, scheme_classes
from toonvision.data.review import PRE_ANNOTATED, read_sidecar, review_state, sidecar_path
from toonvision.data.taxonomy import task_classes
from toonvision.serving.collect import Collector, Tracker, frame_stem
from toonvision.serving.pipeline import BoxResult, Pipeline, Results
from toonvision.serving.watch import FrameRecord, watch

SUITS5 = scheme_classes("suit")  # toon, bossbot, lawbot, cashbot, sellbot
MODELS = {"detect": "runs/detect/model.onnx", "binary": "runs/binary/model.onnx"}


def frame(seed: int) -> np.ndarray:
    """A 120x160 frame of its own flat grey: any two differ well beyond the near-duplicate bound."""
    return np.full((120, 160, 3), (seed * 37) % 256, np.uint8)


def box(x: int, label: str = "toon_cat", *, conf: float = 0.9, score: float = 0.9, conflict: str | None = None):
    kind = label.split("_")[0]
    return BoxResult(
        (x, 10, x + 30, 70), label, conf, kind, 0.99, detector_class=kind if kind == "toon" else "bossbot",
        detector_score=score, conflict=conflict,
    )  # fmt: skip


def record(index: int, boxes: list[BoxResult], *, seed: int | None = None, t: float = 1.8e9) -> FrameRecord:
    image = frame(index if seed is None else seed)
    results = Results("screen", 160, 120, boxes, models=dict(MODELS), image=image)
    return FrameRecord(index, "screen", t + index, results, {}, image)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# --- tracking ---


def test_iou_of_boxes():
    overlap = iou_matrix([[0, 0, 10, 10]], [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [3, 3, 3, 9]])
    assert overlap == pytest.approx(np.array([[1.0, 50 / 150, 0.0, 0.0]]))
    assert iou_matrix([], [[0, 0, 1, 1]]).shape == (0, 1)


def test_tracks_keep_their_ids_across_frames_and_a_flip_is_seen():
    tracker = Tracker()
    a, b = tracker.update([box(0), box(100, "cog_bb_flunky")])
    assert (a.id, b.id) == (0, 1) and not a.flipped
    # Both move a little (the Cog now listed first): each box continues its own track.
    b2, a2 = tracker.update([box(104, "cog_bb_flunky"), box(3)])
    assert (a2.id, b2.id) == (0, 1) and a2.box == (3, 10, 33, 70)
    # The Toon's label changes: its track says so; the Cog's does not.
    a3, b3 = tracker.update([box(5, "toon_dog"), box(106, "cog_bb_flunky")])
    assert a3.id == 0 and a3.flipped and list(a3.labels) == ["toon_cat", "toon_cat", "toon_dog"]
    assert b3.id == 1 and not b3.flipped
    # A box far from every track starts a new one; tracks unseen for FLIP_FRAMES frames are forgotten.
    (c,) = tracker.update([box(50)])
    assert c.id == 2
    for _ in range(5):
        tracker.update([])
    (again,) = tracker.update([box(5)])
    assert again.id == 3 and not again.flipped
    # Greedy: of two boxes over one track, the one that overlaps it most continues it.
    tracker = Tracker()
    (first,) = tracker.update([box(0)])
    near, nearer = tracker.update([box(12), box(2)])
    assert nearer.id == first.id and near.id != first.id


# --- why a frame is kept ---


@pytest.mark.parametrize(
    ("unsure", "reason"),
    [
        (box(0, conflict="the detector said bossbot"), "conflict"),
        (box(0, score=0.35), "near-threshold"),
        (box(0, conf=0.4), "unsure-label"),
    ],
)
def test_each_unsure_box_keeps_its_frame(tmp_path, unsure, reason):
    collector = Collector(tmp_path / "queue", conf=0.3, clock=Clock())
    assert collector.add(record(0, [box(100, "cog_bb_flunky")])) is None  # a sure frame is not kept
    kept = collector.add(record(1, [box(100, "cog_bb_flunky"), unsure]))
    assert kept is not None and kept.reasons == {reason: [1]}
    assert collector.summary() == {"kept": 1, "folder": str(tmp_path / "queue"), "reasons": {reason: 1}, "skipped": {}}


def test_a_label_that_flips_keeps_the_frame(tmp_path):
    collector = Collector(tmp_path / "queue", clock=Clock())
    assert collector.add(record(0, [box(0, "toon_cat")])) is None
    assert collector.add(record(1, [box(2, "toon_cat")])) is None
    kept = collector.add(record(2, [box(4, "toon_dog")]))
    assert kept is not None and kept.reasons == {"label-flip": [0]}


def test_at_most_per_minute_frames_are_kept(tmp_path):
    clock = Clock()
    collector = Collector(tmp_path / "queue", per_minute=2, clock=clock)
    unsure = [record(i, [box(200 * i, conflict="no")]) for i in range(5)]  # new places: a new track each
    for i, seconds in enumerate([0.0, 1.0, 2.0, 59.9]):
        clock.now = seconds
        assert (collector.add(unsure[i]) is not None) == (i < 2)
    clock.now = 60.5  # the first kept frame is over a minute old: room for one
    assert collector.add(unsure[4]) is not None
    assert collector.summary()["kept"] == 3 and collector.summary()["skipped"] == {"over the cap": 2}


def test_near_duplicates_of_the_last_kept_frame_are_skipped(tmp_path):
    collector = Collector(tmp_path / "queue", clock=Clock())
    assert collector.add(record(0, [box(0, conflict="no")])) is not None
    # The same picture (another Toon, elsewhere): skipped on the thumbnail.
    assert collector.add(record(1, [box(300, conflict="no")], seed=0)) is None
    # Another picture, but the same tracked Toon with the same label: a person would correct the same box again.
    assert collector.add(record(2, [box(2, conflict="no")])) is None
    # Its label changes: new for the review, kept.
    kept = collector.add(record(3, [box(4, "toon_dog", conflict="no")]))
    assert kept is not None and set(kept.reasons) == {"conflict", "label-flip"}
    assert collector.summary()["skipped"] == {"near-duplicate": 2}


# --- what is written ---


def test_a_kept_frame_is_a_pre_annotation_for_review(tmp_path):
    from PIL import Image

    collector = Collector(tmp_path / "queue", clock=Clock())
    kept = collector.add(record(7, [box(0, "toon_cat"), box(100, "cog_bb_flunky", conflict="the detector said toon")]))
    assert kept.image.name == frame_stem(record(7, [])) + ".png" and kept.annotation == kept.image.with_suffix(".xml")
    assert sorted(p.name for p in kept.image.parent.iterdir()) == sorted(
        [kept.image.name, kept.annotation.name, sidecar_path(kept.image).name]
    )
    assert np.array_equal(np.asarray(Image.open(kept.image)), frame(7))
    state = review_state(kept.image, find_annotation(kept.image))
    assert state.status == PRE_ANNOTATED  # review and annotate see an unreviewed pre-annotation
    voc = read_voc(kept.annotation)
    assert voc.filename == kept.image.name and [b.name for b in voc.boxes] == ["toon_cat", "cog_bb_flunky"]
    sidecar = read_sidecar(kept.image)
    assert sidecar["models"] == MODELS and sidecar["conflicts"] == 1
    assert sidecar["collected"]["reasons"] == {"conflict": [1]} and sidecar["collected"]["frame"] == 7


def test_nothing_is_written_over_an_existing_file(tmp_path):
    queue = tmp_path / "queue"
    queue.mkdir()
    stem = frame_stem(record(0, []))
    (queue / f"{stem}.xml").write_text("a person's boxes")
    (queue / f"{stem}-2.toonvision.json").write_text("{}")
    collector = Collector(queue, clock=Clock())
    kept = collector.add(record(0, [box(0, conflict="no")]))
    assert kept.image.name == f"{stem}-3.png"
    assert (queue / f"{stem}.xml").read_text() == "a person's boxes"
    assert (queue / f"{stem}-2.toonvision.json").read_text() == "{}"
    assert not (queue / f"{stem}.png").exists() and not (queue / f"{stem}-2.png").exists()


# --- through the real Pipeline and watch loop ---


class Scripted:
    """A detector that finds, on its n-th frame, the n-th entry of ``frames``: (boxes, every class's score)."""

    threshold = 0.3

    def __init__(self, frames):
        self.classes, self.frames, self.calls = list(SUITS5), frames, 0

    def detect(self, image, threshold=None):
        boxes, scores = self.frames[min(self.calls, len(self.frames) - 1)]
        self.calls += 1
        scores = np.asarray(scores, np.float32).reshape(len(boxes), len(self.classes))
        found = Detections(np.asarray(boxes, np.float32).reshape(-1, 4), scores.argmax(1), scores.max(1), scores)
        return found.above(self.threshold if threshold is None else threshold)


class Answers:
    """A classifier that gives every crop of its n-th call the n-th of ``answers`` with 0.9 (the last one after)."""

    def __init__(self, task: str, *answers: str):
        self.task, self.classes, self.answers, self.calls = task, task_classes(task), answers, 0

    def probabilities(self, crops):
        row = np.full(len(self.classes), 0.1 / (len(self.classes) - 1))
        row[self.classes.index(self.answers[min(self.calls, len(self.answers) - 1)])] = 0.9
        self.calls += 1
        return np.tile(row, (len(crops), 1))


def pipeline(detector, animals=("cat",), kind="toon") -> Pipeline:
    models = {
        "binary": Answers("binary", kind),
        "suit": Answers("suit", "bb"),
        "name": Answers("name", "flunky"),
        "animal": Answers("animal", *animals),
    }
    return Pipeline(models, detector, models=MODELS)


TOON = [0.9, 0.02, 0.02, 0.02, 0.02]
SELLBOT = [0.02, 0.02, 0.02, 0.02, 0.9]


def test_the_watch_loop_feeds_the_collector(tmp_path):
    """A Toon walks (cat, cat, then dog from the third frame on): the flip keeps the third frame, the fourth shows
    the same dog and is skipped; a Toon the detector calls a sellbot is a conflict."""
    walk = [([(10 + 3 * i, 10, 50 + 3 * i, 100)], [TOON]) for i in range(4)]
    frames = [(f"shot_{i}.png", frame(i)) for i in range(4)]
    collector = Collector(tmp_path / "queue", clock=Clock())
    records = watch(frames, pipeline(Scripted(walk), ("cat", "cat", "dog")), fps=0, keep_image=True)
    kept = [collector.add(r) for r in records]
    assert [k is not None for k in kept] == [False, False, True, False]
    assert kept[2].reasons == {"label-flip": [0]} and collector.skipped == {"near-duplicate": 1}
    assert [b.name for b in read_voc(kept[2].annotation).boxes] == ["toon_dog"]
    assert read_sidecar(kept[2].image)["collected"]["source"] == "shot_2.png"

    odd = [([(10, 10, 50, 100)], [SELLBOT])]
    (record,) = watch([("odd.png", frame(9))], pipeline(Scripted(odd)), fps=0, keep_image=True)
    assert record.results.boxes[0].conflict
    assert "conflict" in Collector(tmp_path / "odd", clock=Clock()).add(record).reasons


def test_a_toon_the_detector_almost_saw_keeps_its_frame(tmp_path):
    """No box above the threshold, a peak just below it: a frame to review all the same, nothing proposed and the
    near miss in its sidecar (a Toon to draw). Two such frames of different scenes are both kept."""
    almost = [([(10, 10, 50, 100)], [[0.2, 0.02, 0.02, 0.02, 0.02]])]
    frames = [("a.png", frame(1)), ("b.png", frame(2))]
    records = list(watch(frames, pipeline(Scripted(almost)), fps=0, keep_image=True, near_misses=True))
    assert [r.results.boxes for r in records] == [[], []]
    assert records[0].results.near_misses == [((10, 10, 50, 100), pytest.approx(0.2))]
    collector = Collector(tmp_path / "queue", clock=Clock())
    kept = [collector.add(r) for r in records]
    assert [k.reasons for k in kept] == [{"near-miss": [0]}, {"near-miss": [0]}]
    assert read_voc(kept[0].annotation).boxes == []
    assert read_sidecar(kept[0].image)["near_misses"][0]["box"] == [10, 10, 50, 100]
    assert review_state(kept[0].image, find_annotation(kept[0].image)).status == PRE_ANNOTATED
    # Watching without collecting looks for none (and finds nothing).
    (plain,) = watch(frames[:1], pipeline(Scripted(almost)), fps=0)
    assert plain.results.near_misses is None and plain.results.boxes == []


# --- the command line ---


def invoke(*args: str):
    from typer.testing import CliRunner

    from toonvision.cli import app

    return CliRunner().invoke(app, ["watch", *map(str, args)])


def test_watch_collect_on_the_command_line(tmp_path, monkeypatch):
    """The verb as a user runs it on a folder of screenshots, with fake models behind Pipeline.load: refusals in
    one line before any model loads, the JSON line naming each kept frame, and the summary of why."""
    from PIL import Image

    shots = tmp_path / "shots"
    shots.mkdir()
    for i in range(4):
        Image.fromarray(frame(i)).save(shots / f"shot_{i}.png")
    walk = [([(10 + 3 * i, 10, 50 + 3 * i, 100)], [TOON]) for i in range(4)]
    loads = []

    def load(*args, **kwargs):
        loads.append(kwargs)
        return pipeline(Scripted(walk), ("cat", "dog", "dog", "cat"))  # flips on the 2nd frame, and back on the 4th

    monkeypatch.setattr(Pipeline, "load", load)
    queue = tmp_path / "queue"
    common = ("-s", shots, "--root", tmp_path / "ws", "--fps", "0", "-q")

    done = invoke(*common, "--collect-per-minute", "3")
    assert done.exit_code == 2 and done.stderr.strip().splitlines() == [
        "error: --collect-per-minute goes with --collect DIR (the folder to keep unsure frames in)"
    ]
    (tmp_path / "a_file").write_text("")
    done = invoke(*common, "--collect", tmp_path / "a_file")
    assert done.exit_code == 2 and len(done.stderr.strip().splitlines()) == 1 and "is a file" in done.stderr
    assert loads == []  # refused before any model loaded

    done = invoke(*common, "--collect-format", "yolo")
    assert done.exit_code == 2 and done.stderr.strip().splitlines() == [
        "error: --collect-format goes with --collect DIR (the folder to keep unsure frames in)"
    ]
    done = invoke(*common, "--collect", queue, "--collect-format", "coco")
    assert done.exit_code == 2 and "choose from voc, yolo, createml" in done.stderr and not queue.exists()
    done = invoke(*common, "--collect", queue, "--collect-per-minute", "1")
    assert done.exit_code == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line.get("collected") for line in lines] == [None, str(next(queue.glob("*.png"))), None, None]
    summary = " ".join(done.stderr.split())
    assert f"collected: 1 frames into {queue} (label-flip 1); skipped 1 near-duplicate, 1 over the cap" in summary
    assert len(list(queue.glob("*.xml"))) == 1
    # In the format the user's queue is labelled in: YOLO, its classes.txt beside.
    yolo = tmp_path / "yolo"
    done = invoke(*common, "--collect", yolo, "--collect-format", "yolo")
    assert done.exit_code == 0, done.stderr
    kept = sorted(yolo.glob("*.png"))
    assert kept and (yolo / "classes.txt").is_file() and not list(yolo.glob("*.xml"))
    for image in kept:
        assert image.with_suffix(".txt").is_file()
        assert review_state(image, find_annotation(image)).status == PRE_ANNOTATED

    # Models that cannot name every box cannot write a labelImg file: said in one line, nothing written.
    binary_only = Pipeline({"binary": Answers("binary", "toon")}, Scripted(walk))
    monkeypatch.setattr(Pipeline, "load", lambda *args, **kwargs: binary_only)
    done = invoke(*common, "--collect", tmp_path / "other")
    assert done.exit_code == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "name, animal" in done.stderr and not (tmp_path / "other").exists()
