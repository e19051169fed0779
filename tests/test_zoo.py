"""The models ToonVision ships: their cards, using them with no training at all, and fine-tuning from them."""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli, toy_crops
from toonvision.data.taxonomy import all_labels
from toonvision.data.workspace import Workspace
from toonvision.learning.zoo import ZOO_DIR, ZOO_TASKS, card, is_shipped, shipped

MAX_BYTES = 20_000_000  # everything shipped, together
# An architecture the shipped name model is not.
OTHER = "gap_convnet" if card("name")["config"]["model"] == "small_convnet" else "small_convnet"


def test_every_task_ships_a_model_with_a_card_that_matches_it():
    from toonvision.serving.inference import onnx_metadata, onnx_session

    total = 0
    for task in ZOO_TASKS:
        recorded = card(task)
        assert recorded is not None, f"no card for {task}"
        assert recorded["task"] == task and recorded["config"]["task"] == task
        for suffix, facts in recorded["files"].items():
            path = ZOO_DIR / f"{task}{suffix}"
            data = path.read_bytes()
            assert hashlib.sha256(data).hexdigest() == facts["sha256"] and len(data) == facts["bytes"], path
        assert onnx_metadata(onnx_session(ZOO_DIR / f"{task}.onnx", 1))["task"] == task
        # What a card must say: the data, the recipe, the time and machine, the held-out figures.
        assert recorded["data"]["screenshots"] > 0 and recorded["data"]["seed"] is not None
        assert recorded["recipe"] and all(c.startswith("toonvision ") for c in recorded["recipe"])
        assert recorded["training"]["seconds"] > 0 and recorded["training"]["machine"]["cores"] >= 1
        held = recorded["held_out"]
        assert held["seed"] == 900_000 and held["screenshots"] > 0
        assert 0 <= (held["ap50"] if task == "detect" else held["accuracy"]) <= 1
        assert (ZOO_DIR / f"{task}.md").read_text().startswith(f"# ToonVision's shipped {task} model")
        total += sum(p.stat().st_size for p in ZOO_DIR.glob(f"{task}.*"))
    assert total <= MAX_BYTES
    assert sorted(p.name for p in ZOO_DIR.iterdir()) == sorted(
        f"{task}{suffix}" for task in ZOO_TASKS for suffix in (".onnx", ".keras", ".json", ".md")
    )


def test_a_card_counts_the_parameters_of_its_model():
    from toonvision.learning.model_files import load_keras_model

    for task in ZOO_TASKS:
        assert load_keras_model(ZOO_DIR / f"{task}.keras").count_params() == card(task)["parameters"], task


def _street(tmp_path: Path) -> Path:
    """One rendered 1280x720 street with nothing beside it: what a new user points predict at."""
    done = run_cli("synth", "--root", str(tmp_path / "render"), "-n", "1", "--seed", "77")
    assert done.returncode == 0, done.stderr
    shot = tmp_path / "street.png"
    shutil.copyfile(next((tmp_path / "render" / "raw" / "screenshots").glob("*.png")), shot)
    return shot


def test_with_no_training_at_all_every_verb_runs_on_the_shipped_models(tmp_path):
    shot = _street(tmp_path)
    root = tmp_path / "new-user"
    done = run_cli("predict", str(shot), "--root", str(root), "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert set(out["models"]) == set(ZOO_TASKS) and all(is_shipped(p) for p in out["models"].values())
    assert out["predictions"], "the shipped detector finds the Toons and Cogs of a rendered street"
    labels = {str(label) for label in all_labels()}
    assert all(p["label"] in labels for p in out["predictions"])
    table = run_cli("predict", str(shot), "--root", str(root))
    assert "using the models ToonVision ships for: detect, binary, suit, name, animal" in " ".join(table.stdout.split())

    folder = tmp_path / "to-label"
    folder.mkdir()
    shutil.copyfile(shot, folder / "street.png")
    annotated = run_cli("annotate", str(folder), "--root", str(root))
    assert annotated.returncode == 0, annotated.stderr
    assert (folder / "street.xml").is_file() and "ships" in annotated.stdout

    watched = run_cli("watch", "-s", str(folder), "--root", str(root), "--max-frames", "1", "--fps", "0")
    assert watched.returncode == 0, watched.stderr
    assert json.loads(watched.stdout.splitlines()[0])["models"]["detect"].endswith("detect.onnx")

    refused = run_cli("predict", str(shot), "--root", str(root), "--no-shipped")
    assert refused.returncode == 2 and "no trained detector" in refused.stderr


def test_the_workspace_models_come_before_the_shipped_ones(trained):
    from toonvision import Pipeline

    own = Pipeline.load(trained.root)
    assert set(own.models) == set(ZOO_TASKS) and not any(is_shipped(p) for p in own.models.values())
    # A model named for one task replaces that task's only; the shipped ones fill in nothing the workspace has.
    name_only = Pipeline.load(trained.root, models=[shipped("name").path])
    assert is_shipped(name_only.models["name"]) and not is_shipped(name_only.models["suit"])


def _trainable(model) -> list[np.ndarray]:
    return [np.asarray(w) for w in model.trainable_weights]


def test_fine_tuning_starts_from_the_shipped_classifier(ws):
    from toonvision.learning.model_files import load_keras_model

    toy_crops(ws, per_label=3)
    # A learning rate too small to move anything: the run's weights are where it started.
    done = run_cli(
        "train", "--root", str(ws.root), "--task", "suit", "--weights", "pretrained", "--epochs", "1", "--lr", "1e-12"
    )
    assert done.returncode == 0, done.stderr
    run = ws.runs / "train" / "suit-model"
    config = json.loads((run / "config.json").read_text())
    assert config["weights"] == str(ZOO_DIR / "suit.keras") and config["model"] == card("suit")["config"]["model"]
    tuned, start = load_keras_model(run / "model.keras"), load_keras_model(ZOO_DIR / "suit.keras")
    for a, b in zip(_trainable(tuned), _trainable(start), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # Any run folder of the task is a starting point too.
    again = run_cli("train", "--root", str(ws.root), "--task", "suit", "--weights", str(run), "--epochs", "1")
    assert again.returncode == 0, again.stderr
    # Without --lr, a fine-tune learns at a tenth of the task's rate: a few epochs must not undo the start.
    tuned_config = json.loads((ws.runs / "train" / "suit-model-2" / "config.json").read_text())
    assert tuned_config["lr"] == pytest.approx(1e-4) and tuned_config["weights"] == str(run / "model.keras")


def test_fine_tuning_the_shipped_detector_at_another_input_size(trained_copy):
    from toonvision.learning.model_files import load_keras_model

    args = ("--task", "detect", "--weights", "pretrained", "--imgsz", "128", "--batch-size", "4", "--epochs", "1")
    done = run_cli("train", "--root", str(trained_copy.root), *args, "--lr", "1e-12", "--name", "tuned")
    assert done.returncode == 0, done.stderr
    run = trained_copy.runs / "train" / "detect-tuned"
    tuned, start = load_keras_model(run / "model.keras"), load_keras_model(ZOO_DIR / "detect.keras")
    assert tuned.input_shape[1:3] != start.input_shape[1:3]
    for a, b in zip(_trainable(tuned), _trainable(start), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--task", "suit", "--weights", str(ZOO_DIR / "name.keras")), ("name classifier", "--task suit")),
        (("--task", "detect", "--weights", "pretrained", "--classes", "kind"), ("finds toon", "--classes suit")),
        (("--task", "detect", "--weights", "pretrained", "--resume"), ("--resume",)),
        (("--task", "binary", "--weights", str(ZOO_DIR / "detect.keras")), ("a detector",)),
        (
            ("--task", "name", "--weights", "pretrained", "--model", OTHER),
            (f"--model {card('name')['config']['model']}",),
        ),
        (("--task", "name", "--weights", "nowhere"), ("does not exist",)),
    ],
)
def test_a_starting_point_that_cannot_start_the_run_is_refused_in_one_line(tmp_path, args, words):
    done = run_cli("train", "--root", str(tmp_path / "ws"), *args)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), done.stderr
    assert all(word in " ".join(lines) for word in words), lines


def test_an_onnx_export_alone_cannot_be_fine_tuned(tmp_path):
    lone = tmp_path / "suit.onnx"
    shutil.copyfile(ZOO_DIR / "suit.onnx", lone)
    done = run_cli("train", "--root", str(tmp_path / "ws"), "--task", "suit", "--weights", str(lone))
    assert done.returncode == 2 and "cannot be trained further" in done.stderr


def test_the_package_never_writes_its_models(tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in ZOO_DIR.iterdir()}
    Workspace(tmp_path / "ws").init()
    Image.new("RGB", (320, 180)).save(tmp_path / "blank.png")
    run_cli("predict", str(tmp_path / "blank.png"), "--root", str(tmp_path / "ws"))
    assert {p.name: p.stat().st_mtime_ns for p in ZOO_DIR.iterdir()} == before


def test_the_shipped_models_load_through_detector_and_classifier():
    from toonvision import Classifier, Detector
    from toonvision.data.images import IMAGE_SIZE
    from toonvision.data.taxonomy import task_classes

    detector = Detector.load(ZOO_DIR / "detect.onnx")
    recorded = card("detect")["config"]
    assert detector.classes == recorded["class_names"]
    assert tuple(detector.input_size) == (recorded["input_height"], recorded["input_width"])
    for task in ZOO_TASKS[1:]:
        clf = Classifier.load(ZOO_DIR / f"{task}.onnx")
        assert clf.task == task and clf.classes == task_classes(task)
        assert tuple(clf.size) == tuple(IMAGE_SIZE)


@pytest.mark.parametrize("damage", ["corrupt", "version"])
def test_a_damaged_shipped_model_is_one_line_that_says_how_to_get_it_back(tmp_path, monkeypatch, damage):
    from toonvision import Pipeline
    from toonvision.learning import zoo
    from toonvision.learning.model_files import ModelError

    copy = tmp_path / "pretrained"
    shutil.copytree(ZOO_DIR, copy)
    if damage == "corrupt":
        (copy / "suit.onnx").write_bytes(b"not a model")
    else:
        recorded = json.loads((copy / "suit.json").read_text())
        (copy / "suit.json").write_text(json.dumps({**recorded, "version": 99}))
    monkeypatch.setattr(zoo, "ZOO_DIR", copy)
    with pytest.raises(ModelError) as error:
        Pipeline.load(tmp_path / "ws")
    assert "suit" in str(error.value) and "tools/train_zoo.py --install" in str(error.value)
