"""Analytic FLOPs of a decoder-only transformer's forward and backward passes.

The one count of the package: the paper-scale cost model (:mod:`poser_lens.cost`, ``poser-lens
cost``) and the run profile (``benchmarks/profile_run.py``) both read it; torch's profiler
checks it (:mod:`poser_lens.cost.profile`). Only matrix products
are counted, at 2·m·k·n FLOPs each, as :class:`torch.utils.flop_counter.FlopCounterMode`
counts them: the query, key, value and output projections, the attention scores and their
mixing of the values (the full square, with no causal saving), the MLP (three matrices when
gated, as LLaMA's) and the unembedding. Norms, activations, softmax and the embedding lookup
are left out (well under 1% of LLaMA-13B's forward). ``tests/test_flops.py`` checks the counts
against ``FlopCounterMode`` on tiny TransformerLens and Hugging Face LLaMA models.

A backward pass costs, per matrix product, one product for each operand that needs a
gradient: training every weight costs twice the forward (``"weights"``); a gradient that
only flows back through frozen layers (to a low-rank adapter, or to the token embeddings for
a saliency map) costs one product per weight matrix and two per attention product
(``"inputs"``: both operands of the scores and of the mixing are activations).

:class:`Pass` describes a batch of sequences through a model (how many, how long, how far,
forward or training); the cost model declares each strategy's work on one (model, family) as
a list of them (:func:`poser_lens.cost.declarations.work`).

Example:
    >>> arch = Arch(n_layers=1, d_model=4, n_heads=2, d_head=2, d_mlp=8, d_vocab=10)
    >>> forward_flops(arch, batch=1, seq=3)  # 3 tokens x 2 x 128 weights + 144 attention + 240
    1152.0
    >>> Pass("train", n=2, seq=3, backward="weights").flops(arch) == 3 * 2 * 1152
    True
    >>> round(LLAMA_13B.n_params / 1e9, 2)
    13.02
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

#: Which positions a forward unembeds: every one (a full forward), each row's last (a
#: readout that unembeds the last rows only), or none (the forward stops after its blocks).
Unembed = Literal["all", "last", "none"]
#: What a pass trains: nothing (a forward), only what sits upstream of frozen weights
#: (gradients flow through them: an adapter, a saliency map), or every weight.
Backward = Literal["none", "inputs", "weights"]
#: What a matrix product of a forward is (its backward cost depends on it).
GemmPart = Literal["linear", "attention", "unembed"]

#: Hugging Face model types whose MLP is gated (three matrices: gate, up, down).
GATED_MODEL_TYPES = ("llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "olmo")


@dataclass(frozen=True)
class Arch:
    """What the FLOPs of a decoder-only transformer depend on.

    Attributes:
        n_layers: Blocks.
        d_model: Residual stream width.
        n_heads: Query heads per block.
        d_head: Width of each head.
        d_mlp: MLP hidden width.
        d_vocab: Vocabulary (the unembedding's width).
        gated_mlp: A gated MLP (gate, up and down matrices, as LLaMA) rather than two matrices.
        n_kv_heads: Key/value heads (grouped-query attention); ``None``: ``n_heads``.
        n_ctx: Longest input, in tokens.
        name: For reports.
    """

    n_layers: int
    d_model: int
    n_heads: int
    d_head: int
    d_mlp: int
    d_vocab: int
    gated_mlp: bool = False
    n_kv_heads: int | None = None
    n_ctx: int = 2048
    name: str = ""

    @property
    def kv_heads(self) -> int:
        """Key/value heads."""
        return self.n_kv_heads or self.n_heads

    @property
    def n_params(self) -> int:
        """Parameters of the matrices (every block, the embedding, the unembedding).

        Norm weights and biases are left out (a fraction of a percent).
        """
        d, dh = self.d_model, self.d_head
        attn = d * self.n_heads * dh * 2 + d * self.kv_heads * dh * 2
        mlp = (3 if self.gated_mlp else 2) * d * self.d_mlp
        return self.n_layers * (attn + mlp) + 2 * d * self.d_vocab

    @classmethod
    def from_config(cls, cfg: Any, name: str = "") -> Arch:
        """The architecture of a TransformerLens or Hugging Face config (duck typed).

        Example:
            >>> from poser_lens.models.tiny import TinyConfig, bridge_config
            >>> Arch.from_config(bridge_config(TinyConfig(), d_vocab=100)).d_mlp
            256
        """
        if hasattr(cfg, "num_hidden_layers"):  # Hugging Face
            heads = int(cfg.num_attention_heads)
            d_head = getattr(cfg, "head_dim", None) or int(cfg.hidden_size) // heads
            return cls(
                n_layers=int(cfg.num_hidden_layers),
                d_model=int(cfg.hidden_size),
                n_heads=heads,
                d_head=int(d_head),
                d_mlp=int(cfg.intermediate_size),
                d_vocab=int(cfg.vocab_size),
                gated_mlp=getattr(cfg, "model_type", "") in GATED_MODEL_TYPES,
                n_kv_heads=getattr(cfg, "num_key_value_heads", None),
                n_ctx=int(getattr(cfg, "max_position_embeddings", 2048)),
                name=name,
            )
        return cls(
            n_layers=int(cfg.n_layers),
            d_model=int(cfg.d_model),
            n_heads=int(cfg.n_heads),
            d_head=int(cfg.d_head),
            d_mlp=int(cfg.d_mlp),
            d_vocab=int(cfg.d_vocab),
            gated_mlp=bool(getattr(cfg, "gated_mlp", False)),
            n_kv_heads=getattr(cfg, "n_key_value_heads", None),
            n_ctx=int(cfg.n_ctx),
            name=name,
        )


#: LLaMA-13B (LLaMA-1), the base of Poser's 36 models.
LLAMA_13B = Arch(
    n_layers=40,
    d_model=5120,
    n_heads=40,
    d_head=128,
    d_mlp=13824,
    d_vocab=32000,
    gated_mlp=True,
    n_ctx=2048,
    name="LLaMA-13B",
)


class Gemm(NamedTuple):
    """``batch`` independent products of an ``[m, k]`` by a ``[k, n]`` matrix."""

    part: GemmPart
    batch: float
    m: float
    k: float
    n: float

    @property
    def flops(self) -> float:
        """2·batch·m·k·n."""
        return 2.0 * self.batch * self.m * self.k * self.n


def block_gemms(arch: Arch, batch: float, seq: float) -> list[Gemm]:
    """The matrix products of one block's forward over ``batch`` sequences of ``seq`` tokens.

    Example:
        >>> [g.part for g in block_gemms(LLAMA_13B, 1, 8)][:3]
        ['linear', 'linear', 'attention']
    """
    d, h, dh, t = arch.d_model, arch.n_heads, arch.d_head, batch * seq
    return [
        Gemm("linear", 1, t, d, h * dh),  # queries
        Gemm("linear", 1, t, d, 2 * arch.kv_heads * dh),  # keys and values
        Gemm("attention", batch * h, seq, dh, seq),  # scores
        Gemm("attention", batch * h, seq, seq, dh),  # mixing the values
        Gemm("linear", 1, t, h * dh, d),  # output
        Gemm("linear", 1, t, d, arch.d_mlp * (2 if arch.gated_mlp else 1)),  # MLP in (+ gate)
        Gemm("linear", 1, t, arch.d_mlp, d),  # MLP out
    ]


def unembed_positions(batch: float, seq: float, unembed: Unembed) -> float:
    """How many positions a forward unembeds.

    Example:
        >>> unembed_positions(4, 10, "all"), unembed_positions(4, 10, "last")
        (40, 4)
    """
    return {"all": batch * seq, "last": batch, "none": 0}[unembed]


def forward_gemms(
    arch: Arch, batch: float, seq: float, *, blocks: int | None = None, unembed: Unembed = "all"
) -> list[Gemm]:
    """Every matrix product of a forward: ``blocks`` blocks (default all), then the unembedding.

    Example:
        >>> len(forward_gemms(LLAMA_13B, 1, 8, blocks=2, unembed="none"))
        14
    """
    n_blocks = arch.n_layers if blocks is None else blocks
    out = block_gemms(arch, batch, seq) * n_blocks
    positions = unembed_positions(batch, seq, unembed)
    if positions:
        out.append(Gemm("unembed", 1, positions, arch.d_model, arch.d_vocab))
    return out


def forward_flops(
    arch: Arch, batch: float, seq: float, *, blocks: int | None = None, unembed: Unembed = "all"
) -> float:
    """FLOPs of a forward over ``batch`` sequences of ``seq`` tokens.

    Args:
        arch: The model.
        batch: Sequences.
        seq: Tokens of each (a mean may be fractional).
        blocks: Blocks run (a forward stopped after block ``blocks - 1``); default all.
        unembed: Positions unembedded (``all``, ``last`` or ``none``).

    Example:
        >>> round(forward_flops(LLAMA_13B, 1, 350) / 350 / 1e9, 1)  # GFLOP per token
        26.0
    """
    gemms = forward_gemms(arch, batch, seq, blocks=blocks, unembed=unembed)
    return float(sum(g.flops for g in gemms))


#: Backward cost of a forward product, by what trains: weight-training backwards compute the
#: gradient of both operands of every product; input-only backwards skip the weights'.
_BACKWARD_FACTOR: dict[str, dict[GemmPart, float]] = {
    "weights": {"linear": 2.0, "attention": 2.0, "unembed": 2.0},
    "inputs": {"linear": 1.0, "attention": 2.0, "unembed": 1.0},
}


def backward_flops(
    arch: Arch,
    batch: float,
    seq: float,
    *,
    mode: Literal["inputs", "weights"] = "weights",
    blocks: int | None = None,
    unembed: Unembed = "all",
) -> float:
    """FLOPs of the backward of a forward, from the loss down through ``blocks`` blocks.

    Args:
        arch: The model.
        batch: Sequences.
        seq: Tokens of each.
        mode: ``weights`` (every weight it passes trains) or ``inputs`` (frozen weights: only
            the gradient of the activations flows).
        blocks: Blocks the gradient goes through, counted from the top (default all; e.g. the
            blocks above a low-rank adapter).
        unembed: Positions the forward unembedded (their gradient flows back too).

    Example:
        >>> f = forward_flops(LLAMA_13B, 1, 100)
        >>> backward_flops(LLAMA_13B, 1, 100) == 2 * f
        True
        >>> f < backward_flops(LLAMA_13B, 1, 100, mode="inputs") < 1.1 * f
        True
    """
    factor = _BACKWARD_FACTOR[mode]
    gemms = forward_gemms(arch, batch, seq, blocks=blocks, unembed=unembed)
    return float(sum(factor[g.part] * g.flops for g in gemms))


@dataclass(frozen=True)
class Pass:
    """``n`` sequences of ``seq`` tokens through a model, ``batch`` at a time.

    Attributes:
        label: What the pass is, for reports (``contrast prompts``, ``held-out``...).
        n: Sequences in all.
        seq: Tokens of each (padding included; a mean may be fractional).
        batch: Sequences per forward (memory only: FLOPs are linear in the batch).
        blocks: Blocks run (``None``: every one; fewer when the forward stops early).
        unembed: Positions unembedded.
        backward: ``none`` (a forward), ``inputs`` or ``weights`` (a training step, see
            :func:`backward_flops`).
        grad_blocks: Blocks the backward goes through from the top (``None``: every one run).
        weight_copies: Memory: extra copies of the weights the pass holds (a copy of the
            model, its gradients, optimiser states).
        shared: Work that another strategy's pass of the same key does too (memoised per
            model and family, e.g. the last-token residuals of the valid prompts): a total over
            strategies counts the largest pass of each key once. The name of a memo key's
            work (:meth:`poser_lens.strategies.memo.MemoKey.shared`), never written by hand.
    """

    label: str
    n: int
    seq: float
    batch: int = 1
    blocks: int | None = None
    unembed: Unembed = "all"
    backward: Backward = "none"
    grad_blocks: int | None = None
    weight_copies: int = 0
    shared: str | None = None

    def flops(self, arch: Arch) -> float:
        """FLOPs of the pass (forward, and backward if it trains).

        Example:
            >>> p = Pass("x", n=4, seq=10, unembed="last")
            >>> p.flops(LLAMA_13B) == forward_flops(LLAMA_13B, 4, 10, unembed="last")
            True
        """
        if self.n <= 0:
            return 0.0
        total = forward_flops(arch, self.n, self.seq, blocks=self.blocks, unembed=self.unembed)
        if self.backward != "none":
            grad = self.grad_blocks if self.grad_blocks is not None else self.blocks
            total += backward_flops(
                arch, self.n, self.seq, mode=self.backward, blocks=grad, unembed=self.unembed
            )
        return total

    @property
    def tokens(self) -> float:
        """Tokens in all."""
        return self.n * self.seq


def total_flops(arch: Arch, passes: Sequence[Pass]) -> float:
    """FLOPs of several passes; of those with the same ``shared`` key only the largest counts.

    Example:
        >>> a = Pass("a", n=10, seq=5, shared="resid")
        >>> b = Pass("b", n=4, seq=5, shared="resid")
        >>> total_flops(LLAMA_13B, [a, b]) == a.flops(LLAMA_13B)
        True
    """
    own = [p.flops(arch) for p in passes if p.shared is None]
    largest: dict[str, float] = {}
    for p in passes:
        if p.shared is not None:
            largest[p.shared] = max(largest.get(p.shared, 0.0), p.flops(arch))
    return float(sum(own) + sum(largest.values()))


def human(flops: float) -> str:
    """A FLOP count in engineering units.

    Example:
        >>> human(3.2e15), human(0), human(float("nan"))
        ('3.2 PFLOP', '0', '-')
    """
    if math.isnan(flops):
        return "-"
    if flops == 0:
        return "0"
    for unit, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if flops >= scale:
            return f"{flops / scale:.3g} {unit}FLOP"
    return f"{flops:.3g} FLOP"


__all__ = [
    "LLAMA_13B",
    "Arch",
    "Gemm",
    "Pass",
    "backward_flops",
    "block_gemms",
    "forward_flops",
    "forward_gemms",
    "human",
    "total_flops",
]
