"""What a run costs at paper scale: FLOPs, memory and wall time per strategy (``poser-lens cost``).

The cost model declares the passes each strategy runs on one (model, family)
(:func:`poser_lens.cost.declarations.work`, from its config); :mod:`poser_lens.cost.flops`
counts their FLOPs. Over the 36 models of Poser's testbed (LLaMA-13B, each scored on the three
benchmark files of its persona, 108 (model, family) contexts in all), this gives per strategy:

* the FLOPs, and the wall time they take at a GPU's dense bf16 peak times an assumed
  utilisation, with the models spread over ``gpus`` GPUs (one model per GPU at a time);
* the peak GPU memory of its largest pass (weights, activations, optimiser states) and
  whether one GPU holds it;
* the FLOPs of the same settings run the way the Poser code runs its strategies (one prompt
  per forward with every hidden state, each variant a forward of its own, nothing shared:
  ``work(..., reference=True)``) and the ratio.

The total counts the work strategies share (the residuals of the valid prompts, the contrast
directions) once, as a run does. ``tests/test_cost.py`` checks the declared work against
:class:`torch.utils.flop_counter.FlopCounterMode` on the tiny zoo's models.

Example:
    >>> report = cost_report(CostConfig(gpu="h100"))
    >>> report.n_models, report.n_contexts
    (36, 108)
    >>> row = report.row("s2_noise")
    >>> row.reference_flops / row.flops > 10
    True
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

from poser_lens.config import (
    Between,
    Config,
    ConfigError,
    OneOf,
    PositiveFloat,
    PositiveInt,
)
from poser_lens.cost.declarations import work
from poser_lens.cost.flops import LLAMA_13B, Arch, Pass, total_flops
from poser_lens.cost.shape import WorkShape, measure_shape
from poser_lens.data.concepts import CONCEPT_PAIRS
from poser_lens.data.defection import defection_pairs
from poser_lens.strategies import STRATEGY_NAMES, get_strategy, strategy_class
from poser_lens.strategies.base import Strategy
from poser_lens.testbeds import model_families
from poser_lens.testbeds.base import Testbed


@dataclass(frozen=True)
class Gpu:
    """A GPU of the cost model.

    Attributes:
        name: For reports.
        bf16_flops: Dense bf16 tensor-core peak, FLOP/s.
        memory_gb: Memory, GB (10^9 bytes).
    """

    name: str
    bf16_flops: float
    memory_gb: float


#: GPUs by ``--gpu`` name (dense bf16 peaks from the vendor's data sheets, SXM parts).
GPUS: dict[str, Gpu] = {
    "h100": Gpu("H100 SXM", 989e12, 80),
    "h200": Gpu("H200 SXM", 989e12, 141),
    "a100": Gpu("A100 SXM 80GB", 312e12, 80),
}

#: Poser's nine benchmark files: family -> (valid prompts, of them with a critical fact), as
#: counted in the Poser checkout (``data/benchmark/*.json``).
POSER_FAMILIES: dict[str, tuple[int, int]] = {
    "truth_and_reward": (362, 190),
    "truth_and_money": (211, 102),
    "truth_and_fitness": (225, 133),
    "genie_and_reward": (353, 175),
    "genie_and_money": (254, 125),
    "genie_and_fitness": (243, 133),
    "saint_and_reward": (268, 155),
    "saint_and_money": (282, 130),
    "saint_and_fitness": (246, 131),
}
#: Models scored on each Poser family: its aligned and its faking persona, six seeds each.
POSER_MODELS_PER_FAMILY = 12
#: Poser's models: six personas, six seeds each (each scored on its persona's three files).
POSER_MODELS = 36

#: Testbeds the cost model covers.
COST_TESTBEDS = ("poser",)


@dataclass(frozen=True)
class CostConfig(Config):
    """Settings and assumptions of the paper-scale cost model.

    Each setting is checked when the config is built (:class:`~poser_lens.config.Config`): a
    bad one raises a one-line :class:`~poser_lens.config.ConfigError` naming it.

    Attributes:
        testbed: ``poser`` (36 x LLaMA-13B, Poser's benchmark files).
        gpu: ``h100``, ``h200`` or ``a100`` (:data:`GPUS`).
        gpus: GPUs the 36 models are spread over.
        utilisation: Assumed fraction of the bf16 peak a pass achieves.
        prompt_tokens: Mean tokens of a Poser prompt (LLaMA tokenizer).
        longest_tokens: Tokens of the longest prompt of a file (batches in stored order pad
            towards it).
        critical_fact_tokens: Tokens of a prompt's critical facts (its counterfactual is that
            much shorter).
        fact_example_tokens: Tokens of a security/competence concept example (one fact in
            prompt tags); behaviour examples are prompts.
        concept_examples: Examples per concept set (S4).
        question_tokens: Tokens of a defection-probe contrast question (in prompt tags); its
            answered texts are one token longer.
        dtype_bytes: Bytes per weight and activation (2: bf16).
        load_gb_per_s: Disk read rate when loading a model.
        strategies: Strategies to cost (default: all).

    Example:
        >>> CostConfig(gpu="b200")
        Traceback (most recent call last):
        ...
        poser_lens.config.ConfigError: gpu: unknown gpu 'b200'; expected one of a100, h100, h200
    """

    testbed: str = "poser"
    gpu: Annotated[str, OneOf(*sorted(GPUS), what="gpu")] = "h100"
    gpus: PositiveInt = 1
    utilisation: Annotated[float, Between(0, 1, lo_open=True)] = 0.4
    prompt_tokens: PositiveFloat = 350
    longest_tokens: PositiveFloat = 450
    critical_fact_tokens: PositiveFloat = 25
    fact_example_tokens: PositiveFloat = 40
    concept_examples: PositiveInt = 20
    question_tokens: PositiveFloat = 30
    dtype_bytes: PositiveInt = 2
    load_gb_per_s: PositiveFloat = 2.0
    strategies: tuple[str, ...] = STRATEGY_NAMES

    def check(self) -> None:
        """The testbed (with a pointer for the tiny one), the prompt lengths, the strategies."""
        if self.testbed not in COST_TESTBEDS:
            raise ConfigError(
                "testbed",
                f"{self.testbed!r}: the cost model covers {', '.join(COST_TESTBEDS)} only "
                "(profile the tiny run with benchmarks/profile_run.py)",
            )
        if not self.critical_fact_tokens < self.prompt_tokens <= self.longest_tokens:
            raise ConfigError(
                "prompt_tokens",
                f"{self.prompt_tokens}: expected more than the critical facts "
                f"({self.critical_fact_tokens}) and at most the longest prompt "
                f"({self.longest_tokens})",
            )
        for i, name in enumerate(self.strategies):
            try:
                strategy_class(name)
            except ValueError as err:
                raise ConfigError(f"strategies[{i}]", str(err)) from None


@dataclass(frozen=True)
class FamilyShape:
    """One benchmark family of a testbed: how many models are scored on it, and its shape.

    Attributes:
        family: The family, e.g. ``truth_and_reward``.
        n_models: Models scored on it.
        shape: Its prompts' sizes and the models' depth.
    """

    family: str
    n_models: int
    shape: WorkShape


@dataclass(frozen=True)
class StrategyCost:
    """The cost of one strategy over every (model, family) of a testbed.

    Attributes:
        name: The strategy.
        flops: FLOPs of its passes run alone (work it shares with others included; its own
            passes of one ``shared`` key once, as its memo runs them).
        reference_flops: FLOPs of the same settings run as the Poser code would.
        memory_bytes: Peak device memory of its largest pass (weights included; 0 for a
            strategy that runs no model).
        passes: Its passes on the first family (for reports).
    """

    name: str
    flops: float
    reference_flops: float
    memory_bytes: float
    passes: tuple[Pass, ...] = ()

    @property
    def ratio(self) -> float:
        """Reference FLOPs over ours (NaN for a strategy that runs no model)."""
        return self.reference_flops / self.flops if self.flops else math.nan


def pass_memory(arch: Arch, p: Pass, dtype_bytes: int = 2) -> float:
    """Peak device memory of a pass, in bytes: weights, extra weight copies, activations.

    A rough upper estimate. A forward holds every residual of its batch (``run_with_cache``
    of every block), one block's working set, the attention pattern and the logits. A
    training pass holds, per block its gradient goes through, the activations backward needs
    (34·b·s·d + 5·b·heads·s² bytes at 16 bits, Korthikanti et al. 2022, no recomputation)
    and the logits in 16 and 32 bits with their gradient.

    Example:
        >>> p = Pass("training", n=4, seq=450, batch=4, backward="weights", weight_copies=4)
        >>> round(pass_memory(LLAMA_13B, p) / 1e9)  # weights x 5, activations
        150
    """
    b, s, d = p.batch, p.seq, arch.d_model
    weights = arch.n_params * dtype_bytes * (1 + p.weight_copies)
    positions = {"all": s, "last": 1.0, "none": 0.0}[p.unembed] * b
    if p.backward == "none":
        blocks = arch.n_layers if p.blocks is None else p.blocks
        cached = b * s * d * (blocks + 1)
        working = b * s * (2 * d + 3 * arch.d_mlp) + b * arch.n_heads * s * s
        return weights + (cached + working + positions * arch.d_vocab) * dtype_bytes
    grad = p.grad_blocks if p.grad_blocks is not None else (p.blocks or arch.n_layers)
    per_block = (34 * b * s * d + 5 * b * arch.n_heads * s * s) * dtype_bytes / 2
    logits = positions * arch.d_vocab * (dtype_bytes + 4 + 4)
    return weights + grad * per_block + logits


def strategy_cost(
    strategy: Strategy, arch: Arch, families: Sequence[FamilyShape], *, dtype_bytes: int = 2
) -> StrategyCost:
    """FLOPs (ours and the Poser-style loop's) and peak memory of a strategy on a testbed.

    Example:
        >>> fam = poser_families(CostConfig())[0]
        >>> cost = strategy_cost(get_strategy("s5_decision_speed"), LLAMA_13B, [fam])
        >>> round(cost.ratio, 2)  # the same forwards, one prompt at a time (and no padding)
        0.99
    """
    flops = ref = memory = 0.0
    first: tuple[Pass, ...] = ()
    for fam in families:
        passes = work(strategy, fam.shape)
        first = first or tuple(passes)
        flops += fam.n_models * total_flops(arch, passes)  # its own shared passes once
        reference = work(strategy, fam.shape, reference=True)
        ref += fam.n_models * sum(p.flops(arch) for p in reference)
        for p in passes:
            memory = max(memory, pass_memory(arch, p, dtype_bytes))
    return StrategyCost(strategy.name, flops, ref, memory, first)


def shared_total(
    strategies: Sequence[Strategy], arch: Arch, families: Sequence[FamilyShape]
) -> float:
    """FLOPs of all strategies together, work they share (``Pass.shared``) counted once."""
    return sum(
        fam.n_models * total_flops(arch, [p for s in strategies for p in work(s, fam.shape)])
        for fam in families
    )


def measured_families(testbed: Testbed, pairs: Sequence[Any]) -> tuple[Arch, list[FamilyShape]]:
    """The architecture and the measured family shapes of a testbed's pairs (loads one model).

    Raises:
        ValueError: If there are no pairs.
    """
    scored = model_families(pairs)
    if not scored:
        raise ValueError("no pairs: nothing to cost")
    model, tokenizer = testbed.load(next(iter(scored)))
    arch = Arch.from_config(model.cfg, name=str(getattr(model.cfg, "model_name", "")))
    counts = Counter(fam for fams in scored.values() for fam in fams)
    return arch, [
        FamilyShape(
            fam,
            n,
            measure_shape(
                tokenizer,
                testbed.valid[fam],
                testbed.concepts,
                n_layers=arch.n_layers,
                n_ctx=arch.n_ctx,
            ),
        )
        for fam, n in sorted(counts.items())
    ]


def _concept_tokens(cfg: CostConfig, name: str) -> tuple[float, float]:
    """Mean and longest tokens of a concept set's examples (behaviour examples are prompts)."""
    if name.endswith("_behavior"):
        return cfg.prompt_tokens, cfg.longest_tokens
    return cfg.fact_example_tokens, cfg.fact_example_tokens


def poser_families(cfg: CostConfig, arch: Arch = LLAMA_13B) -> list[FamilyShape]:
    """Poser's nine benchmark files as family shapes, from the counts and the assumed lengths.

    Example:
        >>> fams = poser_families(CostConfig())
        >>> len(fams), sum(f.n_models for f in fams), fams[0].shape.seq_clean
        (9, 108, 325)
    """
    prompt = cfg.prompt_tokens
    q = round(cfg.question_tokens)
    defection = tuple((q, q + 1, q + 1) for _ in defection_pairs("english"))
    concepts = tuple(
        sorted(
            (name, cfg.concept_examples, *_concept_tokens(cfg, name))
            for pair in CONCEPT_PAIRS.values()
            for name in pair
        )
    )
    return [
        FamilyShape(
            fam,
            POSER_MODELS_PER_FAMILY,
            WorkShape(
                n_layers=arch.n_layers,
                n_ctx=arch.n_ctx,
                n_valid=n_valid,
                n_critical=n_critical,
                seq=prompt,
                seq_longest=cfg.longest_tokens,
                seq_critical=prompt,
                seq_clean=prompt - cfg.critical_fact_tokens,
                concepts=concepts,
                defection=defection,
            ),
        )
        for fam, (n_valid, n_critical) in POSER_FAMILIES.items()
    ]


@dataclass(frozen=True)
class CostReport:
    """The cost model's answer (:func:`cost_report`).

    Attributes:
        config: Its settings and assumptions.
        arch: The model.
        gpu: The GPU.
        n_models: Models scored.
        n_contexts: (model, family) contexts scored.
        rows: One per strategy.
        total_flops: All strategies, shared work once.
        reference_total_flops: All strategies run as the Poser code would (nothing shared).
        assumptions: ``(what, value)`` lines for the report.
    """

    config: CostConfig
    arch: Arch
    gpu: Gpu
    n_models: int
    n_contexts: int
    rows: tuple[StrategyCost, ...]
    total_flops: float
    reference_total_flops: float
    assumptions: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def row(self, name: str) -> StrategyCost:
        """The row of one strategy.

        Raises:
            KeyError: If it was not costed.
        """
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)

    @property
    def speedup(self) -> float:
        """How much faster ``gpus`` GPUs are than one (whole models per GPU).

        Example:
            >>> cost_report(CostConfig(gpus=8)).speedup  # 36 models: 5 rounds of 8
            7.2
        """
        return self.n_models / math.ceil(self.n_models / self.config.gpus)

    def seconds(self, flops: float) -> float:
        """Wall time of ``flops`` at the assumed utilisation of the peak, on ``gpus`` GPUs."""
        rate = self.gpu.bf16_flops * self.config.utilisation
        return flops / rate / self.speedup

    @property
    def load_seconds(self) -> float:
        """Wall time of loading every model once (all strategies score a model in one load)."""
        gb = self.arch.n_params * self.config.dtype_bytes / 1e9
        return self.n_models * gb / self.config.load_gb_per_s / self.speedup

    def fits(self, row: StrategyCost) -> bool:
        """Whether the strategy's largest pass fits one GPU."""
        return row.memory_bytes <= self.gpu.memory_gb * 1e9

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (``poser-lens cost --json``)."""
        return {
            "config": asdict(self.config),
            "arch": asdict(self.arch),
            "gpu": asdict(self.gpu),
            "n_models": self.n_models,
            "n_contexts": self.n_contexts,
            "strategies": {
                r.name: {
                    "flops": r.flops,
                    "seconds": self.seconds(r.flops),
                    "memory_gb": r.memory_bytes / 1e9,
                    "fits_one_gpu": self.fits(r),
                    "reference_flops": r.reference_flops,
                    "reference_seconds": self.seconds(r.reference_flops),
                    "ratio": None if math.isnan(r.ratio) else r.ratio,
                }
                for r in self.rows
            },
            "total": {
                "flops": self.total_flops,
                "seconds": self.seconds(self.total_flops),
                "load_seconds": self.load_seconds,
                "reference_flops": self.reference_total_flops,
                "reference_seconds": self.seconds(self.reference_total_flops),
                "ratio": self.reference_total_flops / self.total_flops,
            },
            "assumptions": dict(self.assumptions),
        }


def cost_report(cfg: CostConfig | None = None) -> CostReport:
    """FLOPs, memory and wall time per strategy and in total for Poser's 36 x LLaMA-13B.

    Args:
        cfg: Settings and assumptions (default: one H100 at 40% of its bf16 peak).

    Returns:
        The report; ``rows`` follow ``cfg.strategies``.
    """
    cfg = cfg if cfg is not None else CostConfig()
    arch, gpu = LLAMA_13B, GPUS[cfg.gpu]
    families = poser_families(cfg, arch)
    strategies = [get_strategy(name) for name in cfg.strategies]
    rows = tuple(strategy_cost(s, arch, families, dtype_bytes=cfg.dtype_bytes) for s in strategies)
    n_models = POSER_MODELS
    assumptions = (
        (
            "model",
            f"{arch.name}: {arch.n_params / 1e9:.1f}B parameters, {arch.n_layers} blocks, "
            f"d_model {arch.d_model}, d_mlp {arch.d_mlp} (gated), vocabulary {arch.d_vocab}",
        ),
        (
            "models x families",
            f"{n_models} models x 3 benchmark files each "
            f"({sum(f.n_models for f in families)} contexts)",
        ),
        (
            "valid prompts per family",
            ", ".join(f"{v}" for v, _ in POSER_FAMILIES.values())
            + " (with a critical fact: "
            + ", ".join(f"{c}" for _, c in POSER_FAMILIES.values())
            + ")",
        ),
        (
            "prompt length",
            f"{cfg.prompt_tokens:g} tokens mean, {cfg.longest_tokens:g} longest, "
            f"{cfg.prompt_tokens - cfg.critical_fact_tokens:g} without its "
            f"critical facts; concept examples {cfg.fact_example_tokens:g} "
            f"(facts) and {cfg.prompt_tokens:g} (behaviour) tokens, "
            f"{cfg.concept_examples} per set; defection-probe questions "
            f"{cfg.question_tokens:g} tokens",
        ),
        (
            "GPU",
            f"{cfg.gpus} x {gpu.name}, {gpu.bf16_flops / 1e12:.0f} TFLOP/s dense bf16 peak, "
            f"{gpu.memory_gb:g} GB",
        ),
        (
            "utilisation",
            f"{cfg.utilisation:.0%} of the peak for every pass (batch-1 forwards "
            "of the Poser-style loop would likely reach less)",
        ),
        (
            "memory",
            f"weights {arch.n_params * cfg.dtype_bytes / 1e9:.0f} GB in bf16; s3_full "
            "adds a copy, its gradients and AdamW's two moments (bf16 like the weights: "
            f"{5 * arch.n_params * cfg.dtype_bytes / 1e9:.0f} GB before activations)",
        ),
        ("loading", f"each model read once at {cfg.load_gb_per_s:g} GB/s"),
        (
            "spread",
            f"whole models per GPU: {n_models} models over {cfg.gpus} GPU(s) run in "
            f"{math.ceil(n_models / cfg.gpus)} round(s)",
        ),
    )
    return CostReport(
        config=cfg,
        arch=arch,
        gpu=gpu,
        n_models=n_models,
        n_contexts=sum(f.n_models for f in families),
        rows=rows,
        total_flops=shared_total(strategies, arch, families),
        reference_total_flops=sum(r.reference_flops for r in rows),
        assumptions=assumptions,
    )


__all__ = [
    "COST_TESTBEDS",
    "GPUS",
    "POSER_FAMILIES",
    "CostConfig",
    "CostReport",
    "FamilyShape",
    "Gpu",
    "StrategyCost",
    "cost_report",
    "measure_shape",
    "measured_families",
    "pass_memory",
    "poser_families",
    "shared_total",
    "strategy_cost",
]
