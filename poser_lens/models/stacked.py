"""Several tiny native transformers as one module: parameters stacked on a leading model axis.

:class:`StackedNative` holds ``M`` models of one architecture: every parameter of TransformerLens's
native model (the module :func:`~poser_lens.models.tiny.build_native` builds) with a leading
model axis ``[M, ...]``, under the native parameter names (``head.weight``,
``layers.0.attn.q.weight``, ...). Its forward computes every layer of the ``M`` models at once
with batched matrix products (``torch.bmm`` / ``torch.baddbmm`` over the model axis), so one
optimiser step trains them all. The models never mix: each output row depends only on its own
model's parameters and rows, so a loss that is a sum of per-model losses gives every model the
gradient it gets alone, and AdamW (elementwise) steps each model as if it were trained alone.
:meth:`StackedNative.unstack_into` copies the trained weights back into ordinary native
modules (saved, wrapped and hooked as usual).

The forward reproduces the native one (pre-LN blocks: LayerNorm or RMSNorm, causal attention
with split Q/K/V/O projections and biases, MLP, final norm, unembedding without bias) up to
float rounding, and reads logits at each row's last real token like
:func:`poser_lens.readout.last_logits`. It skips work whose result is never read:

* **no work on padding** (:class:`StackedBatch`): token-wise parts (embeddings, norms,
  projections, MLP) run on each model's real tokens only, packed one row after another;
  attention gathers them into rows of similar length (length buckets), right padded to the
  longest of each, and back;
* **last layer at the last token**: the final block needs every position's keys and values
  but only the last tokens' queries, attention output and MLP.

Attention runs in :func:`torch.nn.functional.scaled_dot_product_attention` (one fused causal
kernel, not the native scores / mask / softmax / mask sequence), and each norm's scale and
shift are folded into the linear map that reads it.

Example:
    >>> from poser_lens.models.tiny import TinyConfig, build_native
    >>> cfg = TinyConfig(n_layers=1, d_model=8, n_heads=2, d_head=4, d_mlp=16, n_ctx=8)
    >>> nets = [build_native(cfg, d_vocab=10, seed=s) for s in range(3)]
    >>> stack = StackedNative.stack(nets)
    >>> batch = StackedBatch.build(torch.tensor([[[1, 2, 3]], [[4, 5, 0]], [[6, 0, 0]]]),
    ...                            torch.tensor([[2], [1], [0]]), pad_id=0)
    >>> tuple(stack(batch).shape)
    (3, 1, 10)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from poser_lens.readout import encode, token_ids

if TYPE_CHECKING:
    from transformer_lens.model_bridge.sources.native import NativeModel

#: MLP activations of the native model that the stacked forward reproduces.
_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
}


@dataclass(frozen=True)
class Bucket:
    """Rows that attention runs on together, right padded to the longest of them.

    Attributes:
        rows: The rows (flattened ``[model * batch]`` indices).
        width: Their padded length.
    """

    rows: Int[Tensor, " rows"]
    width: int


def _split_by_length(lengths: Tensor, buckets: int) -> list[int]:
    """Split points of sorted row lengths into at most ``buckets`` runs of low attention cost.

    The cost of a run is its row count times its longest row squared (a causal attention's
    work); the costliest run is split at its best point, ``buckets - 1`` times.

    Example:
        >>> _split_by_length(torch.tensor([2, 2, 3, 9, 10]), 2)
        [0, 3, 5]
    """
    cuts = [0, len(lengths)]
    sq = lengths.double() ** 2
    for _ in range(buckets - 1):
        costs = [(b - a) * float(sq[b - 1]) for a, b in itertools.pairwise(cuts)]
        i = max(range(len(costs)), key=costs.__getitem__)
        a, b = cuts[i], cuts[i + 1]
        if b - a < 2:
            break
        at = torch.arange(a + 1, b)
        split = (at - a) * sq[at - 1] + (b - at) * sq[b - 1]
        cut = int(at[int(split.argmin())])
        if float(split.min()) >= costs[i]:
            break
        cuts.insert(i + 1, cut)
    return cuts


@dataclass(frozen=True)
class StackedBatch:
    """One right-padded batch per model, laid out for :class:`StackedNative`.

    Token-wise parts (embeddings, norms, projections, MLP) run on *slots*, ``[model, slot]``:
    each model's real tokens, one row after another, then filler (so every model has as many
    slots, one filler at least). Attention runs on rows: gathered from the slots into length
    :class:`Bucket` s (rows of similar length, padded to the longest of each), and back.

    Attributes:
        ids: Token id of every slot.
        positions: Position of every slot in its row.
        buckets: The attention buckets; every row is in one.
        to_buckets: For every position of the buckets' padded rows, concatenated, the
            flattened ``[model * slot]`` slot it reads (padding reads a filler slot).
        from_buckets: For every flattened slot, its position in the buckets' padded rows,
            concatenated (filler slots read position 0).
        last_slot: Flattened slot of each row's last real token.
        last: Each row's last real position.
        unsort: For every flattened row, its index in the buckets' rows concatenated.
    """

    ids: Int[Tensor, "model slot"]
    positions: Int[Tensor, "model slot"]
    buckets: tuple[Bucket, ...]
    to_buckets: Int[Tensor, " bucket_pos"]
    from_buckets: Int[Tensor, " model_slot"]
    last_slot: Int[Tensor, "model batch"]
    last: Int[Tensor, "model batch"]
    unsort: Int[Tensor, " model_batch"]

    @classmethod
    def build(
        cls,
        ids: Int[Tensor, "model batch pos"],
        last: Int[Tensor, "model batch"],
        *,
        pad_id: int,
        buckets: int = 8,
    ) -> StackedBatch:
        """Lay out right-padded rows (one batch of equal size per model).

        Args:
            ids: Right-padded token ids of every model's rows.
            last: Each row's last real index.
            pad_id: Token id of the filler slots.
            buckets: Attention length buckets at most (1: every row padded to the longest).

        Returns:
            The layout.

        Example:
            >>> b = StackedBatch.build(torch.tensor([[[5, 6], [7, 0]]]), torch.tensor([[1, 0]]),
            ...                        pad_id=0)
            >>> b.ids.tolist(), b.positions.tolist(), b.last_slot.tolist()
            ([[5, 6, 7, 0]], [[0, 1, 0, 0]], [[1, 2]])
            >>> [(bucket.rows.tolist(), bucket.width) for bucket in b.buckets]
            [([1], 1), ([0], 2)]
        """
        n_models, batch, _ = ids.shape
        lengths = last + 1
        n_slots = int(lengths.sum(1).max()) + 1
        start = lengths.cumsum(1) - lengths  # first slot of each row, within its model
        first = (torch.arange(n_models)[:, None] * n_slots + start).reshape(-1)
        spare = (torch.arange(n_models) * n_slots + n_slots - 1).repeat_interleave(batch)
        flat_len = lengths.reshape(-1)
        flat_ids = ids.reshape(n_models * batch, -1)
        order = torch.argsort(flat_len, stable=True)
        cuts = _split_by_length(flat_len[order], max(buckets, 1))
        slot_ids = torch.full((n_models * n_slots,), pad_id, dtype=ids.dtype)
        positions = torch.zeros(n_models * n_slots, dtype=torch.long)
        from_buckets = torch.zeros(n_models * n_slots, dtype=torch.long)
        parts, gathers = [], []
        offset = 0
        for a, b in itertools.pairwise(cuts):
            rows = order[a:b]
            width = int(flat_len[rows].max())
            pos = torch.arange(width)
            real = pos < flat_len[rows, None]
            to_slots = torch.where(real, first[rows, None] + pos, spare[rows, None])
            at = to_slots[real]
            slot_ids[at] = flat_ids[rows, :width][real]
            positions[at] = pos.expand(len(rows), width)[real]
            from_buckets[at] = offset + torch.arange(len(rows) * width).view(-1, width)[real]
            parts.append(Bucket(rows=rows, width=width))
            gathers.append(to_slots.reshape(-1))
            offset += len(rows) * width
        return cls(
            ids=slot_ids.view(n_models, n_slots),
            positions=positions.view(n_models, n_slots),
            buckets=tuple(parts),
            to_buckets=torch.cat(gathers),
            from_buckets=from_buckets,
            last_slot=(first + flat_len - 1).view(n_models, batch),
            last=last,
            unsort=torch.argsort(order),
        )


class _Linear(nn.Module):
    """``M`` linear maps: ``weight`` ``[M, out, in]``, ``bias`` ``[M, out]`` or None."""

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = None if bias is None else nn.Parameter(bias)

    def forward(self, x: Float[Tensor, "model n d_in"]) -> Float[Tensor, "model n d_out"]:
        return _affine(x, self.weight, self.bias)


def _linear(state: dict[str, Tensor], prefix: str) -> _Linear:
    return _Linear(state[prefix + "weight"], state.get(prefix + "bias"))


def _affine(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``x @ weight.T + bias`` per model (``x`` ``[M, n, in]``)."""
    if bias is None:
        return torch.bmm(x, weight.transpose(1, 2))
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


def _cat(linears: Sequence[_Linear]) -> tuple[Tensor, Tensor | None]:
    """The weight and bias of several linear maps of one input, outputs concatenated."""
    weight = torch.cat([lin.weight for lin in linears], 1)
    biases = [lin.bias for lin in linears]
    if any(b is None for b in biases):
        return weight, None
    return weight, torch.cat([b for b in biases if b is not None], 1)


class _Norm(nn.Module):
    """``M`` LayerNorms (``bias`` given) or RMSNorms (``bias`` None) over the last axis.

    A norm followed by a linear map runs as :meth:`normalize` then the map with the norm's
    scale and shift folded in (:meth:`fold`): the same function, one pass less over the
    activations (and its backward).
    """

    def __init__(self, weight: Tensor, bias: Tensor | None, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = None if bias is None else nn.Parameter(bias)
        self.eps = eps

    def normalize(self, x: Float[Tensor, "model n d"]) -> Float[Tensor, "model n d"]:
        """The norm without its scale and shift."""
        if self.bias is None:
            return F.rms_norm(x, (x.shape[-1],), eps=self.eps)
        return F.layer_norm(x, (x.shape[-1],), eps=self.eps)

    def fold(self, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """``(weight, bias)`` of ``x -> linear(norm(x))`` applied to ``normalize(x)``."""
        folded = weight * self.weight.unsqueeze(1)
        if self.bias is None:
            return folded, bias
        shift = torch.bmm(weight, self.bias.unsqueeze(-1)).squeeze(-1)
        return folded, shift if bias is None else bias + shift


class _Embedding(nn.Module):
    """``M`` embedding tables ``[M, rows, d]``."""

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, ids: Int[Tensor, "model n"]) -> Float[Tensor, "model n d"]:
        n_models, rows, d = self.weight.shape
        offset = torch.arange(n_models, device=ids.device)[:, None] * rows
        return F.embedding(ids + offset, self.weight.reshape(n_models * rows, d))


class _Attention(nn.Module):
    def __init__(self, state: dict[str, Tensor], prefix: str, scale: float) -> None:
        super().__init__()
        self.q = _linear(state, prefix + "q.")
        self.k = _linear(state, prefix + "k.")
        self.v = _linear(state, prefix + "v.")
        self.o = _linear(state, prefix + "o.")
        self.scale = scale


class _MLP(nn.Module):
    def __init__(self, state: dict[str, Tensor], prefix: str, act: str) -> None:
        super().__init__()
        self.fc_in = _linear(state, prefix + "fc_in.")
        self.fc_out = _linear(state, prefix + "fc_out.")
        self.act = _ACTIVATIONS[act]


class _Block(nn.Module):
    def __init__(self, state: dict[str, Tensor], prefix: str, cfg: Any) -> None:
        super().__init__()
        eps = float(cfg.eps)
        # The native attention divides its scores by sqrt(d_head) unless a scale is set.
        scale = float(cfg.attn_scale) if cfg.use_attn_scale and cfg.attn_scale > 0 else None
        self.ln1 = _norm(state, prefix + "ln1.", eps)
        self.attn = _Attention(state, prefix + "attn.", scale or float(cfg.d_head) ** 0.5)
        self.ln2 = _norm(state, prefix + "ln2.", eps)
        self.mlp = _MLP(state, prefix + "mlp.", (cfg.act_fn or "gelu").lower())

    def mlp_out(self, h: Float[Tensor, "model n d"]) -> Float[Tensor, "model n d"]:
        """The MLP's output on the residual stream ``h`` (its norm included)."""
        hidden = _affine(
            self.ln2.normalize(h), *self.ln2.fold(self.mlp.fc_in.weight, self.mlp.fc_in.bias)
        )
        return self.mlp.fc_out(self.mlp.act(hidden))


def _norm(state: dict[str, Tensor], prefix: str, eps: float) -> _Norm:
    return _Norm(state[prefix + "weight"], state.get(prefix + "bias"), eps)


def _check_supported(cfg: Any) -> None:
    """Raise if the native config uses a feature the stacked forward does not reproduce."""
    problems = {
        "normalization_type": str(cfg.normalization_type).upper() not in ("LN", "RMS"),
        "positional_embedding_type": (cfg.positional_embedding_type or "standard") != "standard",
        "attention_dir": cfg.attention_dir != "causal",
        "attn_only": bool(cfg.attn_only),
        "gated_mlp": bool(cfg.gated_mlp),
        "final_rms": bool(cfg.final_rms),
        "n_key_value_heads": cfg.n_key_value_heads not in (None, cfg.n_heads),
        "act_fn": (cfg.act_fn or "gelu").lower() not in _ACTIVATIONS,
        "attn_scores_soft_cap": float(cfg.attn_scores_soft_cap) > 0,
        "output_logits_soft_cap": float(cfg.output_logits_soft_cap) > 0,
    }
    bad = [k for k, v in problems.items() if v]
    if bad:
        raise ValueError(f"StackedNative does not reproduce native models with {', '.join(bad)}")


class StackedNative(nn.Module):
    """``M`` native tiny transformers of one architecture, trained as one module.

    Build it with :meth:`stack`; its parameters have the native names with a leading model
    axis, so :meth:`state_dict` row ``m`` of every tensor is model ``m``'s native state dict.

    Attributes:
        n_models: ``M``.
        d_vocab: Vocabulary size.
    """

    def __init__(self, cfg: Any, state: dict[str, Tensor]) -> None:
        super().__init__()
        _check_supported(cfg)
        self.n_models = int(state["head.weight"].shape[0])
        self.d_vocab = int(state["head.weight"].shape[1])
        self.n_heads = int(cfg.n_heads)
        self.tok_embed = _Embedding(state["tok_embed.weight"])
        self.pos = _Embedding(state["pos.weight"])
        self.layers = nn.ModuleList(
            _Block(state, f"layers.{i}.", cfg) for i in range(int(cfg.n_layers))
        )
        self.ln_out = _norm(state, "ln_out.", float(cfg.eps))
        self.head = _linear(state, "head.")

    @classmethod
    def stack(cls, nets: Sequence[NativeModel]) -> StackedNative:
        """Stack native models of one architecture (their weights are copied).

        Raises:
            ValueError: If the models' parameters differ in names or shapes, or their
                architecture uses a feature the stacked forward does not reproduce.
        """
        states = [net.state_dict() for net in nets]
        if not states:
            raise ValueError("no models to stack")
        shapes = [{k: tuple(v.shape) for k, v in s.items()} for s in states]
        if any(s != shapes[0] for s in shapes[1:]):
            raise ValueError("stacked models must share one architecture")
        stacked = {k: torch.stack([s[k].detach().float() for s in states]) for k in states[0]}
        return cls(nets[0].cfg, stacked)

    def unstack_into(self, nets: Sequence[NativeModel]) -> None:
        """Copy model ``m``'s weights into ``nets[m]`` (native modules of the architecture)."""
        if len(nets) != self.n_models:
            raise ValueError(f"{len(nets)} models to unstack {self.n_models} into")
        state = self.state_dict()
        for m, net in enumerate(nets):
            net.load_state_dict({k: v[m] for k, v in state.items()})

    def _rows(self, x: Tensor, batch: StackedBatch, parts: int) -> list[Tensor]:
        """Each bucket's padded rows of slot features ``x`` (``parts`` head-split tensors).

        Returns:
            Per bucket, ``[parts, rows, heads, width, d_head]``.
        """
        rows = x.reshape(-1, x.shape[-1]).index_select(0, batch.to_buckets)
        sizes = [len(b.rows) * b.width for b in batch.buckets]
        return [
            part.view(len(b.rows), b.width, parts, self.n_heads, -1).permute(2, 0, 3, 1, 4)
            for b, part in zip(batch.buckets, rows.split(sizes), strict=True)
        ]

    def _attend(self, block: _Block, h: Tensor, batch: StackedBatch) -> Tensor:
        """The attention output on the residual stream ``h`` (its norm included), per slot."""
        attn = block.attn
        n_models, n_slots, _ = h.shape
        weight, bias = block.ln1.fold(*_cat([attn.q, attn.k, attn.v]))
        qkv = _affine(block.ln1.normalize(h), weight, bias)
        outs = []
        for rows in self._rows(qkv, batch, 3):
            q, k, v = rows.unbind(0)
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0 / attn.scale)
            outs.append(out.transpose(1, 2).reshape(-1, out.shape[1] * out.shape[3]))
        out = torch.cat(outs).index_select(0, batch.from_buckets)
        return attn.o(out.view(n_models, n_slots, -1))

    def _attend_last(self, block: _Block, h: Tensor, batch: StackedBatch) -> Tensor:
        """The attention output at each row's last token only, ``[model, batch, d_model]``."""
        attn = block.attn
        n_models, n_slots, d_model = h.shape
        normed = block.ln1.normalize(h)
        kv = _affine(normed, *block.ln1.fold(*_cat([attn.k, attn.v])))
        x_last = normed.reshape(n_models * n_slots, d_model)[batch.last_slot]
        query = _affine(x_last, *block.ln1.fold(attn.q.weight, attn.q.bias))
        query = query.reshape(batch.last.numel(), self.n_heads, 1, -1)
        last = batch.last.reshape(-1)
        outs = []
        for bucket, rows in zip(batch.buckets, self._rows(kv, batch, 2), strict=True):
            k, v = rows.unbind(0)
            scores = query[bucket.rows] @ k.transpose(-2, -1) / attn.scale  # [row, head, 1, pos]
            after = torch.arange(bucket.width) > last[bucket.rows].view(-1, 1, 1, 1)
            pattern = scores.masked_fill(after, float("-inf")).softmax(-1)
            outs.append((pattern @ v).reshape(len(bucket.rows), -1))
        out = torch.cat(outs)[batch.unsort]
        return attn.o(out.view(n_models, batch.last.shape[1], -1))

    def _residual(self, batch: StackedBatch, blocks: Sequence[_Block]) -> Tensor:
        """The residual stream of every slot after ``blocks``."""
        h = self.tok_embed(batch.ids) + self.pos(batch.positions)
        for block in blocks:
            h = h + self._attend(block, h, batch)
            h = h + block.mlp_out(h)
        return h

    def _unembed(self, h: Float[Tensor, "model n d_model"]) -> Float[Tensor, "model n vocab"]:
        normed = self.ln_out.normalize(h)
        return _affine(normed, *self.ln_out.fold(self.head.weight, self.head.bias))

    def forward(self, batch: StackedBatch) -> Float[Tensor, "model batch vocab"]:
        """Logits at each row's last real token, every model on its own rows."""
        blocks = [b for b in self.layers if isinstance(b, _Block)]
        h = self._residual(batch, blocks[:-1])
        final = blocks[-1]
        n_models, n_slots, d_model = h.shape
        h_last = h.reshape(n_models * n_slots, d_model)[batch.last_slot]
        h_last = h_last + self._attend_last(final, h, batch)
        h_last = h_last + final.mlp_out(h_last)
        return self._unembed(h_last)

    def slot_logits(
        self, batch: StackedBatch, slots: Int[Tensor, "model n"]
    ) -> Float[Tensor, "model n vocab"]:
        """Logits at chosen slots (flattened ``[model * slot]`` indices, model ``m``'s own).

        Every position runs through every layer (language-model training reads many
        positions of a row); only the chosen slots are unembedded.
        """
        h = self._residual(batch, [b for b in self.layers if isinstance(b, _Block)])
        return self._unembed(h.reshape(-1, h.shape[-1])[slots])


@torch.no_grad()
def stacked_last_token_logits(
    stack: StackedNative, tokenizer: Any, prompts: Sequence[str], *, batch_size: int = 128
) -> Float[Tensor, "model prompt vocab"]:
    """Every stacked model's logits at each prompt's last token (the same prompts for all).

    Prompts are batched by token count; rows come back in the input order (float32, CPU).
    Each model's logits equal :func:`poser_lens.readout.last_token_logits` of it alone, up to
    float rounding.

    Example:
        >>> from poser_lens.models.tiny import TinyConfig, build_native
        >>> from poser_lens.models.tokenizer import build_tokenizer
        >>> tok = build_tokenizer(["a b"])
        >>> cfg = TinyConfig(n_layers=1, d_model=8, n_heads=2, d_head=4, d_mlp=8)
        >>> stack = StackedNative.stack([build_native(cfg, len(tok), seed=s) for s in (0, 1)])
        >>> tuple(stacked_last_token_logits(stack, tok, ["a b", "a"]).shape) == (2, 2, len(tok))
        True
    """
    stack.eval()
    lengths = [len(ids) for ids in token_ids(tokenizer, prompts)]
    order = sorted(range(len(prompts)), key=lengths.__getitem__)
    out = torch.empty(stack.n_models, len(prompts), stack.d_vocab)
    for i in range(0, len(order), batch_size):
        chunk = order[i : i + batch_size]
        ids, last = encode(tokenizer, [prompts[j] for j in chunk])
        m = stack.n_models
        batch = StackedBatch.build(
            ids.expand(m, -1, -1), last.expand(m, -1), pad_id=int(tokenizer.pad_token_id)
        )
        out[:, chunk] = stack(batch).float()
    return out
