"""A cache of decoded, resized crops: every crop is decoded from PNG once, not once per epoch and run.

The pixels live in one uint8 array file per image size and resize mode under ``<root>/.toonvision/cache/``
(memory-mapped, so a run reads rows without decoding anything), with an index from crop name to row. A row is reused
while the crop file keeps its size and modification time; moving a crop between splits (a link and an
unlink) keeps both, so re-splitting reuses everything, while a changed or new crop is decoded again.

The cache is derived data: deleting the folder only costs the time to rebuild it. Updates take an
exclusive lock; the index is replaced atomically after the rows it points to are written and flushed, so a
killed update leaves at worst rows that no index entry points to.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from toonvision.data.files import file_lock, write_text_atomic
from toonvision.data.images import load_images

if TYPE_CHECKING:
    from toonvision.data.workspace import Workspace

GROW = 256  # rows added at a time when the array file grows
CHUNK = 256  # images decoded, held and written at a time when the cache is filled


class RowReader:
    """Cached images by position, each read from the cache file when asked for: memory holds what is in use,
    not the whole set (a memory map's touched pages would count towards the process' memory)."""

    def __init__(self, path: Path, rows: Sequence[int], shape: tuple[int, ...]) -> None:
        self.path, self.rows, self.shape = Path(path), list(rows), shape
        self.row_bytes = int(np.prod(shape))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> np.ndarray:
        with open(self.path, "rb") as f:
            f.seek(self.rows[i] * self.row_bytes)
            data = f.read(self.row_bytes)
        return np.frombuffer(data, np.uint8).reshape(self.shape)


class PixelCache:
    def __init__(self, folder: Path, size: tuple[int, int], pad: bool, loader: Callable | None = None) -> None:
        self.loader = loader  # (paths, size, pad=, threads=) -> uint8 array; None: load_images (crops)
        self.size = size
        self.pad = pad
        self.folder = Path(folder) / f"{size[0]}x{size[1]}-{'pad' if pad else 'stretch'}"
        self.pixels_path = self.folder / "pixels.u8"
        self.index_path = self.folder / "index.json"
        self.row_bytes = size[0] * size[1] * 3

    @classmethod
    def for_workspace(cls, ws: Workspace, size: tuple[int, int], pad: bool) -> PixelCache:
        return cls(ws.state / "cache", size, pad)

    def _read_index(self) -> dict[str, list[int]]:
        try:
            return json.loads(self.index_path.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def _rows(self) -> int:
        try:
            return self.pixels_path.stat().st_size // self.row_bytes
        except FileNotFoundError:
            return 0

    def load(self, paths: Sequence[Path], threads: int | None = None) -> np.ndarray:
        """Pixels of ``paths`` as a (N, H, W, 3) uint8 array, decoding only crops not cached yet."""
        rows = self.update(paths, threads)
        mm = np.memmap(self.pixels_path, dtype=np.uint8, mode="r").reshape(-1, *self.size, 3)
        return np.asarray(mm[rows])

    def reader(self, paths: Sequence[Path], threads: int | None = None) -> RowReader:
        """The pixels of ``paths`` read from disk one image at a time (decoding those not cached yet): for sets
        larger than memory should hold, such as thousands of whole screenshots."""
        return RowReader(self.pixels_path, self.update(paths, threads), (*self.size, 3))

    def update(self, paths: Sequence[Path], threads: int | None = None) -> list[int]:
        """Decode what is not cached yet, a chunk at a time (memory holds one chunk, and a killed update keeps
        the chunks it finished); the cache rows of ``paths``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        keys = []
        for p in paths:
            st = os.stat(p)
            keys.append((Path(p).name, st.st_size, st.st_mtime_ns))
        with file_lock(self.folder / "lock"):
            index = self._read_index()
            missing = [i for i, (name, size, mtime) in enumerate(keys) if index.get(name, [None])[1:] != [size, mtime]]
            for first in range(0, len(missing), CHUNK):
                part = missing[first : first + CHUNK]
                loader = self.loader or load_images
                fresh = loader([paths[i] for i in part], self.size, pad=self.pad, threads=threads)
                used = {entry[0] for entry in index.values()}
                # Rows of entries being replaced are overwritten in place; new crops get unused rows.
                rows = []
                free = (r for r in range(self._rows() + len(part)) if r not in used)
                for i in part:
                    name = keys[i][0]
                    rows.append(index[name][0] if name in index else next(free))
                needed = max(rows) + 1
                if needed > self._rows():
                    with open(self.pixels_path, "ab") as f:
                        f.truncate(((needed + GROW - 1) // GROW) * GROW * self.row_bytes)
                mm = np.memmap(self.pixels_path, dtype=np.uint8, mode="r+").reshape(-1, *self.size, 3)
                mm[rows] = fresh
                mm.flush()
                del mm
                for i, row in zip(part, rows, strict=True):
                    name, size, mtime = keys[i]
                    index[name] = [row, size, mtime]
                write_text_atomic(self.index_path, json.dumps(index))
        return [index[name][0] for name, _, _ in keys]

    def disk_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.folder.glob("*") if f.is_file())
