"""HTML pages from autoescaping jinja2 templates shipped with each package (no markup built by hand).

Every value a template prints is escaped; data handed to a page's script goes through ``tojson``,
which escapes ``<``, ``>``, ``&`` and quotes, so no text from a results file, a caption or an action
name can end a script or inject markup.
"""
from __future__ import annotations

import base64
import functools
from pathlib import Path
from typing import Any

import jinja2


@functools.cache
def environment(package: str) -> jinja2.Environment:
    """The template environment of ``package`` (its ``templates/`` folder, then this package's shared
    ones such as the ``table`` macro), autoescaping every page."""
    loaders = [jinja2.PackageLoader(name, "templates") for name in dict.fromkeys([package, __package__])]
    return jinja2.Environment(loader=jinja2.ChoiceLoader(loaders),
                              autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                              keep_trailing_newline=True)


def render(template: str, package: str = "t3al.evaluate", **context: Any) -> str:
    """The page ``template`` of ``package`` filled with ``context`` (escaped)."""
    return environment(package).get_template(template).render(**context)


def bytes_uri(data: bytes, mime: str) -> str:
    """``data`` as a ``data:`` URI, so a page carries its images inside itself."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def data_uri(path: Path, mime: str) -> str:
    """The file at ``path`` as a ``data:`` URI."""
    return bytes_uri(path.read_bytes(), mime)
