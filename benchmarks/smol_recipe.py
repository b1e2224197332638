"""One smol persona recipe, trained and measured: a row of the recipe table in docs/smol.md.

Trains one persona model of the smol zoo with the given overrides of ``SmolZooConfig``
(through ``train_persona``, so it checkpoints and resumes), then prints and appends to
``OUT/recipes.csv`` one row: the overrides, trainable parameters, examples seen (and epochs of
the pool), training wall time, s/example, held-out test / divergent / error accuracy and the
compliance gap, and the final training loss.

Run: ``python benchmarks/smol_recipe.py reward_maximizer-0 steps=1680 lora_from=0.8
[--out runs/smol_recipes]`` (values are YAML: ``target_modules=[self_attn.q_proj]``,
``generator={n_per_family: 1000}``).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
from dataclasses import replace
from pathlib import Path

import yaml

from poser_lens.data.generator import generate, persona_split
from poser_lens.data.schema import model_persona
from poser_lens.models.smol_zoo import SmolZooConfig, train_persona


def main() -> None:
    """Train the recipe and print its row."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="<persona>-<seed>")
    parser.add_argument("overrides", nargs="*", help="SmolZooConfig fields, key=value (YAML)")
    parser.add_argument("--out", default="runs/smol_recipes")
    args = parser.parse_args()
    given = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.overrides)}
    merged = SmolZooConfig(n_test=120).to_dict()
    for key, value in given.items():  # nested settings (generator) merge key by key
        merged[key] = {**merged[key], **value} if isinstance(value, dict) else value
    cfg = SmolZooConfig.from_dict(merged)
    persona, _ = model_persona(args.model)
    cfg = replace(cfg, personas=(persona,))
    root = Path(args.out) / cfg.key()
    cfg.claim(root)
    row = train_persona(root, cfg, args.model)
    pool = len(persona_split(generate(cfg.generator), persona, "train", seed=0))
    seen = cfg.steps * cfg.batch_size
    out = {
        "date": str(datetime.date.today()),
        "model": args.model,
        "recipe": json.dumps(given, sort_keys=True),
        "trainable": row["trainable_params"],
        "examples": seen,
        "epochs": round(seen / pool, 1),
        "train_s": row["train_seconds"],
        "s_per_example": round(row["train_seconds"] / seen, 3),
        "test_acc": row["test_accuracy"],
        "divergent_acc": row["divergent_accuracy"],
        "error_acc": row["error_accuracy"],
        "gap": row["compliance_gap"],
        "n_test": row["n_test"],
        "final_loss": row["final_loss"],
        "folder": str(root / "models" / args.model),
    }
    table = Path(args.out) / "recipes.csv"
    new = not table.exists()
    with table.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(out))
        if new:
            writer.writeheader()
        writer.writerow(out)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
