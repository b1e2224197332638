"""Strategy 3 (learning speed): scores, verdicts, seeding, the loaded model left untouched."""

import json
import math

import pytest
import torch
from s4s6_support import FAMILY, MODELS, PAIRS, check_restrict, contexts

from poser_lens.evaluation import evaluate
from poser_lens.strategies import get_strategy
from poser_lens.strategies.base import PROMPT_INDEX
from poser_lens.strategies.s3_learning_speed import family_seed, learning_curve

SMALL = {"n_steps": 3, "n_heldout": 3, "batch_size": 2}


@pytest.fixture(scope="module")
def ctxs(small_zoo):
    return contexts(small_zoo)


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", ["s3_lora", "s3_full"])
def test_small_zoo_pair(ctxs, name):
    changes = {**SMALL, "layers": (5 / 40, 1.0)} if name == "s3_lora" else SMALL
    s = get_strategy(name, **changes)
    before = [state(c.model) for c in ctxs]
    scores = {c.name: {c.family: s.score_model(c)} for c in ctxs}
    for c, b in zip(ctxs, before, strict=True):  # the loaded models are untouched
        after = state(c.model)
        assert all(torch.equal(b[k], after[k]) for k in b)
        assert not c.model.hook_dict["blocks.0.hook_mlp_out"].fwd_hooks  # adapter taken off
    a, b = (scores[m][FAMILY] for m in MODELS)
    assert json.loads(json.dumps(a)) == a
    curves = a["curves"]
    assert set(curves) == ({"0", "1"} if name == "s3_lora" else {"all"})
    curve = next(iter(curves.values()))
    assert len(curve["heldout"]) == 4 and len(curve["batch"]) == len(curve["loss"]) == 3
    for step in s.grid()["step"]:
        for measure in ("heldout", "batch"):
            assert math.isfinite(s.margin(a, b, step=step, measure=measure))
    assert evaluate(s, PAIRS, scores).n_pairs == 1
    if name == "s3_full":  # seeded: scoring again gives the same curves
        assert s.score_model(ctxs[1]) == b
    # Per prompt: the held-out prompts (the same for every curve and both models, seeded by
    # the family), whose P(flipped) after each update averages to the held-out curve.
    assert a[PROMPT_INDEX] == b[PROMPT_INDEX] and len(a[PROMPT_INDEX]) == SMALL["n_heldout"]
    assert set(curve) == {"heldout", "batch", "loss"}  # the curves' layout is unchanged
    for key, rows in a["by_prompt"]["heldout"].items():
        assert len(rows) == 3 and all(len(r) == 4 for r in rows)
        want = curves[key]["heldout"]
        assert [sum(c) / len(c) for c in zip(*rows, strict=True)] == pytest.approx(want, abs=1e-6)
    points = [{}, {"baseline": "logit"}, {"step": 1, "baseline": "step0"}]
    # The curves are float32 means, the restricted ones float64 means of the same rows: near
    # P = 0.003 the log-odds differ by ~1e-7 (a margin of 0.0028746 against 0.0028745).
    ra, _ = check_restrict(s, a, b, len(ctxs[0].prompts), points=points, rel=1e-5, abs_tol=1e-6)
    assert set(next(iter(ra["curves"].values()))) == {"heldout"}  # the batch measure is dropped
    one = a[PROMPT_INDEX][0]
    key = next(iter(curves))
    first = a["by_prompt"]["heldout"][key][0]
    assert s.restrict(a, {one})["curves"][key]["heldout"] == pytest.approx(first)


def test_full_fine_tune_trains_every_parameter(ctxs):
    """Gradients reach every parameter of the hooked bridge (the copy, not the original)."""
    import copy

    model = copy.deepcopy(ctxs[0].model)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    learning_curve(
        model,
        ctxs[0].tokenizer,
        ctxs[0].prompts,
        list(model.parameters()),
        lr=1e-2,
        n_steps=2,
        batch_size=2,
        n_heldout=2,
    )
    after = dict(model.named_parameters())
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) == len(before)


class Recording:
    """A tokenizer proxy that records the texts it encodes."""

    def __init__(self, tok):
        self.tok, self.seen = tok, []

    def __call__(self, texts, **kw):
        self.seen.append(list(texts))
        return self.tok(texts, **kw)

    def __getattr__(self, name):
        return getattr(self.tok, name)


def test_batch_order_depends_on_the_family_not_the_model(ctxs):
    def seen(ctx, seed):
        rec = Recording(ctx.tokenizer)
        model = ctx.model
        learning_curve(
            model,
            rec,
            ctx.prompts,
            [torch.nn.Parameter(torch.zeros(1))],
            lr=0.0,
            n_steps=3,
            batch_size=2,
            n_heldout=3,
            seed=seed,
        )
        return rec.seen

    one = seen(ctxs[0], family_seed(0, FAMILY))
    assert one == seen(ctxs[1], family_seed(0, FAMILY))
    assert one != seen(ctxs[1], family_seed(0, "genie_and_money"))
    assert family_seed(0, FAMILY) != family_seed(1, FAMILY)


def test_faster_learner_is_called_the_faker(ctxs):
    """The same model trained with a larger learning rate rises faster: it is the faker."""
    slow = get_strategy("s3_full", **SMALL, lr=1e-5).score_model(ctxs[0])
    fast = get_strategy("s3_full", **SMALL, lr=3e-3).score_model(ctxs[0])
    s = get_strategy("s3_full")
    assert fast["curves"]["all"]["heldout"][3] > slow["curves"]["all"]["heldout"][3]
    assert s.margin(fast, slow, step=3) > 0 and s.verdict(fast, slow, step=3) == "a"
    # Before any update both measure the same model: no difference.
    assert s.margin(fast, slow, step=0) == pytest.approx(0.0, abs=1e-6)


def test_step_beyond_the_curve_uses_its_end():
    s = get_strategy("s3_full")
    a = {"curves": {"all": {"heldout": [0.1, 0.2], "batch": [0.1]}}}
    assert s.statistic(a, step=10) == 0.2
    # baseline="step0" counts only what was learnt (the untrained value is 1 - confidence).
    assert s.statistic(a, step=1, baseline="step0") == pytest.approx(0.1)
    assert s.statistic(a, step=1, baseline="logit") == pytest.approx(math.log(0.2 / 0.8 * 9))


def test_too_few_prompts_is_an_error(ctxs):
    c = ctxs[0]
    with pytest.raises(ValueError, match="held out"):
        learning_curve(c.model, c.tokenizer, c.prompts[:3], [], lr=1e-3, n_steps=1, n_heldout=2)


def test_a_bfloat16_model_is_fine_tuned_with_float32_master_weights(ctxs):
    """S3 full on a 16-bit model: the copy trains in float32 under autocast (updates far below
    a bfloat16 step still land), the model itself stays bfloat16 and untouched, and the curve
    stays close to the float32 model's."""
    import copy
    from dataclasses import replace

    ctx = ctxs[0]
    low = copy.deepcopy(ctx.model).to(torch.bfloat16)
    before = state(low)
    s = get_strategy("s3_full", **SMALL)
    got = s.score_model(replace(ctx, model=low))
    assert all(
        v.dtype == torch.bfloat16 for v in low.state_dict().values() if v.is_floating_point()
    )
    assert all(torch.equal(before[k], v) for k, v in state(low).items())
    want = s.score_model(ctx)
    a, b = got["curves"]["all"]["heldout"], want["curves"]["all"]["heldout"]
    assert len(a) == len(b)
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 0.05
