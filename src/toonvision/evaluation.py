"""Evaluating a trained model: test metrics, confusion matrix, per-class precision/recall, and the spec's
ranking of wrong predictions over the whole dataset."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
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
    """The model's raw outputs for crops already at its input size, through the compiled forward pass of
    :class:`toonvision.Classifier` (the same path a bot uses) rather than ``model.predict``."""
    from toonvision.inference import Classifier

    forward = Classifier._keras_forward(model, tuple(model.input_shape[1:3]), False)
    chunks = [forward(np.asarray(x[i : i + batch_size], dtype=np.float32)) for i in range(0, len(x), batch_size)]
    return np.concatenate(chunks) if chunks else np.zeros((0, int(model.output_shape[-1])), dtype=np.float32)


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


@dataclass
class ModelFile:
    """A saved model with what it was trained for: a run folder's model.keras (config.json, split.json
    beside it) or a model kept by 'compare' (<name>.json and <name>.split.json beside it)."""

    path: Path
    task: str
    config: dict[str, Any]
    split_of: dict[str, str | None] | None
    out: Path  # where its evaluation goes

    @classmethod
    def locate(cls, model_path: Path, task: str | None = None, units: int | None = None) -> ModelFile:
        import json

        model_path = Path(model_path)
        run_dir = model_path if model_path.is_dir() else None
        model_file = model_path / "model.keras" if run_dir else model_path
        if not model_file.exists():
            raise FileNotFoundError(f"{model_file} does not exist")
        if run_dir:
            config_file, split_file, out = run_dir / "config.json", run_dir / "split.json", run_dir / "evaluate"
        else:
            # The configurations of one comparison share a folder: each gets its own evaluation folder.
            config_file, split_file = model_file.with_suffix(".json"), model_file.with_suffix(".split.json")
            out = model_file.parent / "evaluate" / model_file.stem
        cfg = json.loads(config_file.read_text()) if config_file.exists() else {}
        cfg = cfg.get("config", cfg)
        task = task or cfg.get("task") or {1: "binary", 4: "suit", 32: "name"}.get(units or 0)
        if task is None:
            raise ValueError(f"cannot tell the task of {model_file} ({units} outputs): give the task")
        split_of = json.loads(split_file.read_text()) if split_file.exists() else None
        return cls(model_file, task, cfg, split_of, out)


def write_evaluation(ev: Evaluation, data: TaskData, out: Path, *, top: int = 32) -> dict[str, Path]:
    """evaluation.json, confusion.png and wrong_predictions.png under ``out``."""
    from toonvision.plots import plot_confusion, plot_wrong_predictions
    from toonvision.training import write_json

    out.mkdir(parents=True, exist_ok=True)
    split = "test" if ev.test_metrics else None
    index = {s.name: i for i, s in enumerate(data.samples)}
    wrong = ev.wrong()
    items = [
        {
            "image": data.x[index[p.name]],
            "label": p.name.rsplit("_", 1)[0],
            "error": p.error,
            "output": p.output,
            "predicted": ev.classes[p.predicted],
        }
        for p in wrong[:top]
    ]
    matrix = ev.confusion(split)
    write_json(
        out / "evaluation.json",
        {
            "test": ev.test_metrics,
            "classes": ev.classes,
            "confusion": matrix.tolist(),
            "report": ev.report(split),
            "wrong": [p.__dict__ for p in wrong],
        },
    )
    return {
        "confusion": plot_confusion(
            matrix, ev.classes, out / "confusion.png", f"Confusion matrix ({split or 'all crops'})"
        ),
        "wrong": plot_wrong_predictions(
            items,
            out / "wrong_predictions.png",
            f"{len(wrong)} wrong predictions over {len(ev.predictions)} crops, highest error first",
        ),
        "json": out / "evaluation.json",
    }


def evaluate_file(ws, located: ModelFile, model=None, *, top: int = 32) -> tuple[Evaluation, dict[str, Path]]:
    """Evaluate a saved model on the workspace's crops (its own test split) and write the results."""
    from toonvision.datasets import find_samples, load_task

    if model is None:
        import keras

        model = keras.models.load_model(located.path, compile=False)
    data = load_task(find_samples(ws), located.task, pad=located.config.get("pad", False), ws=ws)
    ev = evaluate_model(model, data, located.task, located.split_of)
    return ev, write_evaluation(ev, data, located.out, top=top)
