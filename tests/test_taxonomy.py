from pathlib import Path

import pytest

from toonvision.data.taxonomy import (
    ANIMALS,
    STREET_SHORTS,
    SUITS,
    TASKS,
    LabelError,
    all_labels,
    parse_label,
    parse_sample_name,
    predefined_classes_text,
    street_of,
    task_classes,
    task_for_units,
    task_target,
    task_units,
)

SPEC_CLASSES = Path(__file__).parent / "data" / "predefined_classes.txt"


def test_labels_are_exactly_the_specs_43():
    assert predefined_classes_text() == SPEC_CLASSES.read_text()
    labels = all_labels()
    assert len(labels) == 43
    assert sum(label.is_cog for label in labels) == 32


def test_suits_animals_streets():
    assert [s.short for s in SUITS] == ["bb", "lb", "cb", "sb"]
    assert [s.long for s in SUITS] == ["bossbot", "lawbot", "cashbot", "sellbot"]
    assert all(len(s.cogs) == 8 == len(s.display_names) for s in SUITS)
    assert len(ANIMALS) == 11
    assert sorted(STREET_SHORTS) == ["br", "dd", "ddl", "dg", "mml", "ttc"]
    # Ladder order: the two top Cogs of each suit are the building-only ones.
    assert SUITS[0].cogs[-2:] == ("corporateraider", "thebigcheese")
    assert SUITS[3].cogs[0] == "coldcaller"


def test_parse_and_format_round_trip():
    for label in all_labels():
        assert parse_label(str(label)) == label
    cog = parse_label("cog_lb_bloodsucker")
    assert (cog.kind, cog.suit, cog.name, cog.suit_long, cog.tier) == ("cog", "lb", "bloodsucker", "lawbot", 2)
    assert cog.display_name == "Bloodsucker"
    assert parse_label("toon_cat").animal == "cat"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("cog_xx_flunky", "unknown suit 'xx'"),
        ("cog_bb_bloodsucker", "not a bossbot Cog"),
        ("toon_dragon", "unknown animal 'dragon'"),
        ("Cog_bb_flunky", "expected 'cog_<bb|lb|cb|sb>_<name>'"),
        ("flunky", "expected"),
        ("", "expected"),
    ],
)
def test_bad_labels_are_named(text, fragment):
    with pytest.raises(LabelError) as info:
        parse_label(text)
    assert repr(text) in str(info.value)
    assert fragment in str(info.value)


def test_non_strict_accepts_user_labels_but_not_unknown_suits():
    assert parse_label("toon_dragon", strict=False).animal == "dragon"
    assert parse_label("cog_bb_newcog", strict=False).name == "newcog"
    with pytest.raises(LabelError):
        parse_label("cog_zz_newcog", strict=False)


def test_sample_names_and_streets():
    s = parse_sample_name("cog_sb_mrhollywood_17.png")
    assert str(s.label) == "cog_sb_mrhollywood" and s.index == 17 and str(s) == "cog_sb_mrhollywood_17.png"
    assert parse_sample_name("toon_duck_0.png").label.animal == "duck"
    for bad in ("toon_duck.png", "toon_duck_1.jpg", "cog_xx_a_1.png", ".toon_duck_1.png.123.tmp", "notes.txt"):
        assert parse_sample_name(bad) is None
    assert street_of("ddl_12.png") == "ddl"
    assert street_of("screenshot_1.png") is None


def test_task_targets():
    assert task_classes("binary") == ["cog", "toon"]
    assert len(task_classes("suit")) == 4 and len(task_classes("name")) == 32
    assert task_target("binary", parse_label("toon_pig")) == 1
    assert task_target("suit", parse_label("cog_cb_tightwad")) == 2
    assert task_target("suit", parse_label("toon_pig")) is None
    assert task_classes("name")[task_target("name", parse_label("cog_sb_twoface"))] == "twoface"
    with pytest.raises(ValueError):
        task_classes("species")


def test_animal_task():
    assert "animal" in TASKS and task_classes("animal") == list(ANIMALS) and task_units("animal") == 11
    assert task_classes("animal")[task_target("animal", parse_label("toon_pig"))] == "pig"
    # Cog crops are not part of the animal task, as Toon crops are not part of suit/name.
    assert task_target("animal", parse_label("cog_cb_tightwad")) is None
    assert task_target("name", parse_label("toon_pig")) is None
    assert task_target("animal", parse_label("toon_platypus", strict=False)) is None


def test_task_for_units_stays_unambiguous():
    # Every task's output count names exactly one task, so a bare model file still says what it is.
    units = [task_units(t) for t in TASKS]
    assert len(set(units)) == len(units)
    assert task_for_units(11) == "animal" and task_for_units(32) == "name" and task_for_units(1) == "binary"
    with pytest.raises(ValueError):
        task_for_units(11, "suit")
