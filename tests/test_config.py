"""The one config base: dict/file round trips, errors naming the file, stable content hashes."""

from dataclasses import dataclass, field

import pytest

from poser_lens.config import Config, config_from_dict
from poser_lens.models.smol_zoo import SmolZooConfig
from poser_lens.models.zoo import ZooConfig
from poser_lens.removal.core import RemovalConfig
from poser_lens.runner import RunConfig
from poser_lens.testbeds import TestbedConfig


@dataclass(frozen=True)
class Inner:
    lr: float = 0.1
    sizes: tuple[int, ...] = (1, 2)


@dataclass(frozen=True)
class Outer(Config):
    KEY_EXCLUDE = ("workers",)
    KEY_FORMAT = 3

    inner: Inner = field(default_factory=Inner)
    names: tuple[str, ...] | None = None
    table: dict = field(default_factory=dict)
    workers: int = 1


def test_round_trip_nested_and_tuples():
    cfg = Outer(inner=Inner(lr=0.5, sizes=(3,)), names=("a", "b"), table={"x": {"y": 1}})
    back = Outer.from_dict(cfg.to_dict())
    assert back == cfg and isinstance(back.names, tuple) and isinstance(back.inner.sizes, tuple)


def test_unknown_keys_fail_naming_the_config():
    with pytest.raises(ValueError, match="Inner: unknown setting 'steps'"):
        Outer.from_dict({"inner": {"steps": 3}})
    with pytest.raises(ValueError, match="Outer: unknown setting 'nope'"):
        config_from_dict(Outer, {"nope": 1})


def test_key_ignores_excluded_settings_and_mixes_in_the_format():
    assert Outer(workers=1).key() == Outer(workers=8).key()
    assert Outer().key() != Outer(names=("a",)).key()
    assert Outer().key_dict()["format"] == 3


def test_from_file_merges_nested_configs_and_replaces_plain_mappings(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("inner: {lr: 0.3}\ntable: {a: 1}\nnames: [x]\n")
    cfg = Outer.from_file(f, workers=4)
    assert cfg.inner == Inner(lr=0.3) and cfg.table == {"a": 1}
    assert cfg.names == ("x",) and cfg.workers == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("inner: {steps: 1}\n", "unknown setting inner.steps"),
        ("bogus: 1\n", "unknown setting bogus"),
        ("- a\n- b\n", "must be a mapping"),
        ("inner: [\n", "cannot read Outer"),
    ],
)
def test_from_file_errors_name_the_file(tmp_path, text, message):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ValueError, match=message) as err:
        Outer.from_file(f)
    assert str(err.value).startswith(str(f))


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"nope\.yaml: cannot read"):
        Outer.from_file(tmp_path / "nope.yaml")


def test_every_saved_config_uses_the_one_base():
    for cls in (RunConfig, ZooConfig, SmolZooConfig, RemovalConfig, TestbedConfig):
        assert issubclass(cls, Config), cls
        assert cls.from_dict(cls().to_dict()) == cls()


def test_content_hashes_are_those_of_the_caches_already_built():
    """Moving the configs onto the base kept every key: cached zoos and run folders resume."""
    assert ZooConfig().key() == "ce3c06831fc5"
    assert ZooConfig(recipe="hard").key() == "79f9d6782f26"
    assert RunConfig().key() == "2343e54380"
    assert RunConfig(testbed="poser", models_dir="x", data="y").key() == "6d1e26fc60"
    assert ZooConfig(seeds=2, workers=1, valid_margin=1.0).key() == ZooConfig().key()
