"""The documentation tells the truth about the command: every ``toonvision`` command shown in README.md,
docs/*.md and benchmarks/README.md parses against the real command line (nothing is run), every ``make``
target shown exists, every relative link points to a file (and heading) that exists, and the README stays a
short landing page."""

from __future__ import annotations

import ast
import functools
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
import typer

import toonvision.cli

try:  # typer 0.2x parses with its own copy of click
    from typer._click.exceptions import ClickException, MissingParameter
except ImportError:  # pragma: no cover - older typer uses click itself
    from click.exceptions import ClickException, MissingParameter

EXITS = (typer.Exit, click.exceptions.Exit)  # --help

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = sorted([README, *(REPO / "docs").glob("*.md"), REPO / "benchmarks" / "README.md"])
README_MAX_BYTES = 16_000

FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")
INLINE = re.compile(r"`(toonvision [^`\n]+)`")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


@dataclass(frozen=True)
class Shown:
    """A piece of a Markdown file: its text, where it is, and the language of its fence."""

    path: Path
    line: int
    text: str
    lang: str = ""
    inline: bool = False  # `toonvision VERB` in a sentence may name a verb without its arguments

    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def fenced_blocks(path: Path) -> list[Shown]:
    """Every fenced code block of a Markdown file, with the line its text starts on."""
    blocks, lines = [], path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        start = FENCE.match(lines[i])
        if not start:
            i += 1
            continue
        fence, lang = start.group(1), start.group(2)
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        blocks.append(Shown(path, i + 2, "\n".join(lines[i + 1 : j]), lang))
        i = j + 1
    return blocks


def prose(path: Path) -> list[Shown]:
    """Every line of a Markdown file outside its fenced code blocks."""
    out, inside = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            inside = not inside
            continue
        if not inside:
            out.append(Shown(path, number, line))
    return out


def shell_lines(block: Shown) -> list[Shown]:
    """The commands of a console block: `$ ` prompts dropped, `\\` continuations joined."""
    out, pending, first = [], "", 0
    for offset, raw in enumerate(block.text.splitlines()):
        line = raw.strip()
        if line.startswith("$ "):
            line = line[2:]
        if not pending:
            first = block.line + offset
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append(Shown(block.path, first, pending + line))
        pending = ""
    if pending:
        out.append(Shown(block.path, first, pending))
    return out


def words(command: str) -> list[str]:
    """A command line split as a POSIX shell would, without its trailing `# comment`; a placeholder such as
    `<detect run>` is one word."""
    command = re.sub(r"<[^<>]*>", lambda m: m.group(0).replace(" ", "_"), command)
    lexer = shlex.shlex(command, posix=True, punctuation_chars=False)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def shown_commands(program: str) -> list[Shown]:
    """Every line starting with `program ` in a fenced block, and every inline `toonvision ...`."""
    found = []
    for path in DOCS:
        for block in fenced_blocks(path):
            if block.lang in ("python", "py", "json"):
                continue
            found += [line for line in shell_lines(block) if line.text.startswith(program + " ")]
        if program == "toonvision":
            for line in prose(path):
                found += [Shown(path, line.line, m.group(1), inline=True) for m in INLINE.finditer(line.text)]
    return found


COMMANDS = shown_commands("toonvision")
MAKE_LINES = shown_commands("make")
PYTHON_BLOCKS = [block for path in DOCS for block in fenced_blocks(path) if block.lang in ("python", "py")]


@functools.cache
def toonvision_group():
    return typer.main.get_command(toonvision.cli.app)


def check_command(group, shown: Shown) -> None:
    """Parse one shown command against the real verb (nothing runs); fail with its file and line."""
    args = words(shown.text)[1:]
    command_line = " ".join(["toonvision", *args])
    if args and args[0].isupper():  # a placeholder: `toonvision VERB --help`
        return
    if not args or args[0].startswith("-"):
        # `toonvision --help`, `toonvision -h`: the group's own options.
        command, name, rest = group, "toonvision", args
    else:
        name, rest = args[0], args[1:]
        command = group.commands.get(name)
        if command is None:
            pytest.fail(f"{shown.where()}: unknown verb {name!r} in `{command_line}`")
    try:
        command.make_context(name, list(rest), resilient_parsing=False)
    except EXITS:
        pass  # --help
    except MissingParameter:
        if not shown.inline:
            pytest.fail(f"{shown.where()}: `{command_line}` lacks an argument the verb requires")
    except ClickException as exc:
        pytest.fail(f"{shown.where()}: `{command_line}` does not parse: {exc.format_message()}")


def test_the_docs_show_commands():
    # The extraction finds what is there: the README's own walk-through at least.
    shown = {c.text for c in COMMANDS if c.path == README}
    assert any(text.startswith("toonvision train --root img --task detect") for text in shown), shown
    assert len(COMMANDS) > 50


@pytest.mark.parametrize("shown", COMMANDS, ids=lambda c: c.where())
def test_every_shown_command_parses(shown: Shown):
    check_command(toonvision_group(), shown)


def test_a_wrong_command_is_caught():
    group = toonvision_group()
    for bad in (
        "toonvision train --root img --no-such-option",
        "toonvision predict shot.png --conf 2",
        "toonvision train --epochs many",
        "toonvision no-such-verb --root img",
    ):
        with pytest.raises(pytest.fail.Exception):
            check_command(group, Shown(README, 1, bad))
    check_command(group, Shown(README, 1, "toonvision predict shot.png --root img  # a comment --bogus"))


def test_make_targets_exist():
    targets = set(re.findall(r"^([\w-]+)\s*:", (REPO / "Makefile").read_text(encoding="utf-8"), re.M))
    assert MAKE_LINES, "the README shows make demo and make test"
    for shown in MAKE_LINES:
        for target in words(shown.text)[1:]:
            if "=" not in target and not target.startswith("-"):
                assert target in targets, f"{shown.where()}: make has no target {target!r}"


def test_the_readme_is_a_landing_page():
    text = README.read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) <= README_MAX_BYTES
    for path in DOCS:
        assert "../shared" not in path.read_text(encoding="utf-8"), path
    # The article the project started from, cited by its title and address.
    assert "ToonVision: Binary Classification" in text
    assert "https://sasonreza.com/toonvision/classification/" in text
    assert "predefined_classes.txt" in text


def test_python_examples_are_python():
    assert any(block.path == README for block in PYTHON_BLOCKS)
    for block in PYTHON_BLOCKS:
        try:
            ast.parse(block.text)
        except SyntaxError as exc:
            pytest.fail(f"{block.where()}: not valid Python: {exc}")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in prose(path):
        if m := re.match(r"#{1,6}\s+(.*)", line.text):
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def test_relative_links_point_to_files_that_exist():
    broken = []
    for path in DOCS:
        for line in prose(path):
            for m in LINK.finditer(line.text):
                target = m.group(1) or m.group(2)
                if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                    continue
                file, _, anchor = target.partition("#")
                dest = (path.parent / file).resolve() if file else path
                if not dest.exists():
                    broken.append(f"{Shown(path, line.line, '').where()}: {target} (no such file)")
                elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                    broken.append(f"{Shown(path, line.line, '').where()}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
