"""Train/validate/test splits: the spec's ``split_data``, stratified per label, seeded, and safe to kill.

A split is first *planned* (a pure function of the sample names, the ratios and the seed) and then
*applied* by moving each crop into ``data/<split>/<kind>``. Experiments that re-split for every run use the
plan alone, without touching folders, so that parallel runs never disturb each other. Applying moves files
one at a time with :func:`toonvision.data.files.move_no_clobber`: every crop is always in exactly one folder,
and running the same split again after a kill finishes the job.
"""

from __future__ import annotations

import warnings
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from toonvision.data.files import move_no_clobber
from toonvision.data.samples import Sample, find_samples
from toonvision.data.workspace import SPLITS, Workspace

DEFAULT_RATIOS: tuple[float, float, float] = (0.6, 0.2, 0.2)

Plan = dict[str, str | None]  # sample file name -> split ("train"/"validate"/"test"), None = unsorted


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    if len(ratios) != 3:
        raise ValueError(f"expected three ratios (train validate test), got {len(ratios)}")
    if any(r < 0 for r in ratios) or sum(ratios) <= 0:
        raise ValueError(f"ratios must be non-negative and not all zero, got {list(ratios)}")
    total = float(sum(ratios))
    return (ratios[0] / total, ratios[1] / total, ratios[2] / total)


def _label_rng(seed: int, label: str) -> np.random.Generator:
    # One stream per label: adding crops of one label never reshuffles another label's split.
    return np.random.default_rng([seed, zlib.crc32(label.encode())])


def _allocate(n: int, ratios: tuple[float, float, float], rng: np.random.Generator) -> list[int]:
    """Split n items by ratios with the largest-remainder rule; ties are broken at random so that small
    labels do not all round the same way (which would starve the validation or test set)."""
    ideal = [n * r for r in ratios]
    counts = [int(x) for x in ideal]
    tie_break = rng.random(3)
    order = sorted(range(3), key=lambda i: (-(ideal[i] - counts[i]), tie_break[i]))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def plan_split(samples: Sequence[Sample], ratios: Sequence[float] = DEFAULT_RATIOS, seed: int = 0) -> Plan:
    """Assign every sample to a split, per label, reproducibly from ``seed``."""
    ratios = check_ratios(ratios)
    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        groups[str(s.label)].append(s)
    plan: Plan = {}
    for label in sorted(groups):
        members = sorted(groups[label], key=lambda s: (s.index, s.name))
        rng = _label_rng(seed, label)
        order = rng.permutation(len(members))
        counts = _allocate(len(members), ratios, rng)
        bounds = np.cumsum([0, *counts])
        for split_index, split in enumerate(SPLITS):
            for i in order[bounds[split_index] : bounds[split_index + 1]]:
                plan[members[i].name] = split
    return plan


def plan_kfold(samples: Sequence[Sample], folds: int, seed: int = 0) -> list[Plan]:
    """Stratified k-fold plans: in plan i, fold i is the test set, fold i+1 the validation set, the rest train."""
    if folds < 3:
        raise ValueError("k-fold needs at least 3 folds (one test, one validation, at least one for training)")
    from sklearn.model_selection import StratifiedKFold

    ordered = sorted(samples, key=lambda s: (str(s.label), s.index))
    if len(ordered) < folds:
        raise ValueError(f"{len(ordered)} samples cannot be cut into {folds} folds")
    labels = [str(s.label) for s in ordered]
    fold_of = np.empty(len(ordered), dtype=int)
    with warnings.catch_warnings():
        # Rare labels (fewer crops than folds) are expected with the spec's data: they land in some folds only.
        warnings.simplefilter("ignore", UserWarning)
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        for fold, (_, test_idx) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
            fold_of[test_idx] = fold
    plans = []
    for i in range(folds):
        roles = {i: "test", (i + 1) % folds: "validate"}
        plans.append({s.name: roles.get(int(f), "train") for s, f in zip(ordered, fold_of, strict=True)})
    return plans


@dataclass
class ApplySummary:
    moved: int = 0
    unchanged: int = 0
    counts: Counter = field(default_factory=Counter)  # (split, kind) -> crops


def apply_plan(
    ws: Workspace,
    plan: Plan | Callable[[list[Sample]], Plan],
    *,
    on_start: Callable[[int], None] | None = None,
    on_move: Callable[[], None] | None = None,
) -> ApplySummary:
    """Move each sample to the folder ``plan`` gives it. Samples missing from the plan go to ``unsorted``.

    ``plan`` may be a function of the samples found, so that finding and moving happen under one lock.
    """
    ws.init()
    summary = ApplySummary()
    with ws.lock():
        current = find_samples(ws)
        if callable(plan):
            plan = plan(current)
        todo = []
        for s in current:
            target = plan.get(s.name)
            summary.counts[(target, s.kind)] += 1
            if target == s.split:
                summary.unchanged += 1
            else:
                todo.append((s, target))
        if on_start:
            on_start(len(todo))
        for s, target in todo:
            dst_dir = ws.unsorted_dir(s.kind) if target is None else ws.split_dir(target, s.kind)
            move_no_clobber(s.path, dst_dir / s.name)
            summary.moved += 1
            if on_move:
                on_move()
    return summary


def split(
    ws: Workspace,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    seed: int = 0,
    **progress: Callable,
) -> ApplySummary:
    """Split every crop in the workspace (unsorted or already split) afresh."""
    ratios = check_ratios(ratios)
    return apply_plan(ws, lambda samples: plan_split(samples, ratios, seed), **progress)


def unsplit(ws: Workspace, **progress: Callable) -> ApplySummary:
    """Return every crop to ``unsorted/<kind>``."""
    return apply_plan(ws, {}, **progress)
