"""The detector as a user runs it: train --task detect, export, evaluate, predict without boxes, bad input, and a
training run killed half-way and resumed."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import DETECT_OUTPUT, UNKNOWN_LABEL, run_cli
from toonvision.data.workspace import Workspace
from toonvision.learning.tasks import TASKS
from toonvision.serving.thresholds import MAX_BOXES

TRAIN = ("--task", "detect", "--imgsz", "128", "--batch-size", "4", "--split-seed", "0")


@pytest.fixture
def trained(trained_copy) -> Workspace:
    """A copy of the session's shared workspace (tests/conftest.py), the test's own, since these tests export,
    evaluate and predict into it: 12 small rendered screenshots (one box labelled UNKNOWN_LABEL), a tiny detector
    trained on them for 2 epochs without augmentation, and binary, suit, name and animal models, all exported to
    ONNX."""
    return trained_copy


def training_output(ws: Workspace) -> dict[str, str]:
    """What the shared workspace's detector training printed (stdout, stderr)."""
    return json.loads((ws.root / DETECT_OUTPUT).read_text())


def detect_run(ws: Workspace) -> Path:
    return ws.runs / "train" / "detect-suit"


def test_training_writes_a_run_folder_split_by_screenshot(trained):
    run = detect_run(trained)
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == "detect" and config["class_names"] == ["toon", "bossbot", "lawbot", "cashbot", "sellbot"]
    assert (config["input_height"], config["input_width"]) == (96, 128)
    # --no-augment is honoured and recorded; what was not given comes from the task's defaults, as the header says.
    assert config["augment"] is False
    assert (config["lr"], config["model"]) == (TASKS["detect"].defaults.lr, TASKS["detect"].defaults.model)
    header = " ".join(training_output(trained)["stdout"].split())
    assert "augment=False" in header and f"lr={TASKS['detect'].defaults.lr}" in header and "batch_size=4" in header
    warnings = " ".join(training_output(trained)["stderr"].split())
    assert "1 box with a label this detector does not know" in warnings and f"{UNKNOWN_LABEL} (1)" in warnings
    split = json.loads((run / "split.json").read_text())
    assert len(split) == 12 and all(key.startswith("screenshots/") for key in split)
    assert sorted(split.values()).count("test") >= 1
    for name in ("model.keras", "history.json", "history.png"):
        assert (run / name).is_file()
    assert not (run / "checkpoint.keras").exists()  # the finished model replaces the checkpoint


def test_export_and_both_engines_find_the_same_boxes(trained):
    from toonvision import Detector

    run = detect_run(trained)
    done = run_cli("export", str(run), "--root", str(trained.root))
    assert done.returncode == 0, done.stderr
    assert "task detect" in done.stdout and "letterboxed" in done.stdout
    onnx = Detector.load(run / "model.onnx", threshold=0.0)
    keras = Detector.load(run, threshold=0.0)
    assert onnx.engine == "onnx" and keras.engine == "keras" and onnx.classes == keras.classes
    assert onnx.input_size == keras.input_size == (96, 128)
    shot = sorted(trained.screenshots.glob("*.png"))[0]
    batch = onnx.prepare(shot)[0][None]
    np.testing.assert_allclose(onnx.raw(batch), keras.raw(batch), rtol=1e-4, atol=1e-4)
    # An untrained net's heatmaps are near-flat: 1e-6 of rounding can make or unmake a local maximum there. Its
    # best detections are clear maxima: each must be among the other engine's, with the same box and score.
    a, b = onnx.detect(shot), keras.detect(shot)
    assert len(a) > 0 and len(b) > 0
    table_b = np.column_stack([b.classes, b.boxes, b.scores])
    for row in np.column_stack([a.classes, a.boxes, a.scores])[:5]:
        assert np.any(np.all(np.abs(table_b - row) <= [0, 0.05, 0.05, 0.05, 0.05, 1e-4], axis=1)), row
    boxes, _classes, scores = a  # unpacks as the detect(image) -> boxes, classes, scores
    assert boxes.shape == (len(scores), 4) and np.all(np.diff(scores) <= 0)


def test_evaluate_writes_coco_metrics_and_figures(trained, tmp_path):
    run = detect_run(trained)
    done = run_cli("evaluate", str(run), "--root", str(trained.root))
    assert done.returncode == 0, done.stderr
    out = run / "evaluate"
    report = json.loads((out / "evaluation.json").read_text())
    assert report["task"] == "detect" and report["screenshots"] == "the run's test split"
    for key in ("ap50", "ap50_95", "per_class", "by_size", "errors"):
        assert key in report
    assert set(report["by_size"]) == {"all", "small", "medium", "large"}
    for figure in ("pr_curves.png", "worst_screenshots.png"):
        with Image.open(out / figure) as img:
            assert img.width > 300
    assert "AP50" in done.stdout and "Per size" in done.stdout
    # Any folder of labelled screenshots instead, judged by the ONNX export (no second run folder is touched).
    folder = tmp_path / "other"
    shutil.copytree(trained.screenshots, folder)
    done = run_cli("evaluate", str(run / "model.onnx"), "--root", str(trained.root), "--screenshots", str(folder))
    assert done.returncode == 0, done.stderr
    assert (run / "evaluate-2" / "evaluation.json").is_file() and (out / "evaluation.json").is_file()
    # The box whose label the detector does not know is left out, counted and named, on screen and in the file.
    assert f"does not know (toon, bossbot, lawbot, cashbot, sellbot) was left out: {UNKNOWN_LABEL} (1)" in " ".join(
        done.stderr.split()
    )
    assert json.loads((run / "evaluate-2" / "evaluation.json").read_text())["unknown_labels"] == {UNKNOWN_LABEL: 1}


def test_evaluate_refuses_screenshots_it_cannot_judge_and_writes_nothing(trained, tmp_path):
    run = detect_run(trained)
    before = sorted(p.name for p in run.iterdir())
    empty = tmp_path / "empty"
    empty.mkdir()
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    for shot in sorted(trained.screenshots.glob("*.png"))[:3]:
        shutil.copy(shot, unlabelled / shot.name)  # the images without their annotations
    for folder, words in (
        (tmp_path / "missing", ("missing", "not a folder")),
        (empty, ("no screenshots", str(empty))),
        (unlabelled, ("none of the 3 screenshots", "annotation")),
    ):
        done = run_cli("evaluate", str(run), "--root", str(trained.root), "--screenshots", str(folder))
        _one_error_line(done, *words)
    _one_error_line(run_cli("evaluate", str(run), "--root", str(trained.root), "--task", "suit"), "--task")
    assert sorted(p.name for p in run.iterdir()) == before  # no results folder for what was not judged


def test_predict_finds_boxes_in_a_screenshot_without_any(trained, tmp_path):
    source = sorted(trained.screenshots.glob("*.png"))[0]
    shot = tmp_path / "shot.png"
    Image.open(source).resize((1280, 720)).save(shot)  # no annotation beside it, no --boxes
    done = run_cli("predict", str(shot), "--root", str(trained.root), "--conf", "0", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert "detect" in result["models"] and "binary" in result["models"]
    assert result["predictions"]
    for p in result["predictions"]:
        assert p["detector_class"] in ("toon", "bossbot", "lawbot", "cashbot", "sellbot")
        assert 0 <= p["detector_score"] <= 1 and p["kind"] in ("cog", "toon") and len(p["box"]) == 4
        assert p["true_label"] is None
    # --max-det keeps the highest scores: the first of what the default 100 kept.
    assert len(result["predictions"]) <= MAX_BOXES
    done = run_cli("predict", str(shot), "--root", str(trained.root), "--conf", "0", "--max-det", "3", "--json")
    assert done.returncode == 0, done.stderr
    few = json.loads(done.stdout)["predictions"]
    ranked = sorted(result["predictions"], key=lambda p: -p["detector_score"])
    assert sorted((p["detector_score"] for p in few), reverse=True) == [p["detector_score"] for p in ranked[:3]]
    done = run_cli("predict", str(shot), "--root", str(trained.root), "--conf", "0", "--max-det", "3")
    assert done.returncode == 0 and "detector" in done.stdout
    drawn = list((trained.runs / "predict").glob("shot*/shot.predicted.png"))
    assert drawn and Image.open(drawn[0]).size == (1280, 720)
    # Grayscale and RGBA screenshots are screenshots too.
    for mode in ("L", "RGBA"):
        odd = tmp_path / f"shot_{mode}.png"
        Image.open(shot).convert(mode).save(odd)
        done = run_cli("predict", str(odd), "--root", str(trained.root), "--conf", "0", "--max-det", "3", "--json")
        assert done.returncode == 0, done.stderr


def _one_error_line(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), done.stderr
    assert all(w in lines[0] for w in words), lines[0]


def test_bad_input_gives_one_error_line_or_a_named_skip(trained, tmp_path):
    run = detect_run(trained)
    binary = next(p for p in (trained.runs / "train").iterdir() if p.name.startswith("binary"))
    shot = sorted(trained.screenshots.glob("*.png"))[0]
    wide = tmp_path / "wide.png"
    Image.open(shot).resize((1280, 720)).save(wide)
    # A classifier asked to detect, a detector asked to classify.
    _one_error_line(
        run_cli("predict", str(wide), "--root", str(trained.root), "--detector", str(binary)), "not a detector"
    )
    crop = next(trained.unsorted_dir("toon").glob("*.png"))
    _one_error_line(run_cli("explain", str(run), str(crop), "--root", str(trained.root)), "is a detector")
    _one_error_line(
        run_cli("evaluate", str(binary), "--root", str(trained.root), "--screenshots", str(tmp_path)), "detector"
    )
    # Screenshots that cannot be used are skipped and named; the others are judged.
    folder = tmp_path / "bad"
    folder.mkdir()
    xml = shot.with_suffix(".xml").read_text()
    for name in ("corrupt", "empty", "tiny", "huge", "gray", "rgba", "good"):
        (folder / f"{name}.xml").write_text(xml.replace(shot.name, f"{name}.png"))
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (folder / "empty.png").write_bytes(b"")
    Image.new("RGB", (1, 1)).save(folder / "tiny.png")
    Image.new("RGB", (8000, 8000)).save(folder / "huge.png")
    Image.open(shot).convert("L").save(folder / "gray.png")
    Image.open(shot).convert("RGBA").save(folder / "rgba.png")
    shutil.copy(shot, folder / "good.png")
    done = run_cli("evaluate", str(run), "--root", str(trained.root), "--screenshots", str(folder))
    assert done.returncode == 0, done.stderr
    warnings = " ".join(done.stderr.split())
    for name in ("corrupt.png", "empty.png", "tiny.png", "huge.png"):
        assert name in warnings
    report = json.loads(sorted(run.glob("evaluate*/evaluation.json"), key=lambda p: p.stat().st_mtime)[-1].read_text())
    assert report["n_screenshots"] == 3 and len(report["skipped"]) == 4
    # Bad settings.
    _one_error_line(run_cli("train", "--root", str(trained.root), *TRAIN[:2], "--classes", "colour"), "colour")
    _one_error_line(run_cli("train", "--root", str(trained.root), "--task", "detect", "--imgsz", "100"), "--imgsz")
    empty_ws = Workspace(tmp_path / "empty").init()
    _one_error_line(run_cli("train", "--root", str(empty_ws.root), *TRAIN), "no labelled screenshots")


def test_training_killed_half_way_resumes_and_never_leaves_a_half_model(trained, tmp_path):
    ws = Workspace(tmp_path / "ws").init()
    shutil.copytree(trained.screenshots, ws.screenshots, dirs_exist_ok=True)
    # With the weights' moving average and a plain last epoch: the average is optimizer state a resume restores.
    extra = ["--epochs", "3", "--ema", "0.9", "--plain-epochs", "1"]
    command = [sys.executable, "-m", "toonvision.cli", "train", "--root", str(ws.root), *TRAIN, *extra]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    progress = ws.runs / "train" / "detect-suit" / "progress.json"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and process.poll() is None:
            if progress.is_file() and json.loads(progress.read_text())["epochs_done"] >= 1:
                break
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    run = progress.parent
    done_before = json.loads(progress.read_text())["epochs_done"]
    assert 1 <= done_before < 3
    assert not (run / "model.keras").exists()  # nothing that looks finished
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp") and p.stat().st_size == 0 and p.suffix == ".keras"]
    done = run_cli("train", "--root", str(ws.root), *TRAIN, "--epochs", "3", "--resume")
    assert done.returncode == 0, done.stderr
    assert f"resumed at epoch {done_before + 1}" in " ".join(done.stdout.split())
    # 6 steps at 0.9 keep 53% of the starting weights in the average: said, with a momentum that suits the run.
    assert "still holds 53% of the random starting weights; a momentum of 0.464" in " ".join(done.stderr.split())
    assert "ema=0.9" in " ".join(done.stdout.split())  # the header shows the stopped run's settings, not the command's
    history = json.loads((run / "history.json").read_text())
    assert len(history["loss"]) == 3
    config = json.loads((run / "config.json").read_text())
    assert (config["ema"], config["plain_epochs"]) == (0.9, 1)
    assert (run / "model.keras").is_file() and not (run / "checkpoint.keras").exists()
    assert sorted(p.name for p in (ws.runs / "train").iterdir()) == ["detect-suit"]  # continued, not restarted
    _one_error_line(run_cli("train", "--root", str(ws.root), *TRAIN, "--resume"), "no stopped detector run")
