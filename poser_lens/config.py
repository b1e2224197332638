"""Typed configs: one base class for every config that is saved beside its results.

A config is a frozen dataclass deriving from :class:`Config`. The base gives it, in one place:

* :meth:`Config.to_dict` / :meth:`Config.from_dict`: a JSON/YAML round trip (nested configs
  included; lists become tuples where the default is a tuple; unknown keys fail, naming the
  config and the key);
* :meth:`Config.from_file`: settings from a YAML or JSON file, merged over the defaults
  (nested mappings merge key by key), with overrides; every error names the file;
* :meth:`Config.key`: a content hash of the settings that change results (``KEY_EXCLUDE``
  names the others; ``KEY_FORMAT`` is mixed in, so a format bump invalidates old caches).

Example:
    >>> from dataclasses import dataclass, field
    >>> @dataclass(frozen=True)
    ... class Inner(Config):
    ...     lr: float = 0.1
    >>> @dataclass(frozen=True)
    ... class Outer(Config):
    ...     KEY_EXCLUDE = ("workers",)
    ...     inner: Inner = field(default_factory=Inner)
    ...     names: tuple[str, ...] = ("a",)
    ...     workers: int = 2
    >>> cfg = Outer.from_dict({"inner": {"lr": 0.5}, "names": ["b", "c"]})
    >>> cfg
    Outer(inner=Inner(lr=0.5), names=('b', 'c'), workers=2)
    >>> Outer.from_dict(cfg.to_dict()) == cfg
    True
    >>> cfg.key() == Outer.from_dict({**cfg.to_dict(), "workers": 8}).key()
    True
    >>> Outer.from_dict({"inner": {"lr": 1, "steps": 3}})
    Traceback (most recent call last):
    ...
    ValueError: Inner: unknown setting 'steps' (known: lr)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

C = TypeVar("C", bound="Config")
T = TypeVar("T")


def normalised(obj: Any) -> Any:
    """``obj`` as JSON would give it back (tuples become lists)."""
    return json.loads(json.dumps(obj))


def _field_default(f: dataclasses.Field[Any]) -> Any:
    """A dataclass field's default value (None when it has none)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def config_from_dict(cls: type[T], d: Mapping[str, Any]) -> T:
    """Build the config dataclass ``cls`` from a plain dict.

    Nested dataclass fields are built from nested dicts; lists become tuples where the
    default is a tuple (so YAML round trips keep hashability); unknown keys fail.

    Raises:
        ValueError: Naming the config class and the first unknown key.

    Example:
        >>> @dataclasses.dataclass(frozen=True)
        ... class C:
        ...     xs: tuple[int, ...] = (1,)
        >>> config_from_dict(C, {"xs": [2, 3]})
        C(xs=(2, 3))
        >>> config_from_dict(C, {"y": 1})
        Traceback (most recent call last):
        ...
        ValueError: C: unknown setting 'y' (known: xs)
    """
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = [k for k in d if k not in known]
    if unknown:
        raise ValueError(
            f"{cls.__name__}: unknown setting {unknown[0]!r} (known: {', '.join(known)})"
        )
    out = {}
    for k, v in d.items():
        default = _field_default(known[k])
        if dataclasses.is_dataclass(default) and isinstance(v, Mapping):
            nested: type[Any] = type(default)
            v = config_from_dict(nested, v)
        elif isinstance(v, list) and (
            isinstance(default, tuple) or (default is None and "tuple" in str(known[k].type))
        ):
            v = tuple(tuple(x) if isinstance(x, list) else x for x in v)
        out[k] = v
    return cls(**out)


def _merge(
    path: Path, config: Any, base: dict[str, Any], update: Mapping[str, Any], where: str
) -> None:
    """Merge ``update`` into ``base`` (``config`` as a dict) in place.

    Nested configs merge key by key; other values (mappings included) are replaced.
    """
    for key, value in update.items():
        if key not in base:
            raise ValueError(f"{path}: unknown setting {where}{key}")
        sub = getattr(config, key)
        if dataclasses.is_dataclass(sub) and isinstance(value, Mapping):
            _merge(path, sub, base[key], value, f"{where}{key}.")
        else:
            base[key] = value


@dataclasses.dataclass(frozen=True)
class Config:
    """Base of poser_lens's typed configs (see the module docstring).

    Class attributes (not settings):
        KEY_EXCLUDE: Fields that do not change results, left out of :meth:`key`.
        KEY_FORMAT: Mixed into :meth:`key` as ``format`` when not None.
        KEY_LENGTH: Hex digits of :meth:`key`.
    """

    KEY_EXCLUDE: ClassVar[tuple[str, ...]] = ()
    KEY_FORMAT: ClassVar[int | None] = None
    KEY_LENGTH: ClassVar[int] = 12

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON data (nested configs as dicts, tuples as lists)."""
        return normalised(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls: type[C], d: Mapping[str, Any]) -> C:
        """Inverse of :meth:`to_dict` (missing keys take their defaults)."""
        return config_from_dict(cls, d)

    @classmethod
    def from_file(cls: type[C], path: str | Path, **overrides: Any) -> C:
        """Settings from a YAML/JSON file (e.g. a saved ``config.yaml``) plus overrides.

        The file holds (possibly nested, possibly partial) overrides of the defaults.

        Raises:
            ValueError: Naming the file, when it cannot be read, is not a mapping, or holds
                an unknown key or a bad value.
        """
        import yaml

        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ValueError(f"{path}: cannot read {cls.__name__} ({err})") from err
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a {cls.__name__} file must be a mapping of settings")
        defaults = cls()
        merged = defaults.to_dict()
        _merge(path, defaults, merged, {**loaded, **normalised(overrides)}, "")
        try:
            return cls.from_dict(merged)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: bad {cls.__name__} ({err})") from err

    def key_dict(self) -> dict[str, Any]:
        """The settings :meth:`key` hashes (override to drop settings conditionally)."""
        d = self.to_dict()
        for k in self.KEY_EXCLUDE:
            d.pop(k)
        if self.KEY_FORMAT is not None:
            d["format"] = self.KEY_FORMAT
        return d

    def key(self) -> str:
        """Content hash of the settings that change results (names cache and run folders)."""
        text = json.dumps(self.key_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[: self.KEY_LENGTH]
