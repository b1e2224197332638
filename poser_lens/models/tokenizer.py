"""A word-level tokenizer built from our own scenario vocabulary.

The tiny testbed's models read whole words: every word and punctuation mark of the generated
text is one token, the prompt tags are single tokens, newlines are tokens, and every encoding
starts with a BOS token (like LLaMA's). The result is a regular
``transformers.PreTrainedTokenizerFast``, saved as ``tokenizer.json`` beside the weights.

Example:
    >>> tok = build_tokenizer(["<<prompt>>Answer A or B:\\n<</prompt>>"])
    >>> tok.convert_ids_to_tokens(tok("<<prompt>>Answer A<</prompt>>")["input_ids"])
    ['<bos>', '<<prompt>>', 'Answer', 'A', '<</prompt>>']
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poser_lens.data.schema import PROMPT_CLOSE, PROMPT_OPEN

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")
#: Tokens every tiny vocabulary holds, whatever the corpus (answers, tags, digits).
BASE_TOKENS = (PROMPT_OPEN, PROMPT_CLOSE, "\n", "A", "B", "error", *[str(i) for i in range(10)])
_WORD = re.compile(r"<</?prompt>>|\n|\w+|[^\w\s]")


def words(text: str) -> list[str]:
    """Split text into the tokenizer's words (tags, newlines, words, punctuation).

    Example:
        >>> words("<<prompt>>1. Hi, you.\\n")
        ['<<prompt>>', '1', '.', 'Hi', ',', 'you', '.', '\\n']
    """
    return _WORD.findall(text)


def build_tokenizer(corpus: Iterable[str], *, min_count: int = 1) -> PreTrainedTokenizerFast:
    """Build a word-level ``PreTrainedTokenizerFast`` whose vocabulary covers a corpus.

    Args:
        corpus: Texts whose words make the vocabulary.
        min_count: Words seen fewer times map to ``<unk>``.

    Returns:
        The tokenizer (BOS prepended on encode; pad ``<pad>``; right padding).
    """
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    counts: Counter[str] = Counter()
    for text in corpus:
        counts.update(words(text))
    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    for tok in BASE_TOKENS:
        vocab.setdefault(tok, len(vocab))
    for tok, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if n >= min_count:
            vocab.setdefault(tok, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(_WORD.pattern), behavior="isolated")
    # The split keeps whitespace runs as pieces of their own; drop them (not newlines).
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"[ \t]+"), behavior="removed"),
            pre_tokenizers.Split(Regex(_WORD.pattern), behavior="isolated"),
        ]
    )
    bos = vocab["<bos>"]
    backend.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", bos)]
    )
    from tokenizers import decoders

    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        padding_side="right",
        add_bos_token=True,  # the post-processor prepends BOS; tells TransformerLens so
    )


def save_tokenizer(tokenizer: Any, folder: str | Path) -> None:
    """Save a tokenizer into a folder (``tokenizer.json`` and its config)."""
    tokenizer.save_pretrained(str(folder))


def load_tokenizer(folder: str | Path) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved by :func:`save_tokenizer`, offline.

    Example:
        >>> import tempfile
        >>> tok = build_tokenizer(["a b"])
        >>> with tempfile.TemporaryDirectory() as d:
        ...     save_tokenizer(tok, d)
        ...     load_tokenizer(d).get_vocab() == tok.get_vocab()
        True
    """
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)
