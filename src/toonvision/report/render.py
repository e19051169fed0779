"""Rendering a report: the templates in ``templates/`` turn what :func:`toonvision.report.gather.gather`
found into one HTML page.

Every template is rendered with autoescape on, so every value a template shows (an experiment's name, a
file's stem, a number a user typed into a JSON file) is escaped where it is written, with none to forget.
Pictures are embedded as base64 PNG data URIs: the page needs nothing beside it.
"""

from __future__ import annotations

import base64
from functools import cache
from pathlib import Path

import jinja2

from toonvision.report.gather import Report, is_number


def number(value: object, spec: str) -> str:
    """``value`` formatted with ``spec`` (".4f", "+.4f", ","...) when it is a number; anything else, such as a
    string a user typed where a number belongs, as it is (the template escapes it)."""
    return format(value, spec) if is_number(value) else str(value)


def png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


@cache
def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("toonvision.report", "templates"),
        # On for every template whatever its name (select_autoescape would go by the extension, and these
        # end in .j2).
        autoescape=True,
        # A misspelt field fails the report instead of leaving a blank in it.
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["number"] = number
    env.filters["png_data_uri"] = png_data_uri
    return env


def render(report: Report) -> str:
    """The page of ``report``, as one self-contained HTML document."""
    return templates().get_template("report.html.j2").render(report=report)
