from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from toonvision.data.annotations import Annotation, Box, voc_bytes
from toonvision.data.workspace import Workspace

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


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run the installed ``toonvision`` command as a user would (``env``: variables to add to this process's)."""
    return subprocess.run(
        [sys.executable, "-m", "toonvision.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def toy_crops(ws: Workspace, per_label: int = 6, labels: Sequence[str] | None = None, seed: int = 0) -> list[Path]:
    """Small learnable crops straight into unsorted/: Cogs are a suit-coloured suit on a grey field, Toons a
    bright shirt; sizes and positions vary. Enough for a model to learn within a couple of epochs."""
    from toonvision.data.taxonomy import SUIT_BY_SHORT, parse_label

    rng = np.random.default_rng(seed)
    labels = labels or [
        "cog_bb_flunky",
        "cog_lb_bloodsucker",
        "cog_cb_tightwad",
        "cog_sb_coldcaller",
        "toon_cat",
        "toon_dog",
    ]
    paths = []
    for label in labels:
        parsed = parse_label(label)
        for i in range(per_label):
            h, w = int(rng.integers(60, 140)), int(rng.integers(25, 60))
            img = np.full((h, w, 3), 128, dtype=np.uint8) + rng.integers(0, 20, (h, w, 3), dtype=np.uint8)
            if parsed.is_cog:
                color = np.array([int(SUIT_BY_SHORT[parsed.suit].color[k : k + 2], 16) for k in (1, 3, 5)])
                img[h // 4 : h * 3 // 4, w // 5 : w * 4 // 5] = color
            else:
                img[h // 3 : h * 2 // 3, :] = (250, 240, 60)
                img[: h // 4, w // 4 : w * 3 // 4] = (255, 255, 255)
            path = ws.unsorted_dir(parsed.kind) / f"{label}_{i}.png"
            Image.fromarray(img).save(path)
            paths.append(path)
    return paths
