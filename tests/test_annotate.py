"""`toonvision annotate`, model-assisted labelling, as a person labelling with labelImg uses it: pre-annotations in
the three formats, a person's files never touched, reviewed told from unreviewed by extract, detector training
and stats, review order, bad input, and a run killed half-way."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import add_screenshot, run_cli
from toonvision.data.annotations import (
    Annotation,
    Box,
    find_annotation,
    read_annotation,
    read_createml,
    read_voc,
    voc_bytes,
)
from toonvision.data.detection import iou_matrix, load_detection_set
from toonvision.data.review import PRE_ANNOTATED, REVIEWED, UNLABELLED, review_state, sidecar_path
from toonvision.data.taxonomy import parse_label
from toonvision.data.workspace import Workspace

CLASSIFIERS = ("binary", "suit", "name", "animal")

# `trained` (tests/conftest.py): the session's shared workspace with a tiny detector and binary, suit, name and
# animal models, all exported to ONNX (so annotate runs without TensorFlow, as a labelling machine would). These
# tests only read it: what they annotate are copies in their own tmp_path.


def bare_copies(ws: Workspace, folder: Path, n: int = 3) -> list[Path]:
    """``n`` of the workspace's rendered screenshots copied into ``folder`` without their annotations."""
    folder.mkdir(parents=True, exist_ok=True)
    shots = sorted(ws.screenshots.glob("*.png"))
    out = []
    for i in range(n):
        dst = folder / f"shot_{i:02d}.png"
        shutil.copy(shots[i % len(shots)], dst)
        out.append(dst)
    return out


# The shared workspace's detector trained for 2 epochs scores every peak about 0.01: --conf 0 gives it boxes,
# and --max-det 5 keeps them few (100 a screenshot, each through four classifiers, made these tests 10x slower).
FEW = ("--conf", "0", "--max-det", "5")


def annotate(ws: Workspace, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return run_cli("annotate", *args, "--root", str(ws.root), *FEW, timeout=timeout)


def persons_voc(image: Path) -> bytes:
    """The labelImg file of a person's annotation of ``image`` (no sidecar beside it)."""
    box = Box("cog_bb_flunky", 10, 10, 60, 150)
    return voc_bytes(Annotation(filename=image.name, width=320, height=180, boxes=[box], folder=image.parent.name))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_pre_annotations_are_labelimg_files_with_full_labels_and_a_sidecar(trained, tmp_path):
    shots = bare_copies(trained, tmp_path / "shots")
    done = annotate(trained, str(tmp_path / "shots"))
    assert done.returncode == 0, done.stderr
    assert "wrote 3 pre-annotations" in " ".join(done.stdout.split())
    for shot in shots:
        ann = read_voc(shot.with_suffix(".xml"))
        assert not ann.verified and ann.filename == shot.name and (ann.width, ann.height) == (320, 180)
        assert ann.boxes, "--conf 0: every screenshot gets boxes"
        for box in ann.boxes:
            label = parse_label(box.name)  # a full taxonomy label, never a half one
            assert (label.kind == "toon" and label.animal) or (label.suit and label.name)
            assert 0 <= box.xmin < box.xmax <= 320 and 0 <= box.ymin < box.ymax <= 180
            assert box.xmin == int(box.xmin)  # whole pixels, as labelImg stores them
        side = json.loads(sidecar_path(shot).read_text())
        assert [d["label"] for d in side["boxes"]] == [b.name for b in ann.boxes]
        for d in side["boxes"]:
            assert 0 <= d["confidence"] <= d["detector_score"] <= 1
            assert {"kind_confidence", "suit_confidence", "name_confidence", "animal_confidence"} <= set(d)
        assert set(side["models"]) == {"detect", *CLASSIFIERS}
        assert review_state(shot, find_annotation(shot)).status == PRE_ANNOTATED
    # Run again: nothing changes; --refresh rewrites only the pre-annotations.
    before = snapshot(tmp_path / "shots")
    done = annotate(trained, str(tmp_path / "shots"))
    assert done.returncode == 0 and "3 pre-annotated earlier" in " ".join(done.stdout.split())
    assert snapshot(tmp_path / "shots") == before


def test_predict_and_annotate_see_the_same_boxes_and_labels(trained, tmp_path):
    """One pipeline, one rule: the same boxes and the same labels, whichever verb asks; annotate places each box
    by the mean of the plain look, which is predict's, and the mirrored one it takes for the position spread."""
    (shot,) = bare_copies(trained, tmp_path / "shots", 1)
    Image.open(shot).resize((1280, 720)).save(shot)  # a whole screenshot to predict (a crop is narrower)
    shown = run_cli("predict", str(shot), "--root", str(trained.root), *FEW, "--json")
    assert shown.returncode == 0, shown.stderr
    predicted = json.loads(shown.stdout)["predictions"]
    done = run_cli("annotate", str(shot.parent), "--root", str(trained.root), *FEW)
    assert done.returncode == 0, done.stderr
    side = json.loads(sidecar_path(shot).read_text())
    assert predicted and [p["label"] for p in predicted] == [d["label"] for d in side["boxes"]]
    plain, placed = (np.array([b["box"] for b in boxes], float) for boxes in (predicted, side["boxes"]))
    assert np.diag(iou_matrix(plain, placed)).min() >= 0.7
    assert side["models"] == json.loads(shown.stdout)["models"]


def test_a_persons_annotation_is_never_changed(trained, tmp_path):
    folder = tmp_path / "shots"
    drawn, edited, verified, fresh = bare_copies(trained, folder, 4)
    # A person drew one by hand; annotate pre-annotated the others, then a person corrected one box of one and
    # pressed Verify Image on another.
    drawn.with_suffix(".xml").write_bytes(persons_voc(drawn))
    person = drawn.with_suffix(".xml").read_bytes()
    fresh.rename(tmp_path / "later.png")  # annotated in a later run
    assert annotate(trained, str(folder)).returncode == 0
    edited_xml = edited.with_suffix(".xml")
    edited_xml.write_bytes(edited_xml.read_bytes().replace(b"<xmin>", b"<xmin>1", 1))
    ann = read_voc(verified.with_suffix(".xml"))
    ann.verified = True
    verified.with_suffix(".xml").write_bytes(voc_bytes(ann))
    (tmp_path / "later.png").rename(fresh)
    states = {p.name: review_state(p, find_annotation(p)).status for p in (drawn, edited, verified, fresh)}
    assert states == {drawn.name: REVIEWED, edited.name: REVIEWED, verified.name: REVIEWED, fresh.name: UNLABELLED}
    kept = {p: p.with_suffix(".xml").read_bytes() for p in (drawn, edited, verified)}
    done = annotate(trained, str(folder), "--refresh")
    assert done.returncode == 0, done.stderr
    assert drawn.with_suffix(".xml").read_bytes() == person
    assert all(p.with_suffix(".xml").read_bytes() == data for p, data in kept.items())
    assert "3 annotated by a person" in " ".join(done.stdout.split())
    assert review_state(fresh, find_annotation(fresh)).status == PRE_ANNOTATED
    assert not sidecar_path(drawn).exists()


def test_corrupt_or_foreign_annotation_files_are_left_as_they_are(trained, tmp_path):
    folder = tmp_path / "shots"
    broken, foreign, _ = bare_copies(trained, folder, 3)
    broken.with_suffix(".xml").write_bytes(b"<annotation><object><name>cog_bb_fl")  # cut off mid-save
    foreign.with_suffix(".json").write_text('{"tool": "another labeller", "shapes": []}')
    before = snapshot(folder)
    done = annotate(trained, str(folder), "--refresh")
    assert done.returncode == 0, done.stderr
    assert "2 annotated by a person" in " ".join(done.stdout.split())
    after = snapshot(folder)
    assert {name: after[name] for name in before} == before
    assert sorted(set(after) - set(before)) == ["shot_02.toonvision.json", "shot_02.xml"]


def test_dry_run_writes_nothing(trained, tmp_path):
    bare_copies(trained, tmp_path / "shots", 2)
    before = snapshot(tmp_path / "shots")
    done = annotate(trained, str(tmp_path / "shots"), "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "would write 2 pre-annotations" in " ".join(done.stdout.split())
    assert snapshot(tmp_path / "shots") == before


def test_yolo_and_createml(trained, tmp_path):
    yolo = tmp_path / "yolo"
    shots = bare_copies(trained, yolo, 2)
    (yolo / "classes.txt").write_text("toon_dog\ncog_bb_flunky\n")  # a person's class list: its order stays
    done = annotate(trained, str(yolo), "--format", "yolo")
    assert done.returncode == 0, done.stderr
    classes = (yolo / "classes.txt").read_text().splitlines()
    assert classes[:2] == ["toon_dog", "cog_bb_flunky"] and len(classes) > 2
    for shot in shots:
        ann = read_annotation(find_annotation(shot), shot.name, (320, 180))
        assert ann.boxes and all(parse_label(b.name) for b in ann.boxes)
        assert review_state(shot, find_annotation(shot)).status == PRE_ANNOTATED
    createml = tmp_path / "createml"
    shots = bare_copies(trained, createml, 2)
    done = annotate(trained, str(createml), "-f", "createml")
    assert done.returncode == 0, done.stderr
    for shot in shots:
        ann = read_createml(shot.with_suffix(".json"), shot.name)
        assert ann.boxes and not ann.verified
        assert review_state(shot, find_annotation(shot)).status == PRE_ANNOTATED
    assert annotate(trained, str(createml), "-f", "pascal").returncode == 2


def test_extract_training_and_stats_tell_reviewed_from_unreviewed(trained, tmp_path):
    ws = Workspace(tmp_path / "ws").init()
    bare_copies(trained, ws.screenshots, 3)
    for i in range(3):  # three a person labelled
        add_screenshot(ws, f"person_{i}.png", [("cog_bb_flunky", 20, 20, 80, 150)], seed=i)
    models = [str(p) for p in sorted((trained.runs / "train").glob("*/model.onnx"))]
    args = [a for m in models for a in ("--model", m)]
    done = run_cli("annotate", "--root", str(ws.root), *args, *FEW)
    assert done.returncode == 0, done.stderr
    # One pre-annotation reviewed: saved by a person in labelImg with a corrected label.
    xml = ws.screenshots / "shot_00.xml"
    ann = read_voc(xml)
    ann.boxes[0] = Box("toon_cat", *(getattr(ann.boxes[0], k) for k in ("xmin", "ymin", "xmax", "ymax")))
    xml.write_bytes(voc_bytes(ann))
    done = run_cli("stats", "--root", str(ws.root), "--no-plots")
    row = next(line for line in done.stdout.splitlines() if re.match(r"\W*raw/screenshots\b", line))
    assert re.findall(r"\d+", row) == ["4", "2", "0"]  # reviewed, pre-annotated, unlabelled
    data = load_detection_set([ws.screenshots], "suit")
    assert len(data.truths) == 4 and len(data.unreviewed) == 2
    assert len(load_detection_set([ws.screenshots], "suit", include_unreviewed=True).truths) == 6
    train = ("--task", "detect", "--imgsz", "128", "--batch-size", "4", "--epochs", "1")
    done = run_cli("train", "--root", str(ws.root), *train)
    assert done.returncode == 0, done.stderr
    assert "2 unreviewed pre-annotations left out" in " ".join(done.stdout.split())
    assert len(json.loads((ws.runs / "train" / "detect-suit" / "split.json").read_text())) == 4
    done = run_cli("extract", "--root", str(ws.root))
    assert done.returncode == 0, done.stderr
    assert "2 unreviewed pre-annotations left out" in " ".join(done.stdout.split())
    assert "missing image" not in done.stdout  # the sidecars are not taken for annotations
    crops = sorted(p.name for p in ws.unsorted.rglob("*.png"))
    distinct = {(b.name, b.pixel_box()) for b in ann.boxes}  # --conf 0 proposes some boxes twice: one crop each
    assert len(crops) == 3 + len(distinct) and "toon_cat_0.png" in crops  # the person's and the reviewed one's
    done = run_cli("extract", "--root", str(ws.root), "--include-unreviewed", "--move")
    assert done.returncode == 0, done.stderr
    assert not list(ws.screenshots.glob("*.toonvision.json"))  # moved along with their screenshots
    assert len(list(ws.processed.glob("*.toonvision.json"))) == 3


def test_refresh_replaces_only_what_the_same_detector_proposed(trained, tmp_path):
    """A one-epoch experiment must not silently replace a queue another detector filled."""
    folder = tmp_path / "shots"
    (shot,) = bare_copies(trained, folder, 1)
    assert annotate(trained, str(folder)).returncode == 0
    side = json.loads(sidecar_path(shot).read_text())
    side["models"]["detect"] = "elsewhere/detect-better/model.onnx"
    sidecar_path(shot).write_text(json.dumps(side))
    before = snapshot(folder)
    done = annotate(trained, str(folder), "--refresh")
    assert done.returncode == 0, done.stderr
    assert "1 proposed by another detector (--any-detector replaces)" in " ".join(done.stdout.split())
    assert snapshot(folder) == before
    done = annotate(trained, str(folder), "--refresh", "--any-detector")
    assert done.returncode == 0 and "refreshed 1" in " ".join(done.stdout.split())
    assert json.loads(sidecar_path(shot).read_text())["models"]["detect"] != side["models"]["detect"]
    refused = annotate(trained, str(folder), "--any-detector")
    assert refused.returncode == 2 and "--any-detector goes with --refresh" in refused.stderr


def test_rank_uncertain_lists_and_links_least_sure_first(trained, tmp_path):
    folder = tmp_path / "shots"
    shots = bare_copies(trained, folder, 3)
    assert annotate(trained, str(folder)).returncode == 0
    sidecars = {p.name: json.loads(sidecar_path(p).read_text()) for p in shots}
    done = run_cli(
        "annotate", str(folder), "--root", str(trained.root), "--rank", "uncertain", "--review", str(tmp_path / "r")
    )
    assert done.returncode == 0, done.stderr
    listed = re.findall(r"shot_\d+\.png", done.stdout)
    # The most boxes to fix expected first (the uncertainty score annotate recorded), then by name.
    assert all(s["uncertainty"] is not None for s in sidecars.values())
    assert listed == sorted(sidecars, key=lambda n: (-sidecars[n]["uncertainty"], n))
    links = sorted((tmp_path / "r").iterdir())
    assert [p.name for p in links if p.suffix == ".png"] == [f"{i:04d}_{n}" for i, n in enumerate(listed, 1)]
    # labelImg saves through the link: the original changes, and the screenshot counts as reviewed.
    xml_link = next(p for p in links if p.suffix == ".xml")
    original = xml_link.resolve()
    ann = read_voc(xml_link)
    ann.verified = True
    with open(xml_link, "wb") as handle:
        handle.write(voc_bytes(ann))
    assert read_voc(original).verified
    image = original.with_suffix(".png")
    assert review_state(image, find_annotation(image)).status == REVIEWED
    done = run_cli("annotate", str(folder), "--root", str(trained.root), "--rank", "uncertain")
    assert done.returncode == 0 and image.name not in done.stdout
    done = run_cli(
        "annotate", str(folder), "--root", str(trained.root), "--rank", "uncertain", "--review", str(tmp_path / "r")
    )
    assert done.returncode == 2 and "not empty" in done.stderr
    # Ranking reads what annotate wrote: an option that would choose what it writes does not apply.
    done = run_cli("annotate", str(folder), "--root", str(trained.root), "--rank", "uncertain", "--max-det", "3")
    assert done.returncode == 2 and "--max-det chooses the models" in done.stderr


def test_a_missing_model_is_named_with_how_to_train_it(trained, tmp_path):
    folder = tmp_path / "shots"
    bare_copies(trained, folder, 1)
    root = tmp_path / "ws"  # the workspace without its animal model (a --model of another task would not hide it)
    shutil.copytree(trained.root / "runs", root / "runs", ignore=lambda d, names: [n for n in names if "animal" in n])
    models = sorted((trained.runs / "train").glob("binary*/model.onnx"))
    # Without the models ToonVision ships, which would stand in for the missing one (tests/test_zoo.py).
    done = run_cli("annotate", str(folder), "--root", str(root), "--model", str(models[0]), "--no-shipped")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "animal" in done.stderr and "toonvision train --task animal" in done.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["shot_00.png"]


def test_bad_screenshots_are_named_and_skipped(trained, tmp_path):
    folder = tmp_path / "shots"
    bare_copies(trained, folder, 2)
    (folder / "a_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    Image.new("RGB", (1, 1)).save(folder / "b_tiny.png")
    Image.open(folder / "shot_00.png").convert("L").save(folder / "c_grey.png")
    done = annotate(trained, str(folder))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "a_corrupt.png" in done.stderr and "b_tiny.png" in done.stderr
    assert (folder / "shot_00.xml").is_file() and (folder / "shot_01.xml").is_file()
    assert not (folder / "a_corrupt.xml").exists()
    assert b"<depth>1</depth>" in (folder / "c_grey.xml").read_bytes()  # as labelImg writes a grey screenshot


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_named_and_nothing_written(trained, tmp_path):
    locked = tmp_path / "locked"
    bare_copies(trained, locked, 1)
    locked.chmod(0o555)
    try:
        done = annotate(trained, str(locked))
    finally:
        locked.chmod(0o755)
    assert done.returncode == 1 and "Traceback" not in done.stderr and "not written" in done.stderr
    assert sorted(p.name for p in locked.iterdir()) == ["shot_00.png"]


def test_killed_half_way_it_leaves_no_machine_boxes_passing_for_a_persons(trained, tmp_path):
    folder = tmp_path / "shots"
    *shots, drawn = bare_copies(trained, folder, 24)
    person = drawn.with_suffix(".xml")
    person.write_bytes(persons_voc(drawn))
    person_bytes = person.read_bytes()
    command = [sys.executable, "-m", "toonvision.cli", "annotate", str(folder), "--root", str(trained.root)]
    proc = subprocess.Popen([*command, *FEW], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    # Three pre-annotations beside the person's file: annotate writes each one's sidecar first, then its file.
    while time.monotonic() < deadline and len(list(folder.glob("*.xml"))) - 1 < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = list(folder.glob("*.xml"))
    assert 3 <= len(written) - 1 < len(shots), "killed half-way"
    for shot in shots:
        state = review_state(shot, find_annotation(shot))
        assert state.status in (UNLABELLED, PRE_ANNOTATED), shot  # never a machine's file passing for a person's
        if state.status == PRE_ANNOTATED:
            read_voc(shot.with_suffix(".xml"))  # complete
    assert person.read_bytes() == person_bytes
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary files left behind
    done = annotate(trained, str(folder))
    assert done.returncode == 0, done.stderr
    assert all(review_state(s, find_annotation(s)).status == PRE_ANNOTATED for s in shots)
    assert person.read_bytes() == person_bytes


def test_a_write_that_fails_is_a_problem_and_the_others_go_on(trained, tmp_path, monkeypatch):
    """What a read-only folder or a full disk does, also where the tests run as root (who may write anywhere)."""
    from toonvision.data.extraction import screenshot_states
    from toonvision.serving import annotate as pre
    from toonvision.serving.pipeline import Pipeline

    shots = bare_copies(trained, tmp_path / "shots", 2)
    pipe = Pipeline.load(trained.root, conf=0.0, threads=1, max_det=5)
    real = pre.create_exclusive

    def full_disk(path, data):
        if path.stem == "shot_00":
            raise OSError(28, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(pre, "create_exclusive", full_disk)
    steps = pre.plan(screenshot_states(tmp_path / "shots"), "voc")
    summary = pre.annotate_screenshots(steps, pipe, ["cog_bb_flunky"])
    assert [(p.name, why) for p, why in summary.problems] == [("shot_00.png", "not written: No space left on device")]
    assert [p.name for p, _ in summary.written] == ["shot_01.xml"]
    assert not shots[0].with_suffix(".xml").exists()
    # The sidecar went first: its screenshot is still unlabelled, not a machine's file passing for a person's.
    assert review_state(shots[0], find_annotation(shots[0])).status == UNLABELLED


class FakeClassifier:
    def __init__(self, task: str, probabilities: list[list[float]]) -> None:
        from toonvision.data.taxonomy import task_classes

        self.task, self.classes, self.rows = task, task_classes(task), np.asarray(probabilities)

    def probabilities(self, crops):
        return self.rows[: len(crops)]


def test_suit_and_name_are_read_together_so_they_never_disagree():
    from toonvision.data.taxonomy import task_classes
    from toonvision.serving.pipeline import Pipeline

    suits, names = task_classes("suit"), task_classes("name")
    name_p = np.full(len(names), 0.01)
    name_p[names.index("bloodsucker")] = 0.40  # a Lawbot, the name model's first choice
    name_p[names.index("flunky")] = 0.35  # a Bossbot, its second
    suit_p = [0.0] * len(suits)
    suit_p[suits.index("bb")], suit_p[suits.index("lb")] = 0.9, 0.1
    models = {
        "binary": FakeClassifier("binary", [[0.8, 0.2], [0.1, 0.9]]),
        "suit": FakeClassifier("suit", [suit_p, suit_p]),
        "name": FakeClassifier("name", [list(name_p / name_p.sum())] * 2),
        "animal": FakeClassifier("animal", [[1 / 11] * 11, [0.5] + [0.05] * 10]),
    }
    crops = [np.zeros((60, 30, 3), np.uint8)] * 2
    cog, toon = Pipeline(models).classify(crops)
    assert cog.label == "cog_bb_flunky"  # the name model said bloodsucker; the suit model tips it to a Bossbot
    joint = 0.35 * 0.9 / (0.35 * 0.9 + 0.40 * 0.1 + 0.01 * 0.9 * 7 + 0.01 * 0.1 * 7)
    assert cog.confidence == pytest.approx(0.8 * joint, rel=1e-3)
    assert toon.label == f"toon_{task_classes('animal')[0]}" and toon.confidence == pytest.approx(0.9 * 0.5, rel=1e-3)
