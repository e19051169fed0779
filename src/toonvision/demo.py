"""`toonvision demo`: the main job end to end on the built-in synthetic dataset.

Stages, each recorded in <root>/.toonvision/demo.json with the settings it ran with, so a second run skips
what is done (``--fresh`` redoes everything; results then go to new folders, nothing is deleted):

    synth     render the seed preset into raw/screenshots
    holdout   render a few more screenshots with another seed into <root>/holdout (never trained on)
    extract   crop every labelled box into unsorted/ (screenshots move to raw/processed)
    split     60/20/20 per label into data/{train,validate,test}
    stats     dataset tables and plots under reports/
    compare   baseline vs optimized over re-split runs (runs/compare/demo-<runs>x<epochs>)
    evaluate  the best configuration's best model: confusion matrix and wrong predictions
    suit      a suit model (4 classes) on the Cog crops
    name      a name model (32 classes) on the Cog crops
    explain   heatmaps of test crops and of the worst mistakes, activations and filters of one crop
    predict   every box of the held-out screenshots: kind, suit and name (the models exported to ONNX and run
              with ONNX Runtime, as a bot would), annotated copies
    report    one self-contained HTML file that tells the experiment
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

HOLDOUT_SCREENSHOTS = 4
HOLDOUT_SEED_OFFSET = 10_000  # far from the seeds the main render uses


@dataclass(frozen=True)
class DemoPlan:
    """Everything a demo run does, decided up front so the header can print it."""

    preset: str
    screenshots: int | None
    runs: int
    epochs: int
    task_epochs: int
    seed: int

    @classmethod
    def make(cls, *, runs: int, epochs: int, quick: bool, seed: int) -> DemoPlan:
        if quick:
            # Enough crops that every split holds both kinds; few enough to train in seconds.
            return cls("seed", 100, min(runs, 2), min(epochs, 6), min(epochs, 8), seed)
        return cls("seed", None, runs, epochs, epochs, seed)

    @property
    def experiment(self) -> str:
        return f"demo-{self.runs}x{self.epochs}"


class Stages:
    """Runs named stages once per setting; what each produced is kept for the stages after it."""

    def __init__(self, record_path: Path, fresh: bool, console) -> None:
        self.path = record_path
        self.console = console
        self.record: dict[str, Any] = {}
        if record_path.exists() and not fresh:
            self.record = json.loads(record_path.read_text())
        self.times: dict[str, float | None] = {}

    def run(self, name: str, settings: dict[str, Any], fn: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:
        from toonvision.workspace import write_text_atomic

        key = json.dumps(settings, sort_keys=True)
        done = self.record.get(name)
        if isinstance(done, dict) and done.get("settings") == key and _outputs_exist(done.get("outputs", {})):
            self.console.print(
                f"[dim]stage {name}: done earlier with the same settings, skipped (--fresh redoes it)[/]"
            )
            self.times[name] = None
            return done.get("outputs", {})
        self.console.rule(f"[bold]{name}")
        start = time.perf_counter()
        outputs = fn() or {}
        self.times[name] = time.perf_counter() - start
        self.record[name] = {"settings": key, "outputs": outputs}
        write_text_atomic(self.path, json.dumps(self.record, indent=2))
        return outputs


def _outputs_exist(outputs: dict[str, Any]) -> bool:
    return all(Path(v).exists() for k, v in outputs.items() if k.endswith("path"))


def demo_command(
    root: Annotated[Path, typer.Option(help="Workspace root of the demo.")] = Path("demo"),
    runs: Annotated[int, typer.Option(min=1, help="Re-split runs of the comparison (the spec: 200).")] = 3,
    epochs: Annotated[int, typer.Option(min=1, help="Epochs per training run (the spec: 25).")] = 10,
    quick: Annotated[
        bool, typer.Option(help="A first look in under two minutes: 100 screenshots, 2 runs of 6 epochs.")
    ] = False,
    fresh: Annotated[
        bool, typer.Option(help="Redo every stage into new result folders (your own files are never removed).")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic dataset and of the experiment.")] = 0,
) -> None:
    """The main job end to end on the built-in synthetic dataset, ending in an HTML report.

    Renders the seed preset (about 650 crops shaped like the spec's data), extracts, splits and plots it,
    compares the spec's baseline and optimized models over re-split runs, evaluates the best model, trains
    the suit and name models, explains what the models look at, predicts on screenshots no model has seen,
    and writes the report. Finished stages are skipped when run again with the same settings.
    """
    from toonvision.cli import _quiet_tensorflow, _workspace, app_command, console, header

    _quiet_tensorflow()
    plan = DemoPlan.make(runs=runs, epochs=epochs, quick=quick, seed=seed)
    ws = _workspace(root)
    ws.init()
    header(
        "demo",
        root=root,
        preset=plan.preset,
        screenshots=plan.screenshots or "preset",
        holdout=HOLDOUT_SCREENSHOTS,
        runs=plan.runs,
        epochs=plan.epochs,
        task_epochs=plan.task_epochs,
        configs="baseline,optimized",
        quick=quick,
        fresh=fresh,
        seed=seed,
    )
    stages = Stages(ws.state / "demo.json", fresh, console)
    data_key = {"preset": plan.preset, "screenshots": plan.screenshots, "seed": seed}
    train_key = {**data_key, "runs": plan.runs, "epochs": plan.epochs}
    synth = app_command("synth")
    synth_common = dict(size="1280x720", weight=[], workers=0, yolo=False, masks=False, contact_sheet=False)

    stages.run(
        "synth",
        data_key,
        lambda: synth(root=root, preset=plan.preset, screenshots=plan.screenshots, seed=seed, **synth_common),
    )
    holdout_root = root / "holdout"
    stages.run(
        "holdout",
        data_key,
        lambda: (
            synth(
                root=holdout_root,
                preset=plan.preset,
                screenshots=HOLDOUT_SCREENSHOTS,
                seed=seed + HOLDOUT_SEED_OFFSET,
                **synth_common,
            )
            or {"path": str(holdout_root / "raw" / "screenshots")}
        ),
    )
    extract, split, stats = (app_command(v) for v in ("extract", "split", "stats"))
    stages.run("extract", data_key, lambda: extract(root=root, filter="", move=True, dry_run=False))
    stages.run(
        "split", data_key, lambda: split(root=root, ratio=(0.6, 0.2, 0.2), seed=seed, folds=0, fold=0, dry_run=False)
    )
    stages.run(
        "stats",
        data_key,
        lambda: stats(root=root, desired_label=20, desired_animal=58, desired_suit=160, desired_binary=640, plots=True),
    )

    def compare_stage() -> dict[str, Any]:
        from toonvision.training import new_run_dir

        # A fresh demo never reuses an older experiment's folder: it starts a new one beside it.
        name = plan.experiment
        if fresh and (ws.runs / "compare" / name).exists():
            name = new_run_dir(ws.runs / "compare", name).name
        app_command("compare")(
            root=root,
            config=None,
            task="binary",
            runs=plan.runs,
            epochs=plan.epochs,
            seed=seed,
            folds=0,
            class_weight=None,
            pad=False,
            workers=0,
            threads=1,
            address=None,
            name=name,
        )
        return {"path": str(ws.runs / "compare" / name)}

    experiment = Path(stages.run("compare", train_key, compare_stage)["path"])
    from toonvision.report import Experiment

    best_config = Experiment.load(experiment).ranking()[0]
    best_model = experiment / "best" / f"{best_config}.keras"
    stages.run(
        "evaluate",
        {**train_key, "model": str(best_model)},
        lambda: (
            app_command("evaluate")(model_path=best_model, root=root, task="binary", top=32)
            or {"path": str(best_model.parent / "evaluate" / best_model.stem / "evaluation.json")}
        ),
    )

    def task_stage(task: str) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            return {"path": str(train_task_model(ws, task, plan.task_epochs, seed, console))}

        return run

    task_runs = {
        task: Path(stages.run(task, {**data_key, "epochs": plan.task_epochs}, task_stage(task))["path"])
        for task in ("suit", "name")
    }
    stages.run(
        "explain",
        {**train_key, "model": str(best_model)},
        lambda: explain_examples(ws, root, best_model) or {"path": str(best_model.parent / "explain")},
    )
    predictions = experiment / "predictions"
    stages.run(
        "predict",
        {**train_key, "model": str(best_model), **{t: str(p) for t, p in task_runs.items()}},
        lambda: predict_holdout(holdout_root, predictions, best_model, task_runs, console),
    )

    def report_stage() -> dict[str, Any]:
        from toonvision.report import build_report

        path = build_report(ws, experiment, extras=[*task_runs.values(), predictions])
        console.print(f"wrote {path}")
        return {"path": str(path)}

    # The report is cheap and reads everything above: it is always rewritten.
    stages.record.pop("report", None)
    report = Path(stages.run("report", train_key, report_stage)["path"])
    closing_summary(console, experiment, best_config, task_runs, predictions, report, stages.times)


def train_task_model(ws, task: str, epochs: int, seed: int, console) -> Path:
    """A suit or name model on the Cog crops of the workspace's split (the spec's baseline recipe, which
    did better than the optimized one on these tasks in our 10-run experiments)."""
    from dataclasses import replace

    from toonvision.cli import _progress
    from toonvision.training import epoch_progress, preset, read_json, train_run

    cfg = replace(preset("baseline", epochs=epochs, task=task), name="demo", seed=seed).validate()
    with _progress() as progress:
        bar = progress.add_task(f"{task}: loading crops", total=epochs)
        out = train_run(ws, cfg, callbacks=[epoch_progress(progress, bar)])
    test = read_json(out / "metrics.json")["test"]
    if test:
        console.print(f"{task}: test accuracy {test['accuracy']:.4f} on {test['n']} crops -> {out}")
    return out


def explain_examples(ws, root: Path, model: Path) -> None:
    """Heatmaps of two test Cogs and two test Toons, one crop's activations and filters, the worst mistakes."""
    from toonvision.cli import app_command
    from toonvision.datasets import find_samples

    explain = app_command("explain")
    tests = [s for s in find_samples(ws) if s.split == "test"]
    picks = [s.path for kind in ("cog", "toon") for s in [t for t in tests if t.kind == kind][:2]]
    common = dict(root=root, layer=None, class_=None, compare=None, cam_layer=None, steps=40, task="binary", top=8)
    explain(model_path=model, crops=picks, activations=False, filters=False, heatmaps=True, wrong=False, **common)
    explain(model_path=model, crops=picks[:1], activations=True, filters=True, heatmaps=False, wrong=False, **common)
    explain(model_path=model, crops=None, activations=False, filters=False, heatmaps=False, wrong=True, **common)


def predict_holdout(holdout_root: Path, out: Path, binary: Path, task_runs: dict[str, Path], console) -> dict:
    """Every annotated box of the held-out screenshots through the binary, suit and name models, as a bot
    would run them: exported to ONNX (into <out>/models/) and classified with ONNX Runtime."""
    from rich.table import Table

    from toonvision.export import export
    from toonvision.inference import Classifier
    from toonvision.prediction import annotate, collect_targets, predict_targets
    from toonvision.training import write_json

    shots = sorted((holdout_root / "raw" / "screenshots").glob("*.png"))
    targets = collect_targets(shots)
    sources = {"binary": binary, **task_runs}
    exported = {task: export(src, out / "models" / f"{task}.onnx").path for task, src in sources.items()}
    models = {task: Classifier.load(path) for task, path in exported.items()}
    predict_targets(targets, models)
    out.mkdir(parents=True, exist_ok=True)
    table = Table("screenshot", "box", "prediction", "confidence", "true label", title="Held-out screenshots")
    for t in targets:
        for p in t.predictions:
            conf = p.name_confidence if p.name else p.kind_confidence
            table.add_row(t.image.name, " ".join(map(str, p.box or ())), p.label, f"{conf:.3f}", p.true_label or "")
        console.print(f"wrote {annotate(t, out / f'{t.image.stem}.predicted.png')}")
    console.print(table)
    write_json(
        out / "predictions.json",
        {
            "models": {t: str(m) for t, m in sources.items()},
            "onnx": {t: str(m) for t, m in exported.items()},
            "predictions": [p.to_dict() for t in targets for p in t.predictions],
        },
    )
    return {"path": str(out / "predictions.json")}


def closing_summary(
    console,
    experiment: Path,
    best_config: str,
    task_runs: dict[str, Path],
    predictions: Path,
    report: Path,
    times: dict[str, float | None],
) -> None:
    from rich.table import Table

    from toonvision.report import _correct, _read

    console.rule("[bold]demo finished")
    results = Table("result", "value", title="What the demo found")
    summary = (_read(experiment / "summary.json") or {}).get("summary", {})
    for name, metrics in summary.items():
        acc = metrics.get("accuracy", {})
        if acc:
            results.add_row(f"binary {name}: median test accuracy", f"{acc['median']:.4f} over {acc['n']} runs")
    ev = _read(experiment / "best" / "evaluate" / best_config / "evaluation.json") or {}
    if ev.get("test"):
        results.add_row(f"binary best model ({best_config})", f"{ev['test']['accuracy']:.4f} test accuracy")
    for task, run in task_runs.items():
        test = (_read(run / "metrics.json") or {}).get("test") or {}
        if test:
            results.add_row(f"{task} model", f"{test['accuracy']:.4f} test accuracy on {test['n']} crops")
    preds = (_read(predictions / "predictions.json") or {}).get("predictions", [])
    if preds:
        right = sum(_correct(p) for p in preds)
        kinds = sum(p.get("kind") == (p.get("true_label") or "").split("_")[0] for p in preds)
        results.add_row(
            "held-out screenshots", f"{kinds} of {len(preds)} boxes right kind, {right} fully right (suit, name)"
        )
    console.print(results)
    timing = Table("stage", "seconds", title="Time per stage")
    for name, seconds in times.items():
        timing.add_row(name, "skipped (done earlier)" if seconds is None else f"{seconds:.1f}")
    timing.add_row("total", f"{sum(s or 0 for s in times.values()):.1f}")
    console.print(timing)
    console.print(f"[bold]report:[/] {report}  (open it in a browser)")
