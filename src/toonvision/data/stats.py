"""Dataset statistics: how many crops of each label, class, suit, animal, street and split, and how big."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from toonvision.data.extraction import crop_records, screenshot_states
from toonvision.data.images import image_size
from toonvision.data.samples import Sample, find_samples
from toonvision.data.taxonomy import ANIMALS, KINDS, SUITS, Label
from toonvision.data.workspace import SPLITS, Workspace


@dataclass(frozen=True)
class Desired:
    """The spec's green 'desired' lines: samples wanted per label, per animal, per suit, per binary class."""

    label: int = 20
    animal: int = 58
    suit: int = 160
    binary: int = 640


@dataclass(frozen=True)
class CropInfo:
    name: str
    label: Label
    split: str | None
    width: int
    height: int
    street: str | None


@dataclass
class DatasetStats:
    crops: list[CropInfo]
    per_label: Counter = field(default_factory=Counter)
    per_kind: Counter = field(default_factory=Counter)
    per_suit: Counter = field(default_factory=Counter)
    per_animal: Counter = field(default_factory=Counter)
    per_street: Counter = field(default_factory=Counter)
    per_split: Counter = field(default_factory=Counter)  # (split or "unsorted", kind) -> n
    per_split_group: Counter = field(default_factory=Counter)  # (split or "unsorted", group) -> n

    @property
    def total(self) -> int:
        return len(self.crops)

    def labels_in_order(self) -> list[str]:
        """Every Cog label in ladder order by suit, then Toons; labels a user added come last."""
        known = [f"cog_{s.short}_{n}" for s in SUITS for n in s.cogs] + [f"toon_{a}" for a in ANIMALS]
        extra = sorted(set(self.per_label) - set(known))
        return known + extra

    def splits_present(self) -> list[str]:
        present = {split for split, _ in self.per_split}
        return [s for s in ("unsorted", *SPLITS) if s in present]


def collect(ws: Workspace, samples: list[Sample] | None = None) -> DatasetStats:
    samples = find_samples(ws) if samples is None else samples
    records = crop_records(ws)
    crops = []
    for s in samples:
        width, height = image_size(s.path)
        street = records.get(s.name, {}).get("street")
        crops.append(CropInfo(s.name, s.label, s.split, width, height, street))
    return tally(crops)


def tally(crops: list[CropInfo]) -> DatasetStats:
    """Count the crops per label, kind, suit, animal, street and split."""
    stats = DatasetStats(crops)
    for c in crops:
        split = c.split or "unsorted"
        stats.per_label[str(c.label)] += 1
        stats.per_kind[c.label.kind] += 1
        stats.per_split[(split, c.label.kind)] += 1
        stats.per_split_group[(split, c.label.kind)] += 1
        if c.label.is_cog:
            stats.per_suit[c.label.suit] += 1
            stats.per_split_group[(split, c.label.suit)] += 1
        else:
            stats.per_animal[c.label.animal] += 1
            stats.per_split_group[(split, c.label.animal)] += 1
        stats.per_street[c.street or "unknown"] += 1
    for kind in KINDS:
        stats.per_kind.setdefault(kind, 0)
    return stats


def screenshot_review(ws: Workspace) -> dict[str, Counter]:
    """Screenshots of raw/screenshots and raw/processed by who labelled them: reviewed (a person), pre-annotated
    ('toonvision annotate', nobody has looked yet) or unlabelled; see :mod:`toonvision.data.review`."""
    out = {}
    for name, folder in (("raw/screenshots", ws.screenshots), ("raw/processed", ws.processed)):
        out[name] = Counter(state.status for state in screenshot_states(folder)) if folder.is_dir() else Counter()
    return out
