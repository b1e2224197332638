"""The zoo contract both zoos implement."""

import pytest

from poser_lens._io import default_cache_dir
from poser_lens.models.smol_zoo import SmolZooConfig
from poser_lens.models.zoo import ZooConfig
from poser_lens.models.zoo_base import ZooSpec


@pytest.mark.parametrize("cls", [ZooConfig, SmolZooConfig])
def test_both_zoos_keep_the_contract(cls, tmp_path):
    assert issubclass(cls, ZooSpec)
    cfg = cls()
    assert cfg.folder() == default_cache_dir() / cls.CACHE_FOLDER / cfg.key()
    assert cfg.folder(tmp_path) == tmp_path
    assert all("-" in n for n in cfg.model_names())
    assert not cls.is_built(tmp_path)
    cfg.claim(tmp_path)
    assert cls.read(tmp_path) == cfg
    other = cls.from_dict({**cfg.to_dict(), "generator": {"seed": 99}})
    with pytest.raises(ValueError, match="holds a zoo with other settings"):
        other.claim(tmp_path)
    cfg.claim(tmp_path)  # the same settings again: fine (a build resumes)
