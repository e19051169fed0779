"""Finding a trained model and what it was trained with: the one way every verb and the library read one.

A model is named by any of:

- a run folder, ``runs/train/<run>`` (``model.keras``, ``config.json``, ``split.json``, ``metrics.json``);
- a model file of a run folder, ``<run>/model.keras`` or ``<run>/model.onnx``: the same run as the folder;
- a model kept by ``compare``, ``runs/compare/<exp>/best/<config>.keras`` (or ``.onnx``), with
  ``<config>.json`` (its result, the configuration under "config") and ``<config>.split.json`` beside it;
- any other ``.keras`` or ``.onnx`` file: a bare model, with nothing recorded beside it.

A relative name that does not exist is also looked up in the workspace: ``<root>/<name>`` and
``<root>/runs/train/<name>``, so ``toonvision evaluate binary-model`` finds ``runs/train/binary-model``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toonvision.data.files import latest_run_dir, new_run_dir
from toonvision.data.taxonomy import TASKS, task_for_units
from toonvision.learning.tasks import is_detector

if TYPE_CHECKING:
    import keras

MODEL_SUFFIXES: tuple[str, ...] = (".keras", ".onnx")
# Where the models ToonVision ships live (toonvision.learning.zoo): read only, so what a verb writes about one
# goes into the workspace instead of beside it.
SHIPPED_DIR = Path(__file__).with_name("pretrained")
RUN_MODEL = "model"  # a run folder's model files are model.keras and model.onnx


def in_folder(path: str | Path, folder: Path) -> bool:
    """Whether the file ``path`` lies directly in ``folder`` (links and relative paths resolved)."""
    return Path(path).resolve().parent == folder.resolve()


class ModelError(ValueError):
    """A model that cannot be found or read; the message says what to give instead."""


@dataclass(frozen=True)
class ModelSource:
    """A model file and what its run recorded: ``kind`` is "run" (a run folder's model), "kept" (a model
    kept by 'compare') or "bare"."""

    path: Path
    kind: str
    config: dict[str, Any] = field(default_factory=dict)  # the TrainConfig as recorded: task, pad, model...
    split: dict[str, str | None] | None = None  # sample name -> split of the run; None when not recorded
    metrics: dict[str, Any] = field(default_factory=dict)  # recorded test metrics: loss, accuracy, n

    @property
    def task(self) -> str | None:
        return self.config.get("task")

    @property
    def is_detector(self) -> bool:
        """Whether its run recorded a detector's task (a bare file records none)."""
        return is_detector(self.task)

    @property
    def pad(self) -> bool:
        return bool(self.config.get("pad", False))

    @property
    def name(self) -> str:
        """The run's folder name, or the file's stem (a kept model's configuration)."""
        return self.path.parent.name if self.kind == "run" else self.path.stem

    @property
    def is_onnx(self) -> bool:
        return self.path.suffix.lower() == ".onnx"

    def sibling(self, suffix: str) -> Path:
        """The same model in another format: ``<run>/model.onnx`` beside ``model.keras``, ``<name>.onnx``
        beside ``<name>.keras``."""
        return self.path.with_suffix(suffix)

    def keras_file(self) -> Path:
        """The Keras model of this source (the file itself, or the .keras an .onnx was exported from)."""
        keras_path = self.sibling(".keras")
        if not keras_path.is_file():
            raise ModelError(f"{self.path} has no Keras model beside it ({keras_path.name})")
        return keras_path

    def resolve_task(self, units: int, task: str | None = None) -> str:
        """The task: ``task`` when given, else the recorded one, else the one ``units`` outputs imply."""
        try:
            return task_for_units(units, task or self.task, self.path)
        except ValueError as exc:
            raise ModelError(str(exc)) from None

    @property
    def is_packaged(self) -> bool:
        """Whether this is one of the models inside the package, which nothing may write beside."""
        return in_folder(self.path, SHIPPED_DIR)

    def results_dir(self, verb: str, root: Path | None = None) -> Path:
        """A new folder for what ``verb`` (evaluate, explain) writes about this model: ``<run>/<verb>``,
        ``<run>/<verb>-2``... for a run; ``<dir>/<verb>/<name>``, ``<name>-2``... for other model files, so
        that the configurations kept by one comparison never share one; ``<root>/runs/<verb>/shipped-<task>``
        for a model the package ships (ModelError without a workspace ``root``)."""
        if self.is_packaged:
            if root is None:
                raise ModelError(f"{self.path} ships inside ToonVision: its results go into a workspace (--root)")
            return new_run_dir(Path(root) / "runs" / verb, f"shipped-{self.path.stem}")
        if self.kind == "run":
            return new_run_dir(self.path.parent, verb)
        return new_run_dir(self.path.parent / verb, self.path.stem)

    def latest_results_dir(self, verb: str, root: Path | None = None) -> Path | None:
        """The newest folder :meth:`results_dir` made for ``verb``, or None."""
        if self.is_packaged:
            return None if root is None else latest_run_dir(Path(root) / "runs" / verb, f"shipped-{self.path.stem}")
        if self.kind == "run":
            return latest_run_dir(self.path.parent, verb)
        return latest_run_dir(self.path.parent / verb, self.path.stem)


def _read_record(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"{path} is damaged ({exc}): it records what the model was trained with") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path} is damaged (not a JSON object): it records what the model was trained with")
    return data


def _model_in(folder: Path) -> Path | None:
    for suffix in MODEL_SUFFIXES:
        candidate = folder / f"{RUN_MODEL}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _source(model_file: Path) -> ModelSource:
    run_config = model_file.parent / "config.json"
    if model_file.stem == RUN_MODEL and run_config.is_file():
        config = _read_record(run_config) or {}
        split = _read_record(model_file.parent / "split.json")
        metrics = (_read_record(model_file.parent / "metrics.json") or {}).get("test") or {}
        return ModelSource(model_file, "run", config, split, metrics)
    kept = _read_record(model_file.with_suffix(".json"))
    if kept is not None:
        config = kept.get("config", kept)
        split = _read_record(model_file.with_suffix(".split.json"))
        return ModelSource(model_file, "kept", config, split, kept.get("test") or {})
    return ModelSource(model_file, "bare")


def locate_model(path: str | Path, root: Path | None = None) -> ModelSource:
    """The model named by ``path`` (see the module's docstring); ModelError when there is none."""
    path = Path(path)
    candidates = [path]
    if root is not None and not path.is_absolute():
        candidates += [Path(root) / path, Path(root) / "runs" / "train" / path]
    for candidate in candidates:
        if candidate.is_dir():
            model_file = _model_in(candidate)
            if model_file is not None:
                return _source(model_file)
        elif candidate.is_file():
            if candidate.suffix.lower() not in MODEL_SUFFIXES:
                raise ModelError(f"{candidate} is not a model file ({', '.join(MODEL_SUFFIXES)})")
            return _source(candidate)
    if path.is_dir():
        raise ModelError(f"{path} holds no model.keras (give a run folder such as runs/train/<run>)")
    raise ModelError(f"{path} does not exist (give a run folder such as runs/train/<run> or a .keras file)")


def find_best_models(runs: Path, tasks: tuple[str, ...] = TASKS) -> dict[str, ModelSource]:
    """For each task, the model under ``runs`` with the highest recorded test accuracy (newest on a tie):
    trained runs (runs/train/*/model.keras) and models kept by comparisons (runs/compare/*/best/*.keras)."""
    best: dict[str, tuple[float, float, ModelSource]] = {}
    for model_file in [*runs.glob("train/*/model.keras"), *runs.glob("compare/*/best/*.keras")]:
        try:
            source = _source(model_file)
        except ModelError:
            continue  # a damaged record: not a candidate for "best"
        accuracy = source.metrics.get("accuracy")
        if source.task not in tasks or accuracy is None:
            continue
        key = (float(accuracy), model_file.stat().st_mtime)
        if source.task not in best or key > best[source.task][:2]:
            best[source.task] = (*key, source)
    return {task: source for task, (_, _, source) in best.items()}


def newest_detector(runs: Path) -> ModelSource | None:
    """The newest finished detector run under ``runs/train`` (its .onnx export when there is one), or None."""
    finished = []
    for model_file in runs.glob("train/*/model.keras"):
        try:
            source = _source(model_file)
        except ModelError:
            continue
        if source.is_detector:
            finished.append((model_file.stat().st_mtime, source))
    if not finished:
        return None
    source = max(finished, key=lambda item: item[0])[1]
    onnx = source.sibling(".onnx")
    return _source(onnx) if onnx.is_file() else source


def load_classifier(source: ModelSource, task: str | None = None) -> tuple[keras.Model, str]:
    """The Keras classifier of ``source`` (an .onnx export's through the .keras it came from) and its task:
    ``task`` when given, else the recorded one, else the one its outputs imply; ModelError says what is
    wrong."""
    if source.is_detector:
        raise ModelError(
            f"{source.path} is a detector, not a classifier: it finds boxes in whole screenshots "
            "(toonvision predict SHOT.png, toonvision.Detector)"
        )
    model = load_keras_model(source.keras_file())
    if len(model.output_shape) != 2:
        raise ModelError(f"{source.path} is not a classifier (its output is {model.output_shape}, not (N, classes))")
    try:
        return model, source.resolve_task(int(model.output_shape[-1]), task)
    except ModelError as exc:
        raise ModelError(f"{exc} (--task)") from None


def load_keras_model(path: Path) -> keras.Model:
    """The Keras model saved at ``path``, uncompiled; ModelError when the file is not one."""
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # a zip, HDF5 or deserialization error: all mean "not a Keras model"
        raise ModelError(f"{path} is not a Keras model: {exc}") from None
