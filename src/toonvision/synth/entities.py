"""Toons and Cogs built from primitives.

Coordinates: Z up, the entity faces +Y, its feet stand on z=0. Units are roughly ToonTown feet: Toons are
3-4.5 tall, Cogs 4.5-8 (higher tiers bigger). Heads are modelled in unit coordinates under a scaled head node
so that features keep their proportions across head sizes.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from panda3d.core import NodePath

from toonvision.data.taxonomy import SUIT_BY_SHORT, Label
from toonvision.synth.anatomy import BODIES, COG_BODY, Look, cog_scale
from toonvision.synth.geometry import part
from toonvision.synth.palette import (
    ANIMAL_FAVOURITES,
    BLACK,
    CLOTHES,
    COG_LIKE_BOTTOMS,
    COG_LIKE_TOPS,
    PINK,
    RGB,
    SHOES,
    TOON_COLORS,
    TOON_NAME_COLORS,
    WHITE,
    hex_rgb,
    mix,
    shade,
    toon_name,
)
from toonvision.synth.textures import PATTERNS, shirt_texture


@dataclass
class Entity:
    """One Toon or Cog in a scene: its node, label and what its nametag says."""

    label: Label
    root: NodePath
    height: float  # top of the head (ears, hat) above the feet, in world units
    name_lines: list[str]
    name_color: RGB
    confuser: str = ""  # which hard case this entity plays, for reports and tests ("" = none)
    head: NodePath | None = field(default=None, repr=False)


# --- Toons --------------------------------------------------------------------------------------------------

HEAD_SIZES = (0.36, 0.42, 0.48)
TORSO_LENGTHS = (0.72, 0.88, 1.04)
LEG_LENGTHS = (0.7, 0.9, 1.1)


def _toon_head(head: NodePath, animal: str, fur: RGB, rng: random.Random) -> float:
    """Build ``animal``'s head in unit coordinates; returns the head's top in those units (ears included)."""
    light = mix(fur, (1.0, 0.95, 0.85), 0.55)
    dark = shade(fur, 0.7)
    inner = mix(PINK, fur, 0.3)
    shapes = {
        "horse": (0.82, 0.9, 1.12),
        "crocodile": (1.0, 0.95, 0.85),
        "pig": (1.05, 1.0, 0.95),
        "bear": (1.05, 1.0, 0.95),
        "mouse": (0.95, 0.9, 0.95),
        "deer": (0.9, 0.95, 1.05),
    }
    part(head, "sphere", (0, 0, 0), shapes.get(animal, (1.0, 0.95, 1.0)), fur)
    top = 1.0
    eye_z, eye_x, eye_y = 0.2, 0.33, 0.8
    mouth = True
    if animal == "bear":
        for s in (-1, 1):
            part(head, "sphere", (0.7 * s, 0, 0.72), (0.32, 0.16, 0.32), fur)
            part(head, "sphere", (0.7 * s, 0.1, 0.72), (0.18, 0.08, 0.18), dark)
        part(head, "sphere", (0, 0.78, -0.3), (0.42, 0.32, 0.3), light)
        part(head, "sphere", (0, 1.08, -0.18), (0.15, 0.09, 0.11), BLACK)
        top = 1.04
    elif animal == "cat":
        for s in (-1, 1):
            part(head, "cone", (0.5 * s, 0, 0.62), (0.3, 0.14, 0.62), fur, (0, 0, 22 * s))
            part(head, "cone", (0.5 * s, 0.07, 0.66), (0.18, 0.08, 0.45), inner, (0, 0, 22 * s))
            for k in (-1, 1):
                part(head, "box", (0.55 * s, 0.86, -0.22 + 0.06 * k), (0.55, 0.02, 0.025), BLACK, (0, 0, 8 * k * s))
        part(head, "sphere", (0, 0.8, -0.28), (0.34, 0.24, 0.22), light)
        part(head, "sphere", (0, 1.0, -0.14), (0.1, 0.06, 0.07), PINK)
        top = 1.22
    elif animal == "crocodile":
        part(head, "sphere", (0, 0.95, -0.38), (0.58, 0.95, 0.3), fur)
        part(head, "box", (0, 1.05, -0.52), (0.9, 1.4, 0.06), WHITE)  # a row of teeth between the jaws
        for s in (-1, 1):
            part(head, "sphere", (0.15 * s, 1.78, -0.2), (0.06, 0.05, 0.05), BLACK)
            part(head, "sphere", (0.38 * s, 0.25, 0.62), (0.3, 0.3, 0.28), fur)  # eye bumps on top
        eye_z, eye_x, eye_y = 0.68, 0.38, 0.48
        mouth = False
        top = 0.92
    elif animal == "deer":
        antler = (0.5, 0.33, 0.16)
        for s in (-1, 1):
            part(head, "sphere", (0.88 * s, 0, 0.38), (0.42, 0.1, 0.16), fur, (0, 0, 20 * s))
            part(head, "cyl", (0.32 * s, -0.05, 0.8), (0.06, 0.06, 0.85), antler, (0, 0, -22 * s))
            part(head, "cyl", (0.5 * s, -0.05, 1.2), (0.05, 0.05, 0.45), antler, (0, 0, -65 * s))
            part(head, "cyl", (0.45 * s, -0.05, 1.1), (0.05, 0.05, 0.4), antler, (0, 0, 20 * s))
        part(head, "sphere", (0, 0.75, -0.35), (0.38, 0.36, 0.3), light)
        part(head, "sphere", (0, 1.08, -0.25), (0.14, 0.08, 0.1), BLACK)
        top = 1.78
    elif animal == "dog":
        ear = dark if rng.random() < 0.6 else BLACK
        for s in (-1, 1):
            part(head, "sphere", (0.9 * s, -0.05, -0.05), (0.22, 0.26, 0.62), ear, (0, 0, 12 * s))
        part(head, "sphere", (0, 0.85, -0.3), (0.42, 0.46, 0.32), light)
        part(head, "sphere", (0, 1.28, -0.16), (0.22, 0.15, 0.16), BLACK)
        part(head, "sphere", (0.05, 1.0, -0.58), (0.14, 0.1, 0.1), (0.95, 0.35, 0.4))
        top = 1.0
    elif animal == "duck":
        bill = (1.0, 0.6, 0.1)
        part(head, "sphere", (0, 0.98, -0.32), (0.64, 0.62, 0.15), bill)
        part(head, "sphere", (0, 0.95, -0.45), (0.55, 0.5, 0.1), shade(bill, 0.85))
        for k in (-1, 0, 1):
            part(head, "cone", (0.12 * k, -0.1, 0.88), (0.1, 0.1, 0.35), fur, (0, -15, 25 * k))
        eye_x = 0.28
        mouth = False
        top = 1.2
    elif animal == "horse":
        part(head, "sphere", (0, 0.72, -0.5), (0.5, 0.66, 0.46), light)
        for s in (-1, 1):
            part(head, "sphere", (0.18 * s, 1.32, -0.42), (0.07, 0.04, 0.06), BLACK)
            part(head, "cone", (0.35 * s, 0, 0.95), (0.16, 0.1, 0.45), fur, (0, 0, 10 * s))
        part(head, "sphere", (0, -0.35, 0.75), (0.12, 0.6, 0.4), shade(fur, 0.55))
        eye_z = 0.35
        top = 1.4
    elif animal == "monkey":
        face = (0.97, 0.82, 0.64)
        for s in (-1, 1):
            part(head, "sphere", (0.98 * s, 0, 0.05), (0.32, 0.09, 0.32), fur)
            part(head, "sphere", (0.98 * s, 0.05, 0.05), (0.2, 0.06, 0.2), face)
        part(head, "sphere", (0, 0.5, -0.05), (0.72, 0.52, 0.72), face)
        part(head, "sphere", (0, 0.82, -0.42), (0.4, 0.24, 0.24), face)
        top = 1.0
    elif animal == "mouse":
        for s in (-1, 1):
            part(head, "sphere", (0.72 * s, 0, 0.78), (0.5, 0.08, 0.5), fur, (0, 0, 25 * s))
            part(head, "sphere", (0.72 * s, 0.05, 0.78), (0.34, 0.06, 0.34), inner, (0, 0, 25 * s))
        part(head, "sphere", (0, 0.82, -0.25), (0.3, 0.3, 0.22), fur)
        part(head, "sphere", (0, 1.12, -0.2), (0.1, 0.07, 0.08), BLACK)
        top = 1.28
    elif animal == "pig":
        snout = shade(mix(fur, PINK, 0.5), 0.92)
        part(head, "cyl", (0, 0.8, -0.25), (0.32, 0.32, 0.32), snout, (0, -90, 0))
        for s in (-1, 1):
            part(head, "sphere", (0.11 * s, 1.12, -0.25), (0.06, 0.03, 0.09), shade(snout, 0.5))
            part(head, "cone", (0.55 * s, 0.1, 0.7), (0.24, 0.12, 0.4), fur, (0, 25, 25 * s))
        top = 1.05
    elif animal == "rabbit":
        for s in (-1, 1):
            part(head, "sphere", (0.3 * s, 0, 1.45), (0.2, 0.1, 0.8), fur, (0, 0, -8 * s))
            part(head, "sphere", (0.3 * s, 0.06, 1.45), (0.12, 0.06, 0.62), inner, (0, 0, -8 * s))
        part(head, "box", (0, 0.93, -0.5), (0.2, 0.06, 0.16), WHITE)
        part(head, "sphere", (0, 0.98, -0.15), (0.1, 0.06, 0.08), PINK)
        top = 2.2
    for s in (-1, 1):
        part(head, "sphere", (eye_x * s, eye_y, eye_z), (0.21, 0.14, 0.3), WHITE)
        part(head, "sphere", (eye_x * s * 0.95, eye_y + 0.12, eye_z - 0.05), (0.1, 0.06, 0.16), BLACK)
    if mouth:
        part(head, "sphere", (0, 0.82, -0.55), (0.2, 0.08, 0.08), (0.35, 0.05, 0.08))
    return top


def build_toon(parent: NodePath, animal: str, rng: random.Random, look: Look | None = None) -> Entity:
    look = look or Look()
    root = parent.attachNewNode(f"toon_{animal}")
    # Fur: mostly the species' favourites or the palette; mismatched head/arms/legs are rare, as in the spec.
    fur = rng.choice(ANIMAL_FAVOURITES[animal]) if rng.random() < 0.45 else rng.choice(TOON_COLORS)
    arm_fur = leg_fur = fur
    if rng.random() < 0.04:
        arm_fur = rng.choice(TOON_COLORS)
        leg_fur = rng.choice(TOON_COLORS)
    r = rng.choice(HEAD_SIZES)
    torso = rng.choice(TORSO_LENGTHS)
    legs = rng.choice(LEG_LENGTHS)
    skirt = rng.random() < 0.4
    if look.cog_colored_clothes:
        top_col = rng.choice(COG_LIKE_TOPS)
        bottom_col = rng.choice(COG_LIKE_BOTTOMS)
        shoe_col = (0.08, 0.08, 0.08)
        pattern = "solid" if rng.random() < 0.7 else rng.choice(("stripes", "band"))
        accent = shade(top_col, 0.7)
    else:
        top_col = rng.choice(CLOTHES)
        bottom_col = rng.choice(CLOTHES)
        shoe_col = rng.choice(SHOES)
        pattern = rng.choice(PATTERNS)
        accent = rng.choice(CLOTHES)
    shirt_tex = shirt_texture(pattern, top_col, accent)

    shoe_h = 0.12
    hip = shoe_h + legs
    swing = look.swing
    # Legs swing about the hips; shoes stay attached to the legs.
    for s in (-1, 1):
        leg = root.attachNewNode("leg")
        leg.setPos(0.16 * s, 0, hip)
        leg.setP(swing * s)
        part(leg, "cyl", (0, 0, -legs), (0.1, 0.1, legs), leg_fur)
        part(leg, "sphere", (0, 0.08, -legs - 0.03), (0.15, 0.26, 0.11), shoe_col)
    if skirt:
        part(root, "cyl", (0, 0, hip - 0.28), (0.46, 0.36, 0.28 + torso * 0.3), bottom_col, top=0.62)
    else:
        part(root, "cyl", (0, 0, hip - 0.12), (0.33, 0.25, 0.14 + torso * 0.3), bottom_col, top=0.95)
        for s in (-1, 1):
            part(root, "cyl", (0.16 * s, 0, hip - 0.22), (0.14, 0.14, 0.2), bottom_col)
    chest_z = hip + torso * 0.3
    part(root, "cyl", (0, 0, chest_z), (0.33, 0.25, torso * 0.72), WHITE, top=0.82, texture=shirt_tex)
    shoulder_z = hip + torso * 0.95
    part(root, "cyl", (0, 0, shoulder_z), (0.08, 0.08, 0.16), fur)
    arm_len = 0.35 + torso * 0.55
    for s in (-1, 1):
        arm = root.attachNewNode("arm")
        arm.setPos(0.3 * s, 0, shoulder_z - 0.06)
        if look.battle_pose and s == 1:
            arm.setHpr(0, 70, 10)
        else:
            arm.setHpr(0, -swing * s, -14 * s)
        part(arm, "cyl", (0, 0, -0.28), (0.105, 0.105, 0.3), top_col)
        part(arm, "cyl", (0, 0, -arm_len), (0.07, 0.07, arm_len - 0.2), arm_fur)
        glove = arm.attachNewNode("glove")
        glove.setPos(0, 0, -arm_len - 0.08)
        part(glove, "sphere", (0, 0, 0), (0.14, 0.1, 0.15), WHITE)
        part(glove, "sphere", (0.0, 0.09, 0.06), (0.05, 0.09, 0.05), WHITE)
        part(glove, "cyl", (0, 0, 0.08), (0.1, 0.1, 0.07), WHITE)
    head = root.attachNewNode("head")
    head_z = shoulder_z + 0.1 + r * 0.95
    head.setPos(0, 0.02, head_z)
    head.setScale(r)
    top = _toon_head(head, animal, fur, rng)
    height = head_z + r * top
    extras = rng.random()
    if extras < 0.22:
        _toon_hat(head, rng, animal)
        height = max(height, head_z + r * 1.35)
    if rng.random() < 0.15:
        frame = BLACK if rng.random() < 0.6 else rng.choice(CLOTHES)
        eye_z = 0.68 if animal == "crocodile" else 0.2
        for s in (-1, 1):
            part(head, "cyl", (0.33 * s, 0.95, eye_z), (0.24, 0.24, 0.04), frame, (0, -90, 0), top=1.0)
            part(head, "cyl", (0.33 * s, 0.99, eye_z), (0.19, 0.19, 0.03), (0.75, 0.9, 1.0), (0, -90, 0))
        part(head, "box", (0, 0.98, eye_z + 0.05), (0.3, 0.03, 0.04), frame)
    if rng.random() < 0.28:
        bag = rng.choice(CLOTHES) if not look.cog_colored_clothes else rng.choice(COG_LIKE_TOPS)
        part(root, "box", (0, -0.38, chest_z + torso * 0.4), (0.5, 0.26, torso * 0.65 + 0.1), bag)
        part(root, "box", (0, -0.52, chest_z + torso * 0.3), (0.4, 0.06, 0.22), shade(bag, 0.75))
    name = toon_name(rng)
    return Entity(
        label=Label("toon", animal=animal),
        root=root,
        height=height,
        name_lines=[name],
        name_color=rng.choice(TOON_NAME_COLORS),
        confuser="cog_colored_clothes" if look.cog_colored_clothes else "",
        head=head,
    )


def _toon_hat(head: NodePath, rng: random.Random, animal: str) -> None:
    col = rng.choice(CLOTHES)
    kind = rng.choice(("cap", "tophat", "beanie", "bow"))
    z = 0.82 if animal not in ("crocodile",) else 0.75
    if kind == "cap":
        part(head, "sphere", (0, 0, z - 0.05), (0.78, 0.78, 0.42), col)
        part(head, "box", (0, 0.7, z - 0.12), (0.8, 0.7, 0.06), shade(col, 0.8))
    elif kind == "tophat":
        part(head, "cyl", (0, 0, z), (0.75, 0.75, 0.05), shade(col, 0.5))
        part(head, "cyl", (0, 0, z), (0.45, 0.45, 0.6), shade(col, 0.5))
    elif kind == "beanie":
        part(head, "cone", (0, 0, z - 0.1), (0.6, 0.6, 0.65), col)
        part(head, "sphere", (0, 0, z + 0.55), (0.12, 0.12, 0.12), WHITE)
    else:
        for s in (-1, 1):
            part(head, "cone", (0.12 * s, 0.2, z + 0.05), (0.18, 0.12, 0.38), col, (0, 0, -80 * s))
        part(head, "sphere", (0, 0.2, z + 0.05), (0.1, 0.1, 0.1), col)


# --- Cogs ---------------------------------------------------------------------------------------------------

HAND_TINT: dict[str, RGB] = {
    "bb": (0.93, 0.78, 0.62),
    "lb": (0.72, 0.72, 0.95),
    "cb": (0.66, 0.86, 0.62),
    "sb": (0.95, 0.66, 0.72),
}
TIE: dict[str, RGB] = {
    "bb": (0.75, 0.15, 0.15),
    "lb": (0.15, 0.2, 0.35),
    "cb": (0.85, 0.75, 0.2),
    "sb": (0.2, 0.2, 0.25),
}

HeadFn = Callable[[NodePath, RGB], float]


def _face(
    head: NodePath, y: float = 0.9, z: float = 0.15, spread: float = 0.32, size: float = 0.09, brow: RGB | None = None
) -> None:
    for s in (-1, 1):
        part(head, "sphere", (spread * s, y, z), (size * 1.4, size * 0.8, size * 1.1), WHITE)
        part(head, "sphere", (spread * s, y + size * 0.6, z), (size * 0.7, size * 0.5, size * 0.7), BLACK)
        if brow is not None:
            part(
                head,
                "box",
                (spread * s, y + 0.02, z + size * 1.8),
                (size * 3.2, 0.06, size * 0.8),
                brow,
                (0, 0, -12 * s),
            )


def _grin(head: NodePath, y: float = 0.88, z: float = -0.4, width: float = 0.5) -> None:
    part(head, "sphere", (0, y, z), (width, 0.1, 0.14), (0.35, 0.05, 0.08))
    part(head, "box", (0, y + 0.07, z + 0.05), (width * 1.2, 0.04, 0.08), WHITE)


def _glasses(head: NodePath, y: float = 0.95, z: float = 0.15, r: float = 0.2, color: RGB = BLACK) -> None:
    for s in (-1, 1):
        part(head, "cyl", (0.32 * s, y, z), (r, r, 0.04), color, (0, -90, 0))
        part(head, "cyl", (0.32 * s, y + 0.02, z), (r * 0.75, r * 0.75, 0.04), (0.8, 0.9, 0.95), (0, -90, 0))
    part(head, "box", (0, y, z + 0.04), (0.25, 0.04, 0.05), color)


def _h_flunky(h: NodePath, skin: RGB) -> float:
    part(h, "sphere", (0, 0, 0.85), (0.95, 0.9, 0.9), skin)
    _face(h, z=0.95)
    _glasses(h, z=0.95, r=0.22)
    _grin(h, y=0.8, z=0.5)
    part(h, "sphere", (0, 0.88, 0.78), (0.12, 0.12, 0.14), shade(skin, 0.9))
    return 1.75


def _h_pencilpusher(h: NodePath, skin: RGB) -> float:
    part(h, "cyl", (0, 0, 0), (0.6, 0.6, 1.6), skin, top=0.85)
    part(h, "box", (0.1, 0.1, 1.62), (1.0, 0.9, 0.12), (0.35, 0.22, 0.1), (0, 0, -8))
    _face(h, y=0.58, z=1.05, spread=0.24)
    _glasses(h, y=0.62, z=1.05, r=0.2)
    part(h, "cone", (0, 0.55, 0.7), (0.12, 0.12, 0.45), shade(skin, 0.85), (0, -80, 0))
    part(h, "box", (0, 0.58, 0.35), (0.35, 0.04, 0.06), (0.35, 0.05, 0.08))
    return 1.7


def _h_yesman(h: NodePath, skin: RGB) -> float:
    part(h, "sphere", (0, 0, 0.85), (1.05, 0.9, 0.85), skin)
    part(h, "sphere", (0, -0.1, 1.45), (0.9, 0.7, 0.3), (0.3, 0.2, 0.1))
    _face(h, y=0.78, z=1.0)
    _grin(h, y=0.8, z=0.5, width=0.65)
    return 1.75


def _h_micromanager(h: NodePath, skin: RGB) -> float:
    part(h, "sphere", (0, 0, 0.55), (0.6, 0.6, 0.6), skin)
    _glasses(h, y=0.55, z=0.65, r=0.26, color=(0.55, 0.35, 0.1))
    part(h, "sphere", (0, 0.1, 1.12), (0.2, 0.2, 0.12), (0.55, 0.35, 0.15))
    for s in (-1, 1):
        part(h, "cone", (0.08 * s, 0.6, 0.15), (0.14, 0.08, 0.2), (0.8, 0.1, 0.1), (0, 0, 90 * s))
    return 1.2


def _h_downsizer(h: NodePath, skin: RGB) -> float:
    part(h, "box", (0, 0, 0.95), (1.1, 1.0, 1.8), skin)
    part(h, "box", (0, 0, 1.9), (1.15, 1.05, 0.12), shade(skin, 0.7))
    _face(h, y=0.52, z=1.25, spread=0.28, brow=BLACK)
    part(h, "box", (0, 0.52, 0.5), (0.45, 0.04, 0.07), BLACK)
    return 1.95


def _h_headhunter(h: NodePath, skin: RGB) -> float:
    part(h, "sphere", (0, 0, 0.95), (0.9, 0.85, 0.95), skin)
    part(h, "box", (0, 0.25, 0.35), (1.1, 0.9, 0.55), skin)  # heavy jaw
    part(h, "sphere", (0.15, -0.05, 1.7), (0.95, 0.85, 0.35), (0.15, 0.12, 0.1))
    for s in (-1, 1):
        part(h, "sphere", (0.95 * s, 0, 0.9), (0.15, 0.1, 0.3), skin)
    _face(h, y=0.8, z=1.05, brow=(0.15, 0.12, 0.1))
    _grin(h, y=0.72, z=0.35, width=0.45)
    return 2.0


def _h_corporateraider(h: NodePath, skin: RGB) -> float:
    part(h, "sphere", (0, 0, 0.95), (1.2, 1.0, 1.0), skin)
    part(h, "cone", (0, 0.5, 1.5), (0.3, 0.2, 0.6), (0.12, 0.12, 0.12), (0, 40, 0))
    _face(h, y=0.88, z=1.05, spread=0.4, size=0.12, brow=BLACK)
    part(h, "sphere", (0, 0.85, 0.45), (0.55, 0.12, 0.1), BLACK)
    return 1.95


def _h_thebigcheese(h: NodePath, skin: RGB) -> float:
    part(h, "sphere", (0, 0, 1.0), (1.25, 1.1, 1.05), skin)
    cheese = (1.0, 0.85, 0.25)
    part(h, "cyl", (0, 0, 1.7), (1.05, 1.05, 0.65), cheese, top=0.6)
    for x, z in ((-0.4, 1.95), (0.3, 2.1), (0.0, 1.85)):
        part(h, "sphere", (x, 0.75, z), (0.12, 0.08, 0.12), shade(cheese, 0.75))
    _face(h, y=0.95, z=1.15, spread=0.4)
    _grin(h, y=0.95, z=0.55, width=0.7)
    return 2.4


def _h_bottomfeeder(h: NodePath, skin: RGB) -> float:
    part(h, "sphere", (0, 0, 0.6), (1.15, 0.95, 0.6), skin)
    _face(h, y=0.75, z=0.8, spread=0.5, size=0.14)
    part(h, "sphere", (0, 0.85, 0.3), (0.45, 0.2, 0.16), (0.75, 0.3, 0.35))
    return 1.2


def _h_bloodsucker(h: NodePath, skin: RGB) -> float:
    part(h, "sphere", (0, 0, 1.0), (0.8, 0.8, 1.05), skin)
    part(h, "sphere", (0, -0.12, 1.55), (0.85, 0.75, 0.5), BLACK)
    part(h, "cone", (0, 0.55, 1.6), (0.22, 0.1, 0.35), BLACK, (0, 180, 0))  # widow's peak
    for s in (-1, 1):
        part(h, "cone", (0.7 * s, 0, 1.1), (0.12, 0.08, 0.45), skin, (0, 0, -70 * s))
        part(h, "cone", (0.12 * s, 0.75, 0.45), (0.05, 0.04, 0.15), WHITE, (0, 180, 0))
    _face(h, y=0.72, z=1.12, spread=0.26, brow=BLACK)
    part(h, "box", (0, 0.76, 0.5), (0.4, 0.04, 0.06), (0.45, 0.05, 0.1))
    return 2.05


def _h_doubletalker(h: NodePath, skin: RGB) -> float:
    part(h, "sphere", (0, 0, 1.0), (0.95, 0.9, 1.1), skin)
    _face(h, y=0.82, z=1.35, spread=0.3, size=0.08)
    _grin(h, y=0.85, z=0.95, width=0.35)
    _grin(h, y=0.85, z=0.5, width=0.35)
    part(h, "sphere", (0, -0.05, 1.9), (0.6, 0.6, 0.2), (0.55, 0.5, 0.45))
    return 2.05


def _h_ambulancechaser(h: NodePath, skin: RGB) -> float:
    part(h, "sphere", (0, 0, 0.9), (0.9, 0.85, 0.95), skin)
    part(h, "cyl", (0, 0, 1.7), (0.22, 0.22, 0.35), (0.95, 0.1, 0.1))
    part(h, "sphere", (0, 0, 2.05), (0.22, 0.22, 0.15), (1.0, 0.5, 0.4))
    part(h, "sphere", (0, 0.95, 0.85), (0.18, 0.28, 0.16), shade(skin, 0.85))
    _face(h, y=0.78, z=1.1, spread=0.3)
    part(h, "box", (0, 0.8, 0.4), (0.5, 0.04, 0.07), BLACK)
    return 2.2


def _h_backstabber(h: NodePath, skin: RGB) -> float:
    part(h, "cone", (0, 0, 0.0), (0.85, 0.8, 2.5), skin)
    _face(h, y=0.55, z=0.85, spread=0.24, brow=BLACK)
    part(h, "box", (0, 0.72, 0.35), (0.45, 0.04, 0.06), BLACK)
    return 2.5


def _h_spindoctor(h: NodePath, skin: RGB) -> float:
    part(h, "sphere", (0, 0, 0.9), (0.85, 0.85, 0.95), skin)
    part(h, "cyl", (0, 0, 1.75), (0.8, 0.8, 0.06), (0.9, 0.85, 0.3))
    part(h, "cyl", (0, 0, 1.8), (0.5, 0.5, 0.06), (0.3, 0.2, 0.5))
    part(h, "cyl", (0, 0, 1.85), (0.22, 0.22, 0.06), (0.9, 0.85, 0.3))
    _glasses(h, y=0.85, z=1.0, r=0.24)
    _grin(h, y=0.8, z=0.45, width=0.4)
    return 1.95


def _h_legaleagle(h: NodePath, skin: RGB) -> float:
    part(h, "sphere", (0, 0, 1.0), (0.85, 0.85, 1.0), WHITE)
    part(h, "sphere", (0, -0.2, 0.6), (0.95, 0.8, 0.6), (0.45, 0.3, 0.15))  # brown feathers below
    part(h, "cone", (0, 0.6, 0.85), (0.3, 0.25, 0.85), (1.0, 0.75, 0.1), (0, -80, 0))
    part(h, "sphere", (0, 1.35, 0.72), (0.12, 0.12, 0.14), (1.0, 0.75, 0.1))
    _face(h, y=0.65, z=1.25, spread=0.32, brow=BLACK)
    return 2.0


def _h_bigwig(h: NodePath, skin: RGB) -> float:
    part(h, "sphere", (0, 0.1, 0.9), (0.8, 0.8, 0.9), skin)
    wig = (0.96, 0.96, 0.92)
    for x, y, z in (
        (0, -0.2, 1.65),
        (-0.7, -0.1, 1.35),
        (0.7, -0.1, 1.35),
        (-0.85, -0.1, 0.8),
        (0.85, -0.1, 0.8),
        (-0.8, -0.1, 0.25),
        (0.8, -0.1, 0.25),
        (0, -0.6, 1.0),
    ):
        part(h, "sphere", (x, y, z), (0.5, 0.5, 0.45), wig)
    _face(h, y=0.85, z=1.0, spread=0.28)
    part(h, "box", (0, 0.88, 0.45), (0.35, 0.04, 0.06), BLACK)
    return 2.1


def _h_shortchange(h: NodePath, skin: RGB) -> float:
    part(h, "sphere", (0, 0, 0.65), (0.8, 0.75, 0.68), skin)
    part(h, "cone", (0, 0, 1.25), (0.15, 0.15, 0.35), (0.35, 0.3, 0.25))
    _face(h, y=0.65, z=0.8, spread=0.28)
    part(h, "box", (0, 0.7, 0.35), (0.3, 0.04, 0.06), BLACK)
    return 1.6


def _h_pennypincher(h: NodePath, skin: RGB) -> float:
    copper = (0.8, 0.5, 0.25)
    part(h, "cyl", (0, 0, 0.0), (0.85, 0.85, 1.7), copper)
    part(h, "cyl", (0, 0, 1.7), (0.9, 0.9, 0.1), shade(copper, 0.8))
    _glasses(h, y=0.88, z=1.05, r=0.2)
    part(h, "box", (0, 0.87, 0.45), (0.5, 0.04, 0.06), BLACK)
    return 1.8


def _h_tightwad(h: NodePath, skin: RGB) -> float:
    part(h, "sphere", (0, 0, 1.05), (0.65, 0.65, 1.1), skin)
    part(h, "cyl", (0, 0, 1.95), (0.8, 0.8, 0.06), (0.3, 0.3, 0.33))
    part(h, "cyl", (0, 0, 1.95), (0.45, 0.45, 0.45), (0.3, 0.3, 0.33), top=0.9)
    _face(h, y=0.6, z=1.25, spread=0.2, size=0.07, brow=BLACK)
    part(h, "sphere", (0, 0.62, 0.5), (0.15, 0.05, 0.06), BLACK)
    return 2.45


def _h_beancounter(h: NodePath, skin: RGB) -> float:
    part(h, "sphere", (0, 0, 1.0), (0.75, 0.75, 1.05), skin, (0, 0, 12))
    part(h, "cyl", (0, 0, 1.5), (0.78, 0.78, 0.12), (0.2, 0.6, 0.3))
    part(h, "box", (0, 0.75, 1.5), (0.9, 0.6, 0.05), (0.2, 0.8, 0.4), (0, 15, 0))
    _glasses(h, y=0.75, z=1.1, r=0.18)
    part(h, "box", (0, 0.72, 0.5), (0.3, 0.04, 0.06), BLACK)
    return 1.9


def _h_numbercruncher(h: NodePath, skin: RGB) -> float:
    grey = (0.7, 0.72, 0.75)
    part(h, "box", (0, 0, 0.85), (1.2, 0.9, 1.7), grey)
    part(h, "box", (0, 0.46, 1.35), (0.9, 0.04, 0.35), (0.6, 0.8, 0.55))
    for i in range(3):
        for j in range(3):
            part(h, "box", (-0.3 + 0.3 * i, 0.46, 0.35 + 0.22 * j), (0.2, 0.05, 0.15), (0.25, 0.25, 0.3))
    for s in (-1, 1):
        part(h, "sphere", (0.3 * s, 0.46, 1.35), (0.08, 0.04, 0.08), BLACK)
    return 1.7


def _h_moneybags(h: NodePath, skin: RGB) -> float:
    bag = (0.55, 0.75, 0.4)
    part(h, "sphere", (0, 0, 0.85), (1.15, 1.05, 0.9), bag)
    part(h, "cone", (0, 0, 1.55), (0.45, 0.45, 0.5), bag, (0, 180, 0))
    part(h, "cyl", (0, 0, 1.55), (0.3, 0.3, 0.1), (0.75, 0.6, 0.25))
    part(h, "box", (0, 1.02, 0.9), (0.12, 0.04, 0.6), (0.2, 0.35, 0.15))
    part(h, "box", (0, 1.02, 0.9), (0.4, 0.04, 0.1), (0.2, 0.35, 0.15), (0, 0, 30))
    _face(h, y=0.9, z=1.0, spread=0.5, size=0.1)
    return 1.65


def _h_loanshark(h: NodePath, skin: RGB) -> float:
    shark = (0.5, 0.6, 0.7)
    part(h, "sphere", (0, 0.2, 0.85), (0.9, 1.2, 0.85), shark)
    part(h, "cone", (0, -0.2, 1.4), (0.12, 0.5, 0.8), shade(shark, 0.8), (0, -15, 0))
    part(h, "box", (0, 1.05, 0.55), (0.8, 0.4, 0.05), WHITE)
    part(h, "box", (0, 1.05, 0.45), (0.8, 0.4, 0.05), (0.6, 0.1, 0.15))
    _face(h, y=0.85, z=1.05, spread=0.5, size=0.08, brow=BLACK)
    return 2.2


def _h_robberbaron(h: NodePath, skin: RGB) -> float:
    part(h, "sphere", (0, 0, 0.85), (0.85, 0.85, 0.9), skin)
    part(h, "cyl", (0, 0, 1.45), (1.0, 1.0, 0.08), BLACK)
    part(h, "cyl", (0, 0, 1.45), (0.6, 0.6, 1.1), BLACK)
    part(h, "cyl", (0, 0, 1.55), (0.61, 0.61, 0.15), (0.6, 0.1, 0.1))
    _face(h, y=0.78, z=1.0, spread=0.3)
    part(h, "cyl", (0.3, 0.92, 1.0), (0.2, 0.2, 0.03), (0.9, 0.8, 0.3), (0, -90, 0))
    for s in (-1, 1):
        part(h, "sphere", (0.28 * s, 0.85, 0.55), (0.35, 0.12, 0.1), (0.25, 0.15, 0.08), (0, 0, 15 * s))
    return 2.55


def _h_coldcaller(h: NodePath, skin: RGB) -> float:
    part(h, "sphere", (0, 0, 0.7), (0.8, 0.78, 0.75), skin)
    for k in (-1, 0, 1):
        part(h, "cone", (0.25 * k, 0, 1.25), (0.18, 0.18, 0.45), WHITE, (0, 0, 25 * k))
    _face(h, y=0.7, z=0.85, spread=0.28)
    part(h, "box", (0, 0.74, 0.4), (0.3, 0.04, 0.06), BLACK)
    return 1.75


def _h_telemarketer(h: NodePath, skin: RGB) -> float:
    part(h, "sphere", (0, 0, 0.9), (0.8, 0.8, 0.95), skin)
    for s in (-1, 1):
        part(h, "cyl", (0.8 * s, 0, 0.9), (0.22, 0.22, 0.12), BLACK, (0, 0, 90 * s))
    part(h, "box", (0, 0, 1.8), (1.6, 0.12, 0.1), BLACK)
    part(h, "box", (-0.55, 0.45, 0.55), (0.06, 0.8, 0.06), BLACK, (30, 0, 0))
    part(h, "sphere", (-0.3, 0.85, 0.5), (0.1, 0.1, 0.1), BLACK)
    _face(h, y=0.76, z=1.05, spread=0.26)
    _grin(h, y=0.78, z=0.5, width=0.35)
    return 1.9


def _h_namedropper(h: NodePath, skin: RGB) -> float:
    part(h, "sphere", (0, 0, 0.85), (0.85, 0.8, 0.9), skin)
    part(h, "sphere", (0, 0.15, 1.65), (0.85, 0.75, 0.5), (0.75, 0.45, 0.15), (0, 20, 0))
    _face(h, y=0.74, z=1.0, spread=0.28)
    _grin(h, y=0.76, z=0.45, width=0.5)
    return 2.15


def _h_gladhander(h: NodePath, skin: RGB) -> float:
    part(h, "sphere", (0, 0, 0.85), (1.1, 0.9, 0.85), skin)
    _face(h, y=0.8, z=1.05, spread=0.35)
    part(h, "sphere", (0, 0.75, 0.45), (0.7, 0.2, 0.2), (0.35, 0.05, 0.08))
    part(h, "box", (0, 0.9, 0.5), (1.0, 0.06, 0.12), WHITE)
    return 1.7


def _h_movershaker(h: NodePath, skin: RGB) -> float:
    part(h, "box", (0, 0, 0.8), (1.3, 1.0, 1.5), skin)
    part(h, "box", (0, 0, 1.65), (1.35, 1.05, 0.25), (0.35, 0.22, 0.12))
    _face(h, y=0.52, z=1.1, spread=0.35, brow=(0.35, 0.22, 0.12))
    part(h, "box", (0, 0.52, 0.45), (0.7, 0.04, 0.1), BLACK)
    return 1.8


def _h_twoface(h: NodePath, skin: RGB) -> float:
    part(h, "sphere", (0, 0, 0.95), (0.9, 0.85, 1.0), skin)
    part(h, "sphere", (0.02, 0, 0.95), (0.9, 0.86, 1.01), shade(skin, 0.6), (0, 0, 0)).setSx(0.45)
    for s, col in ((-1, WHITE), (1, (0.9, 0.3, 0.3))):
        part(h, "sphere", (0.3 * s, 0.82, 1.1), (0.12, 0.08, 0.1), col)
        part(h, "sphere", (0.3 * s, 0.82, 0.5), (0.22, 0.08, 0.1), (0.35, 0.05, 0.08), (0, 0, 20 * s))
    return 1.95


def _h_themingler(h: NodePath, skin: RGB) -> float:
    part(h, "sphere", (0, 0, 0.95), (0.75, 0.75, 1.0), skin)
    part(h, "sphere", (0, -0.15, 1.7), (0.75, 0.8, 0.5), (0.1, 0.1, 0.1), (0, -25, 0))
    _face(h, y=0.68, z=1.1, spread=0.25, brow=BLACK)
    part(h, "box", (0, 0.72, 0.6), (0.45, 0.04, 0.05), BLACK)
    part(h, "cyl", (0, 0, -0.05), (0.7, 0.6, 0.25), (0.8, 0.15, 0.2))
    return 2.15


def _h_mrhollywood(h: NodePath, skin: RGB) -> float:
    part(h, "sphere", (0, 0, 0.95), (0.8, 0.8, 1.0), skin)
    part(h, "sphere", (0, -0.1, 1.6), (0.85, 0.8, 0.5), (0.95, 0.8, 0.35))
    part(h, "box", (0, 0.8, 1.12), (1.2, 0.08, 0.3), BLACK)
    _grin(h, y=0.76, z=0.5, width=0.5)
    return 2.05


COG_HEADS: dict[str, tuple[HeadFn, RGB]] = {
    "flunky": (_h_flunky, (0.93, 0.82, 0.72)),
    "pencilpusher": (_h_pencilpusher, (0.92, 0.85, 0.75)),
    "yesman": (_h_yesman, (0.95, 0.8, 0.7)),
    "micromanager": (_h_micromanager, (0.95, 0.85, 0.75)),
    "downsizer": (_h_downsizer, (0.75, 0.75, 0.72)),
    "headhunter": (_h_headhunter, (0.9, 0.75, 0.62)),
    "corporateraider": (_h_corporateraider, (0.7, 0.85, 0.6)),
    "thebigcheese": (_h_thebigcheese, (0.95, 0.8, 0.7)),
    "bottomfeeder": (_h_bottomfeeder, (0.6, 0.75, 0.7)),
    "bloodsucker": (_h_bloodsucker, (0.82, 0.88, 0.95)),
    "doubletalker": (_h_doubletalker, (0.92, 0.8, 0.72)),
    "ambulancechaser": (_h_ambulancechaser, (0.95, 0.82, 0.7)),
    "backstabber": (_h_backstabber, (0.72, 0.72, 0.78)),
    "spindoctor": (_h_spindoctor, (0.9, 0.78, 0.7)),
    "legaleagle": (_h_legaleagle, (1.0, 1.0, 1.0)),
    "bigwig": (_h_bigwig, (0.95, 0.82, 0.72)),
    "shortchange": (_h_shortchange, (0.85, 0.78, 0.7)),
    "pennypincher": (_h_pennypincher, (0.8, 0.5, 0.25)),
    "tightwad": (_h_tightwad, (0.88, 0.82, 0.7)),
    "beancounter": (_h_beancounter, (0.85, 0.72, 0.55)),
    "numbercruncher": (_h_numbercruncher, (0.7, 0.72, 0.75)),
    "moneybags": (_h_moneybags, (0.55, 0.75, 0.4)),
    "loanshark": (_h_loanshark, (0.5, 0.6, 0.7)),
    "robberbaron": (_h_robberbaron, (0.92, 0.8, 0.7)),
    "coldcaller": (_h_coldcaller, (0.55, 0.75, 0.95)),
    "telemarketer": (_h_telemarketer, (0.95, 0.8, 0.7)),
    "namedropper": (_h_namedropper, (0.93, 0.8, 0.68)),
    "gladhander": (_h_gladhander, (0.95, 0.75, 0.65)),
    "movershaker": (_h_movershaker, (0.85, 0.7, 0.55)),
    "twoface": (_h_twoface, (0.92, 0.85, 0.78)),
    "themingler": (_h_themingler, (0.72, 0.72, 0.75)),
    "mrhollywood": (_h_mrhollywood, (0.95, 0.82, 0.7)),
}


def build_cog(parent: NodePath, suit_short: str, name: str, rng: random.Random, look: Look | None = None) -> Entity:
    look = look or Look()
    suit = SUIT_BY_SHORT[suit_short]
    tier = suit.cogs.index(name) + 1
    body = BODIES[COG_BODY[name]]
    root = parent.attachNewNode(f"cog_{suit_short}_{name}")
    inner = root.attachNewNode("body")
    scale = cog_scale(tier) * rng.uniform(0.97, 1.03)
    inner.setScale(scale)
    suit_col = hex_rgb(suit.color)
    jacket = shade(suit_col, rng.uniform(1.15, 1.35))
    pants = shade(suit_col, 0.9)
    hand = HAND_TINT[suit_short]
    swing = look.swing
    shoe_h = 0.18
    hip = shoe_h + body.legs
    for s in (-1, 1):
        leg = inner.attachNewNode("leg")
        leg.setPos(body.waist * 0.5 * s, 0, hip)
        leg.setP(swing * s * 0.7)
        part(leg, "cyl", (0, 0, -body.legs), (0.16, 0.16, body.legs + 0.1), pants, top=1.15)
        part(leg, "box", (0, 0.12, -body.legs - 0.09), (0.32, 0.55, 0.2), (0.05, 0.05, 0.06))
    part(inner, "cyl", (0, 0, hip - 0.1), (body.waist, body.depth * 0.85, 0.35), pants)
    part(
        inner,
        "cyl",
        (0, 0, hip + 0.15),
        (body.waist, body.depth, body.torso - 0.15),
        jacket,
        top=body.shoulders / body.waist,
    )
    neck_z = hip + body.torso
    part(inner, "cyl", (0, 0, neck_z - 0.05), (body.shoulders * 0.98, body.depth * 1.3, 0.1), jacket, top=0.75)
    # Shirt V, tie and the department's medallion on the chest, just proud of the jacket's widest front.
    front = body.depth * body.shoulders / body.waist + 0.02
    part(inner, "cone", (0, front, neck_z - 0.02), (0.24, 0.03, 0.75), WHITE, (0, 180, 0))
    part(inner, "cone", (0, front + 0.04, neck_z - 0.06), (0.08, 0.03, 0.75), TIE[suit_short], (0, 180, 0))
    part(inner, "box", (0, front + 0.04, neck_z - 0.1), (0.16, 0.04, 0.12), TIE[suit_short])
    part(
        inner,
        "cyl",
        (body.shoulders * 0.5, front - 0.03, neck_z - 0.55),
        (0.16, 0.16, 0.06),
        mix(suit_col, WHITE, 0.55),
        (0, -90, 0),
    )
    part(inner, "cyl", (0, 0, neck_z), (0.17, 0.17, 0.25), (0.55, 0.55, 0.58))
    for s in (-1, 1):
        arm = inner.attachNewNode("arm")
        arm.setPos((body.shoulders - 0.1) * s, 0, neck_z - 0.2)
        if look.hidden_hands:
            # Hands clasped behind the back: the Cog's tell-tale hands are out of sight from the front.
            arm.setHpr(0, 35, 18 * s)
        elif look.battle_pose and s == -1:
            arm.setHpr(0, 60, -8)
        else:
            arm.setHpr(0, -swing * s * 0.7, 10 * s)
        part(arm, "cyl", (0, 0, -body.arms), (0.17, 0.17, body.arms), jacket, top=1.15)
        part(arm, "cyl", (0, 0, -body.arms - 0.02), (0.15, 0.15, 0.06), WHITE)
        h = arm.attachNewNode("hand")
        h.setPos(0, 0, -body.arms - 0.22)
        part(h, "sphere", (0, 0, 0), (0.2, 0.13, 0.26), hand)
        part(h, "sphere", (0, 0.13, 0.07), (0.07, 0.1, 0.07), hand)
    head_fn, skin = COG_HEADS[name]
    head = inner.attachNewNode("head")
    head.setPos(0, 0, neck_z + 0.18)
    head.setScale(body.head)
    top = head_fn(head, skin)
    height = scale * (neck_z + 0.18 + body.head * top)
    level = tier + rng.randrange(0, 5)
    return Entity(
        label=Label("cog", suit=suit_short, name=name),
        root=root,
        height=height,
        name_lines=[suit.display_names[tier - 1], suit.long.capitalize(), f"Level {level}"],
        name_color=(0.0, 0.0, 0.0),
        confuser="hidden_hands" if look.hidden_hands else "",
        head=head,
    )


def build_entity(parent: NodePath, label: Label, rng: random.Random, look: Look | None = None) -> Entity:
    look = look or Look()
    if label.is_cog:
        return build_cog(parent, str(label.suit), str(label.name), rng, look)
    return build_toon(parent, str(label.animal), rng, look)
