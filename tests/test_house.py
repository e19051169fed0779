"""The layout's rules, checked over the source: stages in the order data flows, no circles, only the CLI
speaks to the terminal, and the package imports anywhere (also without fcntl, as on Windows)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "toonvision"
# The pipeline's stages in the order data flows: a module may import its own stage and those before it.
STAGES = ("data", "learning", "serving", "interpretation", "figures", "report", "synth", "cli")
TERMINAL = ("typer", "rich", "click")  # what only the CLI may import


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at module level or inside functions (a lazy import is a dependency too)."""
    found = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package ``level - 1`` steps up
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    return {name: {m for m in imports(path) if m in modules and m != name} for name, path in modules.items()}


def stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def test_the_tree_has_one_folder_per_stage_and_nothing_loose():
    folders = sorted(p.name for p in SRC.iterdir() if p.is_dir() and not p.name.startswith("__"))
    assert folders == sorted(STAGES)
    loose = sorted(p.name for p in SRC.glob("*.py"))
    assert loose == ["__init__.py"]


def test_data_flows_one_way():
    upward = []
    for module, deps in graph().items():
        here = stage(module)
        if here is None:  # the package's own __init__: the lazy door to Classifier
            continue
        for dep in deps:
            there = stage(dep)
            if there is not None and STAGES.index(there) > STAGES.index(here):
                upward.append(f"{module} imports {dep}")
    assert upward == []


def test_no_circles():
    edges = graph()
    # Tarjan's strongly connected components: any component of more than one module is a circle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert circles == []


def test_only_the_cli_speaks_to_the_terminal():
    offenders = []
    for path in SRC.rglob("*.py"):
        module = module_name(path)
        if stage(module) == "cli":
            continue
        for dep in imports(path):
            if dep.split(".")[0] in TERMINAL or dep.startswith("toonvision.cli"):
                offenders.append(f"{module} imports {dep}")
    assert offenders == []


def test_the_rules_catch_what_they_forbid(tmp_path, monkeypatch):
    """The checks above are not vacuous: a data module importing the CLI, or learning importing figures, is
    caught."""
    fake = tmp_path / "toonvision"
    for folder in STAGES:
        (fake / folder).mkdir(parents=True)
        (fake / folder / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "data" / "bad.py").write_text("def f():\n    from toonvision.cli.common import console\n")
    (fake / "learning" / "worse.py").write_text("from toonvision.figures import common\nimport rich.console\n")
    (fake / "figures" / "common.py").write_text("from toonvision.learning import worse\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", fake)
    for check in (test_data_flows_one_way, test_only_the_cli_speaks_to_the_terminal, test_no_circles):
        with pytest.raises(AssertionError):
            check()


def test_every_module_imports_without_fcntl():
    """Windows has no fcntl: every module must import without it (locks come from portalocker, imported when a
    lock is taken, which uses fcntl or Windows' LockFileEx)."""
    modules = sorted(module_name(p) for p in SRC.rglob("*.py") if p.name != "__main__.py")
    code = f"""
import sys, importlib, json
sys.modules["fcntl"] = None  # "import fcntl" now raises ImportError, as on Windows
failed = {{}}
for name in {json.dumps(modules)}:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = repr(exc)
print(json.dumps(failed))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {}


def test_no_posix_only_calls():
    """Nothing calls what only POSIX has (os.uname, fcntl, os.getuid...): host names come from platform.node()."""
    posix_only = {("os", "uname"), ("os", "getuid"), ("os", "geteuid"), ("os", "fork")}
    found = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if (node.value.id, node.attr) in posix_only:
                    found.append(f"{module_name(path)}:{node.lineno} {node.value.id}.{node.attr}")
            elif isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                found += [f"{module_name(path)}:{node.lineno} import {n}" for n in names if n.split(".")[0] == "fcntl"]
    assert found == []


HEAVY = ["tensorflow", "keras", "ray", "panda3d", "matplotlib", "onnxruntime", "tf2onnx", "cv2", "sklearn", "scipy"]


def test_help_is_light_and_survives_broken_optional_libraries(tmp_path):
    """`toonvision --help` and every verb's help import nothing heavy; with every heavy library broken they still
    work, and a verb that needs one says which in one line."""
    code = f"""
import sys, json
from typer.testing import CliRunner
heavy = {HEAVY!r}
broken = "--broken" in sys.argv
if broken:
    for name in heavy:
        sys.modules[name] = None  # importing it raises ImportError
from toonvision.cli import app
r = CliRunner()
results = {{"top": r.invoke(app, ["--help"]).exit_code}}
for verb in [c.name for c in app.registered_commands]:
    results[verb] = r.invoke(app, [verb, "--help"]).exit_code
results["loaded"] = [m for m in heavy if sys.modules.get(m) is not None]
print(json.dumps(results))
"""
    for args in ([], ["--broken"]):
        out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        results = json.loads(out.stdout.strip().splitlines()[-1])
        assert results.pop("loaded") == []
        assert set(results.values()) == {0}, results
        assert len(results) == 20  # --help and 19 verbs
    broken = "import sys; sys.modules['panda3d'] = None; from toonvision.cli import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", broken, "synth", "--root", str(tmp_path), "-n", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "error:" in done.stderr and "panda3d" in done.stderr and "Traceback" not in done.stderr
