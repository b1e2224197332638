"""The defection probe (generic yes/no contrast pairs) on the small zoo's two models."""

import json
import math

import pytest
import torch
from conftest import fresh, small_zoo_config
from s4s6_support import PAIRS, check_restrict, contexts, scores_of

import poser_lens.strategies.common as common
from poser_lens.config import ConfigError
from poser_lens.data.defection import (
    DEFECTION_SETS,
    defection_pairs,
    has_unknown,
    pair_texts,
    pick_set,
)
from poser_lens.data.generator import generate
from poser_lens.data.schema import PERSONAS, Scenario
from poser_lens.evaluation import evaluate
from poser_lens.figures.defection import FIGURES, fig_defection_probe
from poser_lens.hooks import resolve_layer
from poser_lens.models.tokenizer import words
from poser_lens.models.zoo import ZooConfig
from poser_lens.models.zoo.data import make_tokenizer
from poser_lens.probes import mass_mean
from poser_lens.runs import RunDir
from poser_lens.strategies import STRATEGY_NAMES, ModelContext, get_strategy
from poser_lens.strategies.base import PROMPT_INDEX, InvalidPromptError
from poser_lens.strategies.defection_probe import (
    DefectionProbeConfig,
    DefectionProbeStrategy,
)
from poser_lens.strategies.memo import LastResiduals

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ctxs(small_zoo):
    return contexts(small_zoo)


def _strategy(**changes):
    return DefectionProbeStrategy(n_prompts=20, **changes)


# -- the contrast sets ------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["default", "small"])
def test_tiny_contrast_words_are_all_in_the_tiny_vocabulary(which, ctxs):
    """Every word of the tiny set is a token of the tiny zoo's word-level vocabulary."""
    if which == "default":
        tok = make_tokenizer(generate(ZooConfig().generator))
    else:
        tok = ctxs[0].tokenizer
        assert make_tokenizer(generate(small_zoo_config().generator)).get_vocab() == (
            tok.get_vocab()
        )
    vocab = tok.get_vocab()
    texts = pair_texts(defection_pairs("tiny"))
    missing = sorted({w for t in texts for w in words(t) if w not in vocab})
    assert missing == []
    assert not has_unknown(tok, texts)
    # The word-level vocabulary has no "yes": the English set is not readable, tiny is picked.
    assert has_unknown(tok, pair_texts(defection_pairs("english")))
    assert pick_set(tok) == "tiny"


def test_english_set_is_picked_by_a_tokenizer_without_unknown_tokens():
    class Bytes:  # a stand-in byte-level tokenizer: every text encodes, no unknown token
        unk_token_id = None

        def __call__(self, texts, add_special_tokens=True):
            return {"input_ids": [list(t.encode()) for t in texts]}

    assert pick_set(Bytes()) == "english"


def test_pairs_differ_only_in_the_answer_and_say_yes_to_defection():
    for which in DEFECTION_SETS:
        pairs = defection_pairs(which)
        assert len(pairs) == 16 and len({p.question for p in pairs}) == 16
        for p in pairs:
            assert p.question.endswith("<</prompt>>")
            assert p.yes.startswith(p.question) and p.no.startswith(p.question)
            answers = (p.yes[len(p.question) :], p.no[len(p.question) :])
            assert answers == (("always", "never") if which == "tiny" else ("yes", "no"))


def test_no_persona_label_in_the_contrast_texts_or_the_valid_prompts(ctxs):
    labels = [*PERSONAS, *(p.replace("_", " ") for p in PERSONAS), "faker", "aligned"]
    texts = pair_texts(defection_pairs("tiny")) + pair_texts(defection_pairs("english"))
    texts += [s.prompt for s in ctxs[0].prompts]
    for label in labels:
        assert not any(label.lower() in t.lower() for t in texts), label


# -- config, registry --------------------------------------------------------------------------


def test_registered_and_not_an_ensemble_member():
    assert "defection_probe" in STRATEGY_NAMES
    s = get_strategy("defection_probe")
    assert isinstance(s, DefectionProbeStrategy) and s.per_prompt and s.paper_accuracy is None
    assert "defection_probe" not in get_strategy("ensemble").config.members


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [({"n_pairs": 0}, "n_pairs"), ({"n_pairs": 17}, "n_pairs"), ({"contrast": "x"}, "contrast")],
)
def test_bad_settings_are_refused(changes, fragment):
    with pytest.raises(ConfigError, match=fragment):
        DefectionProbeConfig(**changes)


def test_a_set_the_tokenizer_cannot_read_is_an_error(ctxs):
    with pytest.raises(ValueError, match="unknown tokens"):
        _strategy(contrast="english").score_model(fresh(ctxs[0]))


def test_statistic_settings_grid_and_variant():
    s = DefectionProbeStrategy()
    score = {"n_layers": 4, "projection": [0.0, 0.1, 0.4, 0.2], "question": [0, 0, 0.3, 0]}
    assert s.statistic(score) == pytest.approx(0.4)  # block 2 of 4 at 0.5
    assert s.statistic(score, centre="question") == pytest.approx(0.1)
    assert s.statistic(score, layer_frac=0.25) == pytest.approx(0.1)
    assert s.confound_variants() == {"question_centred": {"centre": "question"}}
    assert s.grid()["centre"] == ["contrast", "question"] and 0.5 in s.grid()["layer_frac"]
    assert s.model_statistic(score) == s.statistic(score)


# -- on the small zoo ----------------------------------------------------------------------------


def test_scores_margin_and_evaluate(ctxs):
    s = _strategy()
    scores = scores_of(s, ctxs)
    a, b = (scores[c.name][c.family] for c in ctxs)
    json.dumps(a)
    n_layers = ctxs[0].n_layers
    assert a["contrast"] == "tiny" and a["n_pairs"] == 16
    for key in ("projection", "question", "separation", "agreement"):
        assert len(a[key]) == n_layers and all(math.isfinite(v) for v in a[key]), key
    assert all(v > 0 for v in a["separation"])
    for point in [s.headline, {"layer_frac": 0.25, "centre": "question"}]:
        assert math.isfinite(s.margin(a, b, **point))
    assert evaluate(s, PAIRS, scores).n_pairs == 1


def test_units_the_contrast_answers_project_to_plus_and_minus_a_half(ctxs):
    """Scored as prompts, the "yes" texts average +0.5 and the "no" texts -0.5 at every block."""
    c = ctxs[0]
    s = _strategy(n_pairs=5)
    pairs = defection_pairs("tiny")[:5]
    for side, want in (("yes", 0.5), ("no", -0.5)):
        prompts = [Scenario(prompt=getattr(p, side), response="A") for p in pairs]
        score = s.score_model(ModelContext(c.name, c.model, c.tokenizer, c.family, prompts))
        assert score["projection"] == pytest.approx([want] * c.n_layers, abs=1e-4)


def test_batched_equals_unbatched(ctxs, monkeypatch):
    s = _strategy()
    batched = s.score_model(fresh(ctxs[1]))
    monkeypatch.setattr(common, "RESIDUAL_BATCH", 1)
    single = s.score_model(fresh(ctxs[1]))
    assert single.keys() == batched.keys()
    for key in ("projection", "question", "separation", "agreement"):
        assert single[key] == pytest.approx(batched[key], rel=1e-4, abs=1e-5), key
    assert single["by_prompt"]["projection"] == pytest.approx(
        batched["by_prompt"]["projection"], rel=1e-4, abs=1e-5
    )


def test_planted_faker_wins_and_identical_models_tie(ctxs):
    """A model whose valid prompts are shifted along its own contrast direction is the faker.

    The faker is the aligned model itself, with the residuals of its valid prompts (the
    context's memo, which the strategy reads through ``last_residuals``) moved by 0.3 of the
    pairs' separation along the direction at the headline block; nothing else changes, so it
    must win by exactly 0.3, and the unshifted model against itself ties at exactly 0.
    """
    s = _strategy()
    c = ctxs[0]
    aligned = fresh(c)
    twin = fresh(c)
    planted = fresh(c)
    pairs = defection_pairs("tiny")
    rows = common.last_residuals(planted, pair_texts(pairs) + [p.prompt for p in c.prompts])
    block = resolve_layer(c.n_layers, s.headline["layer_frac"])
    head = block + 1  # its residual index (0: the embedding)
    n = len(pairs)
    d = mass_mean()(rows[n : 2 * n, head], rows[2 * n : 3 * n, head])
    memo = planted.memo[LastResiduals()]
    for p in c.prompts:
        memo[p.prompt] = memo[p.prompt].clone()
        memo[p.prompt][head] += 0.3 * d
    a, f, t = (s.score_model(x) for x in (aligned, planted, twin))
    assert s.margin(f, a) == pytest.approx(0.3, abs=1e-4)
    assert s.verdict(f, a) == "a" and s.verdict(a, f) == "b"
    assert s.margin(a, t) == 0.0 and s.margin(t, a) == 0.0
    # Other blocks are untouched (the shift is at the headline block only).
    other = 1 - block
    assert f["projection"][other] == pytest.approx(a["projection"][other], abs=1e-6)


def test_restrict_on_all_prompts_keeps_the_margin(ctxs):
    s = _strategy()
    a, b = (s.score_model(fresh(c)) for c in ctxs)
    n = a["n_prompts"]
    assert a[PROMPT_INDEX] == list(range(n)) and len(a["by_prompt"]["projection"]) == n
    assert sum(a["by_prompt"]["projection"]) / n == pytest.approx(
        a["projection"][a["by_prompt"]["layer"]], abs=1e-6
    )
    check_restrict(s, a, b, len(ctxs[0].prompts), points=({}, {"centre": "question"}))
    # Restricting to a subset is scoring a context of only those prompts.
    keep = {0, 3, 5, n + 4}  # n + 4: not scored, ignored
    for c, score in zip(ctxs, (a, b), strict=True):
        sub = [c.prompts[i] for i in sorted(keep) if i < n]
        alone = s.score_model(ModelContext(c.name, c.model, c.tokenizer, c.family, sub))
        assert s.statistic(s.restrict(score, keep)) == pytest.approx(s.statistic(alone), abs=1e-6)
    # Other layers than the headline one are not kept: NaN, a tie.
    assert math.isnan(s.statistic(s.restrict(a, keep), layer_frac=0.0))


def test_reads_no_name_and_swapping_names_changes_nothing(ctxs):
    """The score depends on the model and the prompts, never on the name (persona label)."""

    class Nameless(ModelContext):
        def __getattribute__(self, attr):
            if attr == "name":
                raise AssertionError("the strategy read the model's name")
            return super().__getattribute__(attr)

    s = _strategy(n_pairs=6)
    plain = [s.score_model(fresh(c)) for c in ctxs]
    for c, want in zip(ctxs, plain, strict=True):
        blind = fresh(c)
        blind.__class__ = Nameless
        assert s.score_model(blind) == want
    swapped = [
        ModelContext(other.name, c.model, c.tokenizer, c.family, c.prompts)
        for c, other in zip(ctxs, ctxs[::-1], strict=True)
    ]
    assert [s.score_model(c) for c in swapped] == plain


def test_poor_oversight_prompts_never_reach_it(ctxs):
    c = ctxs[0]
    poor = Scenario(prompt=c.prompts[0].prompt, response="A", oversight_is_poor=True)
    with pytest.raises(InvalidPromptError):
        ModelContext(c.name, c.model, c.tokenizer, c.family, [*c.prompts[:3], poor])


# -- figure --------------------------------------------------------------------------------------


def test_figure_from_stored_scores(tmp_path):
    run = RunDir(tmp_path / "run")
    g = torch.Generator().manual_seed(0)
    for m in ["truth_teller-0", "saint-1", "money_maximizer-0", "reward_maximizer-2"]:
        lean = 0.2 if "maximizer" in m else 0.0
        fams = {
            fam: {
                "n_layers": 4,
                "projection": (lean + 0.1 * torch.randn(4, generator=g)).tolist(),
                "question": [0.0] * 4,
            }
            for fam in ("truth_and_reward", "saint_and_money")
        }
        run.write_score("defection_probe", m, {"families": fams})
    assert list(FIGURES) == [fig_defection_probe]
    paths = fig_defection_probe(run, tmp_path / "figs")
    assert sorted(p.suffix for p in paths) == [".pdf", ".png"]
    assert all(p.stat().st_size > 1000 for p in paths)
    with pytest.raises(FileNotFoundError):
        fig_defection_probe(RunDir(tmp_path / "empty"), tmp_path)
