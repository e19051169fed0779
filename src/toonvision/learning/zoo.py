"""The models that ship inside the package, and fine-tuning from them or from any trained model.

ToonVision ships a detector and the binary, suit, name and animal classifiers, trained on the rendered world by
``tools/train_zoo.py`` with fixed seeds. Each task's files sit in ``pretrained/`` beside this module:

- ``<task>.onnx``: what runs (``toonvision.Pipeline``, ``predict``, ``annotate``, ``watch``) whenever the
  workspace has no model of its own for the task;
- ``<task>.keras``: what ``train --weights pretrained`` starts from;
- ``<task>.json``: its model card (data, recipe, training time and machine, held-out figures), and
  ``<task>.md``, the same in words.

The package never writes there at run time: only the recipe's ``--install`` does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toonvision.data.taxonomy import TASKS
from toonvision.learning.model_files import (
    SHIPPED_DIR,
    ModelError,
    ModelSource,
    in_folder,
    load_keras_model,
    locate_model,
)
from toonvision.learning.tasks import DETECT, is_detector, task_spec

if TYPE_CHECKING:
    import keras

ZOO_DIR = SHIPPED_DIR
PRETRAINED = "pretrained"  # what --weights takes for the shipped model of the task
ZOO_TASKS: tuple[str, ...] = (DETECT, *TASKS)
ZOO_VERSION = 1  # the cards this ToonVision reads; tools/train_zoo.py writes it
RETRAIN = "reinstall ToonVision, or retrain the shipped models with: python tools/train_zoo.py --install"
# A run that starts from trained weights learns at a tenth of the task's default rate unless told otherwise: at
# the full rate, a few epochs on a few screenshots undo what the start knew (the quick demo's detector: AP50
# 0.675 after 2 epochs at 2e-3 from the shipped detector's 0.948 on the same held-out screenshots).
FINE_TUNE_LR = 0.1


def card(task: str, folder: Path | None = None) -> dict[str, Any] | None:
    """The model card of the shipped ``task`` model, or None when the package ships none; ModelError for a card
    that cannot be read or comes from another version of the recipe."""
    path = (folder or ZOO_DIR) / f"{task}.json"
    if not path.is_file():
        return None
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
        version, config = recorded["version"], recorded["config"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"the card of the shipped {task} model ({path}) cannot be read ({exc}): {RETRAIN}") from None
    if version != ZOO_VERSION or not isinstance(config, dict):
        raise ModelError(
            f"the shipped {task} model is of version {version} and this ToonVision reads version {ZOO_VERSION}: "
            f"{RETRAIN}"
        )
    return recorded


def shipped(task: str, suffix: str = ".onnx", folder: Path | None = None) -> ModelSource | None:
    """The shipped model of ``task`` (its ``suffix`` file), with what its card recorded; None when not shipped."""
    folder = folder or ZOO_DIR
    path = folder / f"{task}{suffix}"
    recorded = card(task, folder)
    if not path.is_file() or recorded is None:
        return None
    return ModelSource(path, "shipped", dict(recorded["config"]), None, dict(recorded.get("held_out", {})))


def fine_tune_lr(task: str) -> float:
    """The learning rate of a run of ``task`` that starts from trained weights and is not told one."""
    return task_spec(task).defaults.lr * FINE_TUNE_LR


def is_shipped(path: str | Path) -> bool:
    """Whether ``path`` is one of the package's own models."""
    return in_folder(path, ZOO_DIR)  # ZOO_DIR read when called: tests point it elsewhere


# --- fine-tuning: where a training run starts from ---


def starting_point(weights: str, task: str, root: Path | None = None) -> ModelSource:
    """The model ``train --weights`` names, checked against the run's task: ``pretrained`` (the shipped model
    of ``task``), a run folder, or a .keras file. ModelError says what to give instead."""
    if weights == PRETRAINED:
        source = shipped(task, ".keras")
        if source is None:
            raise ModelError(
                f"this ToonVision ships no {task} model to start from (tools/train_zoo.py --install trains them); "
                "give a run folder or a .keras file, or leave --weights out to start from scratch"
            )
        return source
    source = locate_model(weights, root)
    if source.is_onnx:
        keras_file = source.sibling(".keras")
        if not keras_file.is_file():
            raise ModelError(
                f"{source.path} is an ONNX export, which cannot be trained further: give the run folder or the "
                ".keras file it was exported from"
            )
        source = locate_model(keras_file)
    if source.task is not None and is_detector(source.task) != is_detector(task):
        have = "a detector" if source.is_detector else f"a {source.task} classifier"
        raise ModelError(f"--weights {weights} is {have}; --task {task} cannot start from it")
    if source.task is not None and not is_detector(task) and source.task != task:
        raise ModelError(
            f"--weights {weights} is a {source.task} classifier; --task {task} needs a {task} model to start from "
            f"(--weights {PRETRAINED} gives the one ToonVision ships)"
        )
    return source


def check_recipe(source: ModelSource, architecture: str, classes: list[str] | None = None) -> None:
    """Refuse a starting point whose recorded architecture or detector classes differ from the run's."""
    recorded = source.config.get("model")
    if recorded is not None and recorded != architecture:
        raise ModelError(
            f"{source.path} is a {recorded}; this run builds a {architecture}: add --model {recorded} to fine-tune it"
        )
    names = source.config.get("class_names")
    if classes is not None and names is not None and list(names) != list(classes):
        raise ModelError(
            f"{source.path} finds {', '.join(names)}; this run's classes are {', '.join(classes)}: "
            f"train with --classes {source.config.get('classes', 'suit')}, or leave --weights out"
        )


def start_from(model: keras.Model, path: Path) -> None:
    """Give ``model`` the weights of the model saved at ``path``: every weight, with the same shapes.

    A detector's weights do not depend on its input size, so a detector trained at one --imgsz starts one at
    another. ModelError names the first weight that does not fit.
    """
    source = load_keras_model(path)
    theirs, mine = source.get_weights(), model.get_weights()
    if len(theirs) != len(mine):
        raise ModelError(
            f"{path} has {len(theirs)} weight arrays and this model {len(mine)}: not the same architecture"
        )
    for index, (a, b) in enumerate(zip(theirs, mine, strict=True)):
        if a.shape != b.shape:
            name = model.weights[index].path
            raise ModelError(f"{path} does not fit this model: {name} is {a.shape} there and {b.shape} here")
    model.set_weights(theirs)
