"""The ``toonvision`` command: one entry point, one verb per job.

Every verb lives in this package, one module per stage of the pipeline, and calls the stages' functions
with explicit arguments. Only typer, rich and the stages' light modules are imported when the command
starts; each verb imports what it needs (TensorFlow, Panda3D, Ray, matplotlib) when it runs, so
``toonvision --help`` is quick and works even when an optional dependency is broken.
"""

from __future__ import annotations

import typer

from toonvision.cli import annotate, data, demo, interpretation, learning, report, review, serving, synth, watch
from toonvision.cli.common import fail, reflow

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
        "unsorted/{cog,toon}, data/{train,validate,test}/{cog,toon}; results go to a new folder under runs/."
    ),
)

VERBS = (
    # the data stage
    data.labels,
    synth.synth,
    data.extract,
    data.split,
    data.unsplit,
    data.stats,
    # learning
    learning.models,
    learning.train,
    learning.optimizers,
    learning.compare,
    learning.evaluate,
    # interpretation, serving (the live mode, model-assisted labelling, its review page), the report, all at once
    interpretation.explain,
    serving.predict,
    serving.export,
    watch.watch,
    annotate.annotate,
    review.review,
    report.report,
    demo.demo,
)
for verb in VERBS:
    app.command(verb.__name__, help=reflow(verb.__doc__))(verb)


def main() -> None:
    """The console script: the app, with a missing or broken dependency said in one line."""
    try:
        app()
    except ImportError as exc:
        # A verb imports what it needs when it runs; a broken library stops only the verbs that need it.
        stop = fail(
            f"this verb needs {exc.name or 'a library'}, which cannot be imported ({exc}); reinstall ToonVision's "
            "dependencies (make venv, or pip install -e .)"
        )
        raise SystemExit(stop.exit_code) from None
