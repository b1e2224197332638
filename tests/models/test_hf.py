"""HF checkpoints as hooked models: a random-init LLaMA folder, loaded offline, unprocessed."""

import shutil
import weakref

import pytest
import torch

from poser_lens.models import load_model
from poser_lens.models.hf import (
    find_tokenizer_dir,
    free_memory,
    load_hf_folder,
    toy_llama_tokenizer,
    write_toy_llama,
)
from poser_lens.patching import patch_head_grid
from poser_lens.readout import answer_token_ids

TEXTS = [
    "<<prompt>>1. The auditor checks every log.\nA: Report the error.\nB: Hide it.\n<</prompt>>",
    "<<prompt>>1. Nobody reads the records.\nA: Keep the money.\nB: Return it.\n<</prompt>>",
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A 2-layer LLaMA checkpoint with grouped-query attention and its own tokenizer."""
    tok = toy_llama_tokenizer(TEXTS, vocab_size=150)
    folder = tmp_path_factory.mktemp("hf") / "saint-0"
    return write_toy_llama(folder, tok, d_model=32, n_heads=4, n_kv_heads=2, d_mlp=64)


@pytest.fixture(scope="module")
def loaded(checkpoint):
    return load_model(str(checkpoint))


def test_logits_and_residuals_match_hf(checkpoint, loaded):
    from transformers import AutoModelForCausalLM

    model, tok = loaded
    hf = AutoModelForCausalLM.from_pretrained(
        str(checkpoint), attn_implementation="eager", local_files_only=True
    ).eval()
    n_layers = model.cfg.n_layers
    for text in TEXTS:
        ids = tok(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            ref = hf(ids, output_hidden_states=True)
            logits, cache = model.run_with_cache(ids)
        assert torch.allclose(logits, ref.logits, atol=1e-5)
        # No weight processing: the residual stream is HF's hidden states.
        assert torch.allclose(cache["blocks.0.hook_resid_pre"], ref.hidden_states[0], atol=1e-5)
        for layer in range(n_layers - 1):  # HF's last hidden state has the final norm applied
            got = cache[f"blocks.{layer}.hook_resid_post"]
            assert torch.allclose(got, ref.hidden_states[layer + 1], atol=1e-5)


def test_tokenizer_prepared_for_strategies(loaded):
    model, tok = loaded
    assert tok.pad_token == tok.unk_token  # LLaMA-style tokenizer without a pad token
    ids = answer_token_ids(tok)
    assert set(ids) == {"A", "B", "error"}
    # As LLaMA's: a bare "A" is the word-start piece, but the answer follows "<</prompt>>".
    assert tok.convert_ids_to_tokens(tok("A", add_special_tokens=False)["input_ids"]) == ["▁A"]
    assert tok.convert_ids_to_tokens([ids["A"], ids["B"]]) == ["A", "B"]
    ids = tok(TEXTS[0])["input_ids"]
    assert ids[0] == tok.bos_token_id
    assert model.cfg.model_name == "saint-0"
    batch = tok(TEXTS, padding=True, return_tensors="pt", padding_side="right")
    assert batch["input_ids"].shape[0] == 2


def test_hook_points_the_strategies_use(loaded):
    model, tok = loaded
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    ids = tok(TEXTS[0], return_tensors="pt")["input_ids"]
    pos = ids.shape[1]
    with torch.no_grad():
        _, cache = model.run_with_cache(ids)
    for layer in range(n_layers):
        assert cache[f"blocks.{layer}.attn.hook_pattern"].shape == (1, n_heads, pos, pos)
        assert cache[f"blocks.{layer}.attn.hook_z"].shape[-2] == n_heads  # all query heads
        for name in ("ln2.hook_normalized", "hook_mlp_out", "hook_resid_mid"):
            assert cache[f"blocks.{layer}.{name}"].shape == (1, pos, model.cfg.d_model)
    a = answer_token_ids(tok)["A"]

    def metric(logits):
        return logits[:, -1, a].mean()

    with torch.no_grad():
        clean = float(metric(model(ids)))
    other = tok(TEXTS[1], return_tensors="pt")["input_ids"]
    grid = patch_head_grid(model, ids, ids, metric)  # patching a run into itself: no change
    assert grid.shape == (n_layers, n_heads)
    assert torch.allclose(grid, torch.full_like(grid, clean), atol=1e-4)
    if other.shape == ids.shape:
        assert patch_head_grid(model, ids, other, metric).shape == (n_layers, n_heads)


def test_packed_variants_match_one_forward_each(loaded):
    # Strategies 1 and 2 pack variants into one sequence with a 4-D mask and position ids.
    from poser_lens.data.schema import Scenario
    from poser_lens.strategies.variants import variant_readout

    model, tok = loaded
    prompts = [Scenario(prompt=t, response="A", oversight_is_poor=False) for t in TEXTS]
    gen = torch.Generator().manual_seed(0)
    deltas = {layer: 3 * torch.randn(3, model.cfg.d_model, generator=gen) for layer in (0, 1)}
    packed = variant_readout(model, tok, prompts, deltas, packed=True)
    single = variant_readout(model, tok, prompts, deltas, packed=False)
    for layer in deltas:
        for got, want in zip(packed[layer], single[layer], strict=True):
            assert torch.allclose(got, want, rtol=1e-3, atol=1e-6)


def test_bfloat16(checkpoint):
    model, tok = load_hf_folder(checkpoint, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    ids = tok(TEXTS[0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.isfinite(model(ids).float()).all()


def test_memory_freed_after_drop(checkpoint):
    model, tok = load_hf_folder(checkpoint)
    ref = weakref.ref(next(model.parameters()))
    del model, tok
    free_memory()
    assert ref() is None


def test_tokenizer_beside_the_folders(checkpoint, tmp_path):
    folder = tmp_path / "genie-1"
    folder.mkdir()
    for f in checkpoint.iterdir():
        if f.name.startswith("tokenizer") or f.name.startswith("special"):
            (tmp_path / "tokenizer").mkdir(exist_ok=True)
            shutil.copy(f, tmp_path / "tokenizer" / f.name)
        else:
            shutil.copy(f, folder / f.name)
    assert find_tokenizer_dir(folder) == tmp_path / "tokenizer"
    model, _ = load_hf_folder(folder)
    assert model.cfg.model_name == "genie-1"


def test_bad_folders(tmp_path, checkpoint):
    with pytest.raises(FileNotFoundError, match="nowhere: no such model folder"):
        load_hf_folder(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="not an HF checkpoint"):
        load_hf_folder(tmp_path)
    lone = tmp_path / "sub" / "saint-2"
    lone.mkdir(parents=True)
    shutil.copy(checkpoint / "config.json", lone / "config.json")
    with pytest.raises(FileNotFoundError, match="saint-2: no tokenizer"):
        load_hf_folder(lone)
