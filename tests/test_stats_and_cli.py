import json
import subprocess
import sys

from PIL import Image

from conftest import add_screenshot, run_cli
from toonvision.data.extraction import extract
from toonvision.data.splitting import split
from toonvision.data.stats import collect


def make_screenshots(ws):
    boxes = [("cog_bb_flunky", 10, 10, 100, 200), ("toon_cat", 120, 20, 200, 230), ("cog_sb_twoface", 210, 5, 300, 90)]
    for i in range(5):
        add_screenshot(ws, f"ttc_{i}.png", boxes, seed=i)
    for i in range(3):
        add_screenshot(ws, f"br_{i}.png", boxes[:1], seed=10 + i)
    add_screenshot(ws, "mine.png", boxes[1:2], seed=99)


def make_dataset(ws):
    make_screenshots(ws)
    extract(ws)


def test_counts(ws):
    make_dataset(ws)
    split(ws, seed=0)
    st = collect(ws)
    assert st.total == 5 * 3 + 3 + 1
    assert st.per_kind == {"cog": 13, "toon": 6}
    assert st.per_suit == {"bb": 8, "sb": 5}
    assert st.per_animal == {"cat": 6}
    assert st.per_street == {"ttc": 15, "br": 3, "unknown": 1}
    assert st.per_label["cog_bb_flunky"] == 8
    assert sum(st.per_split[(s, k)] for s in ("train", "validate", "test") for k in ("cog", "toon")) == 19
    assert {(c.width, c.height) for c in st.crops if c.label.animal == "cat"} == {(80, 210)}


def test_stats_cli_writes_tables_and_plots(ws):
    make_dataset(ws)
    result = run_cli("stats", "--root", str(ws.root))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for word in ("Binary", "Suits", "Streets", "Animals", "bossbot", "twoface", "19 crops in all"):
        assert word in out
    for name in ("dataset_balance.png", "split_balance.png", "crop_sizes.png"):
        path = ws.runs / "stats" / "dataset" / name
        with Image.open(path) as img:
            assert img.size[0] > 500 and img.size[1] > 300
            # not a blank canvas
            assert len(img.convert("L").getcolors(maxcolors=1 << 16) or range(9999)) > 20
    first = (ws.runs / "stats" / "dataset" / "dataset_balance.png").read_bytes()
    again = run_cli("stats", "--root", str(ws.root))  # a new folder: the first run's figures stay as they were
    assert again.returncode == 0 and (ws.runs / "stats" / "dataset-2" / "dataset_balance.png").is_file()
    assert (ws.runs / "stats" / "dataset" / "dataset_balance.png").read_bytes() == first


def test_stats_on_empty_workspace_is_a_clear_error(tmp_path):
    result = run_cli("stats", "--root", str(tmp_path / "nothing"))
    assert result.returncode == 2 and "no crops" in result.stderr and "extract" in result.stderr


def test_labels_verb_writes_predefined_classes(tmp_path):
    result = run_cli("labels", "--root", str(tmp_path / "w"))
    assert result.returncode == 0 and "43 labels" in result.stdout
    classes = tmp_path / "w" / "raw" / "data" / "predefined_classes.txt"
    classes.write_text(classes.read_text() + "toon_dragon\n")
    again = run_cli("labels", "--root", str(tmp_path / "w"))
    assert "44 labels, kept" in again.stdout
    run_cli("labels", "--root", str(tmp_path / "w"), "--force")
    assert "toon_dragon" not in classes.read_text()


VERBS = [
    "labels",
    "synth",
    "extract",
    "split",
    "unsplit",
    "stats",
    "models",
    "train",
    "optimizers",
    "compare",
    "evaluate",
    "explain",
    "predict",
    "export",
    "watch",
    "annotate",
    "review",
    "report",
    "demo",
]


def test_every_verb_has_help():
    from toonvision.cli import app

    assert [c.name for c in app.registered_commands] == VERBS
    result = run_cli("--help")
    assert result.returncode == 0
    for verb in VERBS:
        assert verb in result.stdout
        sub = run_cli(verb, "--help")
        assert sub.returncode == 0 and "Usage" in sub.stdout, verb
        assert "--root" in sub.stdout or verb in ("models",), verb


def test_data_verbs_do_not_import_heavy_libraries(ws):
    # The data verbs must start fast: no TensorFlow, Keras, Ray, Panda3D or matplotlib behind them, also when
    # they do their whole job (extract real screenshots, split, count, return the crops).
    make_screenshots(ws)
    code = f"""
import sys, json
from typer.testing import CliRunner
from toonvision.cli import app
r = CliRunner()
codes = []
for args in (["labels"], ["extract", "--dry-run"], ["extract", "--move"], ["split", "--dry-run"], ["split"],
             ["stats", "--no-plots"], ["unsplit"]):
    result = r.invoke(app, [*args, "--root", {str(ws.root)!r}])
    codes.append((args[0], result.exit_code, result.output[-300:] if result.exit_code else ""))
heavy = ["tensorflow", "keras", "ray", "panda3d", "matplotlib", "sklearn", "scipy"]
print(json.dumps({{"codes": codes, "heavy": [m for m in heavy if m in sys.modules]}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    found = json.loads(out.strip().splitlines()[-1])
    assert all(code == 0 for _, code, _ in found["codes"]), found["codes"]
    assert found["heavy"] == []
    assert len(list(ws.unsorted.rglob("*.png"))) == 19  # the work was done: every crop is back in unsorted/
