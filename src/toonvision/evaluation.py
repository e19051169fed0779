"""Evaluating a trained model: test metrics, confusion matrix, per-class precision/recall, and the spec's
ranking of wrong predictions over the whole dataset."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from toonvision.datasets import TaskData
from toonvision.taxonomy import task_classes


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


def predict_outputs(model, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))


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


def evaluate_model(model, data: TaskData, task: str, split_of: dict[str, str | None] | None = None) -> Evaluation:
    """Predict every crop of ``data``; ``split_of`` overrides which split each crop counts in."""
    outputs = predict_outputs(model, data.x)
    preds = to_predictions(task, outputs, data)
    if split_of is not None:
        for p in preds:
            p.split = split_of.get(p.name)
    ev = Evaluation(task, task_classes(task), preds)
    test = ev.subset("test")
    if test:
        ev.test_metrics = {
            "accuracy": float(np.mean([p.true == p.predicted for p in test])),
            "loss": _loss(task, outputs, data, [p.split == "test" for p in preds]),
            "n": len(test),
        }
    return ev


def _loss(task: str, outputs: np.ndarray, data: TaskData, mask: list[bool]) -> float:
    eps = 1e-7
    m = np.array(mask)
    y = data.y[m]
    out = np.clip(outputs[m], eps, 1 - eps)
    if task == "binary":
        p = out[:, 0]
        return float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))
    return float(np.mean(-np.log(out[np.arange(len(y)), y])))
