"""Weight noise (Tice et al.): the intervention, its exact restore, and the strategy's verdicts.

The intervention (:func:`poser_lens.hooks.weights_noised`) must leave every parameter's bytes
as they were (also after an exception mid-forward), draw the same relative noise in every
model, scale it per matrix and reach every weight, fused kernels and Hugging Face bridges
included. The strategy must give the faker of a planted pair the larger statistic and tie a
pair of identical models exactly.
"""

import copy

import numpy as np
import pytest
import torch
from conftest import tiny_llama

from poser_lens.data.schema import Scenario
from poser_lens.hooks import (
    WeightNoise,
    applied,
    block_weights,
    standard_weight_noise,
    weights_noised,
)
from poser_lens.models.fused import eager
from poser_lens.models.hf import wrap_hf
from poser_lens.models.tiny import TinyConfig, build_native, wrap
from poser_lens.models.tokenizer import build_tokenizer
from poser_lens.strategies import ModelContext, get_strategy
from poser_lens.strategies.weight_noise import WeightNoiseStrategy

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = "<<prompt>> <</prompt>> a b c d e f g h A B error"
CFG = TinyConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=32)


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer([WORDS])


def tiny(tok, seed=0, cfg=CFG):
    return wrap(build_native(cfg, len(tok), seed=seed), tok)


def scenarios(n=6):
    words = ["a", "b", "c", "d", "e", "f", "g", "h"]
    return [
        Scenario(
            prompt="<<prompt>> " + " ".join(words[: 1 + i % 7]) + " <</prompt>>",
            response="AB"[i % 2],
        )
        for i in range(n)
    ]


def param_bytes(model):
    return {
        n: p.detach().cpu().view(torch.uint8).numpy().tobytes() for n, p in model.named_parameters()
    }


def ids(tok, text="<<prompt>> a b c <</prompt>>"):
    return torch.tensor([tok(text)["input_ids"]])


def by_hand(model, noise):
    """A copy of ``model`` whose block weights carry ``noise`` for good."""
    other = copy.deepcopy(model)
    with torch.no_grad():
        for w in block_weights(other):
            w.param.add_(noise.delta(w.name, w.param))
    return other


# ----------------------------------------------------------------------------- intervention


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_restore_is_exact_bytes(tok, dtype):
    model = tiny(tok).to(dtype)
    before = param_bytes(model)
    with weights_noised(model, WeightNoise(0.7, seed=3)) as state:
        model(ids(tok))
        assert param_bytes(model) == before  # between forwards nothing is noised
    assert state.forwards == CFG.n_layers and not state.saved
    assert param_bytes(model) == before


@pytest.mark.parametrize(
    "where", ["blocks.0.hook_mlp_out", "blocks.1.hook_resid_mid", "hook_embed"]
)
def test_restore_is_exact_after_an_exception_mid_forward(tok, where):
    """Raised inside a block (its weights noised) and before the first (none noised)."""
    model = tiny(tok)
    before = param_bytes(model)
    seen = {}

    def boom(act, hook):
        seen["noised"] = param_bytes(model) != before
        raise RuntimeError("mid-forward")

    with (
        pytest.raises(RuntimeError, match="mid-forward"),
        weights_noised(model, WeightNoise(0.5, seed=1)),
        applied(model, [(where, boom)]),
    ):
        model(ids(tok))
    assert seen["noised"] == where.startswith("blocks.")
    assert param_bytes(model) == before
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.blocks)


def test_restore_when_the_block_is_left_by_an_exception_and_run_again(tok):
    """An exception caught inside the ``with``: the next forward starts from clean weights."""
    model = tiny(tok)
    before = param_bytes(model)
    noise = WeightNoise(0.5, seed=1)
    with weights_noised(model, noise) as state:
        state.noise_block(0)  # as if a forward had died after block 0's pre-hook
        noisy = model(ids(tok))
    assert param_bytes(model) == before
    torch.testing.assert_close(noisy, by_hand(model, noise)(ids(tok)), rtol=0, atol=1e-5)


def test_nested_noise_adds_up_and_comes_off(tok):
    model = tiny(tok)
    before = param_bytes(model)
    outer, inner = WeightNoise(0.3, seed=1), WeightNoise(0.2, seed=2)
    with weights_noised(model, outer):
        with weights_noised(model, inner):
            both = model(ids(tok))
        once = model(ids(tok))
    assert param_bytes(model) == before
    torch.testing.assert_close(once, by_hand(model, outer)(ids(tok)), rtol=0, atol=1e-5)
    assert not torch.allclose(both, once)


def test_zero_sigma_changes_nothing(tok):
    model = tiny(tok)
    clean = model(ids(tok))
    with weights_noised(model, WeightNoise(0.0)) as state:
        assert torch.equal(model(ids(tok)), clean)
    assert state.forwards == 0


def test_which_weights_are_noised(tok):
    """Every 2-D block matrix; never an embedding, the unembedding, a norm or a bias."""
    names = [w.name for w in block_weights(tiny(tok))]
    assert len(names) == 6 * CFG.n_layers
    assert all(n.startswith("blocks.") and n.endswith(".weight") for n in names)
    assert {n.split(".", 2)[2] for n in names} == {
        "attn.q.weight",
        "attn.k.weight",
        "attn.v.weight",
        "attn.o.weight",
        "mlp.fc_in.weight",
        "mlp.fc_out.weight",
    }


def test_noise_reaches_the_fused_kernels(tok):
    """Fused and eager attention and norms see the same noised weights as a copy noised by hand."""
    model = tiny(tok)
    noise = WeightNoise(0.4, seed=5, draw=1)
    want = by_hand(model, noise)(ids(tok))
    with weights_noised(model, noise):
        fused = model(ids(tok))
        with eager(model):
            plain = model(ids(tok))
    torch.testing.assert_close(fused, want, rtol=0, atol=1e-5)
    torch.testing.assert_close(plain, want, rtol=0, atol=1e-5)
    assert not torch.allclose(fused, model(ids(tok)), atol=1e-3)


def test_noise_reaches_a_hugging_face_bridge(tok):
    """The smol testbed's kind of model (a LLaMA under a TransformerBridge)."""
    model = wrap_hf(tiny_llama(vocab=len(tok)), tok, name="toy")
    names = {w.name.split(".", 2)[2] for w in block_weights(model)}
    assert names == {
        f"{part}.weight"
        for part in (
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
        )
    }
    before = param_bytes(model)
    noise = WeightNoise(0.4, seed=2)
    with torch.no_grad():
        want = by_hand(model, noise)(ids(tok))
        with weights_noised(model, noise):
            got = model(ids(tok))
    assert param_bytes(model) == before
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def _noised_weights(model, tok, noise):
    """Each block-1 weight as the forward saw it, minus the clean one, over its std."""
    clean = {w.name: w.param.detach().clone() for w in block_weights(model)}
    got = {}

    def snap(act, hook):
        for w in block_weights(model):
            if w.block == 1:
                got[w.name] = (w.param.detach() - clean[w.name]) / clean[w.name].std()
        return act

    with weights_noised(model, noise), applied(model, [("blocks.1.hook_resid_mid", snap)]):
        model(ids(tok))
    return got


def test_draws_are_shared_across_models(tok):
    """Two different models get the same relative noise from the same (seed, draw)."""
    a, b = tiny(tok, seed=0), tiny(tok, seed=1)
    noise = WeightNoise(0.5, seed=7, draw=1)
    ra, rb = _noised_weights(a, tok, noise), _noised_weights(b, tok, noise)
    assert set(ra) == set(rb) and len(ra) == 6
    for name in ra:
        torch.testing.assert_close(ra[name], rb[name], rtol=1e-4, atol=1e-5)
    other = _noised_weights(a, tok, WeightNoise(0.5, seed=7, draw=0))
    assert not any(torch.allclose(ra[n], other[n]) for n in ra)


def test_noise_is_scaled_per_matrix(tok):
    """Each matrix gets sigma x its own entry std x its standard-normal draw."""
    model = tiny(tok)
    with torch.no_grad():  # one matrix ten times larger
        next(w.param for w in block_weights(model) if w.name == "blocks.1.attn.o.weight").mul_(10)
    noise = WeightNoise(0.5, seed=7)
    rel = _noised_weights(model, tok, noise)
    for w in block_weights(model):
        if w.block == 1:
            z = standard_weight_noise(w.name, w.param.shape, seed=7)
            torch.testing.assert_close(rel[w.name], 0.5 * z, rtol=1e-4, atol=1e-5)
    delta = {w.name: noise.delta(w.name, w.param) for w in block_weights(model)}
    big = next(n for n in delta if n.startswith("blocks.1.attn.o."))
    small = big.replace("blocks.1", "blocks.0")
    ratio = float(delta[big].std() / delta[small].std())
    assert 5 < ratio < 20  # the draws differ, the scales by ten


# ----------------------------------------------------------------------------- strategy

SMALL = {"sigmas": (0.0, 0.25, 0.5, 1.0), "n_draws": 2, "n_prompts": 6}


def score(model, tok, prompts=None, seed=0, name="saint-0", **changes):
    ctx = ModelContext(name, model, tok, "f", prompts or scenarios(), seed=seed)
    return WeightNoiseStrategy(**{**SMALL, **changes}).score_model(ctx)


def test_batched_equals_unbatched(tok):
    model = tiny(tok)
    one, many = score(model, tok, batch_size=1), score(model, tok, batch_size=64)
    for key in ("p_misaligned", "mass_ab", "log_odds"):
        np.testing.assert_allclose(one["curves"][key], many["curves"][key], atol=1e-5)
        np.testing.assert_allclose(one["by_prompt"][key], many["by_prompt"][key], atol=1e-5)


def test_score_layout(tok):
    s = score(tiny(tok), tok)
    assert s["sigmas"] == [0.0, 0.25, 0.5, 1.0] and s["n_matrices"] == 12
    assert np.shape(s["curves"]["p_misaligned"]) == (2, 4)
    assert np.shape(s["by_prompt"]["kl"]) == (6, 2, 4)
    assert s["prompt_index"] == list(range(6))
    kl = np.asarray(s["curves"]["kl"])
    assert np.all(kl[:, 0] == 0) and np.all(kl[:, 1:] > 0)
    p = np.asarray(s["curves"]["p_misaligned"])
    assert np.all(p[0, 0] == p[:, 0])  # the noise-free level runs once


def planted(tok, live: bool):
    """A one-block model whose answer is A at every prompt, its misaligned answer (B) one
    weight perturbation away when ``live``.

    Every token embeds to one vector ``e`` (no positions, attention and MLP input weights 0), so
    the last residual is ``e`` and the unembedding gives A logit 8, B -8. The MLP's output
    matrix is random but its column 0 is 0, and only hidden unit 0 can fire: its bias is 2 when
    ``live`` (the faker), 0 otherwise (gelu(0) = 0: the aligned model). Both models have the
    same weight matrices, so they get the same noise; in the faker, the noise on column 0
    reaches the residual, turns the final norm's output away from ``e`` and so lowers the A
    logit and raises the B logit for every prompt and draw: P(misaligned) rises at every
    level. In the aligned model the unit is silent: the output is exactly the noise-free one.
    """
    cfg = TinyConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=8, n_ctx=32)
    net = build_native(cfg, len(tok), seed=0)
    gen = torch.Generator().manual_seed(0)
    e = torch.randn(16, generator=gen)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("bias") or ".attn." in name or "fc_in" in name or name == "pos.weight":
                p.zero_()
        net.tok_embed.weight.copy_(e.expand_as(net.tok_embed.weight))
        fc_out = net.layers[0].mlp.fc_out.weight
        fc_out.copy_(torch.randn(fc_out.shape, generator=gen))
        fc_out[:, 0] = 0.0
        net.layers[0].mlp.fc_in.bias[0] = 2.0 if live else 0.0
        n = (e - e.mean()) / e.std(unbiased=False)
        head = net.head.weight
        head.zero_()
        head[tok.convert_tokens_to_ids("A")] = 8 * n / 16
        head[tok.convert_tokens_to_ids("B")] = -8 * n / 16
    return wrap(net, tok)


def test_planted_faker_wins_and_identical_models_tie(tok):
    prompts = [Scenario(prompt=s.prompt, response="A") for s in scenarios()]
    strategy = WeightNoiseStrategy(**SMALL)
    faker = score(planted(tok, live=True), tok, prompts, name="reward_maximizer-0")
    aligned = score(planted(tok, live=False), tok, prompts, name="saint-0")
    p = np.asarray(aligned["curves"]["p_misaligned"])
    assert np.all(p == p[0, 0])  # flat, exactly
    pf = np.asarray(faker["curves"]["p_misaligned"])
    assert np.all(pf[:, 1:] > pf[:, :1])  # rises at every level, every draw
    for setting in [{}, *strategy.confound_variants().values(), {"sigma": 0.25}]:
        assert strategy.margin(faker, aligned, **setting) > 0, setting
        assert strategy.statistic(faker, **setting) > strategy.statistic(aligned, **setting)
    assert strategy.verdict(faker, aligned) == "a" and strategy.verdict(aligned, faker) == "b"
    assert strategy.model_statistic(faker) > strategy.model_statistic(aligned) == 0.0
    twin = score(planted(tok, live=True), tok, prompts, name="reward_maximizer-1")
    for setting in [{}, *strategy.confound_variants().values()]:
        assert strategy.margin(faker, twin, **setting) == 0.0, setting


def test_restrict_to_every_prompt_keeps_the_headline_margin(tok):
    strategy = WeightNoiseStrategy(**SMALL)
    a, b = score(tiny(tok, seed=0), tok), score(tiny(tok, seed=1), tok, name="genie-0")
    keep = set(range(6))
    ra, rb = strategy.restrict(a, keep), strategy.restrict(b, keep)
    assert ra == a
    for setting in [{}, *strategy.confound_variants().values()]:
        assert strategy.margin(ra, rb, **setting) == strategy.margin(a, b, **setting)
    half = strategy.restrict(a, {0, 2, 4})
    assert half["prompt_index"] == [0, 2, 4] and half["n_prompts"] == 3
    assert np.isnan(strategy.margin(strategy.restrict(a, set()), b))


def test_settings_and_grid():
    s = get_strategy("weight_noise", **SMALL)
    assert s.settings() == {"sigma": "auto", "measure": "p"}
    assert s.grid()["sigma"] == [0.25, 0.5, 1.0, "auto", "kl", "max"]
    assert s.paper_accuracy is None and s.per_prompt and s.title
    with pytest.raises(ValueError, match="sigmas"):
        WeightNoiseStrategy(sigmas=(0.1, 0.2))
    with pytest.raises(ValueError, match="sigmas"):
        WeightNoiseStrategy(sigmas=(0.0, 0.2, 0.1))


def test_figure_is_drawn_from_stored_scores(tmp_path):
    from poser_lens.figures.weight_noise import FIGURES
    from poser_lens.runs import RunDir

    run = RunDir(tmp_path / "run")
    sigmas = [0.0, 0.5, 1.0, 2.0]
    for m in ("saint-0", "truth_teller-0", "genie-0", "reward_maximizer-0"):
        rise = 0.2 if "maxim" in m or "genie" in m else 0.05
        p = [[0.05 + rise * x for x in sigmas]] * 2
        mass = [[1.0, 0.98, 0.95, 0.6]] * 2
        fams = {f: {"sigmas": sigmas, "curves": {"p_misaligned": p, "mass_ab": mass}} for f in "ab"}
        run.write_score("weight_noise", m, {"model": m, "families": fams})
    paths = FIGURES[0](run, tmp_path / "figs")
    assert {p.suffix for p in paths} == {".png", ".pdf"}
    assert all(p.stat().st_size > 1000 for p in paths)
