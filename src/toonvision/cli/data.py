"""Verbs of the data stage: labels, extract, split, unsplit, stats."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from toonvision.cli.common import Root, console, err, fail, header, progress, unreviewed_left_out, workspace

if TYPE_CHECKING:
    from toonvision.data.extraction import ExtractSummary
    from toonvision.data.splitting import ApplySummary
    from toonvision.data.stats import DatasetStats, Desired
    from toonvision.data.workspace import Workspace


def labels(
    root: Root = Path("img"),
    force: Annotated[bool, typer.Option(help="Rewrite the file even if it exists (your own labels are lost).")] = False,
) -> None:
    """Write labelImg's [bold]predefined_classes.txt[/] (the 43 labels) into the workspace.

    Point labelImg at it (labelImg --predefdef-classes-file or copy it to labelImg's data/ folder). Extraction
    accepts exactly the labels in this file: add your own lines (cog_<bb|lb|cb|sb>_<name>, toon_<animal>)
    to extend it.
    """
    from toonvision.data.files import write_text_atomic
    from toonvision.data.taxonomy import predefined_classes_text

    ws = workspace(root)
    existed = ws.classes_file.exists()
    ws.init()
    if existed and force:
        write_text_atomic(ws.classes_file, predefined_classes_text())
    state = "rewritten" if existed and force else ("kept (use --force to rewrite)" if existed else "written")
    console.print(f"{ws.classes_file}: {len(ws.labels())} labels, {state}")


def extract(
    root: Root = Path("img"),
    filter: Annotated[str, typer.Option("--filter", help="Only screenshots whose path contains this text.")] = "",
    move: Annotated[
        bool, typer.Option("--move", help="Move each extracted screenshot and its annotation to raw/processed.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be extracted; write nothing.")] = False,
    include_unreviewed: Annotated[
        bool,
        typer.Option(
            "--include-unreviewed",
            help="Also extract pre-annotations ('toonvision annotate') that nobody has reviewed in labelImg yet.",
        ),
    ] = False,
) -> None:
    """Crop every labelled box of every screenshot in raw/screenshots into unsorted/<cog|toon>/.

    Screenshots may be png, jpg, jpeg or bmp, with a labelImg annotation beside them (Pascal VOC .xml,
    YOLO .txt + classes.txt, or CreateML .json) matched by file name. Crops are named
    cog_<suit>_<name>_<index>.png / toon_<animal>_<index>.png with indexes that only grow. A screenshot
    with bad input is skipped and left in place; the exit code is 1 when anything was skipped. Running
    again is always safe: boxes already extracted are not extracted twice. Pre-annotations written by
    'toonvision annotate' are not ground truth until a person has reviewed them (saved or verified them in
    labelImg): they are left out and counted, unless --include-unreviewed.
    """
    ws = workspace(root)
    header("extract", root=root, filter=repr(filter), move=move, dry_run=dry_run, include_unreviewed=include_unreviewed)
    summary = run_extract(ws, name_filter=filter, move=move, dry_run=dry_run, include_unreviewed=include_unreviewed)
    if summary.skipped:
        raise typer.Exit(1)


def run_extract(
    ws: Workspace, *, name_filter: str = "", move: bool = False, dry_run: bool = False, include_unreviewed: bool = False
) -> ExtractSummary:
    """Extraction with a progress bar and its tables (what ``extract`` and the demo show)."""
    from toonvision.data.extraction import extract as extract_screenshots

    start = time.perf_counter()
    with progress() as bar:
        task = bar.add_task("extracting", total=None)
        summary = extract_screenshots(
            ws,
            name_filter=name_filter,
            move=move,
            dry_run=dry_run,
            on_start=lambda n: bar.update(task, total=n),
            on_screenshot=lambda p: bar.advance(task),
            include_unreviewed=include_unreviewed,
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
    unreviewed_left_out(len(summary.unreviewed))
    return summary


def split_table(summary: ApplySummary) -> Table:
    from toonvision.data.workspace import SPLITS

    table = Table("split", "cog", "toon", "total", title="Crops per split")
    for split in (*SPLITS, None):
        cog, toon = summary.counts[(split, "cog")], summary.counts[(split, "toon")]
        if split is None and not cog + toon:
            continue
        table.add_row(split or "unsorted", str(cog), str(toon), str(cog + toon))
    return table


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
    from toonvision.data.splitting import check_ratios

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
    run_split(workspace(root), ratios, seed=seed, folds=folds, fold=fold, dry_run=dry_run)


def run_split(
    ws: Workspace,
    ratios: tuple[float, float, float],
    *,
    seed: int = 0,
    folds: int = 0,
    fold: int = 0,
    dry_run: bool = False,
) -> None:
    """A split with a progress bar and its table (what ``split`` and the demo show)."""
    from collections import Counter

    from toonvision.data.samples import find_samples
    from toonvision.data.splitting import ApplySummary, apply_plan, plan_kfold, plan_split

    def make_plan(samples):
        if not samples:
            raise fail(f"no crops in {ws.root}: run 'toonvision extract' first")
        try:
            return plan_kfold(samples, folds, seed)[fold] if folds else plan_split(samples, ratios, seed)
        except ValueError as exc:
            raise fail(str(exc)) from None

    if dry_run:
        samples = find_samples(ws)
        plan = make_plan(samples)
        console.print(split_table(ApplySummary(counts=Counter((plan.get(s.name), s.kind) for s in samples))))
        return
    with progress() as bar:
        task = bar.add_task("moving crops", total=None)
        summary = apply_plan(
            ws, make_plan, on_start=lambda n: bar.update(task, total=n), on_move=lambda: bar.advance(task)
        )
    console.print(split_table(summary))
    console.print(f"moved {summary.moved} crops, {summary.unchanged} already in place")


def unsplit(root: Root = Path("img")) -> None:
    """Return every crop from data/{train,validate,test} to unsorted/<cog|toon> (one pool again)."""
    from toonvision.data.splitting import unsplit as unsplit_crops

    ws = workspace(root)
    header("unsplit", root=root)
    with progress() as bar:
        task = bar.add_task("moving crops", total=None)
        summary = unsplit_crops(ws, on_start=lambda n: bar.update(task, total=n), on_move=lambda: bar.advance(task))
    console.print(split_table(summary))
    console.print(f"moved {summary.moved} crops back to unsorted")


def stats(
    root: Root = Path("img"),
    desired_label: Annotated[int, typer.Option(help="Desired crops per label (green line).")] = 20,
    desired_animal: Annotated[int, typer.Option(help="Desired crops per Toon animal.")] = 58,
    desired_suit: Annotated[int, typer.Option(help="Desired crops per Cog suit.")] = 160,
    desired_binary: Annotated[int, typer.Option(help="Desired crops per binary class (cog, toon).")] = 640,
    plots: Annotated[bool, typer.Option(help="Write the balance, split and crop-size plots.")] = True,
) -> None:
    """Count screenshots by who labelled them (reviewed by a person, pre-annotated by 'toonvision annotate' and
    not reviewed yet, unlabelled), and crops per label, class, suit, animal, street and split; plot the crops
    into a new folder <root>/runs/stats/dataset[-N]/.

    Plots: dataset_balance.png (the spec's balance charts, desired line green, average red),
    split_balance.png (train/validate/test per class) and crop_sizes.png (width x height per class).
    """
    from toonvision.data.stats import Desired

    desired = Desired(desired_label, desired_animal, desired_suit, desired_binary)
    header("stats", root=root, desired=f"{desired.label}/{desired.animal}/{desired.suit}/{desired.binary}")
    run_stats(workspace(root), desired, plots=plots)


def run_stats(ws: Workspace, desired: Desired, *, plots: bool = True) -> Path | None:
    """Tables of the dataset and, with ``plots``, its figures in a new folder; returns that folder."""
    from toonvision.data.files import new_run_dir
    from toonvision.data.review import STATUSES
    from toonvision.data.stats import collect, screenshot_review

    shots = Table("", *STATUSES, title="Screenshots: who labelled them")
    for folder, counts in screenshot_review(ws).items():
        shots.add_row(folder, *(str(counts[s]) for s in STATUSES))
    console.print(shots)
    st = collect(ws)
    if not st.total:
        raise fail(f"no crops in {ws.root}: run 'toonvision extract' first")
    print_stats(st, desired)
    if not plots:
        return None
    from toonvision.figures.dataset import plot_balance, plot_crop_sizes, plot_split_balance

    out = new_run_dir(ws.runs / "stats", "dataset")
    for path in (
        plot_balance(st, desired, out / "dataset_balance.png"),
        plot_split_balance(st, out / "split_balance.png"),
        plot_crop_sizes(st, out / "crop_sizes.png"),
    ):
        console.print(f"wrote {path}")
    return out


def print_stats(st: DatasetStats, desired: Desired) -> None:
    from rich.columns import Columns

    from toonvision.data.taxonomy import SUITS, all_labels

    def counter_table(title, rows, want=None):
        t = Table("", "crops", *(["of desired"] if want else []), title=title)
        for name, n in rows:
            t.add_row(name, str(n), *([f"{n / want:.0%}"] if want else []))
        return t

    kinds = counter_table("Binary", [(k, st.per_kind[k]) for k in ("cog", "toon")], desired.binary)
    suits = counter_table("Suits", [(s.long, st.per_suit[s.short]) for s in SUITS], desired.suit)
    animals = counter_table("Animals", sorted(st.per_animal.items()), desired.animal)
    streets = counter_table("Streets", sorted(st.per_street.items()))
    splits = Table("", "cog+toon", title="Splits")
    for split_name in st.splits_present():
        splits.add_row(split_name, f"{st.per_split[(split_name, 'cog')]}+{st.per_split[(split_name, 'toon')]}")
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
