"""A griffe extension for the API reference (``mkdocs.yml``): ``Example:`` sections as examples.

The package's docstrings head their doctests ``Example:`` (Google style, as ruff's pydocstyle
rules accept). griffe reads only ``Examples:`` as an examples section and would render the
singular as an admonition of plain Markdown, where a doctest's output such as ``['a', 'b']``
reads as a link. This extension renames the heading before the docstring is parsed; the
package's sources are not changed.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_HEADING = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Rename every docstring's ``Example:`` heading to ``Examples:``."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite the docstring of ``obj`` (called for every object griffe loads)."""
        if obj.docstring is not None:
            obj.docstring.value = _HEADING.sub(r"\1Examples:", obj.docstring.value)
