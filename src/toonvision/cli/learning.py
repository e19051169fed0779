"""Verbs of the learning stage: models, train, optimizers, compare, evaluate."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from toonvision.cli.common import (
    Epochs,
    Precision,
    Root,
    Task,
    console,
    epoch_bar,
    fail,
    header,
    progress,
    shown_precision,
    tensorflow,
    unreviewed_left_out,
    warn,
    workspace,
)
from toonvision.learning.tasks import DETECT, TASKS, inapplicable, task_help, task_spec, tasks_taking

if TYPE_CHECKING:
    from toonvision.data.workspace import Workspace
    from toonvision.learning.detector_training import DetectConfig
    from toonvision.learning.experiments import Experiment
    from toonvision.learning.model_files import ModelSource
    from toonvision.learning.training import TrainConfig

Model = Annotated[str, typer.Option(help="Architecture (see 'toonvision models').")]


def models(
    name: Annotated[str | None, typer.Argument(help="Show this architecture: its summary and a diagram.")] = None,
    task: Task = "binary",
    root: Root = Path("img"),
) -> None:
    """List the registered architectures with their parameter counts, or show one.

    With NAME: print the Keras summary and write an architecture diagram into a new folder
    <root>/runs/models/<name>-<task>[-N]/ (Keras' plot_model when Graphviz is installed, otherwise
    ToonVision's own layered drawing).
    """
    tensorflow()
    from toonvision.data.files import new_run_dir
    from toonvision.figures.architecture import draw_architecture
    from toonvision.learning.detection import DETECTORS, create_detector
    from toonvision.learning.models import ALIASES, REGISTRY, architecture, create_model

    if name is None:
        classifier_tasks = [t for t, spec in TASKS.items() if not spec.is_detector]
        table = Table("model", *classifier_tasks, "what it is", title="Architectures")
        for arch in REGISTRY.values():
            counts = [f"{create_model(arch.name, t).count_params():,}" for t in classifier_tasks]
            table.add_row(arch.name, *counts, arch.summary)
        console.print(table)
        console.print("Earlier names still work: " + ", ".join(f"{a} = {n}" for a, n in ALIASES.items()))
        detectors = Table("detector", "parameters (toon + 4 suits)", "what it is", title=f"Detectors (--task {DETECT})")
        for det in DETECTORS.values():
            detectors.add_row(det.name, f"{create_detector(det.name, 5).count_params():,}", det.summary)
        console.print(detectors)
        return
    try:
        if name in DETECTORS:
            arch, task = DETECTORS[name], DETECT
            model = create_detector(name, 5)
        else:
            arch = architecture(name)
            model = create_model(arch.name, task)
    except ValueError as exc:
        raise fail(str(exc)) from None
    model.summary(print_fn=lambda line, **_: console.print(line, highlight=False, markup=False))
    out = new_run_dir(workspace(root).runs / "models", f"{arch.name}-{task}")
    console.print(f"wrote {draw_architecture(model, out / 'architecture.png')}")


FROM_TASK = "from the task"


def _per_task(field: str) -> str:
    """A default as each task has it, for --help: "binary, suit, name, animal: 32; detect: 16"."""
    by_value: dict[object, list[str]] = {}
    for spec in TASKS.values():
        by_value.setdefault(getattr(spec.defaults, field), []).append(spec.name)
    shown = {True: "on", False: "off"}
    return "; ".join(f"{', '.join(names)}: {shown.get(value, value)}" for value, names in by_value.items())


def _takers(option: str) -> str:
    return ", ".join(tasks_taking(option)) + ": "


TrainTask = Annotated[str, typer.Option("--task", help=task_help())]


def train(
    root: Root = Path("img"),
    task: TrainTask = "binary",
    model: Annotated[
        str | None,
        typer.Option(help="Architecture (see 'toonvision models').", show_default=_per_task("model")),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs to train.", show_default=_per_task("epochs"))] = None,
    lr: Annotated[
        float | None,
        typer.Option(
            help="Learning rate (detect: the peak of its warm-up and cosine decay).", show_default=_per_task("lr")
        ),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Crops (detect: screenshots) per batch.", show_default=_per_task("batch_size"))
    ] = None,
    augment: Annotated[
        bool | None,
        typer.Option(
            "--augment/--no-augment",
            help="Augment the training images: crops flipped, rotated (0.075) and zoomed (0.2); screenshots "
            "mirrored, scaled (0.6-1.4) and shifted.",
            show_default=_per_task("augment"),
        ),
    ] = None,
    optimizer: Annotated[
        str | None,
        typer.Option(
            help=_takers("optimizer") + "sgd, adam, rmsprop, adadelta, adagrad, adamax, nadam or ftrl.",
            show_default=FROM_TASK,
        ),
    ] = None,
    dropout: Annotated[
        float | None,
        typer.Option(
            help=_takers("dropout") + "dropout rate before the head (the article's: 0.9).", show_default=FROM_TASK
        ),
    ] = None,
    decay: Annotated[
        float | None,
        typer.Option(
            help=_takers("decay") + "inverse-time decay per step: lr / (1 + decay * step).", show_default=FROM_TASK
        ),
    ] = None,
    lr_step_every: Annotated[
        int | None,
        typer.Option(
            help=_takers("lr_step_every") + "step schedule: multiply lr by --lr-step-factor every N epochs.",
            show_default=FROM_TASK,
        ),
    ] = None,
    lr_step_factor: Annotated[
        float | None,
        typer.Option(help=_takers("lr_step_factor") + "factor of the step schedule.", show_default=FROM_TASK),
    ] = None,
    class_weight: Annotated[
        str | None,
        typer.Option(help=_takers("class_weight") + "'balanced' weighs classes inversely to their frequency."),
    ] = None,
    pad: Annotated[
        bool | None,
        typer.Option(
            "--pad", help=_takers("pad") + "pad crops to 600x200 keeping their aspect ratio instead of stretching."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of weights, shuffling and augmentation.")] = 0,
    precision: Precision = "auto",
    split_seed: Annotated[
        int | None,
        typer.Option(
            help="Split in memory with this seed instead of using the data/ folders (detect: default --seed)."
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="Name of the run: its folder is runs/train/<task>-<name>[-N] (detect: detect-<classes>[-N] unless "
            "named).",
            show_default=False,
        ),
    ] = None,
    classes: Annotated[
        str | None,
        typer.Option(
            help=_takers("classes") + "the classes to find: suit (toon + the 4 suits), kind (cog, toon) or label "
            "(every label of raw/data/predefined_classes.txt).",
            show_default=FROM_TASK,
        ),
    ] = None,
    imgsz: Annotated[
        int | None,
        typer.Option(
            help=_takers("imgsz") + "input width in pixels (a multiple of 32); the height follows a 16:9 "
            "screenshot. 640 halves a 1280x720 screenshot.",
            show_default=FROM_TASK,
        ),
    ] = None,
    mosaic: Annotated[
        float | None,
        typer.Option(
            help=_takers("mosaic") + "the share of augmented screenshots made of four at half size meeting at a "
            "random point (YOLO's mosaic): Toons and Cogs as small as far-away ones, four screenshots' worth in one.",
            show_default="0",
        ),
    ] = None,
    plain_epochs: Annotated[
        int | None,
        typer.Option(
            help=_takers("plain_epochs") + "train the last N epochs on the screenshots as they are, without "
            "augmentation (Ultralytics' close_mosaic): the boxes it learns last are the ones it will be shown.",
            show_default="0",
        ),
    ] = None,
    ema: Annotated[
        float | None,
        typer.Option(
            help=_takers("ema") + "keep an exponential moving average of the weights with this momentum (e.g. "
            "0.995) and save it instead of the last weights: it averages out the last steps' noise.",
            show_default="0, none",
        ),
    ] = None,
    resume: Annotated[
        bool | None,
        typer.Option(
            "--resume",
            help=_takers("resume") + "continue the newest detector run that was stopped before it finished, with "
            "the settings it was started with.",
        ),
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option(
            help="Start from trained weights instead of random ones (fine-tuning): 'pretrained' (the model "
            "ToonVision ships for the task), a run folder or a .keras file. The architecture (and a detector's "
            "classes) follow the starting model unless given.",
            show_default=False,
        ),
    ] = None,
    include_unreviewed: Annotated[
        bool | None,
        typer.Option(
            "--include-unreviewed",
            help=_takers("include_unreviewed")
            + "also learn from pre-annotations ('toonvision annotate') nobody has reviewed yet.",
        ),
    ] = None,
) -> None:
    """Train one model and write its run folder under <root>/runs/train/.

    A classifier (--task binary, suit, name or animal) learns from the crops: its run folder holds model.keras,
    history.json, config.json, metrics.json (test loss and accuracy), split.json and history.png (accuracy and
    loss, training and validation). Training uses the split in data/{train,validate,test} when there is one,
    else a 60/20/20 split planned from --split-seed.

    A detector (--task detect) learns from the labelled screenshots in raw/screenshots and raw/processed (any
    labelImg format), split 60/20/20 by screenshot from --split-seed (default --seed); its run folder is
    runs/train/detect-<classes>[-N]. A stopped run continues from its last finished epoch with --resume.
    Pre-annotations nobody has reviewed are left out (and counted) unless --include-unreviewed.

    --weights pretrained fine-tunes the model ToonVision ships for the task on the workspace's data; a run
    folder or a .keras file of the same task fine-tunes that one.

    Options left out take the task's defaults; an option of another task is refused.
    """
    options = {
        "model": model,
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "augment": augment,
        "optimizer": optimizer,
        "dropout": dropout,
        "decay": decay,
        "lr_step_every": lr_step_every,
        "lr_step_factor": lr_step_factor,
        "class_weight": class_weight,
        "pad": pad,
        "seed": seed,
        "precision": precision,
        "split_seed": split_seed,
        "name": name,
        "classes": classes,
        "imgsz": imgsz,
        "mosaic": mosaic,
        "plain_epochs": plain_epochs,
        "ema": ema,
        "resume": resume,
        "include_unreviewed": include_unreviewed,
        "weights": weights,
    }
    given = {k: v for k, v in options.items() if v is not None}
    try:
        spec = task_spec(task)
    except ValueError as exc:
        raise fail(str(exc)) from None
    wrong = inapplicable(task, given)
    if wrong:
        raise fail(wrong)
    split_seed = given.pop("split_seed", None)
    if "weights" in given:
        given.update(starting_point_settings(task, given, root))
    settings = {**asdict(spec.defaults), "name": spec.run_name, **given}
    if spec.is_detector:
        resume = settings.pop("resume", False)
        run_detector_training(workspace(root), detector_config(settings), split_seed=split_seed, resume=resume)
        return
    cfg = classifier_config(task, settings)
    shown = {k: v for k, v in cfg.to_dict().items() if k not in ("name", "precision")}
    header("train", root=root, **shown, precision=shown_precision(cfg.precision), split_seed=split_seed)
    run_training(workspace(root), cfg, split_seed=split_seed)


def starting_point_settings(task: str, given: dict[str, Any], root: Path) -> dict[str, Any]:
    """What --weights sets: the .keras file a run starts from, and the architecture (a detector's classes too)
    of that model where the command does not say; exits when it cannot start this run."""
    from toonvision.data.detection import scheme_classes
    from toonvision.learning.model_files import ModelError
    from toonvision.learning.zoo import check_recipe, fine_tune_lr, starting_point

    if given.get("resume"):
        raise fail("--weights starts a new run and --resume continues a stopped one: give one of them")
    try:
        source = starting_point(given["weights"], task, root)
        keras_file = source.keras_file()
    except ModelError as exc:
        raise fail(str(exc)) from None
    settings: dict[str, Any] = {"weights": str(keras_file)}
    if "lr" not in given:
        settings["lr"] = fine_tune_lr(task)
    for option in ("model", "classes") if task == DETECT else ("model",):
        if option not in given and source.config.get(option) is not None:
            settings[option] = source.config[option]
    architecture = given.get("model", settings.get("model"))
    if architecture is not None and task != DETECT:
        from toonvision.learning.models import architecture as registered

        try:
            architecture = registered(architecture).name  # an earlier name (seed, padded) is the same model
        except ValueError as exc:
            raise fail(str(exc)) from None
    classes = None
    if task == DETECT and source.config.get("classes") not in (None, "label"):
        classes = scheme_classes(given.get("classes", settings.get("classes", "suit")))
    try:
        if architecture is not None:
            check_recipe(source, architecture, classes)
    except ModelError as exc:
        raise fail(str(exc)) from None
    return settings


def classifier_config(task: str, settings: dict[str, Any]) -> TrainConfig:
    """The validated configuration of a classifier run from ``train``'s settings; exits with the error."""
    from toonvision.learning.training import TrainConfig

    try:
        return TrainConfig(task=task, **settings).validate()
    except ValueError as exc:
        raise fail(str(exc)) from None


def detector_config(settings: dict[str, Any]) -> DetectConfig:
    """The validated configuration of a detector run from ``train``'s settings (--imgsz: the input width);
    exits with the error."""
    from toonvision.learning.detector_training import DetectConfig

    settings = dict(settings)
    width = settings.pop("imgsz", DetectConfig().input_width)
    try:
        return DetectConfig.for_width(width, **settings).validate()
    except ValueError as exc:
        raise fail(str(exc)) from None


def run_detector_training(
    ws: Workspace, cfg: DetectConfig, *, split_seed: int | None = None, resume: bool = False
) -> Path:
    """Train a detector with a progress bar per epoch (with ``resume``: continue the newest stopped run); returns
    the run folder (runs/train/detect-<classes>, or detect-<name> for another name)."""
    from toonvision.data.detection import DetectionDataError
    from toonvision.learning.detector_training import (
        ema_start_share,
        find_unfinished_run,
        recorded_config,
        train_detector,
    )

    previous = find_unfinished_run(ws.runs / "train") if resume else None
    if resume and previous is None:
        raise fail(f"no stopped detector run to resume under {ws.runs / 'train'}")
    if previous is not None:
        cfg = recorded_config(previous)  # the stopped run's settings win over the command's: shown as they are
    settings = {k: v for k, v in cfg.to_dict().items() if k not in ("name", "precision", "input_height", "input_width")}
    header(
        "train",
        root=ws.root,
        **settings,
        input=f"{cfg.input_width}x{cfg.input_height}",
        precision=shown_precision(cfg.precision),
        split_seed=split_seed,
        **({"resume": previous} if previous else {}),
    )
    tensorflow()
    from toonvision.figures.training import plot_history
    from toonvision.learning.backend import configure_threads

    configure_threads(None)
    with progress() as bar:
        task_id = bar.add_task("detect: loading screenshots", total=cfg.epochs)

        def started(data, counts: dict[str, int], first_epoch: int) -> None:
            bar.update(task_id, completed=first_epoch, description=f"detect: epoch {first_epoch + 1}")
            for image, reason in data.skipped:
                warn(f"skipped {image}: {reason}")
            for image, what in data.warnings[:20]:
                warn(f"{image}: {what}")
            if len(data.warnings) > 20:
                warn(f"... and {len(data.warnings) - 20} more notes on boxes left out")
            unknown = data.unknown_labels_note()
            if unknown:
                warn(unknown)
            unreviewed_left_out(len(data.unreviewed))
            kept, steps = ema_start_share(cfg, counts["train"])
            if kept > 0.01:
                warn(
                    f"--ema {cfg.ema:g}: after this run's {steps} steps the saved average still holds {kept:.0%} of "
                    f"the random starting weights; a momentum of {0.01 ** (1 / steps):.3f} or less suits a run this "
                    "short"
                )
            boxes = ", ".join(f"{k} {v}" for k, v in data.box_counts().items())
            console.print(
                f"screenshots: train {counts['train']}, validate {counts['validate']}, test {counts['test']}; "
                f"boxes: {boxes}"
            )

        try:
            run = train_detector(
                ws, cfg, split_seed=split_seed, resume=previous, on_epoch=epoch_bar(bar, task_id), on_start=started
            )
        except (DetectionDataError, ValueError) as exc:
            raise fail(str(exc)) from None
    plot_history(run.history, run.out / "history.png", f"detect / {cfg.classes} ({cfg.model})")
    if run.resumed_from:
        console.print(f"resumed at epoch {run.resumed_from + 1}")
    console.print(f"results in {run.out}; judge it with: toonvision evaluate {run.out}")
    return run.out


def run_training(ws: Workspace, cfg: TrainConfig, *, split_seed: int | None = None) -> Path:
    """One training run with a progress bar per epoch and its history figure; returns the run folder."""
    tensorflow()
    from toonvision.figures.training import plot_history
    from toonvision.learning.backend import configure_threads
    from toonvision.learning.training import train_run

    configure_threads(None)
    with progress() as bar:
        task_id = bar.add_task(f"{cfg.task}: loading crops", total=cfg.epochs)
        try:
            out, result = train_run(ws, cfg, split_seed=split_seed, on_epoch=epoch_bar(bar, task_id))
        except ValueError as exc:
            raise fail(str(exc)) from None
    plot_history(result.history, out / "history.png", f"{cfg.task} / {cfg.name} ({cfg.model})")
    if result.test:
        console.print(
            f"{cfg.task}: test accuracy {result.test['accuracy']:.4f}, test loss {result.test['loss']:.4f} "
            f"on {result.test['n']} crops"
        )
    console.print(f"results in {out}")
    return out


def optimizers(
    root: Root = Path("img"),
    task: Task = "binary",
    model: Model = "small_convnet",
    epochs: Epochs = 20,
    lr: Annotated[float, typer.Option(help="The same static learning rate for every optimizer.")] = 1e-3,
    only: Annotated[list[str] | None, typer.Option(help="Compare only these optimizers (repeatable).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split and of every model.")] = 0,
) -> None:
    """The spec's optimizer comparison: the same model, data and learning rate trained with SGD, Adam,
    RMSprop, Adadelta, Adagrad, Adamax, Nadam and Ftrl; one plot of all curves.

    Writes <root>/runs/optimizers/<task>-<model>[-N]/optimizers.png and histories.json.
    """
    from toonvision.learning.training import OPTIMIZERS

    names = [o.lower() for o in (only or OPTIMIZERS)]
    for o in names:
        if o not in OPTIMIZERS:
            raise fail(f"unknown optimizer {o!r} (choose from {', '.join(OPTIMIZERS)})")
    header("optimizers", root=root, task=task, model=model, epochs=epochs, lr=lr, seed=seed, optimizers=",".join(names))
    tensorflow()
    from toonvision.figures.training import plot_optimizers
    from toonvision.learning.training import compare_optimizers

    with progress() as bar:
        overall = bar.add_task("optimizers", total=len(names))

        def done(optimizer: str, result) -> None:
            val = result.history.get("val_accuracy", [0])[-1]
            bar.update(overall, advance=1, description=f"{optimizer}: val_acc {val:.3f}")

        try:
            found = compare_optimizers(
                workspace(root), names, task=task, model=model, epochs=epochs, lr=lr, seed=seed, on_done=done
            )
        except ValueError as exc:
            raise fail(f"{exc}: run 'toonvision extract' first") from None
    path = plot_optimizers(
        found.histories, found.out / "optimizers.png", f"Optimizers on {task}/{model}, lr {lr:g}, {epochs} epochs"
    )
    table = Table("optimizer", "final val acc", "final val loss", "test acc", title="Optimizers")
    for o, h in found.histories.items():
        table.add_row(
            o,
            f"{h.get('val_accuracy', [float('nan')])[-1]:.3f}",
            f"{h.get('val_loss', [float('nan')])[-1]:.3f}",
            f"{found.test[o].get('accuracy', float('nan')):.3f}",
        )
    console.print(table)
    console.print(f"wrote {path}")


def compare(
    root: Root = Path("img"),
    config: Annotated[
        list[str] | None,
        typer.Option(
            "--config",
            help="Configurations to compare (repeatable): baseline, article (what the article's code ran: dropout "
            "0.9 and decay, its augmentation never applied), optimized (the same with the augmentation), or "
            "<recipe>:<model> such as optimized:gap_convnet. Default: baseline and article.",
        ),
    ] = None,
    task: Task = "binary",
    runs: Annotated[int, typer.Option(help="Re-split runs (the spec: 200).")] = 3,
    epochs: Epochs = 25,
    seed: Annotated[int, typer.Option(help="Run r splits with seed + r and trains with it.")] = 0,
    folds: Annotated[int, typer.Option(help="Stratified k-fold cross-validation instead of random re-splits.")] = 0,
    class_weight: Annotated[str | None, typer.Option(help="'balanced' for every configuration.")] = None,
    pad: Annotated[bool, typer.Option(help="Pad crops instead of stretching them.")] = False,
    precision: Precision = "auto",
    workers: Annotated[int, typer.Option(help="Parallel training workers (0: one per core of the Ray cluster).")] = 0,
    threads: Annotated[int, typer.Option(help="CPU threads per worker.")] = 1,
    address: Annotated[
        str | None,
        typer.Option(help="Ray cluster to use ('auto', host:port or ray://host:10001); default: a private local one."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Experiment name; the same name resumes it.")] = None,
) -> None:
    """The spec's baseline comparison: re-split, train every configuration, evaluate, N times; in parallel.

    Results go to <root>/runs/compare/<name>/: one JSON per run and configuration (so a killed
    comparison resumes from the runs already finished), best/<config>.keras (kept only when it beats the
    best so far on both test loss and accuracy), history.png (every run faint, the mean bold),
    boxplots.png (test accuracy and loss), summary.md/json (median, quartiles, min/max, and a Mann-Whitney U
    test with a bootstrap interval for each pair).

    A run whose worker dies (killed, out of memory) is retried by Ray; one that still fails is recorded as
    failed in its result file, the other runs finish, the summary lists it and leaves it out of the statistics,
    and the command exits with 1; the same command retries it. Without --address, compare starts a private Ray
    even where another one runs; with it, compare gives up within about 30 s where no cluster answers (exit 2).
    """
    from dataclasses import replace

    from toonvision.learning.experiments import Experiment
    from toonvision.learning.training import recipe

    try:
        configs = tuple(
            recipe(n, epochs=epochs, task=task, class_weight=class_weight, pad=pad, precision=precision).validate()
            for n in (config or ["baseline", "article"])
        )
    except ValueError as exc:
        raise fail(str(exc)) from None
    configs = tuple(replace(c, name=c.name.replace(":", "-")) for c in configs)
    exp_name = name or f"{task}-{'-vs-'.join(c.name for c in configs)}"
    exp = Experiment(name=exp_name, task=task, configs=configs, runs=runs, seed=seed, folds=folds, pad=pad)
    header(
        "compare",
        root=root,
        task=task,
        configs=",".join(c.name for c in configs),
        runs=folds or runs,
        epochs=epochs,
        seed=seed,
        folds=folds,
        precision=shown_precision(precision),
        workers=workers or "auto",
        threads=threads,
        address=address or "local",
        name=exp_name,
    )
    run_comparison(workspace(root), exp, workers=workers, threads=threads, address=address)


def run_comparison(
    ws: Workspace, exp: Experiment, *, workers: int = 0, threads: int = 1, address: str | None = None
) -> Path:
    """An experiment with a progress bar, its figures and summary tables; returns its folder. Exits with code 1
    after writing everything when a run failed (the same command retries it), 2 when Ray cannot be reached."""
    from contextlib import ExitStack

    from toonvision.learning.cluster import RayUnavailable, ray_session
    from toonvision.learning.experiments import FALLBACK

    with ExitStack() as joined:
        if address:
            # The cluster is joined first (run_experiment then uses the Ray of this process): where none answers,
            # compare says so before seconds of loading TensorFlow and the crops.
            try:
                joined.enter_context(ray_session(address, fallback=FALLBACK))
            except RayUnavailable as exc:
                raise fail(str(exc)) from None
        return _run_comparison(ws, exp, workers=workers, threads=threads, address=address)


def _run_comparison(ws: Workspace, exp: Experiment, *, workers: int, threads: int, address: str | None) -> Path:
    # No TensorFlow here: the Ray workers train and send back each model as a .keras archive.
    from rich.text import Text

    from toonvision.figures.training import draw_experiment
    from toonvision.learning.cluster import RayUnavailable
    from toonvision.learning.experiments import run_experiment, write_summary

    out = ws.runs / "compare" / exp.name
    with progress() as bar:
        task_id = bar.add_task("starting Ray", total=None)

        def on_start(total: int, done: int) -> None:
            bar.update(task_id, total=total, completed=done, description="training")

        def on_result(result, messages) -> None:
            shown = "failed" if result.failed else f"acc {result.test.get('accuracy', 0):.3f}"
            bar.update(task_id, advance=1, description=f"run {result.run} {result.config}: {shown}")
            if result.failed:
                bar.console.print(Text(f"run {result.run} {result.config} failed: {result.failed}", style="yellow"))
            for m in messages:
                bar.console.print(m)

        try:
            results = run_experiment(
                ws, exp, out, workers=workers, threads=threads, address=address, on_start=on_start, on_result=on_result
            )
        except (ValueError, RayUnavailable) as exc:
            raise fail(str(exc)) from None
    names = [c.name for c in exp.configs]
    finished = [r for r in results if not r.failed]
    if finished:
        draw_experiment(out, names, finished, exp.task)
    summary = write_summary(out, exp, results)
    print_summary(summary)
    console.print(f"results in {out}")
    if summary["failed"]:
        raise typer.Exit(1)
    return out


def print_summary(summary: dict[str, Any]) -> None:
    """The comparison's tables: test metrics per configuration, the test of every pair, and a warning when runs
    failed."""
    table = Table("model", "metric", "n", "median", "q1", "q3", "min", "max", title="Test metrics")
    for model_name, metrics in summary["summary"].items():
        for metric, st in metrics.items():
            table.add_row(
                model_name, metric, str(st["n"]), *(f"{st[k]:.4f}" for k in ("median", "q1", "q3", "min", "max"))
            )
    console.print(table)
    tests = Table(
        "a", "b", "metric", "median b - a", "95% interval", "p-value", title="Is the difference real? (Mann-Whitney U)"
    )
    for t in summary["tests"]:
        if "p_value" in t:
            tests.add_row(
                t["a"],
                t["b"],
                t["metric"],
                f"{t['median_diff']:+.4f}",
                f"[{t['ci95_low']:+.4f}, {t['ci95_high']:+.4f}]",
                f"{t['p_value']:.3g}",
            )
        else:
            tests.add_row(t["a"], t["b"], t["metric"], "(needs 2+ runs each)", "", "")
    console.print(tests)
    failed = summary.get("failed", [])
    if failed:
        which = ", ".join(f"run {f['run']} {f['config']}" for f in failed)
        warn(
            f"{len(failed)} run{'s' if len(failed) > 1 else ''} failed ({which}) and "
            f"{'are' if len(failed) > 1 else 'is'} left out of the statistics; summary.md says why; "
            "run the same command again to retry"
        )


def evaluate(
    model_path: Annotated[
        Path,
        typer.Argument(
            help="A run folder (runs/train/<run>, or just <run>), its model.keras, or a model kept by compare "
            "(runs/compare/<exp>/best/<config>.keras)."
        ),
    ],
    root: Root = Path("img"),
    task: Annotated[str | None, typer.Option(help="Task of a bare .keras file (read from a run folder).")] = None,
    top: Annotated[
        int, typer.Option(help="How many wrong predictions to show in the grid (a detector: worst screenshots, <= 12).")
    ] = 32,
    screenshots: Annotated[
        list[Path] | None,
        typer.Option(
            help="A detector: judge it on this folder of labelled screenshots (repeatable) instead of its run's "
            "test split."
        ),
    ] = None,
) -> None:
    """Test metrics, confusion matrix, per-class precision/recall, and wrong predictions ranked by error.

    The crops are fitted as the model was trained (padded or stretched) and the test split is the run's
    own (split.json, or <config>.split.json beside a kept model); a bare model is judged on the data/test
    folder. Wrong predictions are ranked over the whole dataset, as in the spec: each crop titled with its
    true label, the error E and the model output A. Writes a new folder <run>/evaluate[-N]/ (for a model
    kept by 'compare': best/evaluate/<config>[-N]/).

    A detector (a 'train --task detect' run, its model.keras or its model.onnx) is judged with COCO's AP
    (pycocotools): AP50, AP50:95, per class and per box height at 720 px (small < 60, medium 60-150, large
    > 150), on its run's test screenshots or on --screenshots; it writes evaluation.json, pr_curves.png (one
    curve per class at IoU 0.5) and worst_screenshots.png (true boxes solid, detections dashed, misses and
    false positives marked).
    """
    from toonvision.learning.model_files import ModelError, locate_model

    ws = workspace(root)
    try:
        source = locate_model(model_path, ws.root)
    except ModelError as exc:
        raise fail(str(exc)) from None
    from toonvision.serving.loading import finds_boxes

    if finds_boxes(source):
        if task is not None:
            raise fail("--task goes with a bare classifier file; a detector's task is detect")
        run_detector_evaluation(ws, source, screenshots=screenshots, top=min(top, 12))
        return
    if screenshots:
        raise fail("--screenshots goes with a detector; a classifier is judged on crops")
    run_evaluation(ws, source, task=task, top=top)


def run_detector_evaluation(
    ws: Workspace, source: ModelSource, *, screenshots: list[Path] | None = None, top: int = 9
) -> Path:
    """Judge a detector with COCO's AP (serving.detector_evaluation), print its tables and draw its figures;
    returns the folder of evaluation.json."""
    from toonvision.data.detection import DetectionDataError
    from toonvision.learning.detection_metrics import bucket_text
    from toonvision.learning.model_files import ModelError
    from toonvision.serving.detector_evaluation import EVAL_THRESHOLD, evaluate_detector, evaluation_set

    if not source.is_onnx:
        tensorflow()
    from toonvision.figures.detection import plot_pr_curves, plot_worst_screenshots
    from toonvision.serving.detector import Detector

    try:
        detector = Detector.load(source.path, threshold=EVAL_THRESHOLD)
        data, judged = evaluation_set(source, detector, ws, screenshots)
    except (ModelError, DetectionDataError, ValueError) as exc:
        raise fail(str(exc)) from None
    header(
        "evaluate",
        model=source.path,
        task=DETECT,
        engine=detector.engine,
        classes=",".join(detector.classes),
        screenshots=f"{len(data.truths)} ({judged})",
    )
    for image, reason in data.skipped:
        warn(f"skipped {image}: {reason}")
    if data.unreviewed:
        warn(f"{len(data.unreviewed)} unreviewed pre-annotations left out: they are no truth to measure against")
    unknown = data.unknown_labels_note()
    if unknown:
        warn(unknown)
    with progress() as bar:
        task_id = bar.add_task("detecting", total=len(data.truths))
        result = evaluate_detector(
            source, detector, data, judged, top=top, on_batch=lambda n: bar.advance(task_id, n), root=ws.root
        )
    metrics = result.metrics
    paths = [result.report, plot_pr_curves(metrics, result.out / "pr_curves.png", f"{source.name}: {judged}")]
    if result.worst:
        paths.append(plot_worst_screenshots(result.worst, detector.classes, result.out / "worst_screenshots.png"))

    def ap(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    table = Table("class", "boxes", "AP50", "AP50:95", "recall@0.5", title="Per class")
    for c in metrics.per_class:
        table.add_row(c.name, str(c.truths), ap(c.ap50), ap(c.ap), ap(c.recall50))
    table.add_row(
        "[bold]all[/bold]",
        str(sum(c.truths for c in metrics.per_class)),
        ap(metrics.ap50),
        ap(metrics.ap),
        ap(metrics.recall50),
    )
    console.print(table)
    sizes = Table("box height at 720 px", "boxes", "AP50", "AP50:95", title="Per size")
    for bucket, values in metrics.by_size.items():
        sizes.add_row(
            f"{bucket} ({bucket_text(bucket)})",
            str(values.get("truths", "")),
            ap(values.get("ap50")),
            ap(values.get("ap50_95")),
        )
    console.print(sizes)
    console.print(
        f"AP50 {ap(metrics.ap50)}, AP50:95 {ap(metrics.ap)} on {len(data.truths)} screenshots; at score "
        f">= {metrics.score_threshold}: {metrics.true_positives} found, {metrics.misses} missed, "
        f"{metrics.false_positives} false positives"
    )
    for p in paths:
        console.print(f"wrote {p}")
    return result.out


def run_evaluation(ws: Workspace, source: ModelSource, *, task: str | None = None, top: int = 32) -> Path:
    """Evaluate a located classifier (learning.evaluation), print its tables and draw its figures; returns the
    folder of evaluation.json."""
    tensorflow()
    from toonvision.figures.evaluation import draw_evaluation
    from toonvision.learning.evaluation import evaluate_classifier
    from toonvision.learning.model_files import ModelError, load_classifier

    try:
        model, task = load_classifier(source, task)  # an .onnx export: judged through the .keras it came from
    except ModelError as exc:
        raise fail(str(exc)) from None
    header("evaluate", model=source.keras_file(), task=task, pad=source.pad, split=_split_source(source), top=top)
    try:
        result = evaluate_classifier(ws, source, model, task)
    except ValueError as exc:
        raise fail(f"{exc} in {ws.root}: run 'toonvision extract' first") from None
    ev = result.evaluation
    paths = [result.report, *draw_evaluation(ev, result.data, result.out, top=top).values()]
    if ev.test_metrics:
        console.print(
            f"test accuracy {ev.test_metrics['accuracy']:.4f}, loss {ev.test_metrics['loss']:.4f} "
            f"on {ev.test_metrics['n']} crops"
        )
    report = ev.report(ev.judged_split)
    table = Table("class", "precision", "recall", "f1", "support", title="Per class (test split)")
    for cls in ev.classes:
        r = report.get(cls, {})
        if r.get("support"):
            table.add_row(
                cls, f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1-score']:.3f}", str(int(r["support"]))
            )
    console.print(table)
    console.print(f"{len(ev.wrong())} wrong predictions over {len(ev.predictions)} crops")
    for p in paths:
        console.print(f"wrote {p}")
    return result.out


def _split_source(source: ModelSource) -> str:
    return "the run's own" if source.split is not None else "the data/ folders"
