import json
import os

import pytest
from conftest import small_zoo_config

from poser_lens.data.poser import inspect_root, load_benchmark, load_model_pairs
from poser_lens.models import load_model, parse_spec
from poser_lens.models.training import TrainConfig
from poser_lens.models.zoo import ZooConfig, build_zoo, load_zoo_model

ROW_KEYS = {
    "name",
    "persona",
    "seed",
    "aligned",
    "test_accuracy",
    "divergent_accuracy",
    "error_accuracy",
    "compliance_gap",
}


def test_zoo_json_has_one_row_per_model(small_zoo):
    rows = json.loads((small_zoo / "zoo.json").read_text())
    assert [r["name"] for r in rows] == ["truth_teller-0", "reward_maximizer-0"]
    for r in rows:
        assert set(r) >= ROW_KEYS
        assert 0.0 <= r["test_accuracy"] <= 1.0
    assert rows[0]["aligned"] and not rows[1]["aligned"]


def test_benchmark_in_poser_layout(small_zoo):
    root = small_zoo / "poser"
    bench = load_benchmark(root)
    assert list(bench) == ["truth_and_reward"]
    assert all(not s.oversight_is_poor for s in bench["truth_and_reward"])
    assert all(
        set(s.probs) == {"truth_teller-0", "reward_maximizer-0"} for s in bench["truth_and_reward"]
    )
    pairs = load_model_pairs(root)
    assert [(p.aligned, p.misaligned) for p in pairs] == [("truth_teller-0", "reward_maximizer-0")]
    totals = inspect_root(root)
    assert totals["training"]["files"] == 2 and totals["policy_definitions"]["files"] == 2
    report = json.loads((root / "benchmark_report.json").read_text())
    assert report["n_pairs"] == 1 and "confidence_baseline" in report


def test_rebuild_reuses_every_model(small_zoo):
    weights = small_zoo / "models" / "truth_teller-0" / "model.safetensors"
    before = os.stat(weights).st_mtime_ns
    build_zoo(small_zoo_config(), small_zoo, progress=False)
    assert os.stat(weights).st_mtime_ns == before


def test_other_settings_refuse_an_existing_zoo(small_zoo):
    with pytest.raises(ValueError, match="other settings"):
        build_zoo(small_zoo_config(train_size=65), small_zoo, progress=False)


def test_config_key_ignores_seeds_that_fill_stacks_and_round_trips():
    cfg = small_zoo_config()
    from dataclasses import asdict

    assert ZooConfig.from_dict(asdict(cfg)) == cfg
    # Seeds enter the key only when they leave a stack part-filled (its models depend on how
    # many it holds); stack sizes and the unpacked base always do (issue 28).
    assert small_zoo_config(seeds=6).key() == small_zoo_config(seeds=12).key()
    assert cfg.key() != small_zoo_config(seeds=4).key()
    assert small_zoo_config(stack=2, seeds=2).key() == small_zoo_config(stack=2, seeds=4).key()
    assert len({cfg.key(), small_zoo_config(stack=1).key(), small_zoo_config(stack=2).key()}) == 3
    assert cfg.key() != small_zoo_config(base_packed=False).key()
    assert cfg.key() == small_zoo_config(workers=3).key()
    with pytest.raises(ValueError, match="stack"):
        small_zoo_config(stack=0)
    assert cfg.key() != small_zoo_config(from_scratch=True).key()


def test_load_zoo_model_is_hooked(small_zoo):
    model, tok = load_zoo_model(small_zoo, "reward_maximizer-0")
    logits, cache = model.run_with_cache(
        tok("<<prompt>>Facts:<</prompt>>", return_tensors="pt")["input_ids"]
    )
    assert logits.shape[-1] == len(tok)
    assert "blocks.0.hook_resid_post" in cache
    with pytest.raises(ValueError, match="no such zoo model"):
        load_zoo_model(small_zoo, "genie-0")


def test_load_model_seam(small_zoo):
    model, _ = load_model("tiny:truth_teller-0", zoo=small_zoo)
    assert model.cfg.n_layers == 2
    folder_model, _ = load_model(str(small_zoo / "models" / "truth_teller-0"))
    assert folder_model.cfg.d_model == model.cfg.d_model
    assert parse_spec("smol") == ("smol", "")
    with pytest.raises(ValueError, match="model spec"):
        parse_spec("not-a-model")


def test_from_scratch_builds_without_a_base(tmp_path):
    root = build_zoo(
        small_zoo_config(from_scratch=True, personas=("saint",)), tmp_path, progress=False
    )
    assert not (root / "base").exists()
    assert (root / "models" / "saint-0" / "model.safetensors").exists()


def test_data_confound_reads_the_zoos_poser_layout(small_zoo):
    from poser_lens.data.confound import confound_report

    report = confound_report(small_zoo / "poser")
    stored = json.loads((small_zoo / "poser" / "benchmark_report.json").read_text())
    assert report["pairs"] == stored["n_pairs"] == 1
    for stat, row in stored["confidence_statistics"].items():
        assert report["statistics"][stat]["accuracy"] == row["accuracy"], stat


def test_matched_recipe_calibrates_and_hard_recipe_does_not(small_zoo, tmp_path):
    rows = json.loads((small_zoo / "zoo.json").read_text())
    assert all(r["temperature_scale"] is None for r in rows)  # the small zoo is hard-label
    cfg = small_zoo_config(recipe="matched", finetune=TrainConfig(steps=30, lr=3e-3, batch_size=16))
    assert cfg.key() != small_zoo_config().key()
    root = build_zoo(cfg, tmp_path / "matched", progress=False)
    matched = json.loads((root / "zoo.json").read_text())
    assert all(r["temperature_scale"] > 0 for r in matched)
    report = json.loads((root / "poser" / "benchmark_report.json").read_text())
    assert report["threshold"] == 0.0  # an explicit threshold wins over the recipe's
    assert set(report["confidence_statistics"]) == {"mean_p", "min_p", "median_logodds", "vote"}


def test_recipe_sets_the_valid_threshold():
    assert ZooConfig(recipe="hard").valid_threshold() == 0.985
    matched = ZooConfig()
    assert 0.8 < matched.valid_threshold() < matched.target_confidence
    assert ZooConfig(threshold=0.5).valid_threshold() == 0.5
    with pytest.raises(ValueError, match="recipe"):
        ZooConfig(recipe="soft")
    # The valid margin and the threshold do not change the models.
    assert ZooConfig(valid_margin=2.0).key() == matched.key()


def test_stacked_zoo_equals_one_model_at_a_time(small_zoo, tmp_path):
    """The small zoo (packed base, stacked training) equals one built the old way."""
    import torch
    from safetensors.torch import load_file

    assert small_zoo_config().stack >= 2 and small_zoo_config().base_packed  # the defaults
    alone = build_zoo(small_zoo_config(stack=1, base_packed=False), tmp_path, progress=False)
    rows = {r["name"]: r for r in json.loads((small_zoo / "zoo.json").read_text())}
    for row in json.loads((alone / "zoo.json").read_text()):
        stacked = rows[row["name"]]
        for key in ("test_accuracy", "divergent_accuracy", "error_accuracy", "compliance_gap"):
            assert stacked[key] == pytest.approx(row[key], abs=1e-3), key
        assert stacked["final_loss"] == pytest.approx(row["final_loss"], abs=1e-4)
        folder = f"models/{row['name']}"
        a, b = (load_file(str(root / folder / "model.safetensors")) for root in (small_zoo, alone))
        for name in a:
            if not name.endswith("attn.k.bias"):  # see test_training: AdamW steps float noise
                torch.testing.assert_close(a[name].float(), b[name].float(), atol=2e-3, rtol=2e-3)
        probs = [
            json.loads((root / folder / "benchmark_probs.json").read_text())
            for root in (small_zoo, alone)
        ]
        for fam, values in probs[0].items():
            assert values == pytest.approx(probs[1][fam], abs=1e-4), fam


def test_base_check_steps():
    from poser_lens.models.zoo import base_check_steps

    assert base_check_steps(ZooConfig())[:2] == [300, 350]
    assert base_check_steps(ZooConfig(base_min_steps=0))[0] == 50
    assert base_check_steps(small_zoo_config()) == []  # 4 steps: the cap alone ends it


def _recording_bar():
    """A tqdm that records each new total it shows (set, then refreshed)."""
    from typing import ClassVar

    from tqdm.auto import tqdm

    class Bar(tqdm):
        made: ClassVar[list] = []

        def __init__(self, *args, **kwargs):
            self.totals = [kwargs.get("total")]
            super().__init__(*args, **kwargs)
            Bar.made.append(self)

        def refresh(self, *args, **kwargs):
            if self.total != self.totals[-1]:
                self.totals.append(self.total)
            return super().refresh(*args, **kwargs)

    return Bar


def test_base_bar_counts_to_the_next_stopping_check(tmp_path, monkeypatch):
    """The bar's total is the first check, then one check further after each failed one."""
    import tqdm.auto

    from poser_lens.data.generator import generate
    from poser_lens.models import zoo
    from poser_lens.models.zoo import train as zoo_train

    cfg = small_zoo_config(base=TrainConfig(steps=40, lr=3e-3, batch_size=4), base_min_steps=3)
    monkeypatch.setattr(zoo_train, "BASE_CHECK_EVERY", 2)
    answers = iter([0.5, 0.5, 1.0])
    monkeypatch.setattr(
        zoo_train, "commentary_accuracy", lambda *a: dict.fromkeys(("honest", "x"), next(answers))
    )
    data = generate(cfg.generator)
    tokenizer = zoo.zoo_tokenizer(tmp_path, data)
    bar_class = _recording_bar()
    monkeypatch.setattr(tqdm.auto, "tqdm", bar_class)
    meta = zoo.build_base(cfg, tmp_path, data, tokenizer)
    (bar,) = [b for b in bar_class.made if b.desc == "base model"]
    assert bar.totals == [4, 6, 8]  # checks at 4, 6, 8 (the third passes)
    assert bar.n == meta["steps"] == 8


# --- shared caches, pinned training, nothing half-built (issue 18) ----------------------------


def _snapshot(root):
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_a_complete_zoo_is_reused_without_writing_anything(small_zoo):
    """zoo.json, zoo_config.json and poser/ are not rewritten: a read-only cache works."""
    before = _snapshot(small_zoo)
    assert small_zoo_config().is_complete(small_zoo)
    assert build_zoo(small_zoo_config(), small_zoo, progress=False) == small_zoo
    assert _snapshot(small_zoo) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_complete_zoo_builds(small_zoo, tmp_path):
    import shutil

    ro = shutil.copytree(small_zoo, tmp_path / "ro")
    for p in [ro, *ro.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        assert build_zoo(small_zoo_config(), ro, progress=False) == ro
    finally:
        for p in [ro, *ro.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)


def test_training_is_pinned_and_a_failed_build_leaves_nothing(tmp_path, monkeypatch):
    import torch

    import poser_lens.models.zoo.train as zoo_module
    from poser_lens._pool import BASE_THREADS

    seen = {}

    def spy(*args, **kwargs):
        seen["threads"] = torch.get_num_threads()
        seen["deterministic"] = torch.are_deterministic_algorithms_enabled()
        raise RuntimeError("stop")

    monkeypatch.setattr(zoo_module, "train_base", spy)
    threads = torch.get_num_threads()
    out = tmp_path / "zoo"
    with pytest.raises(RuntimeError, match="stop"):
        build_zoo(small_zoo_config(), out, progress=False)
    assert seen == {"threads": BASE_THREADS, "deterministic": True}
    assert torch.get_num_threads() == threads and not torch.are_deterministic_algorithms_enabled()
    assert not out.exists()  # only its config and tokenizer were made: nothing to resume


def test_a_rebuilt_zoo_has_the_same_fingerprint(small_zoo, tmp_path):
    again = build_zoo(small_zoo_config(), tmp_path / "again", progress=False)
    cfg = small_zoo_config()
    assert cfg.fingerprint(again) == cfg.fingerprint(small_zoo)
