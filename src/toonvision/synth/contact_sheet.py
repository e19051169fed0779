"""A contact sheet: one close-up of every class (11 animals, then the 32 Cogs by suit) in a labelled grid.

It is the quickest way for a person to check that every Toon is recognisable by its head and every Cog by its
suit colour and its own head.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from toonvision.data.taxonomy import ANIMALS, SUITS, Label

CELL = (180, 300)  # width, height of one close-up


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size bitmap font
        return ImageFont.load_default()


def render_closeup(
    label: Label, seed: int = 0, size: tuple[int, int] = CELL, *, yaw: float = 200.0, street: str = "ttc"
) -> np.ndarray:
    """A front three-quarter close-up of one entity of ``label`` on a plain street-coloured backdrop."""
    from panda3d.core import NodePath

    from toonvision.synth.entities import Look, build_entity
    from toonvision.synth.geometry import part
    from toonvision.synth.palette import STREET_STYLES
    from toonvision.synth.render import get_renderer
    from toonvision.synth.world import apply_lighting

    style = STREET_STYLES[street]
    renderer = get_renderer(*size)
    scene = NodePath("sheet")
    scene.setBin("unsorted", 0)
    content = scene.attachNewNode("content")
    try:
        rng = random.Random(f"contact-sheet/{seed}/{label}")
        ground = content.attachNewNode("ground")
        part(ground, "box", (0, 0, -0.5), (60, 60, 1.0), style.sidewalk)
        apply_lighting(style, scene, random.Random(f"contact-sheet-light/{seed}"))
        ent = build_entity(content, label, rng, Look())
        ent.root.setH(yaw)
        height = ent.height
        lens_fov = 30.0
        vfov = 2 * math.degrees(math.atan(math.tan(math.radians(lens_fov / 2)) * size[1] / size[0]))
        dist = height * 1.12 / (2 * math.tan(math.radians(vfov / 2)))
        cam = renderer.camera
        cam.reparentTo(scene)
        cam.setPos(0, -dist, height * 0.62)
        cam.lookAt(0, 0, height * 0.5)
        renderer.lens.setFov(lens_fov)
        renderer.lens.setAspectRatio(size[0] / size[1])
        result = renderer.render_entities(content, ground, [ent], style.sky, nametags=False)
        cam.detachNode()
        return result.image
    finally:
        scene.removeNode()


def sheet_rows() -> list[tuple[str, list[Label]]]:
    rows = [("Toons", [Label("toon", animal=a) for a in ANIMALS])]
    rows += [(s.long.capitalize(), [Label("cog", suit=s.short, name=n) for n in s.cogs]) for s in SUITS]
    return rows


def render_contact_sheet(
    path: Path, seed: int = 0, cell: tuple[int, int] = CELL, rows: Sequence[tuple[str, list[Label]]] | None = None
) -> Path:
    """Write a PNG grid with one labelled close-up per class; returns ``path``."""
    from PIL import Image, ImageDraw

    from toonvision.data.files import write_bytes_atomic
    from toonvision.synth.dataset import encode_png

    rows = list(rows) if rows is not None else sheet_rows()
    cols = max(len(r[1]) for r in rows)
    cw, ch = cell
    caption, header = 22, 28
    width = cols * cw
    height = sum(header + ch + caption for _ in rows)
    sheet = Image.new("RGB", (width, height), (250, 250, 250))
    draw = ImageDraw.Draw(sheet)
    title_font, cap_font = _font(20), _font(14)
    y = 0
    for title, labels in rows:
        draw.text((8, y + 4), title, fill=(20, 20, 20), font=title_font)
        y += header
        for c, label in enumerate(labels):
            img = Image.fromarray(render_closeup(label, seed, cell))
            sheet.paste(img, (c * cw, y))
            text = label.display_name
            tw = draw.textlength(text, font=cap_font)
            draw.text((c * cw + (cw - tw) / 2, y + ch + 3), text, fill=(20, 20, 20), font=cap_font)
        y += ch + caption
    path = Path(path)
    write_bytes_atomic(path, encode_png(np.asarray(sheet)))
    return path
