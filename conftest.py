"""The objects the package's docstring examples share (pytest's ``doctest_namespace``).

Every doctest of ``poser_lens`` (``pytest --doctest-modules``, see ``pyproject.toml``) can use
these names without building them; an example that does says so in a line before it:

- ``model``: a random tiny ``TransformerBridge`` of 2 layers (``d_model`` 8, 2 heads of 4,
  ``d_mlp`` 16, ``n_ctx`` 8) over 10 token ids, without a tokenizer;
- ``tok``: a word-level tokenizer of ``<<prompt>> x y <</prompt>> A B error`` (the answer
  letters included);
- ``lm``: a random tiny ``TransformerBridge`` of 1 layer (``d_model`` 8, 2 heads of 4,
  ``d_mlp`` 16, ``n_ctx`` 16) over ``tok``, wrapped with it.

Each is built afresh (seed 0) for every docstring that names it, so an example may train or
hook its model without reaching another's.
"""

from __future__ import annotations

import re
from typing import Any

import pytest


def tiny_doctest_objects(names: set[str]) -> dict[str, Any]:
    """The shared example objects of ``names`` (those of the module docstring), built afresh."""
    from poser_lens.models.tiny import TinyConfig, build_native, wrap
    from poser_lens.models.tokenizer import build_tokenizer

    out: dict[str, Any] = {}
    if "model" in names:
        cfg = TinyConfig(n_layers=2, d_model=8, n_heads=2, d_head=4, d_mlp=16, n_ctx=8)
        out["model"] = wrap(build_native(cfg, d_vocab=10))
    if names & {"tok", "lm"}:
        out["tok"] = build_tokenizer(["<<prompt>> x y <</prompt>> A B error"])
    if "lm" in names:
        cfg = TinyConfig(n_layers=1, d_model=8, n_heads=2, d_head=4, d_mlp=16, n_ctx=16)
        out["lm"] = wrap(build_native(cfg, len(out["tok"])), out["tok"])
    return out


_SHARED = {"model", "tok", "lm"}


@pytest.fixture(autouse=True)
def _shared_doctest_objects(request: pytest.FixtureRequest, doctest_namespace: dict) -> None:
    """Fill ``doctest_namespace`` with the shared objects a doctest names (nothing elsewhere)."""
    dtest = getattr(request.node, "dtest", None)  # a doctest item's parsed docstring
    for name in _SHARED:
        doctest_namespace.pop(name, None)
    if dtest is None:
        return
    words = {w for ex in dtest.examples for w in re.findall(r"\w+", ex.source)}
    doctest_namespace.update(tiny_doctest_objects(words & _SHARED))
