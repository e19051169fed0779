"""Retrain the models ToonVision ships, from nothing, with fixed seeds: render, train, judge, card, install.

    python tools/train_zoo.py                      # everything, into ~/.cache/toonvision-zoo (resumes)
    python tools/train_zoo.py --install            # ... and copy the models and cards into the package
    python tools/train_zoo.py --quick --root /tmp/zoo-quick   # a smoke run of the same steps, minutes long

Every step is a `toonvision` command a user could type (printed as it runs and recorded in the model cards) and
is skipped when its output exists, so the same command after a stop picks up where it was; the detector's
training continues with `train --resume`. The held-out screenshots are rendered with a seed no training set
uses, and each card records its model's figures on them: COCO AP for the detector (as `evaluate` computes it),
accuracy for the classifiers (through ONNX Runtime, as the package runs them).

The package's models (src/toonvision/learning/pretrained/) change only with --install.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
PACKAGE_ZOO = REPO / "src" / "toonvision" / "learning" / "pretrained"
VERSION = 1
HELD_OUT_SEED = 900_000  # no training set is rendered from it (benchmarks/detect_quality.py uses it too)
# Small boxes are few in the held-out set (8 under 60 px of 717): they are judged on one rendered from farther away.
FAR_SEED, FAR_DISTANCE = 910_000, "5"
DETECT_SEED, CROPS_SEED = 1, 2  # the detector's screenshots, and the classifiers' own, larger set


class Recipe:
    """The data and training settings of one zoo, full size or --quick."""

    def __init__(self, quick: bool) -> None:
        self.preset = "balanced"  # every Cog name and Toon animal about equally often: the name and animal tasks
        self.train_screenshots, self.held_out = (120, 40) if quick else (2000, 300)
        self.held_out_far = 40 if quick else 300  # about 170 boxes under 60 px
        # The classifiers learn from crops, and a rendered screenshot is cheap (about 10 a second on 2 cores)
        # against the epochs: 2000 screenshots gave 1538 Cog crops, 48 per name to learn from.
        self.crops_screenshots = 240 if quick else 6000
        # 60 epochs, half the screenshots in mosaics (small, far-away Toons and Cogs), saving the weights' moving
        # average; docs/models.md has each lever's figure (5 last epochs without augmentation cost 0.02 AP50:95).
        epochs, ema = ("2", "0.6") if quick else ("60", "0.995")
        self.detect = ["--imgsz", "640", "--epochs", epochs, "--mosaic", "0.5", "--ema", ema]
        self.detect += ["--seed", "0", "--split-seed", "0"]
        # (architecture, epochs): the fine-grained tasks get the wider network and the longer schedule; each run
        # augments and learns at a tenth of the rate for its last fifth.
        plan = {
            "binary": ("res_convnet_small", 10),
            "suit": ("res_convnet_small", 10),
            "name": ("res_convnet", 30),
            "animal": ("res_convnet", 60),
        }
        self.classifiers = {
            task: ["--model", model, "--augment", "--epochs", str(n), "--lr-step-every", str(max(1, n * 4 // 5))]
            for task, (model, epochs) in plan.items()
            for n in [2 if quick else epochs]
        }


def toonvision(*args: str, log: Path) -> float:
    """Run one toonvision command (output appended to ``log``); returns its seconds, exits on failure."""
    shown = "toonvision " + " ".join(args)
    print(f"$ {shown}", flush=True)
    start = time.perf_counter()
    with log.open("a") as out:
        out.write(f"\n$ {shown}\n")
        out.flush()
        done = subprocess.run([sys.executable, "-m", "toonvision.cli", *args], stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {shown}; see {log}")
    return time.perf_counter() - start


class State:
    """What has been done: the commands run and their seconds, kept in <root>/zoo.json between runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = json.loads(path.read_text()) if path.is_file() else {"steps": {}}

    def done(self, step: str, commands: list[str], upstream: list[str]) -> bool:
        """Whether ``step`` ran with these ``commands`` after the steps it builds on ran with theirs
        (``upstream``): a changed recipe runs the step again, and every step built on it."""
        recorded = self.data["steps"].get(step)
        return recorded is not None and recorded["commands"] == commands and recorded.get("upstream") == upstream

    def record(self, step: str, commands: list[str], upstream: list[str], seconds: float) -> None:
        before = self.data["steps"].get(step, {"seconds": 0.0, "commands": commands, "upstream": upstream})
        same = (before["commands"], before.get("upstream")) == (commands, upstream)
        kept = before["seconds"] if same else 0.0  # a resumed step adds up
        self.data["steps"][step] = {"commands": commands, "upstream": upstream, "seconds": kept + seconds}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2))
        tmp.replace(self.path)

    def commands(self, *steps: str) -> list[str]:
        return [c for s in steps for c in self.data["steps"].get(s, {}).get("commands", [])]


def step(state: State, name: str, commands: list[list[str]], log: Path, after: tuple[str, ...] = ()) -> None:
    """Run ``commands`` as step ``name`` unless they ran already after the steps ``after`` as they are now."""
    shown, upstream = ["toonvision " + " ".join(c) for c in commands], state.commands(*after)
    if state.done(name, shown, upstream):
        print(f"done already: {name}")
        return
    seconds = sum(toonvision(*c, log=log) for c in commands)
    state.record(name, shown, upstream, seconds)


def set_aside(run: Path) -> None:
    """Move a run folder of an earlier recipe out of the way (kept, never deleted) so that the step makes its run
    again under the same name."""
    from toonvision.data.files import new_run_dir

    if not run.exists():
        return
    aside = new_run_dir(run.parent, f"{run.name}-superseded")  # an empty folder, which rename replaces
    run.rename(aside)
    print(f"kept the earlier recipe's {run.name} as {aside.name}")


def train_step(state: State, name: str, command: list[str], run: Path, log: Path, after: tuple[str, ...]) -> None:
    """One training step into ``run``: a stopped run of the same recipe continues (the detector's with
    --resume); a run of another recipe is set aside first."""
    shown, upstream = ["toonvision " + " ".join(command)], state.commands(*after)
    if state.done(name, shown, upstream):
        print(f"done already: {name}")
        return
    started = f"{name}-started"  # what the run folder was started for: resume only the same recipe
    resumable = name == "detect" and state.done(started, shown, upstream) and (run / "progress.json").is_file()
    if not resumable:
        set_aside(run)
        state.record(started, shown, upstream, 0.0)
    seconds = toonvision(*command, *(["--resume"] if resumable else []), log=log)
    state.record(name, shown, upstream, seconds)


def held_out_classifier(onnx: Path, root: Path, task: str) -> dict:
    """Accuracy of an exported classifier on the held-out workspace's crops of its task, per class too."""
    import numpy as np

    from toonvision import Classifier
    from toonvision.data.samples import find_samples, task_samples
    from toonvision.data.taxonomy import task_classes

    clf = Classifier.load(onnx, threads=2)
    classes = task_classes(task)
    pairs = task_samples(find_samples(_workspace(root)), task)
    samples = [sample for sample, _ in pairs]
    truth = np.array([index for _, index in pairs])
    found = []
    for start in range(0, len(samples), 256):
        found += [classes.index(r.label) for r in clf.predict([s.path for s in samples[start : start + 256]])]
    found = np.array(found)
    per_class = {
        c: {"n": int((truth == i).sum()), "accuracy": float((found[truth == i] == i).mean())}
        for i, c in enumerate(classes)
        if (truth == i).any()
    }
    return {"n": len(samples), "accuracy": float((found == truth).mean()), "per_class": per_class}


def _workspace(root: Path):
    from toonvision.data.workspace import Workspace

    return Workspace(root)


def machine() -> dict:
    import tensorflow as tf

    cpu = platform.processor()
    with contextlib.suppress(OSError, StopIteration):  # not Linux: platform's word is all there is
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
    }


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def data_counts(root: Path) -> dict:
    from toonvision.data.detection import load_detection_set

    truths = load_detection_set([_workspace(root).screenshots]).truths
    return {"screenshots": len(truths), "boxes": sum(len(t.boxes) for t in truths)}


def describe_data(data: dict) -> str:
    """The card's data line: what was rendered, how much, and the split."""
    return (
        f"the `{data['preset']}` preset rendered by `toonvision synth` with seed {data['seed']}: "
        f"{data['screenshots']} screenshots, {data['boxes']} boxes; split {data['split']}"
    )


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def newest_evaluation(run: Path, screenshots: Path) -> dict:
    """The figures of ``run``'s newest ``evaluate`` of ``screenshots``: evaluate writes a new folder each time
    (evaluate, evaluate-2, ...), and the newest judged with the package's decoding as it is now."""
    judged = [
        p for p in run.glob("evaluate*/evaluation.json") if json.loads(p.read_text())["screenshots"] == str(screenshots)
    ]
    return json.loads(max(judged, key=lambda p: p.stat().st_mtime).read_text())


def by_size(figures: dict) -> dict:
    return {
        name: {"ap50": b["ap50"], "ap": b["ap50_95"], "truths": b["truths"], "height": b["height_px_at_720"]}
        for name, b in figures["by_size"].items()
    }


def write_card(out: Path, task: str, card: dict) -> None:
    (out / f"{task}.json").write_text(json.dumps(card, indent=2) + "\n")
    held = card["held_out"]
    lines = [
        f"# ToonVision's shipped {task} model (version {card['version']})",
        "",
        f"- Architecture: {card['config']['model']}, {card['parameters']:,} parameters.",
        f"- Data: {describe_data(card['data'])}.",
        f"- Trained in {card['training']['seconds'] / 60:.1f} min on {card['training']['machine']['cores']} CPU cores "
        f"({card['training']['machine']['cpu']}), {card['trained_at']}.",
        f"- Held out: {held['screenshots']} screenshots rendered with seed {HELD_OUT_SEED}, never trained on.",
    ]
    if task == "detect":
        lines += [
            f"- AP50 {held['ap50']:.3f}, AP50:95 {held['ap']:.3f} (pycocotools, as `toonvision evaluate` computes it).",
            "",
            "| class | boxes | AP50 | AP50:95 |",
            "|---|---|---|---|",
            *(
                f"| {n} | {c['truths']} | {_figure(c['ap50'])} | {_figure(c['ap'])} |"
                for n, c in held["per_class"].items()
            ),
            "",
            "| box height at 720 px | boxes | AP50 | AP50:95 |",
            "|---|---|---|---|",
            *(
                f"| {b['height']} ({n}) | {b['truths']} | {_figure(b['ap50'])} | {_figure(b['ap'])} |"
                for n, b in held["by_size"].items()
            ),
        ]
        far = card["held_out_far"]
        lines += [
            "",
            f"Small boxes are few above; {far['screenshots']} screenshots rendered with seed {far['seed']} and "
            f"`--distance {far['distance']:g}` (every camera {far['distance']:g} times as far) judge them: "
            f"AP50 {far['ap50']:.3f}, AP50:95 {far['ap']:.3f} over all their boxes.",
            "",
            "| box height at 720 px | boxes | AP50 | AP50:95 |",
            "|---|---|---|---|",
            *(
                f"| {b['height']} ({n}) | {b['truths']} | {_figure(b['ap50'])} | {_figure(b['ap'])} |"
                for n, b in far["by_size"].items()
            ),
        ]
    else:
        lines += [
            f"- Accuracy {held['accuracy']:.3f} on {held['n']} held-out crops.",
            "",
            "| class | crops | accuracy |",
            "|---|---|---|",
            *(f"| {c} | {v['n']} | {v['accuracy']:.3f} |" for c, v in held["per_class"].items()),
        ]
    lines += ["", "Made by `python tools/train_zoo.py --install` (`<root>`: its --root), which ran:", "", "```"]
    lines += [*card["recipe"], "```", ""]
    (out / f"{task}.md").write_text("\n".join(lines))


def stripped_keras(run_model: Path, into: Path) -> None:
    """The trained model without its optimizer state: what fine-tuning needs, at a third of the size. Made once
    per trained model: saving again writes other bytes (the archive's timestamps) for the same weights."""
    from toonvision.learning.model_files import load_keras_model
    from toonvision.learning.training import save_model

    if not into.is_file() or into.stat().st_mtime < run_model.stat().st_mtime:
        save_model(load_keras_model(run_model), into)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path.home() / ".cache" / "toonvision-zoo")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 120 screenshots, 2 epochs")
    parser.add_argument("--install", action="store_true", help="copy the models and cards into the package")
    args = parser.parse_args()
    root, recipe = args.root.expanduser().resolve(), Recipe(args.quick)
    root.mkdir(parents=True, exist_ok=True)
    state, log = State(root / "zoo.json"), root / "zoo.log"
    train, crops, held = root / "train", root / "crops", root / "held-out"
    print(f"zoo: root={root} quick={args.quick} log={log}")

    render = ["synth", "--preset", recipe.preset]
    step(
        state,
        "render",
        [[*render, "--root", str(train), "-n", str(recipe.train_screenshots), "--seed", str(DETECT_SEED)]],
        log,
    )
    held_command = [*render, "--root", str(held), "-n", str(recipe.held_out), "--seed", str(HELD_OUT_SEED)]
    step(state, "render-held-out", [held_command], log)
    far = root / "held-out-far"
    far_command = [*render, "--root", str(far), "-n", str(recipe.held_out_far), "--seed", str(FAR_SEED)]
    step(state, "render-held-out-far", [[*far_command, "--distance", FAR_DISTANCE]], log)
    detector_run = train / "runs" / "train" / "detect-zoo"
    detect = ["train", "--root", str(train), "--task", "detect", *recipe.detect, "--name", "zoo"]
    train_step(state, "detect", detect, detector_run, log, after=("render",))
    crops_command = [*render, "--root", str(crops), "-n", str(recipe.crops_screenshots), "--seed", str(CROPS_SEED)]
    step(state, "render-crops", [crops_command], log)
    extract = [["extract", "--root", str(crops)], ["extract", "--root", str(held)]]
    step(state, "extract", extract, log, after=("render-crops", "render-held-out"))
    runs, workspaces = {"detect": detector_run}, {"detect": train}
    for task, options in recipe.classifiers.items():
        runs[task], workspaces[task] = crops / "runs" / "train" / f"{task}-zoo", crops
        command = ["train", "--root", str(crops), "--task", task, *options, "--seed", "0", "--split-seed", "0"]
        train_step(state, task, [*command, "--name", "zoo"], runs[task], log, after=("extract",))
    for task, run in runs.items():
        step(state, f"export-{task}", [["export", str(run), "--root", str(workspaces[task])]], log, after=(task,))
    held_screens = held / "raw" / "screenshots"
    judge = ["evaluate", str(detector_run), "--root", str(train), "--screenshots", str(held_screens)]
    step(state, "evaluate-detect", [judge], log, after=("detect", "render-held-out"))
    far_screens = far / "raw" / "screenshots"
    judge_far = ["evaluate", str(detector_run), "--root", str(train), "--screenshots", str(far_screens)]
    step(state, "evaluate-detect-far", [judge_far], log, after=("detect", "render-held-out-far"))

    out = root / "zoo"
    out.mkdir(exist_ok=True)
    made = machine()
    held_data = data_counts(held)
    rendered = {
        train: {"seed": DETECT_SEED, **data_counts(train)},
        crops: {"seed": CROPS_SEED, **data_counts(crops)},
    }
    for task, run in runs.items():
        config = json.loads((run / "config.json").read_text())
        if task == "detect":
            figures = newest_evaluation(run, held_screens)
            held_out = {
                "screenshots": figures["n_screenshots"],
                "ap50": figures["ap50"],
                "ap": figures["ap50_95"],
                "per_class": {
                    name: {"ap50": c["ap50"], "ap": c["ap50_95"], "truths": c.get("truths")}
                    for name, c in figures["per_class"].items()
                },
                "by_size": by_size(figures),
            }
            far_figures = newest_evaluation(run, far_screens)
            held_out_far = {
                "seed": FAR_SEED,
                "distance": float(FAR_DISTANCE),
                "screenshots": far_figures["n_screenshots"],
                "ap50": far_figures["ap50"],
                "ap": far_figures["ap50_95"],
                "by_size": by_size(far_figures),
            }
            steps = ("render", "render-held-out", "render-held-out-far", "detect", "export-detect")
            steps += ("evaluate-detect", "evaluate-detect-far")
        else:
            held_out = {"screenshots": held_data["screenshots"], **held_out_classifier(run / "model.onnx", held, task)}
            steps = ("render-crops", "render-held-out", "extract", task, f"export-{task}")
        shutil.copyfile(run / "model.onnx", out / f"{task}.onnx")
        stripped_keras(run / "model.keras", out / f"{task}.keras")
        metrics = json.loads((run / "metrics.json").read_text())
        card = {
            "task": task,
            "version": VERSION,
            "trained_at": datetime.fromtimestamp((run / "model.keras").stat().st_mtime, UTC).strftime("%Y-%m-%d"),
            "parameters": metrics.get("params"),
            "config": config,
            "data": {
                "preset": recipe.preset,
                **rendered[workspaces[task]],
                "split": config.get("split"),
                "counts": config.get("counts"),
            },
            # The root as the recipe's default spells it, so that the card reads the same on every machine.
            "recipe": [c.replace(str(root), "<root>") for c in state.commands(*steps)],
            "training": {"seconds": metrics.get("seconds"), "machine": made},
            "held_out": {"seed": HELD_OUT_SEED, **held_out},
            **({"held_out_far": held_out_far} if task == "detect" else {}),
            "files": {
                suffix: {"sha256": sha256(out / f"{task}{suffix}"), "bytes": (out / f"{task}{suffix}").stat().st_size}
                for suffix in (".onnx", ".keras")
            },
        }
        write_card(out, task, card)
        figure = f"AP50 {held_out['ap50']:.3f}" if task == "detect" else f"accuracy {held_out['accuracy']:.3f}"
        print(f"{task}: {figure} on held-out; card {out / f'{task}.md'}")
    total = sum(p.stat().st_size for p in out.iterdir())
    print(f"zoo in {out}: {total / 1e6:.1f} MB")
    if args.install:
        PACKAGE_ZOO.mkdir(exist_ok=True)
        for path in sorted(out.iterdir()):
            shutil.copyfile(path, PACKAGE_ZOO / path.name)
        print(f"installed into {PACKAGE_ZOO}")


if __name__ == "__main__":
    main()
