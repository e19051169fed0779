import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from conftest import noise_image, run_cli
from toonvision.data.samples import find_samples
from toonvision.data.splitting import apply_plan, plan_kfold, plan_split, split, unsplit
from toonvision.data.workspace import SPLITS, Workspace

LABEL_COUNTS = {
    "cog_bb_flunky": 50,
    "cog_bb_thebigcheese": 2,
    "cog_lb_bloodsucker": 31,
    "cog_sb_mrhollywood": 1,
    "toon_cat": 20,
    "toon_dog": 7,
    "toon_duck": 3,
}


def populate(ws: Workspace, counts=LABEL_COUNTS, *, spread: bool = False) -> None:
    """Crops for each label; with ``spread`` some start in split folders already."""
    src = ws.root.parent / "tiny.png"
    noise_image(4, 6).save(src)
    for label, n in counts.items():
        kind = label.split("_")[0]
        for i in range(n):
            folder = ws.unsorted_dir(kind)
            if spread and i % 3:
                folder = ws.split_dir(SPLITS[i % 3], kind)
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, folder / f"{label}_{i}.png")


def test_plan_is_stratified_and_reproducible(ws):
    populate(ws)
    samples = find_samples(ws)
    plan = plan_split(samples, seed=3)
    assert set(plan) == {s.name for s in samples}
    assert plan == plan_split(list(reversed(samples)), seed=3)  # order of discovery does not matter
    assert plan != plan_split(samples, seed=4)
    per_label = Counter((name.rsplit("_", 1)[0], split) for name, split in plan.items())
    assert [per_label[("cog_bb_flunky", s)] for s in SPLITS] == [30, 10, 10]
    assert [per_label[("cog_lb_bloodsucker", s)] for s in SPLITS] == [19, 6, 6]
    assert per_label[("cog_sb_mrhollywood", "train")] == 1  # a single crop goes to training
    assert per_label[("cog_bb_thebigcheese", "train")] == 1
    # Other ratios
    plan2 = plan_split(samples, ratios=(8, 1, 1), seed=0)
    assert Counter(plan2[f"cog_bb_flunky_{i}.png"] for i in range(50)) == {"train": 40, "validate": 5, "test": 5}


def test_adding_crops_of_one_label_keeps_the_others_split(ws):
    populate(ws)
    before = plan_split(find_samples(ws), seed=1)
    populate(ws, {"toon_cat": 40})
    after = plan_split(find_samples(ws), seed=1)
    for name, split_ in before.items():
        if not name.startswith("toon_cat"):
            assert after[name] == split_


def test_kfold_partitions_every_sample(ws):
    populate(ws)
    samples = find_samples(ws)
    plans = plan_kfold(samples, 5, seed=0)
    assert len(plans) == 5
    for name in (s.name for s in samples):
        roles = [p[name] for p in plans]
        assert roles.count("test") == 1 and roles.count("validate") == 1 and roles.count("train") == 3
    test_sizes = [sum(1 for v in p.values() if v == "test") for p in plans]
    assert max(test_sizes) - min(test_sizes) <= len(LABEL_COUNTS)
    flunky_tests = [sum(1 for k, v in p.items() if v == "test" and "flunky" in k) for p in plans]
    assert flunky_tests == [10] * 5  # stratified
    assert plans == plan_kfold(samples, 5, seed=0)
    with pytest.raises(ValueError):
        plan_kfold(samples, 2)


def test_split_and_unsplit_move_files(ws):
    populate(ws, spread=True)
    total = sum(LABEL_COUNTS.values())
    summary = split(ws, seed=0)
    assert sum(summary.counts.values()) == total
    samples = find_samples(ws)
    assert len(samples) == total and all(s.split in SPLITS for s in samples)
    plan = plan_split(samples, seed=0)
    assert all(plan[s.name] == s.split for s in samples)
    assert split(ws, seed=0).moved == 0  # already in place
    unsplit(ws)
    assert {s.split for s in find_samples(ws)} == {None}
    assert not any(list(ws.split_dir(s, k).iterdir()) for s in SPLITS for k in ("cog", "toon"))


def test_apply_refuses_to_clobber(ws):
    populate(ws, {"toon_cat": 2})
    (ws.split_dir("train", "toon")).mkdir(parents=True, exist_ok=True)
    noise_image(9, 9, seed=5).save(ws.split_dir("train", "toon") / "toon_cat_7.png")
    noise_image(9, 9, seed=6).save(ws.unsorted_dir("toon") / "toon_cat_7.png")  # same name, another file
    from toonvision.data.samples import SampleLayoutError

    with pytest.raises(SampleLayoutError, match=r"toon_cat_7\.png"):
        apply_plan(ws, {})
    assert len(list(ws.root.rglob("toon_cat_7.png"))) == 2


def test_killed_split_loses_and_duplicates_nothing(ws):
    n_per_label = 700
    counts = {"cog_bb_flunky": n_per_label, "cog_cb_tightwad": n_per_label, "toon_pig": n_per_label}
    populate(ws, counts)
    total = sum(counts.values())
    names = {f"{label}_{i}.png" for label, n in counts.items() for i in range(n)}
    rng = random.Random(1)
    interrupted = partial = 0
    for attempt in range(30):
        seed = attempt % 2  # alternate seeds so that every run has files to move
        target = plan_split(find_samples(ws), seed=seed)
        in_target_before = sum(target[s.name] == s.split for s in find_samples(ws))
        proc = subprocess.Popen(
            [sys.executable, "-m", "toonvision.cli", "split", "--root", str(ws.root), "--seed", str(seed)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.25, 0.9))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            interrupted += 1
        proc.wait()
        on_disk = [p.name for p in ws.root.rglob("*.png")]
        # Every crop is somewhere; a name may stand twice only as two links to one file (healed below).
        assert set(on_disk) == names
        samples = find_samples(ws)
        assert len(samples) == total and {s.name for s in samples} == names
        in_target = sum(target[s.name] == s.split for s in samples)
        partial += in_target_before < in_target < total
        if partial >= 3 and proc.returncode == 0:
            break
    assert partial >= 1, "no split was killed half-way: the test proved nothing"
    split(ws, seed=5)
    samples = find_samples(ws)
    plan = plan_split(samples, seed=5)
    assert len(samples) == total and all(plan[s.name] == s.split for s in samples)
    assert len(list(ws.root.rglob("*.png"))) == total


def test_cli_split_dry_run_folds_and_errors(tmp_path):
    ws = Workspace(tmp_path / "w").init()
    empty = run_cli("split", "--root", str(ws.root))
    assert empty.returncode == 2 and "no crops" in empty.stderr
    populate(ws)
    dry = run_cli("split", "--root", str(ws.root), "--dry-run")
    assert dry.returncode == 0 and "train" in dry.stdout
    assert {s.split for s in find_samples(ws)} == {None}
    folds = run_cli("split", "--root", str(ws.root), "--folds", "4", "--fold", "1", "--seed", "2")
    assert folds.returncode == 0, folds.stderr
    samples = find_samples(ws)
    expected = plan_kfold(samples, 4, seed=2)[1]
    assert all(expected[s.name] == s.split for s in samples)
    bad = run_cli("split", "--root", str(ws.root), "--ratio", "1", "-1", "1")
    assert bad.returncode == 2 and "non-negative" in bad.stderr
    bad_fold = run_cli("split", "--root", str(ws.root), "--folds", "3", "--fold", "3")
    assert bad_fold.returncode == 2 and "--fold 3" in bad_fold.stderr
    back = run_cli("unsplit", "--root", str(ws.root))
    assert back.returncode == 0 and {s.split for s in find_samples(ws)} == {None}
