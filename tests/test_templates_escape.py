"""Every page template escapes every field it shows: each template rendered with markup in each of
its fields (table cells, links, titles, captions) shows that markup as text, never as markup, and
the viewer's data reaches its script as JSON that cannot end the script."""
from __future__ import annotations

import json
import re

import jinja2.meta
import markupsafe
import pytest

from t3al.evaluate.pages import environment, render

MARKUP = '<x-mark class="x">{}</x-mark>&\'"'  # a tag, an ampersand and both quotes


def _markup(field: str) -> str:
    return MARKUP.format(field)


def _image(field: str) -> dict[str, str]:
    return {"link": _markup(f"{field}.link"), "alt": _markup(f"{field}.alt"), "src": _markup(f"{field}.src")}


def _cells(field: str) -> list[list[str]]:
    return [[_markup(f"{field} head {c}") for c in range(2)], [_markup(f"{field} cell {c}") for c in range(2)]]


def _report() -> dict:
    split = {"index": _markup("split.index"), "classes": [_markup("class 1"), _markup("class 2")],
             "n_videos": _markup("split.n_videos"), "n_detections": _markup("split.n_detections"),
             "table": _cells("split.table"), "bars": _image("bars"), "rule": _markup("split.rule"),
             "videos": [_image("plot")]}
    return {"source": _markup("source"), "name": _markup("name"), "setting": _markup("setting"),
            "summary": _cells("summary"), "splits": [split], "has_manifest": False, "config": _markup("config")}


def _demo_index() -> dict:
    section = {"setting": _markup("section.setting"), "table": _cells("section.table"),
               "links": [{"href": _markup("link.href"), "text": _markup("link.text")}]}
    return {"seed": _markup("seed"), "sections": [section], "explanation": _markup("explanation")}


PAGES = {  # template -> (package, a context with markup in every field the template shows)
    "table.html": ("t3al.evaluate", {"cells": _cells("table")}),
    "report.html": ("t3al.evaluate", _report()),
    "index.html": ("t3al.demo", _demo_index()),
}


def _fields(value) -> list[str]:
    """Every string of a context, however deeply nested."""
    if isinstance(value, str):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [text for item in items for text in _fields(item)]


def _top_level_fields(template: str, package: str) -> set[str]:
    env = environment(package)
    source = env.loader.get_source(env, template)[0]
    return jinja2.meta.find_undeclared_variables(env.parse(source)) - {"table"}


@pytest.mark.parametrize("template", list(PAGES))
def test_markup_in_every_field_of_a_page_comes_out_as_text(template):
    package, context = PAGES[template]
    assert _top_level_fields(template, package) == set(context)  # the context fills every field
    page = render(template, package, **context)
    assert "<x-mark" not in page and "</x-mark>" not in page
    for text in _fields(context):
        assert str(markupsafe.escape(text)) in page, text


def test_the_viewer_escapes_its_title_and_details_and_hands_its_data_to_the_script_as_json():
    title, details = _markup("title"), [_markup("details 1"), _markup("details 2")]
    data = {"classes": [_markup("class"), "</script><script>alert(1)</script>"],
            "videos": [{"id": _markup("video"), "missing": _markup("missing"),
                        "captions": [[0.0, 1.0, "</script><!--" + _markup("caption")]]}], "page_size": 20}
    context = {"title": title, "details": details, "data": data}
    assert _top_level_fields("viewer.html", "t3al.localize") == set(context)
    page = render("viewer.html", "t3al.localize", **context)
    assert "<x-mark" not in page and "<!--" not in page and "alert(1)</script>" not in page
    assert page.count(str(markupsafe.escape(title))) == 2  # <title> and <h1>
    for line in details:
        assert f'<p class="details">{markupsafe.escape(line)}</p>' in page
    script = re.search(r'<script id="t3al-data" type="application/json">(.*?)</script>', page, re.S).group(1)
    assert "<" not in script and ">" not in script and "&" not in script
    assert json.loads(script) == data
