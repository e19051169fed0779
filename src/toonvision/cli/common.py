"""What every verb shares: the console, the run header, errors, progress bars and the common options.

Only the CLI package imports typer and rich's console; the stages below it report through return values
and callbacks.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from toonvision.data.workspace import Workspace

console = Console()
err = Console(stderr=True)

Root = Annotated[
    Path,
    typer.Option("--root", envvar="TOONVISION_ROOT", help="Workspace root folder.", show_default=True),
]
Task = Annotated[
    str,
    typer.Option(
        "--task", help="binary (cog vs toon), suit (4 suits), name (32 Cog names) or animal (11 Toon animals)."
    ),
]
# The models of the verbs that run the detector and the classifiers together: toonvision.Pipeline.load.
ServingModels = Annotated[
    list[Path] | None,
    typer.Option(
        "--model",
        help="Models to use (run folders, .keras or .onnx files, repeatable; a detector among them if wished); each "
        "replaces its task's default, the workspace's best per task (its .onnx export when there is one).",
    ),
]
ServingDetector = Annotated[
    Path | None,
    typer.Option(
        "--detector", help="The detector (a detect run folder, .keras or .onnx); default: the workspace's newest."
    ),
]
ShippedModels = Annotated[
    bool,
    typer.Option(
        "--shipped/--no-shipped",
        help="Use the models ToonVision ships for the tasks the workspace has no model of its own for (the "
        "workspace's models and --model always come first).",
    ),
]
BoxScore = Annotated[float, typer.Option("--conf", min=0.0, max=1.0, help="Detector score a box needs to be kept.")]
MaxBoxes = Annotated[
    int,
    typer.Option(
        "--max-det",
        min=1,
        help="Boxes the detector keeps per screenshot at most, the highest scores (a bot after the surest few, "
        "or a low --conf on a weak detector).",
    ),
]
Epochs = Annotated[int, typer.Option(help="Epochs to train (the spec: 25; its optimizer comparison: 20).")]
Precision = Annotated[
    str,
    typer.Option(
        help="Arithmetic of training: float32, bfloat16 (mixed: float32 weights, bfloat16 products; faster where "
        "the CPU has AVX512-BF16 or AMX, test accuracy within noise) or auto (bfloat16 where the CPU has it). "
        "Saved models are float32 either way."
    ),
]


def workspace(root: Path) -> Workspace:
    from toonvision.data.workspace import Workspace

    return Workspace(root)


def header(verb: str, **settings: object) -> None:
    """Ultralytics-style run header: every setting as key=value."""
    parts = " ".join(f"[cyan]{k}[/]={v}" for k, v in settings.items())
    console.print(f"[bold]toonvision {verb}[/]: {parts}", highlight=False)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on standard error; raise what this returns to exit with ``code``."""
    from rich.text import Text

    # Never wrapped: one line whatever the terminal's width, for scripts that read it.
    err.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False, soft_wrap=True)
    return typer.Exit(code)


def warn(message: str) -> None:
    """Print ``warning: message`` on standard error."""
    from rich.text import Text

    # Never wrapped: one line whatever the terminal's width, for scripts that read it.
    err.print(Text.assemble(("warning:", "bold yellow"), " ", message), highlight=False, soft_wrap=True)


def progress() -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def epoch_bar(bar: Progress, task_id: TaskID):
    """An ``on_epoch`` hook for training that advances ``task_id`` and shows the epoch's metrics."""

    def on_epoch(epoch: int, logs: dict[str, float]) -> None:
        shown = " ".join(
            f"{k}={v:.3f}" for k, v in logs.items() if k in ("loss", "accuracy", "val_loss", "val_accuracy")
        )
        bar.update(task_id, advance=1, description=f"epoch {epoch + 1}: {shown}")
        if not bar.console.is_terminal:
            # A bar is drawn only on a terminal: a run logged to a file (a long training in the background)
            # gets a line an epoch instead of nothing until it ends.
            task = next(t for t in bar.tasks if t.id == task_id)
            of = f"/{task.total:.0f}" if task.total else ""
            bar.console.print(f"epoch {epoch + 1}{of}: {shown} ({task.elapsed or 0:.0f} s)", highlight=False)

    return on_epoch


def shown_precision(precision: str) -> str:
    from toonvision.learning.backend import resolve_precision

    return f"auto ({resolve_precision('auto')} here)" if precision == "auto" else precision


def tensorflow() -> None:
    """Import TensorFlow quietly before a verb that needs it prints anything."""
    from toonvision.learning.backend import quiet_tensorflow

    quiet_tensorflow()


def unreviewed_left_out(count: int) -> None:
    """What extract and detector training say of the pre-annotations they left out."""
    if count:
        console.print(
            f"{count} unreviewed pre-annotations left out (review them in labelImg, or --include-unreviewed); "
            "'toonvision annotate --rank uncertain' lists them, least sure first"
        )


def shipped_note(models: dict[str, str], out: Console = console) -> None:
    """Say which tasks run on the models ToonVision ships, since the workspace had none of its own for them."""
    from toonvision.learning.zoo import is_shipped

    ours = [task for task, path in models.items() if is_shipped(path)]
    if ours:
        out.print(f"using the models ToonVision ships for: {', '.join(ours)} (the workspace has none of its own)")


def reflow(doc: str | None) -> str | None:
    """A verb's docstring for --help: the lines of each paragraph joined, so that the terminal wraps them at its
    own width (typer's rich mode keeps every line break). Indented lines (lists, commands) keep theirs."""
    if not doc:
        return doc
    import inspect

    paragraphs = []
    for paragraph in inspect.cleandoc(doc).split("\n\n"):
        lines = paragraph.splitlines()
        if any(line.startswith(" ") for line in lines):
            paragraphs.append(paragraph)
        else:
            paragraphs.append(" ".join(line.strip() for line in lines))
    return "\n\n".join(paragraphs)
