"""The task registry: every task declared once, `train` refusing what does not apply to the chosen task (before
TensorFlow), and every default stated in one place."""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path

import pytest

from conftest import run_cli
from toonvision.data.taxonomy import TASKS as CLASSIFIER_TASKS
from toonvision.learning.detector_training import DetectConfig
from toonvision.learning.tasks import (
    CLASSIFIER_DEFAULTS,
    DETECTOR_DEFAULTS,
    TASKS,
    TaskDefaults,
    inapplicable,
    is_detector,
    task_spec,
)
from toonvision.learning.training import TrainConfig

CLASSIFIERS = "binary, suit, name or animal"
REFUSED = [
    (("--task", "detect", "--dropout", "0.5"), "--dropout", CLASSIFIERS),
    (("--task", "detect", "--optimizer", "sgd"), "--optimizer", CLASSIFIERS),
    (("--task", "detect", "--class-weight", "balanced"), "--class-weight", CLASSIFIERS),
    (("--task", "detect", "--pad"), "--pad", CLASSIFIERS),
    (("--task", "detect", "--decay", "1e-5"), "--decay", CLASSIFIERS),
    (("--task", "detect", "--lr-step-every", "5"), "--lr-step-every", CLASSIFIERS),
    (("--task", "detect", "--lr-step-factor", "0.5"), "--lr-step-factor", CLASSIFIERS),
    (("--task", "animal", "--imgsz", "320"), "--imgsz", "detect"),
    (("--task", "suit", "--classes", "kind"), "--classes", "detect"),
    (("--task", "binary", "--resume"), "--resume", "detect"),
    (("--resume",), "--resume", "detect"),  # the default task is a classifier too
    (("--task", "name", "--include-unreviewed"), "--include-unreviewed", "detect"),
    (("--task", "animal", "--ema", "0.995"), "--ema", "detect"),
    (("--task", "suit", "--plain-epochs", "3"), "--plain-epochs", "detect"),
    (("--task", "binary", "--mosaic", "0.5"), "--mosaic", "detect"),
]


def no_tensorflow(tmp_path: Path) -> dict[str, str]:
    """An environment in which importing TensorFlow or Keras fails loudly: a refusal that imports them shows up
    as a traceback instead of its one line."""
    fake = tmp_path / "fake"
    for name in ("tensorflow", "keras"):
        (fake / name).mkdir(parents=True, exist_ok=True)
        (fake / name / "__init__.py").write_text(f"raise ImportError('{name} imported before the refusal')\n")
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(fake), os.environ.get("PYTHONPATH", "")) if p)}


@pytest.mark.parametrize(("args", "option", "takers"), REFUSED, ids=[" ".join(a) for a, _, _ in REFUSED])
def test_train_refuses_an_option_of_another_task_in_one_line_before_tensorflow(tmp_path, args, option, takers):
    root = tmp_path / "ws"
    done = run_cli("train", "--root", str(root), *args, env=no_tensorflow(tmp_path))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert option in lines[0] and f"only to --task {takers}" in lines[0], lines[0]
    assert not root.exists()  # nothing written


def test_several_refused_options_are_named_together():
    assert inapplicable("detect", ["dropout", "epochs", "pad", "seed"]) == (
        "--dropout, --pad do not apply to --task detect, only to --task binary, suit, name or animal"
    )
    assert inapplicable("suit", ["imgsz", "optimizer", "augment", "name"]) == (
        "--imgsz does not apply to --task suit, only to --task detect"
    )
    assert inapplicable("detect", ["augment", "epochs", "classes", "resume", "name", "split_seed"]) is None
    with pytest.raises(ValueError, match="choose from binary, suit, name, animal, detect"):
        task_spec("segment")


def test_the_registry_holds_every_task_and_the_classifiers_are_taxonomys():
    assert list(TASKS) == [*CLASSIFIER_TASKS, "detect"]
    assert [t for t in TASKS if is_detector(t)] == ["detect"]
    assert not is_detector(None) and not is_detector("unknown")


def test_defaults_are_stated_once_in_the_registry():
    """The configurations' defaults are the registry's, and the CLI states none of its own: its options default
    to None so that the task fills them in."""
    from typer.main import get_command

    from toonvision.cli import app

    for config, defaults in ((TrainConfig(), CLASSIFIER_DEFAULTS), (DetectConfig(), DETECTOR_DEFAULTS)):
        for f in fields(TaskDefaults):
            assert getattr(config, f.name) == getattr(defaults, f.name), (type(config).__name__, f.name)
    assert DETECTOR_DEFAULTS.augment and not CLASSIFIER_DEFAULTS.augment  # what --augment/--no-augment overrides
    train = get_command(app).commands["train"]
    task_options = {"model", "epochs", "lr", "batch_size", "augment", "optimizer", "dropout", "decay"}
    task_options |= {"lr_step_every", "lr_step_factor", "class_weight", "pad", "classes", "imgsz", "resume", "name"}
    task_options |= {"mosaic", "plain_epochs", "ema"}
    for param in train.params:
        if param.name in task_options:
            assert param.default is None, param.name


def test_train_help_lists_every_task_with_a_phrase_and_its_defaults():
    done = run_cli("train", "--help", env={"COLUMNS": "400"})
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.replace("│", " ").split())
    for name, spec in TASKS.items():
        assert f"{name} ({spec.summary})" in text, name
    assert f"detect: {DETECTOR_DEFAULTS.batch_size}" in text and f"detect: {DETECTOR_DEFAULTS.model}" in text
    assert "--no-augment" in text and "detect: on" in text


def test_the_run_header_prints_the_task_defaults_it_used(tmp_path):
    """A detector run on a workspace without screenshots stops after its header: the header shows the effective
    settings, the task's defaults where nothing was given, and no run folder is left behind."""
    root = tmp_path / "ws"
    done = run_cli("train", "--root", str(root), "--task", "detect", "--no-augment", "--imgsz", "128")
    assert done.returncode == 2 and "no labelled screenshots" in done.stderr, done.stderr
    header = " ".join(done.stdout.split())
    d = DETECTOR_DEFAULTS
    for shown in (f"model={d.model}", f"epochs={d.epochs}", f"lr={d.lr}", f"batch_size={d.batch_size}"):
        assert shown in header, header
    assert "augment=False" in header and "input=128x96" in header
    assert not list((root / "runs").glob("train/*"))
