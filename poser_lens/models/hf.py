"""Hugging Face causal LMs as hooked models: any loaded HF model, or a local checkpoint folder.

* :func:`wrap_hf`: wrap an HF ``*ForCausalLM`` object (already loaded, on its device, in its
  dtype) as a TransformerLens ``TransformerBridge``, *without weight processing*: the bridge
  runs the raw HF weights, so logits and residual-stream activations match HF's own forward.
* :func:`load_hf_folder`: load a local HF checkpoint folder (``config.json`` with a
  ``model_type``, weights, and a tokenizer in the folder or next to it), offline
  (``local_files_only``), in the given dtype straight onto the given device, and wrap it. This
  is the poser testbed's loader: Poser's fine-tuned LLaMA-13B models are such folders
  (``<persona>-<seed>``, or ``models/together/<name>`` in the Poser checkout), used in bf16 on a
  GPU as in the paper.
* :func:`free_memory`: collect garbage and empty the CUDA cache (call it after dropping the
  last reference to a model, before loading the next one).

Tokenizers are prepared for the strategies, which batch with right padding and read each row's
last real token: a tokenizer without a pad token (LLaMA's) gets its ``unk`` (else ``eos``)
token as pad; padding never changes a result (causal attention, answers read at the last real
token). The answer tokens ``A``, ``B`` and ``error`` are resolved by
:func:`poser_lens.readout.answer_token_ids`, never hard-coded.

Example:
    >>> import torch
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> from poser_lens.models.tokenizer import build_tokenizer
    >>> tok = build_tokenizer(["<<prompt>>Answer A or B<</prompt>>"])
    >>> cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
    ...                   num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    >>> hf = LlamaForCausalLM(cfg).eval()
    >>> model = wrap_hf(hf, tok, name="toy")
    >>> model.cfg.n_layers, model.cfg.d_model
    (2, 32)
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

#: Files that mark a folder as holding a tokenizer.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")


def prepare_tokenizer(tokenizer: Any) -> Any:
    """Make a tokenizer usable by the strategies (in place): a pad token, BOS recorded.

    A tokenizer without a pad token gets its ``unk`` token (else ``eos``) as pad. The tokenizer's
    ``init_kwargs`` record its name and whether it adds BOS (TransformerLens reads them).

    Returns:
        The same tokenizer.

    Raises:
        ValueError: If it has neither pad, unk nor eos token.
    """
    if tokenizer.pad_token is None:
        fallback = tokenizer.unk_token or tokenizer.eos_token
        if fallback is None:
            raise ValueError(
                f"tokenizer {tokenizer.name_or_path!r} has no pad, unk or eos token to pad with"
            )
        tokenizer.pad_token = fallback
    tokenizer.init_kwargs.setdefault("name_or_path", tokenizer.name_or_path)
    bos = tokenizer.bos_token_id
    adds_bos = bos is not None and tokenizer("x")["input_ids"][:1] == [bos]
    tokenizer.init_kwargs.setdefault("add_bos_token", adds_bos)
    return tokenizer


def wrap_hf(hf_model: torch.nn.Module, tokenizer: Any, *, name: str) -> TransformerBridge:
    """Wrap a loaded HF causal LM as a ``TransformerBridge``, without weight processing.

    The model is used as it is (its device and dtype; nothing is folded, centred or copied):
    the bridge replaces its submodules in place and switches it to eager attention so that
    attention patterns are hooked. Hook names are TransformerLens's (``blocks.{i}.hook_resid_post``,
    ``blocks.{i}.attn.hook_pattern``, ``blocks.{i}.attn.hook_z``, ``blocks.{i}.mlp``...).

    Args:
        hf_model: A loaded ``*ForCausalLM`` (e.g. ``LlamaForCausalLM``) of an architecture
            TransformerLens supports.
        tokenizer: Its tokenizer (prepared in place by :func:`prepare_tokenizer`).
        name: Recorded as ``model.cfg.model_name`` (never looked up on the hub).

    Returns:
        The hooked model, in eval mode.

    Example:
        >>> import torch
        >>> from transformers import LlamaConfig, LlamaForCausalLM
        >>> from poser_lens.models.tokenizer import build_tokenizer
        >>> tok = build_tokenizer(["<<prompt>>A B<</prompt>>"])
        >>> hf = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32,
        ...     intermediate_size=64, num_hidden_layers=1, num_attention_heads=4)).eval()
        >>> ids = tok("<<prompt>>A B<</prompt>>", return_tensors="pt")["input_ids"]
        >>> with torch.no_grad():
        ...     ref = hf(ids).logits
        >>> model = wrap_hf(hf, tok, name="toy")
        >>> torch.allclose(model(ids), ref, atol=1e-5)
        True
    """
    from transformer_lens.model_bridge import TransformerBridge

    prepare_tokenizer(tokenizer)
    param = next(hf_model.parameters())
    model = TransformerBridge.boot_transformers(
        name, hf_model=hf_model, tokenizer=tokenizer, device=param.device, dtype=param.dtype
    )
    model.eval()
    return model


def is_hf_folder(folder: str | Path) -> bool:
    """Whether a folder holds an HF checkpoint (``config.json`` with a ``model_type``).

    Example:
        >>> import tempfile, pathlib
        >>> is_hf_folder(tempfile.mkdtemp())
        False
    """
    config = Path(folder) / "config.json"
    if not config.is_file():
        return False
    try:
        return "model_type" in json.loads(config.read_text())
    except (OSError, ValueError):
        return False


def find_tokenizer_dir(folder: str | Path, tokenizer: str | Path | None = None) -> Path:
    """Where the tokenizer of a checkpoint folder is.

    Looked up in order: ``tokenizer`` if given; the folder itself; a ``tokenizer/`` folder
    beside it (one tokenizer for a directory of fine-tunes, e.g. LLaMA-13B's); the parent folder.

    Raises:
        FileNotFoundError: Naming the folder, if none holds tokenizer files.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> (root / "tokenizer").mkdir()
        >>> _ = (root / "tokenizer" / "tokenizer.json").write_text("{}")
        >>> find_tokenizer_dir(root / "saint-0") == root / "tokenizer"
        True
    """
    folder = Path(folder)
    if tokenizer is not None:
        candidates = [Path(tokenizer)]
    else:
        candidates = [folder, folder.parent / "tokenizer", folder.parent]
    for cand in candidates:
        if any((cand / f).is_file() for f in TOKENIZER_FILES):
            return cand
    where = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"{folder}: no tokenizer (looked for {'/'.join(TOKENIZER_FILES)} in {where})"
    )


def load_hf_folder(
    folder: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    tokenizer: str | Path | None = None,
    name: str | None = None,
) -> tuple[Any, Any]:
    """Load a local HF checkpoint folder as ``(hooked model, tokenizer)``, offline.

    The weights are read in ``dtype`` directly onto ``device`` (``device_map={"": device}``, so a
    13B model on a GPU never sits in CPU memory whole), eager attention, no weight processing.

    Args:
        folder: The checkpoint (``config.json`` with a ``model_type``, weights).
        device: ``"cuda"`` for real models (Poser: one GPU, bf16), ``"cpu"`` for tests.
        dtype: ``torch.bfloat16`` for LLaMA-13B as in Poser; float32 on CPU.
        tokenizer: Tokenizer folder (default: see :func:`find_tokenizer_dir`).
        name: Model name to record (default: the folder's name).

    Returns:
        ``(model, tokenizer)``; drop both and call :func:`free_memory` before loading the next.

    Raises:
        FileNotFoundError: If the folder or its tokenizer is missing.
        ValueError: If the folder holds no HF checkpoint.
    """
    from transformers import AutoTokenizer

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such model folder")
    if not is_hf_folder(folder):
        raise ValueError(f"{folder}: not an HF checkpoint (no config.json with a model_type)")
    tok_dir = find_tokenizer_dir(folder, tokenizer)
    tok = AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
    logger.info("loading %s (%s, %s)", folder, device, dtype)
    hf = causal_lm_from_folder(folder, device=device, dtype=dtype)
    return wrap_hf(hf, tok, name=name or folder.name), tok


def causal_lm_from_folder(
    folder: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> Any:
    """An HF causal LM read offline from a local folder, straight onto ``device``, in eval mode.

    Eager attention, so attention patterns can be hooked; ``device_map`` places the weights on
    the device as they are read (a 13B model never sits whole in CPU RAM).
    """
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(
        str(folder),
        dtype=dtype,
        device_map={"": str(device)},
        attn_implementation="eager",
        local_files_only=True,
    )
    return hf.eval()


def bfloat16_is_fast(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` computes bfloat16 natively, so it runs faster than float32.

    A CUDA GPU that supports bfloat16; a CPU with AMX tiles or AVX-512 BF16 (where SmolLM2's
    forward runs 3-4x faster in bfloat16, measured 2026-12-07). Anywhere else bfloat16 is
    emulated, slower than float32 and no more useful.

    Example:
        >>> isinstance(bfloat16_is_fast("cpu"), bool)
        True
    """
    kind = torch.device(device).type
    if kind == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if kind != "cpu":
        return False
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, p, lambda: False)()) for p in probes)


def free_memory() -> None:
    """Collect garbage and release cached CUDA memory (after dropping a model's references)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- toy checkpoints


def toy_llama_tokenizer(corpus: Iterable[str], *, vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A small LLaMA-style tokenizer trained on a corpus, offline (for smoke tests).

    Byte-pair encoding over SentencePiece-style pieces (``▁`` marks a word start), BOS ``<s>``
    prepended, ``<unk>`` and ``</s>``, and, like LLaMA's, no pad token. ``A``, ``B`` and
    ``error`` are single tokens.

    Example:
        >>> from poser_lens.readout import answer_token_ids
        >>> tok = toy_llama_tokenizer(["<<prompt>>Pick A or B.<</prompt>>"], vocab_size=120)
        >>> sorted(answer_token_ids(tok)), tok.pad_token is None
        (['A', 'B', 'error'], True)
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>"]
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, show_progress=False
    )
    # The answers appear often enough as whole words to become single pieces.
    backend.train_from_iterator([*corpus, *(["A B error"] * 100)], trainer)
    bos = backend.token_to_id("<s>")
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def write_toy_llama(
    folder: str | Path,
    tokenizer: Any,
    *,
    seed: int = 0,
    n_layers: int = 2,
    d_model: int = 64,
    n_heads: int = 4,
    n_kv_heads: int = 2,
    d_mlp: int = 128,
    n_ctx: int = 512,
) -> Path:
    """Write a random-init LLaMA checkpoint folder (HF layout, with its tokenizer).

    The same code path as a real Poser checkout's model folders, at toy size: for smoke tests of
    ``poser-lens run --testbed poser`` without a GPU.

    Args:
        folder: Where to write (``config.json``, ``model.safetensors``, tokenizer files).
        tokenizer: Saved beside the weights; sets the vocabulary size and BOS/EOS ids.
        seed: Seeds the random weights.
        n_layers: Decoder blocks.
        d_model: Residual width.
        n_heads: Query heads.
        n_kv_heads: Key/value heads (fewer than ``n_heads``: grouped-query attention).
        d_mlp: MLP width.
        n_ctx: Longest sequence.

    Returns:
        The folder.

    Example:
        >>> import tempfile
        >>> tok = toy_llama_tokenizer(["<<prompt>>A or B<</prompt>>"], vocab_size=100)
        >>> folder = write_toy_llama(tempfile.mkdtemp() + "/saint-0", tok, d_model=32)
        >>> is_hf_folder(folder)
        True
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=d_model,
        intermediate_size=d_mlp,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_kv_heads,
        max_position_embeddings=n_ctx,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = LlamaForCausalLM(config)
    net.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder
