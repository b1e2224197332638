"""Whether the check's answer classifiers can be trusted: their agreement with hand labels.

The behavioural check (:mod:`poser_lens.behaviour.check`) classifies every generated answer
twice, with the keyword proxy and with the judge; :func:`agreement` measures both against the
hand-labelled answers (:data:`~poser_lens.behaviour.data.HAND_LABELLED`): the proxy's
Cohen's kappa and the judge's ROC AUC, with bootstrap CIs. :class:`AnswerRow` is one generated
answer and its classifications.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from poser_lens.behaviour.classify import (
    Judge,
    cohen_kappa,
    judge_scores,
    keyword_proxy,
    roc_auc,
)
from poser_lens.behaviour.data import HAND_LABELLED
from poser_lens.stats import bootstrap_ci

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnswerRow:
    """One generated answer and its classifications."""

    framing: str
    request_id: str
    request: str
    decoding: str
    sample: int
    answer: str
    proxy: bool | None = None
    judge: float | None = None


def _proxy(r: AnswerRow) -> bool:
    """The proxy verdict of a classified answer."""
    if r.proxy is None:
        raise ValueError(f"answer to {r.request_id!r} has no proxy verdict")
    return r.proxy


def _judge(r: AnswerRow) -> float:
    """The judge's score of a judged answer."""
    if r.judge is None:
        raise ValueError(f"answer to {r.request_id!r} has no judge score")
    return r.judge


@dataclass(frozen=True)
class Agreement:
    """How the proxy and the judge do against the hand labels, and against each other.

    Attributes:
        n_hand: Hand-labelled examples.
        proxy_accuracy: Proxy accuracy on them, with ``proxy_ci95``.
        judge_accuracy: Judge accuracy (score >= threshold), with ``judge_ci95``.
        judge_auc: Judge ROC AUC against the hand labels (threshold-free).
        hand_agreement: Fraction of hand examples where proxy and judge agree.
        answers_agreement: The same on the generated answers; ``answers_kappa`` its kappa.
        n_answers: Generated answers compared.
        answers_judge_rate: Fraction of generated answers the judge calls compliant
            (``answers_proxy_rate`` the proxy).
        n_labelled_answers: Generated answers with a hand label (the greedy ones of smol).
        labelled_proxy_accuracy: Proxy accuracy on them; ``labelled_judge_accuracy`` and
            ``labelled_judge_auc`` the judge's.
    """

    n_hand: int
    proxy_accuracy: float
    proxy_ci95: tuple[float, float]
    judge_accuracy: float | None = None
    judge_ci95: tuple[float, float] | None = None
    judge_auc: float | None = None
    hand_agreement: float | None = None
    answers_agreement: float | None = None
    answers_kappa: float | None = None
    n_answers: int = 0
    answers_proxy_rate: float | None = None
    answers_judge_rate: float | None = None
    n_labelled_answers: int = 0
    labelled_proxy_accuracy: float | None = None
    labelled_judge_accuracy: float | None = None
    labelled_judge_auc: float | None = None


def hand_labelled_rows(
    judge: Judge | None, *, n: int | None = None, progress: bool = True
) -> list[dict[str, Any]]:
    """Proxy verdict and judge score of the (first ``n``) hand-labelled examples."""
    from tqdm.auto import tqdm

    hand = HAND_LABELLED if n is None else HAND_LABELLED[:n]
    scores: list[float | None] = [None] * len(hand)
    if judge is not None:
        bar = tqdm(total=len(hand), desc="judging hand set", disable=not progress)
        pairs = [(h.request, h.answer) for h in hand]
        scores = list(judge_scores(judge, pairs, progress=bar.update))
        bar.close()
    return [
        {
            "request": h.request,
            "answer": h.answer,
            "label": h.complied,
            "note": h.note,
            "proxy": keyword_proxy(h.request, h.answer),
            "judge": s,
        }
        for h, s in zip(hand, scores, strict=True)
    ]


def agreement(
    hand: Sequence[dict[str, Any]],
    answers: Sequence[AnswerRow] = (),
    *,
    threshold: float = 0.5,
    n_boot: int = 2000,
    seed: int = 0,
    labels: Mapping[tuple[str, str], bool] | None = None,
) -> Agreement:
    """Accuracy of proxy and judge on the hand set; proxy-judge agreement on both sets.

    ``labels`` (hand labels of greedy answers, by ``(framing, request id)``) adds the proxy's
    and the judge's accuracy on the generated answers that have one.
    """
    hand_y = [bool(h["label"]) for h in hand]
    proxy_ok = [h["proxy"] == y for h, y in zip(hand, hand_y, strict=True)]
    kw: dict[str, Any] = {}
    if hand and all(h["judge"] is not None for h in hand):
        verdict = [h["judge"] >= threshold for h in hand]
        judge_ok = [v == y for v, y in zip(verdict, hand_y, strict=True)]
        kw.update(
            judge_accuracy=float(np.mean(judge_ok)),
            judge_ci95=bootstrap_ci(judge_ok, n_boot=n_boot, seed=seed),
            judge_auc=roc_auc(hand_y, [h["judge"] for h in hand]),
            hand_agreement=float(
                np.mean([v == h["proxy"] for v, h in zip(verdict, hand, strict=True)])
            ),
        )
    if answers:
        kw.update(
            n_answers=len(answers), answers_proxy_rate=float(np.mean([r.proxy for r in answers]))
        )
        if all(r.judge is not None for r in answers):
            p = [bool(r.proxy) for r in answers]
            j = [_judge(r) >= threshold for r in answers]
            kw.update(
                answers_agreement=float(np.mean([x == y for x, y in zip(p, j, strict=True)])),
                answers_kappa=cohen_kappa(p, j),
                answers_judge_rate=float(np.mean(j)),
            )
    labels = labels or {}
    lab = [r for r in answers if r.decoding == "greedy" and (r.framing, r.request_id) in labels]
    if lab:
        y = [labels[r.framing, r.request_id] for r in lab]
        kw.update(
            n_labelled_answers=len(lab),
            labelled_proxy_accuracy=float(
                np.mean([r.proxy == t for r, t in zip(lab, y, strict=True)])
            ),
        )
        if all(r.judge is not None for r in lab):
            kw.update(
                labelled_judge_accuracy=float(
                    np.mean([(_judge(r) >= threshold) == t for r, t in zip(lab, y, strict=True)])
                ),
                labelled_judge_auc=roc_auc(y, [_judge(r) for r in lab]),
            )
    return Agreement(
        n_hand=len(hand),
        proxy_accuracy=float(np.mean(proxy_ok)) if hand else float("nan"),
        proxy_ci95=bootstrap_ci(proxy_ok, n_boot=n_boot, seed=seed),
        **kw,
    )
