"""The ``toonvision`` command: one entry point, one verb per job.

Only light modules are imported at start-up; each verb imports what it needs (TensorFlow, Panda3D, Ray,
matplotlib) when it runs, so ``toonvision --help`` and the data verbs start quickly.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="toonvision",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    help=(
        "Teach a machine to see in ToonTown: labelled screenshots -> crops -> splits -> classifiers.\n\n"
        "Every verb works in a workspace folder ([bold]--root[/], default [bold]img[/], or $TOONVISION_ROOT) "
        "laid out as the spec describes: raw/screenshots, raw/processed, raw/data/predefined_classes.txt, "
        "unsorted/{cog,toon}, data/{train,validate,test}/{cog,toon}."
    ),
)
console = Console()
err = Console(stderr=True)

Root = Annotated[
    Path,
    typer.Option("--root", envvar="TOONVISION_ROOT", help="Workspace root folder.", show_default=True),
]


def _workspace(root: Path):
    from toonvision.workspace import Workspace

    return Workspace(root)


def header(verb: str, **settings: object) -> None:
    """Ultralytics-style run header: every setting as key=value."""
    parts = " ".join(f"[cyan]{k}[/]={v}" for k, v in settings.items())
    console.print(f"[bold]toonvision {verb}[/]: {parts}", highlight=False)


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


# --- labels ---


@app.command()
def labels(
    root: Root = Path("img"),
    force: Annotated[bool, typer.Option(help="Rewrite the file even if it exists (your own labels are lost).")] = False,
) -> None:
    """Write labelImg's [bold]predefined_classes.txt[/] (the 43 labels) into the workspace.

    Point labelImg at it (labelImg --predefdef-classes-file or copy it to labelImg's data/ folder). Extraction
    accepts exactly the labels in this file: add your own lines (cog_<bb|lb|cb|sb>_<name>, toon_<animal>)
    to extend it.
    """
    from toonvision.taxonomy import predefined_classes_text
    from toonvision.workspace import write_text_atomic

    ws = _workspace(root)
    existed = ws.classes_file.exists()
    ws.init()
    if existed and force:
        write_text_atomic(ws.classes_file, predefined_classes_text())
    state = "rewritten" if existed and force else ("kept (use --force to rewrite)" if existed else "written")
    labels_ = ws.labels()
    console.print(f"{ws.classes_file}: {len(labels_)} labels, {state}")


# --- extract ---


@app.command()
def extract(
    root: Root = Path("img"),
    filter: Annotated[str, typer.Option("--filter", help="Only screenshots whose path contains this text.")] = "",
    move: Annotated[
        bool, typer.Option("--move", help="Move each extracted screenshot and its annotation to raw/processed.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be extracted; write nothing.")] = False,
) -> None:
    """Crop every labelled box of every screenshot in raw/screenshots into unsorted/<cog|toon>/.

    Screenshots may be png, jpg, jpeg or bmp, with a labelImg annotation beside them (Pascal VOC .xml,
    YOLO .txt + classes.txt, or CreateML .json) matched by file name. Crops are named
    cog_<suit>_<name>_<index>.png / toon_<animal>_<index>.png with indexes that only grow. A screenshot
    with bad input is skipped and left in place; the exit code is 1 when anything was skipped. Running
    again is always safe: boxes already extracted are not extracted twice.
    """
    from toonvision.extraction import extract as run_extract

    ws = _workspace(root)
    header("extract", root=root, filter=repr(filter), move=move, dry_run=dry_run)
    start = time.perf_counter()
    with _progress() as progress:
        task = progress.add_task("extracting", total=None)
        summary = run_extract(
            ws,
            name_filter=filter,
            move=move,
            dry_run=dry_run,
            on_start=lambda n: progress.update(task, total=n),
            on_screenshot=lambda p: progress.advance(task),
        )
    if dry_run and summary.planned:
        table = Table("screenshot", "would write", title="Dry run")
        for image, name in summary.planned:
            table.add_row(ws.relative(image), name)
        console.print(table)
    if summary.problems:
        table = Table("file", "problem", "detail", title="Problems", title_style="bold")
        for p in summary.problems:
            style = "red" if p.fatal else "yellow"
            table.add_row(ws.relative(p.path), f"[{style}]{p.kind}[/]", p.detail)
        console.print(table)
    for p in summary.skipped:
        err.print(f"[red]skipped[/] {p}", highlight=False, soft_wrap=True)
    verb = "would write" if dry_run else "wrote"
    n_crops = len(summary.planned) if dry_run else len(summary.crops_written)
    console.print(
        f"{summary.screenshots} screenshots: {summary.extracted} extracted, {len(summary.skipped)} skipped, "
        f"{summary.moved} moved to raw/processed; {verb} {n_crops} crops, "
        f"{summary.already_extracted} boxes already extracted ({time.perf_counter() - start:.1f}s)"
    )
    if summary.skipped:
        raise typer.Exit(1)


# --- split / unsplit ---


def _split_table(summary) -> Table:
    from toonvision.workspace import SPLITS

    table = Table("split", "cog", "toon", "total", title="Crops per split")
    for split in (*SPLITS, None):
        cog, toon = summary.counts[(split, "cog")], summary.counts[(split, "toon")]
        if split is None and not cog + toon:
            continue
        table.add_row(split or "unsorted", str(cog), str(toon), str(cog + toon))
    return table


@app.command()
def split(
    root: Root = Path("img"),
    ratio: Annotated[
        tuple[float, float, float],
        typer.Option("--ratio", help="Train, validate and test shares (normalised to sum to 1)."),
    ] = (0.6, 0.2, 0.2),
    seed: Annotated[int, typer.Option(help="Random seed: the same seed and crops give the same split.")] = 0,
    folds: Annotated[int, typer.Option(help="Stratified k-fold instead of ratios: number of folds (>= 3).")] = 0,
    fold: Annotated[int, typer.Option(help="With --folds: which fold is the test set (0-based).")] = 0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the split; move nothing.")] = False,
) -> None:
    """Split every crop (unsorted or already split) into data/{train,validate,test}/{cog,toon}.

    Stratified per label: each label is divided by the ratios on its own, so rare Cogs appear in every
    split they can. Files are moved, never copied; a killed split is finished by running it again.
    With --folds K, fold --fold is the test set, the next fold the validation set, and the rest train.
    """
    from collections import Counter

    from toonvision.datasets import find_samples
    from toonvision.splitting import ApplySummary, apply_plan, check_ratios, plan_kfold, plan_split

    ws = _workspace(root)
    try:
        ratios = check_ratios(ratio)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if folds and not 0 <= fold < folds:
        raise fail(f"--fold {fold} is not one of 0..{folds - 1}")
    if folds:
        header("split", root=root, folds=folds, fold=fold, seed=seed, dry_run=dry_run)
    else:
        header("split", root=root, ratio=" ".join(f"{r:g}" for r in ratios), seed=seed, dry_run=dry_run)

    def make_plan(samples):
        if not samples:
            raise fail(f"no crops in {root}: run 'toonvision extract' first")
        try:
            return plan_kfold(samples, folds, seed)[fold] if folds else plan_split(samples, ratios, seed)
        except ValueError as exc:
            raise fail(str(exc)) from None

    if dry_run:
        samples = find_samples(ws)
        plan = make_plan(samples)
        summary = ApplySummary(counts=Counter((plan.get(s.name), s.kind) for s in samples))
        console.print(_split_table(summary))
        return
    with _progress() as progress:
        task = progress.add_task("moving crops", total=None)
        summary = apply_plan(
            ws, make_plan, on_start=lambda n: progress.update(task, total=n), on_move=lambda: progress.advance(task)
        )
    console.print(_split_table(summary))
    console.print(f"moved {summary.moved} crops, {summary.unchanged} already in place")


@app.command()
def unsplit(root: Root = Path("img")) -> None:
    """Return every crop from data/{train,validate,test} to unsorted/<cog|toon> (one pool again)."""
    from toonvision.splitting import unsplit as run_unsplit

    ws = _workspace(root)
    header("unsplit", root=root)
    with _progress() as progress:
        task = progress.add_task("moving crops", total=None)
        summary = run_unsplit(
            ws, on_start=lambda n: progress.update(task, total=n), on_move=lambda: progress.advance(task)
        )
    console.print(_split_table(summary))
    console.print(f"moved {summary.moved} crops back to unsorted")


# --- stats ---


@app.command()
def stats(
    root: Root = Path("img"),
    desired_label: Annotated[int, typer.Option(help="Desired crops per label (green line).")] = 20,
    desired_animal: Annotated[int, typer.Option(help="Desired crops per Toon animal.")] = 58,
    desired_suit: Annotated[int, typer.Option(help="Desired crops per Cog suit.")] = 160,
    desired_binary: Annotated[int, typer.Option(help="Desired crops per binary class (cog, toon).")] = 640,
    plots: Annotated[bool, typer.Option(help="Write the balance, split and crop-size plots.")] = True,
) -> None:
    """Count crops per label, class, suit, animal, street and split; plot them under <root>/reports/.

    Plots: dataset_balance.png (the spec's balance charts, desired line green, average red),
    split_balance.png (train/validate/test per class) and crop_sizes.png (width x height per class).
    """
    from toonvision.plots import plot_balance, plot_crop_sizes, plot_split_balance
    from toonvision.stats import Desired, collect

    ws = _workspace(root)
    desired = Desired(desired_label, desired_animal, desired_suit, desired_binary)
    header("stats", root=root, desired=f"{desired.label}/{desired.animal}/{desired.suit}/{desired.binary}")
    st = collect(ws)
    if not st.total:
        raise fail(f"no crops in {root}: run 'toonvision extract' first")
    _print_stats(st, desired)
    if plots:
        ws.reports.mkdir(parents=True, exist_ok=True)
        written = [
            plot_balance(st, desired, ws.reports / "dataset_balance.png"),
            plot_split_balance(st, ws.reports / "split_balance.png"),
            plot_crop_sizes(st, ws.reports / "crop_sizes.png"),
        ]
        for path in written:
            console.print(f"wrote {path}")


def _print_stats(st, desired) -> None:
    from rich.columns import Columns

    from toonvision.taxonomy import SUITS, all_labels

    def counter_table(title, rows, want=None):
        t = Table("", "crops", *(["of desired"] if want else []), title=title)
        for name, n in rows:
            t.add_row(name, str(n), *([f"{n / want:.0%}"] if want else []))
        return t

    kinds = counter_table("Binary", [(k, st.per_kind[k]) for k in ("cog", "toon")], desired.binary)
    suits = counter_table("Suits", [(s.long, st.per_suit[s.short]) for s in SUITS], desired.suit)
    animals = counter_table("Animals", sorted(st.per_animal.items()), desired.animal)
    streets = counter_table("Streets", sorted(st.per_street.items()))
    split_rows = []
    for split in st.splits_present():
        cog, toon = st.per_split[(split, "cog")], st.per_split[(split, "toon")]
        split_rows.append((split, f"{cog}+{toon}"))
    splits = Table("", "cog+toon", title="Splits")
    for name, v in split_rows:
        splits.add_row(name, v)
    console.print(Columns([kinds, suits, splits, streets, animals]))
    per_group = []
    for suit in SUITS:
        rows = [(name, st.per_label[f"cog_{suit.short}_{name}"]) for name in suit.cogs]
        per_group.append(counter_table(suit.long, rows, desired.label))
    animal_rows = [(lbl[5:], st.per_label[lbl]) for lbl in st.labels_in_order() if lbl.startswith("toon_")]
    per_group.append(counter_table("toon", animal_rows, desired.label))
    builtin = {str(label) for label in all_labels()}
    extra = [(lbl, st.per_label[lbl]) for lbl in st.labels_in_order() if lbl not in builtin]
    if extra:
        per_group.append(counter_table("your labels", extra, desired.label))
    console.print(Columns(per_group, title="Per label"))
    console.print(f"{st.total} crops in all, {len(st.per_label)} labels present, desired {desired.label} per label")


# --- models ---

Task = Annotated[str, typer.Option("--task", help="binary (cog vs toon), suit (4 suits) or name (32 Cog names).")]


def _quiet_tensorflow() -> None:
    """Import TensorFlow with its start-up chatter (oneDNN and absl notices) kept off the terminal.

    TensorFlow 2.21 prints them from C++ whatever TF_CPP_MIN_LOG_LEVEL says, so standard error is
    pointed at /dev/null for the import only; a Python exception still surfaces normally.
    """
    import os
    import sys

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    # Retracing notices are about Keras' own predict function when several models run in one process
    # (demo, report): nothing a user can act on.
    tensorflow.get_logger().setLevel("ERROR")


@app.command()
def models(
    name: Annotated[str | None, typer.Argument(help="Show this architecture: its summary and a diagram.")] = None,
    task: Task = "binary",
    root: Root = Path("img"),
) -> None:
    """List the registered architectures with their parameter counts, or show one.

    With NAME: print the Keras summary and write an architecture diagram to
    <root>/reports/model_<name>_<task>.png (Keras' plot_model when Graphviz is installed, otherwise
    ToonVision's own layered drawing).
    """
    _quiet_tensorflow()
    from toonvision.models import REGISTRY, create_model

    if name is None:
        table = Table("model", "binary", "suit", "name", "what it is", title="Architectures")
        for arch in REGISTRY.values():
            counts = [f"{create_model(arch.name, t).count_params():,}" for t in ("binary", "suit", "name")]
            table.add_row(arch.name, *counts, arch.summary)
        console.print(table)
        return
    if name not in REGISTRY:
        raise fail(f"unknown model {name!r} (choose from {', '.join(REGISTRY)})")
    try:
        model = create_model(name, task)
    except ValueError as exc:
        raise fail(str(exc)) from None
    model.summary(print_fn=lambda line, **_: console.print(line, highlight=False, markup=False))
    path = _workspace(root).reports / f"model_{name}_{task}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    console.print(f"wrote {draw_architecture(model, path)}")


def draw_architecture(model, path: Path) -> Path:
    """Keras' plot_model where pydot and Graphviz are installed, else ToonVision's own drawing."""
    import shutil

    from toonvision.plots import plot_architecture

    if shutil.which("dot"):
        try:
            import keras

            keras.utils.plot_model(model, to_file=str(path), show_shapes=True, show_layer_names=True, dpi=80)
            return path
        except (ImportError, OSError, AttributeError, ValueError):
            pass
    return plot_architecture(model, path)


# --- train ---

Epochs = Annotated[int, typer.Option(help="Epochs to train (the spec: 25; its optimizer comparison: 20).")]
Precision = Annotated[
    str,
    typer.Option(
        help="Arithmetic of training: float32, bfloat16 (mixed: float32 weights, bfloat16 products; about 1.7x "
        "faster where the CPU has AVX512-BF16 or AMX, test accuracy within noise) or auto (bfloat16 where the CPU "
        "has it). Saved models are float32 either way."
    ),
]


def _shown_precision(precision: str) -> str:
    from toonvision.training import resolve_precision

    return f"auto ({resolve_precision('auto')} here)" if precision == "auto" else precision


def _config_from_options(**options) -> object:
    from toonvision.training import TrainConfig

    try:
        return TrainConfig(**options).validate()
    except ValueError as exc:
        raise fail(str(exc)) from None


@app.command()
def train(
    root: Root = Path("img"),
    task: Task = "binary",
    model: Annotated[str, typer.Option(help="Architecture (see 'toonvision models').")] = "seed",
    epochs: Epochs = 25,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-3,
    optimizer: Annotated[
        str, typer.Option(help="sgd, adam, rmsprop, adadelta, adagrad, adamax, nadam or ftrl.")
    ] = "adam",
    augment: Annotated[bool, typer.Option(help="Random flip, rotation (0.075) and zoom (0.2) in training.")] = False,
    dropout: Annotated[float, typer.Option(help="Dropout rate before the head (the spec's optimized: 0.9).")] = 0.0,
    decay: Annotated[float, typer.Option(help="Inverse-time decay per step: lr / (1 + decay * step).")] = 0.0,
    lr_step_every: Annotated[
        int, typer.Option(help="Step schedule: multiply lr by --lr-step-factor every N epochs.")
    ] = 0,
    lr_step_factor: Annotated[float, typer.Option(help="Factor of the step schedule.")] = 0.1,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 32,
    class_weight: Annotated[
        str | None, typer.Option(help="'balanced' weighs classes inversely to their frequency.")
    ] = None,
    pad: Annotated[
        bool, typer.Option(help="Pad crops to 600x200 keeping their aspect ratio instead of stretching.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of weights, shuffling and augmentation.")] = 0,
    precision: Precision = "auto",
    split_seed: Annotated[
        int | None, typer.Option(help="Split in memory with this seed instead of using the data/ folders.")
    ] = None,
    name: Annotated[str, typer.Option(help="Name of the run (its folder is runs/train/<task>-<name>).")] = "model",
) -> None:
    """Train one model and write its run folder under <root>/runs/train/.

    The run folder holds model.keras, history.json, config.json, metrics.json (test loss and accuracy),
    split.json and history.png (accuracy and loss, training and validation). Training uses the split in
    data/{train,validate,test} when there is one, else a 60/20/20 split planned from --split-seed.
    """
    _quiet_tensorflow()
    from toonvision.training import configure_threads, epoch_progress, train_run

    cfg = _config_from_options(
        name=name,
        task=task,
        model=model,
        epochs=epochs,
        lr=lr,
        optimizer=optimizer,
        augment=augment,
        dropout=dropout,
        decay=decay,
        lr_step_every=lr_step_every,
        lr_step_factor=lr_step_factor,
        batch_size=batch_size,
        class_weight=class_weight,
        pad=pad,
        seed=seed,
        precision=precision,
    )
    settings = {k: v for k, v in cfg.to_dict().items() if k not in ("name", "precision")}
    header("train", root=root, **settings, precision=_shown_precision(precision), split_seed=split_seed)
    configure_threads(None)
    ws = _workspace(root)
    with _progress() as progress:
        task_id = progress.add_task("loading crops", total=epochs)
        try:
            out = train_run(ws, cfg, split_seed=split_seed, callbacks=[epoch_progress(progress, task_id)])
        except ValueError as exc:
            raise fail(str(exc)) from None
    from toonvision.training import read_json

    metrics = read_json(out / "metrics.json")["test"]
    if metrics:
        console.print(
            f"test accuracy {metrics['accuracy']:.4f}, test loss {metrics['loss']:.4f} on {metrics['n']} crops"
        )
    console.print(f"results in {out}")


@app.command()
def optimizers(
    root: Root = Path("img"),
    task: Task = "binary",
    model: Annotated[str, typer.Option(help="Architecture.")] = "seed",
    epochs: Epochs = 20,
    lr: Annotated[float, typer.Option(help="The same static learning rate for every optimizer.")] = 1e-3,
    only: Annotated[list[str] | None, typer.Option(help="Compare only these optimizers (repeatable).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split and of every model.")] = 0,
) -> None:
    """The spec's optimizer comparison: the same model, data and learning rate trained with SGD, Adam,
    RMSprop, Adadelta, Adagrad, Adamax, Nadam and Ftrl; one plot of all curves.

    Writes <root>/runs/optimizers/<task>-<model>/optimizers.png and histories.json.
    """
    _quiet_tensorflow()
    from toonvision.datasets import find_samples, load_task
    from toonvision.plots import plot_optimizers
    from toonvision.training import OPTIMIZERS, TrainConfig, fit, new_run_dir, resolve_split, write_json

    names = [o.lower() for o in (only or OPTIMIZERS)]
    for o in names:
        if o not in OPTIMIZERS:
            raise fail(f"unknown optimizer {o!r} (choose from {', '.join(OPTIMIZERS)})")
    header("optimizers", root=root, task=task, model=model, epochs=epochs, lr=lr, seed=seed, optimizers=",".join(names))
    ws = _workspace(root)
    try:
        data = load_task(find_samples(ws), task, ws=ws)
    except ValueError as exc:
        raise fail(f"{exc}: run 'toonvision extract' first") from None
    plan, _ = resolve_split(data.samples, None)
    parts = data.by_plan(plan)
    histories, finals = {}, {}
    with _progress() as progress:
        overall = progress.add_task("optimizers", total=len(names))
        for o in names:
            cfg = TrainConfig(name=o, task=task, model=model, epochs=epochs, lr=lr, optimizer=o, seed=seed)
            result = fit(cfg, parts["train"], parts["validate"], parts["test"])
            histories[OPTIMIZERS[o]] = result.history
            finals[OPTIMIZERS[o]] = result.test
            progress.update(
                overall,
                advance=1,
                description=f"{OPTIMIZERS[o]}: val_acc {result.history.get('val_accuracy', [0])[-1]:.3f}",
            )
    out = new_run_dir(ws.runs / "optimizers", f"{task}-{model}")
    write_json(out / "histories.json", {"histories": histories, "test": finals, "lr": lr, "epochs": epochs})
    plot_optimizers(histories, out / "optimizers.png", f"Optimizers on {task}/{model}, lr {lr:g}, {epochs} epochs")
    table = Table("optimizer", "final val acc", "final val loss", "test acc", title="Optimizers")
    for o, h in histories.items():
        table.add_row(
            o,
            f"{h.get('val_accuracy', [float('nan')])[-1]:.3f}",
            f"{h.get('val_loss', [float('nan')])[-1]:.3f}",
            f"{finals[o].get('accuracy', float('nan')):.3f}",
        )
    console.print(table)
    console.print(f"wrote {out / 'optimizers.png'}")


# --- compare ---


@app.command()
def compare(
    root: Root = Path("img"),
    config: Annotated[
        list[str] | None,
        typer.Option(
            "--config",
            help="Configurations to compare (repeatable): baseline, optimized, or <preset>:<model> such as "
            "optimized:padded. Default: baseline and optimized, as in the spec.",
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
        str | None, typer.Option(help="Ray cluster to use (e.g. 'auto' or ray://host:10001); default: a local one.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Experiment name; the same name resumes it.")] = None,
) -> None:
    """The spec's baseline comparison: re-split, train every configuration, evaluate, N times; in parallel.

    Results go to <root>/runs/compare/<name>/: one JSON per run and configuration (so a killed
    comparison resumes from the runs already finished), best/<config>.keras (kept only when it beats the
    best so far on both test loss and accuracy), history.png (every run faint, the mean bold),
    boxplots.png (test accuracy and loss), summary.md/json (median, quartiles, min/max, and a Mann-Whitney U
    test with a bootstrap interval for each pair).
    """
    _quiet_tensorflow()
    from dataclasses import replace

    from toonvision.experiments import Experiment, run_experiment, summarize, write_outputs
    from toonvision.training import preset

    names = config or ["baseline", "optimized"]
    try:
        configs = tuple(
            preset(n, epochs=epochs, task=task, class_weight=class_weight, pad=pad, precision=precision).validate()
            for n in names
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
        precision=_shown_precision(precision),
        workers=workers or "auto",
        threads=threads,
        address=address or "local",
        name=exp_name,
    )
    ws = _workspace(root)
    out = ws.runs / "compare" / exp_name
    with _progress() as progress:
        bar = progress.add_task("starting Ray", total=None)

        def on_start(total: int, done: int) -> None:
            progress.update(bar, total=total, completed=done, description="training")

        def on_result(result, messages) -> None:
            progress.update(
                bar,
                advance=1,
                description=f"run {result.run} {result.config}: acc {result.test.get('accuracy', 0):.3f}",
            )
            for m in messages:
                progress.console.print(m)

        try:
            results = run_experiment(
                ws, exp, out, workers=workers, threads=threads, address=address, on_start=on_start, on_result=on_result
            )
        except ValueError as exc:
            raise fail(str(exc)) from None
    paths = write_outputs(out, exp, results)
    summary = summarize(results, [c.name for c in configs])
    table = Table("model", "metric", "n", "median", "q1", "q3", "min", "max", title="Test metrics")
    for model_name, metrics in summary.items():
        for metric, st in metrics.items():
            table.add_row(
                model_name, metric, str(st["n"]), *(f"{st[k]:.4f}" for k in ("median", "q1", "q3", "min", "max"))
            )
    console.print(table)
    console.print(paths["markdown"].read_text().split("## Is the difference real?")[1].strip(), markup=False)
    console.print(f"results in {out}")


# --- evaluate ---


@app.command()
def evaluate(
    model_path: Annotated[Path, typer.Argument(help="A run folder (runs/train/...) or a .keras file.")],
    root: Root = Path("img"),
    task: Annotated[str | None, typer.Option(help="Task of a bare .keras file (read from a run folder).")] = None,
    top: Annotated[int, typer.Option(help="How many wrong predictions to show in the grid.")] = 32,
) -> None:
    """Test metrics, confusion matrix, per-class precision/recall, and wrong predictions ranked by error.

    The test split is the run's own (split.json) or, for a bare model, the data/test folder. Wrong
    predictions are ranked over the whole dataset, as in the spec: each crop titled with its true label,
    the error E and the model output A. Writes into <run>/evaluate/ (for a model kept by 'compare':
    best/evaluate/<config>/).
    """
    _quiet_tensorflow()
    import keras

    from toonvision.evaluation import ModelFile, evaluate_file

    model_file = model_path / "model.keras" if model_path.is_dir() else model_path
    if not model_file.exists():
        raise fail(f"{model_file} does not exist")
    try:
        model = keras.models.load_model(model_file, compile=False)
    except (OSError, ValueError) as exc:
        raise fail(f"{model_file} is not a Keras model: {exc}") from None
    try:
        located = ModelFile.locate(model_path, task, units=model.output_shape[-1])
    except ValueError as exc:
        raise fail(f"{exc} (--task)") from None
    header("evaluate", root=root, model=model_file, task=located.task, top=top, out=located.out)
    ws = _workspace(root)
    ev, paths = evaluate_file(ws, located, model, top=top)
    if ev.test_metrics:
        console.print(
            f"test accuracy {ev.test_metrics['accuracy']:.4f}, loss {ev.test_metrics['loss']:.4f} "
            f"on {ev.test_metrics['n']} crops"
        )
    report = ev.report("test" if ev.test_metrics else None)
    table = Table("class", "precision", "recall", "f1", "support", title="Per class (test split)")
    for cls in ev.classes:
        r = report.get(cls, {})
        if r.get("support"):
            table.add_row(
                cls, f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1-score']:.3f}", str(int(r["support"]))
            )
    console.print(table)
    console.print(f"{len(ev.wrong())} wrong predictions over {len(ev.predictions)} crops")
    for p in paths.values():
        console.print(f"wrote {p}")


# --- predict ---


@app.command()
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
) -> None:
    """Classify what is on screen: for each box, Cog or Toon, and for Cogs the suit and the name.

    For a screenshot, the boxes come from its labelImg annotation (any format) or from --boxes; an
    annotated copy with each box, its predicted label and confidence (in suit and Toon colours) is written
    to <root>/runs/predict/. Crops and folders of crops are classified whole.
    """
    _quiet_tensorflow()
    import json

    from toonvision.inference import Classifier
    from toonvision.prediction import annotate, collect_targets, find_best_models, predict_targets
    from toonvision.training import new_run_dir

    ws = _workspace(root)
    try:
        targets = collect_targets(inputs, boxes)
    except (FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from None
    if boxes is not None and len(targets) != 1:
        raise fail("--boxes goes with exactly one screenshot")
    try:
        if model:
            classifiers = {}
            for path in model:
                clf = Classifier.load(path)
                classifiers[clf.task] = clf
            sources = {t: str(p) for t, p in zip(classifiers, model, strict=True)}
        else:
            best = find_best_models(ws.runs)
            if "binary" not in best:
                raise fail(f"no trained binary model in {ws.runs}: run 'toonvision train' or give --model")
            classifiers = {t: Classifier.load(p) for t, p in best.items()}
            sources = {t: str(p) for t, p in best.items()}
        predict_targets(targets, classifiers)
    except (FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from None
    if as_json:
        print(
            json.dumps(
                {"models": sources, "predictions": [p.to_dict() for t in targets for p in t.predictions]}, indent=2
            )
        )
        return
    header("predict", root=root, **{f"model_{t}": p for t, p in sources.items()})
    table = Table("image", "box", "prediction", "confidence", "true label", title="Predictions")
    for t in targets:
        for p in t.predictions:
            conf = p.name_confidence if p.name else p.kind_confidence
            table.add_row(
                t.image.name,
                " ".join(map(str, p.box)) if p.box else "whole",
                p.label,
                f"{conf:.3f}",
                p.true_label or "",
            )
    console.print(table)
    screenshots = [t for t in targets if t.boxes is not None and t.predictions]
    if screenshots:
        out = new_run_dir(ws.runs / "predict", screenshots[0].image.stem if len(screenshots) == 1 else "batch")
        for t in screenshots:
            console.print(f"wrote {annotate(t, out / f'{t.image.stem}.predicted.png')}")


def app_command(name: str):
    """The function behind a registered verb (for verbs that live in their own modules)."""
    for info in app.registered_commands:
        if (info.name or info.callback.__name__) == name:
            return info.callback
    raise fail(f"the {name!r} verb is not available in this installation")


def _register_optional() -> None:
    """Verbs that live in their own modules (they import heavy libraries only when run)."""
    from toonvision.demo import demo_command
    from toonvision.export import export_command
    from toonvision.interpretation import explain_command
    from toonvision.report import report_command
    from toonvision.synth.command import synth

    app.command("synth")(synth)
    app.command("explain")(explain_command)
    app.command("report")(report_command)
    app.command("export")(export_command)
    app.command("demo")(demo_command)


_register_optional()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
