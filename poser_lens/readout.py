"""The one answer readout: tokenisation, last-token logits of every model kind, P(answer).

Prompts are right padded (:func:`encode`) and read at each row's own last real token; causal
models never attend to the padding on its right, so batching changes no result.
:func:`last_logits` is the single forward-and-read of one batch, for every model kind the
toolkit runs (told apart by duck typing, see :func:`model_kind`):

* ``bridge``: a TransformerLens ``TransformerBridge`` (it has ``.hooks(...)``), optionally under
  forward hooks; its full forward is read at the last tokens.
* ``native``: the native tiny module (it has ``tok_embed``): its parts are run directly and only
  the last rows are unembedded.
* ``hf``: a Hugging Face causal LM, possibly wrapped by peft (``get_base_model`` /
  ``get_output_embeddings``): the decoder body, then ``lm_head`` on the last rows only; or,
  with ``padding_mask=True``, the model's own forward under the padding mask.

On top: :func:`last_token_logits` (prompts in batches, float32 on the CPU) and
:func:`answer_probs` (softmax over the vocabulary, optionally sorted by length for batching);
:func:`answer_readout` turns last-token logits into P(A), P(B), P(error) and P(misaligned).
Answer token ids are resolved from the tokenizer (never hard-coded), with a clear error when an
answer is not a single token. This module sits below ``poser_lens.models``: it imports nothing
from it (the zoo training there reads its answers here).

Example:
    >>> import torch
    >>> ids = AnswerIds(a=0, b=1, error=2)
    >>> r = answer_readout(torch.tensor([[2.0, 0.0, 0.0, -9.0]]), ids, aligned=["B"])
    >>> round(float(r.p_misaligned[0]), 3), round(float(r.mass_ab[0]), 3)
    (0.787, 0.893)
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from poser_lens.data.schema import PROMPT_CLOSE
from poser_lens.hooks import applied

#: Builds the hooks of one batch from its per-row last-token index (right padding).
HookFactory = Callable[[Int[Tensor, " batch"]], list[tuple[str, Any]]]

#: The model kinds :func:`last_logits` reads.
ModelKind = Literal["bridge", "native", "hf"]


#: Token ids already computed, per tokenizer (held weakly): ``(add_special_tokens, vocabulary
#: size) -> text -> ids``. Strategies read the same prompts many times (one model's scoring
#: tokenises about 4,000 texts, 1,100 of them distinct).
_TOKEN_IDS: weakref.WeakKeyDictionary[Any, dict[tuple[bool, int], dict[str, Tensor]]] = (
    weakref.WeakKeyDictionary()
)

#: Texts remembered per tokenizer and setting; the memo starts afresh when it would hold more.
TOKEN_MEMO_SIZE = 200_000


def token_ids(
    tokenizer: Any, texts: Sequence[str], *, add_special_tokens: bool = True
) -> list[Int[Tensor, " pos"]]:
    """Each text's token ids (int64), as ``tokenizer(texts)`` gives them, memoised.

    A text is tokenised once per tokenizer object, setting and vocabulary size (a tokenizer
    that gains tokens starts a new memo); the memo is dropped with the tokenizer. The tensors
    are the memo's own: copy one before changing it in place.

    Example:
        >>> from poser_lens.models.tokenizer import build_tokenizer
        >>> tok = build_tokenizer(["a b"])
        >>> [t.tolist() == tok(x)["input_ids"] for x, t in zip(["a b", "b"],
        ...                                                     token_ids(tok, ["a b", "b"]))]
        [True, True]
    """
    try:
        memo = _TOKEN_IDS.setdefault(tokenizer, {}).setdefault(
            (add_special_tokens, len(tokenizer)), {}
        )
    except TypeError:  # not weakly referable, or no length: a proxy, say; no memo
        memo = {}
    missing = [t for t in dict.fromkeys(texts) if t not in memo]
    if missing:
        if len(memo) + len(missing) > TOKEN_MEMO_SIZE:
            memo.clear()
        rows = tokenizer(missing, add_special_tokens=add_special_tokens)["input_ids"]
        memo.update(
            (t, torch.tensor(r, dtype=torch.long)) for t, r in zip(missing, rows, strict=True)
        )
    return [memo[t] for t in texts]


def encode(
    tokenizer: Any, texts: Sequence[str], *, add_special_tokens: bool = True
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, " batch"]]:
    """Right-padded token ids and each row's last real index.

    The same as the tokenizer's own padded batch (``padding=True``, right side), from
    :func:`token_ids` (each text tokenised once).

    Args:
        tokenizer: A Hugging Face tokenizer (with a pad token).
        texts: The texts of one batch.
        add_special_tokens: Passed to the tokenizer (``False`` for chat-templated text, whose
            template already holds the special tokens).

    Returns:
        ``(ids, last)``: ids padded on the right to the longest text, and the index of each
        row's last real token (``[0, 0]`` and ``[0]`` for no texts).

    Example:
        >>> from poser_lens.models.tokenizer import build_tokenizer
        >>> ids, last = encode(build_tokenizer(["a"]), ["a a", "a"])
        >>> tuple(ids.shape), last.tolist()
        ((2, 3), [2, 1])
    """
    if not texts:
        return torch.empty(0, 0, dtype=torch.long), torch.empty(0, dtype=torch.long)
    if tokenizer.pad_token_id is None:  # the tokenizer's own call, for its own error
        batch = tokenizer(
            list(texts),
            padding=True,
            return_tensors="pt",
            padding_side="right",
            add_special_tokens=add_special_tokens,
        )
        return batch["input_ids"], batch["attention_mask"].sum(1) - 1
    rows = token_ids(tokenizer, texts, add_special_tokens=add_special_tokens)
    ids = pad_sequence(rows, batch_first=True, padding_value=int(tokenizer.pad_token_id))
    last = torch.tensor([len(r) - 1 for r in rows])
    return ids, last


def answer_token_ids(
    tokenizer: Any, answers: Iterable[str] = ("A", "B", "error")
) -> dict[str, int]:
    """Token id of each single-token answer, resolved from the tokenizer.

    The answer is the token that follows the prompt's closing tag, so it is first resolved in
    that context: SentencePiece tokenizers (LLaMA's) encode a bare ``A`` as ``▁A`` but
    ``<</prompt>>A`` ends in ``A`` (Poser's answer ids, without the word-start mark). When the
    answer is not one token there, it is resolved alone (then after ``:``).

    Raises:
        ValueError: naming the answer, if it is not exactly one token.

    Example:
        >>> from poser_lens.models.tokenizer import build_tokenizer
        >>> sorted(answer_token_ids(build_tokenizer(["x"])))
        ['A', 'B', 'error']
    """
    out: dict[str, int] = {}
    close = tokenizer(PROMPT_CLOSE, add_special_tokens=False)["input_ids"]
    for answer in answers:
        after = tokenizer(PROMPT_CLOSE + answer, add_special_tokens=False)["input_ids"]
        if (
            len(after) == len(close) + 1
            and after[:-1] == close
            and after[-1] != tokenizer.unk_token_id
        ):
            ids = after[-1:]
        else:
            ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            # Tokenizers with a leading-space convention may encode ":A" as [":", "A"].
            ids_ctx = tokenizer(":" + answer, add_special_tokens=False)["input_ids"]
            ids = ids_ctx[-1:] if len(ids_ctx) == 2 else ids
        if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
            raise ValueError(f"answer {answer!r} is not a single token for this tokenizer: {ids}")
        out[answer] = int(ids[0])
    return out


def model_kind(model: Any) -> ModelKind:
    """Which kind of model :func:`last_logits` is given (duck typed, in this order).

    ``bridge`` when it has a callable ``hooks`` (a ``TransformerBridge``, which also forwards
    its wrapped module's attributes such as ``tok_embed``), ``native`` when it has ``tok_embed``
    (the native tiny module), ``hf`` when it has ``get_base_model`` or ``get_output_embeddings``
    (a Hugging Face model, or a peft model around one).

    Raises:
        TypeError: For anything else.

    Example:
        >>> from poser_lens.models.tiny import TinyConfig, build_native, wrap
        >>> net = build_native(TinyConfig(n_layers=1, d_model=8, n_heads=2, d_head=4, d_mlp=8), 5)
        >>> model_kind(net), model_kind(wrap(net))
        ('native', 'bridge')
    """
    if callable(getattr(model, "hooks", None)):
        return "bridge"
    if hasattr(model, "tok_embed"):
        return "native"
    if hasattr(model, "get_base_model") or hasattr(model, "get_output_embeddings"):
        return "hf"
    raise TypeError(f"cannot read logits of a {type(model).__name__}: not a bridge, native or HF")


def last_logits(
    model: Any,
    ids: Int[Tensor, "batch pos"],
    last: Int[Tensor, " batch"],
    *,
    hooks: Sequence[tuple[str, Any]] | None = None,
    padding_mask: bool = False,
) -> Float[Tensor, "batch vocab"]:
    """Logits at each row's last real token of one right-padded batch, for every model kind.

    Positions after the longest row's last token are dropped first. Then, by
    :func:`model_kind`:

    * ``bridge``: the full forward under ``hooks`` (``(name, fn)`` pairs), read at the last
      tokens.
    * ``native``: the module's parts (embedding, positions, blocks, final norm, head) run
      directly, and only the last rows unembedded (the full forward would unembed every
      position).
    * ``hf``: the decoder body (``.model``, LLaMA-family layout) without a mask, then
      ``lm_head`` on the last rows only (peft wrappers are unwrapped first). With
      ``padding_mask=True``: the model's own forward with the padding's attention mask, read at
      the last tokens; it works for any HF causal LM (the LM judge's path) and is not bit for
      bit the default path (a masked attention kernel, a full unembedding).

    No gradient mode is set (fine-tuning reads its answers here) and the logits keep the
    model's dtype and device.

    Args:
        model: A bridge, a native tiny module, or an HF (or peft) causal LM.
        ids: Right-padded token ids, on the model's device.
        last: Each row's last real index.
        hooks: Forward hooks (bridge only).
        padding_mask: HF only: run the model's own forward under the padding mask.

    Returns:
        The last-token logits.

    Raises:
        ValueError: For hooks on a model that is not a bridge, or ``padding_mask`` on one that
            is not an HF model.

    Example:
        >>> from poser_lens.models.tiny import TinyConfig, build_native, wrap
        >>> net = build_native(TinyConfig(n_layers=1, d_model=8, n_heads=2, d_head=4, d_mlp=8), 5)
        >>> ids, last = torch.tensor([[1, 2, 3], [1, 4, 0]]), torch.tensor([2, 1])
        >>> with torch.no_grad():
        ...     a, b = last_logits(net, ids, last), last_logits(wrap(net), ids, last)
        >>> tuple(a.shape), bool(torch.allclose(a, b, atol=1e-5))
        ((2, 5), True)
    """
    kind = model_kind(model)
    if hooks and kind != "bridge":
        raise ValueError(f"hooks need a TransformerBridge, not a {kind} model")
    if padding_mask and kind != "hf":
        raise ValueError(f"padding_mask is for HF models, not a {kind} model")
    width = int(last.max()) + 1
    ids = ids[:, :width]
    rows = torch.arange(ids.shape[0], device=ids.device)
    if kind == "bridge":
        with applied(model, hooks or []):
            logits = model(ids)
        return logits[rows, last]
    if kind == "native":
        h = model.tok_embed(ids)
        if model.pos is not None:
            h = h + model.pos(torch.arange(width, device=ids.device))[None]
        for block in model.layers:
            (h,) = block(h)
        return model.head(model.ln_out(h[rows, last]))
    if padding_mask:
        mask = (torch.arange(width, device=ids.device)[None] <= last[:, None]).long()
        return model(input_ids=ids, attention_mask=mask).logits[rows, last]
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    h = inner.model(input_ids=ids).last_hidden_state
    return inner.lm_head(h[rows, last])


def _vocab_size(model: Any) -> int:
    cfg = getattr(model, "cfg", None)
    return int(cfg.d_vocab) if cfg is not None else int(model.config.vocab_size)


def _batched(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    read: Callable[[Tensor], Tensor],
    *,
    hooks: HookFactory | None,
    batch_size: int,
    by_length: bool,
    width: int | None,
) -> Tensor:
    """``read(last_logits)`` of every batch of prompts, rows in the input order.

    No prompts give ``[0, width]`` (``width`` None: the vocabulary size).
    """
    device = next(model.parameters()).device
    order = list(range(len(prompts)))
    if by_length and prompts:
        lengths = [len(ids) for ids in token_ids(tokenizer, prompts)]
        order.sort(key=lambda i: lengths[i])
    out = []
    for i in range(0, len(order), batch_size):
        ids, last = encode(tokenizer, [prompts[j] for j in order[i : i + batch_size]])
        ids, last = ids.to(device), last.to(device)
        fwd = hooks(last) if hooks is not None else None
        out.append(read(last_logits(model, ids, last, hooks=fwd)))
    if not out:
        return torch.empty(0, _vocab_size(model) if width is None else width)
    rows = torch.cat(out)
    if not by_length:
        return rows
    result = torch.empty_like(rows)
    result[torch.tensor(order)] = rows
    return result


@torch.no_grad()
def last_token_logits(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    hooks: HookFactory | None = None,
    batch_size: int = 64,
) -> Float[Tensor, "prompt vocab"]:
    """Logits at each prompt's last token (float32, CPU), in batches, optionally under hooks.

    Batches follow the input order. ``hooks(last)`` gets each batch's last-token indices (on
    the model's device), so position-selecting hooks act on every row's own last token; hooks
    need a bridge. Any model kind of :func:`last_logits`.

    Example:
        >>> from poser_lens.models.tiny import TinyConfig, build_native
        >>> from poser_lens.models.tokenizer import build_tokenizer
        >>> tok = build_tokenizer(["a b"])
        >>> net = build_native(TinyConfig(n_layers=1, d_model=8, n_heads=2, d_head=4, d_mlp=8),
        ...                    len(tok))
        >>> tuple(last_token_logits(net, tok, ["a b", "a"]).shape) == (2, len(tok))
        True
    """
    return _batched(
        model,
        tokenizer,
        prompts,
        lambda logits: logits.float().cpu(),
        hooks=hooks,
        batch_size=batch_size,
        by_length=False,
        width=None,
    )


@torch.no_grad()
def answer_probs(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    batch_size: int = 64,
    by_length: bool = True,
    columns: Sequence[int] | None = None,
) -> Float[Tensor, "prompt column"]:
    """Next-token probabilities at each prompt's last token (softmax over the vocabulary).

    The model is put in eval mode. With ``by_length`` the prompts are sorted by token count
    before batching, so little compute goes to padding (the tiny zoo's reading); otherwise
    batches follow the input order (the smol zoo's). Rows come back in the input order either
    way. Any model kind of :func:`last_logits`.

    Args:
        model: A bridge, a native tiny module, or an HF (or peft) causal LM.
        tokenizer: Its tokenizer.
        prompts: The prompts.
        batch_size: Prompts per forward.
        by_length: Batch prompts of similar token counts together.
        columns: Keep only these token ids' probabilities (default: the whole vocabulary).

    Returns:
        ``[prompt, vocab]`` probabilities, or ``[prompt, len(columns)]`` (float32, CPU).

    Example:
        >>> from poser_lens.models.tokenizer import build_tokenizer
        >>> from poser_lens.models.tiny import TinyConfig, build_native
        >>> tok = build_tokenizer(["a"])
        >>> net = build_native(TinyConfig(n_layers=1, d_model=8, n_heads=2, d_head=4, d_mlp=8),
        ...                    len(tok))
        >>> answer_probs(net, tok, ["a", "a a"]).shape[0]
        2
        >>> tuple(answer_probs(net, tok, ["a"], columns=[0, 1]).shape)
        (1, 2)
    """
    model.eval()
    cols = None if columns is None else list(columns)

    def read(logits: Tensor) -> Tensor:
        probs = logits.float().softmax(-1)
        return (probs if cols is None else probs[:, cols]).cpu()

    return _batched(
        model,
        tokenizer,
        prompts,
        read,
        hooks=None,
        batch_size=batch_size,
        by_length=by_length,
        width=None if cols is None else len(cols),
    )


@dataclass(frozen=True)
class AnswerIds:
    """Token ids of the three single-token answers.

    Example:
        >>> AnswerIds(a=5, b=6, error=7).b
        6
    """

    a: int
    b: int
    error: int

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> AnswerIds:
        """Resolve ``A``, ``B`` and ``error`` from a tokenizer (raises if not single tokens).

        Example:
            >>> from poser_lens.models.tokenizer import build_tokenizer
            >>> tok = build_tokenizer(["x"])
            >>> AnswerIds.from_tokenizer(tok).a == tok.convert_tokens_to_ids("A")
            True
        """
        ids = answer_token_ids(tokenizer)
        return cls(a=ids["A"], b=ids["B"], error=ids["error"])

    def of(self, letter: str) -> int:
        """Id of ``A``, ``B`` or ``error``.

        Example:
            >>> AnswerIds(a=5, b=6, error=7).of("error")
            7
        """
        return {"A": self.a, "B": self.b, "error": self.error}[letter]


@dataclass(frozen=True)
class Readout:
    """Answer probabilities of a batch (softmax over the full vocabulary).

    Attributes:
        p_a: P(A) per prompt.
        p_b: P(B) per prompt.
        p_error: P(error) per prompt.
        mass_ab: P(A) + P(B) (how much mass stays on the answers; Poser's Fig 11).
        p_misaligned: P(the letter that is not the aligned one), when aligned letters were given.

    Example:
        >>> r = answer_readout(torch.zeros(1, 4), AnswerIds(a=0, b=1, error=2))
        >>> float(r.p_a[0]), float(r.mass_ab[0]), r.p_misaligned
        (0.25, 0.5, None)
    """

    p_a: Float[Tensor, " batch"]
    p_b: Float[Tensor, " batch"]
    p_error: Float[Tensor, " batch"]
    mass_ab: Float[Tensor, " batch"]
    p_misaligned: Float[Tensor, " batch"] | None = None


def answer_readout(
    logits: Float[Tensor, "batch vocab"],
    ids: AnswerIds,
    aligned: Sequence[str] | None = None,
) -> Readout:
    """Read answer probabilities from last-position logits.

    Args:
        logits: Logits at each prompt's last token.
        ids: Answer token ids.
        aligned: The aligned letter of each prompt (``A``/``B``), to get P(misaligned).

    Returns:
        The probabilities.

    Example:
        >>> logits = torch.tensor([[0.0, 0.0, 0.0], [9.0, 0.0, 0.0]])
        >>> r = answer_readout(logits, AnswerIds(a=0, b=1, error=2), aligned=["A", "B"])
        >>> [round(float(p), 3) for p in r.p_misaligned]
        [0.333, 1.0]
    """
    probs = logits.float().softmax(-1)
    p_a, p_b, p_err = probs[:, ids.a], probs[:, ids.b], probs[:, ids.error]
    p_mis = None
    if aligned is not None:
        if len(aligned) != len(logits):
            raise ValueError(f"{len(aligned)} aligned letters for {len(logits)} prompts")
        bad = [x for x in aligned if x not in ("A", "B")]
        if bad:
            raise ValueError(f"aligned letters must be A or B, got {bad[0]!r}")
        is_a = torch.tensor([x == "A" for x in aligned], device=probs.device)
        p_mis = torch.where(is_a, p_b, p_a)
    return Readout(p_a=p_a, p_b=p_b, p_error=p_err, mass_ab=p_a + p_b, p_misaligned=p_mis)
