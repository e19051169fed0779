"""The workspace: one root folder that holds screenshots, crops, splits and results in the spec's layout.

<root>/raw/screenshots/              screenshots + labelImg annotations waiting to be extracted
<root>/raw/processed/                screenshots already extracted (moved here by ``extract --move``)
<root>/raw/data/predefined_classes.txt
<root>/unsorted/{cog,toon}/          crops not assigned to a split
<root>/data/{train,validate,test}/{cog,toon}/
<root>/reports/ <root>/runs/         results: plots, reports, trained models
<root>/.toonvision/                  bookkeeping: manifests, journals, locks
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from toonvision.taxonomy import KINDS, Label, predefined_classes_text, read_label_list

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
    def reports(self) -> Path:
        return self.root / "reports"

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
            from toonvision.taxonomy import all_labels

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
        self.state.mkdir(parents=True, exist_ok=True)
        with open(self.state / "samples.lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


# --- safe file operations ---
# Nothing in ToonVision overwrites or deletes the only copy of a screenshot, annotation or crop. These helpers
# are the only places files are created or moved; each is atomic or leaves a state the next run repairs.


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (readers see the old or the new file, never half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def create_exclusive(path: Path, data: bytes) -> bool:
    """Create ``path`` holding ``data`` only if no file of that name exists; False when one does.

    The file appears complete or not at all: it is written under a temporary name and hard-linked into
    place, and ``link`` fails rather than replace an existing file, also against a concurrent writer.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError:
        # File systems without hard links: O_EXCL still refuses to clobber, at the cost of a window in
        # which a reader could see a partly written file.
        try:
            with open(path, "xb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except FileExistsError:
            return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_dir(path.parent)
    return True


def move_no_clobber(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``, refusing to replace an existing ``dst`` (FileExistsError).

    A hard link then an unlink: if the process dies in between, both names point at the same inode and
    :func:`heal_double_link` (run by whoever finds the pair next) removes the stale one. No data is lost in
    any interleaving.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except FileExistsError:
        if os.path.samefile(src, dst):
            os.unlink(src)  # a previous move died between link and unlink
            return
        raise
    except OSError:
        if dst.exists():
            raise FileExistsError(dst) from None
        os.rename(src, dst)
        return
    os.unlink(src)
    fsync_dir(dst.parent)
    fsync_dir(src.parent)


def heal_double_link(keep: Path, other: Path) -> bool:
    """Remove ``other`` when it is a second name of the same file as ``keep`` (an interrupted move)."""
    try:
        if os.path.samefile(keep, other):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(other)
            return True
    except FileNotFoundError:
        pass
    return False


def remove_stale_tmp(folder: Path) -> int:
    """Delete temporary files left by killed writers (``.<name>.<pid>.tmp`` whose process is gone).

    They are never the only copy of anything: a crop's temporary file is re-made from its screenshot.
    """
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    for entry in entries:
        name = entry.name
        if not (name.startswith(".") and name.endswith(".tmp")):
            continue
        pid_text = name[:-4].rsplit(".", 1)[-1]
        if not pid_text.isdigit() or pid_alive(int(pid_text)):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.path)
            removed += 1
    return removed


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs. A killed process whose parent has not reaped it yet (a zombie,
    common for the children of a killed run, since they are re-parented to an init that may reap late) is
    dead: it will never finish or rename its temporary file."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (macOS) or gone meanwhile
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
