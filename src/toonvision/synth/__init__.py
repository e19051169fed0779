"""Synthetic ToonTown street screenshots rendered with Panda3D: ToonVision's built-in dataset.

Importing this package does not import Panda3D; rendering functions import it when called.

    from toonvision.synth import SynthConfig, generate
    summary = generate(Workspace(root), SynthConfig.from_preset("seed"), workers=0)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from toonvision.synth.dataset import (
    PRESETS,
    IndexResult,
    Preset,
    Summary,
    SynthConfig,
    apply_weights,
    generate,
    masks_dir,
    parse_size,
)
from toonvision.synth.scene import Realism, street_for

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "PRESETS",
    "IndexResult",
    "Preset",
    "Realism",
    "Summary",
    "SynthConfig",
    "apply_weights",
    "generate",
    "masks_dir",
    "parse_size",
    "render_contact_sheet",
    "street_for",
]


def render_contact_sheet(path: Path, seed: int = 0, **kwargs: Any) -> Path:
    """One labelled close-up of every class in a PNG grid (see :mod:`toonvision.synth.contact_sheet`)."""
    from toonvision.synth.contact_sheet import render_contact_sheet as _render

    return _render(path, seed, **kwargs)
