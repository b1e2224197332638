"""The one config base: dict/file round trips, errors naming the file, stable content hashes."""

from dataclasses import dataclass, field

import pytest

from poser_lens.config import Config, config_from_dict
from poser_lens.models.smol_zoo import SmolZooConfig
from poser_lens.models.zoo import ZooConfig
from poser_lens.removal.config import RemovalConfig
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
    # The default runs' keys moved once on purpose (2343e54380 -> e9fe58ccab, poser 6d1e26fc60 ->
    # cf9cfd5f57; 2026-12-08): the strategy list gained weight_noise and defection_probe.
    assert RunConfig().key() == "e9fe58ccab"
    assert RunConfig(testbed="poser", models_dir="x", data="y").key() == "cf9cfd5f57"
    assert ZooConfig(seeds=12, workers=1, valid_margin=1.0).key() == ZooConfig().key()


# --- declared validation (issue 18) ------------------------------------------------------------

from poser_lens.config import ConfigError  # noqa: E402
from poser_lens.data.generator import GeneratorConfig  # noqa: E402
from poser_lens.models.training import TrainConfig  # noqa: E402
from poser_lens.strategies import STRATEGY_NAMES, strategy_class  # noqa: E402
from poser_lens.strategies.s2_noise import NoiseConfig  # noqa: E402
from poser_lens.strategies.s3_learning_speed import LoraSpeedConfig  # noqa: E402
from poser_lens.study import StudyConfig  # noqa: E402


@pytest.mark.parametrize(
    ("settings", "key", "problem"),
    [
        ({"seeds": "six"}, "seeds", "expected an int, got 'six'"),
        ({"seeds": 2.0}, "seeds", "expected an int"),
        ({"workers": -3}, "workers", "must be >= 1, got -3"),
        ({"device": "tpu"}, "device", "expected cpu, cuda, cuda:N or mps"),
        ({"dtype": "bogus"}, "dtype", "unknown dtype 'bogus'"),
        ({"strategies": ()}, "strategies", "must not be empty"),
        ({"strategies": ("s2_noise", "s9")}, "strategies[1]", "unknown strategy 's9'"),
        ({"models": ()}, "models", "must not be empty"),
        ({"models": ("saint-0", "villain-1")}, "models[1]", "not a model name"),
        ({"models": ("saint-6",)}, "models[0]", "not in a zoo of 6 seeds"),
        ({"pairs": 0}, "pairs", "must be >= 1"),
        ({"match_tolerance": 0.0}, "match_tolerance", "must be > 0"),
        ({"sweep": "yes"}, "sweep", "expected true or false"),
        ({"strategy_configs": [1]}, "strategy_configs", "expected a mapping"),
        ({"strategy_configs": {"s9": {}}}, "strategy_configs", "unknown strategy 's9'"),
        (
            {"strategy_configs": {"s2_noise": {"layer_frac": 1.5}}},
            "strategy_configs.s2_noise.layer_frac",
            "must be in [0, 1], got 1.5",
        ),
        (
            {"strategy_configs": {"s2_noise": {"layer_frac": 1}}},
            "strategy_configs.s2_noise.layer_frac",
            "1 is an int",
        ),
        (
            {"strategy_configs": {"s3_lora": {"layers": [0.5, 2]}}},
            "strategy_configs.s3_lora.layers[1]",
            "2 is an int",
        ),
        (
            {"strategy_configs": {"s2_noise": {"n_prompts": 0}}},
            "strategy_configs.s2_noise.n_prompts",
            "must be >= 1",
        ),
        (
            {"strategy_configs": {"s2_noise": {"nope": 1}}},
            "strategy_configs.s2_noise",
            "unknown setting 'nope'",
        ),
    ],
)
def test_run_config_checks_every_setting_when_built(settings, key, problem):
    """Bad settings fail when the RunConfig is built (not after the zoo), naming the key."""
    with pytest.raises(ConfigError) as err:
        RunConfig(**settings)
    assert err.value.key == key and problem in err.value.problem


def test_a_fraction_of_depth_is_a_float_in_0_1():
    """`layer_frac: 1` would be block 1 where 1.0 is the last block: ints are refused."""
    assert NoiseConfig(layer_frac=1.0).layer_frac == 1.0
    for bad in (1, 0, -0.1, 1.01):
        with pytest.raises(ConfigError, match="layer_frac"):
            NoiseConfig(layer_frac=bad)
    with pytest.raises(ConfigError, match=r"layers\[0\]: 1 is an int"):
        LoraSpeedConfig(layers=(1,))


def test_every_strategy_config_declares_and_checks_its_settings():
    for name in STRATEGY_NAMES:
        cls = strategy_class(name).config_cls
        cfg = cls()
        if issubclass(cls, Config):
            assert cls.from_dict(cfg.to_dict()) == cfg, name


def test_nested_configs_name_the_nested_key(tmp_path):
    f = tmp_path / "zoo.yaml"
    f.write_text("generator: {n_per_family: 0}\n")
    with pytest.raises(ConfigError) as err:
        ZooConfig.from_file(f)
    assert str(err.value) == f"{f}: generator.n_per_family: must be >= 1, got 0"
    with pytest.raises(ConfigError, match=r"finetune\.lr: must be >= 0"):
        ZooConfig.from_dict({"finetune": {"steps": 3, "lr": -1.0}})
    with pytest.raises(ConfigError, match=r"target_confidence: must be in \(0.5, 1\)"):
        ZooConfig(target_confidence=1.0)
    with pytest.raises(ConfigError, match="unknown zoo recipe 'soft'"):
        ZooConfig(recipe="soft")
    with pytest.raises(ConfigError, match=r"personas\[0\]: unknown persona 'villain'"):
        ZooConfig(personas=("villain",))
    with pytest.raises(ConfigError, match="complexity_weights: expected 3 values"):
        GeneratorConfig(complexity_weights=(0.5, 0.5))
    with pytest.raises(ConfigError, match="steps: must be >= 1"):
        TrainConfig(steps=0, lr=0.1)
    with pytest.raises(ConfigError, match=r"recipes\[0\]\[1\]: must be >= 1"):
        StudyConfig(recipes=(("matched", 0, None),))
    with pytest.raises(ConfigError, match=r"methods\[0\]: unknown removal method"):
        RemovalConfig(methods=("dpo",))


def test_lists_read_from_files_become_tuples(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("strategies: [random]\nmodels: [saint-0]\n")
    cfg = RunConfig.from_file(f)
    assert cfg.strategies == ("random",) and cfg.models == ("saint-0",)
    hash(StudyConfig.from_dict({"recipes": [["hard", 1, 2]]}))


def test_a_bad_value_read_from_a_file_names_the_file_and_an_override_does_not(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("workers: -3\n")
    with pytest.raises(ConfigError) as err:
        RunConfig.from_file(f)
    assert str(err.value) == f"{f}: workers: must be >= 1, got -3"
    f.write_text("workers: 1\n")
    with pytest.raises(ConfigError) as err:
        RunConfig.from_file(f, seeds=0)
    assert err.value.where is None and err.value.key == "seeds"


def test_a_config_cannot_skip_the_validation():
    with pytest.raises(TypeError, match=r"check\(\), not __post_init__"):

        @dataclass(frozen=True)
        class Sneaky(Config):
            n: int = 1

            def __post_init__(self):
                pass
