"""Shared pieces of the benchmarks: a seed-preset workspace, FLOP counts and a matrix-multiply peak."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_ROOT = Path(os.environ.get("TOONVISION_BENCH_ROOT", Path.home() / ".cache" / "toonvision-bench"))


def seed_workspace(root: Path = DEFAULT_ROOT, preset: str = "seed") -> Path:
    """A workspace holding the synthetic seed preset, extracted and split (made once, then reused)."""
    from toonvision.data.samples import find_samples
    from toonvision.data.workspace import Workspace

    ws = Workspace(root)
    if not (ws.data / "train").exists() or not find_samples(ws):
        cli = [sys.executable, "-m", "toonvision.cli"]
        for args in (["synth", "--preset", preset], ["extract", "--move"], ["split"]):
            print(f"preparing {root}: toonvision {' '.join(args)}", flush=True)
            subprocess.run([*cli, *args, "--root", str(root)], check=True, stdout=subprocess.DEVNULL)
    return root


def forward_flops(model) -> int:
    """Multiply-adds x 2 of the convolutions and dense layers for one input (the rest is negligible)."""
    total = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            _, h, w, cout = layer.output.shape
            total += 2 * kh * kw * cin * cout * h * w
        elif kind == "Dense":
            total += 2 * layer.input.shape[-1] * layer.units
    return int(total)


def matmul_peak_gflops(n: int = 2048, repeats: int = 5, dtype: str = "float32") -> float:
    """Matrix-multiply throughput of this machine through TensorFlow (all cores), float32 or bfloat16."""
    import tensorflow as tf

    a = tf.cast(tf.random.uniform((n, n)), dtype)
    b = tf.cast(tf.random.uniform((n, n)), dtype)
    tf.matmul(a, b).numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        c = tf.matmul(a, b)
    c.numpy()
    seconds = (time.perf_counter() - start) / repeats
    return 2 * n**3 / seconds / 1e9


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class EpochClock:
    """An ``on_epoch`` hook for :func:`toonvision.learning.training.fit` that records every epoch's duration in
    ``.seconds``: the time between two epochs' ends, the first from the clock's making (so it also holds the
    run's set-up: steady state is ``seconds[1:]``)."""

    def __init__(self, then: Any = None) -> None:
        self.seconds: list[float] = []
        self.then = then
        self.last = time.perf_counter()

    def __call__(self, epoch: int, logs: dict) -> None:
        now = time.perf_counter()
        self.seconds.append(now - self.last)
        self.last = now
        if self.then is not None:
            self.then(epoch, logs)


def epoch_timer() -> Any:
    """A Keras callback that records every epoch's duration (validation included) in ``.seconds``."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []
            self.start = 0.0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.seconds.append(time.perf_counter() - self.start)

    return EpochTimer()


def workspace_models(root: Path) -> tuple[dict[str, Any], Any]:
    """The best classifier per task and the newest detector of the workspace at ``root`` (what predict, watch and
    annotate pick); exits naming what is missing and how to get it."""
    from toonvision.data.workspace import Workspace
    from toonvision.learning.model_files import find_best_models, newest_detector

    runs = Workspace(root).runs
    best, detector = find_best_models(runs), newest_detector(runs)
    missing = [t for t in ("binary", "suit", "name", "animal") if t not in best] + ([] if detector else ["detect"])
    if missing:
        print(
            f"{root} has no {', '.join(missing)} model: these benchmarks need a workspace with a detector and binary, "
            "suit, name and animal models; make one with 'make demo' (in demo/) or 'toonvision demo --root DIR' and "
            "give --root DIR",
            file=sys.stderr,
        )
        raise SystemExit(2)
    best = {task: source for task, source in best.items() if task != "detect"}
    return best, detector


def export_models(best: dict[str, Any], detector: Any, folder: Path) -> tuple[list[Path], Path]:
    """The classifiers and the detector exported to ONNX into ``folder``, as 'toonvision export' would (each
    checked against its Keras model before it is written)."""
    from toonvision.serving.export import export

    onnx = [export(s.path, folder / f"{task}.onnx").path for task, s in best.items()]
    return onnx, export(detector.path, folder / "detect.onnx").path


def shipped_models() -> tuple[list[Path], Path, list[Path], Path]:
    """The models ToonVision ships: the classifiers' and the detector's ONNX files, then their Keras files; exits
    saying how to make them where the package ships none."""
    from toonvision.learning.zoo import ZOO_TASKS, shipped

    ours = {task: shipped(task) for task in ZOO_TASKS}
    if any(source is None for source in ours.values()):
        print("this ToonVision ships no models: python tools/train_zoo.py --install makes them", file=sys.stderr)
        raise SystemExit(2)
    classifiers = [ours[task] for task in ZOO_TASKS if task != "detect"]
    return (
        [s.path for s in classifiers],
        ours["detect"].path,
        [s.sibling(".keras") for s in classifiers],
        ours["detect"].sibling(".keras"),
    )
