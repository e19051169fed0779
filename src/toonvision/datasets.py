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
