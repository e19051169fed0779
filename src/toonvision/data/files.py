"""The only places ToonVision creates, moves or replaces files, and the locks that keep processes apart.

Nothing in ToonVision overwrites or deletes the only copy of a screenshot, an annotation or a crop. Every
helper here is atomic, or leaves a state that the next run repairs:

- :func:`write_bytes_atomic` replaces a derived file (a figure, a JSON record, a model) all at once;
- :func:`create_exclusive` creates a file that must never replace another (a crop, a rendered screenshot);
- :func:`move_no_clobber` moves a file without ever replacing one;
- :func:`new_run_dir` gives every run a folder of its own.

Locks are advisory file locks through portalocker (fcntl on POSIX, LockFileEx on Windows), imported only
when a lock is taken.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np


def fsync_dir(path: Path) -> None:
    # Directories cannot be opened for fsync on Windows; there the rename itself is what is durable.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def tmp_path(path: Path) -> Path:
    """The temporary name a writer uses before ``path`` exists: ``.<name>.<pid>.tmp`` beside it."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _write_synced(path: Path, data: bytes, mode: str = "wb") -> None:
    with open(path, mode) as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (readers see the old or the new file, never half)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
    _write_synced(tmp, data)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json(path: Path, data: Any) -> None:
    """``data`` as indented JSON, atomically; numpy scalars and paths are written as plain values."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_json(path: Path, default: Any = None) -> Any:
    """The JSON in ``path``; ``default`` when the file does not exist."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default


def create_exclusive(path: Path, data: bytes) -> bool:
    """Create ``path`` holding ``data`` only if no file of that name exists; False when one does.

    The file appears complete or not at all: it is written under a temporary name and hard-linked into
    place, and ``link`` fails rather than replace an existing file, also against a concurrent writer.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
    _write_synced(tmp, data)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError:
        # File systems without hard links: O_EXCL still refuses to clobber, at the cost of a window in
        # which a reader could see a partly written file.
        try:
            _write_synced(path, data, "xb")
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


_TMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")


def remove_stale_tmp(folders: Path | Iterable[Path], stems: set[str] | None = None) -> int:
    """Delete temporary files left by killed writers (``.<name>.<pid>.tmp`` whose process is gone); with
    ``stems``, only those of files whose name starts with one of them.

    They are never the only copy of anything: a crop's temporary file is made again from its screenshot, a
    rendered screenshot's from its seed.
    """
    removed = 0
    for folder in [folders] if isinstance(folders, Path) else folders:
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            m = _TMP_RE.match(entry.name)
            if not m or (stems is not None and m.group("name").split(".", 1)[0] not in stems):
                continue
            if pid_alive(int(m.group("pid"))):
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
    except (PermissionError, OSError):
        # PermissionError: someone else's process. OSError: Windows' os.kill cannot probe; assume alive, so
        # that a live writer's file is never removed.
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (macOS, Windows) or gone meanwhile
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


@contextlib.contextmanager
def file_lock(path: Path, *, shared: bool = False, blocking: bool = True) -> Iterator[bool]:
    """Hold an advisory lock on ``path`` (created if missing) for the ``with`` block; yields False, without
    waiting, when ``blocking`` is off and another process holds it."""
    import portalocker

    path.parent.mkdir(parents=True, exist_ok=True)
    flags = portalocker.LockFlags.SHARED if shared else portalocker.LockFlags.EXCLUSIVE
    if not blocking:
        flags |= portalocker.LockFlags.NON_BLOCKING
    with open(path, "a+") as handle:
        try:
            portalocker.lock(handle, flags)
        except portalocker.exceptions.LockException:
            if blocking:
                raise
            yield False
            return
        try:
            yield True
        finally:
            portalocker.unlock(handle)


def new_run_dir(parent: Path, name: str) -> Path:
    """A fresh folder ``parent/name``, ``name-2``, ``name-3``... (created atomically, never reused)."""
    parent.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        path = parent / (name if n == 1 else f"{name}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1


def latest_run_dir(parent: Path, name: str) -> Path | None:
    """The newest folder :func:`new_run_dir` made for ``name`` under ``parent`` (highest number), or None."""
    best: tuple[int, Path] | None = None
    pattern = re.compile(rf"^{re.escape(name)}(?:-(\d+))?$")
    for path in parent.glob(f"{glob.escape(name)}*"):
        m = pattern.match(path.name)
        if m and path.is_dir():
            n = int(m.group(1) or 1)
            if best is None or n > best[0]:
                best = (n, path)
    return best[1] if best else None
