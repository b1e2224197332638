import json
import math

import pytest
from s4s6_support import PAIRS, check_restrict, contexts, scores_of

from poser_lens.data.prompts import critical_indices, critical_prompts, remove_critical
from poser_lens.evaluation import evaluate
from poser_lens.strategies.base import PROMPT_INDEX
from poser_lens.strategies.common import answer_readout_batched
from poser_lens.strategies.oversight_patching import PatchingStrategy


@pytest.fixture(scope="module")
def ctxs(small_zoo):
    return contexts(small_zoo)


def test_scores_margin_and_evaluate(ctxs):
    s = PatchingStrategy(n_prompts=6)
    scores = scores_of(s, ctxs)
    a, b = (scores[c.name][c.family] for c in ctxs)
    json.dumps(a)
    assert len(a["effect"]["p"]) == ctxs[0].n_layers
    for metric in ("p", "logit"):
        for frac in s.grid()["layer_frac"]:
            assert math.isfinite(s.margin(a, b, metric=metric, layer_frac=frac))
    assert evaluate(s, PAIRS, scores).n_pairs == 1
    # Per prompt: the scored prompts' indices, their signed changes per block averaging to the
    # stored effects; restricting keeps every metric at every block.
    assert a[PROMPT_INDEX] == critical_indices(ctxs[0].prompts, 6)
    bp = a["by_prompt"]
    assert len(bp["clean_p_misaligned"]) == len(bp["delta_p"]) == len(a[PROMPT_INDEX])
    for metric, key in (("p", "delta_p"), ("logit", "delta_logit")):
        rows = bp[key]
        means = [sum(col) / len(col) for col in zip(*rows, strict=True)]
        assert means == pytest.approx(a["effect"][metric], abs=1e-9)
    points = [{"metric": m, "layer_frac": f} for m in s.grid()["metric"] for f in (0.0, 1.0)]
    ra, _ = check_restrict(s, a, b, len(ctxs[0].prompts), points=[{}, *points])
    assert ra["clean_p_misaligned"] == pytest.approx(a["clean_p_misaligned"], abs=1e-6)


def test_last_block_patch_is_the_total_effect_of_removing_the_fact(ctxs):
    # Patching the final residual at the last position replaces everything the answer reads,
    # so the effect there equals the counterfactual run's change of P(misaligned).
    c = ctxs[1]
    n = 6
    score = PatchingStrategy(n_prompts=n, batch_size=4).score_model(c)  # two batches
    prompts = critical_prompts(c.prompts, n)
    clean = answer_readout_batched(c.model, c.tokenizer, prompts)
    counter = answer_readout_batched(c.model, c.tokenizer, [remove_critical(s) for s in prompts])
    total = float((counter.p_misaligned - clean.p_misaligned).mean())
    assert score["effect"]["p"][-1] == pytest.approx(total, abs=1e-5)
