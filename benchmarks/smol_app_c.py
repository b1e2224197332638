"""Poser App. C Table 1 on SmolLM2-135M: greedy answers under noise at an early layer.

Usage: python benchmarks/smol_app_c.py [OUT_DIR] [--magnitudes 0,5,10,15] [--layer 0.1] [--absolute]
Writes OUT_DIR/smol_app_c.md and .csv (default OUT_DIR: runs/smol_app_c).
"""

from __future__ import annotations

import argparse
import csv
import io
import time
from pathlib import Path

import torch

from poser_lens._io import write_text_atomic
from poser_lens.behaviour.noise import NOISE_QUESTIONS, generations_markdown, noise_generations
from poser_lens.models.smol import load_smol


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", nargs="?", default="runs/smol_app_c")
    parser.add_argument("--magnitudes", default="0,5,10,15")
    parser.add_argument("--layer", type=float, default=0.1)
    parser.add_argument("--kind", default="gaussian")
    parser.add_argument("--questions", type=int, default=3, help="how many of the questions")
    parser.add_argument("--max-new-tokens", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--absolute", action="store_true", help="absolute noise norms")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mags = tuple(float(x) for x in args.magnitudes.split(","))
    layer = int(args.layer) if args.layer >= 1 else args.layer
    t0 = time.perf_counter()
    model, tok = load_smol()
    rows = noise_generations(
        model,
        tok,
        NOISE_QUESTIONS[: args.questions],
        magnitudes=mags,
        layer=layer,
        kind=args.kind,
        max_new_tokens=args.max_new_tokens,
        relative=not args.absolute,
    )
    out = Path(args.out)
    write_text_atomic(out / "smol_app_c.md", generations_markdown(rows) + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out / "smol_app_c.csv", buf.getvalue())
    print(generations_markdown(rows))
    print(f"{len(rows)} rows; {time.perf_counter() - t0:.0f} s; written to {out}")


if __name__ == "__main__":
    main()
