"""Experiments: the spec's ``make_baseline_comparisons``, fanned out with Ray.

For each of N runs the crops are re-split (run r uses seed ``seed + r``, or fold r of a stratified k-fold),
every configuration is trained on that split and evaluated on its test set. Runs are independent, so Ray
workers train them in parallel, on this machine (a local Ray instance sized to it) or on a cluster
(``address``). Every result is written as soon as it arrives, so a killed experiment resumes where it
stopped. A model is kept only when it beats the best so far on both test loss and test accuracy, as the
spec does; results are taken in run order for that, so the kept model does not depend on which worker
finished first.

A worker that dies (killed, out of memory) is restarted by Ray and its run retried; a run that still does
not finish is recorded as failed in its result file, the other runs go on, and the same command retries it.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from toonvision.data.files import read_json, write_bytes_atomic, write_json, write_text_atomic
from toonvision.data.samples import TaskData, find_samples, load_task
from toonvision.data.splitting import plan_kfold, plan_split

# CONNECT_SECONDS and RayUnavailable are re-exported: callers of run_experiment catch and quote them from here.
from toonvision.learning.cluster import CONNECT_SECONDS as CONNECT_SECONDS
from toonvision.learning.cluster import RayUnavailable as RayUnavailable
from toonvision.learning.cluster import death_reason, first_line, ray_session
from toonvision.learning.training import TrainConfig, build, fit, keras_archive

if TYPE_CHECKING:
    from toonvision.data.workspace import Workspace

RESULTS = "results"
# A run whose worker dies is retried this many times, each on a restarted worker, before it is recorded as
# failed; as many restarts per worker, after which it is replaced by a new one.
RETRIES = 2
# What the user can do when the cluster given does not answer; ends RayUnavailable's message.
FALLBACK = "without --address, compare trains on this machine"


@dataclass(frozen=True)
class Experiment:
    name: str
    task: str = "binary"
    configs: tuple[TrainConfig, ...] = ()
    runs: int = 3
    seed: int = 0
    ratios: tuple[float, float, float] = (0.6, 0.2, 0.2)
    folds: int = 0  # > 0: stratified k-fold, one run per fold, instead of random re-splits
    pad: bool = False

    def identity(self) -> dict[str, Any]:
        """What must match for results to be resumed (the number of runs may grow)."""
        d = asdict(self)
        d.pop("runs")
        d["configs"] = [c.to_dict() for c in self.configs]
        return d

    def run_seed(self, run: int) -> int:
        return self.seed + run

    def total_runs(self) -> int:
        return self.folds or self.runs


@dataclass
class Job:
    run: int
    config: TrainConfig  # with this run's seed
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray


@dataclass
class RunResult:
    run: int
    config: str
    seed: int
    history: dict[str, list[float]]
    test: dict[str, float]
    seconds: float
    worker: str = ""
    precision: str = "float32"  # what the worker computed in ("auto" resolved on its CPU)
    failed: str = ""  # why the run has no numbers (its worker kept dying, or training raised); empty: it finished
    # The trained model as a .keras archive, made by the worker: the driver only moves bytes, so it never
    # imports TensorFlow (5 s of a compare's start, and its memory).
    model: bytes | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("model")
        return d


class Trainer:
    """A Ray actor: one process with its own TensorFlow, pinned to ``threads`` threads."""

    def __init__(self, threads: int) -> None:
        from toonvision.learning.backend import configure_threads, enable_determinism, quiet_tensorflow

        quiet_tensorflow()
        configure_threads(threads)
        enable_determinism()  # same seed, same numbers, whichever worker runs the job
        self.name = f"{platform.node()}:{os.getpid()}"

    def run(self, x: np.ndarray, y: np.ndarray, samples_meta: list, job: Job) -> RunResult:
        return train_job(x, y, samples_meta, job, self.name)


def train_job(x: np.ndarray, y: np.ndarray, samples_meta: list, job: Job, worker: str = "") -> RunResult:
    def part(idx: np.ndarray) -> TaskData:
        return TaskData(job.config.task, x[idx], y[idx], [samples_meta[i] for i in idx])

    start = time.perf_counter()
    result = fit(job.config, part(job.train_idx), part(job.val_idx), part(job.test_idx))
    # The kept-model candidate as the keeper writes it: the run's configuration built afresh (compiled, no
    # optimizer state) with the trained weights.
    kept = build(job.config)
    kept.set_weights(result.model.get_weights())
    return RunResult(
        run=job.run,
        config=job.config.name,
        seed=job.config.seed,
        history=result.history,
        test=result.test,
        seconds=time.perf_counter() - start,
        worker=worker,
        precision=result.precision,
        model=keras_archive(kept),
    )


def plans(exp: Experiment, samples: list) -> list[dict[str, str | None]]:
    if exp.folds:
        return plan_kfold(samples, exp.folds, seed=exp.seed)
    return [plan_split(samples, exp.ratios, seed=exp.run_seed(r)) for r in range(exp.runs)]


def result_path(out: Path, run: int, config: str) -> Path:
    return out / RESULTS / f"run{run:04d}_{config.replace(':', '-')}.json"


def pending_path(out: Path, run: int, config: str, suffix: str = ".keras") -> Path:
    return out / "pending" / f"run{run:04d}_{config.replace(':', '-')}{suffix}"


def save_pending(out: Path, result: RunResult) -> None:
    """Keep a result's model until the keeper has judged it (it may have to wait for earlier runs, and
    the process may be killed meanwhile)."""
    assert result.model is not None
    write_bytes_atomic(pending_path(out, result.run, result.config), result.model)


def load_pending(out: Path, result: RunResult, cfg: TrainConfig) -> bytes | None:
    """A judged result's model archive; from the weights an older ToonVision kept (``.npz``), built here."""
    path = pending_path(out, result.run, result.config)
    if path.exists():
        return path.read_bytes()
    legacy = pending_path(out, result.run, result.config, ".npz")
    if not legacy.exists():
        return None
    with np.load(legacy) as data:
        weights = [data[f"arr_{i}"] for i in range(len(data.files))]
    model = build(cfg)
    model.set_weights(weights)
    return keras_archive(model)


def drop_pending(out: Path, run: int, config: str) -> None:
    for suffix in (".keras", ".npz"):
        pending_path(out, run, config, suffix).unlink(missing_ok=True)


def load_results(out: Path) -> list[RunResult]:
    results = []
    for path in sorted((out / RESULTS).glob("run*.json")):
        data = read_json(path)
        results.append(RunResult(**{k: v for k, v in data.items() if k not in ("model", "weights")}))
    return results


def check_resumable(exp: Experiment, out: Path) -> None:
    saved = out / "experiment.json"
    if saved.exists():
        previous = read_json(saved)
        previous.pop("runs", None)
        if previous != _json_roundtrip(exp.identity()):
            raise ValueError(f"{out} holds an experiment with other settings; choose another --name to start a new one")


def _json_roundtrip(d: dict) -> dict:
    """``d`` as it reads back from JSON (tuples become lists), to compare with what was saved."""
    return json.loads(json.dumps(d))


@dataclass
class Best:
    loss: float = float("inf")
    accuracy: float = -1.0
    run: int | None = None


class Keeper:
    """The spec's rule, applied in run order: keep a model only if it beats the best so far on both
    test loss and test accuracy."""

    def __init__(self, out: Path, exp: Experiment) -> None:
        self.out = out
        self.exp = exp
        self.state_path = out / "best.json"
        state = read_json(self.state_path) if self.state_path.exists() else {}
        self.next_run = state.get("next_run", 0)
        self.best = {name: Best(**b) for name, b in state.get("best", {}).items()}
        self.pending: dict[tuple[int, str], RunResult] = {}
        self.plans: list[dict] = []  # each run's split, saved beside a kept model for evaluation

    def offer(self, result: RunResult) -> list[str]:
        """Take one result, finished or failed; returns messages about models kept."""
        if result.run < self.next_run:
            # A retry of a run an earlier session judged as failed: the rule has moved past it, so its numbers
            # count in the statistics but it cannot become the kept model.
            drop_pending(self.out, result.run, result.config)
            return []
        self.pending[(result.run, result.config)] = result
        return self._advance()

    def _advance(self) -> list[str]:
        names = [c.name for c in self.exp.configs]
        messages = []
        while all((self.next_run, n) in self.pending for n in names):
            for n in names:
                result = self.pending.pop((self.next_run, n))
                best = self.best.setdefault(n, Best())
                if result.failed:  # judged like the others, so the runs after it are not held up; never kept
                    continue
                loss, acc = result.test.get("loss", float("inf")), result.test.get("accuracy", -1.0)
                if loss < best.loss and acc > best.accuracy:
                    self.best[n] = Best(loss, acc, result.run)
                    archive = result.model or load_pending(self.out, result, self._config(n, result.seed))
                    if archive is not None:
                        self._save(n, result, archive)
                    messages.append(f"run {result.run}: new best {n} (test loss {loss:.4f}, accuracy {acc:.4f})")
            self.next_run += 1
            write_json(
                self.state_path, {"next_run": self.next_run, "best": {k: asdict(v) for k, v in self.best.items()}}
            )
            for n in names:  # judged: the model is either in best/ now or not needed
                drop_pending(self.out, self.next_run - 1, n)
        return messages

    def _config(self, name: str, seed: int) -> TrainConfig:
        return replace(next(c for c in self.exp.configs if c.name == name), seed=seed)

    def _save(self, name: str, result: RunResult, archive: bytes) -> None:
        folder = self.out / "best"
        folder.mkdir(parents=True, exist_ok=True)
        stem = name.replace(":", "-")
        write_bytes_atomic(folder / f"{stem}.keras", archive)
        write_json(folder / f"{stem}.json", {**result.to_dict(), "config": self._config(name, result.seed).to_dict()})
        if result.run < len(self.plans):
            write_json(folder / f"{stem}.split.json", self.plans[result.run])


def _failure_reason(exc: Exception) -> str:
    """One line for a run's failure record."""
    from ray.exceptions import RayActorError, RayTaskError

    if isinstance(exc, RayTaskError):  # training raised: the worker lives on
        cause = exc.cause if isinstance(exc.cause, BaseException) else exc
        return f"training raised {type(cause).__name__}: {first_line(cause)}"
    if isinstance(exc, RayActorError):
        return f"its worker died and Ray's {RETRIES} retries did not finish it ({death_reason(exc)})"
    return death_reason(exc)


def run_experiment(
    ws: Workspace,
    exp: Experiment,
    out: Path,
    *,
    workers: int = 0,
    threads: int = 1,
    address: str | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_result: Callable[[RunResult, list[str]], None] | None = None,
) -> list[RunResult]:
    """Run (or resume) ``exp`` into folder ``out``; returns every result, old and new, finished or failed
    (``RunResult.failed``), in run order. Runs that failed in an earlier session are tried again.

    Uses the Ray of this process when it has one; otherwise starts a private local instance, or connects to
    ``address`` (raising :class:`RayUnavailable` when no cluster answers there), and shuts it down on the way
    out, also on errors and interruptions."""
    if not exp.configs:
        raise ValueError("an experiment needs at least one configuration")
    if len({c.name for c in exp.configs}) != len(exp.configs):
        raise ValueError("configuration names must be unique")
    out.mkdir(parents=True, exist_ok=True)
    check_resumable(exp, out)
    write_json(out / "experiment.json", {**_json_roundtrip(exp.identity()), "runs": exp.total_runs()})

    samples = find_samples(ws)
    data = load_task(samples, exp.task, pad=exp.pad, ws=ws)
    run_plans = plans(exp, data.samples)
    finished = {(r.run, r.config) for r in load_results(out) if not r.failed}
    jobs = []
    for run, plan in enumerate(run_plans):
        idx = {
            s: np.array([i for i, smp in enumerate(data.samples) if plan.get(smp.name) == s], dtype=np.int64)
            for s in ("train", "validate", "test")
        }
        for cfg in exp.configs:
            if (run, cfg.name) in finished:
                continue
            job_cfg = replace(cfg, task=exp.task, pad=exp.pad, seed=exp.run_seed(run))
            jobs.append(Job(run, job_cfg, idx["train"], idx["validate"], idx["test"]))
    total = exp.total_runs() * len(exp.configs)
    if on_start:
        on_start(total, total - len(jobs))

    keeper = Keeper(out, exp)
    keeper.plans = run_plans
    # Results already on disk from an earlier, interrupted session: feed them back in run order so the
    # keeper's state catches up (their weights are gone, so an older best stays the best on disk). Failed
    # ones are left out: they are tried again below, and the keeper waits for what comes of that.
    for old in load_results(out):
        if old.run >= keeper.next_run and not old.failed:
            keeper.offer(old)
    if jobs:
        with ray_session(address, workers * threads, fallback=FALLBACK):
            _train(data, jobs, out, keeper, workers, threads, on_result)
    return sorted(load_results(out), key=lambda r: (r.run, [c.name for c in exp.configs].index(r.config)))


def _train(
    data: TaskData,
    jobs: list[Job],
    out: Path,
    keeper: Keeper,
    workers: int,
    threads: int,
    on_result: Callable[[RunResult, list[str]], None] | None,
) -> None:
    """Every job on Ray workers, each result written and judged as it arrives."""
    import ray
    from ray.exceptions import RayError, RayTaskError

    cpus = int(ray.cluster_resources().get("CPU", os.cpu_count() or 1))
    n_workers = max(1, min(workers or cpus // threads, len(jobs)))
    # A worker that dies (killed, out of memory) is restarted and the run it had is tried again, by Ray.
    actor_cls = ray.remote(num_cpus=threads, max_restarts=RETRIES, max_task_retries=RETRIES)(Trainer)
    meta = [None] * len(data.samples)  # workers need no file paths, only arrays
    x_ref, y_ref = ray.put(data.x), ray.put(data.y)
    idle = [actor_cls.remote(threads) for _ in range(n_workers)]
    queue = deque(jobs)
    running: dict[Any, tuple[Any, Job, float]] = {}
    while queue or running:
        while queue and idle:
            actor, job = idle.pop(), queue.popleft()
            running[actor.run.remote(x_ref, y_ref, meta, job)] = (actor, job, time.perf_counter())
        [ref], _ = ray.wait(list(running), num_returns=1)
        actor, job, start = running.pop(ref)
        try:
            result: RunResult = ray.get(ref)
        except RayError as exc:
            if not isinstance(exc, RayTaskError):  # the worker is gone (or past its restarts): a new one
                ray.kill(actor, no_restart=True)
                actor = actor_cls.remote(threads)
            result = RunResult(
                run=job.run,
                config=job.config.name,
                seed=job.config.seed,
                history={},
                test={},
                seconds=time.perf_counter() - start,
                precision=job.config.precision,
                failed=_failure_reason(exc),
            )
        idle.append(actor)
        if not result.failed:
            save_pending(out, result)  # the model first: a result on disk always has it until judged
        write_json(result_path(out, result.run, result.config), result.to_dict())
        messages = keeper.offer(result)
        if on_result:
            on_result(result, messages)


# --- statistics over runs ---


def summarize_runs(results: list[RunResult], names: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    """Median, quartiles, min, max and mean of test accuracy and loss per configuration."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name in names:
        out[name] = {}
        for metric in ("accuracy", "loss"):
            v = np.array([r.test[metric] for r in results if r.config == name and metric in r.test])
            if not len(v):
                continue
            q1, med, q3 = np.percentile(v, [25, 50, 75])
            out[name][metric] = {
                "n": len(v),
                "median": float(med),
                "q1": float(q1),
                "q3": float(q3),
                "min": float(v.min()),
                "max": float(v.max()),
                "mean": float(v.mean()),
            }
    return out


def compare_pair(a: list[float], b: list[float], *, resamples: int = 10_000, seed: int = 0) -> dict[str, float]:
    """Is the difference between two models real? A two-sided Mann-Whitney U test, and a bootstrap 95%
    interval of the difference of medians (b - a), both from SciPy."""
    from scipy.stats import bootstrap, mannwhitneyu

    a_arr, b_arr = np.asarray(a, float), np.asarray(b, float)
    if len(a_arr) < 2 or len(b_arr) < 2:
        return {"n_a": len(a_arr), "n_b": len(b_arr)}
    test = mannwhitneyu(b_arr, a_arr, alternative="two-sided")

    def median_diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.median(y, axis=axis) - np.median(x, axis=axis)

    # Percentile intervals: the accuracies of a few runs tie often, which makes BCa's acceleration degenerate.
    interval = bootstrap(
        (a_arr, b_arr),
        median_diff,
        n_resamples=resamples,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(seed),
    ).confidence_interval
    return {
        "n_a": len(a_arr),
        "n_b": len(b_arr),
        "median_diff": float(np.median(b_arr) - np.median(a_arr)),
        "ci95_low": float(interval.low),
        "ci95_high": float(interval.high),
        "mannwhitney_u": float(test.statistic),
        "p_value": float(test.pvalue),
    }


def pairwise(results: list[RunResult], names: list[str]) -> list[dict[str, Any]]:
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            for metric in ("accuracy", "loss"):
                va = [r.test[metric] for r in results if r.config == a and metric in r.test]
                vb = [r.test[metric] for r in results if r.config == b and metric in r.test]
                rows.append({"a": a, "b": b, "metric": metric, **compare_pair(va, vb)})
    return rows


def write_summary(out: Path, exp: Experiment, results: list[RunResult]) -> dict[str, Any]:
    """summary.json and summary.md under the experiment's folder: per configuration the median, quartiles,
    min and max of test accuracy and loss over the runs that finished, a statistical test for every pair, and
    the runs that failed, with why. Returns the summary."""
    names = [c.name for c in exp.configs]
    finished = [r for r in results if not r.failed]
    summary = {
        "summary": summarize_runs(finished, names),
        "tests": pairwise(finished, names),
        "runs": len({r.run for r in finished}),
        "failed": [{"run": r.run, "config": r.config, "reason": r.failed} for r in results if r.failed],
    }
    write_json(out / "summary.json", summary)
    write_text_atomic(
        out / "summary.md", summary_markdown(summary["summary"], summary["tests"], summary["runs"], summary["failed"])
    )
    return summary


def summary_markdown(summary: dict, tests: list[dict], n_runs: int, failed: list[dict] | None = None) -> str:
    lines = [
        f"# Test metrics over {n_runs} runs",
        "",
        "| model | metric | n | median | q1 | q3 | min | max | mean |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, metrics in summary.items():
        for metric, s in metrics.items():
            lines.append(
                f"| {name} | {metric} | {s['n']} | {s['median']:.4f} | {s['q1']:.4f} | {s['q3']:.4f} | "
                f"{s['min']:.4f} | {s['max']:.4f} | {s['mean']:.4f} |"
            )
    lines += [
        "",
        "## Is the difference real?",
        "",
        "Two-sided Mann-Whitney U test on the per-run test metrics, and a bootstrap 95% interval of the "
        "difference of medians (b - a).",
        "",
        "| a | b | metric | median b - a | 95% interval | p-value |",
        "|---|---|---|---|---|---|",
    ]
    for t in tests:
        if "p_value" in t:
            lines.append(
                f"| {t['a']} | {t['b']} | {t['metric']} | {t['median_diff']:+.4f} | "
                f"[{t['ci95_low']:+.4f}, {t['ci95_high']:+.4f}] | {t['p_value']:.3g} |"
            )
        else:
            lines.append(f"| {t['a']} | {t['b']} | {t['metric']} | (needs 2+ runs each) | | |")
    if failed:
        lines += [
            "",
            "## Failed runs",
            "",
            f"{len(failed)} run(s) did not finish and are left out of the numbers above; running the same command "
            "again retries them.",
            "",
            "| run | model | why |",
            "|---|---|---|",
            *(f"| {f['run']} | {f['config']} | {f['reason'].replace('|', '/')} |" for f in failed),
        ]
    return "\n".join(lines) + "\n"


# --- a finished (or stopped) experiment, read back ---


@dataclass
class ExperimentRecord:
    """What an experiment folder holds: its settings (experiment.json) and summary (summary.json)."""

    folder: Path
    identity: dict[str, Any]
    summary: dict[str, Any]

    @classmethod
    def load(cls, folder: Path) -> ExperimentRecord:
        identity = read_json(folder / "experiment.json")
        if identity is None:
            raise FileNotFoundError(f"{folder} is not an experiment folder (no experiment.json): run 'compare' first")
        summary = read_json(folder / "summary.json")
        if summary is None:
            raise FileNotFoundError(f"{folder} has no summary.json yet: the comparison has not finished a run")
        return cls(folder, identity, summary)

    @property
    def name(self) -> str:
        return self.identity.get("name", self.folder.name)

    @property
    def task(self) -> str:
        return self.identity.get("task", "binary")

    @property
    def configs(self) -> list[dict[str, Any]]:
        return self.identity.get("configs", [])

    def ranking(self) -> list[str]:
        """Configurations, best first: highest median test accuracy, then lowest median test loss."""
        stats = self.summary.get("summary", {})

        def key(name: str) -> tuple[float, float]:
            s = stats.get(name, {})
            return (-s.get("accuracy", {}).get("median", 0.0), s.get("loss", {}).get("median", float("inf")))

        return sorted((c["name"] for c in self.configs), key=key)

    def best_model(self, config: str) -> Path:
        """The model kept for ``config``: its best run's, by the spec's rule."""
        return self.folder / "best" / f"{config}.keras"


def find_experiment(runs: Path, name: str | None) -> Path:
    """An experiment folder by path or name; the newest comparison when no name is given."""
    if name:
        for candidate in (Path(name), runs / "compare" / name):
            if (candidate / "experiment.json").is_file():
                return candidate
        raise FileNotFoundError(f"no experiment {name!r}: give a folder or a name under {runs / 'compare'}")
    found = sorted(runs.glob("compare/*/experiment.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"no experiment under {runs / 'compare'}: run 'toonvision compare' first")
    return found[-1].parent
