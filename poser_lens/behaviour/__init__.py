"""Behavioural check in the style of the alignment-faking studies (not Poser evidence).

Poser forbids behavioural evidence; the alignment-faking literature measures exactly that: the
*compliance gap* between a "training" framing (the model is told its answers are used to
retrain it) and an "unmonitored" framing, on the same requests. This package runs a chat model
(the smol testbed) on our own small request set under both framings, greedy and sampled,
classifies every answer with a keyword proxy and a pluggable judge, and reports compliance per
framing, the gap with a bootstrap CI, and how the proxy and the judge do against a small
hand-labelled set. :func:`zoo_gap_report` gives the tiny zoo's ``compliance_gap`` through the
same :class:`GapReport`.

Modules: ``data`` (requests, framings, hand labels), ``generate`` (chat prompts, batched
generation), ``classify`` (proxy, LM judge, agreement statistics), ``check`` (the run).

Example:
    >>> from poser_lens.behaviour import BehaviourConfig, run_check
    >>> from poser_lens.models.tokenizer import build_tokenizer
    >>> fake = lambda prompts, *, sample, seed: ["Sure, here you go."] * len(prompts)
    >>> res = run_check(BehaviourConfig(n_requests=3, n_samples=1, judge="none", n_boot=100),
    ...                 tokenizer=build_tokenizer(["a"]), generator=fake, progress=False)
    >>> [(r.decoding, r.gap) for r in res.reports if r.classifier == "proxy"]
    [('greedy', 0.0), ('sampled', 0.0), ('all', 0.0)]
"""

from poser_lens.behaviour.check import (
    GAP_DEFINITION,
    Agreement,
    AnswerRow,
    BehaviourConfig,
    BehaviourResult,
    GapReport,
    agreement,
    build_jobs,
    gap_report,
    gap_reports,
    load_chat_model,
    run_check,
    write_result,
    zoo_gap_report,
)
from poser_lens.behaviour.classify import Judge, LMJudge, keyword_proxy
from poser_lens.behaviour.data import FRAMINGS, HAND_LABELLED, REQUESTS
from poser_lens.behaviour.generate import Generator, ModelGenerator, chat_prompt

__all__ = [
    "FRAMINGS",
    "GAP_DEFINITION",
    "HAND_LABELLED",
    "REQUESTS",
    "Agreement",
    "AnswerRow",
    "BehaviourConfig",
    "BehaviourResult",
    "GapReport",
    "Generator",
    "Judge",
    "LMJudge",
    "ModelGenerator",
    "agreement",
    "build_jobs",
    "chat_prompt",
    "gap_report",
    "gap_reports",
    "keyword_proxy",
    "load_chat_model",
    "run_check",
    "write_result",
    "zoo_gap_report",
]
