"""What can be seen in ToonTown: Cog suits and names, Toon animals, streets, and the labels built from them.

Labels follow the spec's labelImg convention: ``cog_<suit>_<name>`` and ``toon_<animal>``. Names are the
in-game names lowercased with spaces and punctuation removed (``Mr. Hollywood`` -> ``mrhollywood``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

KINDS: tuple[str, ...] = ("cog", "toon")


@dataclass(frozen=True)
class Suit:
    short: str
    long: str
    color: str  # department colour, as a matplotlib/hex colour
    cogs: tuple[str, ...]  # label names, lowest rung of the corporate ladder first
    display_names: tuple[str, ...]  # in-game names, same order


SUITS: tuple[Suit, ...] = (
    Suit(
        "bb",
        "bossbot",
        "#7a4b2a",
        (
            "flunky",
            "pencilpusher",
            "yesman",
            "micromanager",
            "downsizer",
            "headhunter",
            "corporateraider",
            "thebigcheese",
        ),
        (
            "Flunky",
            "Pencil Pusher",
            "Yesman",
            "Micromanager",
            "Downsizer",
            "Head Hunter",
            "Corporate Raider",
            "The Big Cheese",
        ),
    ),
    Suit(
        "lb",
        "lawbot",
        "#2f4f8f",
        (
            "bottomfeeder",
            "bloodsucker",
            "doubletalker",
            "ambulancechaser",
            "backstabber",
            "spindoctor",
            "legaleagle",
            "bigwig",
        ),
        (
            "Bottom Feeder",
            "Bloodsucker",
            "Double Talker",
            "Ambulance Chaser",
            "Back Stabber",
            "Spin Doctor",
            "Legal Eagle",
            "Big Wig",
        ),
    ),
    Suit(
        "cb",
        "cashbot",
        "#3f7f4f",
        (
            "shortchange",
            "pennypincher",
            "tightwad",
            "beancounter",
            "numbercruncher",
            "moneybags",
            "loanshark",
            "robberbaron",
        ),
        (
            "Short Change",
            "Penny Pincher",
            "Tightwad",
            "Bean Counter",
            "Number Cruncher",
            "Money Bags",
            "Loan Shark",
            "Robber Baron",
        ),
    ),
    Suit(
        "sb",
        "sellbot",
        "#8a2c3b",
        (
            "coldcaller",
            "telemarketer",
            "namedropper",
            "gladhander",
            "movershaker",
            "twoface",
            "themingler",
            "mrhollywood",
        ),
        (
            "Cold Caller",
            "Telemarketer",
            "Name Dropper",
            "Glad Hander",
            "Mover & Shaker",
            "Two-Face",
            "The Mingler",
            "Mr. Hollywood",
        ),
    ),
)

ANIMALS: tuple[str, ...] = (
    "bear",
    "cat",
    "crocodile",
    "deer",
    "dog",
    "duck",
    "horse",
    "monkey",
    "mouse",
    "pig",
    "rabbit",
)

TOON_COLOR = "#f2a900"  # used for Toons in plots and annotated screenshots


@dataclass(frozen=True)
class Street:
    short: str
    long: str


STREETS: tuple[Street, ...] = (
    Street("br", "The Brrrgh"),
    Street("dd", "Donald's Dock"),
    Street("ddl", "Donald's Dreamland"),
    Street("dg", "Daisy Gardens"),
    Street("mml", "Minnie's Melodyland"),
    Street("ttc", "Toontown Central"),
)

SUIT_BY_SHORT: dict[str, Suit] = {s.short: s for s in SUITS}
STREET_SHORTS: tuple[str, ...] = tuple(s.short for s in STREETS)


class LabelError(ValueError):
    """A label that is not of the form ``cog_<suit>_<name>`` / ``toon_<animal>`` or not in the taxonomy."""


_COG_RE = re.compile(r"^cog_([a-z]+)_([a-z0-9]+)$")
_TOON_RE = re.compile(r"^toon_([a-z0-9]+)$")
_SAMPLE_RE = re.compile(r"^(?P<label>(?:cog_[a-z]+_[a-z0-9]+)|(?:toon_[a-z0-9]+))_(?P<index>\d+)\.png$")


@dataclass(frozen=True, order=True)
class Label:
    """A parsed label. ``suit``/``name`` are set for Cogs, ``animal`` for Toons."""

    kind: str
    suit: str | None = None
    name: str | None = None
    animal: str | None = None

    def __str__(self) -> str:
        if self.kind == "cog":
            return f"cog_{self.suit}_{self.name}"
        return f"toon_{self.animal}"

    @property
    def is_cog(self) -> bool:
        return self.kind == "cog"

    @property
    def suit_long(self) -> str | None:
        return SUIT_BY_SHORT[self.suit].long if self.suit in SUIT_BY_SHORT else None

    @property
    def tier(self) -> int | None:
        """1-based rung on the corporate ladder (1 = lowest Cog of the suit), None for Toons/unknown names."""
        suit = SUIT_BY_SHORT.get(self.suit or "")
        if suit is None or self.name not in suit.cogs:
            return None
        return suit.cogs.index(self.name) + 1

    @property
    def display_name(self) -> str:
        if self.kind == "toon":
            return str(self.animal).capitalize()
        suit = SUIT_BY_SHORT.get(self.suit or "")
        if suit and self.name in suit.cogs:
            return suit.display_names[suit.cogs.index(self.name)]
        return str(self.name)


def parse_label(text: str, *, strict: bool = True) -> Label:
    """Parse ``cog_<suit>_<name>`` or ``toon_<animal>``.

    With ``strict`` the name or animal must be one of the built-in taxonomy's; without it any lowercase
    alphanumeric name is accepted (a user may extend ``predefined_classes.txt``), but the suit must still be
    one of ``bb lb cb sb`` because the suit task depends on it.
    """
    raw = text
    text = text.strip()
    if m := _COG_RE.match(text):
        suit, name = m.groups()
        if suit not in SUIT_BY_SHORT:
            raise LabelError(f"bad label {raw!r}: unknown suit {suit!r} (expected one of {', '.join(SUIT_BY_SHORT)})")
        if strict and name not in SUIT_BY_SHORT[suit].cogs:
            raise LabelError(
                f"bad label {raw!r}: {name!r} is not a {SUIT_BY_SHORT[suit].long} Cog "
                f"(expected one of {', '.join(SUIT_BY_SHORT[suit].cogs)})"
            )
        return Label("cog", suit=suit, name=name)
    if m := _TOON_RE.match(text):
        (animal,) = m.groups()
        if strict and animal not in ANIMALS:
            raise LabelError(f"bad label {raw!r}: unknown animal {animal!r} (expected one of {', '.join(ANIMALS)})")
        return Label("toon", animal=animal)
    raise LabelError(f"bad label {raw!r}: expected 'cog_<bb|lb|cb|sb>_<name>' or 'toon_<animal>'")


def all_labels() -> list[Label]:
    """The 43 built-in labels: 32 Cogs by suit in ladder order, then the 11 Toon animals."""
    cogs = [Label("cog", suit=s.short, name=n) for s in SUITS for n in s.cogs]
    return cogs + [Label("toon", animal=a) for a in ANIMALS]


def predefined_classes_text(labels: Iterable[Label] | None = None) -> str:
    """labelImg's ``predefined_classes.txt``: one label a line."""
    return "".join(f"{label}\n" for label in (labels if labels is not None else all_labels()))


def read_label_list(path: Path) -> list[Label]:
    """Read a labelImg class list, one label a line; blank lines are ignored, bad lines raise LabelError."""
    labels: list[Label] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            labels.append(parse_label(line, strict=False))
        except LabelError as exc:
            raise LabelError(f"{path}:{lineno}: {exc}") from None
    return labels


@dataclass(frozen=True)
class SampleName:
    label: Label
    index: int

    def __str__(self) -> str:
        return f"{self.label}_{self.index}.png"


def parse_sample_name(filename: str) -> SampleName | None:
    """Parse a crop filename such as ``cog_bb_flunky_12.png``; None when it is not one."""
    m = _SAMPLE_RE.match(filename)
    if not m:
        return None
    try:
        label = parse_label(m.group("label"), strict=False)
    except LabelError:
        return None
    return SampleName(label, int(m.group("index")))


def street_of(screenshot_name: str, streets: Sequence[str] = STREET_SHORTS) -> str | None:
    """The street a screenshot was taken on, from a ``<street>_...`` filename prefix; None when unknown."""
    prefix = Path(screenshot_name).name.split("_", 1)[0].lower()
    return prefix if prefix in streets else None


# Classification tasks: what a crop is, as the models are trained to tell.
TASKS: tuple[str, ...] = ("binary", "suit", "name", "animal")


def task_classes(task: str) -> list[str]:
    """Class names of a classification task, in the index order models use."""
    if task == "binary":
        return list(KINDS)
    if task == "suit":
        return [s.short for s in SUITS]
    if task == "name":
        return [n for s in SUITS for n in s.cogs]
    if task == "animal":
        return list(ANIMALS)
    raise ValueError(f"unknown task {task!r} (choose from {', '.join(TASKS)})")


def task_units(task: str) -> int:
    """Outputs of a model for ``task``: one sigmoid unit for binary, a softmax over the classes otherwise.

    The counts (1, 4, 32, 11) must stay distinct: ``task_for_units`` tells a bare model file's task by them.
    """
    return 1 if task == "binary" else len(task_classes(task))


def task_for_units(units: int, task: str | None = None, source: object = "the model") -> str:
    """The task of a model with ``units`` outputs: ``task`` when given (checked against the outputs), else
    the one its number of outputs implies. Raises ValueError naming ``source``."""
    if task is None:
        matches = [t for t in TASKS if task_units(t) == units]
        if len(matches) != 1:
            raise ValueError(f"cannot tell the task of {source} ({units} outputs): give the task")
        return matches[0]
    expected = task_units(task)  # raises on an unknown task
    if units != expected:
        raise ValueError(f"{source} has {units} outputs but the {task!r} task needs {expected}")
    return task


def task_target(task: str, label: Label) -> int | None:
    """Index of ``label`` in ``task``'s classes, or None when the label does not belong to the task."""
    if task == "binary":
        return KINDS.index(label.kind)
    classes = task_classes(task)
    if task == "animal":
        key = label.animal if label.kind == "toon" else None
    elif label.is_cog:
        key = label.suit if task == "suit" else label.name
    else:
        return None
    return classes.index(key) if key in classes else None
