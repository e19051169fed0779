"""Verbs of the serving stage: predict, export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from toonvision.cli.common import Root, console, fail, header, tensorflow, workspace

EXPORT_FORMATS = ("onnx",)


def predict(
    inputs: Annotated[
        list[Path], typer.Argument(help="Crops, folders of crops, or screenshots with an annotation beside them.")
    ],
    root: Root = Path("img"),
    model: Annotated[
        list[Path] | None,
        typer.Option(
            help="Models to use (run folders, .keras or .onnx files, repeatable); default: the workspace's best per "
            "task."
        ),
    ] = None,
    boxes: Annotated[
        Path | None, typer.Option(help="A JSON list of boxes [xmin, ymin, xmax, ymax] for the screenshot.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the predictions as JSON (for programs).")] = False,
    whole: Annotated[
        bool,
        typer.Option("--whole", help="Classify an image without boxes as one crop even if it looks like a screenshot."),
    ] = False,
    detector: Annotated[
        Path | None,
        typer.Option(
            help="The detector for screenshots without boxes (a detect run folder, .keras or .onnx); default: the "
            "workspace's newest."
        ),
    ] = None,
    conf: Annotated[float, typer.Option(min=0.0, max=1.0, help="Detector score a box needs to be kept.")] = 0.3,
) -> None:
    """Classify what is on screen: for each box, Cog or Toon, for Cogs the suit and the name, for Toons the animal.

    For a screenshot, the boxes come from its labelImg annotation (any format), from --boxes, or, when it has
    neither, from a detector (trained with 'toonvision train --task detect'), whose class and score each box
    keeps. An annotated copy with each box, its predicted label and confidence (in suit and Toon colours) is
    written to a new folder under <root>/runs/predict/. Crops and folders of crops are classified whole.
    """
    from toonvision.data.files import new_run_dir
    from toonvision.data.images import ImageError
    from toonvision.learning.model_files import ModelError, find_best_models, locate_model
    from toonvision.serving.inference import Classifier
    from toonvision.serving.prediction import annotate, collect_targets, detect_targets, predict_targets

    ws = workspace(root)
    try:
        targets = collect_targets(inputs, boxes, whole=whole)
    except (FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from None
    if boxes is not None and len(targets) != 1:
        raise fail("--boxes goes with exactly one screenshot")
    try:
        sources = [locate_model(p, ws.root) for p in model] if model else list(find_best_models(ws.runs).values())
        detector_sources = [s for s in sources if s.task == "detect"]  # --model may name the detector too
        sources = [s for s in sources if s.task != "detect"]
        if detector is not None:
            detector_sources = [locate_model(detector, ws.root)]
        if not any(s.is_onnx for s in sources):
            tensorflow()
        found = find_detector(ws, targets, detector_sources, conf)
        if found is not None:
            used_detector = str(found[1])
            detect_targets(targets, found[0])
        classifiers = {}
        for source in sources:
            clf = Classifier.load(source.path)
            classifiers[clf.task] = (clf, source.path)
        if "binary" not in classifiers:
            raise fail(f"no trained binary model in {ws.runs}: run 'toonvision train' or give --model")
        predict_targets(targets, {task: clf for task, (clf, _) in classifiers.items()})
    except (FileNotFoundError, ModelError, ImageError, ValueError) as exc:
        raise fail(str(exc)) from None
    used = {task: str(path) for task, (_, path) in classifiers.items()}
    if found is not None:
        used["detect"] = used_detector
    if as_json:
        predictions = [p.to_dict() for t in targets for p in t.predictions]
        print(json.dumps({"models": used, "predictions": predictions}, indent=2))
        return
    header("predict", root=root, **{f"model_{t}": p for t, p in used.items()})
    detected = any(t.scores is not None for t in targets)
    columns = ["image", "box", *(["detector"] if detected else []), "prediction", "confidence", "true label"]
    table = Table(*columns, title="Predictions")
    for t in targets:
        for p in t.predictions:
            confidence = p.confidence
            found_by = [f"{p.detector_class} {p.detector_score:.2f}" if p.detector_class else ""] if detected else []
            table.add_row(
                t.image.name,
                " ".join(map(str, p.box)) if p.box else "whole",
                *found_by,
                p.label,
                f"{confidence:.3f}",
                p.true_label or "",
            )
    console.print(table)
    for t in targets:
        if t.scores is not None and not t.predictions:
            console.print(f"{t.image.name}: the detector found no Toon or Cog (score >= {conf})")
    screenshots = [t for t in targets if t.boxes is not None and t.predictions]
    if screenshots:
        out = new_run_dir(ws.runs / "predict", screenshots[0].image.stem if len(screenshots) == 1 else "batch")
        for t in screenshots:
            console.print(f"wrote {annotate(t, out / f'{t.image.stem}.predicted.png')}")


def find_detector(ws, targets, sources, conf: float):
    """The Detector for targets without boxes, and its path; None when no target needs one."""
    from toonvision.learning.model_files import ModelError, newest_detector
    from toonvision.serving.detector import Detector

    needing = [t for t in targets if t.detect]
    if not needing:
        return None
    if not sources:
        newest = newest_detector(ws.runs)
        if newest is None:
            raise ModelError(
                f"{needing[0].image} is a whole screenshot with no boxes and there is no trained detector in "
                f"{ws.runs}: train one with 'toonvision train --task detect', give its boxes (a labelImg file "
                "beside it or --boxes), or --whole to classify it as one crop"
            )
        sources = [newest]
    path = sources[0].path
    return Detector.load(path, threshold=conf), path


def export(
    model_path: Annotated[
        Path,
        typer.Argument(
            help="A run folder (runs/train/<run>, also just <run>) or a .keras file "
            "(e.g. runs/compare/<exp>/best/article.keras).",
            show_default=False,
        ),
    ],
    format: Annotated[
        str, typer.Option("--format", "-f", help=f"Model format to write: {', '.join(EXPORT_FORMATS)}.")
    ] = "onnx",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Where to write (default: beside the model, <run>/model.onnx or <name>.onnx).",
            show_default=False,
        ),
    ] = None,
    root: Annotated[
        Path,
        typer.Option(
            "--root",
            envvar="TOONVISION_ROOT",
            help="Workspace root folder (a run name is looked up in <root>/runs/train/).",
            show_default=True,
        ),
    ] = Path("img"),
    task: Annotated[
        str | None,
        typer.Option(
            help="Task of a bare .keras file without its .json (binary, suit, name, animal).", show_default=False
        ),
    ] = None,
    pad: Annotated[
        bool | None,
        typer.Option(
            "--pad/--stretch",
            help="How crops are fitted to the model's size, for a bare .keras file without its .json "
            "(default: as in training, else stretched).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing file at --out that is not a ToonVision export.")
    ] = False,
) -> None:
    """Export a trained model for serving: an ONNX file that [bold]toonvision.Classifier[/] runs with ONNX
    Runtime, without TensorFlow.

    The file carries the task, the class names and how crops are fitted, so it needs nothing beside it.
    Every export is checked before it is written: ONNX Runtime must give the Keras model's probabilities to
    1e-4. Exports are derived files: an earlier export at the same path is replaced; any other existing
    file is left alone unless [bold]--force[/].
    """
    from toonvision.data.taxonomy import TASKS
    from toonvision.serving.export import ExportError, check_output, resolve_source
    from toonvision.serving.export import export as export_model

    if format.lower() not in EXPORT_FORMATS:
        raise fail(f"unknown format {format!r} (choose from {', '.join(EXPORT_FORMATS)})")
    if task is not None and task not in TASKS:
        raise fail(f"unknown task {task!r} (choose from {', '.join(TASKS)})")
    try:
        source = resolve_source(model_path, root)
        target = out if out is not None else source.sibling(".onnx")
        check_output(target, source.path, force)  # before TensorFlow's start-up: fail fast
        header("export", model=source.path, format=format.lower(), out=target)
        tensorflow()
        result = export_model(source.path, target, task=task, pad=pad, force=force)
    except ExportError as exc:
        raise fail(str(exc)) from None
    size_kb = result.path.stat().st_size / 1024
    fitted = (
        "screenshots letterboxed" if result.task == "detect" else f"crops {'padded' if result.pad else 'stretched'}"
    )
    console.print(
        f"{'replaced' if result.replaced else 'wrote'} {result.path} ({size_kb:.0f} KB): task {result.task}, "
        f"{len(result.classes)} classes, {fitted}; ONNX Runtime matches Keras to {result.max_difference:.1g}",
        highlight=False,
    )
