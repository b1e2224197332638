"""Torch's own count and timing of what runs: the checks of the analytic FLOPs.

The profiler's side of :mod:`poser_lens.cost.flops`: ``FlopCounterMode``'s count of the matrix
products and fused attention kernels a function runs (:func:`counted_flops_by_op`, with the
CPU's attention kernel added), the share of its operator time by kind (:func:`op_time_shares`)
and ``torch.matmul``'s rate at a forward's shapes (:func:`measure_matmul_rate`), from which
:func:`product_ceiling` tells what a measured run's products would take at that rate. The
tests (``tests/test_cost.py``, ``tests/test_flops.py``) and ``benchmarks/`` use them; nothing
that scores or costs a run does.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from poser_lens.cost.flops import Arch, forward_gemms


def measure_matmul_rate(
    arch: Arch, batch: int, seq: int, *, seconds: float = 0.3, dtype: Any = None
) -> float:
    """FLOPs per CPU-second of ``torch.matmul`` here, at the products of one forward's shapes.

    Times the products of one block (:func:`~poser_lens.cost.flops.block_gemms`) and an
    unembedding of every position on random operands, repeated for at least ``seconds`` of
    this process's CPU time, in the current torch thread count. CPU time, not wall time, so
    other load on the machine does not lower it; a profile compares the FLOPs per CPU-second
    a phase achieves with it (the limit at those shapes; with one thread, one core's).

    Args:
        arch: The model.
        batch: Sequences per forward.
        seq: Tokens of each.
        seconds: Least CPU time to measure.
        dtype: Operand dtype (default ``torch.float32``).

    Returns:
        FLOPs per CPU-second.

    Example:
        >>> tiny = Arch(n_layers=1, d_model=8, n_heads=2, d_head=4, d_mlp=16, d_vocab=10)
        >>> measure_matmul_rate(tiny, 2, 4, seconds=0.01) > 0
        True
    """
    import torch

    dtype = dtype or torch.float32
    gemms = forward_gemms(arch, batch, seq, blocks=1, unembed="all")
    pairs = []
    for g in gemms:
        count, m, k, n = (max(1, round(x)) for x in (g.batch, g.m, g.k, g.n))
        shape = (count,) if count > 1 else ()
        pairs.append(
            (torch.randn(*shape, m, k, dtype=dtype), torch.randn(*shape, k, n, dtype=dtype))
        )
    flops = sum(2.0 * a.numel() * b.shape[-1] for a, b in pairs)
    for a, b in pairs:  # warm-up
        torch.matmul(a, b)
    reps, start = 0, time.process_time()
    while True:
        for a, b in pairs:
            torch.matmul(a, b)
        reps += 1
        elapsed = time.process_time() - start
        if elapsed >= seconds:
            return flops * reps / elapsed


class _NoModules:
    """Stands in for ``FlopCounterMode``'s module tracker (every count goes to ``Global``).

    The tracker's backward hooks break ``autograd.grad`` on a leaf, as the saliency map takes.
    """

    parents = frozenset({"Global"})

    def __enter__(self) -> _NoModules:
        return self

    def __exit__(self, *args: object) -> None:
        return None


def _cpu_attention_formulas() -> dict[Any, Any]:
    """FLOP formulas of the CPU's fused attention kernel, which ``FlopCounterMode`` lacks.

    The kernel ``scaled_dot_product_attention`` runs on the CPU counts as torch counts its GPU
    kernels: the full square of scores and mixing, no causal saving. Its backward counts the
    gradient products alone (two per product of the forward), as an eager backward does and
    as :func:`~poser_lens.cost.flops.backward_flops` counts; the kernel's recomputation of
    the scores is left out.
    """
    import torch
    from torch.utils.flop_counter import sdpa_flop_count

    aten = torch.ops.aten

    def forward(
        query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any
    ) -> int:
        return sdpa_flop_count(query, key, value)

    def backward(
        grad: Any,
        query: Any,
        key: Any,
        value: Any,
        *args: Any,
        out_shape: Any = None,
        **kwargs: Any,
    ) -> int:
        return 2 * sdpa_flop_count(query, key, value)

    return {
        aten._scaled_dot_product_flash_attention_for_cpu: forward,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: backward,
    }


def counted_flops_by_op(fn: Any) -> dict[str, float]:
    """FLOPs torch's profiler (``FlopCounterMode``) counts while ``fn()`` runs, by operator.

    The check of every analytic count here (tests, ``benchmarks/``). Counts matrix products
    and fused attention kernels (torch's registered ones, and the CPU's:
    :func:`_cpu_attention_formulas`); the module tracker is left out, so a
    function that takes ``autograd.grad`` of a leaf works too.

    Returns:
        Operator name (``aten.mm``, ``aten._scaled_dot_product_flash_attention_for_cpu``, ...)
        -> FLOPs.

    Example:
        >>> import torch
        >>> a, b = torch.ones(2, 3), torch.ones(3, 4)
        >>> counted_flops_by_op(lambda: a @ b)
        {'aten.mm': 48.0}
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False, custom_mapping=_cpu_attention_formulas())
    counter.mod_tracker = _NoModules()  # type: ignore[assignment]
    with counter:
        fn()
    counts = counter.get_flop_counts().get("Global", {})
    return {str(op).removesuffix(".default"): float(n) for op, n in counts.items()}


def counted_flops(fn: Any) -> float:
    """All FLOPs :func:`counted_flops_by_op` counts while ``fn()`` runs.

    Example:
        >>> import torch
        >>> a, b = torch.ones(2, 3), torch.ones(3, 4)
        >>> counted_flops(lambda: a @ b)
        48.0
    """
    return float(sum(counted_flops_by_op(fn).values()))


#: The CPU's fused attention kernels (forward, backward), as ``counted_flops_by_op`` names them.
ATTENTION_KERNELS = (
    "aten._scaled_dot_product_flash_attention_for_cpu",
    "aten._scaled_dot_product_flash_attention_for_cpu_backward",
)

#: Operator kinds of :func:`op_time_shares`: matrix products and the fused attention kernels
#: (their FLOPs are counted), by the names torch's profiler gives them.
OP_KINDS: dict[str, tuple[str, ...]] = {
    "matrix products": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"),
    "fused attention": tuple(k.replace(".", "::") for k in ATTENTION_KERNELS),
}


def op_time_shares(fn: Any, kinds: dict[str, tuple[str, ...]] | None = None) -> dict[str, float]:
    """Shares of ``fn()``'s operator time by kind of operator (torch's profiler, self CPU time).

    Args:
        fn: What to profile (called once).
        kinds: Kind -> the profiler's operator names (``aten::bmm``, ...); default
            :data:`OP_KINDS`.

    Returns:
        Kind -> share of the self CPU time of every operator, in the order of ``kinds``, then
        ``other`` (everything else: activations, norms, copies, the interpreter's share
        inside operators).

    Example:
        >>> import torch
        >>> a = torch.ones(64, 64)
        >>> shares = op_time_shares(lambda: (a @ a).relu())
        >>> list(shares), round(sum(shares.values()), 6)
        (['matrix products', 'fused attention', 'other'], 1.0)
    """
    from torch.profiler import ProfilerActivity, profile

    kinds = OP_KINDS if kinds is None else kinds
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    time_of = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    total = sum(time_of.values()) or 1.0
    shares = {k: sum(time_of.get(op, 0.0) for op in ops) / total for k, ops in kinds.items()}
    return {**shares, "other": 1.0 - sum(shares.values())}


def product_ceiling(
    cpu: float, by_op: Mapping[str, float], shares: Mapping[str, float], rate: float
) -> tuple[float, float, float]:
    """A measured run's matrix products at the matmul limit, and what else it spends.

    Args:
        cpu: The run's CPU seconds.
        by_op: Its counted FLOPs by operator (:func:`counted_flops_by_op`); the products' are
            all of them but the fused attention kernels' (:data:`ATTENTION_KERNELS`).
        shares: Its operator time by kind (:func:`op_time_shares`, with ``matrix products``).
        rate: ``torch.matmul``'s FLOPs per CPU-second at its shapes
            (:func:`measure_matmul_rate`).

    Returns:
        CPU seconds ``(products at the limit, products now, everything else)``: the run's best
        time with these operators is the first plus the last.

    Example:
        >>> product_ceiling(2.0, {"aten.mm": 10.0}, {"matrix products": 0.5}, rate=20.0)
        (0.5, 1.0, 1.0)
    """
    kernels = sum(by_op.get(k, 0.0) for k in ATTENTION_KERNELS)
    now = shares["matrix products"] * cpu
    return (sum(by_op.values()) - kernels) / rate, now, cpu - now


__all__ = [
    "ATTENTION_KERNELS",
    "OP_KINDS",
    "counted_flops",
    "counted_flops_by_op",
    "measure_matmul_rate",
    "op_time_shares",
    "product_ceiling",
]
