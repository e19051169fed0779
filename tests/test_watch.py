"""`toonvision watch`, the live screen mode, as a user runs it: a folder, a video, the synth renderer and the screen
as sources; JSON lines, annotated frames, bad sources, and Ctrl-C."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli, start_xvfb
from toonvision.data.detection import Detections

FIELDS = {"frame", "source", "time", "boxes", "latency_ms", "models"}
BOX_FIELDS = {
    "box",
    "detector_class",
    "detector_score",
    "kind",
    "kind_confidence",
    "suit",
    "name",
    "label",
    "confidence",
    "conflict",
}


# `trained` (tests/conftest.py): the session's shared workspace with small rendered screenshots, a tiny detector
# trained on them and binary, suit, name and animal models, all exported to ONNX (so watch needs no TensorFlow).
# These tests only read it: what they write goes into their own tmp_path.


@pytest.fixture(scope="session")
def shots(trained_workspace, tmp_path_factory) -> Path:
    """Three screenshots with nothing beside them, and a corrupt one that sorts first."""
    folder = tmp_path_factory.mktemp("shots")
    for i, path in enumerate(sorted(trained_workspace.screenshots.glob("*.png"))[:3]):
        shutil.copy(path, folder / f"shot_{i}.png")
    (folder / "a_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return folder


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def check_record(record: dict) -> None:
    assert set(record) >= FIELDS
    assert set(record["latency_ms"]) == {"capture", "detect", "classify", "total"}
    assert {"detect", "binary"} <= set(record["models"])  # every line names the model files that saw the frame
    for box in record["boxes"]:
        assert set(box) >= BOX_FIELDS and len(box["box"]) == 4
        assert box["kind"] in ("cog", "toon") and 0 <= box["kind_confidence"] <= 1
        assert box["detector_class"] in ("toon", "bossbot", "lawbot", "cashbot", "sellbot")


def one_error_line(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.strip().splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error:"), done.stderr
    assert all(w in errors[0] for w in words), errors[0]


def test_a_folder_gives_json_lines_and_annotated_frames(trained, shots, tmp_path):
    root = ("--root", str(trained.root))
    save = tmp_path / "frames"
    done = run_cli(
        "watch", "--source", str(shots), *root, "--conf", "0", "--max-det", "5", "--fps", "0", "--save", str(save)
    )
    assert done.returncode == 0, done.stderr
    records = lines(done.stdout)
    assert [r["frame"] for r in records] == [0, 1, 2]  # the corrupt file is skipped, with a warning
    assert [r["source"] for r in records] == ["shot_0.png", "shot_1.png", "shot_2.png"]
    for record in records:
        check_record(record)
    assert any(r["boxes"] for r in records)  # --conf 0: an untrained-ish detector still finds boxes
    warning = " ".join(done.stderr.split())
    assert "warning:" in warning and "a_corrupt.png" in warning
    assert "done: 3 frames" in warning and "p50/p95" in warning
    assert "model.onnx" in done.stderr  # the exports beside the runs are preferred
    saved = sorted(save.glob("*.png"))
    assert len(saved) == 3 and Image.open(saved[0]).size == (320, 180)
    # --max-frames and --out; --fps caps the rate (3 frames at 4 a second take at least half a second; the time
    # stamps are taken after capture, which a loaded machine slows on the first frame: allow a quarter second for
    # it, still far above an uncapped loop's few ms a frame).
    out = tmp_path / "watch.jsonl"
    done = run_cli("watch", "-s", str(shots), *root, "--max-frames", "3", "--fps", "4", "--out", str(out), "-q")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    records = lines(out.read_text())
    assert len(records) == 3 and records[2]["time"] - records[0]["time"] >= 0.25


def test_keras_models_named_on_the_command_line_are_used_as_given(trained, shots):
    detector = trained.runs / "train" / "detect-suit" / "model.keras"
    binary = next(p for p in (trained.runs / "train").iterdir() if p.name.startswith("binary")) / "model.keras"
    done = run_cli(
        "watch", "-s", str(shots), "--root", str(trained.root), "--detector", str(detector), "--model", str(binary),
        "--max-frames", "1", "--fps", "0", "--conf", "0", "--max-det", "5",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    header = " ".join(done.stderr.split())
    assert f"detect={detector}" in header and f"binary={binary}" in header
    # The tasks not named come from the workspace, their ONNX exports preferred.
    assert all(f"{task}=" in header for task in ("suit", "name", "animal")) and "model.onnx" in header
    (record,) = lines(done.stdout)
    assert record["models"]["binary"] == str(binary) and record["models"]["detect"] == str(detector)


def test_a_video_and_the_synth_renderer_are_sources_too(trained, tmp_path):
    import cv2

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (320, 180))
    for path in sorted(trained.screenshots.glob("*.png"))[:3]:
        writer.write(cv2.cvtColor(np.asarray(Image.open(path).convert("RGB")), cv2.COLOR_RGB2BGR))
    writer.release()
    done = run_cli("watch", "-s", str(video), "--root", str(trained.root), "--fps", "0", "-q")
    assert done.returncode == 0, done.stderr
    assert [r["source"] for r in lines(done.stdout)] == ["frame 0", "frame 1", "frame 2"]
    done = run_cli(
        "watch", "-s", "synth", "--size", "256x144", "--root", str(trained.root), "--max-frames", "2", "--fps", "0"
    )
    assert done.returncode == 0, done.stderr
    records = lines(done.stdout)
    assert [r["frame"] for r in records] == [0, 1] and records[0]["source"] != records[1]["source"]


def test_sources_that_give_nothing_are_one_error_line(trained, shots, tmp_path):
    root = ("--root", str(trained.root))
    one_error_line(run_cli("watch", "-s", str(tmp_path / "nowhere"), *root), "nowhere", "does not exist")
    bad = tmp_path / "clip.mp4"
    bad.write_text("not a video")
    one_error_line(run_cli("watch", "-s", str(bad), *root), "clip.mp4", "video")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_error_line(run_cli("watch", "-s", str(empty), *root), "no screenshots")
    no_display = {"DISPLAY": "", "WAYLAND_DISPLAY": ""}
    done = run_cli("watch", "-s", "screen", *root, env=no_display)
    one_error_line(done, "display", "synth", "folder", "video")
    one_error_line(run_cli("watch", "-s", str(shots), "--show", *root, env=no_display), "--show", "display")
    one_error_line(run_cli("watch", "-s", "screen", "--region", "0,0,-5,9", *root), "--region")


def test_outputs_that_cannot_be_written_and_frames_too_small_are_one_error_line(trained, shots, tmp_path):
    import cv2

    root = ("--root", str(trained.root))
    one_error_line(run_cli("watch", "-s", str(shots), *root, "--out", str(tmp_path / "no" / "w.jsonl")), "--out")
    one_error_line(run_cli("watch", "-s", str(shots), *root, "--out", str(tmp_path)), "--out", "is a folder")
    (tmp_path / "file.png").write_bytes(b"")
    one_error_line(run_cli("watch", "-s", str(shots), *root, "--save", str(tmp_path / "file.png")), "--save")
    for side in (1, 16):
        video = tmp_path / f"tiny{side}.avi"
        writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (side, side))
        for _ in range(3):
            writer.write(np.zeros((side, side, 3), np.uint8))
        writer.release()
        done = run_cli("watch", "-s", str(video), *root, "--fps", "0")
        one_error_line(done, f"{side}x{side}", "too small")
        assert done.stdout == ""
    Image.new("RGB", (16, 16)).save(tmp_path / "tiny.png")  # one picture as the source: a video of one frame
    one_error_line(run_cli("watch", "-s", str(tmp_path / "tiny.png"), *root), "16x16", "too small")


def test_ctrl_c_stops_with_a_summary_and_exit_code_0(trained, shots):
    command = [sys.executable, "-m", "toonvision.cli", "watch", "-s", str(shots), "--loop", "--root", str(trained.root)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline()  # a frame is done: the loop is running
        assert json.loads(first)["frame"] == 0
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        # Read through the same buffered files readline used: communicate() reads the pipes' descriptors and
        # would miss the lines readline had already buffered (a loaded machine writes several before it runs).
        out, err = process.stdout.read(), process.stderr.read()
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "Traceback" not in err and "stopped (Ctrl-C)" in " ".join(err.split())
    frames = 1 + len(lines(out))
    assert f"{frames} frames" in " ".join(err.split())


def opencv_has_windows() -> bool:
    import cv2

    gui = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), re.MULTILINE)
    return gui is not None and gui.group(1).upper() != "NONE"


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed: no display to capture")
def test_the_screen_under_xvfb(trained):
    xvfb, display = start_xvfb()
    try:
        env = {"DISPLAY": display}
        done = run_cli("watch", "--root", str(trained.root), "--max-frames", "2", "--fps", "0", env=env)
        assert done.returncode == 0, done.stderr
        records = lines(done.stdout)
        assert [r["source"] for r in records] == ["screen", "screen"]
        done = run_cli("watch", "--root", str(trained.root), "--region", "10,20,200,100", "--max-frames", "1", env=env)
        assert done.returncode == 0, done.stderr
        assert len(lines(done.stdout)) == 1
        # A region past the screen's edge: one line (X11 would answer the grab with a protocol error).
        done = run_cli(
            "watch", "--root", str(trained.root), "--region", "600,300,200,100", "--max-frames", "1", env=env
        )
        one_error_line(done, "--region 600,300,200,100 is not on the screen")
        # A display, but OpenCV without windows (the headless wheel ToonVision depends on): said plainly.
        done = run_cli("watch", "--root", str(trained.root), "--show", "--max-frames", "1", env=env)
        if opencv_has_windows():  # someone installed opencv-python over the headless wheel: --show works
            assert done.returncode == 0 and len(lines(done.stdout)) == 1, done.stderr
        else:
            one_error_line(done, "--show", "headless")
    finally:
        xvfb.send_signal(signal.SIGTERM)
        xvfb.wait(timeout=10)


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed: no display to capture")
def test_a_window_found_by_its_title_is_watched_where_it_is(trained, tmp_path):
    from Xlib import X, display

    xvfb, name = start_xvfb()
    try:
        # A game window: 320x180 at (100, 50), yellow, titled as Toontown's is; no window manager needed.
        screen = display.Display(name)
        root = screen.screen().root
        colormap = screen.screen().default_colormap
        yellow = colormap.alloc_color(0xFFFF, 0xE000, 0x2000).pixel
        window = root.create_window(100, 50, 320, 180, 0, screen.screen().root_depth, X.InputOutput,
                                    X.CopyFromParent, background_pixel=yellow)  # fmt: skip
        window.set_wm_name("Toontown Rewritten [BETA]")
        window.map()
        screen.sync()
        env = {"DISPLAY": name}
        save = tmp_path / "frames"
        args = ("watch", "--root", str(trained.root), "--window", "toontown", "--max-frames", "2", "--fps", "0")
        done = run_cli(*args, "--save", str(save), "-q", env=env)
        assert done.returncode == 0, done.stderr
        frames = sorted(save.glob("*.png"))
        assert len(frames) == 2
        pixels = np.asarray(Image.open(frames[0]).convert("RGB"))
        assert pixels.shape == (180, 320, 3)  # the window, not the 640x360 screen
        # Moved: the next run captures it where it is now (partly off screen: the part that shows).
        window.configure(x=500, y=10)
        screen.sync()
        done = run_cli(*args, "--save", str(tmp_path / "moved"), "-q", env=env)
        assert done.returncode == 0, done.stderr
        shot = np.asarray(Image.open(sorted((tmp_path / "moved").glob("*.png"))[0]).convert("RGB"))
        assert shot.shape == (180, 140, 3)
        done = run_cli("watch", "--root", str(trained.root), "--window", "Minecraft", env=env)
        one_error_line(done, "no window titled like 'Minecraft'", "Toontown Rewritten")
        done = run_cli("watch", "--root", str(trained.root), "--window", "x", "--region", "0,0,10,10", env=env)
        one_error_line(done, "--region or --window")
        screen.close()
    finally:
        xvfb.send_signal(signal.SIGTERM)
        xvfb.wait(timeout=10)


class _Detector:
    """Finds one box of ``found`` (and an empty one, which is dropped) on every frame."""

    def __init__(self, found: str = "bossbot"):
        self.classes, self.found = ["toon", "bossbot"], found

    def detect(self, image, threshold=None):
        sure = np.array([0.9, 0.01] if self.found == "toon" else [0.01, 0.9], np.float32)
        return Detections(
            np.array([[2, 2, 20, 30], [5, 5, 5, 5]], np.float32),
            np.array([int(np.argmax(sure))] * 2),
            np.array([0.9, 0.5], np.float32),
            np.stack([sure, sure]),
        )


class _Classifier:
    """Says ``label`` with 0.8 for every crop, the rest spread over the task's other classes."""

    def __init__(self, task, label):
        from toonvision.data.taxonomy import task_classes

        self.task, self.classes, self.label = task, task_classes(task), label
        self.calls = 0

    def probabilities(self, crops):
        self.calls += 1
        row = np.full(len(self.classes), 0.2 / (len(self.classes) - 1))
        row[self.classes.index(self.label)] = 0.8
        return np.tile(row, (len(crops), 1))


def test_the_loop_caps_the_rate_and_stops_when_told():
    from toonvision.serving.pipeline import Pipeline
    from toonvision.serving.watch import WatchStats, watch

    frames = (("f", np.zeros((40, 60, 3), np.uint8)) for _ in range(1000))
    models = {
        "binary": _Classifier("binary", "cog"),
        "suit": _Classifier("suit", "bb"),
        "name": _Classifier("name", "flunky"),
    }
    stop = threading.Event()
    stats = WatchStats()
    start = time.perf_counter()
    records = []
    for record in watch(frames, Pipeline(models, _Detector()), fps=20, on_frame=stats.add, stop=stop):
        records.append(record)
        if len(records) == 5:
            stop.set()
    assert len(records) == 5 and time.perf_counter() - start >= 4 / 20
    p = records[0].results.boxes
    assert len(p) == 1 and p[0].label == "cog_bb_flunky" and p[0].detector_class == "bossbot"  # empty box dropped
    assert stats.summary()["frames"] == 5 and set(stats.summary()["latency_ms"]) == {
        "capture",
        "detect",
        "classify",
        "total",
    }
    toons = {"binary": _Classifier("binary", "toon"), "suit": _Classifier("suit", "bb")}
    list(watch(iter([("f", np.zeros((40, 60, 3), np.uint8))]), Pipeline(toons, _Detector("toon")), fps=0))
    assert toons["suit"].calls == 0  # no Cog on the frame: the suit model is not run
    toons = {
        "binary": _Classifier("binary", "toon"),
        "suit": _Classifier("suit", "bb"),
        "animal": _Classifier("animal", "cat"),
    }
    (record,) = watch(iter([("f", np.zeros((40, 60, 3), np.uint8))]), Pipeline(toons, _Detector("toon")), fps=0)
    assert toons["suit"].calls == 0 and toons["animal"].calls == 1
    (box,) = record.to_dict()["boxes"]
    assert box["animal"] == "cat" and box["label"] == "toon_cat" and box["conflict"] is None
    assert box["animal_confidence"] == pytest.approx(0.8, abs=0.03)  # the animal model, times a sure kind
    assert set(record.to_dict()["models"]) == set()  # models built in memory: no files to name


def test_a_toon_box_gets_an_animal_and_a_cog_box_none(tmp_path):
    from PIL import Image

    from toonvision.data.annotations import Box
    from toonvision.serving.pipeline import Pipeline
    from toonvision.serving.prediction import Target, fully_right, predict_targets

    shot = tmp_path / "ttc_1.png"
    Image.new("RGB", (120, 80), (90, 90, 90)).save(shot)
    boxes = [Box("toon_cat", 5, 5, 40, 70), Box("toon_dog", 50, 5, 90, 70)]
    models = {
        "binary": _Classifier("binary", "toon"),
        "suit": _Classifier("suit", "bb"),
        "animal": _Classifier("animal", "cat"),
    }
    (target,) = predict_targets([Target(shot, boxes)], Pipeline(models))
    cat, dog = target.results.boxes
    assert (cat.animal, cat.suit, cat.name, cat.label) == ("cat", None, None, "toon_cat")
    assert cat.confidence == pytest.approx(0.8 * 0.8) and cat.caption == "toon cat 0.64"
    # With an animal predicted, a Toon is fully right only when it is the annotated animal.
    assert fully_right(cat.to_dict()) and not fully_right(dog.to_dict())
    (plain,) = predict_targets([Target(shot, boxes[:1])], Pipeline({"binary": _Classifier("binary", "toon")}))[
        0
    ].results.boxes
    assert plain.animal is None and plain.label is None and plain.shown == "toon" and fully_right(plain.to_dict())
    assert plain.caption == f"toon {plain.kind_confidence:.2f}"
