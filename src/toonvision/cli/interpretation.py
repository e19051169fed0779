"""The explain verb: what a trained model sees."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from toonvision.cli.common import console, fail, header, progress, tensorflow, workspace

if TYPE_CHECKING:
    import numpy as np

    from toonvision.data.workspace import Workspace
    from toonvision.interpretation.explainer import Explainer
    from toonvision.learning.model_files import ModelSource


def explain(
    model_path: Annotated[
        Path,
        typer.Argument(
            help="A run folder (runs/train/<run>, or just <run>), its model.keras, or a model kept by compare "
            "(runs/compare/<exp>/best/<config>.keras).",
            show_default=False,
        ),
    ],
    crops: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Crop files or folders of crops to explain (folders are searched recursively).", show_default=False
        ),
    ] = None,
    root: Annotated[
        Path,
        typer.Option(
            "--root", envvar="TOONVISION_ROOT", help="Workspace root folder (for --wrong).", show_default=True
        ),
    ] = Path("img"),
    activations: Annotated[
        bool, typer.Option("--activations", help="Feature maps of every Conv2D and MaxPooling2D layer for each crop.")
    ] = False,
    filters: Annotated[
        bool, typer.Option("--filters", help="The input pattern that maximally activates each filter (slow).")
    ] = False,
    heatmaps: Annotated[
        bool,
        typer.Option(
            "--heatmaps", help="Grad-CAM heatmap of each crop, alone and on the crop, with --compare methods beside it."
        ),
    ] = False,
    wrong: Annotated[
        bool, typer.Option("--wrong", help="Heatmaps of the model's wrong predictions over the workspace's crops.")
    ] = False,
    top: Annotated[
        int, typer.Option(min=1, help="How many wrong predictions --wrong shows, highest error first.")
    ] = 16,
    layer: Annotated[
        list[str] | None,
        typer.Option(
            "--layer", help="Convolution layer for --filters (repeatable; default: every Conv2D).", show_default=False
        ),
    ] = None,
    class_: Annotated[
        str | None,
        typer.Option(
            "--class",
            help="Class the heatmaps explain, by name or index (default: the predicted class).",
            show_default=False,
        ),
    ] = None,
    compare: Annotated[
        list[str] | None,
        typer.Option(
            "--compare",
            help="Methods shown beside Grad-CAM: gradcam++, scorecam (repeatable), or none (default: both)",
            show_default=False,
        ),
    ] = None,
    cam_layer: Annotated[
        str | None,
        typer.Option(
            "--cam-layer",
            help="Layer whose feature maps the heatmaps weigh (default: last convolution block).",
            show_default=False,
        ),
    ] = None,
    steps: Annotated[int, typer.Option(min=1, help="Gradient-ascent steps per filter pattern.")] = 40,
    task: Annotated[
        str | None,
        typer.Option(
            help="Task of a bare .keras file without its .json (binary, suit, name, animal).", show_default=False
        ),
    ] = None,
) -> None:
    """Look inside a trained model: intermediate activations, filter patterns and class activation heatmaps.

    With crops and no view flags, every view is drawn: the activations and heatmaps of each crop, and the
    filter patterns of the model. Without crops: the filter patterns, or with [bold]--wrong[/] only the
    heatmaps of the wrong predictions. Heatmaps are Grad-CAM with Grad-CAM++ and Score-CAM beside it
    (r = how much each agrees with Grad-CAM). For a binary model, class [bold]cog[/] follows the gradient
    of -logit (the same map as 1 - A, without its vanishing gradient when the model is confident).

    Figures go to a new folder <run>/explain[-N]/ (for a model kept by compare or another .keras file,
    <dir>/explain/<name>[-N]/): <crop>.activations.png, <crop>.gradcam.png, filters.<layer>.png and
    wrong.gradcam.png.
    """
    from toonvision.data.images import ImageError, find_images, load_image
    from toonvision.data.taxonomy import TASKS
    from toonvision.interpretation.explainer import ExplainError
    from toonvision.learning.model_files import ModelError, locate_model

    ws = workspace(root)
    try:
        compare_methods = compare_methods_of(compare)
        source = locate_model(model_path, ws.root)
        crop_files = find_images(crops or [])
        if (activations or heatmaps) and not crop_files:
            raise ExplainError("--activations and --heatmaps need crops: give crop files or folders after the model")
        if task is not None and task not in TASKS:
            raise ExplainError(f"unknown task {task!r} (choose from {', '.join(TASKS)})")
        if not (activations or filters or heatmaps):
            # No view chosen: everything the inputs allow (--wrong alone means just that).
            activations = heatmaps = bool(crop_files)
            filters = bool(crop_files) or not wrong
        images = [load_image(p, pad=source.pad) for p in crop_files]  # all read first: a bad crop fails fast
        tensorflow()
        explainer = make_explainer(source, task, cam_layer)
        class_index = explainer.class_index(class_)
        layers = [explainer.layer(name, conv=True).name for name in layer] if layer else []
        layers = layers or [lyr.name for lyr in explainer.conv_layers]
    except (ExplainError, ModelError, ImageError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    methods = ["gradcam", *compare_methods]
    header(
        "explain",
        model=source.path,
        task=explainer.task,
        classes=len(explainer.classes),
        crops=len(crop_files),
        activations=activations,
        filters=filters,
        heatmaps=heatmaps,
        wrong=wrong,
        top=top,
        layers=",".join(layers) if filters else "-",
        **{"class": class_ if class_ is not None else "predicted"},
        cam_layer=explainer.cam_layer.name,
        methods=",".join(methods),
        steps=steps,
    )
    run_explanations(
        ws,
        source,
        explainer,
        list(zip(crop_files, images, strict=True)),
        activations=activations,
        heatmaps=heatmaps,
        filter_layers=layers if filters else [],
        wrong_top=top if wrong else 0,
        class_index=class_index,
        methods=methods,
        steps=steps,
    )


def make_explainer(source: ModelSource, task: str | None = None, cam_layer: str | None = None) -> Explainer:
    from toonvision.interpretation.explainer import Explainer
    from toonvision.learning.model_files import load_keras_model

    if source.is_detector:
        raise fail(
            f"{source.path} is a detector, not a classifier: explain shows what a classifier looks at in a crop "
            "(give a binary, suit, name or animal run)"
        )
    model = load_keras_model(source.keras_file())
    return Explainer(model, task or source.task, cam_layer)


def run_explanations(
    ws: Workspace,
    source: ModelSource,
    explainer: Explainer,
    crops: Sequence[tuple[Path, np.ndarray]],
    *,
    activations: bool = False,
    heatmaps: bool = False,
    filter_layers: Sequence[str] = (),
    wrong_top: int = 0,
    class_index: int | None = None,
    methods: Sequence[str] = ("gradcam", "gradcam++", "scorecam"),
    steps: int = 40,
    into: Path | None = None,
) -> Path:
    """Draw the chosen views into a new explain folder of the model (or ``into`` an existing one), with
    progress bars; returns the folder."""
    from toonvision.figures.interpretation import (
        explain_crop,
        explain_filters,
        explain_wrong,
        figure_name,
        filter_steps,
    )
    from toonvision.interpretation.explainer import ExplainError, wrong_predictions

    out = into or source.results_dir("explain", ws.root)
    written: list[Path] = []
    taken: set[str] = set()
    with progress() as bar:
        if crops and (activations or heatmaps):
            task_id = bar.add_task("crops", total=len(crops))
            for path, image in crops:
                written += explain_crop(
                    explainer,
                    image,
                    path.name,
                    figure_name(path.stem, taken),
                    out,
                    activations=activations,
                    heatmaps=heatmaps,
                    class_index=class_index,
                    methods=methods,
                )
                bar.advance(task_id)
        for name in filter_layers:
            task_id = bar.add_task(f"filter patterns {name}", total=filter_steps(explainer, name, steps))
            written.append(
                explain_filters(explainer, name, out, steps=steps, on_step=lambda _i, t=task_id: bar.advance(t))
            )
        if wrong_top:
            task_id = bar.add_task("wrong predictions", total=None)
            try:
                items, n_wrong, n_all = wrong_predictions(explainer, ws, wrong_top, pad=source.pad, split=source.split)
            except ExplainError as exc:
                raise fail(str(exc)) from None
            figure = explain_wrong(explainer, items, (n_wrong, n_all), out, class_index=class_index, methods=methods)
            written.append(figure.path)
            bar.update(task_id, total=1, completed=1)
            console.print(f"{figure.wrong} wrong predictions over {figure.total} crops")
    for p in written:
        console.print(f"wrote {p}")
    return out


def compare_methods_of(compare: Sequence[str] | None) -> list[str]:
    """The methods ``--compare`` names, beside Grad-CAM."""
    from toonvision.interpretation.cam import CAM_METHODS
    from toonvision.interpretation.explainer import ExplainError

    if compare is None:
        return ["gradcam++", "scorecam"]
    chosen: list[str] = []
    for value in compare:
        for item in str(value).split(","):
            item = item.strip().lower()
            if item in ("", "none"):
                continue
            if item not in CAM_METHODS[1:]:
                raise ExplainError(f"unknown --compare method {item!r} (choose from gradcam++, scorecam, none)")
            if item not in chosen:
                chosen.append(item)
    return chosen
