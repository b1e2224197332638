"""Hook functions ``fn(act, hook)`` and the names and positions they act on.

Every intervention in poser_lens is a TransformerLens hook function, parameterised by a small
dataclass, and attached only by :func:`applied` (``with applied(model, [(name, fn), ...]):``,
TransformerLens's ``model.hooks`` underneath), so interventions nest, compose and always come
off, even after an exception. The module sits below the readout in the package's layers, so
every forward under hooks, the readout's included, attaches them here.

The one intervention on weights rather than activations, :class:`WeightNoise` (seeded noise
on every block weight matrix, Tice et al.), is applied the same way by its own context manager,
:func:`weights_noised`: it noises one block at a time in place and restores the weights bit for
bit on the way out.

Layers are given as :data:`LayerSpec`: an ``int`` is a block index, a ``float`` in ``[0, 1]`` a
fraction of depth, so Poser's "layer 15 of 40" is ``15 / 40`` on any model.

Example:
    >>> import torch
    >>> add = AddVector(vector=torch.ones(4), coeff=2.0, positions="last")
    >>> add(torch.zeros(1, 3, 4), hook=None)[0, :, 0].tolist()
    [0.0, 0.0, 2.0]
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any, Literal, NamedTuple, cast

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from poser_lens.depth import LayerSpec, resolve_layer
from poser_lens.hooked import HookedModel

Positions = Literal["last", "all"] | Sequence[int] | Tensor
NoiseKind = Literal["uniform", "gaussian", "sphere"]

#: Hook kinds inside block ``L`` and their TransformerLens names.
BLOCK_HOOKS: dict[str, str] = {
    "resid_pre": "blocks.{L}.hook_resid_pre",
    "resid_mid": "blocks.{L}.hook_resid_mid",
    "resid_post": "blocks.{L}.hook_resid_post",
    "attn_out": "blocks.{L}.hook_attn_out",
    "ln2_normalized": "blocks.{L}.ln2.hook_normalized",
    "mlp_out": "blocks.{L}.hook_mlp_out",
    "pattern": "blocks.{L}.attn.hook_pattern",
    "z": "blocks.{L}.attn.hook_z",
}


def hook_name(kind: str, layer: LayerSpec, n_layers: int | None = None) -> str:
    """The TransformerLens hook name of a kind at a layer.

    Args:
        kind: A key of :data:`BLOCK_HOOKS` (``resid_post``, ``mlp_out``, ...).
        layer: A block index or a fraction of depth (see :func:`resolve_layer`).
        n_layers: Depth of the model. Without it ``layer`` must be a block index (an int
            >= 0), used as it is: for callers that hold a resolved block but not the model.

    Raises:
        ValueError: for an unknown kind, a layer outside the model, or (without
            ``n_layers``) a layer that is not a non-negative int.

    Example:
        >>> hook_name("resid_post", 0.5, 40), hook_name("ln2_normalized", 3)
        ('blocks.20.hook_resid_post', 'blocks.3.ln2.hook_normalized')
    """
    if kind not in BLOCK_HOOKS:
        raise ValueError(f"unknown hook kind {kind!r}; expected one of {', '.join(BLOCK_HOOKS)}")
    if n_layers is not None:
        block = resolve_layer(n_layers, layer)
    elif isinstance(layer, Integral) and not isinstance(layer, bool) and layer >= 0:
        block = int(layer)
    else:
        raise ValueError(f"layer {layer!r} needs n_layers (only a block index >= 0 does not)")
    return BLOCK_HOOKS[kind].format(L=block)


def position_mask(
    positions: Positions, batch: int, pos: int, last: Int[Tensor, " batch"] | None = None
) -> Bool[Tensor, "batch pos"]:
    """Which (row, position) pairs a selector picks.

    Args:
        positions: ``"last"`` (each row's last real token: ``last`` if given, else the final
            position, which is right for left padding), ``"all"``, a list of indices (negative
            counts from the end), or a boolean mask ``[batch, pos]`` (e.g. a fact's token span).
        batch: Rows.
        pos: Sequence length.
        last: Per-row last real index (right padding).

    Example:
        >>> position_mask("last", 2, 3, last=torch.tensor([1, 2])).int().tolist()
        [[0, 1, 0], [0, 0, 1]]
    """
    mask = torch.zeros(batch, pos, dtype=torch.bool)
    if isinstance(positions, Tensor) and positions.dtype == torch.bool:
        if positions.shape != (batch, pos):
            raise ValueError(f"position mask shape {tuple(positions.shape)} != {(batch, pos)}")
        return positions.cpu()
    if positions == "last":
        idx = last.cpu() if last is not None else torch.full((batch,), pos - 1)
        mask[torch.arange(batch), idx] = True
    elif positions == "all":
        mask[:] = True
    else:
        mask[:, [int(i) for i in positions]] = True
    return mask


CharSpans = Sequence[tuple[int, int]]


def span_mask(
    tokenizer: Any,
    prompts: Sequence[str],
    char_spans: Sequence[CharSpans],
    padding_side: Literal["right", "left"] = "right",
) -> Bool[Tensor, "batch pos"]:
    """The token positions that cover character spans, as a position selector.

    Each prompt's spans ``[(start, end), ...]`` (e.g. from
    :func:`poser_lens.data.prompts.fact_char_spans`, end exclusive) select every token that
    overlaps one of them. The prompts are tokenized as :func:`poser_lens.readout.encode`
    does (special tokens such as BOS included, padded to the longest prompt, right padding by
    default), so the mask lines up with the ids that :func:`poser_lens.activations.collect`
    and the patching functions run.

    A fast tokenizer gives exact character offsets. Without offsets (a slow tokenizer), the
    positions are counted by tokenizing the text before each span's start and end, which is
    exact when spans start and end on token boundaries (always, for the tiny zoo's word-level
    tokenizer).

    Args:
        tokenizer: A Hugging Face tokenizer.
        prompts: Input texts.
        char_spans: Per prompt, character spans (possibly none).
        padding_side: ``right`` (as :func:`~poser_lens.readout.encode`) or ``left``.

    Returns:
        ``[batch, pos]``, True at the tokens of the spans.

    Raises:
        ValueError: if there are not as many span lists as prompts, or a span is outside
            its prompt.

    Example:
        >>> from poser_lens.models.tokenizer import build_tokenizer
        >>> tok = build_tokenizer(["1. The sky is blue.\\n2. Grass is green."])
        >>> text = "1. The sky is blue."
        >>> mask = span_mask(tok, [text], [[(3, 19)]])
        >>> tok.convert_ids_to_tokens(tok(text)["input_ids"][i] for i in mask[0].nonzero()[:, 0])
        ['The', 'sky', 'is', 'blue', '.']
    """
    if len(char_spans) != len(prompts):
        raise ValueError(f"{len(char_spans)} span lists for {len(prompts)} prompts")
    for row, (text, spans) in enumerate(zip(prompts, char_spans, strict=True)):
        for start, end in spans:
            if not 0 <= start <= end <= len(text):
                raise ValueError(
                    f"span ({start}, {end}) is outside prompt {row} ({len(text)} chars)"
                )
    if getattr(tokenizer, "is_fast", False):
        return _span_mask_from_offsets(tokenizer, prompts, char_spans, padding_side)
    return _span_mask_from_prefixes(tokenizer, prompts, char_spans, padding_side)


def _span_mask_from_offsets(
    tokenizer: Any, prompts: Sequence[str], char_spans: Sequence[CharSpans], padding_side: str
) -> Tensor:
    batch = tokenizer(
        list(prompts),
        padding=True,
        return_tensors="pt",
        padding_side=padding_side,
        return_offsets_mapping=True,
    )
    offsets = batch["offset_mapping"]
    start, end = offsets[..., 0], offsets[..., 1]
    real = (end > start) & batch["attention_mask"].bool()  # special tokens have empty offsets
    mask = torch.zeros_like(real)
    for row, spans in enumerate(char_spans):
        for s, e in spans:
            if e > s:
                mask[row] |= real[row] & (start[row] < e) & (end[row] > s)
    return mask


def _span_mask_from_prefixes(
    tokenizer: Any, prompts: Sequence[str], char_spans: Sequence[CharSpans], padding_side: str
) -> Tensor:
    def n_tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    lengths, leads = [], []
    for text in prompts:
        full = tokenizer(text)["input_ids"]
        plain = tokenizer(text, add_special_tokens=False)["input_ids"]
        lead = next(
            (i for i in range(len(full) - len(plain) + 1) if full[i : i + len(plain)] == plain), 0
        )
        lengths.append(len(full))
        leads.append(lead)
    width = max(lengths, default=0)
    mask = torch.zeros(len(prompts), width, dtype=torch.bool)
    for row, (text, spans) in enumerate(zip(prompts, char_spans, strict=True)):
        shift = leads[row] + (width - lengths[row] if padding_side == "left" else 0)
        for s, e in spans:
            if e > s:
                # Spaces before a span belong to its first token in leading-space vocabularies.
                first, stop = n_tokens(text[:s].rstrip(" ")), n_tokens(text[:e])
                mask[row, shift + first : shift + stop] = True
    return mask


def _mask_like(act: Tensor, positions: Positions, last: Tensor | None) -> Tensor:
    mask = position_mask(positions, act.shape[0], act.shape[1], last).to(act.device)
    return mask.view(*mask.shape, *([1] * (act.dim() - 2)))


@dataclass
class AddVector:
    """Add ``coeff * vector`` to the activation at the selected positions (steering, S1).

    A negative ``coeff`` subtracts.

    Example:
        >>> AddVector(torch.ones(2), coeff=-1.0, positions="all")(torch.zeros(1, 2, 2), None)
        tensor([[[-1., -1.],
                 [-1., -1.]]])
    """

    vector: Float[Tensor, " d"]
    coeff: float = 1.0
    positions: Positions = "last"
    last: Int[Tensor, " batch"] | None = None

    def __call__(self, act: Tensor, hook: Any) -> Tensor:
        """Return the steered activation."""
        delta = (self.coeff * self.vector).to(act.device, act.dtype)
        return act + _mask_like(act, self.positions, self.last) * delta


@dataclass
class AddAt:
    """Add one vector per listed (row, position): ``act[i, at[i, j]] += delta[..., j, :]``.

    ``delta`` is ``[batch, n, d]`` or, one set of vectors for every row, ``[n, d]``; ``at``
    lists each row's positions, distinct within a row. Other positions are left as they are.
    The steering sweep's interventions: a delta at each row's last token
    (:func:`~poser_lens.strategies.steering.engine.variant_readout` stacked), or at the slots
    of the packed copies patched after one block (packed).

    Example:
        >>> add = AddAt(torch.tensor([[1.0, 2.0]]), at=torch.tensor([[2], [0]]))
        >>> add(torch.zeros(2, 3, 2), None)[:, :, 1].tolist()
        [[0.0, 0.0, 2.0], [2.0, 0.0, 0.0]]
    """

    delta: Float[Tensor, "*batch n d"]
    at: Int[Tensor, "batch n"]

    def __call__(self, act: Tensor, hook: Any) -> Tensor:
        """Return the activation with the deltas added."""
        act = act.clone()
        rows = torch.arange(act.shape[0], device=act.device)[:, None].expand_as(self.at)
        act[rows, self.at] += self.delta.to(act.device, act.dtype)
        return act


def draw_noise(
    d: int,
    kind: NoiseKind = "uniform",
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Float[Tensor, " d"]:
    """One seeded noise vector of unit norm.

    ``uniform`` is U[0, 1]^d as in Poser (not zero-mean: mostly along the all-ones
    direction), ``gaussian`` N(0, 1)^d, ``sphere`` uniform on the unit sphere (a normalised
    Gaussian; the same direction as ``gaussian`` for one seed, kept for clarity).

    Example:
        >>> float(draw_noise(16, "gaussian", seed=1).norm())
        1.0
    """
    gen = torch.Generator().manual_seed(seed)
    if kind == "uniform":
        v = torch.rand(d, generator=gen, dtype=torch.float64)
    elif kind in ("gaussian", "sphere"):
        v = torch.randn(d, generator=gen, dtype=torch.float64)
    else:
        raise ValueError(f"unknown noise kind {kind!r}")
    return (v / v.norm()).to(dtype)


@dataclass
class AddNoise:
    """Add seeded noise of a chosen norm at the selected positions (S2).

    The noise vector (unit norm, from :func:`draw_noise`) is scaled to ``norm`` (an absolute
    norm, e.g. that of the S1 direction) or, if ``relative`` is set, to that fraction of each
    activation's own norm; then multiplied by ``coeff``.

    Example:
        >>> noise = AddNoise(d=4, kind="gaussian", norm=3.0, seed=0)
        >>> act = torch.zeros(2, 5, 4)
        >>> (noise(act, None) - act)[:, -1].norm(dim=-1).tolist()
        [3.0, 3.0]
    """

    d: int
    kind: NoiseKind = "uniform"
    norm: float = 1.0
    relative: float | None = None
    coeff: float = 1.0
    seed: int = 0
    positions: Positions = "last"
    last: Int[Tensor, " batch"] | None = None
    _unit: Tensor | None = field(default=None, init=False, repr=False)

    @property
    def unit(self) -> Float[Tensor, " d"]:
        """The unit noise direction (drawn once).

        Example:
            >>> torch.equal(AddNoise(d=3, seed=5).unit, draw_noise(3, seed=5))
            True
        """
        if self._unit is None:
            self._unit = draw_noise(self.d, self.kind, seed=self.seed)
        return self._unit

    def __call__(self, act: Tensor, hook: Any) -> Tensor:
        """Return the activation with noise added."""
        unit = self.unit.to(act.device, act.dtype)
        if self.relative is not None:
            scale = self.relative * act.norm(dim=-1, keepdim=True)
        else:
            scale = torch.tensor(self.norm, device=act.device, dtype=act.dtype)
        return act + _mask_like(act, self.positions, self.last) * (self.coeff * scale * unit)


@dataclass
class Ablate:
    """Zero, mean-replace, or remove a direction from the activation at selected positions.

    ``mode="direction"`` projects out ``direction`` (normalised here).

    Example:
        >>> act = torch.tensor([[[3.0, 4.0]]])
        >>> Ablate("direction", direction=torch.tensor([2.0, 0.0]))(act, None).tolist()
        [[[0.0, 4.0]]]
    """

    mode: Literal["zero", "mean", "direction"] = "zero"
    mean: Tensor | None = None
    direction: Tensor | None = None
    positions: Positions = "all"
    last: Int[Tensor, " batch"] | None = None

    def __call__(self, act: Tensor, hook: Any) -> Tensor:
        """Return the ablated activation."""
        if self.mode == "zero":
            new = torch.zeros_like(act)
        elif self.mode == "mean":
            if self.mean is None:
                raise ValueError("mean ablation needs `mean`")
            new = self.mean.to(act.device, act.dtype).expand_as(act)
        elif self.mode == "direction":
            if self.direction is None:
                raise ValueError("direction ablation needs `direction`")
            u = self.direction.to(act.device, act.dtype)
            u = u / u.norm()
            new = act - (act @ u).unsqueeze(-1) * u
        else:
            raise ValueError(f"unknown ablation mode {self.mode!r}")
        return torch.where(_mask_like(act, self.positions, self.last), new, act)


@dataclass
class Patch:
    """Replace the activation with a stored one at the selected positions.

    ``source`` has the activation's shape, or a position axis of size 1 (``[batch, 1, ...]``:
    one stored vector per row, written at whichever positions are selected), for a patch
    between runs of different lengths, e.g. each row's ``last`` position from another prompt.
    With ``heads`` set, the activation must be per head (``[batch, pos, head, d_head]``, as
    ``blocks.L.attn.hook_z``) and only those heads are replaced.

    Example:
        >>> z, src = torch.zeros(1, 2, 3, 1), torch.ones(1, 2, 3, 1)
        >>> Patch(src, positions=[1], heads=[2])(z, None)[0, :, :, 0].tolist()
        [[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
        >>> per_row = Patch(torch.ones(2, 1, 3), positions="last", last=torch.tensor([0, 1]))
        >>> per_row(torch.zeros(2, 2, 3), None)[:, :, 0].tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """

    source: Tensor
    positions: Positions = "all"
    last: Int[Tensor, " batch"] | None = None
    heads: Sequence[int] | None = None

    def __call__(self, act: Tensor, hook: Any) -> Tensor:
        """Return the patched activation."""
        per_row = (act.shape[0], 1, *act.shape[2:])
        if self.source.shape not in (act.shape, per_row):
            raise ValueError(
                f"patch source {tuple(self.source.shape)} is neither {tuple(act.shape)} nor "
                f"{per_row}"
            )
        src = self.source.to(act.device, act.dtype)
        mask = _mask_like(act, self.positions, self.last)
        if self.heads is not None:
            if act.dim() != 4:
                raise ValueError(
                    f"per-head patching needs [batch, pos, head, d_head], got {act.dim()}-D"
                )
            head = torch.zeros(act.shape[2], dtype=torch.bool, device=act.device)
            head[[int(h) for h in self.heads]] = True
            mask = mask & head[:, None]
        return torch.where(mask, src, act)


@dataclass
class Record:
    """Store a detached copy of the activation under ``key`` (default: the hook's name).

    TransformerLens 4.x reports a hook's canonical name, which can differ from the alias it
    was added under (``blocks.L.hook_resid_post`` records as ``blocks.L.hook_out``); give
    ``key`` to store under a name of your choice.

    Example:
        >>> store = {}
        >>> Record(store, key="x")(torch.ones(1, 2), None)
        >>> store["x"].tolist()
        [[1.0, 1.0]]
    """

    store: dict[str, Tensor]
    key: str | None = None
    to_cpu: bool = True

    def __call__(self, act: Tensor, hook: Any) -> None:
        """Record and leave the activation unchanged."""
        value = act.detach()
        self.store[self.key or hook.name] = value.cpu() if self.to_cpu else value


@contextmanager
def applied(model: HookedModel, hooks: Sequence[tuple[str, Any]]) -> Iterator[Any]:
    """Apply (name, hook function) pairs for the duration of a ``with`` block.

    A thin alias of ``model.hooks(fwd_hooks=...)``: hooks added here are removed on exit,
    also after an exception, and never touch hooks added by an enclosing block.

    Example:
        ``model`` is the examples' random 2-layer tiny model over 10 token ids (``conftest.py``).

        >>> tokens = torch.tensor([[1, 2, 3]])
        >>> clean = model(tokens)
        >>> with applied(model, [("blocks.0.hook_resid_post", AddVector(torch.ones(8), 4.0))]):
        ...     steered = model(tokens)
        >>> torch.equal(steered, clean), torch.equal(model(tokens), clean)
        (False, True)
    """
    with model.hooks(fwd_hooks=list(hooks)) as m:
        yield m


# ----------------------------------------------------------------------------- weight noise


class BlockWeight(NamedTuple):
    """One weight matrix of a transformer block that :class:`WeightNoise` perturbs.

    Attributes:
        name: Its name, the same in every model of one architecture:
            ``blocks.{L}.<path in the block>`` with the bridges' ``_original_component.``
            steps dropped (``blocks.0.attn.q.weight``, ``blocks.3.mlp.down_proj.weight``).
        block: The block index ``L``.
        param: The parameter itself (the model's own tensor, not a copy).
    """

    name: str
    block: int
    param: torch.nn.Parameter


def block_weights(model: HookedModel | torch.nn.Module) -> list[BlockWeight]:
    """Every 2-D weight matrix of a model's transformer blocks, block by block.

    The blocks are the bridge's ``model.blocks`` (a ``TransformerBridge``, tiny or Hugging
    Face, or a ``HookedTransformer``): attention (query, key, value, output) and MLP matrices.
    Biases and norm scales (1-D), the embeddings and the unembedding are outside the
    selection (see :class:`WeightNoise` for why).

    Raises:
        TypeError: For a model without ``blocks`` (a native tiny module or a raw HF model:
            wrap it first).

    Example:
        ``model`` is the examples' random 2-layer tiny model (``conftest.py``).

        >>> [w.name for w in block_weights(model)][:3]
        ['blocks.0.attn.q.weight', 'blocks.0.attn.k.weight', 'blocks.0.attn.v.weight']
        >>> len(block_weights(model))  # q, k, v, o, MLP in and out, in 2 blocks
        12
    """
    blocks: Any = getattr(model, "blocks", None)
    if blocks is None:
        raise TypeError(f"a {type(model).__name__} has no transformer blocks (wrap it as a bridge)")
    out = []
    for i, block in enumerate(blocks):
        for path, param in block.named_parameters():
            if param.dim() == 2:
                name = f"blocks.{i}.{path.replace('_original_component.', '')}"
                out.append(BlockWeight(name, i, param))
    return out


def weight_seed(seed: int, draw: int, name: str) -> int:
    """The generator seed of one weight's noise: a stable hash of ``(seed, draw, name)``.

    The same in every process and model (not Python's salted ``hash``).

    Example:
        >>> weight_seed(0, 0, "blocks.0.attn.q.weight") == weight_seed(0, 0, "blocks.0.attn.q.weight")
        True
        >>> weight_seed(0, 0, "blocks.0.attn.q.weight") == weight_seed(0, 1, "blocks.0.attn.q.weight")
        False
    """  # noqa: E501
    digest = hashlib.blake2b(f"{seed}/{draw}/{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # a non-negative int64


def standard_weight_noise(
    name: str,
    shape: Sequence[int],
    *,
    seed: int = 0,
    draw: int = 0,
    device: torch.device | str = "cpu",
) -> Float[Tensor, "..."]:
    """The standard-normal draw of one weight matrix (float32), seeded by its name.

    The same tensor for the same ``(seed, draw, name)``, shape and device kind in every model;
    drawn by the device's own generator (so a CUDA draw differs from the CPU draw of the same
    seed, and a 13B model's noise never leaves the GPU).

    Example:
        >>> a = standard_weight_noise("blocks.0.attn.q.weight", (2, 3), seed=1)
        >>> torch.equal(a, standard_weight_noise("blocks.0.attn.q.weight", (2, 3), seed=1))
        True
    """
    gen = torch.Generator(device=device).manual_seed(weight_seed(seed, draw, name))
    return torch.randn(tuple(shape), generator=gen, device=device, dtype=torch.float32)


@dataclass(frozen=True)
class WeightNoise:
    """Seeded Gaussian noise on every block weight matrix, scaled to each matrix's own spread.

    Weight ``W`` (a :func:`block_weights` matrix) becomes ``W + sigma * std(W) * Z`` with ``Z``
    the standard-normal draw of ``(seed, draw, name)`` (:func:`standard_weight_noise`), the
    same for every model of an architecture, and ``std(W)`` the standard deviation of ``W``'s
    entries (so ``sigma`` is about the noise's norm as a fraction of the matrix's). Applied
    with :func:`weights_noised`, which perturbs one block's matrices at a time in place and
    restores them bit for bit.

    Which weights: the 2-D matrices of the transformer blocks only. The embeddings and the
    unembedding are left clean: noise on the unembedding rows of ``A`` and ``B`` would shift
    the answer logits directly, by an amount that depends on those two rows rather than on
    what the model computes, and a tied embedding (SmolLM2) is one matrix read at both ends;
    they are also the largest single matrices of a LLaMA. Biases and norm scales (1-D, a
    norm's entries are all near 1, so a spread-relative scale means nothing) are left too.

    Attributes:
        sigma: Noise level, as a multiple of each matrix's entry standard deviation.
        seed: Seed of the draws (with ``draw`` and the weight's name).
        draw: Which draw of the seed.

    Example:
        >>> z = standard_weight_noise("w", (2, 2), seed=3, draw=1)
        >>> w = torch.tensor([[1.0, -1.0], [1.0, -1.0]])
        >>> bool(torch.allclose(WeightNoise(0.5, seed=3, draw=1).delta("w", w), 0.5 * w.std() * z))
        True
    """

    sigma: float
    seed: int = 0
    draw: int = 0

    def delta(self, name: str, weight: Tensor, scale: float | None = None) -> Float[Tensor, "..."]:
        """The noise added to ``weight`` (float32, its device); ``scale`` defaults to its std."""
        if scale is None:
            scale = float(weight.detach().float().std())
        z = standard_weight_noise(
            name, weight.shape, seed=self.seed, draw=self.draw, device=weight.device
        )
        return z.mul_(self.sigma * scale)


@dataclass
class NoisedWeights:
    """The state of one :func:`weights_noised` block (what it holds while a forward runs).

    Attributes:
        noise: The noise applied.
        weights: The noised matrices, by block.
        scales: Each matrix's entry standard deviation (read once, on entry).
        saved: The clean copies of the matrices noised right now: one block's at most while
            a forward runs, none between forwards.
        forwards: Block forwards run under the noise (each noised and restored its block).
    """

    noise: WeightNoise
    weights: dict[int, list[BlockWeight]]
    scales: dict[str, float]
    saved: dict[str, Tensor] = field(default_factory=dict)
    forwards: int = 0

    def noise_block(self, block: int) -> None:
        """Save the block's clean matrices (one at a time) and add the noise in place."""
        with torch.no_grad():
            for w in self.weights[block]:
                clean = self.saved.get(w.name)
                if clean is None:
                    self.saved[w.name] = w.param.detach().clone()
                else:  # an earlier forward died inside this block: start from the clean copy
                    w.param.copy_(clean)
                delta = self.noise.delta(w.name, w.param, self.scales[w.name])
                w.param.copy_(w.param.float().add_(delta))

    def restore_block(self, block: int) -> None:
        """Copy the block's clean matrices back (bit for bit) and drop the copies."""
        with torch.no_grad():
            for w in self.weights[block]:
                clean = self.saved.pop(w.name, None)
                if clean is not None:
                    w.param.copy_(clean)
        self.forwards += 1

    def restore_all(self) -> None:
        """Copy back every matrix still noised (after an exception in a forward)."""
        with torch.no_grad():
            by_name = {w.name: w for ws in self.weights.values() for w in ws}
            for name in list(self.saved):
                by_name[name].param.copy_(self.saved.pop(name))


@contextmanager
def weights_noised(
    model: HookedModel | torch.nn.Module, noise: WeightNoise
) -> Iterator[NoisedWeights]:
    """Run the model's forwards with :class:`WeightNoise` on its block weights, in a block.

    No copy of the model: a forward pre-hook on each transformer block saves that block's
    clean matrices and adds their noise in place, and a forward hook on the block copies them
    back when the block is done (called also when the block raises), so one block's matrices
    (a copy of each, plus two float32 tensors of one matrix: the noise and the sum before it
    is cast back) are the only extra memory, on any model size, and every reader of a weight
    inside the block (fused kernels reading a module's weight directly included) sees the
    noise. On exit, also after an exception raised
    mid-forward, every matrix still noised is restored and the hooks removed: the model's
    parameters are the same bytes as before.

    Blocks nest (an inner ``weights_noised`` adds its noise on top of the outer's and takes it
    off first: pre-hooks run in order, the restoring hooks in reverse) and compose with
    :func:`applied`'s activation hooks. Forward passes only (no backward through a noised
    forward: its weights are restored in place before a backward could read them). ``sigma``
    0 attaches nothing.

    Example:
        ``model`` is the examples' random 2-layer tiny model over 10 token ids (``conftest.py``).

        >>> tokens = torch.tensor([[1, 2, 3]])
        >>> before = [p.clone() for p in model.parameters()]
        >>> clean = model(tokens)
        >>> with weights_noised(model, WeightNoise(sigma=0.5, seed=0)) as state:
        ...     noisy = model(tokens)
        >>> torch.equal(noisy, clean), state.forwards, len(state.saved)
        (False, 2, 0)
        >>> all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
        True
    """
    weights: dict[int, list[BlockWeight]] = {}
    for w in block_weights(model):
        weights.setdefault(w.block, []).append(w)
    with torch.no_grad():
        scales = {w.name: float(w.param.float().std()) for ws in weights.values() for w in ws}
    state = NoisedWeights(noise, weights, scales)
    if noise.sigma == 0:
        yield state
        return
    blocks: Any = cast(Any, model).blocks
    handles = []
    try:
        for i in weights:

            def before(module: Any, args: Any, i: int = i) -> None:
                state.noise_block(i)

            def after(module: Any, args: Any, output: Any, i: int = i) -> None:
                state.restore_block(i)

            handles.append(blocks[i].register_forward_pre_hook(before))
            handles.append(blocks[i].register_forward_hook(after, prepend=True, always_call=True))
        yield state
    finally:
        for h in handles:
            h.remove()
        state.restore_all()
