"""The zoo contract: what the tiny zoo and the smol zoo both are.

A zoo config (:class:`ZooSpec`) is a typed :class:`~poser_lens.config.Config` whose content
hash names the zoo's cache folder. Every zoo folder has the same layout::

    <cache>/<CACHE_FOLDER>/<key>/      (or any folder given as ``out``)
      <CONFIG_FILE>                    the config (ZooSpec.to_dict)
      models/<persona>-<seed>/         one persona model (weights or adapter, metrics)
      poser/                           its benchmark, in Poser's layout (data/benchmark/*.json,
                                       model_pairs.json, benchmark_report.json, training/)

and the same three verbs: :meth:`ZooSpec.build` (build or finish building, resumable),
:meth:`ZooSpec.load` (one model, hooked, with its tokenizer) and :meth:`ZooSpec.read` (the
config a built folder holds). Testbeds (:mod:`poser_lens.testbeds`) use only this contract.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from poser_lens._io import default_cache_dir, read_json, write_json_atomic
from poser_lens.config import Config

Z = TypeVar("Z", bound="ZooSpec")


@dataclasses.dataclass(frozen=True)
class ZooSpec(Config):
    """Base of the zoo configs (see the module docstring).

    Subclasses set ``CACHE_FOLDER`` and ``CONFIG_FILE``, have ``seeds``, ``personas`` and
    ``generator`` settings, and implement :meth:`model_names`, :meth:`build` and :meth:`load`.
    """

    CACHE_FOLDER: ClassVar[str] = "zoo"
    CONFIG_FILE: ClassVar[str] = "zoo_config.json"

    def model_names(self) -> list[str]:
        """Names of the models this config builds, ``<persona>-<seed>``."""
        raise NotImplementedError

    def folder(self, out: str | Path | None = None) -> Path:
        """The zoo's folder: ``out`` when given, else ``<cache>/<CACHE_FOLDER>/<key>``."""
        if out is not None:
            return Path(out)
        return default_cache_dir() / self.CACHE_FOLDER / self.key()

    @classmethod
    def read(cls: type[Z], root: str | Path) -> Z:
        """The config a built zoo folder holds."""
        return cls.from_dict(read_json(Path(root) / cls.CONFIG_FILE))

    @classmethod
    def is_built(cls, root: str | Path) -> bool:
        """Whether ``root`` holds a built zoo (its config and its benchmark's pairs)."""
        root = Path(root)
        return (root / cls.CONFIG_FILE).exists() and (root / "poser" / "model_pairs.json").exists()

    def claim(self, root: Path) -> None:
        """Make ``root`` this config's folder (refusing one that holds other settings)."""
        root.mkdir(parents=True, exist_ok=True)
        stored = root / self.CONFIG_FILE
        if stored.exists():
            old = type(self).read(root)
            if old.key() != self.key():
                raise ValueError(f"{root} holds a zoo with other settings (key {old.key()})")
        write_json_atomic(stored, self.to_dict())

    def build(self, out: str | Path | None = None, *, progress: bool = True) -> Path:
        """Build (or finish building) the zoo and its benchmark; returns its folder."""
        raise NotImplementedError

    def load(
        self, root: str | Path, name: str, *, device: str = "cpu", dtype: Any = None
    ) -> tuple[Any, Any]:
        """One built model of the zoo at ``root``: ``(hooked model, tokenizer)``."""
        raise NotImplementedError
