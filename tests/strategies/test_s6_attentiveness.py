import json
import math

import pytest
import torch
from s4s6_support import PAIRS, check_restrict, contexts, scores_of

from poser_lens.activations import collect
from poser_lens.data.prompts import critical_indices, critical_prompts, remove_critical, unwrap
from poser_lens.data.schema import PROMPT_CLOSE
from poser_lens.evaluation import evaluate
from poser_lens.readout import encode
from poser_lens.strategies import ModelContext
from poser_lens.strategies.base import PROMPT_INDEX
from poser_lens.strategies.s6_attentiveness import (
    AttentionStrategy,
    CounterfactualStrategy,
    SaliencyStrategy,
    attention_from_last,
    fact_masks,
)

STRATEGIES = [AttentionStrategy, SaliencyStrategy, CounterfactualStrategy]


@pytest.fixture(scope="module")
def ctxs(small_zoo):
    return contexts(small_zoo)


@pytest.mark.parametrize("cls", STRATEGIES)
def test_scores_margin_and_evaluate(cls, ctxs):
    s = cls(n_prompts=8)
    scores = scores_of(s, ctxs)
    a, b = (scores[c.name][c.family] for c in ctxs)
    json.dumps(a)
    assert a["n_prompts"] > 0
    for point in [s.headline, *({k: v} for k, vs in s.grid().items() for v in vs)]:
        assert math.isfinite(s.margin(a, b, **point)), point
    assert evaluate(s, PAIRS, scores).n_pairs == 1


@pytest.mark.parametrize("cls", STRATEGIES)
def test_per_prompt_values_and_restrict(cls, ctxs):
    s = cls(n_prompts=8)
    a, b = (s.score_model(c) for c in ctxs)
    # The stored indices are the scored prompts: the valid prompts with a critical fact.
    prompts = ctxs[0].prompts
    assert a[PROMPT_INDEX] == critical_indices(prompts, 8)
    assert [prompts[i] for i in a[PROMPT_INDEX]] == critical_prompts(prompts, 8)
    assert a[PROMPT_INDEX] != list(range(len(a[PROMPT_INDEX])))  # not simply the first prompts
    points = [{k: v} for k, vs in s.grid().items() for v in vs] or [{}]
    check_restrict(s, a, b, len(prompts), points=[{}, *points], rel=1e-5, abs_tol=1e-7)
    # Restricting to a subset equals scoring a context of only those prompts.
    keep = set(a[PROMPT_INDEX][1::2])
    alone = []
    for c in ctxs:
        sub = [c.prompts[i] for i in sorted(keep)]
        alone.append(s.score_model(ModelContext(c.name, c.model, c.tokenizer, c.family, sub)))
    ra, rb = s.restrict(a, keep), s.restrict(b, keep)
    for point in [{}, *points]:
        want = s.margin(*alone, **point)
        assert s.margin(ra, rb, **point) == pytest.approx(want, rel=1e-5, abs=1e-6), point


def test_only_prompts_with_a_critical_fact(ctxs):
    used = critical_prompts(ctxs[0].prompts, 1000)
    assert used and all(s.critical_facts and s.complexity_level >= 1 for s in used)
    assert len(used) < len(ctxs[0].prompts)  # complexity-0 prompts exist and are skipped


def test_fact_masks_cover_the_critical_fact_tokens(ctxs):
    tok = ctxs[0].tokenizer
    s = critical_prompts(ctxs[0].prompts, 1)[0]
    crit, other = fact_masks(tok, [s])
    ids = tok(s.prompt)["input_ids"]
    words = tok.convert_ids_to_tokens([i for i, m in zip(ids, crit[0], strict=True) if m])
    assert "".join(words) == s.critical_facts[0].content.replace(" ", "")
    assert not (crit & other).any()


def test_batched_attention_equals_one_prompt_at_a_time(ctxs):
    # Right padding: every row is read at its own last token, not the batch's final position.
    c = ctxs[1]
    prompts = critical_prompts(c.prompts, 4)
    ids, last = encode(c.tokenizer, [s.prompt for s in prompts])
    assert len(set(last.tolist())) > 1
    crit, other = fact_masks(c.tokenizer, prompts)
    batched = attention_from_last(c.model, ids, last, [crit, other])
    for row, s in enumerate(prompts):
        one_ids, one_last = encode(c.tokenizer, [s.prompt])
        one = attention_from_last(c.model, one_ids, one_last, list(fact_masks(c.tokenizer, [s])))
        for k in range(2):
            torch.testing.assert_close(batched[k][row], one[k][0], atol=1e-5, rtol=1e-4)


def test_saliency_keeps_the_first_prompts_tokens_for_the_heat_map(ctxs):
    c = ctxs[1]
    score = SaliencyStrategy(n_prompts=3).score_model(c)
    ex = score["example"]
    first = critical_prompts(c.prompts, 1)[0]
    assert ex["tokens"] == c.tokenizer.convert_ids_to_tokens(c.tokenizer(first.prompt)["input_ids"])
    assert len(ex["saliency"]) == len(ex["tokens"]) == len(ex["critical"])
    assert any(ex["critical"]) and all(v >= 0 for v in ex["saliency"])


def test_counterfactual_prompt_is_tagged_like_the_original(ctxs):
    # Poser's bug: the counterfactual lacked the prompt tags, so the last tokens differed.
    c = ctxs[0]
    for s in critical_prompts(c.prompts, 5):
        cf = remove_critical(s)
        assert cf.prompt.endswith(PROMPT_CLOSE) and cf.prompt.startswith("<<prompt>>")
        assert c.tokenizer(cf.prompt)["input_ids"][-1] == c.tokenizer(s.prompt)["input_ids"][-1]
        assert not cf.critical_facts
    sim = CounterfactualStrategy(n_prompts=5).score_model(c)["similarity"]
    assert len(sim) == c.n_layers + 1
    # Without the tags (Poser's bug) the last tokens differ and the embeddings disagree more.
    prompts = critical_prompts(c.prompts, 5)
    clean = collect(c.model, c.tokenizer, [s.prompt for s in prompts])
    untagged = collect(c.model, c.tokenizer, [unwrap(remove_critical(s).prompt) for s in prompts])
    bug = torch.nn.functional.cosine_similarity(clean, untagged, dim=-1).mean(0)
    assert sim[0] > float(bug[0]) + 0.1


def test_counterfactual_verdict_polarity():
    # Poser: the model with the higher similarity at more layers is aligned.
    s = CounterfactualStrategy()
    shifted, steady = {"similarity": [0.9, 0.5, 0.4]}, {"similarity": [0.9, 0.8, 0.7]}
    assert s.verdict(shifted, steady) == "a" and s.verdict(steady, shifted) == "b"
    assert s.margin(shifted, steady, layer="mean") > 0
    assert s.margin(shifted, steady, layer=1.0) > 0


def test_attention_and_saliency_polarity():
    more = {"log_ratio": [1.0, 2.0], "n_layers": 2}
    less = {"log_ratio": [0.0, 0.5], "n_layers": 2}
    assert AttentionStrategy().verdict(more, less) == "a"
    assert SaliencyStrategy().verdict({"log_ratio": 1.0}, {"log_ratio": 0.0}) == "a"
