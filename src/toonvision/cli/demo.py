"""The demo verb: the main job end to end on the built-in synthetic dataset.

Stages, each recorded in <root>/.toonvision/demo.json with the settings it ran with, so a second run skips
what is done (``--fresh`` redoes everything; results then go to new folders, nothing is deleted):

    synth     render the seed preset into raw/screenshots
    holdout   render a few more screenshots with another seed into <root>/holdout (never trained on)
    extract   crop every labelled box into unsorted/ (screenshots move to raw/processed)
    split     60/20/20 per label into data/{train,validate,test}
    stats     dataset tables and plots (runs/stats/dataset)
    compare   baseline, article and optimized over re-split runs (runs/compare/demo-<runs>x<epochs>)
    evaluate  the best configuration's best model: confusion matrix and wrong predictions
    suit      a suit model (4 classes) on the Cog crops
    name      a name model (32 classes) on the Cog crops
    animal    an animal model (11 classes) on the Toon crops
    explain   heatmaps of test crops and of the worst mistakes, activations and filters of one crop
    detect    a detector (toon + 4 suits) fine-tuned on the rendered screenshots from the one ToonVision ships
              (from scratch where it ships none)
    detect-holdout  more held-out screenshots (<root>/holdout-detect) to measure it on
    detect-evaluate COCO AP of the detector on them, PR curves, worst screenshots
    shipped-evaluate  the same for the detector ToonVision ships, as it is (runs/evaluate/shipped-detect)
    predict   every box of the held-out screenshots: kind, suit and name or animal (the models exported to ONNX and run
              with ONNX Runtime, as a bot would), annotated copies; then the same screenshots without their
              annotations: the detector finds the boxes, the classifiers label them
    report    one self-contained HTML file that tells the experiment, in a new <experiment>/report[-N] folder
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from toonvision.cli.common import console, header, tensorflow, workspace
from toonvision.serving.thresholds import PICTURE_SCORE

if TYPE_CHECKING:
    from toonvision.data.workspace import Workspace

HOLDOUT_SCREENSHOTS = 4
HOLDOUT_SEED_OFFSET = 10_000  # far from the seeds the main render uses
DETECT_HOLDOUT_SCREENSHOTS = 30  # enough boxes (~70) for an AP that means something
DETECT_HOLDOUT_SEED_OFFSET = 20_000


@dataclass(frozen=True)
class DemoPlan:
    """Everything a demo run does, decided up front so the header can print it."""

    preset: str
    screenshots: int | None
    runs: int
    epochs: int
    task_epochs: int
    seed: int
    configs: tuple[str, ...] = ("baseline", "article")
    detect_epochs: int = 12
    detect_imgsz: int = 448  # a 1280x720 screenshot at 35%: the demo's detector trains in about a minute
    filter_steps: int = 40  # gradient-ascent steps per filter pattern

    @classmethod
    def make(cls, *, runs: int, epochs: int, quick: bool, seed: int) -> DemoPlan:
        if quick:
            # Enough crops that every split holds both kinds; few enough to train in seconds. One epoch of
            # fine-tuning shows the shipped detector adapting; patterns of 15 steps already show each filter's
            # colours and strokes.
            return cls(
                "seed", 100, min(runs, 2), min(epochs, 6), min(epochs, 8), seed, ("baseline", "article"), 1, 320, 15
            )
        # The article's baseline, what its code ran, and what it meant (see toonvision.learning.training).
        return cls("seed", None, runs, epochs, epochs, seed, ("baseline", "article", "optimized"))

    @property
    def experiment(self) -> str:
        return f"demo-{self.runs}x{self.epochs}"


class Stages:
    """Runs named stages once per setting; what each produced is kept for the stages after it."""

    def __init__(self, record_path: Path, fresh: bool, console: Console) -> None:
        self.path = record_path
        self.console = console
        self.record: dict[str, Any] = {}
        if record_path.exists() and not fresh:
            self.record = json.loads(record_path.read_text())
        self.times: dict[str, float | None] = {}

    def run(self, name: str, settings: dict[str, Any], fn: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:
        from toonvision.data.files import write_text_atomic

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


def demo(
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
    compares the article's baseline, what its code ran for its optimized model (article) and what it meant
    (optimized, with augmentation) over re-split runs, evaluates the best model, trains the suit, name and
    animal models, explains what the models look at, fine-tunes a detector from the one ToonVision ships and
    judges both on held-out screenshots, predicts on screenshots no model has seen, and writes the report.
    Finished stages are skipped when run again with the same settings.
    """
    from toonvision.cli.data import run_extract, run_split, run_stats
    from toonvision.cli.interpretation import make_explainer, run_explanations
    from toonvision.cli.learning import (
        run_comparison,
        run_detector_evaluation,
        run_detector_training,
        run_evaluation,
    )
    from toonvision.cli.synth import run_synth
    from toonvision.data.files import new_run_dir
    from toonvision.data.images import load_image
    from toonvision.data.samples import find_samples
    from toonvision.data.stats import Desired
    from toonvision.learning.experiments import Experiment, ExperimentRecord
    from toonvision.learning.model_files import locate_model
    from toonvision.learning.tasks import DETECT
    from toonvision.learning.training import recipe
    from toonvision.learning.zoo import fine_tune_lr, shipped
    from toonvision.synth.dataset import SynthConfig, resolve_workers

    tensorflow()
    plan = DemoPlan.make(runs=runs, epochs=epochs, quick=quick, seed=seed)
    # The demo's detector is fine-tuned from the one ToonVision ships, as a user with a few screenshots of their
    # own would train theirs (at its input size and a tenth of the learning rate: what keeps what it knows);
    # from scratch where this ToonVision ships none.
    ours = shipped(DETECT, ".keras")
    start = str(ours.path) if ours is not None else None
    imgsz = int(ours.config.get("input_width", plan.detect_imgsz)) if ours is not None else plan.detect_imgsz
    ws = workspace(root)
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
        detect_epochs=plan.detect_epochs,
        detect_imgsz=imgsz,
        detect_from="shipped" if start else "scratch",
        filter_steps=plan.filter_steps,
        configs=",".join(plan.configs),
        quick=quick,
        fresh=fresh,
        seed=seed,
    )
    stages = Stages(ws.state / "demo.json", fresh, console)
    data_key = {"preset": plan.preset, "screenshots": plan.screenshots, "seed": seed}
    train_key = {**data_key, "runs": plan.runs, "epochs": plan.epochs, "configs": list(plan.configs)}
    workers = resolve_workers(0)

    def render(target: Workspace, screenshots: int | None, render_seed: int) -> dict[str, Any]:
        cfg = SynthConfig.from_preset(plan.preset, seed=render_seed, screenshots=screenshots)
        run_synth(target, cfg, workers)
        return {"path": str(target.screenshots)}

    stages.run("synth", data_key, lambda: render(ws, plan.screenshots, seed))
    holdout = workspace(root / "holdout")
    stages.run("holdout", data_key, lambda: render(holdout, HOLDOUT_SCREENSHOTS, seed + HOLDOUT_SEED_OFFSET))
    stages.run("extract", data_key, lambda: {"crops": len(run_extract(ws, move=True).crops_written)})
    stages.run("split", data_key, lambda: run_split(ws, (0.6, 0.2, 0.2), seed=seed))
    stages.run("stats", data_key, lambda: {"path": str(run_stats(ws, Desired()))})

    def compare_stage() -> dict[str, Any]:
        # A fresh demo never reuses an older experiment's folder: it starts a new one beside it.
        name = plan.experiment
        if fresh and (ws.runs / "compare" / name).exists():
            name = new_run_dir(ws.runs / "compare", name).name
        configs = tuple(recipe(c, epochs=plan.epochs).validate() for c in plan.configs)
        exp = Experiment(name=name, task="binary", configs=configs, runs=plan.runs, seed=seed)
        return {"path": str(run_comparison(ws, exp))}

    experiment = Path(stages.run("compare", train_key, compare_stage)["path"])
    best_config = ExperimentRecord.load(experiment).ranking()[0]
    best = locate_model(ExperimentRecord.load(experiment).best_model(best_config))
    evaluated = stages.run(
        "evaluate",
        {**train_key, "model": str(best.path)},
        lambda: {"path": str(run_evaluation(ws, best, top=32) / "evaluation.json")},
    )

    def task_stage(task: str) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            return {"path": str(train_task_model(ws, task, plan.task_epochs, seed))}

        return run

    task_runs = {
        task: Path(stages.run(task, {**data_key, "epochs": plan.task_epochs}, task_stage(task))["path"])
        for task in ("suit", "name", "animal")
    }

    def explain_stage() -> dict[str, Any]:
        """Heatmaps of two test Cogs and two test Toons and of the worst mistakes; one crop's activations and
        every filter pattern."""
        explainer = make_explainer(best)
        tests = [s for s in find_samples(ws) if s.split == "test"]
        picks = [s.path for kind in ("cog", "toon") for s in [t for t in tests if t.kind == kind][:2]]
        crops = [(p, load_image(p, pad=best.pad)) for p in picks]
        out = run_explanations(ws, best, explainer, crops, heatmaps=True, wrong_top=8)
        # One crop's activations and every filter pattern, beside the heatmaps.
        run_explanations(
            ws,
            best,
            explainer,
            crops[:1],
            activations=True,
            filter_layers=[layer.name for layer in explainer.conv_layers],
            steps=plan.filter_steps,
            into=out,
        )
        return {"path": str(out)}

    stages.run("explain", {**train_key, "model": str(best.path), "filter_steps": plan.filter_steps}, explain_stage)

    detect_key = {**data_key, "epochs": plan.detect_epochs, "imgsz": imgsz, "weights": start, "lr": "fine-tune"}

    def detect_stage() -> dict[str, Any]:
        from toonvision.learning.detector_training import DetectConfig

        lr = fine_tune_lr(DETECT) if start else DetectConfig().lr
        cfg = DetectConfig.for_width(imgsz, epochs=plan.detect_epochs, seed=seed, weights=start, lr=lr)
        out = run_detector_training(ws, cfg.validate())
        return {"path": str(out / "model.keras")}

    detector = Path(stages.run("detect", detect_key, detect_stage)["path"]).parent
    detect_holdout = workspace(root / "holdout-detect")
    stages.run(
        "detect-holdout",
        {**data_key, "screenshots": DETECT_HOLDOUT_SCREENSHOTS},
        lambda: render(detect_holdout, DETECT_HOLDOUT_SCREENSHOTS, seed + DETECT_HOLDOUT_SEED_OFFSET),
    )
    detected = stages.run(
        "detect-evaluate",
        {**detect_key, "model": str(detector), "screenshots": DETECT_HOLDOUT_SCREENSHOTS},
        lambda: {
            "path": str(
                run_detector_evaluation(ws, locate_model(detector), screenshots=[detect_holdout.screenshots], top=6)
                / "evaluation.json"
            )
        },
    )
    shipped_evaluation: list[Path] = []
    if (served := shipped(DETECT)) is not None:
        judged = stages.run(
            "shipped-evaluate",
            {**data_key, "model": str(served.path), "screenshots": DETECT_HOLDOUT_SCREENSHOTS},
            lambda: {
                "path": str(
                    run_detector_evaluation(ws, locate_model(served.path), screenshots=[detect_holdout.screenshots])
                )
            },
        )
        shipped_evaluation.append(Path(judged["path"]))
    predictions = experiment / "predictions"
    stages.run(
        "predict",
        {
            **train_key,
            "model": str(best.path),
            **{t: str(p) for t, p in task_runs.items()},
            "detector": str(detector),
        },
        lambda: predict_holdout(holdout.screenshots, predictions, best.path, task_runs, detector),
    )

    def report_stage() -> dict[str, Any]:
        from toonvision.report.build import build_report

        extras = [*task_runs.values(), detector, *shipped_evaluation, predictions]
        path = build_report(ws, experiment, extras=extras)
        console.print(f"wrote {path}")
        return {"path": str(path)}

    # The report is cheap and reads everything above: it is always made again, into a folder of its own
    # (report, report-2...), so an earlier one stays as it was. demo.json records where the newest is.
    stages.record.pop("report", None)
    report = Path(stages.run("report", train_key, report_stage)["path"])
    closing_summary(
        experiment,
        best_config,
        Path(evaluated["path"]),
        task_runs,
        Path(detected["path"]),
        predictions,
        report,
        stages.times,
        shipped_evaluation[0] / "evaluation.json" if shipped_evaluation else None,
    )


def train_task_model(ws: Workspace, task: str, epochs: int, seed: int) -> Path:
    """A suit or name model on the Cog crops, or an animal model on the Toon crops, of the workspace's split
    (the spec's baseline recipe, which did better than the others on the suit and name tasks in our 10-run
    experiments)."""
    from dataclasses import replace

    from toonvision.cli.learning import run_training
    from toonvision.learning.training import recipe

    cfg = replace(recipe("baseline", epochs=epochs, task=task), name="demo", seed=seed).validate()
    return run_training(ws, cfg)


def predict_holdout(
    screenshots: Path, out: Path, binary: Path, task_runs: dict[str, Path], detector: Path
) -> dict[str, Any]:
    """Every annotated box of the held-out screenshots through the binary, suit, name and animal models, as a bot
    would run them: exported to ONNX (into <out>/models/) and classified with ONNX Runtime. Then the same
    screenshots as a bot sees them, without annotations: the detector's boxes, classified the same way."""
    from toonvision.data.files import write_json
    from toonvision.serving.export import export
    from toonvision.serving.pipeline import Pipeline
    from toonvision.serving.prediction import Target, collect_targets, predict_targets

    shots = sorted(screenshots.glob("*.png"))
    sources = {"binary": binary, **task_runs, "detect": detector}
    exported = {task: export(src, out / "models" / f"{task}.onnx").path for task, src in sources.items()}
    pipe = Pipeline.load(
        out, models=[exported[t] for t in exported if t != "detect"], detector=exported["detect"], conf=PICTURE_SCORE
    )
    targets = predict_targets(collect_targets(shots), pipe)
    found = predict_targets([Target(shot, detect=True) for shot in shots], pipe)
    out.mkdir(parents=True, exist_ok=True)
    for t in found:
        console.print(f"wrote {t.results.save(out / f'{t.image.stem}.detected.png')}")
    table = Table("screenshot", "box", "prediction", "confidence", "true label", title="Held-out screenshots")
    for t in targets:
        for b in t.results.boxes:
            table.add_row(
                t.image.name, " ".join(map(str, b.xyxy or ())), b.shown, f"{b.confidence:.3f}", b.true_label or ""
            )
        console.print(f"wrote {t.results.save(out / f'{t.image.stem}.predicted.png')}")
    console.print(table)
    write_json(
        out / "predictions.json",
        {
            "models": {t: str(m) for t, m in sources.items()},
            "detect_threshold": PICTURE_SCORE,
            "onnx": pipe.models,
            "predictions": [{"source": str(t.image), **b.to_dict()} for t in targets for b in t.results.boxes],
            "detected": [{"source": str(t.image), **b.to_dict()} for t in found for b in t.results.boxes],
        },
    )
    return {"path": str(out / "predictions.json")}


def closing_summary(
    experiment: Path,
    best_config: str,
    evaluation: Path,
    task_runs: dict[str, Path],
    detection: Path,
    predictions: Path,
    report: Path,
    times: dict[str, float | None],
    shipped_detection: Path | None = None,
) -> None:
    from toonvision.data.files import read_json
    from toonvision.serving.prediction import fully_right

    console.rule("[bold]demo finished")
    results = Table("result", "value", title="What the demo found")
    summary = (read_json(experiment / "summary.json") or {}).get("summary", {})
    for name, metrics in summary.items():
        acc = metrics.get("accuracy", {})
        if acc:
            results.add_row(f"binary {name}: median test accuracy", f"{acc['median']:.4f} over {acc['n']} runs")
    ev = read_json(evaluation) or {}
    if ev.get("test"):
        results.add_row(f"binary best model ({best_config})", f"{ev['test']['accuracy']:.4f} test accuracy")
    for task, run in task_runs.items():
        test = (read_json(run / "metrics.json") or {}).get("test") or {}
        if test:
            results.add_row(f"{task} model", f"{test['accuracy']:.4f} test accuracy on {test['n']} crops")
    for what, path in (("detector (toon + 4 suits)", detection), ("the detector ToonVision ships", shipped_detection)):
        det = (read_json(path) or {}) if path is not None else {}
        if det.get("ap50") is not None:
            results.add_row(
                what,
                f"AP50 {det['ap50']:.3f}, AP50:95 {det['ap50_95']:.3f} on {det.get('n_screenshots')} held-out "
                "screenshots",
            )
    preds = (read_json(predictions / "predictions.json") or {}).get("predictions", [])
    if preds:
        right = sum(fully_right(p) for p in preds)
        kinds = sum(p.get("kind") == (p.get("true_label") or "").split("_")[0] for p in preds)
        results.add_row(
            "held-out screenshots",
            f"{kinds} of {len(preds)} boxes right kind, {right} fully right (suit and name, or animal)",
        )
    console.print(results)
    timing = Table("stage", "seconds", title="Time per stage")
    for name, seconds in times.items():
        timing.add_row(name, "skipped (done earlier)" if seconds is None else f"{seconds:.1f}")
    timing.add_row("total", f"{sum(s or 0 for s in times.values()):.1f}")
    console.print(timing)
    console.print(f"[bold]report:[/] {report}  (open it in a browser)")
