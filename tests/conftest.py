from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from toonvision.annotations import Annotation, Box, voc_bytes
from toonvision.workspace import Workspace

# Keep TensorFlow quiet and single-machine friendly in every test process.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "ws").init()


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def add_screenshot(
    ws: Workspace,
    name: str,
    boxes: Sequence[tuple[str, float, float, float, float]],
    size: tuple[int, int] = (320, 240),
    seed: int = 0,
    folder: Path | None = None,
) -> tuple[Path, Path]:
    """A noise screenshot with a labelImg Pascal VOC file beside it."""
    folder = folder or ws.screenshots
    folder.mkdir(parents=True, exist_ok=True)
    image = folder / name
    noise_image(*size, seed=seed).save(image)
    ann = Annotation(
        filename=image.name,
        width=size[0],
        height=size[1],
        folder=folder.name,
        path=str(image),
        boxes=[Box(*b) for b in boxes],
    )
    xml = image.with_suffix(".xml")
    xml.write_bytes(voc_bytes(ann))
    return image, xml


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the installed ``toonvision`` command as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "toonvision.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )
