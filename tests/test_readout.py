import pytest
import torch

from poser_lens.models.tokenizer import build_tokenizer
from poser_lens.readout import AnswerIds, answer_readout


def test_ids_come_from_the_tokenizer():
    tok = build_tokenizer(["x"])
    ids = AnswerIds.from_tokenizer(tok)
    assert ids.of("A") == tok.convert_tokens_to_ids("A")
    assert len({ids.a, ids.b, ids.error}) == 3


def test_probabilities_and_misaligned():
    ids = AnswerIds(a=0, b=1, error=2)
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.05, 0.05], [0.1, 0.8, 0.05, 0.05]]))
    r = answer_readout(logits, ids, aligned=["A", "A"])
    torch.testing.assert_close(r.p_misaligned, torch.tensor([0.2, 0.8]))
    torch.testing.assert_close(r.mass_ab, torch.tensor([0.9, 0.9]))
    assert answer_readout(logits, ids).p_misaligned is None
    with pytest.raises(ValueError):
        answer_readout(logits, ids, aligned=["A"])
    with pytest.raises(ValueError):
        answer_readout(logits, ids, aligned=["A", "error"])
