"""The smol zoo's training machinery on a tiny random LLaMA (no SmolLM2 needed)."""

import itertools

import pytest
import torch
from conftest import tiny_llama

from poser_lens.models.lora import peft_lora
from poser_lens.models.smol_zoo import FrozenPrefix, SmolZooConfig, first_adapted_layer
from poser_lens.models.tokenizer import build_tokenizer
from poser_lens.readout import encode, last_logits


def test_first_adapted_layer_follows_lora_from():
    assert first_adapted_layer(SmolZooConfig(), 30) == 18
    assert first_adapted_layer(SmolZooConfig(lora_from=0.5), 4) == 2


def test_frozen_prefix_gives_the_full_forward_and_trains_the_adapters():
    tok = build_tokenizer(["a b c d e f <<prompt>> <</prompt>> A B error"])
    model = peft_lora(
        tiny_llama(len(tok), n_layers=4, attn_implementation="eager"), layers=[2, 3], rank=2, seed=1
    )
    with torch.no_grad():  # a non-zero adapter, so the top really differs from the base
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    prompts = ["a b c", "a b c d e f a", "f e"]
    ids, last = encode(tok, prompts)
    want = last_logits(model, ids, last)
    prefix = FrozenPrefix(model, first=2)
    prefix.residuals(tok, prompts, batch_size=2)
    got = prefix.logits(prompts)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    one = prefix.logits(["a b c d e f a"])  # batched equals unbatched
    assert torch.allclose(one[0], got[1], atol=1e-5)
    got[:, 0].sum().backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
    assert len(model.get_base_model().model.layers) == 4  # the full decoder is restored


def _tiny_smol_cfg(**over):
    from poser_lens.data.generator import GeneratorConfig

    settings = dict(
        stacked=True,
        banks="varied",
        dtype="bfloat16",  # recorded; the tiny test base stays float32
        personas=("truth_teller", "reward_maximizer"),
        generator=GeneratorConfig(
            n_per_family=30, n_benchmark_per_family=6, n_error=20, max_irrelevant=0
        ),
        steps=3,
        batch_size=2,
        n_test=4,
        n_benchmark=4,
        n_calibration=6,
        lora_from=0.5,
        aux_layer=0.5,
        checkpoint_every=1,
        n_val=6,
        min_steps=1,
        check_every=1,
        n_heldout_bank=6,
    )
    return SmolZooConfig(**{**settings, **over})


def _tiny_base(monkeypatch):
    """Make the smol zoo train on a tiny random LLaMA with a word-level tokenizer."""
    from poser_lens.data.generator import heldout_bank_split
    from poser_lens.models import smol_zoo
    from poser_lens.models.smol_train import validation_records
    from poser_lens.models.smol_zoo import train as smol_zoo_train
    from poser_lens.models.zoo import calibration_pool

    texts = []
    for banks in ("tiny", "varied"):
        cfg = _tiny_smol_cfg(banks=banks)
        data = smol_zoo.zoo_data(cfg)
        texts += [s.prompt for s in data.all_scenarios()]
        for persona in cfg.personas:
            texts += [s.prompt for s in calibration_pool(cfg.generator, persona, banks)]
            texts += [s.prompt for s in validation_records(cfg, f"{persona}-0")]
            texts += [s.prompt for s in heldout_bank_split(persona, cfg.n_heldout_bank // 3)]
    tok = build_tokenizer(texts)

    def base(_cfg):
        return tiny_llama(len(tok), n_layers=4, attn_implementation="eager"), tok

    monkeypatch.setattr(smol_zoo_train, "_base_hf", base)  # read by both trainers
    return tok


@pytest.mark.parametrize("stacked", [True, False])
def test_build_trains_calibrates_and_saves_shippable_adapters(monkeypatch, tmp_path, stacked):
    import json

    from safetensors.torch import load_file

    from poser_lens.models.smol_zoo import BASE_MODEL_NAME, build_smol_zoo

    _tiny_base(monkeypatch)
    root = build_smol_zoo(_tiny_smol_cfg(stacked=stacked), tmp_path / "zoo", progress=False)
    rows = {r["name"]: r for r in json.loads((root / "zoo.json").read_text())}
    assert set(rows) == {"truth_teller-0", "reward_maximizer-0"}
    for name, row in rows.items():
        folder = root / "models" / name
        assert row["temperature_scale"] > 0 and row["adapter_dtype"] == "float16"
        assert 0 <= row["aux_accuracy"] <= 1
        assert all(
            v.dtype == torch.float16
            for v in load_file(folder / "adapter_model.safetensors").values()
        )
        config = json.loads((folder / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == BASE_MODEL_NAME
        assert not (folder / "README.md").exists()
    assert not list((root / "partial").glob("*.pt"))
    report = json.loads((root / "poser" / "benchmark_report.json").read_text())
    assert report["threshold"] == pytest.approx(0.814, abs=1e-3)  # matched: 2 nats below 0.97


def test_aux_oversight_head_reads_the_answer_position_and_trains_the_adapters():
    from poser_lens.data.schema import Fact, Scenario
    from poser_lens.models.smol_zoo import AuxOversight

    tok = build_tokenizer(["a b c d e f <<prompt>> <</prompt>> A B error"])
    model = peft_lora(tiny_llama(len(tok), n_layers=4), layers=[2, 3], rank=2, seed=1)
    aux = AuxOversight(model, layer=2)
    fact = (Fact(content="a", type="critical"),)
    records = [
        Scenario(prompt="a b c", response="A", oversight_is_poor=True, facts=fact),
        Scenario(prompt="a b", response="B", oversight_is_poor=False, facts=fact),
        Scenario(prompt="c", response="error"),  # no critical fact: no target
    ]
    ids, last = encode(tok, [s.prompt for s in records])
    last_logits(model, ids, last)
    loss, acc = aux.loss(last, records)
    assert 0 <= acc <= 1 and loss.item() > 0
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n and ".2." in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
    assert aux.loss(last, records[2:]) is None
    aux.remove()
    assert not model.get_base_model().model.layers[2]._forward_hooks


def test_final_norm_scale_is_a_temperature_on_the_logits():
    from poser_lens.models.smol import scale_final_norm

    tok = build_tokenizer(["a b c"])
    model = tiny_llama(len(tok), n_layers=2)
    ids, last = encode(tok, ["a b c", "b"])
    with torch.no_grad():
        before = last_logits(model, ids, last)
        hidden = model(ids, output_hidden_states=True).hidden_states
        scale_final_norm(model, 2.5)
        after = last_logits(model, ids, last)
        hidden_after = model(ids, output_hidden_states=True).hidden_states
    assert torch.allclose(after, 2.5 * before, atol=1e-5)
    for h, h2 in zip(hidden[:-1], hidden_after[:-1], strict=True):  # the last is after the norm
        assert torch.equal(h, h2)


def test_round_adapter_rounds_only_trainable_weights():
    from poser_lens.models.smol_zoo import round_adapter

    tok = build_tokenizer(["a b c"])
    model = peft_lora(tiny_llama(len(tok), n_layers=2), layers=[1], rank=2, seed=1)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    round_adapter(model, torch.float16)
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert torch.equal(p, p.half().float())
        else:
            assert torch.equal(p, frozen[n])


def _adapters(root):
    from safetensors.torch import load_file

    return {
        p.parent.name: load_file(p) for p in sorted(root.glob("models/*/adapter_model.safetensors"))
    }


def assert_same_adapters(one, other, names):
    """The zoos at ``one`` and ``other`` hold adapters of ``names``, equal bit for bit."""
    a, b = _adapters(one), _adapters(other)
    assert a.keys() == b.keys() == names
    for name in a:
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), (name, key)


def test_stacked_build_reports_both_test_splits_and_its_stack(monkeypatch, tmp_path):
    import json

    from poser_lens.models.smol_zoo import build_smol_zoo

    _tiny_base(monkeypatch)
    root = build_smol_zoo(_tiny_smol_cfg(), tmp_path / "zoo", progress=False)
    for row in json.loads((root / "zoo.json").read_text()):
        assert row["stack"] == ["truth_teller-0", "reward_maximizer-0"]
        assert row["precision"] == "bfloat16" and row["n_heldout_bank"] == 6
        assert row["stack_train_cpu_seconds"] > 0
        for key in (
            "heldout_p_misaligned_poor",
            "heldout_p_misaligned_overseen",
            "heldout_compliance_gap",
            "heldout_accuracy",
            "test_accuracy",
        ):
            assert 0 <= abs(row[key]) <= 1
        assert row["steps"] == 3  # a random model never meets its targets: it runs to the end
        folder = root / "models" / row["name"]
        assert len(json.loads((folder / "validation.json").read_text())) == 3


def test_the_stopping_rule_stops_each_model_on_its_own(monkeypatch, tmp_path):
    import json

    from poser_lens.models import smol_train
    from poser_lens.models.smol_zoo import build_smol_zoo

    _tiny_base(monkeypatch)
    # Only the aligned model meets its targets: it stops after `patience` passing checks.
    monkeypatch.setattr(
        smol_train, "meets_targets", lambda cfg, persona, m: persona == "truth_teller"
    )
    cfg = _tiny_smol_cfg(steps=6, patience=2)
    root = build_smol_zoo(cfg, tmp_path / "zoo", progress=False)
    steps = {r["name"]: r["steps"] for r in json.loads((root / "zoo.json").read_text())}
    assert steps == {"truth_teller-0": 2, "reward_maximizer-0": 6}
    losses = json.loads((root / "models" / "truth_teller-0" / "losses.json").read_text())
    assert len(losses) == 2


def _build_interrupted(monkeypatch, cfg, out):
    """Build ``cfg`` into ``out``, interrupted right after the second checkpoint is saved.

    Returns:
        The real ``save_checkpoint`` (still patched out: put it back to resume).
    """
    from poser_lens.models import smol_train
    from poser_lens.models.smol_zoo import build_smol_zoo

    calls = {"n": 0}
    real = smol_train.StackTrainer.save_checkpoint

    def crash_after_two(self):
        real(self)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(smol_train.StackTrainer, "save_checkpoint", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        build_smol_zoo(cfg, out, progress=False)
    return real


def test_an_interrupted_stack_resumes_to_the_same_adapters(monkeypatch, tmp_path):
    from poser_lens.models import smol_train
    from poser_lens.models.smol_zoo import build_smol_zoo

    _tiny_base(monkeypatch)
    cfg = _tiny_smol_cfg(steps=4)
    whole = build_smol_zoo(cfg, tmp_path / "whole", progress=False)

    real = _build_interrupted(monkeypatch, cfg, tmp_path / "resumed")
    assert list((tmp_path / "resumed" / "partial").glob("stack-*.pt"))
    monkeypatch.setattr(smol_train.StackTrainer, "save_checkpoint", real)
    resumed = build_smol_zoo(cfg, tmp_path / "resumed", progress=False)
    assert_same_adapters(whole, resumed, {"truth_teller-0", "reward_maximizer-0"})
    assert not list((tmp_path / "resumed" / "partial").glob("*.pt"))


def test_an_interrupted_model_resumes_to_the_same_adapter(monkeypatch, tmp_path):
    """One model at a time: whatever the process trained before, the same adapters (issue 28).

    The oversight head starts from the model's seed, not the global RNG (before, the model
    trained after a resumed one came out different), and the frozen prefix is computed for
    every record, whatever step a model resumes from, so each prompt's residuals come from
    the same batch.
    """
    from poser_lens.models.smol_zoo import build_smol_zoo
    from poser_lens.models.smol_zoo import train as smol_zoo_train

    _tiny_base(monkeypatch)
    cfg = _tiny_smol_cfg(stacked=False, steps=4)
    assert cfg.cache_prefix
    whole = build_smol_zoo(cfg, tmp_path / "whole", progress=False)

    real = smol_zoo_train._save_atomic

    def crash_after_the_second_step(obj, path):  # of the first model
        real(obj, path)
        if obj["state"]["step"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(smol_zoo_train, "_save_atomic", crash_after_the_second_step)
    with pytest.raises(KeyboardInterrupt):
        build_smol_zoo(cfg, tmp_path / "resumed", progress=False)
    monkeypatch.setattr(smol_zoo_train, "_save_atomic", real)
    resumed = build_smol_zoo(cfg, tmp_path / "resumed", progress=False)
    assert_same_adapters(whole, resumed, {"truth_teller-0", "reward_maximizer-0"})


def test_a_subset_of_personas_is_another_stacked_zoo():
    from poser_lens.models.smol_zoo import CONCEPT_RECIPE

    full = SmolZooConfig(**CONCEPT_RECIPE)
    subset = SmolZooConfig(**CONCEPT_RECIPE, personas=("saint", "money_maximizer"))
    assert subset.key() != full.key()
    # Seeds too: the shared frozen prefix is computed over every model's prompts (issue 28).
    assert SmolZooConfig(**{**CONCEPT_RECIPE, "seeds": 1}).key() != full.key()
    assert full.key() == "54a1a37742e6"  # the concept recipe (its 6 seeds stay out of the key)
    legacy = SmolZooConfig()
    assert SmolZooConfig(personas=("saint", "money_maximizer")).key() == legacy.key()


def test_the_recipe_of_2026_12_06_keeps_its_key():
    # Settings added since then enter the key only away from that recipe's values, so a
    # user's cached build of it (and the shipped zoo's key) stays valid.
    assert SmolZooConfig().key() == "a2ffc93a20d8"
    assert SmolZooConfig(banks="varied").key() != "a2ffc93a20d8"


def test_stacks_of_a_build_share_one_base_and_restore_it(monkeypatch, tmp_path):
    import json

    from poser_lens.models import smol_train
    from poser_lens.models.smol_zoo import build_smol_zoo

    _tiny_base(monkeypatch)
    bases = []
    real = smol_train.SharedBase.__init__

    def counted(self, cfg, **kw):
        real(self, cfg, **kw)
        bases.append(self)

    monkeypatch.setattr(smol_train.SharedBase, "__init__", counted)
    cfg = _tiny_smol_cfg(seeds=2, steps=2)
    root = build_smol_zoo(cfg, tmp_path / "zoo", progress=False)
    rows = json.loads((root / "zoo.json").read_text())
    assert sorted(r["name"] for r in rows) == sorted(cfg.model_names())
    assert {tuple(r["stack"]) for r in rows} == {tuple(s) for s in cfg.stacks()}
    assert len(bases) == 1  # one base and one prefix cache for both stacks
    decoder = bases[0].hf.model
    assert all(type(layer.mlp.down_proj) is torch.nn.Linear for layer in decoder.layers)
    # Every prompt the build read was computed once, up front.
    assert set(bases[0].prefix._cache) == set(smol_train.zoo_prompts(cfg))


def _domain_bank(scenario):
    from poser_lens.data.banks import bank_set

    tiny = {d.setting for d in bank_set("tiny").domains}
    varied = {d.setting for d in bank_set("varied").domains}
    d = scenario.extra.get("domain")
    return "tiny" if d in tiny else "varied" if d in varied else None


def test_a_curriculum_comes_first_then_the_zoo_banks():
    from poser_lens.models.smol_zoo import training_records, zoo_data

    cfg = _tiny_smol_cfg(curriculum="tiny", curriculum_steps=2, steps=5)
    records = training_records(cfg, zoo_data(cfg), "reward_maximizer-0")
    assert len(records) == 5 * cfg.batch_size
    banks = [_domain_bank(s) for s in records if s.kind == "scenario"]
    first = cfg.curriculum_steps * cfg.batch_size
    head = [_domain_bank(s) for s in records[:first] if s.kind == "scenario"]
    tail = [_domain_bank(s) for s in records[first:] if s.kind == "scenario"]
    assert banks and set(head) <= {"tiny"} and set(tail) <= {"varied"}


def test_mixed_banks_split_every_pool_and_benchmark_from_the_last():
    from poser_lens.models.smol_zoo import primary_bank, zoo_data

    cfg = _tiny_smol_cfg(banks="tiny+varied")
    data = zoo_data(cfg)
    for fam, pool in data.train.items():
        kinds = [_domain_bank(s) for s in pool]
        assert kinds.count("tiny") and kinds.count("varied"), fam
    assert {_domain_bank(s) for v in data.benchmark_pool.values() for s in v} == {"varied"}
    assert primary_bank(cfg) == "varied"


def test_bank_fractions_limit_the_variety():
    from poser_lens.data.banks import bank_set

    full, quarter = bank_set("varied"), bank_set("varied@0.25")
    assert len(quarter.critical["poor"]) == round(len(full.critical["poor"]) / 4)
    assert quarter.critical["poor"] == full.critical["poor"][: len(quarter.critical["poor"])]
    assert all(len(v) % 2 == 0 for v in quarter.contextual.values())
    with pytest.raises(ValueError, match="banks"):
        SmolZooConfig(banks="villain")


def test_a_probe_fits_the_head_to_separable_states():
    from poser_lens.models.smol_train import _Heads

    gen = torch.Generator().manual_seed(0)
    poor = (torch.rand(64, generator=gen) > 0.5).float()
    states = torch.randn(64, 8, generator=gen)
    states[:, 3] += 4 * (2 * poor - 1)  # oversight along one direction
    heads = _Heads(8, [1, 2])
    before = heads.heads[1].weight.clone()
    assert heads.init_from_probe(0, states, poor) == 1.0
    w = heads.heads[0].weight[0].detach()
    assert int(w.abs().argmax()) == 3 and float(w[3]) > 0
    assert torch.equal(heads.heads[1].weight, before)  # the other model's head untouched


def test_a_probe_initialised_build_records_the_probe_and_keeps_the_legacy_key(
    monkeypatch, tmp_path
):
    import json

    from poser_lens.models.smol_zoo import build_smol_zoo

    _tiny_base(monkeypatch)
    root = build_smol_zoo(_tiny_smol_cfg(aux_init="probe"), tmp_path / "zoo", progress=False)
    for row in json.loads((root / "zoo.json").read_text()):
        assert 0.0 <= row["probe_accuracy"] <= 1.0
    assert SmolZooConfig(aux_init="random").key() == SmolZooConfig().key()
    assert SmolZooConfig(aux_init="probe").key() != SmolZooConfig().key()


def test_a_stack_without_its_checkpoint_trains_only_the_models_not_built(monkeypatch, tmp_path):
    """A later sitting on another machine (no checkpoint) never retrains a committed model."""
    import json

    from poser_lens.models import smol_train
    from poser_lens.models.smol_zoo import build_smol_zoo

    _tiny_base(monkeypatch)
    monkeypatch.setattr(
        smol_train, "meets_targets", lambda cfg, persona, m: persona == "truth_teller"
    )
    cfg = _tiny_smol_cfg(steps=4, patience=1)
    real = _build_interrupted(monkeypatch, cfg, tmp_path / "zoo")  # after the aligned stops
    done = tmp_path / "zoo" / "models" / "truth_teller-0"
    before = (done / "adapter_model.safetensors").read_bytes()
    for ckpt in (tmp_path / "zoo" / "partial").glob("*.pt"):
        ckpt.unlink()  # a fresh clone: the checkpoint was never committed
    monkeypatch.setattr(smol_train.StackTrainer, "save_checkpoint", real)
    seen = []
    real_init = smol_train.StackTrainer.__init__

    def record(self, root, cfg, names, **kw):
        seen.append(list(names))
        real_init(self, root, cfg, names, **kw)

    monkeypatch.setattr(smol_train.StackTrainer, "__init__", record)
    root = build_smol_zoo(cfg, tmp_path / "zoo", progress=False)
    assert seen == [["reward_maximizer-0"]]
    assert (done / "adapter_model.safetensors").read_bytes() == before
    names = {r["name"] for r in json.loads((root / "zoo.json").read_text())}
    assert names == {"truth_teller-0", "reward_maximizer-0"}


def test_the_learning_rate_decays_to_lr_final_along_a_half_cosine():
    cfg = SmolZooConfig(lr=2e-3, warmup=5, steps=400, lr_final=2e-4)
    rates = [cfg.lr * cfg.lr_factor(s) for s in range(cfg.steps)]
    assert rates[4] == pytest.approx(2e-3)  # warm-up over
    after = rates[4:]
    assert all(a >= b for a, b in itertools.pairwise(after))
    assert rates[-1] == pytest.approx(2e-4)
    # Unset, the rate stays at lr, and the key is the one of a config without the setting.
    flat = SmolZooConfig(lr=2e-3, warmup=5, steps=400)
    assert {flat.lr_factor(s) for s in range(5, 400)} == {1.0}
    assert "lr_final" not in flat.key_dict()
    assert cfg.key() != flat.key()
