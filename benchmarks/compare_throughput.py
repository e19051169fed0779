"""Comparison throughput: the spec's baseline-vs-optimized comparison, the spec's way and ToonVision's.

Measured in one process on the seed-preset workspace, with the same crops and the same re-splits for every way:

(a) the spec's way, sequential as written: for each run, re-split the crops into ``data/{train,validate,test}``
    (hard links into a temporary folder), build ``image_dataset_from_directory`` datasets, then for each
    configuration build the model with the augmentation layers inside, ``fit`` with validation, ``evaluate``;
    TensorFlow's default threads (every core);
(b) ``toonvision compare`` (``run_experiment``, as the command calls it) with 1 worker of ``cores`` threads;
(c) ``toonvision compare`` with one worker per core, 1 thread each (the command's default).

Each way trains baseline and optimized for ``--runs`` runs of ``--epochs`` epochs. One-off costs (importing
TensorFlow, starting Ray, loading the crops, starting the workers, writing the figures) are measured apart from
the steady-state time of a run, and a run's time is split into a fixed part (building, tracing, evaluating) and
its time per epoch, from every epoch's duration (timed by a Keras callback; inside the Ray workers the callback
is added by a worker set-up hook). Prints seconds per run and per epoch, the CPU cores each way really used,
runs per hour, and the projected wall time of the spec's full comparison (2 configurations x 200 runs x 25
epochs) on this machine for each way, with the speed-up over the spec's way. Other processes' CPU use during
each measurement is printed too: on a busy machine the figures are only as good as that line.

Everything is written to a temporary folder that is removed at the end; the script's own Ray instance is shut
down after each way.

    python benchmarks/compare_throughput.py [--root WORKSPACE] [--runs 2] [--epochs 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import DEFAULT_ROOT, EpochClock, epoch_timer, seed_workspace

CONFIGS = ("baseline", "optimized")
FULL_RUNS, FULL_EPOCHS = 200, 25


@dataclass
class Way:
    """What one way of running the comparison costs: one-off costs, and per configuration a run's fixed part
    and its time per epoch, as measured with ``parallel`` runs training at once."""

    name: str
    parallel: int
    startup: dict[str, float] = field(default_factory=dict)  # once per comparison
    per_run: float = 0.0  # once per run besides training (the spec's re-split; ToonVision's hand-overs)
    per_run_label: str = ""
    fixed: dict[str, float] = field(default_factory=dict)  # per configuration and run
    epoch: dict[str, float] = field(default_factory=dict)  # per configuration and epoch
    spread: dict[str, tuple[float, float]] = field(default_factory=dict)  # fastest and slowest epoch
    measured_runs: int = 0
    measured_wall: float = 0.0  # end to end, one-off costs included
    cores: float | None = None  # CPU cores one worker used while training
    others: float | None = None  # CPU cores other processes used meanwhile

    def run_seconds(self, epochs: int) -> float:
        """One run (every configuration on one split), as one worker sees it."""
        return self.per_run + sum(self.fixed[c] + epochs * self.epoch[c] for c in CONFIGS)

    def runs_per_hour(self, epochs: int) -> float:
        """Steady state: ``parallel`` runs at a time, one-off costs left out."""
        return 3600 * self.parallel / self.run_seconds(epochs)

    def projected(self, runs: int, epochs: int) -> float:
        """Wall time of a whole comparison: one-off costs plus the runs, ``parallel`` at a time."""
        return sum(self.startup.values()) + runs * self.run_seconds(epochs) / self.parallel

    def set_run(self, name: str, totals: list[float], epochs: int, epoch_seconds: list[list[float]]) -> None:
        """A configuration's fixed part and time per epoch from its runs' totals and epoch durations (the first
        epoch of a run traces the model: it counts as a steady epoch plus a fixed part)."""
        steady = [s for run in epoch_seconds for s in run[1:]] or [s for run in epoch_seconds for s in run[:1]]
        total = statistics.median(totals)
        per_epoch = statistics.median(steady) if steady else total / epochs  # no timings: all per epoch
        self.fixed[name], self.epoch[name] = max(0.0, total - epochs * per_epoch), per_epoch
        self.spread[name] = (min(steady), max(steady)) if steady else (per_epoch, per_epoch)


# --- CPU accounting (Linux /proc; figures are left out elsewhere) ---


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far, its finished threads included."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class LoadMonitor:
    """Samples, every ``interval`` seconds, the machine's busy CPU time and that of this process and its
    descendants (Ray's processes and workers), to tell how much CPU other processes took meanwhile."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.busy = self.ours = 0.0
        self.last_busy: float | None = None
        self.seen: dict[int, float] = {}
        self.start: float | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def _busy() -> float:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait

    @staticmethod
    def _tree() -> dict[int, float]:
        """CPU seconds of this process and of every descendant."""
        parent: dict[int, int] = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    parent[int(entry.name)] = int(Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
        mine, grown = {os.getpid()}, True
        while grown:
            new = {pid for pid, ppid in parent.items() if ppid in mine} - mine
            mine |= new
            grown = bool(new)
        return {pid: cpu for pid in mine if (cpu := cpu_seconds(pid)) is not None}

    def _sample(self) -> None:
        busy, tree = self._busy(), self._tree()
        if self.last_busy is not None:
            self.busy += busy - self.last_busy
            # A process not seen before started since the last sample: all its CPU time counts.
            self.ours += sum(cpu - self.seen.get(pid, 0.0) for pid, cpu in tree.items())
        self.last_busy, self.seen = busy, tree

    def _loop(self) -> None:
        while not self.stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> LoadMonitor:
        if Path("/proc/stat").exists():
            self._sample()
            self.start = time.perf_counter()
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.thread.is_alive():
            self.stop.set()
            self.thread.join()
            self._sample()
            self.elapsed = time.perf_counter() - (self.start or 0.0)

    def others(self) -> float | None:
        """CPU cores used by other processes, on average."""
        if self.start is None:
            return None
        return max(0.0, (self.busy - self.ours) / self.elapsed)


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- (a) the spec's way ---


def link_split(samples: list, plan: dict[str, str | None], data: Path) -> None:
    """The spec's unsplit + split: every crop into ``data/<split>/<kind>/`` (hard links; copies across devices)."""
    shutil.rmtree(data, ignore_errors=True)
    for s in samples:
        split = plan.get(s.name)
        if split is None:
            continue
        folder = data / split / s.kind
        folder.mkdir(parents=True, exist_ok=True)
        try:
            os.link(s.path, folder / s.name)
        except OSError:
            shutil.copyfile(s.path, folder / s.name)


def spec_way(samples: list, runs: int, epochs: int, seed: int, tmp: Path) -> Way:
    """Sequential, in this process, as the spec's ``make_baseline_comparisons`` does it."""
    import keras

    from toonvision.data.images import IMAGE_SIZE
    from toonvision.data.splitting import plan_split
    from toonvision.learning.models import create_model
    from toonvision.learning.training import compile_model, recipe

    # model.fit's default shuffle=True does nothing on a tf.data dataset (it is shuffled already): Keras says so.
    warnings.filterwarnings("ignore", message=".*shuffle=True.*tf.data.Dataset")
    splits, cpu, busy = [], 0.0, 0.0
    totals: dict[str, list[float]] = {c: [] for c in CONFIGS}
    epoch_seconds: dict[str, list[list[float]]] = {c: [] for c in CONFIGS}
    start_all = time.perf_counter()
    with LoadMonitor() as load:
        for run in range(runs):
            start = time.perf_counter()
            link_split(samples, plan_split(samples, seed=seed + run), tmp / "data")
            datasets = {
                split: keras.utils.image_dataset_from_directory(
                    tmp / "data" / split,
                    labels="inferred",
                    label_mode="binary",
                    image_size=IMAGE_SIZE,
                    batch_size=32,
                    shuffle=split == "train",
                    seed=seed + run,
                    verbose=False,
                )
                for split in ("train", "validate", "test")
            }
            splits.append(time.perf_counter() - start)
            for name in CONFIGS:
                cfg = recipe(name, epochs=epochs, seed=seed + run)
                start, cpu_start = time.perf_counter(), process_cpu()
                keras.utils.set_random_seed(cfg.seed)
                model = create_model(cfg.model, cfg.task, augment=cfg.augment, dropout=cfg.dropout, seed=cfg.seed)
                compile_model(model, cfg)
                timer = epoch_timer()
                model.fit(
                    datasets["train"], validation_data=datasets["validate"], epochs=epochs, callbacks=[timer], verbose=0
                )
                model.evaluate(datasets["test"], verbose=0)
                totals[name].append(time.perf_counter() - start)
                cpu, busy = cpu + process_cpu() - cpu_start, busy + totals[name][-1]
                epoch_seconds[name].append(timer.seconds)
                print(f"  spec's way: run {run} {name}: {totals[name][-1]:.1f}s", flush=True)
    way = Way("spec's way (sequential)", parallel=1, others=load.others())
    way.per_run, way.per_run_label = statistics.median(splits), "re-split + datasets"
    way.measured_runs, way.measured_wall, way.cores = runs, time.perf_counter() - start_all, cpu / busy
    for name in CONFIGS:
        way.set_run(name, totals[name], epochs, epoch_seconds[name])
    return way


# --- (b), (c) ToonVision's compare ---


def time_epochs_in_worker() -> None:
    """Ray worker set-up hook: the ``fit`` that compare's workers call also records every epoch's duration, in
    the run's history under ``epoch_seconds`` (the workers otherwise time whole runs only): the time between
    two epochs' ends, so the first epoch also holds the run's set-up (the report leaves it out). Keras is
    imported only when a run starts, after the worker has set its threads."""
    from toonvision.learning import experiments

    original = experiments.fit

    def fit(cfg: Any, train: Any, validate: Any = None, test: Any = None, *, on_epoch: Any = None) -> Any:
        clock = EpochClock(on_epoch)
        result = original(cfg, train, validate, test, on_epoch=clock)
        result.history["epoch_seconds"] = clock.seconds
        return result

    experiments.fit = fit


class WorkerProbe:
    """Per worker: when it started training its first run, when its last result arrived, the seconds it spent
    training, and the CPU cores it used between two of its results."""

    def __init__(self) -> None:
        self.first_start: dict[int, float] = {}
        self.last_result: dict[int, float] = {}
        self.busy: dict[int, float] = {}
        self.jobs = 0
        self.last_cpu: dict[int, tuple[float, float]] = {}
        self.cores: list[float] = []

    def on_result(self, result: Any, messages: list[str]) -> None:
        now = time.perf_counter()
        pid = int(result.worker.rsplit(":", 1)[1])
        self.jobs += 1
        self.first_start.setdefault(pid, now - result.seconds)
        self.last_result[pid] = now
        self.busy[pid] = self.busy.get(pid, 0.0) + result.seconds
        cpu = cpu_seconds(pid)
        if cpu is None:
            return
        if pid in self.last_cpu:  # the worker's first result also paid for its start-up: left out
            then, cpu_then = self.last_cpu[pid]
            self.cores.append((cpu - cpu_then) / (now - then))
        self.last_cpu[pid] = (now, cpu)

    def handover(self) -> float:
        """Seconds per run and configuration that a worker waits between runs (arguments in, result out)."""
        idle = sum(self.last_result[p] - self.first_start[p] - self.busy[p] for p in self.busy)
        return max(0.0, idle) / max(1, self.jobs - len(self.busy))


def our_way(root: Path, runs: int, epochs: int, seed: int, workers: int, threads: int, tmp: Path) -> Way:
    """``toonvision compare``: ``run_experiment`` with ``workers`` Ray workers of ``threads`` threads each."""
    import ray

    from toonvision.data.workspace import Workspace
    from toonvision.figures.training import draw_experiment
    from toonvision.learning.experiments import Experiment, run_experiment, write_summary
    from toonvision.learning.training import recipe

    label = f"ToonVision, {workers} worker{'s' if workers > 1 else ''} x {threads} thread{'s' if threads > 1 else ''}"
    exp = Experiment(name="bench", configs=tuple(recipe(c, epochs=epochs) for c in CONFIGS), runs=runs, seed=seed)
    out, probe, marks = tmp / f"compare-{workers}w", WorkerProbe(), {}
    from ray import cloudpickle

    # The workers cannot import the benchmarks' files: ship the hook (and _common's EpochClock it uses) by value.
    cloudpickle.register_pickle_by_value(sys.modules["_common"])
    if __name__ != "__main__":  # imported: this file too
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    start = time.perf_counter()
    with LoadMonitor() as load:
        # The local instance run_experiment would start (toonvision.learning.cluster.start_ray), plus the
        # hook; run_experiment uses it and leaves it running.
        ray.init(
            address="local",
            num_cpus=max(os.cpu_count() or 1, workers * threads),
            include_dashboard=False,
            logging_level=logging.ERROR,
            log_to_driver=False,
            configure_logging=True,
            runtime_env={"worker_process_setup_hook": time_epochs_in_worker},
        )
        try:
            ray_start = time.perf_counter() - start
            exp_start = time.perf_counter()
            results = run_experiment(
                Workspace(root),
                exp,
                out,
                workers=workers,
                threads=threads,
                on_start=lambda total, done: marks.setdefault("planned", time.perf_counter()),
                on_result=probe.on_result,
            )
            wall = time.perf_counter() - exp_start
        finally:
            ray.shutdown()
    start = time.perf_counter()
    # the figures and summary the command writes at the end
    draw_experiment(out, list(CONFIGS), results, exp.task)
    write_summary(out, exp, results)
    figures = time.perf_counter() - start
    for r in results:
        print(f"  {label}: run {r.run} {r.config}: {r.seconds:.1f}s on worker {r.worker}", flush=True)
    way = Way(label, parallel=max(len(probe.busy), 1), others=load.others())
    way.startup = {
        "Ray start": ray_start,
        "crops + splits": marks["planned"] - exp_start,
        # Until the last worker starts its first run: a process and TensorFlow each, the crops shipped to them.
        "workers start": max(probe.first_start.values()) - marks["planned"],
        "results + figures": exp_start + wall - max(probe.last_result.values()) + figures,
    }
    way.per_run, way.per_run_label = len(CONFIGS) * probe.handover(), "hand-over"
    way.measured_runs, way.measured_wall = runs, ray_start + wall + figures
    way.cores = statistics.median(probe.cores) if probe.cores else None
    for name in CONFIGS:
        mine = [r for r in results if r.config == name]
        timings = [r.history.get("epoch_seconds", []) for r in mine]
        way.set_run(name, [r.seconds for r in mine], epochs, timings)
    return way


# --- report ---


def hms(seconds: float) -> str:
    h, rest = divmod(round(seconds), 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def report(ways: list[Way], epochs: int, tf_import: float, cores: int) -> None:
    print()
    print(f"one-off costs (and, for every way, Python + TensorFlow import: {tf_import:.1f}s)")
    for way in ways:
        parts = ", ".join(f"{k} {v:.1f}s" for k, v in way.startup.items()) or "none"
        split = f"; per run: {way.per_run_label} {way.per_run:.2f}s" if way.per_run_label else ""
        others = f"; other processes used {way.others:.2f} of {cores} cores" if way.others is not None else ""
        print(f"  {way.name}: {parts}{split}{others}")
    print()
    print(f"one run = baseline + optimized on one split, as one worker sees it ({epochs} epochs measured)")
    print(
        f"{'way':<36} {'workers':>7} {'fixed s':>8} {'s/epoch':>8} {f's/run@{epochs}':>9} {'cores':>6} "
        f"{f'runs/h@{epochs}':>10} {'end-to-end':>10}"
    )
    for way in ways:
        fixed = sum(way.fixed.values()) + way.per_run
        per_epoch = sum(way.epoch.values())
        used = f"{way.cores:.2f}" if way.cores is not None else "-"
        e2e = 3600 * way.measured_runs / way.measured_wall
        print(
            f"{way.name:<36} {way.parallel:>7} {fixed:8.1f} {per_epoch:8.2f} {way.run_seconds(epochs):9.1f} "
            f"{used:>6} {way.runs_per_hour(epochs):10.0f} {e2e:10.0f}"
        )
    for way in ways:
        shown = "   ".join(
            f"{c} {way.fixed[c]:.1f}s + {way.epoch[c]:.2f}s/epoch ({way.spread[c][0]:.2f}-{way.spread[c][1]:.2f})"
            for c in CONFIGS
        )
        print(f"  {way.name:<34} {shown}")
    print(
        "  (fixed + median s/epoch per configuration, fastest-slowest epoch in brackets; cores: CPU cores one worker\n"
        "  used while training; runs/h: all workers, steady state; end-to-end: the measured runs over the measured\n"
        "  wall time, one-off costs included)"
    )
    print()
    spec = ways[0]
    spec_total = tf_import + spec.projected(FULL_RUNS, FULL_EPOCHS)
    print(f"the spec's full comparison, {len(CONFIGS)} configurations x {FULL_RUNS} runs x {FULL_EPOCHS} epochs:")
    print(f"{'way':<36} {'s/run':>7} {'runs/h':>7} {'projected wall':>15} {'speed-up':>9}")
    for way in ways:
        total = tf_import + way.projected(FULL_RUNS, FULL_EPOCHS)
        print(
            f"{way.name:<36} {way.run_seconds(FULL_EPOCHS):7.1f} {way.runs_per_hour(FULL_EPOCHS):7.1f} "
            f"{hms(total):>15} {spec_total / total:8.2f}x"
        )


def import_tensorflow() -> float:
    """Import TensorFlow and Keras with their C++ start-up notices kept off the terminal; returns the seconds."""
    from toonvision.learning.backend import quiet_tensorflow

    start = time.perf_counter()
    quiet_tensorflow()
    import keras  # noqa: F401

    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="workspace with the seed preset split")
    parser.add_argument("--runs", type=int, default=2, help="runs measured per way (each: baseline + optimized)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per measured run (the spec: 25)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.runs < 1 or args.epochs < 1:
        parser.error("--runs and --epochs must be at least 1")

    tf_import = import_tensorflow()
    root = seed_workspace(args.root)

    from toonvision.data.samples import find_samples, load_task
    from toonvision.data.workspace import Workspace

    ws = Workspace(root)
    samples = find_samples(ws)
    load_task(samples, "binary", ws=ws)  # warm the pixel cache: a one-off cost per crop, not per comparison
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    print(
        f"{len(samples)} crops, {cores} cores; per way {args.runs} runs x {len(CONFIGS)} configurations x "
        f"{args.epochs} epochs",
        flush=True,
    )
    tmp = Path(tempfile.mkdtemp(prefix="toonvision-compare-bench-"))
    try:
        ways = [spec_way(samples, args.runs, args.epochs, args.seed, tmp / "spec")]
        ways.append(our_way(root, args.runs, args.epochs, args.seed, 1, cores, tmp))
        if cores > 1:
            ways.append(our_way(root, args.runs, args.epochs, args.seed, cores, 1, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(ways, args.epochs, tf_import, cores)


if __name__ == "__main__":
    main()
