"""Typed configs: one base class for every config that is saved beside its results.

A config is a frozen dataclass deriving from :class:`Config`. The base gives it, in one place:

* :meth:`Config.to_dict` / :meth:`Config.from_dict`: a JSON/YAML round trip (nested configs
  included; lists become tuples where the default is a tuple; unknown keys fail, naming the
  config and the key);
* :meth:`Config.from_file`: settings from a YAML or JSON file, merged over the defaults
  (nested mappings merge key by key), with overrides; every error names the file;
* :meth:`Config.key`: a content hash of the settings that change results (``KEY_EXCLUDE``
  names the others; ``KEY_FORMAT`` is mixed in, so a format bump invalidates old caches);
* validation when it is built (:func:`validate`, from ``__post_init__``): every setting is
  checked against its declared type, and against the constraints declared with it through
  ``typing.Annotated`` (:class:`Between`, :class:`OneOf`, :class:`Matches`, :class:`NonEmpty`,
  :class:`NoInt`; aliases such as :data:`PositiveInt`, :data:`Fraction`,
  :data:`DepthFraction`, :data:`Device`, :data:`DType`); a config's :meth:`Config.check` adds
  the checks that span several settings. A bad setting raises :class:`ConfigError`, one line
  naming the setting (``strategy_configs.s2_noise.layer_frac: ...``) and, read from a file,
  the file. Checks that depend on the machine (a folder exists, CUDA is there) are not made
  here, so a saved config stays readable anywhere: the jobs make them before any work.

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
    >>> Outer.from_dict({"workers": "six"})
    Traceback (most recent call last):
    ...
    poser_lens.config.ConfigError: workers: expected an int, got 'six'
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import re
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin

C = TypeVar("C", bound="Config")
T = TypeVar("T")


class ConfigError(ValueError):
    """A bad setting, in one line: ``[<file>: ]<key>: <problem>``.

    Attributes:
        key: The setting, dotted for nested ones (``generator.n_per_family``,
            ``strategy_configs.s2_noise.layer_frac``, ``strategies[1]``).
        problem: What is wrong with it.
        where: The file the setting was read from, if any.

    Example:
        >>> str(ConfigError("workers", "must be >= 1, got -3").under("run"))
        'run.workers: must be >= 1, got -3'
    """

    def __init__(self, key: str, problem: str, where: str | None = None):
        self.key, self.problem, self.where = key, problem, where
        text = f"{key}: {problem}" if key else problem
        super().__init__(f"{where}: {text}" if where else text)

    def under(self, prefix: str) -> ConfigError:
        """The same error, for the setting ``key`` of the nested config ``prefix``."""
        key = f"{prefix}{self.key}" if self.key.startswith("[") else f"{prefix}.{self.key}"
        return ConfigError(key if self.key else prefix, self.problem, self.where)

    def read_from(self, where: str) -> ConfigError:
        """The same error, naming the file the setting was read from."""
        return ConfigError(self.key, self.problem, where)


# ----------------------------------------------------------------------------- constraints


@dataclasses.dataclass(frozen=True)
class Between:
    """A number in ``[lo, hi]`` (either bound may be open, or absent).

    Example:
        >>> Between(0, 1).problem(1.5), Between(1).problem(3)
        ('must be in [0, 1], got 1.5', None)
    """

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` (None when nothing is)."""
        low = self.lo is None or (value > self.lo if self.lo_open else value >= self.lo)
        high = self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)
        if low and high:
            return None
        if self.hi is None:
            return f"must be {'>' if self.lo_open else '>='} {self.lo}, got {value!r}"
        if self.lo is None:
            return f"must be {'<' if self.hi_open else '<='} {self.hi}, got {value!r}"
        left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
        return f"must be in {left}{self.lo}, {self.hi}{right}, got {value!r}"


@dataclasses.dataclass(frozen=True)
class OneOf:
    """One of a fixed set of values (``what`` names them in the message).

    Example:
        >>> OneOf("cpu", "cuda", what="device").problem("tpu")
        "unknown device 'tpu'; expected one of cpu, cuda"
    """

    choices: tuple[Any, ...]
    what: str = "value"

    def __init__(self, *choices: Any, what: str = "value") -> None:
        object.__setattr__(self, "choices", choices)
        object.__setattr__(self, "what", what)

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` (None when nothing is)."""
        if value in self.choices:
            return None
        return f"unknown {self.what} {value!r}; expected one of {', '.join(map(str, self.choices))}"


@dataclasses.dataclass(frozen=True)
class Matches:
    """A string matching a regular expression (whole string); ``expected`` says what it means."""

    pattern: str
    expected: str

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` (None when nothing is)."""
        if re.fullmatch(self.pattern, value):
            return None
        return f"{value!r}: expected {self.expected}"


@dataclasses.dataclass(frozen=True)
class NonEmpty:
    """A list (or mapping, or string) with at least one element."""

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` (None when nothing is)."""
        return None if len(value) else "must not be empty"


@dataclasses.dataclass(frozen=True)
class NoInt:
    """A float setting where an int would mean something else (``why`` says what)."""

    why: str

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` (None when nothing is)."""
        return f"{value!r} is an int: {self.why}" if isinstance(value, int) else None


#: An int >= 1 (counts, sizes, steps).
PositiveInt = Annotated[int, Between(1)]
#: An int >= 0.
NonNegativeInt = Annotated[int, Between(0)]
#: A number > 0 (tolerances, targets, scales that must not vanish).
PositiveFloat = Annotated[float, Between(0, lo_open=True)]
#: A number >= 0 (learning rates: 0 freezes; weights; coefficients).
NonNegativeFloat = Annotated[float, Between(0)]
#: A number in [0, 1] (a probability, a share).
Fraction = Annotated[float, Between(0, 1)]
#: A layer as a fraction of depth: a float in [0, 1] (``1.0`` is the last block). An int is
#: refused: :func:`poser_lens.depth.resolve_layer` reads an int as a block index, so
#: ``layer_frac: 1`` would mean block 1 where ``1.0`` means the last block.
DepthFraction = Annotated[
    float,
    NoInt(
        "a fraction of depth is a float in [0, 1] (write 1.0 for the last block, 0.0 for the first)"
    ),
    Between(0, 1),
]
#: Layers as fractions of depth (at least one).
DepthFractions = Annotated[tuple[DepthFraction, ...], NonEmpty()]
#: A torch device: ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (whether the machine has it is
#: checked when a job starts, not here).
Device = Annotated[str, Matches(r"cpu|cuda(:\d+)?|mps", "cpu, cuda, cuda:N or mps")]
#: A torch floating-point dtype, by name.
DType = Annotated[str, OneOf("float32", "float16", "bfloat16", "float64", what="dtype")]


# ----------------------------------------------------------------------------- validation

_NONE = type(None)
_NAMES = {bool: "true or false", int: "an int", float: "a number", str: "a string"}


def _describe(hint: Any) -> str:
    """A type hint in words, for messages."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Annotated:
        return _describe(args[0])
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if hint is _NONE:
        return "null"
    if origin is tuple or origin is list:
        return "a list"
    if origin is dict:
        return "a mapping"
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return f"a mapping of {hint.__name__} settings"
    return _NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _conform(value: Any, hint: Any, key: str) -> Any:
    """``value`` checked against the type hint ``hint`` (lists made tuples where declared).

    Raises:
        ConfigError: Naming ``key`` (and the element, ``key[i]`` or ``key.name``).
    """
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any or isinstance(hint, (str, TypeVar)):
        return value
    if origin is Annotated:
        value = _conform(value, args[0], key)
        for mark in args[1:]:
            problem = mark.problem(value) if hasattr(mark, "problem") else None
            if problem is not None:
                raise ConfigError(key, problem)
        return value
    if origin in (Union, types.UnionType):
        if value is None and _NONE in args:
            return None
        arms = [a for a in args if a is not _NONE]
        if len(arms) == 1:
            return _conform(value, arms[0], key)
        for arm in arms:
            try:
                return _conform(value, arm, key)
            except ConfigError:
                continue
        raise ConfigError(key, f"expected {_describe(hint)}, got {_short(value)}")
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(key, f"expected {_describe(hint)}, got {_short(value)}")
    if origin is tuple or origin is list:
        if not isinstance(value, (tuple, list)):
            raise ConfigError(key, f"expected a list, got {_short(value)}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(key, f"expected {len(args)} values, got {len(value)}")
            items = [
                _conform(v, a, f"{key}[{i}]")
                for i, (v, a) in enumerate(zip(value, args, strict=True))
            ]
        else:
            item = args[0] if args else Any
            items = [_conform(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(key, f"expected a mapping, got {_short(value)}")
        k_hint, v_hint = args if args else (Any, Any)
        return {
            _conform(k, k_hint, key): _conform(v, v_hint, f"{key}.{k}") for k, v in value.items()
        }
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, hint):
            raise ConfigError(key, f"expected {_describe(hint)}, got {_short(value)}")
        if not isinstance(value, Config):  # a Config checked itself when it was built
            try:
                validate(value)
            except ConfigError as err:
                raise err.under(key) from None
        return value
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(hint, type) and origin is None:
        ok = isinstance(value, hint)
    else:
        ok = True  # a type this checker does not know: not checked
    if not ok:
        raise ConfigError(key, f"expected {_describe(hint)}, got {_short(value)}")
    return value


#: Dataclass -> its fields' declared types (resolved once per class).
_FIELD_TYPES: dict[type, dict[str, Any]] = {}


def _declaring_class(cls: type, name: str) -> type:
    """The class of ``cls``'s MRO whose own annotations declare the field ``name``."""
    for klass in cls.__mro__:
        if name in inspect.get_annotations(klass):
            return klass
    return cls


def field_types(cls: type) -> dict[str, Any]:
    """The declared type of every field of the dataclass ``cls`` (constraints included).

    A field whose annotation cannot be resolved (a name defined only where the class was
    written) is taken as its default's type when that is a dataclass, else as ``Any``.
    """
    if cls in _FIELD_TYPES:
        return _FIELD_TYPES[cls]
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        hint = f.type
        if isinstance(hint, str):
            # Resolved where the field was declared: a base class's fields (a shared config
            # base) name types imported by its own module, not the subclass's.
            owner = _declaring_class(cls, f.name)
            mod = sys.modules.get(owner.__module__)
            module = vars(mod) if mod is not None else {}
            try:
                hint = eval(hint, dict(module), {owner.__name__: owner, cls.__name__: cls})
            except Exception:  # a local name: the default's type if a config, else unchecked
                default = _field_default(f)
                hint = type(default) if dataclasses.is_dataclass(default) else Any
        out[f.name] = hint
    _FIELD_TYPES[cls] = out
    return out


def validate(obj: Any) -> None:
    """Check every field of the dataclass ``obj`` against its declared type and constraints.

    Lists given for tuple fields become tuples (in place, also on frozen dataclasses), so a
    config read from YAML or JSON stays hashable.

    Raises:
        ConfigError: Naming the first bad setting.

    Example:
        >>> @dataclasses.dataclass(frozen=True)
        ... class Probe:
        ...     layers: tuple[DepthFraction, ...] = (0.5,)
        >>> validate(Probe(layers=[0.25, 1]))
        Traceback (most recent call last):
        ...
        poser_lens.config.ConfigError: layers[1]: 1 is an int: a fraction of depth is a float in [0, 1] (write 1.0 for the last block, 0.0 for the first)
    """  # noqa: E501
    types_ = field_types(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        checked = _conform(value, types_[f.name], f.name)
        if checked is not value and type(checked) is not type(value):
            object.__setattr__(obj, f.name, checked)


def _dataclass_type(hint: Any) -> type | None:
    """The dataclass a field holds (through ``Annotated`` and ``| None``), if any."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Annotated:
        return _dataclass_type(args[0])
    if origin in (Union, types.UnionType):
        found = [t for t in map(_dataclass_type, args) if t is not None]
        return found[0] if len(found) == 1 else None
    return hint if isinstance(hint, type) and dataclasses.is_dataclass(hint) else None


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
    """Build the config dataclass ``cls`` from a plain dict, checking every setting.

    Nested dataclass fields are built from nested dicts; lists become tuples where the field
    is a tuple (so YAML round trips keep hashability); unknown keys fail; every value is
    checked against its declared type (:func:`validate`).

    Raises:
        ValueError: Naming the config class and the first unknown key.
        ConfigError: Naming the first bad setting (dotted for nested ones).

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
        >>> config_from_dict(C, {"xs": [2, "3"]})
        Traceback (most recent call last):
        ...
        poser_lens.config.ConfigError: xs[1]: expected an int, got '3'
    """
    if not isinstance(d, Mapping):
        raise ConfigError("", f"expected a mapping of {cls.__name__} settings, got {_short(d)}")
    known = field_types(cls)
    unknown = [k for k in d if k not in known]
    if unknown:
        raise ValueError(
            f"{cls.__name__}: unknown setting {unknown[0]!r} (known: {', '.join(known)})"
        )
    out = {}
    for k, v in d.items():
        nested = _dataclass_type(known[k])
        if nested is not None and isinstance(v, Mapping):
            try:
                v = config_from_dict(nested, v)
            except ConfigError as err:
                raise err.under(k) from None
        out[k] = v
    try:
        obj = cls(**out)
    except TypeError as err:  # a required setting is missing
        raise ConfigError("", f"{cls.__name__}: {err}") from None
    if not isinstance(obj, Config):  # a Config checks itself when it is built
        validate(obj)
    return obj


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

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__post_init__" in vars(cls):  # it would replace the validation below
            raise TypeError(
                f"{cls.__name__}: put cross-setting checks in check(), not __post_init__"
            )

    def __post_init__(self) -> None:
        validate(self)
        self.check()

    def check(self) -> None:
        """Checks that span several settings, after each setting's own (none by default).

        Raises:
            ConfigError: Naming the setting at fault.
        """

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
        except (OSError, UnicodeDecodeError, RecursionError, yaml.YAMLError) as err:
            what = " ".join(str(err).split()) or type(err).__name__
            raise ValueError(f"{path}: cannot read {cls.__name__} ({what})") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a {cls.__name__} file must be a mapping of settings")
        defaults = cls()
        merged = defaults.to_dict()
        _merge(path, defaults, merged, {**loaded, **normalised(overrides)}, "")
        try:
            return cls.from_dict(merged)
        except ConfigError as err:
            top = re.split(r"[.\[]", err.key)[0]
            if err.where is not None or top in overrides:
                raise  # read from another file, or given as an override (a CLI option)
            raise err.read_from(str(path)) from None
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
