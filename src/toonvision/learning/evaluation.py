"""Evaluating a trained model: test metrics, confusion matrix, per-class precision/recall, and the spec's
ranking of wrong predictions over the whole dataset.

Test loss and accuracy are computed in one place, :func:`test_metrics`, from the model's outputs: the
numbers a training run records in ``metrics.json`` and those ``evaluate`` writes to ``evaluation.json`` are
the same computation on the same outputs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from toonvision.data.files import write_json
from toonvision.data.samples import TaskData, find_samples, load_task
from toonvision.data.taxonomy import task_classes
from toonvision.learning.models import forward_function

if TYPE_CHECKING:
    import keras

    from toonvision.data.workspace import Workspace
    from toonvision.learning.model_files import ModelSource

EPSILON = 1e-7  # probabilities are clipped to [eps, 1 - eps] before the log, as Keras' cross-entropies do


@dataclass
class Prediction:
    """Model output for one crop. For binary models ``output`` is the sigmoid (toon probability), as the
    spec's A; for multiclass models it is the probability of the predicted class."""

    name: str
    true: int
    predicted: int
    output: float
    error: float  # the spec's E: how far the output is from the true class
    split: str | None


@dataclass
class Evaluation:
    task: str
    classes: list[str]
    predictions: list[Prediction]
    test_metrics: dict[str, float] = field(default_factory=dict)

    def subset(self, split: str | None) -> list[Prediction]:
        return [p for p in self.predictions if p.split == split]

    @property
    def judged_split(self) -> str | None:
        """The split the confusion matrix and the per-class table are about: test, or every crop when the
        model's test split is unknown."""
        return "test" if self.test_metrics else None

    def confusion(self, split: str | None = "test") -> np.ndarray:
        from sklearn.metrics import confusion_matrix

        preds = self.predictions if split is None else self.subset(split)
        return confusion_matrix([p.true for p in preds], [p.predicted for p in preds], labels=range(len(self.classes)))

    def report(self, split: str | None = "test") -> dict[str, Any]:
        from sklearn.metrics import classification_report

        preds = self.predictions if split is None else self.subset(split)
        if not preds:
            return {}
        return classification_report(
            [p.true for p in preds],
            [p.predicted for p in preds],
            labels=list(range(len(self.classes))),
            target_names=self.classes,
            output_dict=True,
            zero_division=0,
        )

    def wrong(self) -> list[Prediction]:
        """Every wrong prediction over the whole dataset, highest error first (the spec's ranking)."""
        return sorted((p for p in self.predictions if p.true != p.predicted), key=lambda p: -p.error)


def predict_outputs(model: keras.Model, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The model's raw outputs for crops already at its input size, through the same compiled forward pass
    as :class:`toonvision.Classifier` (the path a bot uses) rather than ``model.predict``."""
    forward = forward_function(model, tuple(model.input_shape[1:3]))
    chunks = [forward(np.asarray(x[i : i + batch_size], dtype=np.float32)) for i in range(0, len(x), batch_size)]
    return np.concatenate(chunks) if chunks else np.zeros((0, int(model.output_shape[-1])), dtype=np.float32)


def test_metrics(task: str, outputs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Cross-entropy loss, accuracy and count of outputs against true classes ``y``: the model's test
    metrics wherever they are recorded."""
    y = np.asarray(y, dtype=int)
    if not len(y):
        return {}
    out = np.clip(np.asarray(outputs, dtype=np.float64), EPSILON, 1 - EPSILON)
    if task == "binary":
        p = out[:, 0]
        loss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
        predicted = (p > 0.5).astype(int)
    else:
        loss = -np.log(out[np.arange(len(y)), y])
        predicted = np.argmax(out, axis=1)
    return {"loss": float(np.mean(loss)), "accuracy": float(np.mean(predicted == y)), "n": len(y)}


def measure(model: keras.Model, data: TaskData) -> dict[str, float]:
    """Test metrics of ``model`` on ``data``."""
    return test_metrics(data.task, predict_outputs(model, data.x), data.y)


def to_predictions(task: str, outputs: np.ndarray, data: TaskData) -> list[Prediction]:
    preds = []
    for out, true, sample in zip(outputs, data.y, data.samples, strict=True):
        if task == "binary":
            a = float(out[0])
            predicted = int(a > 0.5)
            error = abs(float(true) - a)
            output = a
        else:
            predicted = int(np.argmax(out))
            error = 1.0 - float(out[int(true)])
            output = float(out[predicted])
        preds.append(Prediction(sample.name, int(true), predicted, output, error, sample.split))
    return preds


def evaluate_model(
    model: keras.Model, data: TaskData, task: str, split_of: dict[str, str | None] | None = None
) -> Evaluation:
    """Predict every crop of ``data``; ``split_of`` overrides which split each crop counts in."""
    outputs = predict_outputs(model, data.x)
    preds = to_predictions(task, outputs, data)
    if split_of is not None:
        for p in preds:
            p.split = split_of.get(p.name)
    ev = Evaluation(task, task_classes(task), preds)
    mask = np.array([p.split == "test" for p in preds], dtype=bool)
    if mask.any():
        ev.test_metrics = test_metrics(task, outputs[mask], data.y[mask])
    return ev


def evaluate_source(ws: Workspace, source: ModelSource, model: keras.Model, task: str) -> tuple[Evaluation, TaskData]:
    """Evaluate a located model on the workspace's crops, fitted as it was trained (padded or stretched), on
    its own test split (the folders' split when its run recorded none)."""
    data = load_task(find_samples(ws), task, pad=source.pad, ws=ws)
    return evaluate_model(model, data, task, source.split), data


def write_evaluation(ev: Evaluation, out: Path, model: Path | None = None) -> Path:
    """evaluation.json: the model file judged, test metrics, the confusion matrix and per-class report, and
    every wrong prediction."""
    split = ev.judged_split
    path = out / "evaluation.json"
    write_json(
        path,
        {
            "model": str(model) if model is not None else None,
            "task": ev.task,
            "test": ev.test_metrics,
            "classes": ev.classes,
            "confusion": ev.confusion(split).tolist(),
            "report": ev.report(split),
            "wrong": [asdict(p) for p in ev.wrong()],
        },
    )
    return path


@dataclass
class ClassifierEvaluation:
    """A classifier judged on the workspace's crops, and the folder its evaluation.json was written to."""

    out: Path
    evaluation: Evaluation
    data: TaskData

    @property
    def report(self) -> Path:
        return self.out / "evaluation.json"


def evaluate_classifier(ws: Workspace, source: ModelSource, model: keras.Model, task: str) -> ClassifierEvaluation:
    """Evaluate a located classifier (:func:`evaluate_source`) and write evaluation.json into a new results
    folder of ``source``, made only once the evaluation succeeded; ValueError when the workspace has no crops
    of ``task``."""
    ev, data = evaluate_source(ws, source, model, task)
    out = source.results_dir("evaluate", ws.root)
    write_evaluation(ev, out, source.keras_file())
    return ClassifierEvaluation(out, ev, data)
