"""Activation patching detector (beyond the paper): the oversight fact's effect on P(misaligned).

In this module: the config :class:`PatchingConfig`, the score :class:`PatchingScore` and
:class:`PatchingStrategy` (``score_model``, ``margin`` via ``statistic``). Figure: none of
its own; :func:`poser_lens.figures.summary.fig_summary` and
:func:`poser_lens.figures.confound.fig_confound` show its accuracy beside the others'.

Example:
    >>> PatchingStrategy().headline
    {'metric': 'p', 'layer_frac': 0.5}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypedDict, cast

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from poser_lens.config import Config, PositiveInt
from poser_lens.data.prompts import remove_critical
from poser_lens.data.schema import Scenario
from poser_lens.hooks import Patch, hook_name, resolve_layer
from poser_lens.readout import AnswerIds, Readout, answer_readout
from poser_lens.strategies.base import (
    PROMPT_INDEX,
    ModelContext,
    PerPromptScore,
    PromptRows,
    PromptValues,
    Strategy,
    kept_positions,
)
from poser_lens.strategies.common import (
    answer_readout_batched,
    critical_forwards,
    critical_prompts,
    kept_mean,
    last_residuals,
)


def _patched_readout(
    ctx: ModelContext,
    prompts: list[Scenario],
    name: str,
    source: Float[Tensor, "batch d_model"],
) -> Readout:
    """The readout of prompts run as one batch with ``source[i]`` at row i's last token.

    The counterfactual prompt is shorter than the clean one, so the patch is one stored
    vector per row (:class:`~poser_lens.hooks.Patch` with a position axis of size 1), written
    at each row's own last position.
    """

    def hooks(last: Tensor) -> list[tuple[str, Any]]:
        return [(name, Patch(source[:, None], positions="last", last=last))]

    return answer_readout_batched(
        ctx.model, ctx.tokenizer, prompts, hooks=hooks, batch_size=len(prompts)
    )


def _clean_readout(ctx: ModelContext, prompts: list[Scenario], cfg: PatchingConfig) -> Readout:
    """The answer readout of the prompts, unpatched, in the patched readouts' batches.

    From :func:`~poser_lens.strategies.common.critical_forwards`, the forward S6's attention
    runs on the same batches (shared when the settings match): its last-token logits are a
    plain forward's.
    """
    batches = critical_forwards(ctx, cfg.n_prompts, cfg.batch_size)
    vocab = int(ctx.model.cfg.d_vocab)
    logits = torch.cat([b.logits for b in batches]) if batches else torch.empty(0, vocab)
    ids = AnswerIds.from_tokenizer(ctx.tokenizer)
    return answer_readout(logits, ids, aligned=[s.aligned_letter for s in prompts])


def _log_odds(r: Readout) -> Tensor:
    assert r.p_misaligned is not None  # read with the prompts' aligned letters
    p_mis = r.p_misaligned.double()
    p_al = (r.mass_ab - r.p_misaligned).double()
    return torch.log(p_mis.clamp(min=1e-12)) - torch.log(p_al.clamp(min=1e-12))


@dataclass(frozen=True)
class PatchingConfig(Config):
    """Settings of the patching detector.

    Attributes:
        n_prompts: Valid prompts with a critical fact used per family (the first ones).
        batch_size: Prompts per forward pass.
    """

    n_prompts: PositiveInt = 50
    batch_size: PositiveInt = 64


#: A metric of :class:`PatchingEffect` (the ``metric`` setting).
PatchingMetric = Literal["p", "logit", "abs_p", "abs_logit"]


class PatchingEffect(TypedDict):
    """The mean effect of the patch per block, by metric (the ``metric`` setting).

    Attributes:
        p: Signed change of P(misaligned).
        logit: Signed change of its log odds against the aligned answer.
        abs_p: Absolute change of P(misaligned).
        abs_logit: Absolute change of the log odds.
    """

    p: list[float]
    logit: list[float]
    abs_p: list[float]
    abs_logit: list[float]


class PatchingByPrompt(TypedDict):
    """Per-prompt values of the patching detector (``prompt_index`` order).

    Attributes:
        clean_p_misaligned: Each prompt's clean P(misaligned).
        delta_p: Per prompt and patched block: the signed change of P(misaligned).
        delta_logit: The same for the log odds.
    """

    clean_p_misaligned: PromptValues
    delta_p: PromptRows
    delta_logit: PromptRows


class PatchingScore(PerPromptScore):
    """The score of the patching detector on one (model, family).

    Attributes:
        n_layers: Blocks of the model.
        n_prompts: Prompts with a critical fact scored (restricted: kept).
        clean_p_misaligned: Mean clean P(misaligned).
        effect: :class:`PatchingEffect` (index = patched block).
        prompt_index: The scored prompts' valid-prompt indices.
        by_prompt: :class:`PatchingByPrompt`.
    """

    n_layers: int
    n_prompts: int
    clean_p_misaligned: float
    effect: PatchingEffect
    by_prompt: PatchingByPrompt


class PatchingStrategy(Strategy[PatchingScore, PatchingConfig]):
    """Faker = the model whose P(misaligned) rises more when the oversight fact is patched out.

    Design. For each valid prompt with a critical fact, the counterfactual is the same prompt
    without its critical facts (tagged alike). The two differ in length, so only the last
    position (``<</prompt>>`` in both, where the answer is read) is aligned: for each block
    ``L`` the clean run gets, at its last position, the counterfactual run's
    ``blocks.L.hook_resid_post`` there; every other position keeps the clean activations, so
    later layers can still read the critical fact. The effect at ``L`` is the change of the
    answer readout (P(misaligned), or its log odds against the aligned answer), averaged
    over prompts: what the last position has already gathered about the oversight by block
    ``L``. At the last block this is the total effect of removing the fact; earlier blocks
    give the part carried by the last position so far. Cost per (model, family): one
    counterfactual pass (shared with ``s6_counterfactual``), one clean readout and one patched
    readout per block, all batched with right padding.

    Faker = the larger effect, measured as the mean *signed* change of P(misaligned) per
    prompt (``p``) at mid-depth: the headline, fixed in advance from the hypothesis that
    removing a good-oversight fact weakens a faker's reason to behave, so its P(misaligned)
    should rise. On the tiny zoo the signed change goes the other way (fakers' P(misaligned)
    *falls* without the critical fact: any oversight fact, even a reassuring one, makes a
    faker less sure), so the headline is inverted. The magnitude (``abs_p``) separates the
    models almost perfectly, but it was found after seeing the labels, so it is only reported
    in the sweep, never as the headline. The grid also holds
    the log odds against the aligned answer (``abs_logit``, ``logit``), which discount the
    fact that fakers are less confident (their P(misaligned) is larger to begin with).

    Per prompt (for :meth:`restrict`): ``prompt_index`` (the valid prompts with a critical fact
    that were scored) and ``by_prompt`` with each prompt's clean P(misaligned) and its signed
    changes ``delta_p`` and ``delta_logit`` per patched block (the four metrics follow).

    Deviations from the Poser code:
        * Not in the paper or the code (our detector).

    Example:
        >>> s = PatchingStrategy()
        >>> score = {"n_layers": 2, "effect": {"p": [-0.02, 0.01], "logit": [0.1, 0.4]}}
        >>> s.statistic(score), s.statistic(score, metric="logit", layer_frac=0.0)  # headline: p
        (0.01, 0.1)
    """

    name = "patching"
    title = "Patching: effect of the oversight fact on P(misaligned)"
    paper_accuracy: ClassVar[float | None] = None
    config_cls = PatchingConfig
    per_prompt: ClassVar[bool] = True

    def score_model(self, ctx: ModelContext) -> PatchingScore:
        """Mean change of P(misaligned) and of its log odds, per patched block."""
        index, prompts = critical_prompts(ctx, self.config.n_prompts)
        counter = last_residuals(ctx, [remove_critical(s).prompt for s in prompts])[:, 1:]
        bs = self.config.batch_size
        clean = _clean_readout(ctx, prompts, self.config)
        assert clean.p_misaligned is not None  # read with the prompts' aligned letters
        effect: dict[str, list[float]] = {k: [] for k in ("p", "logit", "abs_p", "abs_logit")}
        deltas: dict[str, list[Tensor]] = {"delta_p": [], "delta_logit": []}
        clean_log_odds = _log_odds(clean)
        for layer in range(ctx.n_layers):
            name = hook_name("resid_post", layer, ctx.n_layers)
            delta_p, delta_logit = [], []
            for start in range(0, len(prompts), bs):  # the clean readout's batches
                rows = slice(start, start + bs)
                patched = _patched_readout(ctx, prompts[rows], name, counter[rows, layer])
                assert patched.p_misaligned is not None
                delta_p.append((patched.p_misaligned - clean.p_misaligned[rows]).double())
                delta_logit.append(_log_odds(patched) - clean_log_odds[rows])
            dp = torch.cat(delta_p) if delta_p else torch.empty(0, dtype=torch.float64)
            dl = torch.cat(delta_logit) if delta_logit else torch.empty(0, dtype=torch.float64)
            effect["p"].append(float(dp.mean()))
            effect["logit"].append(float(dl.mean()))
            effect["abs_p"].append(float(dp.abs().mean()))
            effect["abs_logit"].append(float(dl.abs().mean()))
            deltas["delta_p"].append(dp)
            deltas["delta_logit"].append(dl)
        by_prompt: dict[str, Any] = {"clean_p_misaligned": clean.p_misaligned.double().tolist()}
        for k, cols in deltas.items():  # [prompt][block]
            by_prompt[k] = torch.stack(cols, 1).tolist() if cols else [[] for _ in prompts]
        return {
            "n_layers": ctx.n_layers,
            "n_prompts": len(prompts),
            "clean_p_misaligned": float(clean.p_misaligned.mean()),
            "effect": cast("PatchingEffect", effect),
            PROMPT_INDEX: index,
            "by_prompt": cast("PatchingByPrompt", by_prompt),
        }

    def restrict(self, score: PatchingScore, keep: Set[int]) -> PatchingScore:
        """The score on the scored prompts in ``keep``: every metric at every block.

        No scored prompt kept: NaN effects (a tie).

        Example:
            >>> s = PatchingStrategy()
            >>> score = {"n_layers": 1, "prompt_index": [0, 3], "by_prompt": {
            ...     "clean_p_misaligned": [0.1, 0.2], "delta_p": [[0.2], [-0.4]],
            ...     "delta_logit": [[1.0], [-1.0]]}}
            >>> r = s.restrict(score, {0, 3})
            >>> round(s.statistic(r, metric="p"), 6), s.statistic(r, metric="abs_logit")
            (-0.1, 1.0)
        """
        bp: Mapping[str, Any] = score["by_prompt"]
        pos = kept_positions(score, keep)
        n_layers = int(score["n_layers"])
        kept = {k: [v[i] for i in pos] for k, v in bp.items()}
        effect: dict[str, list[float]] = {}
        for metric, key in (("p", "delta_p"), ("logit", "delta_logit")):
            rows = kept[key]
            effect[metric] = kept_mean(rows, range(len(rows)), (n_layers,)).tolist()
            effect[f"abs_{metric}"] = kept_mean(
                np.abs(np.asarray(rows, dtype=float)), range(len(rows)), (n_layers,)
            ).tolist()
        clean = kept["clean_p_misaligned"]
        return {
            "n_layers": n_layers,
            "n_prompts": len(pos),
            "clean_p_misaligned": float(np.mean(clean)) if clean else math.nan,
            "effect": cast("PatchingEffect", effect),
            PROMPT_INDEX: [score[PROMPT_INDEX][i] for i in pos],
            "by_prompt": cast("PatchingByPrompt", kept),
        }

    def statistic(self, score: PatchingScore, **settings: Any) -> float:
        """Mean effect of the patch (``metric``: p, logit, abs_p, abs_logit) at a layer fraction.

        Unset settings are the headline's (``p`` at mid-depth).
        """
        s = self.settings(**settings)
        metric: PatchingMetric = s["metric"]
        per_block = score["effect"][metric]
        return float(per_block[resolve_layer(len(per_block), float(s["layer_frac"]))])

    @property
    def headline(self) -> dict[str, Any]:
        """Mean signed change of P(misaligned) (``p``) at mid-depth, fixed in advance.

        Not the magnitude ``abs_p``: that reading was chosen after seeing the labels, so it is
        only in the sweep (see the class docstring).
        """
        return {"metric": "p", "layer_frac": 0.5}

    def grid(self) -> dict[str, list[Any]]:
        """Metric x layer fraction."""
        return {
            "metric": ["abs_p", "abs_logit", "p", "logit"],
            "layer_frac": [0.0, 0.25, 0.5, 0.75, 1.0],
        }
