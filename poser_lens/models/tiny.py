"""Tiny hooked transformers: config, construction, saving and loading.

A tiny model is TransformerLens's native transformer (the module ``boot_native`` builds),
trained by poser_lens as a plain ``torch`` module and wrapped as a ``TransformerBridge`` for
analysis, so it has the usual hook names (``blocks.{L}.hook_resid_post``, ...), ``run_with_cache``,
``run_with_hooks`` and ``hooks()``. A saved model is a folder with ``config.json``,
``model.safetensors`` and the tokenizer files.

Example:
    >>> from poser_lens.models.tokenizer import build_tokenizer
    >>> tok = build_tokenizer(["a b c"])
    >>> net = build_native(TinyConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32),
    ...                    d_vocab=len(tok), seed=0)
    >>> model = wrap(net, tok)
    >>> model.cfg.n_layers, "blocks.0.hook_resid_post" in model.hook_dict
    (1, True)
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import torch

from poser_lens.config import Config, OneOf, PositiveInt

if TYPE_CHECKING:
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge
    from transformer_lens.model_bridge.sources.native import NativeModel

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class TinyConfig(Config):
    """Architecture of a tiny model (the vocabulary size comes from its tokenizer).

    Attributes:
        n_layers: Transformer blocks.
        d_model: Residual stream width.
        n_heads: Attention heads per block.
        d_head: Width of each head.
        d_mlp: MLP hidden width.
        n_ctx: Longest input, in tokens.
        act_fn: MLP activation.
        normalization_type: ``LN`` or ``RMS``.
    """

    n_layers: PositiveInt = 3
    d_model: PositiveInt = 64
    n_heads: PositiveInt = 4
    d_head: PositiveInt = 16
    d_mlp: PositiveInt = 256
    n_ctx: PositiveInt = 192
    act_fn: str = "gelu"
    normalization_type: Annotated[str, OneOf("LN", "LNPre", "RMS", "RMSPre", what="norm")] = "LN"


def bridge_config(
    cfg: TinyConfig, d_vocab: int, seed: int | None = None
) -> TransformerBridgeConfig:
    """The ``TransformerBridgeConfig`` of a tiny model.

    Example:
        >>> bridge_config(TinyConfig(), d_vocab=100).d_vocab
        100
    """
    from transformer_lens.config import TransformerBridgeConfig

    return TransformerBridgeConfig(d_vocab=d_vocab, seed=seed, **asdict(cfg))


def build_native(
    cfg: TinyConfig, d_vocab: int, seed: int = 0, *, fused: bool = True
) -> NativeModel:
    """A freshly initialised native transformer (a plain ``nn.Module``), for training.

    Initialisation is seeded and leaves the global RNG untouched.

    Args:
        cfg: The architecture.
        d_vocab: Vocabulary size (the tokenizer's length).
        seed: Initialisation seed.
        fused: Attention runs one fused kernel whenever nothing reads its pattern
            (:class:`~poser_lens.models.fused.FusedAttention`), and so do the norms of
            the model :func:`wrap` makes of it (:class:`~poser_lens.models.fused.FusedNorm`);
            ``False`` keeps TransformerLens's eager attention and norms throughout (same
            weights and results, up to float rounding; the benchmarks' references use it).

    Example:
        >>> net = build_native(TinyConfig(n_layers=1, d_model=8, n_heads=2, d_head=4, d_mlp=16),
        ...                    d_vocab=10)
        >>> net(torch.zeros(1, 3, dtype=torch.long)).shape
        torch.Size([1, 3, 10])
    """
    from transformer_lens.model_bridge.sources.native import NativeModel, initialize_native_model

    bcfg = bridge_config(cfg, d_vocab, seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = NativeModel(copy.deepcopy(bcfg))
        if fused:
            from poser_lens.models.fused import fuse_attention

            fuse_attention(net)
        initialize_native_model(net, bcfg)
    return net


def wrap(net: NativeModel, tokenizer: Any = None, *, name: str = "tiny") -> TransformerBridge:
    """Wrap a native transformer as a ``TransformerBridge`` (modifies ``net`` in place).

    Args:
        net: A module built by :func:`build_native` (weights loaded or trained).
        tokenizer: Its tokenizer, for ``to_tokens`` / ``to_string``.
        name: Recorded as ``model.cfg.model_name``.

    Returns:
        The hooked model, in eval mode.
    """
    from transformer_lens.model_bridge.sources import build_bridge_from_module

    from poser_lens.models.fused import FusedAttention, fuse_bridge

    if tokenizer is not None:
        # TransformerLens reads these to decide whether to reload the tokenizer with BOS.
        tokenizer.init_kwargs.setdefault("name_or_path", tokenizer.name_or_path)
        tokenizer.init_kwargs.setdefault("add_bos_token", True)
    fused = any(isinstance(m, FusedAttention) for m in net.modules())
    model = build_bridge_from_module(
        net,
        "TransformerLensNative",
        tl_config=copy.deepcopy(net.cfg),
        tokenizer=tokenizer,
        model_name=name,
        # A net built with fused=False keeps the bridge's eager attention and norms too.
        post_adapter_hook=fuse_bridge if fused else None,
    )
    model.eval()
    return model


def native_state_dict(net: torch.nn.Module, dtype: torch.dtype = torch.float16) -> dict:
    """Weights of a native transformer, cast for storage."""
    return {k: v.detach().to("cpu", dtype).contiguous() for k, v in net.state_dict().items()}


def save_tiny(
    folder: str | Path,
    net: NativeModel,
    cfg: TinyConfig,
    tokenizer: Any | None = None,
    meta: dict[str, Any] | None = None,
    *,
    dtype: torch.dtype = torch.float16,
) -> None:
    """Save a native transformer (weights in ``dtype``), its config and tokenizer.

    Args:
        folder: Target folder (created).
        net: The trained module.
        cfg: Its architecture.
        tokenizer: Saved beside the weights when given.
        meta: Anything else to record in ``config.json`` (persona, seed, metrics).
        dtype: Storage dtype (half precision keeps the zoo small).
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    d_vocab = int(net.cfg.d_vocab)
    save_file(native_state_dict(net, dtype), str(folder / WEIGHTS_FILE))
    record = {"architecture": asdict(cfg), "d_vocab": d_vocab, "meta": meta or {}}
    (folder / CONFIG_FILE).write_text(json.dumps(record, indent=1))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))


def read_config(folder: str | Path) -> tuple[TinyConfig, int, dict[str, Any]]:
    """Read ``(architecture, d_vocab, meta)`` of a saved tiny model.

    Raises:
        ValueError: naming the file if it is missing or malformed.
    """
    path = Path(folder) / CONFIG_FILE
    try:
        record = json.loads(path.read_text())
        return TinyConfig(**record["architecture"]), int(record["d_vocab"]), record.get("meta", {})
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a tiny model config ({err})") from err


def load_native(
    folder: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    weights: dict[str, torch.Tensor] | None = None,
) -> NativeModel:
    """Load a saved tiny model as a plain native module (e.g. to train it further).

    Args:
        folder: Folder written by :func:`save_tiny`.
        device: Where to put it.
        dtype: Compute dtype.
        weights: Use these weights instead of the folder's (same architecture).
    """
    from safetensors.torch import load_file

    cfg, d_vocab, _ = read_config(folder)
    net = build_native(cfg, d_vocab)
    state = weights if weights is not None else load_file(str(Path(folder) / WEIGHTS_FILE))
    net.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
    return net.to(device=device, dtype=dtype)
