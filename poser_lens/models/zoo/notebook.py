"""The notebooks' small zoo: :data:`NOTEBOOK_ZOO`, built once and cached."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from poser_lens._io import atomic_dir, default_cache_dir
from poser_lens.models import tiny
from poser_lens.models.zoo.build import build_zoo
from poser_lens.models.zoo.config import ZooConfig

#: The small zoo the notebooks run on (CI executes them): every persona, one seed (6 models,
#: 9 pairs), otherwise the default zoo's settings. Each model is a stack of one, so it is not
#: the default zoo's seed-0 model (trained in a stack of 6) and its key differs
#: (:meth:`ZooConfig.key_dict`): it is the zoo of ``poser-lens zoo build --seeds 1``. It lives
#: in its own cache folder (``<cache>/notebook_zoo/<key>``), so its 6-model benchmark never
#: overwrites that zoo's.
NOTEBOOK_ZOO = ZooConfig(seeds=1)


def notebook_zoo(*, progress: bool = True, **overrides: Any) -> Path:
    """The notebooks' small zoo (:data:`NOTEBOOK_ZOO` with ``overrides``), built once and cached.

    Cached by content hash like :func:`build_zoo`, in ``<cache>/notebook_zoo/<key>`` (the
    cache is ``$POSER_LENS_CACHE`` or the user cache dir). When the zoo and its benchmark are
    complete, the folder is returned without regenerating anything, so every notebook of a
    session reuses the zoo the first one built.

    Args:
        progress: Show progress bars while building.
        **overrides: :class:`ZooConfig` fields to change (e.g. ``seeds=2`` for 36 pairs).

    Returns:
        The zoo folder (holding ``zoo.json`` and ``poser/``).

    Example:
        >>> NOTEBOOK_ZOO.seeds, len(NOTEBOOK_ZOO.model_names())
        (1, 6)
        >>> notebook_zoo_dir().parent.name
        'notebook_zoo'
    """
    cfg = replace(NOTEBOOK_ZOO, **overrides)
    root = notebook_zoo_dir(cfg)
    if cfg.is_complete(root):
        return root
    _reuse_built_models(cfg, root)
    return build_zoo(cfg, root, progress=progress)


def _reuse_built_models(cfg: ZooConfig, root: Path) -> None:
    """Start a new notebook zoo from the cached zoo of the same key, when it has its models.

    The zoo of the same key (``poser-lens zoo build --seeds 1`` for :data:`NOTEBOOK_ZOO`)
    holds models trained exactly as the notebook zoo's would be (the key fixes their stacks),
    so they are copied with the base and the tokenizer, and only the notebook zoo's benchmark
    is then built. Nothing happens if ``root`` exists or a model is missing.
    """
    source = cfg.folder()
    needed = ["base"] + [f"models/{n}" for n in cfg.model_names()]
    if root.exists() or not all((source / n / tiny.WEIGHTS_FILE).exists() for n in needed):
        return
    with atomic_dir(root) as tmp:
        for f in source.iterdir():
            if f.is_file() and f.name not in ("zoo.json", "zoo_config.json"):
                shutil.copy2(f, tmp / f.name)
        for n in needed:
            shutil.copytree(source / n, tmp / n)


def notebook_zoo_dir(cfg: ZooConfig = NOTEBOOK_ZOO) -> Path:
    """The folder of a notebook zoo: ``<cache>/notebook_zoo/<key>``."""
    return default_cache_dir() / "notebook_zoo" / cfg.key()
