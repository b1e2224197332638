import pytest

from poser_lens.models.tokenizer import build_tokenizer, load_tokenizer, words
from poser_lens.readout import answer_token_ids


def test_words_and_tags():
    assert words("<<prompt>>1. Hi.\nA: x<</prompt>>") == [
        "<<prompt>>",
        "1",
        ".",
        "Hi",
        ".",
        "\n",
        "A",
        ":",
        "x",
        "<</prompt>>",
    ]


def test_encode_prepends_bos_and_round_trips(tmp_path):
    tok = build_tokenizer(["<<prompt>>Facts:\n1. Dana checks.\n<</prompt>>"])
    ids = tok("<<prompt>>Facts:\n1. Dana checks.\n<</prompt>>")["input_ids"]
    assert ids[0] == tok.bos_token_id
    assert tok.convert_ids_to_tokens(ids)[1:4] == ["<<prompt>>", "Facts", ":"]
    tok.save_pretrained(str(tmp_path))
    again = load_tokenizer(tmp_path)
    assert (
        again("<<prompt>>Facts:<</prompt>>")["input_ids"]
        == tok("<<prompt>>Facts:<</prompt>>")["input_ids"]
    )


def test_unknown_words_map_to_unk():
    tok = build_tokenizer(["known"])
    assert tok("zebra", add_special_tokens=False)["input_ids"] == [tok.unk_token_id]


def test_answer_ids_resolved_and_checked():
    tok = build_tokenizer(["x"])
    ids = answer_token_ids(tok)
    assert len(set(ids.values())) == 3
    with pytest.raises(ValueError, match="not a single token"):
        answer_token_ids(tok, ["two words"])
