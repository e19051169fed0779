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


class PixelCache:
    def __init__(self, folder: Path, size: tuple[int, int], pad: bool, loader: Callable = load_images) -> None:
        self.loader = loader  # (paths, size, pad=, threads=) -> uint8 array: how a file becomes a row
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
        self.folder.mkdir(parents=True, exist_ok=True)
        keys = []
        for p in paths:
            st = os.stat(p)
            keys.append((Path(p).name, st.st_size, st.st_mtime_ns))
        with file_lock(self.folder / "lock"):
            index = self._read_index()
            missing = [i for i, (name, size, mtime) in enumerate(keys) if index.get(name, [None])[1:] != [size, mtime]]
            if missing:
                fresh = self.loader([paths[i] for i in missing], self.size, pad=self.pad, threads=threads)
                used = {entry[0] for entry in index.values()}
                # Rows of entries being replaced are overwritten in place; new crops get unused rows.
                rows = []
                free = (r for r in range(self._rows() + len(missing)) if r not in used)
                for i in missing:
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
                for i, row in zip(missing, rows, strict=True):
                    name, size, mtime = keys[i]
                    index[name] = [row, size, mtime]
                write_text_atomic(self.index_path, json.dumps(index))
        mm = np.memmap(self.pixels_path, dtype=np.uint8, mode="r").reshape(-1, *self.size, 3)
        return np.asarray(mm[[index[name][0] for name, _, _ in keys]])

    def disk_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.folder.glob("*") if f.is_file())
