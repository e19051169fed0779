"""Samples (extracted crops) in a workspace, and a task's crops as arrays.

A sample is one crop file named ``cog_<suit>_<name>_<index>.png`` or ``toon_<animal>_<index>.png``. It lives
in exactly one folder: ``unsorted/<kind>`` or ``data/<split>/<kind>``.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toonvision.data.cache import PixelCache
from toonvision.data.files import heal_double_link
from toonvision.data.images import IMAGE_SIZE, load_images
from toonvision.data.taxonomy import Label, SampleName, parse_sample_name, task_target
from toonvision.data.workspace import SPLITS, Workspace


@dataclass(frozen=True)
class Sample:
    path: Path
    label: Label
    index: int
    split: str | None  # None while unsorted

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def kind(self) -> str:
        return self.label.kind


class SampleLayoutError(RuntimeError):
    """The same sample name stands in two folders as two different files."""


def find_samples(ws: Workspace, *, heal: bool = True) -> list[Sample]:
    """Every crop in the workspace, sorted by (label, index).

    A name found in two folders as two names of one file is what an interrupted move leaves behind; with
    ``heal`` the extra name is removed (the file itself stays). Two *different* files of one name are
    reported, never resolved by deleting one.
    """
    found: dict[str, Sample] = {}
    conflicts: list[str] = []
    for split, kind, folder in ws.sample_dirs():
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue
        for entry in entries:
            parsed = parse_sample_name(entry.name)
            if parsed is None or not entry.is_file() or parsed.label.kind != kind:
                continue
            sample = Sample(Path(entry.path), parsed.label, parsed.index, split)
            previous = found.get(entry.name)
            if previous is not None:
                # Prefer the copy inside a split: splits are where moves go, unsorted where they start.
                keep, drop = (sample, previous) if previous.split is None else (previous, sample)
                if heal and heal_double_link(keep.path, drop.path):
                    found[entry.name] = keep
                    continue
                if os.path.samefile(keep.path, drop.path):
                    found[entry.name] = keep
                    continue
                conflicts.append(f"{previous.path} and {sample.path}")
                continue
            found[entry.name] = sample
    if conflicts:
        raise SampleLayoutError(
            "the same sample name holds different files in two folders (move or rename one by hand): "
            + "; ".join(conflicts)
        )
    return sorted(found.values(), key=lambda s: (str(s.label), s.index))


def max_indexes(names: Iterable[str]) -> dict[str, int]:
    """Highest index per label among sample file names."""
    highest: dict[str, int] = defaultdict(lambda: -1)
    for name in names:
        parsed: SampleName | None = parse_sample_name(name)
        if parsed is not None:
            key = str(parsed.label)
            highest[key] = max(highest[key], parsed.index)
    return dict(highest)


@dataclass
class TaskData:
    """The crops of one task as arrays: ``x`` uint8 (N, H, W, 3), ``y`` class indices, and their samples."""

    task: str
    x: np.ndarray
    y: np.ndarray
    samples: list[Sample]

    def take(self, idx: np.ndarray) -> TaskData:
        return TaskData(self.task, self.x[idx], self.y[idx], [self.samples[i] for i in idx])

    def by_plan(self, plan: dict[str, str | None]) -> dict[str, TaskData]:
        """Split by a plan from :mod:`toonvision.splitting` (sample name -> split)."""
        out = {}
        for split in SPLITS:
            idx = np.array([i for i, s in enumerate(self.samples) if plan.get(s.name) == split], dtype=int)
            out[split] = self.take(idx)
        return out

    def by_folder(self) -> dict[str, TaskData]:
        """Split by the folders the samples are in now."""
        return self.by_plan({s.name: s.split for s in self.samples})


def task_samples(samples: Sequence[Sample], task: str) -> list[tuple[Sample, int]]:
    """Samples that belong to ``task`` with their class index (suit and name tasks see Cogs only)."""
    out = []
    for s in samples:
        target = task_target(task, s.label)
        if target is not None:
            out.append((s, target))
    return out


def load_task(
    samples: Sequence[Sample],
    task: str,
    size: tuple[int, int] = IMAGE_SIZE,
    *,
    pad: bool = False,
    ws: Workspace | None = None,
) -> TaskData:
    """The task's crops decoded to arrays; with ``ws``, through the workspace's pixel cache."""
    pairs = task_samples(samples, task)
    if not pairs:
        raise ValueError(f"no crops for the {task!r} task")
    paths = [s.path for s, _ in pairs]
    x = PixelCache.for_workspace(ws, size, pad).load(paths) if ws is not None else load_images(paths, size, pad=pad)
    y = np.array([t for _, t in pairs], dtype=np.int32)
    return TaskData(task, x, y, [s for s, _ in pairs])
