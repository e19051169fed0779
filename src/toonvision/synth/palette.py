"""Colours and names: Toon fur colours, clothing, Cog department tints, and the six streets' palettes."""

from __future__ import annotations

from dataclasses import dataclass

RGB = tuple[float, float, float]


def hex_rgb(text: str) -> RGB:
    text = text.lstrip("#")
    return (int(text[0:2], 16) / 255, int(text[2:4], 16) / 255, int(text[4:6], 16) / 255)


def mix(a: RGB, b: RGB, t: float) -> RGB:
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t)


def shade(c: RGB, f: float) -> RGB:
    return (min(1.0, c[0] * f), min(1.0, c[1] * f), min(1.0, c[2] * f))


WHITE: RGB = (1.0, 1.0, 1.0)
BLACK: RGB = (0.06, 0.06, 0.07)
PINK: RGB = (0.98, 0.62, 0.72)

# ToonTown's fur colours (the make-a-Toon palette, approximately).
TOON_COLORS: tuple[RGB, ...] = (
    (1.0, 1.0, 1.0),
    (0.96, 0.88, 0.72),
    (0.93, 0.26, 0.28),
    (0.86, 0.40, 0.41),
    (0.71, 0.23, 0.43),
    (0.57, 0.45, 0.34),
    (0.88, 0.65, 0.42),
    (0.83, 0.58, 0.44),
    (0.93, 0.59, 0.34),
    (1.0, 0.93, 0.35),
    (0.99, 0.96, 0.80),
    (0.85, 0.91, 0.36),
    (0.55, 0.82, 0.32),
    (0.33, 0.80, 0.53),
    (0.46, 0.72, 0.35),
    (0.53, 0.84, 0.96),
    (0.42, 0.84, 0.85),
    (0.39, 0.51, 0.96),
    (0.55, 0.59, 0.87),
    (0.28, 0.33, 0.81),
    (0.46, 0.37, 0.83),
    (0.55, 0.34, 0.79),
    (0.73, 0.63, 0.91),
    (0.92, 0.63, 0.86),
    (0.76, 0.58, 0.81),
    (0.30, 0.30, 0.32),
)
# Species-typical colours are drawn more often (a brown bear, a white duck, a green crocodile), as on the streets.
ANIMAL_FAVOURITES: dict[str, tuple[RGB, ...]] = {
    "bear": ((0.57, 0.45, 0.34), (0.88, 0.65, 0.42)),
    "cat": ((0.93, 0.59, 0.34), (0.30, 0.30, 0.32), (1.0, 1.0, 1.0)),
    "crocodile": ((0.46, 0.72, 0.35), (0.33, 0.80, 0.53)),
    "deer": ((0.83, 0.58, 0.44), (0.57, 0.45, 0.34)),
    "dog": ((0.88, 0.65, 0.42), (1.0, 1.0, 1.0)),
    "duck": ((1.0, 1.0, 1.0), (1.0, 0.93, 0.35)),
    "horse": ((0.57, 0.45, 0.34), (0.96, 0.88, 0.72)),
    "monkey": ((0.57, 0.45, 0.34), (0.83, 0.58, 0.44)),
    "mouse": ((0.30, 0.30, 0.32), (1.0, 1.0, 1.0), (0.73, 0.63, 0.91)),
    "pig": ((0.92, 0.63, 0.86), (0.98, 0.70, 0.70)),
    "rabbit": ((1.0, 1.0, 1.0), (0.53, 0.84, 0.96), (0.92, 0.63, 0.86)),
}

CLOTHES: tuple[RGB, ...] = (
    (0.95, 0.25, 0.25),
    (0.2, 0.55, 0.95),
    (0.25, 0.8, 0.35),
    (1.0, 0.85, 0.2),
    (0.95, 0.5, 0.1),
    (0.7, 0.35, 0.9),
    (0.95, 0.45, 0.75),
    (0.3, 0.85, 0.85),
    (1.0, 1.0, 1.0),
    (0.55, 0.8, 1.0),
    (0.6, 0.9, 0.4),
    (0.98, 0.7, 0.5),
    (0.45, 0.35, 0.85),
    (0.9, 0.9, 0.5),
    (0.2, 0.3, 0.7),
)
# What a Toon dressed like a Cog wears (the spec's hard case): brown/maroon tops, dark trousers, black shoes.
COG_LIKE_TOPS: tuple[RGB, ...] = (
    (0.45, 0.27, 0.15),
    (0.50, 0.16, 0.22),
    (0.17, 0.28, 0.52),
    (0.22, 0.45, 0.28),
    (0.35, 0.33, 0.33),
)
COG_LIKE_BOTTOMS: tuple[RGB, ...] = ((0.15, 0.15, 0.17), (0.25, 0.17, 0.12), (0.12, 0.16, 0.3))
SHOES: tuple[RGB, ...] = (
    (0.55, 0.3, 0.12),
    (0.95, 0.25, 0.25),
    (0.2, 0.45, 0.9),
    (1.0, 1.0, 1.0),
    (0.95, 0.8, 0.2),
    (0.2, 0.7, 0.3),
    (0.9, 0.5, 0.8),
    (0.12, 0.12, 0.12),
)

TOON_NAME_COLORS: tuple[RGB, ...] = ((0.25, 0.45, 0.95), (0.1, 0.55, 0.1), (0.85, 0.45, 0.05), (0.6, 0.2, 0.8))

FIRST_NAMES = (
    "Lucky",
    "Flippy",
    "Captain",
    "Doctor",
    "Princess",
    "Sir",
    "Lady",
    "Buster",
    "Daffy",
    "Sparky",
    "Bubbles",
    "Cuddles",
    "Giggles",
    "Penny",
    "Skipper",
    "Pickles",
    "Zippy",
    "Wacky",
    "Snuggles",
    "Grumpy",
    "Dizzy",
    "Bonkers",
    "Fluffy",
    "Jolly",
    "Crazy",
    "Loopy",
    "Ziggy",
    "Twinkle",
    "Cookie",
    "Sunny",
)
LAST_PREFIX = (
    "Bumble",
    "Fizzle",
    "Doodle",
    "Wiggle",
    "Pickle",
    "Giggle",
    "Noodle",
    "Sparkle",
    "Flapple",
    "Mac",
    "Tinker",
    "Snicker",
    "Razzle",
    "Bonker",
    "Fuzzy",
    "Crinkle",
)
LAST_SUFFIX = (
    "chomp",
    "whip",
    "bee",
    "berry",
    "flap",
    "nose",
    "toes",
    "pants",
    "sprocket",
    "wicket",
    "fritz",
    "bubble",
    "dinger",
    "jinks",
    "loop",
    "spinner",
)


def toon_name(rng) -> str:
    if rng.random() < 0.35:
        return rng.choice(FIRST_NAMES)
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_PREFIX)}{rng.choice(LAST_SUFFIX)}"


@dataclass(frozen=True)
class StreetStyle:
    """How one street looks: sky and fog, ground, building and prop colours, light."""

    sky: RGB
    fog: RGB
    fog_density: float
    road: RGB
    road_line: RGB
    sidewalk: RGB
    walls: tuple[RGB, ...]
    roofs: tuple[RGB, ...]
    windows: RGB
    lit_windows: bool
    tree_leaves: tuple[RGB, ...]
    props: tuple[str, ...]
    ambient: float
    sun: RGB
    sun_strength: float


STREET_STYLES: dict[str, StreetStyle] = {
    "ttc": StreetStyle(
        sky=(0.45, 0.72, 0.98),
        fog=(0.65, 0.82, 0.98),
        fog_density=0.006,
        road=(0.45, 0.42, 0.42),
        road_line=(1.0, 0.85, 0.2),
        sidewalk=(0.88, 0.72, 0.55),
        walls=((1.0, 0.82, 0.3), (0.98, 0.55, 0.3), (0.9, 0.35, 0.35), (0.55, 0.75, 0.95), (0.7, 0.9, 0.45)),
        roofs=((0.8, 0.2, 0.2), (0.2, 0.4, 0.85), (0.55, 0.3, 0.7)),
        windows=(0.55, 0.8, 1.0),
        lit_windows=False,
        tree_leaves=((0.3, 0.7, 0.25), (0.4, 0.8, 0.3)),
        props=("tree", "lamppost", "mailbox", "hydrant", "trashcan"),
        ambient=0.55,
        sun=(1.0, 0.97, 0.9),
        sun_strength=0.65,
    ),
    "dd": StreetStyle(
        sky=(0.62, 0.72, 0.82),
        fog=(0.6, 0.68, 0.75),
        fog_density=0.013,
        road=(0.5, 0.46, 0.4),
        road_line=(0.75, 0.7, 0.6),
        sidewalk=(0.55, 0.42, 0.3),
        walls=((0.55, 0.4, 0.28), (0.4, 0.5, 0.6), (0.7, 0.6, 0.45), (0.35, 0.45, 0.55)),
        roofs=((0.3, 0.3, 0.35), (0.45, 0.25, 0.15)),
        windows=(0.7, 0.8, 0.85),
        lit_windows=False,
        tree_leaves=((0.35, 0.55, 0.3),),
        props=("barrel", "crate", "lamppost", "mailbox", "barrel", "hydrant"),
        ambient=0.5,
        sun=(0.9, 0.92, 1.0),
        sun_strength=0.5,
    ),
    "dg": StreetStyle(
        sky=(0.5, 0.78, 1.0),
        fog=(0.75, 0.9, 0.85),
        fog_density=0.005,
        road=(0.55, 0.5, 0.45),
        road_line=(1.0, 1.0, 1.0),
        sidewalk=(0.78, 0.85, 0.6),
        walls=((0.95, 0.85, 0.95), (0.85, 0.95, 0.75), (1.0, 0.9, 0.7), (0.75, 0.85, 1.0)),
        roofs=((0.35, 0.7, 0.35), (0.9, 0.45, 0.6)),
        windows=(0.6, 0.85, 0.95),
        lit_windows=False,
        tree_leaves=((0.3, 0.75, 0.3), (0.95, 0.6, 0.8)),
        props=("hedge", "flowers", "tree", "lamppost", "mailbox", "flowers"),
        ambient=0.6,
        sun=(1.0, 1.0, 0.92),
        sun_strength=0.6,
    ),
    "mml": StreetStyle(
        sky=(0.55, 0.45, 0.85),
        fog=(0.6, 0.45, 0.75),
        fog_density=0.009,
        road=(0.4, 0.35, 0.5),
        road_line=(1.0, 0.8, 0.95),
        sidewalk=(0.75, 0.6, 0.85),
        walls=((0.7, 0.45, 0.85), (0.95, 0.55, 0.75), (0.45, 0.6, 0.95), (0.98, 0.85, 0.45)),
        roofs=((0.3, 0.2, 0.5), (0.85, 0.3, 0.55)),
        windows=(1.0, 0.9, 0.6),
        lit_windows=True,
        tree_leaves=((0.55, 0.35, 0.8), (0.9, 0.5, 0.75)),
        props=("lamppost", "tree", "mailbox", "trashcan", "hydrant"),
        ambient=0.5,
        sun=(1.0, 0.85, 0.95),
        sun_strength=0.55,
    ),
    "br": StreetStyle(
        sky=(0.8, 0.85, 0.92),
        fog=(0.88, 0.9, 0.95),
        fog_density=0.016,
        road=(0.78, 0.8, 0.85),
        road_line=(0.6, 0.65, 0.75),
        sidewalk=(0.95, 0.96, 1.0),
        walls=((0.7, 0.82, 0.95), (0.9, 0.92, 0.98), (0.55, 0.65, 0.85), (0.75, 0.7, 0.85)),
        roofs=((0.97, 0.98, 1.0),),
        windows=(0.95, 0.85, 0.5),
        lit_windows=True,
        tree_leaves=((0.2, 0.45, 0.35), (0.25, 0.5, 0.4)),
        props=("pine", "lamppost", "snowman", "mailbox", "pine", "hydrant"),
        ambient=0.62,
        sun=(0.92, 0.95, 1.0),
        sun_strength=0.45,
    ),
    "ddl": StreetStyle(
        sky=(0.08, 0.08, 0.25),
        fog=(0.12, 0.1, 0.3),
        fog_density=0.012,
        road=(0.22, 0.2, 0.32),
        road_line=(0.9, 0.85, 0.4),
        sidewalk=(0.35, 0.3, 0.5),
        walls=((0.3, 0.25, 0.55), (0.2, 0.3, 0.55), (0.45, 0.3, 0.5), (0.25, 0.22, 0.4)),
        roofs=((0.15, 0.12, 0.3), (0.35, 0.2, 0.45)),
        windows=(1.0, 0.9, 0.45),
        lit_windows=True,
        tree_leaves=((0.25, 0.3, 0.5), (0.35, 0.25, 0.5)),
        props=("lamppost", "lamppost", "tree", "mailbox", "trashcan"),
        ambient=0.55,
        sun=(0.7, 0.75, 1.0),
        sun_strength=0.6,
    ),
}
