"""Samples (extracted crops) in a workspace, and the Keras datasets built from them.

A sample is one crop file named ``cog_<suit>_<name>_<index>.png`` or ``toon_<animal>_<index>.png``. It lives
in exactly one folder: ``unsorted/<kind>`` or ``data/<split>/<kind>``. Keras/TensorFlow are imported only
inside the functions that build datasets, so listing samples stays fast.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toonvision.taxonomy import Label, SampleName, parse_sample_name
from toonvision.workspace import Workspace, heal_double_link


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


def by_split(samples: Sequence[Sample]) -> dict[str | None, list[Sample]]:
    out: dict[str | None, list[Sample]] = defaultdict(list)
    for s in samples:
        out[s.split].append(s)
    return dict(out)


# --- pixels ---

IMAGE_SIZE: tuple[int, int] = (600, 200)  # height, width: the spec's image_dataset_from_directory size


def load_image(path: Path, size: tuple[int, int] = IMAGE_SIZE, *, pad: bool = False) -> np.ndarray:
    """One crop file as a uint8 (height, width, 3) array of ``size`` (see :func:`fit_image`)."""
    from PIL import Image

    with Image.open(path) as img:
        return fit_image(img, size, pad=pad)


def fit_image(img, size: tuple[int, int] = IMAGE_SIZE, *, pad: bool = False) -> np.ndarray:
    """A PIL image as a uint8 (height, width, 3) array of ``size``.

    By default the crop is stretched to ``size`` as Keras' ``image_dataset_from_directory`` does (bilinear).
    With ``pad`` it is scaled to fit inside ``size`` keeping its aspect ratio, centred on black.
    """
    from PIL import Image

    height, width = size
    img = img.convert("RGB")
    if not pad:
        return np.asarray(img.resize((width, height), Image.Resampling.BILINEAR))
    scale = min(width / img.width, height / img.height)
    new = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    canvas = Image.new("RGB", (width, height))
    canvas.paste(img.resize(new, Image.Resampling.BILINEAR), ((width - new[0]) // 2, (height - new[1]) // 2))
    return np.asarray(canvas)


def load_images(
    paths: Sequence[Path], size: tuple[int, int] = IMAGE_SIZE, *, pad: bool = False, threads: int | None = None
) -> np.ndarray:
    """Decode many crops in parallel (Pillow releases the GIL while decoding and resizing)."""
    from concurrent.futures import ThreadPoolExecutor

    out = np.empty((len(paths), *size, 3), dtype=np.uint8)

    def fill(i: int) -> None:
        out[i] = load_image(paths[i], size, pad=pad)

    with ThreadPoolExecutor(max_workers=threads or min(8, (os.cpu_count() or 1) * 2)) as pool:
        list(pool.map(fill, range(len(paths))))
    return out


@dataclass
class TaskData:
    """The crops of one task as arrays: ``x`` uint8 (N, H, W, 3), ``y`` class indices, and their samples."""

    task: str
    x: np.ndarray
    y: np.ndarray
    samples: list[Sample]

    def subset(self, names: Iterable[str]) -> TaskData:
        wanted = set(names)
        idx = np.array([i for i, s in enumerate(self.samples) if s.name in wanted], dtype=int)
        return self.take(idx)

    def take(self, idx: np.ndarray) -> TaskData:
        return TaskData(self.task, self.x[idx], self.y[idx], [self.samples[i] for i in idx])

    def by_plan(self, plan: dict[str, str | None]) -> dict[str, TaskData]:
        """Split by a plan from :mod:`toonvision.splitting` (sample name -> split)."""
        out = {}
        for split in ("train", "validate", "test"):
            idx = np.array([i for i, s in enumerate(self.samples) if plan.get(s.name) == split], dtype=int)
            out[split] = self.take(idx)
        return out

    def by_folder(self) -> dict[str, TaskData]:
        """Split by the folders the samples are in now."""
        return self.by_plan({s.name: s.split for s in self.samples})


def task_samples(samples: Sequence[Sample], task: str) -> list[tuple[Sample, int]]:
    """Samples that belong to ``task`` with their class index (suit and name tasks see Cogs only)."""
    from toonvision.taxonomy import task_target

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
    if ws is not None:
        from toonvision.cache import PixelCache

        x = PixelCache.for_workspace(ws, size, pad).load(paths)
    else:
        x = load_images(paths, size, pad=pad)
    y = np.array([t for _, t in pairs], dtype=np.int32)
    return TaskData(task, x, y, [s for s, _ in pairs])


def make_datasets(
    ws: Workspace,
    image_size: tuple[int, int] = IMAGE_SIZE,
    batch_size: int = 32,
    shuffle: bool = True,
    seed: int | None = None,
):
    """The spec's ``create_datasets``: Keras datasets straight from ``data/{train,validate,test}``.

    This is the straightforward way (decode every crop every epoch); training uses :func:`load_task`.
    """
    from keras.utils import image_dataset_from_directory

    return tuple(
        image_dataset_from_directory(
            ws.data / split,
            labels="inferred",
            label_mode="binary",
            image_size=image_size,
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed,
        )
        for split in ("train", "validate", "test")
    )
