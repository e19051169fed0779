"""The workspace: one root folder that holds screenshots, crops, splits and results in the spec's layout.

<root>/raw/screenshots/              screenshots + labelImg annotations waiting to be extracted
<root>/raw/processed/                screenshots already extracted (moved here by ``extract --move``)
<root>/raw/data/predefined_classes.txt
<root>/unsorted/{cog,toon}/          crops not assigned to a split
<root>/data/{train,validate,test}/{cog,toon}/
<root>/runs/<verb>/<run>/            results: one new folder per run of a verb
<root>/.toonvision/                  bookkeeping: the extraction journal, caches, locks
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from toonvision.data.files import file_lock, write_text_atomic
from toonvision.data.taxonomy import KINDS, Label, all_labels, predefined_classes_text, read_label_list

SPLITS: tuple[str, ...] = ("train", "validate", "test")


@dataclass(frozen=True)
class Workspace:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # --- layout -------------------------------------------------------------------------------------------
    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def screenshots(self) -> Path:
        return self.raw / "screenshots"

    @property
    def processed(self) -> Path:
        return self.raw / "processed"

    @property
    def classes_file(self) -> Path:
        return self.raw / "data" / "predefined_classes.txt"

    @property
    def unsorted(self) -> Path:
        return self.root / "unsorted"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def state(self) -> Path:
        return self.root / ".toonvision"

    def unsorted_dir(self, kind: str) -> Path:
        return self.unsorted / kind

    def split_dir(self, split: str, kind: str) -> Path:
        return self.data / split / kind

    def sample_dirs(self) -> list[tuple[str | None, str, Path]]:
        """Every folder a crop may live in, as (split or None for unsorted, kind, path)."""
        dirs: list[tuple[str | None, str, Path]] = [(None, k, self.unsorted_dir(k)) for k in KINDS]
        dirs += [(s, k, self.split_dir(s, k)) for s in SPLITS for k in KINDS]
        return dirs

    # --- set-up -------------------------------------------------------------------------------------------
    def init(self) -> Workspace:
        """Create the layout (idempotent) and a default ``predefined_classes.txt`` when there is none."""
        for path in (self.screenshots, self.processed, self.classes_file.parent, self.state):
            path.mkdir(parents=True, exist_ok=True)
        for _, _, path in self.sample_dirs():
            path.mkdir(parents=True, exist_ok=True)
        if not self.classes_file.exists():
            write_text_atomic(self.classes_file, predefined_classes_text())
        return self

    def labels(self) -> list[Label]:
        """The labels extraction accepts: those in the workspace's ``predefined_classes.txt``."""
        if not self.classes_file.exists():
            return all_labels()
        return read_label_list(self.classes_file)

    def relative(self, path: Path) -> str:
        """``path`` relative to the root when it lies inside it, for manifests and messages."""
        try:
            return Path(path).resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(path)

    @contextlib.contextmanager
    def lock(self, *, shared: bool = False) -> Iterator[None]:
        """Advisory lock on the workspace's samples: splits take it exclusively, extractions shared.

        Extractions may run side by side (they create crops exclusively), but never while a split moves
        files between folders, since a crop in flight could then be missed when the next index is chosen.
        """
        with file_lock(self.state / "samples.lock", shared=shared):
            yield
