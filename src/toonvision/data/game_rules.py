"""Game-rule checks: boxes whose place or label the game makes impossible or unlikely, each flag with its reason.

One function, :func:`box_flags`, judges the boxes of a screenshot for every verb that shows them (``annotate``
records the flags in its sidecar, ``review`` recomputes them on the boxes as they are now), so a rule reads
the same wherever a person meets it. The rules:

- ``detector-disagrees``: the detector and the classifiers disagree strongly about the box (a Cog whose suit
  is not the detector's, a Toon the detector calls a Cog); the labelling rule's ``conflict`` is the reason.
- ``perspective``: in a street view a standing Toon's or Cog's box is taller the lower its feet are on the
  screen (the ground recedes to the horizon). The expected height, as a fraction of the screen's, is
  ``PRIOR_SLOPE * feet + PRIOR_INTERCEPT`` with ``feet`` the box's bottom as a fraction of the screen's height
  (at least :data:`MIN_EXPECTED`); a box :data:`PERSPECTIVE_FACTOR` times taller or shorter than that is flagged.
  The line was fitted (Theil-Sen) on the 596 whole boxes of 300 rendered 1280x720 street screenshots (synth
  preset ``seed``, seed 77000); 1.2% of those true boxes are 2.5 times too tall for it and 2.3% 2.5 times too
  short, so a flag means "look", not "wrong". Boxes touching the screen's edge are not judged: a figure cut by
  the edge has no feet (or no head) on screen.
- ``interface``: a box mostly (:data:`INTERFACE_SHARE`) inside one of the game's interface regions
  (:data:`INTERFACE_REGIONS`): the interface is drawn over the street, so a Toon or Cog is rarely seen there and
  a box there is often a Laff meter or a gag icon taken for one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PERSPECTIVE_FACTOR = 2.5  # how many times off the expected height a box must be to be flagged
PRIOR_SLOPE = 1.035  # expected box height / screen height per unit of feet height / screen height
PRIOR_INTERCEPT = -0.365  # i.e. the horizon at 35% of the screen's height from the top
MIN_EXPECTED = 0.05  # feet at or above the horizon still expect a figure this tall (a raised spot, a high camera)
EDGE = 2.0  # px: a box this close to the screen's edge is cut by it
INTERFACE_SHARE = 0.5  # share of a box's area inside an interface region that makes it "mostly inside"


@dataclass(frozen=True)
class Region:
    """A part of the screen the game's interface covers: left, top, right, bottom as fractions of the screen."""

    name: str
    what: str
    left: float
    top: float
    right: float
    bottom: float


# ToonTown's interface in a street, as fractions of the screen (measured on 16:9 screenshots; the game anchors
# these to the corners, so they hold roughly on other shapes too). Chat balloons float over the speaker's head
# and are no fixed region: what the game pins is the chat buttons and the SpeedChat menu that opens under them.
INTERFACE_REGIONS: tuple[Region, ...] = (
    Region("chat", "the chat buttons and the SpeedChat menu (top left)", 0.0, 0.0, 0.2, 0.14),
    Region("friends", "the friends and map buttons (top right)", 0.88, 0.0, 1.0, 0.12),
    Region("laff", "the Laff meter (bottom left)", 0.0, 0.8, 0.13, 1.0),
    Region("book", "the Shtiker Book (bottom right)", 0.88, 0.82, 1.0, 1.0),
    Region("gags", "the gag toolbar (bottom)", 0.15, 0.88, 0.85, 1.0),
)


def flag(rule: str, why: str) -> dict[str, str]:
    return {"rule": rule, "why": why}


def expected_height(feet: float, height: int) -> float:
    """The height in pixels a standing figure whose feet are at ``feet`` px from the top is expected to have on
    a screen ``height`` px tall (the perspective prior of the module's docstring)."""
    return max(PRIOR_SLOPE * feet / height + PRIOR_INTERCEPT, MIN_EXPECTED) * height


def _perspective(box: Sequence[float], width: int, height: int) -> dict[str, str] | None:
    left, top, right, bottom = box
    if left <= EDGE or top <= EDGE or right >= width - EDGE or bottom >= height - EDGE:
        return None
    tall = bottom - top
    expected = expected_height(bottom, height)
    if tall > PERSPECTIVE_FACTOR * expected:
        off = "too tall"
    elif tall * PERSPECTIVE_FACTOR < expected:
        off = "too short"
    else:
        return None
    return flag(
        "perspective",
        f"{off} for where it stands: {tall:.0f} px tall with its feet at y {bottom:.0f} of {height}, where a "
        f"Toon or Cog is about {expected:.0f} px tall ({max(tall / expected, expected / tall):.1f} times off)",
    )


def _interface(box: Sequence[float], width: int, height: int) -> dict[str, str] | None:
    left, top, right, bottom = box
    area = (right - left) * (bottom - top)
    if area <= 0:
        return None
    for region in INTERFACE_REGIONS:
        overlap_w = min(right, region.right * width) - max(left, region.left * width)
        overlap_h = min(bottom, region.bottom * height) - max(top, region.top * height)
        share = max(overlap_w, 0) * max(overlap_h, 0) / area
        if share >= INTERFACE_SHARE:
            return flag("interface", f"{share:.0%} of it lies over {region.what}, where the game draws its interface")
    return None


def box_flags(
    boxes: Sequence[Sequence[float]], width: int, height: int, conflicts: Sequence[str | None] | None = None
) -> list[list[dict[str, str]]]:
    """The game-rule flags of each box (``left, top, right, bottom`` in pixels) of a ``width x height``
    screenshot, each ``{"rule": ..., "why": ...}``; ``conflicts`` (one per box, None where there is none) are
    the labelling rule's disagreements between the detector and the classifiers."""
    conflicts = list(conflicts) if conflicts is not None else [None] * len(boxes)
    out: list[list[dict[str, str]]] = []
    for box, conflict in zip(boxes, conflicts, strict=True):
        flags = [flag("detector-disagrees", conflict)] if conflict else []
        if width > 0 and height > 0:
            flags += [f for f in (_perspective(box, width, height), _interface(box, width, height)) if f]
        out.append(flags)
    return out


def flag_rules(flags: Sequence[dict[str, Any]]) -> str:
    """The rules of ``flags`` as one short text (``perspective, interface``), for a table column."""
    return ", ".join(dict.fromkeys(str(f.get("rule")) for f in flags))
