"""Scene planning: which Toons and Cogs stand where, and where the camera looks from.

Everything is drawn from one ``random.Random`` per screenshot, derived from (seed, index), so a screenshot is
the same whichever worker renders it and whatever was rendered before. Sub-generators per concern (world,
entities, camera) keep one concern's draws from shifting another's.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from toonvision.data.taxonomy import STREET_SHORTS, SUIT_BY_SHORT, Label, all_labels
from toonvision.synth.anatomy import BODIES, COG_BODY, Look, cog_scale

if TYPE_CHECKING:
    from toonvision.synth.world import World

MODES = ("portrait", "battle", "crowd")


@dataclass(frozen=True)
class Realism:
    """Knobs that make the data harder, like the spec's real screenshots (all probabilities)."""

    cog_colored_toon: float = 0.07  # Toon in brown/maroon top, dark bottoms, black shoes
    hidden_hands: float = 0.10  # Cog with its hands behind its back
    occluder: float = 0.2  # a prop or another entity deliberately between camera and subject
    far: float = 0.25  # the subject is small (40-160 px tall) instead of a close-up
    high_camera: float = 0.4  # camera above eye height, looking down
    modes: tuple[float, float, float] = (0.5, 0.3, 0.2)  # portrait, battle, crowd


TIMES_OF_DAY = ("day", "dusk", "night")


@dataclass(frozen=True)
class Conditions:
    """How the world is seen: the camera, the light, the game's interface over it, compression. The defaults are
    the world ToonVision's shipped models were trained on; anything else renders a shifted world, to measure
    how models carry over and how fine-tuning helps. Same seed and conditions, same bytes."""

    fov: tuple[float, float] = (46.0, 62.0)  # horizontal field of view, degrees, drawn per screenshot
    camera_height: float = 1.0  # every camera height scaled by this (2: a camera twice as high)
    time_of_day: str = "day"  # day, dusk or night: the light's strength and colour
    interface: bool = False  # the game's interface drawn over the street (synth.interface)
    jpeg: int | None = None  # JPEG quality the screenshot went through (None: lossless PNG)
    distance: float = 1.0  # every camera this many times as far from its subject: 2 draws everything half as tall

    def validate(self) -> Conditions:
        low, high = self.fov
        if not 10 <= low <= high <= 120:
            raise ValueError(f"field of view must be MIN-MAX degrees within 10-120, got {low:g}-{high:g}")
        if not 0.25 <= self.camera_height <= 4:
            raise ValueError(f"camera height must be a factor within 0.25-4, got {self.camera_height:g}")
        if self.time_of_day not in TIMES_OF_DAY:
            raise ValueError(f"time of day must be one of {', '.join(TIMES_OF_DAY)}, got {self.time_of_day!r}")
        if self.jpeg is not None and not 5 <= self.jpeg <= 100:
            raise ValueError(f"JPEG quality must be within 5-100, got {self.jpeg}")
        if not 0.5 <= self.distance <= 6:
            raise ValueError(f"camera distance must be a factor within 0.5-6, got {self.distance:g}")
        return self

    @property
    def is_default(self) -> bool:
        return self == Conditions()


def screenshot_rng(seed: int, index: int) -> random.Random:
    # String seeding hashes with SHA-512: stable across Python versions and platforms.
    return random.Random(f"toonvision-synth/{seed}/{index}")


def street_for(seed: int, index: int) -> str:
    """The street of screenshot ``index``: the first draw of its generator, so file names are known up front."""
    return STREET_SHORTS[screenshot_rng(seed, index).randrange(len(STREET_SHORTS))]


def child(rng: random.Random) -> random.Random:
    return random.Random(rng.getrandbits(64))


def approx_height(label: Label) -> float:
    if label.is_cog:
        suit = SUIT_BY_SHORT[str(label.suit)]
        tier = suit.cogs.index(str(label.name)) + 1
        b = BODIES[COG_BODY[str(label.name)]]
        return cog_scale(tier) * (0.18 + b.legs + b.torso + 0.18 + b.head * 1.9)
    return 3.3


@dataclass
class EntityPlan:
    label: Label
    x: float
    y: float
    heading: float
    look: Look
    seed: int
    occluder: bool = False


def facing(entity: EntityPlan, camera: tuple[float, float, float]) -> float:
    """Degrees between the way ``entity`` faces and the way to the camera, on the ground: 0 when it looks at the
    camera, 180 when its back is turned (its face, and what tells one animal from another, unseen)."""
    heading = math.radians(entity.heading)  # heading 0 looks along +Y, and turns counter-clockwise
    ahead = (-math.sin(heading), math.cos(heading))
    to_camera = (camera[0] - entity.x, camera[1] - entity.y)
    cos = (ahead[0] * to_camera[0] + ahead[1] * to_camera[1]) / (math.hypot(*to_camera) or 1.0)
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


@dataclass
class CameraPlan:
    pos: tuple[float, float, float]
    look_at: tuple[float, float, float]
    fov: float  # horizontal, degrees


@dataclass
class ScenePlan:
    street: str
    mode: str
    entities: list[EntityPlan]
    camera: CameraPlan
    props: list[tuple[str, float, float]] = field(default_factory=list)  # extra occluding props


def label_sampler(weights: Mapping[str, float]) -> tuple[list[Label], list[float]]:
    labels = all_labels()
    w = [max(0.0, float(weights.get(str(lab), 0.0))) for lab in labels]
    if sum(w) <= 0:
        raise ValueError("every class weight is zero: nothing to render")
    return labels, w


def _free_spot(
    world: World,
    rng: random.Random,
    near: tuple[float, float] | None,
    spread: float,
    taken: list[tuple[float, float]],
    min_gap: float = 1.8,
) -> tuple[float, float]:
    spot = (0.0, 0.0)
    for _ in range(40):
        if near is None:
            x = rng.uniform(-25, 25)
            y = rng.uniform(-world.facade_y + 1.2, world.facade_y - 1.2)
        else:
            a = rng.uniform(0, 2 * math.pi)
            d = rng.uniform(min_gap, spread)
            x, y = near[0] + d * math.cos(a), near[1] + d * math.sin(a)
        if abs(y) > world.facade_y - 1.0:
            continue
        spot = (x, y)
        if world.clear_of_props(x, y, 0.9) and all((x - a) ** 2 + (y - b) ** 2 > min_gap**2 for a, b in taken):
            return spot
    return spot


def plan_scene(
    world: World,
    rng: random.Random,
    labels: list[Label],
    weights: list[float],
    realism: Realism,
    aspect: float,
    conditions: Conditions | None = None,
) -> ScenePlan:
    conditions = conditions or Conditions()
    mode = rng.choices(MODES, realism.modes)[0]
    if mode == "portrait":
        count = 1 + rng.choices((0, 1, 2), (0.55, 0.3, 0.15))[0]
    elif mode == "battle":
        count = rng.randint(2, 6)
    else:
        count = rng.randint(3, 6)
    chosen = rng.choices(labels, weights, k=count)

    def look_for(label: Label, battle: bool) -> Look:
        r = rng.random()
        return Look(
            cog_colored_clothes=(not label.is_cog) and r < realism.cog_colored_toon,
            hidden_hands=label.is_cog and r < realism.hidden_hands,
            swing=0.0 if battle or rng.random() < 0.5 else rng.uniform(-25, 25),
            battle_pose=battle and rng.random() < 0.3,
        )

    plans: list[EntityPlan] = []
    taken: list[tuple[float, float]] = []
    if mode == "battle":
        # Cogs in a row facing a row of Toons, as in a street battle.
        cx, cy = rng.uniform(-15, 15), rng.uniform(-world.road_half + 2, world.road_half - 2)
        axis = rng.uniform(0, 360)
        gap = rng.uniform(5.0, 8.0)
        ax, ay = math.cos(math.radians(axis)), math.sin(math.radians(axis))
        rows = {"cog": [lab for lab in chosen if lab.is_cog], "toon": [lab for lab in chosen if not lab.is_cog]}
        for kind, side in (("cog", -1), ("toon", 1)):
            row = rows[kind]
            for i, lab in enumerate(row):
                along = (i - (len(row) - 1) / 2) * rng.uniform(2.2, 3.0)
                x = cx + side * ax * gap / 2 - ay * along
                y = cy + side * ay * gap / 2 + ax * along
                y = max(-world.facade_y + 1.0, min(world.facade_y - 1.0, y))
                # Face the other row: heading 0 looks along +Y in Panda3D.
                heading = math.degrees(math.atan2(-side * ax, side * ay)) + rng.uniform(-15, 15)
                plans.append(EntityPlan(lab, x, y, heading, look_for(lab, True), rng.getrandbits(32)))
                taken.append((x, y))
        target = (cx, cy)
        subject_h = max(approx_height(p.label) for p in plans)
        extent = max(gap, 3.0 * max(len(rows["cog"]), len(rows["toon"])))
    else:
        first = _free_spot(world, rng, None, 0, taken)
        taken.append(first)
        spread = 6.0 if mode == "portrait" else 14.0
        for i, lab in enumerate(chosen):
            x, y = first if i == 0 else _free_spot(world, rng, first, spread, taken)
            if i:
                taken.append((x, y))
            plans.append(EntityPlan(lab, x, y, rng.uniform(0, 360), look_for(lab, False), rng.getrandbits(32)))
        target = first
        subject_h = approx_height(chosen[0])
        extent = 0.0 if mode == "portrait" else spread

    # --- camera ---
    fov = rng.uniform(*conditions.fov)
    vfov = 2 * math.degrees(math.atan(math.tan(math.radians(fov / 2)) / aspect))
    tan_half = math.tan(math.radians(vfov / 2))
    if mode == "portrait":
        if rng.random() < realism.far:
            px = math.exp(rng.uniform(math.log(0.06), math.log(0.24)))
        else:
            px = math.exp(rng.uniform(math.log(0.24), math.log(0.85)))
        dist = subject_h / (2 * px * tan_half)
    else:
        # Fit the formation or crowd, then zoom in or out a little.
        dist = max(subject_h / (2 * 0.8 * tan_half), extent / (2 * tan_half * aspect) * rng.uniform(0.6, 1.6))
        dist *= rng.uniform(0.8, 1.6)
    dist *= conditions.distance
    high = rng.random() < realism.high_camera
    # How much of the frame the subject fills: the fuller, the less room to aim off-centre without cutting it.
    fill = min(1.0, subject_h / (2 * dist * tan_half))
    slack = max(0.0, 1.0 - fill)
    look_z = subject_h * rng.uniform(0.45, 0.6)
    cam = None
    for _ in range(16):
        yaw = rng.uniform(0, 2 * math.pi)
        # High cameras look down at most ~35 degrees, as ToonTown's camera does; not straight onto heads.
        cz = rng.uniform(5.0, max(5.0, min(16.0, look_z + dist * 0.57))) if high else rng.uniform(2.6, 4.6)
        cz *= conditions.camera_height
        horiz = math.sqrt(max(dist**2 - (cz - look_z) ** 2, (0.5 * dist) ** 2))
        px_, py_ = target[0] + horiz * math.cos(yaw), target[1] + horiz * math.sin(yaw)
        if abs(py_) > world.facade_y - 0.6:
            continue
        if not world.clear_of_props(px_, py_, 0.8) and cz < 9:
            continue
        if any((px_ - p.x) ** 2 + (py_ - p.y) ** 2 < 1.5**2 for p in plans) and cz < 9:
            continue
        cam = (px_, py_, cz)
        break
    if cam is None:
        # Every direction hits a wall: look along the street instead.
        cam = (
            target[0] + dist,
            max(-world.facade_y + 1, min(world.facade_y - 1, target[1])),
            3.5 * conditions.camera_height,
        )
    # Aim off-centre so subjects are not always in the middle of the frame.
    right = (-(target[1] - cam[1]), target[0] - cam[0])
    norm = math.hypot(*right) or 1.0
    off = rng.uniform(-0.6, 0.6) * slack * dist * tan_half * aspect
    look_at = (
        target[0] + right[0] / norm * off,
        target[1] + right[1] / norm * off,
        look_z + rng.uniform(-0.25, 0.25) * slack * subject_h,
    )
    camera = CameraPlan(cam, look_at, fov)

    extra_props: list[tuple[str, float, float]] = []
    if rng.random() < realism.occluder:
        # Something between the camera and the subject, off to one side so it hides only part of it.
        t = rng.uniform(0.35, 0.75)
        side = rng.choice((-1, 1)) * rng.uniform(0.3, 1.4)
        ox = cam[0] + (target[0] - cam[0]) * t + right[0] / norm * side
        oy = cam[1] + (target[1] - cam[1]) * t + right[1] / norm * side
        if abs(oy) < world.facade_y - 0.8 and math.hypot(ox - cam[0], oy - cam[1]) > 1.6:
            if rng.random() < 0.5:
                lab = rng.choices(labels, weights)[0]
                plans.append(
                    EntityPlan(
                        lab, ox, oy, rng.uniform(0, 360), look_for(lab, False), rng.getrandbits(32), occluder=True
                    )
                )
            else:
                kinds = [k for k in world.style.props if k not in ("hedge", "flowers")] or ["lamppost"]
                extra_props.append((rng.choice(kinds), ox, oy))
    return ScenePlan(world.street, mode, plans, camera, extra_props)
