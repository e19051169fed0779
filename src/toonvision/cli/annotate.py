"""The annotate verb: model-assisted labelling for labelImg."""

from __future__ import annotations

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
    progress,
    shipped_note,
    warn,
    workspace,
)
from toonvision.serving.thresholds import BOX_SCORE, MAX_BOXES


def annotate(
    folder: Annotated[
        Path | None,
        typer.Argument(help="Folder of screenshots (searched recursively); default: <root>/raw/screenshots."),
    ] = None,
    root: Root = Path("img"),
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="File to write for labelImg: voc (.xml), yolo (.txt) or createml.")
    ] = "voc",
    model: ServingModels = None,
    detector: ServingDetector = None,
    shipped: ShippedModels = True,
    conf: BoxScore = BOX_SCORE,
    max_det: MaxBoxes = MAX_BOXES,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be written; write nothing.")] = False,
    refresh: Annotated[
        bool,
        typer.Option(
            help="Rewrite earlier pre-annotations nobody has reviewed yet (e.g. after training better models); only "
            "those the same detector proposed, unless --any-detector."
        ),
    ] = False,
    any_detector: Annotated[
        bool,
        typer.Option("--any-detector", help="With --refresh: also replace pre-annotations another detector proposed."),
    ] = False,
    rank: Annotated[
        str | None,
        typer.Option(
            help="'uncertain': list the pre-annotations nobody has reviewed, the most boxes to fix expected first, "
            "instead of annotating."
        ),
    ] = None,
    review: Annotated[
        Path | None,
        typer.Option(
            help="With --rank: a new folder of links to the ranked screenshots and their annotations, numbered, "
            "to open in labelImg (saves go through the links into the originals)."
        ),
    ] = None,
    top: Annotated[int, typer.Option(min=1, help="With --rank: how many to list and link.")] = 50,
) -> None:
    """Propose boxes and labels for labelImg: a person only corrects them.

    For each screenshot without an annotation, the detector finds every Toon and Cog and the classifiers give
    each a full label (cog_<suit>_<name> from the suit and name models read together, toon_<animal> from the
    animal model), written as the file labelImg opens: Pascal VOC beside the image (--format yolo: .txt with
    classes.txt; createml: .json). The models' confidence per box goes to <stem>.toonvision.json beside it,
    which labelImg ignores.

    A person's annotation is never changed. A pre-annotation counts as reviewed once a person saves it in
    labelImg or presses Verify Image; until then extract and 'train --task detect' leave it out (unless
    --include-unreviewed) and 'toonvision stats' counts it as pre-annotated. --refresh rewrites unreviewed
    pre-annotations; --rank uncertain lists them least sure first, so a person's hour goes where it helps most:
    by the boxes a person can expect to fix (each box's label confidence, the detector's score, how far its
    edges move when the detector looks at a mirrored and a shrunk copy, and the game rules it breaks: the
    detector disagreeing with the classifiers, a height wrong for where it stands, a box over the game's
    interface; docs/labelling.md has the rules and their constants).
    """
    from toonvision.data.extraction import screenshot_states

    ws = workspace(root)
    folder = folder or ws.screenshots
    if not folder.is_dir():
        raise fail(f"{folder} is not a folder of screenshots")
    states = screenshot_states(folder)
    if rank is not None:
        if rank != "uncertain":
            raise fail(f"--rank {rank!r}: the one ranking is 'uncertain'")
        loading = [
            name
            for name, given in (
                ("--model", model),
                ("--detector", detector),
                ("--no-shipped", not shipped),
                ("--max-det", max_det != MAX_BOXES),
            )
            if given
        ]
        if loading:
            raise fail(f"{loading[0]} chooses the models that write pre-annotations; --rank reads what they wrote")
        show_ranking(ws, folder, states, review, top)
        return
    if review is not None:
        raise fail("--review goes with --rank uncertain")
    if any_detector and not refresh:
        raise fail("--any-detector goes with --refresh")
    annotate_folder(
        ws, folder, states, fmt, model, detector, conf, dry_run, refresh, any_detector, shipped, max_det=max_det
    )


def annotate_folder(
    ws,
    folder,
    states,
    fmt,
    model,
    detector,
    conf,
    dry_run,
    refresh,
    any_detector,
    shipped: bool = True,
    *,
    max_det: int = MAX_BOXES,
) -> None:
    from toonvision.data.game_rules import flag_rules
    from toonvision.data.taxonomy import TASKS, all_labels
    from toonvision.serving.annotate import FORMATS, annotate_screenshots, plan
    from toonvision.serving.pipeline import Pipeline

    if fmt not in FORMATS:
        raise fail(f"--format {fmt!r}: choose from {', '.join(FORMATS)}")
    try:
        pipe = Pipeline.load(
            ws.root, models=model or [], detector=detector, conf=conf, shipped=shipped, max_det=max_det
        )
    except (FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from None
    if pipe.detector is None:
        raise fail(f"no trained detector in {ws.runs}: train one with 'toonvision train --task detect'")
    missing = [task for task in TASKS if task not in pipe.classifiers]  # every model has its say on a full label
    if missing:
        how = "; ".join(f"{task}: 'toonvision train --task {task}'" for task in missing)
        raise fail(
            f"annotate writes full labels and needs a {', '.join(missing)} model too (none in {ws.runs}): train "
            f"{'it' if len(missing) == 1 else 'them'} first ({how}) or give --model"
        )
    steps = plan(states, fmt, refresh, detector=pipe.models.get("detect"), any_detector=any_detector)
    todo = [s for s in steps if s.action in ("write", "refresh")]
    used = pipe.models
    header(
        "annotate",
        root=ws.root,
        folder=folder,
        format=fmt,
        conf=conf,
        max_det=max_det,
        dry_run=dry_run,
        refresh=refresh,
        screenshots=f"{len(steps)} ({len(todo)} to write)",
        **{f"model_{task}": path for task, path in used.items()},
    )
    shipped_note(used)
    labels = [str(label) for label in ws.labels()] or [str(label) for label in all_labels()]
    with progress() as bar:
        task_id = bar.add_task("annotating", total=len(todo))
        summary = annotate_screenshots(
            todo, pipe, labels, dry_run=dry_run, on_screenshot=lambda _: bar.advance(task_id)
        )
    left = [(s.state.image, s.action) for s in steps if s.action not in ("write", "refresh")] + summary.left
    table = Table(
        "screenshot",
        "annotation",
        "boxes",
        "least sure box",
        "disagreements",
        "flags",
        "uncertainty",
        title=f"Pre-annotations ({folder})",
    )
    for path, proposal in summary.written + summary.refreshed:
        least = min(proposal.details, key=lambda d: d["confidence"], default=None)
        shown = f"{least['label']} {least['confidence']:.2f}" if least else "nothing found"
        table.add_row(
            proposal.image.relative_to(folder).as_posix(),
            path.name,
            str(len(proposal.boxes)),
            shown,
            str(proposal.conflicts or ""),
            flag_rules([f for d in proposal.details for f in d["flags"]]),
            f"{proposal.uncertainty:.2f}",
        )
    if summary.written or summary.refreshed:
        console.print(table)
    for image, problem in summary.problems:
        warn(f"skipped {image}: {problem}")
    reasons = {
        "reviewed": "annotated by a person",
        "pre-annotated": "pre-annotated earlier (--refresh rewrites)",
        "other-detector": "proposed by another detector (--any-detector replaces)",
    }
    counted: dict[str, int] = {}
    for _, why in left:
        counted[reasons.get(why, why)] = counted.get(reasons.get(why, why), 0) + 1
    verb = "would write" if dry_run else "wrote"
    rate = summary.boxes / summary.seconds if summary.seconds else 0.0
    console.print(
        f"{verb} {len(summary.written)} pre-annotations"
        + (f", refreshed {len(summary.refreshed)}" if summary.refreshed else "")
        + f" ({summary.boxes} boxes, {rate:.1f} boxes/s); left alone: "
        + (", ".join(f"{n} {why}" for why, n in counted.items()) or "none")
        + (f"; {len(summary.problems)} skipped" if summary.problems else "")
    )
    if summary.written or summary.refreshed:
        console.print(
            "next: review them in labelImg (save or Verify Image); 'toonvision annotate --rank uncertain' lists "
            "them least sure first"
        )
    if summary.problems:
        raise typer.Exit(1)


def show_ranking(ws, folder: Path, states, review: Path | None, top: int) -> None:
    from toonvision.data.game_rules import flag_rules
    from toonvision.data.review import link_for_review, rank_uncertain

    ranked = rank_uncertain(states)
    if not ranked:
        console.print("no pre-annotations waiting for review")
        return
    header("annotate --rank uncertain", root=ws.root, waiting=len(ranked), shown=min(top, len(ranked)))
    table = Table(
        "rank", "screenshot", "boxes", "least sure box", "flags", "uncertainty", title=f"Least sure first ({folder})"
    )
    for i, (state, score) in enumerate(ranked[:top], 1):
        boxes = state.sidecar.get("boxes") or []
        least = min(boxes, key=lambda d: d.get("confidence", 0.0), default=None)
        table.add_row(
            str(i),
            state.image.relative_to(folder).as_posix(),
            str(len(boxes)),
            least["label"] if least else "nothing found",
            flag_rules([f for d in boxes for f in d.get("flags") or []]),
            f"{score:.2f}",
        )
    console.print(table)
    if review is not None:
        try:
            links = link_for_review([state for state, _ in ranked[:top]], review)
        except (OSError, ValueError) as exc:
            raise fail(f"no review folder: {exc}") from None
        console.print(f"linked {len(links)} screenshots into {review}: open it in labelImg ('Open Dir')")
