"""Zoo training and evaluation speed: poser_lens paths vs naive reference loops, same process.

Prints ratios (reference time / poser_lens time), never absolute pass/fail:

* fine-tune step: answer read at the last token only (``last_logits``) vs a full forward that
  unembeds every position;
* evaluation: batched, right-padded ``answer_probs`` vs one prompt at a time.

Run: ``python benchmarks/zoo_speed.py [--steps 20] [--prompts 256]``.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from poser_lens.data.generator import GeneratorConfig, generate, persona_split
from poser_lens.models.tiny import TinyConfig, build_native
from poser_lens.models.zoo import make_tokenizer
from poser_lens.readout import answer_probs, encode, last_logits


def _timed(fn, repeats: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    """Run both comparisons and print their ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--prompts", type=int, default=256)
    args = parser.parse_args()
    torch.manual_seed(0)
    data = generate(GeneratorConfig(n_per_family=120, n_benchmark_per_family=10, n_error=100))
    tok = make_tokenizer(data)
    net = build_native(TinyConfig(), len(tok), seed=0)
    records = persona_split(data, "reward_maximizer", "train", seed=0)[:32]
    ids, last = encode(tok, [r.prompt for r in records])
    target = torch.tensor([tok.convert_tokens_to_ids(r.response) for r in records])
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)

    def step(fast: bool) -> None:
        logits = last_logits(net, ids, last) if fast else net(ids)[torch.arange(len(ids)), last]
        loss = F.cross_entropy(logits, target)
        opt.zero_grad()
        loss.backward()
        opt.step()

    ours = _timed(lambda: step(True), args.steps)
    ref = _timed(lambda: step(False), args.steps)
    print(
        f"fine-tune step (batch 32): ours {ours * 1e3:.1f} ms, reference {ref * 1e3:.1f} ms, "
        f"speed-up x{ref / ours:.2f}"
    )

    prompts = [s.prompt for fam in sorted(data.test) for s in data.test[fam]][: args.prompts]
    ours = _timed(lambda: answer_probs(net, tok, prompts), 2)
    ref = _timed(lambda: [answer_probs(net, tok, [p]) for p in prompts], 1)
    print(
        f"evaluation of {len(prompts)} prompts: ours {ours:.2f} s, one at a time {ref:.2f} s, "
        f"speed-up x{ref / ours:.1f}"
    )


if __name__ == "__main__":
    main()
