"""The one rule that turns what the models say of a box into its label.

Every source of evidence is a probability distribution over a grouping of the taxonomy's labels: the binary
model over the kind (Cog, Toon), the suit and name models over the Cogs, the animal model over the Toons, and
the detector over its own classes (a kind, a suit or a whole label), read from its heatmap at the box's peak
and normalised. The rule multiplies them (each source is one expert; absent ones say nothing):

    P(label) = P(kind) * Q_kind(label)
    P(kind)      ~ binary(kind) * detector(kind)
    Q_cog(label) ~ suit(its suit) * name(its name) * detector(label | cog)
    Q_toon(label)~ animal(its animal) * detector(label | toon)

Each Q is normalised within its kind, so that a model that only knows Cogs cannot move mass between Cogs and
Toons. The answer is the most probable label; a Cog's name therefore always belongs to its suit, and the kind
never contradicts the label. Where no model can tell the names of a kind (no name model and no detector of
labels, say), the rule answers at the deepest level it can (the suit, or the kind) and the label is None.

When the answer lies outside the detector's class (the classifiers outvoted it), or inside it although the
classifiers give that class less than :data:`CONFLICT_BELOW` (the detector outvoted them), the decision carries
a ``conflict`` that says so: ``annotate`` ranks such boxes first and a bot can ignore them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from toonvision.data.taxonomy import ANIMALS, SUITS, Label, all_labels, task_classes

CONFLICT_BELOW = 0.1  # mass the classifiers give the detector's class, below which the two disagree strongly
FLOOR = 1e-6  # no model is ever perfectly sure: keeps one expert's zero from vetoing every other's evidence

LABELS: tuple[Label, ...] = tuple(all_labels())
LABEL_TEXT: tuple[str, ...] = tuple(str(label) for label in LABELS)
_IS_COG = np.array([label.is_cog for label in LABELS])
_SUIT_NAMES = task_classes("suit")
_NAME_NAMES = task_classes("name")
_SUIT_OF = np.array([_SUIT_NAMES.index(label.suit) if label.is_cog else -1 for label in LABELS])
_NAME_OF = np.array([_NAME_NAMES.index(label.name) if label.is_cog else -1 for label in LABELS])
_ANIMAL_OF = np.array([ANIMALS.index(label.animal) if not label.is_cog else -1 for label in LABELS])
_SUIT_LONG = {s.long: s.short for s in SUITS}


@lru_cache(maxsize=256)
def class_labels(detector_class: str) -> np.ndarray:
    """The labels (a boolean mask over :data:`LABELS`, read-only) a detector class stands for: ``cog``/``toon``,
    a suit's long name, or a label itself; none for a class outside the taxonomy."""
    if detector_class in ("cog", "toon"):
        mask = _IS_COG.copy() if detector_class == "cog" else ~_IS_COG
    elif detector_class in _SUIT_LONG:
        mask = np.equal(_SUIT_OF, _SUIT_NAMES.index(_SUIT_LONG[detector_class]))
    else:
        mask = np.array([text == detector_class for text in LABEL_TEXT])
    mask.flags.writeable = False  # cached: shared by every caller
    return mask


@dataclass(frozen=True)
class Evidence:
    """What the models said of one box; None where a model is absent (or was not asked: a Toon's suit)."""

    kind: np.ndarray | None = None  # [p(cog), p(toon)]
    suit: np.ndarray | None = None  # over task_classes("suit")
    name: np.ndarray | None = None  # over task_classes("name")
    animal: np.ndarray | None = None  # over ANIMALS
    detector: Mapping[str, float] | None = None  # detector class -> its score at the box's peak
    detector_class: str | None = None


@dataclass(frozen=True)
class Decision:
    """A box's label and its parts, each with its probability under the rule."""

    label: str | None  # a label of the taxonomy, or None where no model can name the box that finely
    confidence: float  # probability of the label (or of the deepest part decided, when label is None)
    kind: str
    kind_confidence: float
    suit: str | None = None
    suit_confidence: float | None = None
    name: str | None = None
    name_confidence: float | None = None
    animal: str | None = None
    animal_confidence: float | None = None
    conflict: str | None = None  # why the detector and the classifiers disagree, when they do strongly


@dataclass(frozen=True)
class Informed:
    """Which levels of the taxonomy the models present can tell apart (for Cogs: the suit, the name; for Toons:
    the animal). A pipeline's models decide this once; every box is judged the same way."""

    cog_suit: bool
    cog_name: bool
    toon_animal: bool

    @classmethod
    def of(cls, tasks: Sequence[str], detector_classes: Sequence[str] = ()) -> Informed:
        masks = [class_labels(c) for c in detector_classes]
        single = [m for m in masks if m.sum() == 1]  # a detector of whole labels names them by itself
        suit_level = [m for m in masks if 1 <= m.sum() <= 8 and m[_IS_COG].any() and not m[~_IS_COG].any()]
        return cls(
            cog_suit="suit" in tasks or "name" in tasks or bool(suit_level),
            cog_name="name" in tasks or any(m[_IS_COG].any() for m in single),
            toon_animal="animal" in tasks or any(m[~_IS_COG].any() for m in single),
        )

    @property
    def names_everything(self) -> bool:
        return self.cog_name and self.toon_animal


def _normalised(values: np.ndarray) -> np.ndarray:
    values = np.maximum(np.asarray(values, np.float64), FLOOR)
    return values / values.sum()


def _detector_over_labels(scores: Mapping[str, float]) -> np.ndarray | None:
    """The detector's class scores as a distribution over the labels: each class's share spread evenly over
    the labels it stands for. None when none of its classes is in the taxonomy."""
    total = np.zeros(len(LABELS))
    classes = [(np.asarray(class_labels(c)), max(float(s), FLOOR)) for c, s in scores.items()]
    classes = [(m, s) for m, s in classes if m.any()]
    if not classes:
        return None
    norm = sum(s for _, s in classes)
    for mask, score in classes:
        total[mask] += score / norm / mask.sum()
    return np.maximum(total, FLOOR)


def _joint(evidence: Evidence, *, with_detector: bool = True) -> np.ndarray:
    """P(label) over :data:`LABELS` by the rule of the module's docstring."""
    cog_kind = np.array([0.5, 0.5])  # [cog, toon]
    if evidence.kind is not None:
        cog_kind = cog_kind * _normalised(evidence.kind)
    factor = np.ones(len(LABELS))
    if evidence.suit is not None:
        factor[_IS_COG] *= _normalised(evidence.suit)[_SUIT_OF[_IS_COG]]
    if evidence.name is not None:
        factor[_IS_COG] *= _normalised(evidence.name)[_NAME_OF[_IS_COG]]
    if evidence.animal is not None:
        factor[~_IS_COG] *= _normalised(evidence.animal)[_ANIMAL_OF[~_IS_COG]]
    detector = _detector_over_labels(evidence.detector) if with_detector and evidence.detector else None
    if detector is not None:
        by_kind = np.array([detector[_IS_COG].sum(), detector[~_IS_COG].sum()])
        cog_kind = cog_kind * by_kind
        factor[_IS_COG] *= detector[_IS_COG] / by_kind[0]
        factor[~_IS_COG] *= detector[~_IS_COG] / by_kind[1]
    cog_kind = cog_kind / cog_kind.sum()
    joint = factor
    joint[_IS_COG] *= cog_kind[0] / joint[_IS_COG].sum()
    joint[~_IS_COG] *= cog_kind[1] / joint[~_IS_COG].sum()
    return joint


def cog_probability(evidence: Evidence) -> float:
    """P(Cog) from the binary model and the detector alone: whether the Cog-only or Toon-only models are worth
    asking about a box at all."""
    joint = _joint(Evidence(kind=evidence.kind, detector=evidence.detector))
    return float(joint[_IS_COG].sum())


@lru_cache(maxsize=16)
def _groups(informed: Informed) -> np.ndarray:
    """The sets of labels the rule chooses between, one row of a boolean (groups, labels) matrix each: single
    labels where the models can name them, else whole suits or whole kinds."""
    groups: list[np.ndarray] = []
    if informed.cog_name:
        groups += [np.eye(len(LABELS), dtype=bool)[i] for i in np.flatnonzero(_IS_COG)]
    elif informed.cog_suit:
        groups += [np.equal(_SUIT_OF, s) for s in range(len(_SUIT_NAMES))]
    else:
        groups.append(_IS_COG.copy())
    if informed.toon_animal:
        groups += [np.eye(len(LABELS), dtype=bool)[i] for i in np.flatnonzero(~_IS_COG)]
    else:
        groups.append(~_IS_COG)
    matrix = np.stack(groups)
    matrix.flags.writeable = False  # cached: shared by every caller
    return matrix


def decide(evidence: Evidence, informed: Informed) -> Decision:
    """The label of one box under the rule, with its parts and whether the detector and classifiers disagree."""
    joint = _joint(evidence)
    groups = _groups(informed)
    masses = groups @ joint
    best = groups[int(np.argmax(masses))]
    confidence = float(masses.max())
    is_cog = bool(_IS_COG[best].all())
    kind_mass = float(joint[_IS_COG].sum() if is_cog else joint[~_IS_COG].sum())
    only = int(np.flatnonzero(best)[0]) if best.sum() == 1 else None
    label = LABELS[only] if only is not None else None
    suit = suit_confidence = None
    if is_cog and informed.cog_suit:
        suit_index = int(_SUIT_OF[np.flatnonzero(best)[0]])
        suit, suit_confidence = _SUIT_NAMES[suit_index], float(joint[np.equal(_SUIT_OF, suit_index)].sum())
    return Decision(
        label=str(label) if label is not None else None,
        confidence=confidence,
        kind="cog" if is_cog else "toon",
        kind_confidence=kind_mass,
        suit=suit,
        suit_confidence=suit_confidence,
        name=label.name if label is not None and is_cog else None,
        name_confidence=confidence if label is not None and is_cog else None,
        animal=label.animal if label is not None and not is_cog else None,
        animal_confidence=confidence if label is not None and not is_cog else None,
        conflict=_conflict(evidence, best, str(label) if label is not None else _group_text(is_cog, suit)),
    )


def _group_text(is_cog: bool, suit: str | None) -> str:
    return f"cog_{suit}" if is_cog and suit else ("cog" if is_cog else "toon")


def _conflict(evidence: Evidence, chosen: np.ndarray, shown: str) -> str | None:
    """Why the detector's class and the answer disagree, or None: the answer (``chosen``, a mask of labels,
    ``shown`` as text) lies outside the detector's class, or lies inside it although the classifiers give that
    class less than :data:`CONFLICT_BELOW`."""
    if evidence.detector_class is None:
        return None
    mask = class_labels(evidence.detector_class)
    if not mask.any():
        return None
    if not (mask & chosen).any():
        return f"the detector says {evidence.detector_class}; the classifiers say {shown}"
    if all(p is None for p in (evidence.kind, evidence.suit, evidence.name, evidence.animal)):
        return None
    mass = float(_joint(evidence, with_detector=False)[mask].sum())
    if mass >= CONFLICT_BELOW:
        return None
    return f"the detector says {evidence.detector_class}; the classifiers give it {mass:.2f}"
