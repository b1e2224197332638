"""Hook functions ``fn(act, hook)`` and the names and positions they act on.

Every intervention in poser_lens is a TransformerLens hook function, parameterised by a small
dataclass, and attached only by :func:`applied` (``with applied(model, [(name, fn), ...]):``,
TransformerLens's ``model.hooks`` underneath), so interventions nest, compose and always come
off, even after an exception. The module sits below the readout in the package's layers, so
every forward under hooks, the readout's included, attaches them here.

Layers are given as :data:`LayerSpec`: an ``int`` is a block index, a ``float`` in ``[0, 1]`` a
fraction of depth, so Poser's "layer 15 of 40" is ``15 / 40`` on any model.

Example:
    >>> import torch
    >>> add = AddVector(vector=torch.ones(4), coeff=2.0, positions="last")
    >>> add(torch.zeros(1, 3, 4), hook=None)[0, :, 0].tolist()
    [0.0, 0.0, 2.0]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any, Literal

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
