"""The synth verb: render the built-in synthetic dataset into a workspace.

Panda3D is imported only when the command runs, so ``toonvision --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from toonvision.cli.common import Root, console, fail, header, workspace
from toonvision.synth.dataset import PRESETS

if TYPE_CHECKING:
    from toonvision.data.workspace import Workspace
    from toonvision.synth.dataset import Summary, SynthConfig
    from toonvision.synth.scene import Conditions


def _preset_help() -> str:
    return "; ".join(f"{p.name}: {p.screenshots} screenshots, {p.description}" for p in PRESETS.values())


def parse_fov(text: str) -> tuple[float, float]:
    """``46-62`` (or one angle, ``55``) as (min, max) degrees; ValueError for anything else."""
    low, _, high = text.partition("-")
    try:
        return float(low), float(high or low)
    except ValueError:
        raise ValueError(f"--fov {text!r}: give MIN-MAX degrees such as 46-62, or one angle") from None


def describe(conditions: Conditions) -> str:
    """The shifted world in a few words, for the run header."""
    parts = [f"fov {conditions.fov[0]:g}-{conditions.fov[1]:g}", f"camera x{conditions.camera_height:g}"]
    parts += [conditions.time_of_day, *(["interface"] if conditions.interface else [])]
    parts += [f"jpeg {conditions.jpeg}"] if conditions.jpeg is not None else []
    parts += [f"distance x{conditions.distance:g}"] if conditions.distance != 1 else []
    return ", ".join(parts)


def synth(
    root: Root = Path("img"),
    preset: Annotated[str, typer.Option("--preset", help=f"dataset shape. {_preset_help()}")] = "seed",
    screenshots: Annotated[
        int | None, typer.Option("--screenshots", "-n", min=1, help="number of screenshots (default: the preset's)")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="same seed and settings give byte-identical files")] = 0,
    size: Annotated[str, typer.Option("--size", help="screenshot size, WIDTHxHEIGHT")] = "1280x720",
    weight: Annotated[
        list[str] | None,
        typer.Option(
            "--weight",
            "-w",
            help="multiply class weights, KEY=FACTOR, repeatable; KEY is a label (toon_cat, cog_bb_flunky), "
            "a suit (cog_bb) or a kind (cog, toon). E.g. --weight toon_cat=3 --weight cog_bb=0.5",
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", "-j", min=0, help="worker processes or Ray tasks (0 = all cores)")
    ] = 0,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="render on Ray: a cluster ('auto', host:port or ray://host:10001) or 'local' (a private local "
            "one); default: worker processes on this machine.",
        ),
    ] = None,
    yolo: Annotated[bool, typer.Option("--yolo", help="also write YOLO .txt files and classes.txt")] = False,
    masks: Annotated[
        bool,
        typer.Option(
            "--masks",
            help="also write per-instance masks to raw/masks/<stem>.mask.png "
            "(0 background, k = k-th box, 255 = unlabelled Toon/Cog)",
        ),
    ] = False,
    fov: Annotated[
        str,
        typer.Option(
            "--fov", help="the camera's horizontal field of view, MIN-MAX degrees, drawn per screenshot (shifted world)"
        ),
    ] = "46-62",
    camera_height: Annotated[
        float, typer.Option("--camera-height", help="every camera height times this, 0.25-4 (shifted world)")
    ] = 1.0,
    distance: Annotated[
        float,
        typer.Option(
            "--distance",
            help="every camera this many times as far from what it films, 0.5-6: 3 draws Toons and Cogs a third as "
            "tall, for a held-out set of small, far-away ones (shifted world)",
        ),
    ] = 1.0,
    time_of_day: Annotated[
        str, typer.Option("--time", help="the light: day, dusk (dimmer, orange) or night (dark, blue) (shifted world)")
    ] = "day",
    interface: Annotated[
        bool,
        typer.Option(
            "--interface",
            help="draw the game's interface over the street: chat and friends buttons, Laff meter, Shtiker Book, "
            "gag toolbar, chat balloons; boxes it mostly hides are not labelled (shifted world)",
        ),
    ] = False,
    jpeg: Annotated[
        int | None,
        typer.Option("--jpeg", help="pass every screenshot through JPEG at this quality, 5-100 (shifted world)"),
    ] = None,
    contact_sheet: Annotated[
        bool,
        typer.Option(
            "--contact-sheet",
            help="write <root>/runs/synth/contact-sheet[-N]/contact_sheet.png (one close-up per class) and exit",
        ),
    ] = False,
) -> None:
    """Render synthetic ToonTown street screenshots with Pascal VOC boxes into <root>/raw/screenshots.

    Rerun the same command after a stop to resume: done screenshots are skipped, others' files left alone.

    With --address, Ray tasks render and send the files back to be written here, so the cluster's nodes need
    not share this disk; the files are the same bytes as without it. A task whose worker dies is retried by
    Ray; one that still fails is reported and the others finish. Where no cluster answers, synth gives up
    within about 30 s (exit 2).

    --fov, --camera-height, --distance, --time, --interface and --jpeg render a shifted world: another camera,
    light, the game's interface, compression. The defaults are the world ToonVision's shipped models learned from; a
    shifted one measures how models carry over, and what fine-tuning on a few screenshots of it gains.
    """
    from toonvision.synth.dataset import SynthConfig, apply_weights, parse_size, resolve_workers
    from toonvision.synth.scene import Conditions

    weight = list(weight or [])
    ws = workspace(root)
    try:
        conditions = Conditions(parse_fov(fov), camera_height, time_of_day, interface, jpeg, distance).validate()
    except ValueError as exc:
        raise fail(str(exc)) from None
    if contact_sheet and not conditions.is_default:
        raise fail(
            "--contact-sheet draws close-ups in the default light: --fov, --camera-height, --distance, --time, "
            "--interface and --jpeg go with rendering screenshots"
        )
    if contact_sheet:
        from toonvision.data.files import new_run_dir
        from toonvision.synth import render_contact_sheet

        out = render_contact_sheet(new_run_dir(ws.runs / "synth", "contact-sheet") / "contact_sheet.png", seed=seed)
        console.print(f"wrote {out}")
        return
    try:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r} (expected one of {', '.join(PRESETS)})")
        width, height = parse_size(size)
        weights = apply_weights(PRESETS[preset].weights, weight)
    except ValueError as exc:
        raise fail(str(exc)) from None
    cfg = SynthConfig.from_preset(
        preset,
        seed=seed,
        screenshots=screenshots,
        width=width,
        height=height,
        weights=weights,
        yolo=yolo,
        masks=masks,
        conditions=conditions,
    )
    try:
        cfg.validate()
    except ValueError as exc:
        raise fail(str(exc)) from None
    # On Ray, 0 means the cluster's CPUs, which only Ray knows.
    n_workers = workers if address else resolve_workers(workers)
    header(
        "synth",
        root=root,
        preset=preset,
        screenshots=cfg.screenshots,
        seed=seed,
        size=f"{width}x{height}",
        workers=n_workers or "auto",
        yolo=yolo,
        masks=masks,
        weights=",".join(weight) or "preset",
        **({"address": address} if address else {}),
        **({} if conditions.is_default else {"world": describe(conditions)}),
    )
    from toonvision.learning.cluster import RayUnavailable

    try:
        summary = run_synth(ws, cfg, n_workers, address=address)
    except RayUnavailable as exc:
        raise fail(str(exc)) from None
    if summary.interrupted:
        console.print("[yellow]interrupted[/yellow]: run the same command again to resume")
        raise typer.Exit(130)
    if summary.errors:
        raise typer.Exit(1)


def run_synth(ws: Workspace, cfg: SynthConfig, workers: int, *, address: str | None = None) -> Summary:
    """Render with a progress bar and print what was rendered (what ``synth`` and the demo show); ``address``:
    render on Ray (raises :class:`~toonvision.learning.cluster.RayUnavailable` where no cluster answers)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from toonvision.synth.dataset import generate

    with Progress(
        TextColumn("rendering"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
    ) as bar:
        task = bar.add_task("synth", total=None)
        summary = generate(
            ws,
            cfg,
            workers=workers,
            on_plan=lambda n: bar.update(task, total=n),
            progress=lambda r: bar.advance(task),
            address=address,
        )
    if summary.settings_changed:
        console.print(
            "[yellow]note:[/yellow] this workspace was generated before with other settings; "
            "existing screenshots were kept as they are"
        )
    for path in summary.conflicts:
        console.print(f"[yellow]left alone:[/yellow] {path} exists with other content")
    for msg in summary.errors:
        console.print(f"[red]failed:[/red] {msg}")
    table = Table(title="boxes per class (this workspace's synthetic screenshots)")
    table.add_column("class")
    table.add_column("boxes", justify="right")
    totals = summary.total_boxes
    for label in sorted(totals):
        table.add_row(label, str(totals[label]))
    cogs = sum(v for k, v in totals.items() if k.startswith("cog_"))
    toons = sum(v for k, v in totals.items() if k.startswith("toon_"))
    table.add_row("[bold]cog / toon[/bold]", f"{cogs} / {toons}")
    console.print(table)
    rate = summary.written / summary.seconds if summary.seconds else 0.0
    console.print(
        f"written={summary.written} skipped={summary.skipped} conflicts={len(summary.conflicts)} "
        f"errors={len(summary.errors)} boxes={sum(totals.values())} seconds={summary.seconds:.1f} "
        f"rate={rate:.2f}/s"
    )
    return summary
