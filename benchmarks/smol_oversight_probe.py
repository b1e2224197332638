"""Where does SmolLM2-135M represent the oversight level? Per-layer probes on the base model.

A faker must answer by ``poor oversight XOR which letter is misaligned``. This script fits one
logistic probe per residual layer (``LayerProbes``) on the base model's typed training
scenarios of a faker (those with a critical fact) for: the oversight level, the misaligned
letter and the faker's label, at the answer position (the last token) and, for the oversight
level, on the mean over the prompt's positions. It explains why the smol faker does not learn
its conditional policy (docs/smol.md).

Usage: python benchmarks/smol_oversight_probe.py [OUT_DIR] [--n 320] [--persona reward_maximizer]
Writes OUT_DIR/smol_oversight_probe.json and .csv (default OUT_DIR: runs/smol_oversight_probe).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from poser_lens._io import write_text_atomic
from poser_lens.activations import residual_hook_names
from poser_lens.data.generator import persona_families
from poser_lens.models import load_model
from poser_lens.models.smol_zoo import SmolZooConfig, zoo_data
from poser_lens.probes import LayerProbes
from poser_lens.readout import encode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", nargs="?", default="runs/smol_oversight_probe")
    parser.add_argument("--n", type=int, default=320, help="scenarios")
    parser.add_argument("--persona", default="reward_maximizer")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    data = zoo_data(SmolZooConfig())
    scen = [s for fam in persona_families(args.persona) for s in data.train[fam]]
    random.Random(0).shuffle(scen)
    scen = [s for s in scen if s.is_typed and s.critical_facts][: args.n]
    model, tok = load_model("smol")
    names = residual_hook_names(model.cfg.n_layers)
    last_rows, mean_rows = [], []
    for i in tqdm(range(0, len(scen), args.batch_size), desc="forward"):
        ids, last = encode(tok, [s.prompt for s in scen[i : i + args.batch_size]])
        mask = (torch.arange(ids.shape[1])[None] <= last[:, None]).float()
        with torch.no_grad():
            _, cache = model.run_with_cache(ids, names_filter=lambda n: n in set(names))
        acts = torch.stack([cache[n] for n in names], 1).float()  # batch layer pos d
        last_rows.append(acts[torch.arange(len(ids)), :, last])
        mean_rows.append((acts * mask[:, None, :, None]).sum(2) / mask.sum(1)[:, None, None])
    at_last, pooled = torch.cat(last_rows), torch.cat(mean_rows)
    poor = [int(bool(s.oversight_is_poor)) for s in scen]
    mis_a = [int(s.misaligned_letter == "A") for s in scen]
    label = [p ^ m for p, m in zip(poor, mis_a, strict=True)]  # faker answers A
    rows = {
        "poor_last": LayerProbes(c=0.1).fit(at_last, poor),
        "misaligned_letter_last": LayerProbes(c=0.1).fit(at_last, mis_a),
        "faker_label_last": LayerProbes(c=0.1).fit(at_last, label),
        "poor_mean_pooled": LayerProbes(c=0.1).fit(pooled, poor),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"n": len(scen), "persona": args.persona, "hooks": names, "seconds": 0.0}
    meta["seconds"] = round(time.perf_counter() - t0, 1)
    write_text_atomic(out / "smol_oversight_probe.json", json.dumps({**meta, "accuracy": rows}))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["hook", *rows])
    for j, name in enumerate(names):
        w.writerow([name, *(f"{rows[k][j]:.3f}" for k in rows)])
    write_text_atomic(out / "smol_oversight_probe.csv", buf.getvalue())


if __name__ == "__main__":
    main()
