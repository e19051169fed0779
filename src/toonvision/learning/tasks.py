"""The tasks ToonVision trains, declared in one place: what each is, which family serves it, its defaults and
the ``train`` options it takes.

A task belongs to a *family*: ``classify`` (a crop in, one class out: binary, suit, name, animal) or ``detect``
(a whole screenshot in, boxes out). The family says which configuration, trainer, evaluator and exporter serve
the task: :class:`~toonvision.learning.training.TrainConfig` and ``train_run``, ``learning.evaluation`` and the
classifier export for ``classify``; :class:`~toonvision.learning.detector_training.DetectConfig` and
``train_detector``, ``serving.detector_evaluation`` and the detector export for ``detect``. Code that must tell
the families apart asks this registry (:func:`is_detector`, :func:`task_spec`, ``ModelSource.is_detector``)
rather than comparing task names, so that a new task of either family is one entry in :data:`TASKS`.

This module imports nothing heavy, and nothing of the learning stage: the configurations take their defaults
from it, the CLI refuses an option that does not apply before TensorFlow is imported, and
``learning.model_files`` tells a detector from a classifier through it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

CLASSIFY, DETECT = "classify", "detect"

# The options of `toonvision train` that every task takes. The other options belong to the families below.
SHARED_OPTIONS: tuple[str, ...] = (
    "model",
    "epochs",
    "lr",
    "batch_size",
    "augment",
    "seed",
    "precision",
    "split_seed",
    "name",
    "weights",
)
FAMILY_OPTIONS: dict[str, tuple[str, ...]] = {
    CLASSIFY: ("optimizer", "dropout", "decay", "lr_step_every", "lr_step_factor", "class_weight", "pad"),
    DETECT: ("classes", "imgsz", "resume", "include_unreviewed", "mosaic", "plain_epochs", "ema"),
}


@dataclass(frozen=True)
class TaskDefaults:
    """What a run of the task uses where ``train`` is not told otherwise; the configurations' own defaults."""

    model: str
    epochs: int
    lr: float
    batch_size: int
    augment: bool


@dataclass(frozen=True)
class TaskSpec:
    """One task: its name, a phrase for ``--help``, its family, its defaults and its run folders' default name."""

    name: str
    summary: str
    family: str
    defaults: TaskDefaults
    run_name: str  # the --name of a run when none is given

    @property
    def options(self) -> tuple[str, ...]:
        """The ``train`` options this task takes."""
        return SHARED_OPTIONS + FAMILY_OPTIONS[self.family]

    @property
    def is_detector(self) -> bool:
        return self.family == DETECT


CLASSIFIER_DEFAULTS = TaskDefaults(model="small_convnet", epochs=25, lr=1e-3, batch_size=32, augment=False)
# A detector sees each screenshot once an epoch, so it needs its mirrored and rescaled copies; 2e-3 is the
# peak of its warm-up and cosine schedule, 16 screenshots a batch fit in the memory a crop batch of 32 takes.
DETECTOR_DEFAULTS = TaskDefaults(model="centernet", epochs=25, lr=2e-3, batch_size=16, augment=True)

TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("binary", "cog vs toon", CLASSIFY, CLASSIFIER_DEFAULTS, "model"),
        TaskSpec("suit", "the 4 suits of the Cog crops", CLASSIFY, CLASSIFIER_DEFAULTS, "model"),
        TaskSpec("name", "the 32 Cog names", CLASSIFY, CLASSIFIER_DEFAULTS, "model"),
        TaskSpec("animal", "the 11 Toon animals of the Toon crops", CLASSIFY, CLASSIFIER_DEFAULTS, "model"),
        TaskSpec("detect", "find every Toon and Cog in whole screenshots", DETECT, DETECTOR_DEFAULTS, "detect"),
    )
}


def task_spec(name: str) -> TaskSpec:
    """The task called ``name``; ValueError naming the choices."""
    spec = TASKS.get(name)
    if spec is None:
        raise ValueError(f"unknown task {name!r} (choose from {', '.join(TASKS)})")
    return spec


def is_detector(task: str | None) -> bool:
    """Whether a model recorded with ``task`` (None: nothing recorded) finds boxes rather than classifying."""
    spec = TASKS.get(task) if task is not None else None
    return spec is not None and spec.is_detector


def tasks_taking(option: str) -> list[str]:
    """The tasks whose ``train`` takes ``option``."""
    return [name for name, spec in TASKS.items() if option in spec.options]


def inapplicable(task: str, given: Iterable[str]) -> str | None:
    """What is wrong with giving the options ``given`` (parameter names) to ``train --task task``: one sentence
    naming each option that does not apply and the tasks it applies to; None when all apply."""
    spec = task_spec(task)
    groups: dict[tuple[str, ...], list[str]] = {}
    for option in given:
        if option not in spec.options:
            groups.setdefault(tuple(tasks_taking(option)), []).append(flag(option))
    parts = []
    for takers, flags in groups.items():
        verb = "does" if len(flags) == 1 else "do"
        only = f"only to --task {_or(takers)}" if takers else "to no task"
        parts.append(f"{', '.join(flags)} {verb} not apply to --task {task}, {only}")
    return "; ".join(parts) or None


def _or(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def flag(option: str) -> str:
    """The command-line spelling of a parameter name: ``lr_step_every`` -> ``--lr-step-every``."""
    return "--" + option.replace("_", "-")


def task_help() -> str:
    """Every task with its phrase, for ``--task`` of ``train``."""
    return ", ".join(f"{name} ({spec.summary})" for name, spec in TASKS.items()) + "."
