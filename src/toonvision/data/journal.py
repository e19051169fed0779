"""An append-only JSON-lines journal: the record of what extraction has done, safe against being killed.

Each record is one ``write`` of one line to a file opened with ``O_APPEND`` and fsynced, so concurrent
writers never interleave inside a line and a crash can at worst leave a torn last line, which the reader
skips. Records are never rewritten; the journal is the workspace's memory of which boxes became which crops.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # end a torn line first, so this record stays readable
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        records, _ = self.read_from(0)
        return iter(records)

    def read_from(self, offset: int) -> tuple[list[dict[str, Any]], int]:
        """Complete records after byte ``offset``, and the offset to continue from next time."""
        records: list[dict[str, Any]] = []
        try:
            with open(self.path, "rb") as handle:
                handle.seek(offset)
                for raw in handle:
                    if not raw.endswith(b"\n"):
                        break  # a line still being written, or the torn last line of a killed writer
                    offset += len(raw)
                    try:
                        record = json.loads(raw)
                    except ValueError:
                        continue
                    if isinstance(record, dict):
                        records.append(record)
        except FileNotFoundError:
            pass
        return records, offset
