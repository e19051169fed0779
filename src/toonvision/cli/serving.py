"""Verbs of the serving stage: predict, export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from toonvision.cli.common import (
    BoxScore,
    MaxBoxes,
    Root,
    ServingDetector,
    ServingModels,
    ShippedModels,
    console,
    fail,
    header,
    shipped_note,
    tensorflow,
    workspace,
)
from toonvision.serving.thresholds import BOX_SCORE, MAX_BOXES

EXPORT_FORMATS = ("onnx",)


def predict(
    inputs: Annotated[
        list[Path], typer.Argument(help="Crops, folders of crops, or screenshots with an annotation beside them.")
    ],
    root: Root = Path("img"),
    model: ServingModels = None,
    boxes: Annotated[
        Path | None, typer.Option(help="A JSON list of boxes [xmin, ymin, xmax, ymax] for the screenshot.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the predictions as JSON (for programs).")] = False,
    whole: Annotated[
        bool,
        typer.Option("--whole", help="Classify an image without boxes as one crop even if it looks like a screenshot."),
    ] = False,
    detector: ServingDetector = None,
    shipped: ShippedModels = True,
    conf: BoxScore = BOX_SCORE,
    max_det: MaxBoxes = MAX_BOXES,
) -> None:
    """Classify what is on screen: for each box, Cog or Toon, for Cogs the suit and the name, for Toons the animal.

    For a screenshot, the boxes come from its labelImg annotation (any format), from --boxes, or, when it has
    neither, from a detector (trained with 'toonvision train --task detect'), whose class and score each box
    keeps. An annotated copy with each box, its predicted label and confidence (in suit and Toon colours) is
    written to a new folder under <root>/runs/predict/. Crops and folders of crops are classified whole.
    """
    from toonvision.data.files import new_run_dir
    from toonvision.data.images import ImageError
    from toonvision.learning.model_files import ModelError
    from toonvision.serving.pipeline import Pipeline
    from toonvision.serving.prediction import collect_targets, predict_targets

    ws = workspace(root)
    try:
        targets = collect_targets(inputs, boxes, whole=whole)
    except (FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from None
    if boxes is not None and len(targets) != 1:
        raise fail("--boxes goes with exactly one screenshot")
    needing = [t for t in targets if t.detect]
    try:
        pipe = Pipeline.load(
            ws.root,
            models=model or [],
            detector=detector,
            conf=conf,
            with_detector=bool(needing),
            shipped=shipped,
            max_det=max_det,
        )
        if needing and pipe.detector is None:
            raise fail(
                f"{needing[0].image} is a whole screenshot with no boxes and there is no trained detector in "
                f"{ws.runs}: train one with 'toonvision train --task detect', give its boxes (a labelImg file "
                "beside it or --boxes), or --whole to classify it as one crop"
            )
        if "binary" not in pipe.classifiers:
            raise fail(f"no trained binary model in {ws.runs}: run 'toonvision train' or give --model")
        predict_targets(targets, pipe)
    except (FileNotFoundError, ModelError, ImageError, ValueError) as exc:
        raise fail(str(exc)) from None
    if as_json:
        boxes_found = [{"source": str(t.image), **b.to_dict()} for t in targets for b in t.results.boxes]
        print(json.dumps({"models": pipe.models, "predictions": boxes_found}, indent=2))
        return
    header("predict", root=root, **{f"model_{t}": p for t, p in pipe.models.items()})
    shipped_note(pipe.models)
    detected = bool(needing)
    unsure = any(b.conflict for t in targets for b in t.results.boxes)
    columns = ["image", "box", *(["detector"] if detected else []), "prediction", "confidence", "true label"]
    table = Table(*columns, *(["disagreement"] if unsure else []), title="Predictions")
    for t in targets:
        for b in t.results.boxes:
            found_by = [f"{b.detector_class} {b.detector_score:.2f}" if b.detector_class else ""] if detected else []
            table.add_row(
                t.image.name,
                " ".join(map(str, b.xyxy)) if b.xyxy else "whole",
                *found_by,
                b.shown,
                f"{b.confidence:.3f}",
                b.true_label or "",
                *([b.conflict or ""] if unsure else []),
            )
    console.print(table)
    for t in needing:
        if not t.results.boxes:
            console.print(f"{t.image.name}: the detector found no Toon or Cog (score >= {conf})")
    screenshots = [t for t in targets if (t.boxes is not None or t.detect) and t.results.boxes]
    if screenshots:
        out = new_run_dir(ws.runs / "predict", screenshots[0].image.stem if len(screenshots) == 1 else "batch")
        for t in screenshots:
            console.print(f"wrote {t.results.save(out / f'{t.image.stem}.predicted.png')}")


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
    from toonvision.learning.tasks import is_detector
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
        "screenshots letterboxed" if is_detector(result.task) else f"crops {'padded' if result.pad else 'stretched'}"
    )
    console.print(
        f"{'replaced' if result.replaced else 'wrote'} {result.path} ({size_kb:.0f} KB): task {result.task}, "
        f"{len(result.classes)} classes, {fitted}; ONNX Runtime matches Keras to {result.max_difference:.1g}",
        highlight=False,
    )
