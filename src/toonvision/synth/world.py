"""A ToonTown street: road, sidewalks, building facades with windows and doors, props, sky, fog and light.

The street runs along X. The road covers |y| < ``road_half``, sidewalks reach ``facade_y`` where the building
fronts stand; the camera must stay inside that corridor.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from panda3d.core import AmbientLight, DirectionalLight, Fog, Material, NodePath

from toonvision.synth.geometry import part
from toonvision.synth.palette import RGB, STREET_STYLES, StreetStyle, mix, shade
from toonvision.synth.textures import facade_texture

STREET_LENGTH = 150.0


@dataclass
class World:
    street: str
    style: StreetStyle
    root: NodePath
    road_half: float
    facade_y: float
    sidewalk_z: float
    props: list[tuple[float, float, float]] = field(default_factory=list)  # (x, y, radius) of standing props
    sky: RGB | None = None  # the sky at this time of day (None: the street's own)

    def ground_z(self, y: float) -> float:
        return self.sidewalk_z if abs(y) > self.road_half else 0.0

    def clear_of_props(self, x: float, y: float, radius: float) -> bool:
        return all((x - px) ** 2 + (y - py) ** 2 > (radius + pr) ** 2 for px, py, pr in self.props)


def build_world(
    parent: NodePath, street: str, rng: random.Random, *, lights_on: NodePath | None = None, time_of_day: str = "day"
) -> World:
    """Build ``street`` under ``parent``; its lights and fog (at ``time_of_day``) go on ``lights_on`` (default
    ``parent``)."""
    style = STREET_STYLES[street]
    root = parent.attachNewNode(f"street-{street}")
    road_half = rng.uniform(6.5, 10.0)
    sidewalk_w = rng.uniform(4.5, 7.0)
    facade_y = road_half + sidewalk_w
    sidewalk_z = 0.25
    L = STREET_LENGTH
    road = shade(style.road, rng.uniform(0.92, 1.08))
    part(root, "box", (0, 0, -0.5), (2 * L, 2 * road_half, 1.0), road)
    for k in range(-int(L / 6), int(L / 6)):
        part(root, "box", (k * 6.0, 0, 0.005), (3.0, 0.25, 0.02), style.road_line)
    for s in (-1, 1):
        y_mid = s * (road_half + sidewalk_w / 2)
        part(root, "box", (0, y_mid, sidewalk_z / 2 - 0.5), (2 * L, sidewalk_w, sidewalk_z + 1.0), style.sidewalk)
        part(
            root,
            "box",
            (0, s * (road_half + 0.15), sidewalk_z / 2),
            (2 * L, 0.3, sidewalk_z + 0.02),
            shade(style.sidewalk, 0.8),
        )
        _facades(root, style, s, facade_y, rng)
    ambient, _, colour = TIME_OF_DAY[time_of_day]
    sky = (
        None
        if time_of_day == "day"
        else tuple(min(1.0, c * k * ambient) for c, k in zip(style.sky, colour, strict=True))
    )
    world = World(street, style, root, road_half, facade_y, sidewalk_z, sky=sky)
    _props(world, rng)
    apply_lighting(style, parent if lights_on is None else lights_on, rng, time_of_day)
    return world


def _facades(root: NodePath, style: StreetStyle, side: int, facade_y: float, rng: random.Random) -> None:
    x = -STREET_LENGTH
    while x < STREET_LENGTH:
        width = rng.uniform(9.0, 18.0)
        height = rng.uniform(11.0, 24.0)
        wall = shade(rng.choice(style.walls), rng.uniform(0.9, 1.05))
        depth = 8.0
        cx = x + width / 2
        # Building body behind the front plane; the textured front is a thin slab facing the street.
        body = root.attachNewNode("building")
        body.setPos(cx, side * (facade_y + depth / 2), 0)
        part(body, "box", (0, 0, height / 2), (width, depth, height), shade(wall, 0.85))
        tex = facade_texture(wall, style.windows, style.lit_windows, rng.randrange(12))
        front = part(
            body,
            "box",
            (0, -side * (depth / 2 + 0.03), height / 2 - 0.5),
            (width - 0.4, 0.06, height - 1.0),
            (1, 1, 1),
            texture=tex,
        )
        if side < 0:
            front.setH(180)
        roof = rng.choice(style.roofs)
        part(body, "box", (0, 0, height + 0.4), (width + 0.6, depth + 0.6, 0.8), roof)
        if rng.random() < 0.4:
            part(body, "cone", (0, 0, height + 0.8), (width * 0.45, depth * 0.5, rng.uniform(2.5, 5.0)), roof)
        x += width + rng.uniform(0.0, 1.5)


def _props(world: World, rng: random.Random) -> None:
    style = world.style
    for s in (-1, 1):
        x = -60.0 + rng.uniform(0, 8)
        while x < 60:
            kind = rng.choice(style.props)
            y = s * rng.uniform(world.road_half + 1.2, world.facade_y - 1.0)
            if kind in ("hedge", "flowers"):
                y = s * (world.facade_y - rng.uniform(0.8, 1.5))
            radius = build_prop(world.root, kind, (x, y, world.sidewalk_z), style, rng)
            world.props.append((x, y, radius))
            x += rng.uniform(5.0, 13.0)


def build_prop(
    parent: NodePath, kind: str, pos: tuple[float, float, float], style: StreetStyle, rng: random.Random
) -> float:
    """Put one street prop at ``pos``; returns its footprint radius (to keep Toons and Cogs out of it)."""
    node = parent.attachNewNode(kind)
    node.setPos(*pos)
    node.setH(rng.uniform(0, 360))
    if kind == "tree":
        h = rng.uniform(3.5, 6.0)
        leaves = rng.choice(style.tree_leaves)
        part(node, "cyl", (0, 0, 0), (0.35, 0.35, h), (0.45, 0.3, 0.18), top=0.7)
        for dx, dy, dz, r in ((0, 0, h + 1.2, 2.0), (0.9, 0.3, h + 0.4, 1.4), (-0.8, -0.4, h + 0.6, 1.5)):
            part(node, "sphere", (dx, dy, dz), (r, r, r * 0.9), shade(leaves, rng.uniform(0.9, 1.1)))
        return 0.6
    if kind == "pine":
        h = rng.uniform(5.0, 8.0)
        leaves = rng.choice(style.tree_leaves)
        part(node, "cyl", (0, 0, 0), (0.3, 0.3, 1.5), (0.4, 0.28, 0.18))
        for i in range(3):
            z = 1.2 + i * h * 0.25
            r = 2.0 - i * 0.5
            part(node, "cone", (0, 0, z), (r, r, h * 0.4), leaves)
            part(node, "cone", (0, 0, z + h * 0.22), (r * 0.45, r * 0.45, h * 0.18), (0.97, 0.98, 1.0))
        return 0.6
    if kind == "lamppost":
        h = rng.uniform(6.0, 8.0)
        pole = (0.15, 0.15, 0.2) if style.sky[2] > 0.5 else (0.35, 0.3, 0.45)
        part(node, "cyl", (0, 0, 0), (0.3, 0.3, 0.5), pole)
        part(node, "cyl", (0, 0, 0), (0.12, 0.12, h), pole)
        part(node, "sphere", (0, 0, h + 0.35), (0.45, 0.45, 0.5), (1.0, 0.95, 0.7))
        part(node, "cone", (0, 0, h + 0.7), (0.55, 0.55, 0.4), pole)
        return 0.35
    if kind == "mailbox":
        col = (0.2, 0.35, 0.85) if rng.random() < 0.7 else (0.85, 0.2, 0.2)
        part(node, "box", (0, 0, 0.5), (0.18, 0.18, 1.0), (0.2, 0.2, 0.22))
        part(node, "box", (0, 0, 1.3), (0.8, 1.1, 0.7), col)
        part(node, "cyl", (0, -0.55, 1.65), (0.4, 0.4, 1.1), col, (0, 90, 0))
        return 0.6
    if kind == "hydrant":
        col = (0.9, 0.15, 0.15) if rng.random() < 0.6 else (0.95, 0.8, 0.15)
        part(node, "cyl", (0, 0, 0), (0.3, 0.3, 0.9), col)
        part(node, "sphere", (0, 0, 0.9), (0.3, 0.3, 0.25), col)
        part(node, "cyl", (-0.45, 0, 0.6), (0.12, 0.12, 0.9), shade(col, 0.8), (0, 0, 90))
        return 0.35
    if kind == "trashcan":
        col = mix(rng.choice(style.walls), (0.4, 0.4, 0.4), 0.5)
        part(node, "cyl", (0, 0, 0), (0.5, 0.5, 1.3), col, top=1.1)
        part(node, "cyl", (0, 0, 1.3), (0.6, 0.6, 0.12), shade(col, 0.8))
        return 0.55
    if kind == "barrel":
        col = (0.5, 0.32, 0.18)
        part(node, "cyl", (0, 0, 0), (0.6, 0.6, 1.5), col)
        for z in (0.25, 1.2):
            part(node, "cyl", (0, 0, z), (0.63, 0.63, 0.08), (0.25, 0.25, 0.25))
        return 0.65
    if kind == "crate":
        part(node, "box", (0, 0, 0.6), (1.2, 1.2, 1.2), (0.7, 0.55, 0.35))
        if rng.random() < 0.5:
            part(node, "box", (0.1, 0.1, 1.6), (0.8, 0.8, 0.8), (0.65, 0.5, 0.3), (20, 0, 0))
        return 0.85
    if kind == "hedge":
        part(node, "box", (0, 0, 0.7), (2.5, 0.9, 1.4), (0.25, 0.55, 0.25))
        return 1.3
    if kind == "flowers":
        part(node, "box", (0, 0, 0.25), (2.2, 0.9, 0.5), (0.45, 0.3, 0.2))
        for i in range(6):
            c = rng.choice(((1.0, 0.4, 0.6), (1.0, 0.9, 0.3), (0.7, 0.5, 1.0), (1.0, 1.0, 1.0)))
            part(node, "sphere", (-0.9 + i * 0.36, rng.uniform(-0.2, 0.2), 0.65), (0.2, 0.2, 0.2), c)
        return 1.2
    if kind == "snowman":
        for z, r in ((0.6, 0.7), (1.5, 0.5), (2.2, 0.35)):
            part(node, "sphere", (0, 0, z), (r, r, r), (0.97, 0.98, 1.0))
        part(node, "cone", (0, 0.3, 2.2), (0.07, 0.07, 0.4), (1.0, 0.5, 0.1), (0, -90, 0))
        part(node, "cyl", (0, 0, 2.45), (0.28, 0.28, 0.45), (0.1, 0.1, 0.1))
        return 0.75
    raise ValueError(f"unknown prop {kind!r}")


def white_material() -> Material:
    """Without an explicit white material TinyPanda lights a part with its colour twice (colour squared)."""
    mat = Material("white")
    mat.setAmbient((1, 1, 1, 1))
    mat.setDiffuse((1, 1, 1, 1))
    return mat


# Light at other times of day, as factors of the street's own: ambient, sun, and a colour over both.
TIME_OF_DAY: dict[str, tuple[float, float, RGB]] = {
    "day": (1.0, 1.0, (1.0, 1.0, 1.0)),
    "dusk": (0.75, 0.55, (1.12, 0.84, 0.66)),
    "night": (0.45, 0.2, (0.68, 0.78, 1.15)),
}


def apply_lighting(style: StreetStyle, scene: NodePath, rng: random.Random, time_of_day: str = "day") -> None:
    """Ambient + sun + fog for ``style`` on ``scene``, varied per screenshot (time of day, weather)."""
    scene.setMaterial(white_material())
    # Time-of-day and weather variety: the same street under brighter, dimmer, warmer or cooler light.
    ambient_factor, sun_factor, colour = TIME_OF_DAY[time_of_day]
    ambient = style.ambient * rng.uniform(0.8, 1.2) * ambient_factor
    drawn = (rng.uniform(0.92, 1.05), rng.uniform(0.92, 1.03), rng.uniform(0.92, 1.05))
    tint: RGB = (drawn[0] * colour[0], drawn[1] * colour[1], drawn[2] * colour[2])
    amb = AmbientLight("ambient")
    amb.setColor((ambient * tint[0], ambient * tint[1], ambient * tint[2], 1))
    amb_np = scene.attachNewNode(amb)
    sun = DirectionalLight("sun")
    strength = style.sun_strength * rng.uniform(0.75, 1.25) * sun_factor
    sun.setColor(
        (
            style.sun[0] * strength * colour[0],
            style.sun[1] * strength * colour[1],
            style.sun[2] * strength * colour[2],
            1,
        )
    )
    sun_np = scene.attachNewNode(sun)
    sun_np.setHpr(rng.uniform(0, 360), rng.uniform(-75, -25), 0)
    scene.setLight(amb_np)
    scene.setLight(sun_np)
    fog = Fog("fog")
    fog.setColor(*style.fog)
    fog.setExpDensity(style.fog_density * rng.uniform(0.6, 1.5))
    scene.setFog(fog)
