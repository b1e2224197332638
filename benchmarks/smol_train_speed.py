"""Smol zoo training speed: the frozen-prefix cache vs the full forward, same process.

One LoRA training step on SmolLM2-135M (the smol zoo's default adapters: q/v/down of the
layers from 60% of depth) costs a full forward of all 30 layers plus the backward of the
adapted ones. With the frozen prefix cached (``SmolZooConfig.cache_prefix``) a step runs only
the adapted layers; the prefix costs one no-grad forward of the frozen layers per record, once
for every epoch. Prints seconds per example of both, the one-off cache cost per record, and
the ratio over ``--epochs`` epochs (reference time / poser_lens time); medians of ``--repeats``.

Run: ``python benchmarks/smol_train_speed.py [--batch 4] [--repeats 5] [--epochs 10]``.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time

import torch
import torch.nn.functional as F

from poser_lens.data.generator import generate, persona_split
from poser_lens.models.smol import load_smol_hf
from poser_lens.models.smol_zoo import FrozenPrefix, SmolZooConfig, first_adapted_layer
from poser_lens.models.smol_zoo.train import _with_lora
from poser_lens.readout import answer_token_ids, encode, last_logits


def main() -> None:
    """Time both training paths and print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    cfg = SmolZooConfig()
    hf, tok = load_smol_hf()
    model = _with_lora(hf, cfg, seed=0)
    ids_of = answer_token_ids(tok)
    records = persona_split(generate(cfg.generator), "reward_maximizer", "train", seed=0)
    batches = [records[i * args.batch : (i + 1) * args.batch] for i in range(args.repeats + 1)]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    first = first_adapted_layer(cfg, int(hf.config.num_hidden_layers))
    prefix = FrozenPrefix(model, first)

    def step(batch, cached: bool) -> float:
        t0 = time.perf_counter()
        target = torch.tensor([ids_of[s.response] for s in batch])
        if cached:
            logits = prefix.logits([s.prompt for s in batch]).float()
        else:
            ids, last = encode(tok, [s.prompt for s in batch])
            logits = last_logits(model, ids, last).float()
        loss = F.cross_entropy(logits, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    model.train()
    full = [step(b, cached=False) for b in batches][1:]  # the first is a warm-up
    prompts = [s.prompt for b in batches for s in b]
    t0 = time.perf_counter()
    prefix.residuals(tok, prompts)
    cache_per_record = (time.perf_counter() - t0) / len(prompts)
    cached = [step(b, cached=True) for b in batches][1:]
    per_full = statistics.median(full) / args.batch
    per_cached = statistics.median(cached) / args.batch
    tokens = statistics.mean(len(tok(p)["input_ids"]) for p in prompts)
    total_full = args.epochs * per_full
    total_cached = args.epochs * per_cached + cache_per_record
    print(f"smol LoRA training, {datetime.date.today()}, torch threads {torch.get_num_threads()}")
    print(f"  records of ~{tokens:.0f} tokens, batch {args.batch}, layers {first}-29 adapted")
    print(f"  full forward:   {per_full:.3f} s/example (median of {args.repeats} steps)")
    print(f"  frozen prefix:  {per_cached:.3f} s/example + {cache_per_record:.3f} s/record once")
    print(f"  per step: {per_full / per_cached:.2f}x; over {args.epochs} epochs (cache included):")
    print(f"  ratio {total_full / total_cached:.2f}x")


if __name__ == "__main__":
    main()
