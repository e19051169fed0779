"""Body plans that scene planning needs without Panda3D: Cog bodies and sizes, per-entity looks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Look:
    """Per-entity randomness that scene planning may force (confusers, poses)."""

    cog_colored_clothes: bool = False
    hidden_hands: bool = False
    swing: float = 0.0  # walk-cycle angle in degrees, 0 = standing
    battle_pose: bool = False


@dataclass(frozen=True)
class CogBody:
    legs: float
    torso: float
    shoulders: float  # half-width
    waist: float
    depth: float
    arms: float
    head: float  # head scale


BODIES: dict[str, CogBody] = {
    # A: big-chested and long-armed; B: slim and tall; C: short and stout.
    "A": CogBody(legs=1.75, torso=1.85, shoulders=0.85, waist=0.55, depth=0.62, arms=1.75, head=0.62),
    "B": CogBody(legs=1.7, torso=1.6, shoulders=0.6, waist=0.42, depth=0.45, arms=1.5, head=0.56),
    "C": CogBody(legs=1.05, torso=1.45, shoulders=0.78, waist=0.7, depth=0.7, arms=1.2, head=0.66),
}

# Which body each Cog wears (from the game's three suit types).
COG_BODY: dict[str, str] = {
    "flunky": "C",
    "pencilpusher": "B",
    "yesman": "A",
    "micromanager": "C",
    "downsizer": "B",
    "headhunter": "A",
    "corporateraider": "C",
    "thebigcheese": "A",
    "bottomfeeder": "C",
    "bloodsucker": "B",
    "doubletalker": "A",
    "ambulancechaser": "B",
    "backstabber": "A",
    "spindoctor": "B",
    "legaleagle": "A",
    "bigwig": "A",
    "shortchange": "C",
    "pennypincher": "A",
    "tightwad": "C",
    "beancounter": "B",
    "numbercruncher": "A",
    "moneybags": "C",
    "loanshark": "B",
    "robberbaron": "A",
    "coldcaller": "C",
    "telemarketer": "B",
    "namedropper": "A",
    "gladhander": "C",
    "movershaker": "B",
    "twoface": "A",
    "themingler": "A",
    "mrhollywood": "A",
}


def cog_scale(tier: int) -> float:
    """Higher rungs are bigger: the top Cog is about 1.4 times the lowest."""
    return 0.85 + 0.05 * (tier - 1)
