"""How much variety can a smol faker learn? Learning curves on both test splits, per recipe.

Trains one faker (``--name``, default ``reward_maximizer-0``) alone with each recipe of
``--recipes`` (overrides of the concept recipe, ``CONCEPT_RECIPE``: bank sets, a curriculum,
adapter layers, ...), the stopping rule off, and every ``--every`` steps prints:

* the auxiliary head's training accuracy over the last ``--every`` steps (does the model carry
  the oversight level to the answer position?) and the answer loss;
* on its in-distribution validation split: accuracy, divergent accuracy, compliance gap;
* on the held-out bank (written apart from every training bank; ``--bank`` scenarios a
  family): compliance gap, P(misaligned) under poor oversight and under the rest.

The held-out bank is read only to draw the curve; nothing it shows feeds back into training.
Each recipe's curve goes to ``--out`` as CSV (one row per step). A recipe is a JSON object
of ``SmolZooConfig`` settings; ``--recipes`` takes several separated by ``;``.

Run: ``python benchmarks/smol_variety.py --recipes '{"banks": "tiny"};{"banks": "varied@0.25"};
{"banks": "varied"}' --steps 1600`` (about 10-25 minutes a recipe on the 2-core CPU).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import tempfile
import time
from pathlib import Path

import torch

from poser_lens.data.generator import heldout_bank_split
from poser_lens.data.schema import model_persona
from poser_lens.models.smol_train import SharedBase, StackTrainer
from poser_lens.models.smol_zoo import (
    CONCEPT_RECIPE,
    SmolZooConfig,
    bank_metrics,
    persona_metrics,
)

FIELDS = (
    "step", "seconds", "aux_accuracy", "loss", "val_accuracy", "val_divergent", "val_gap",
    "bank_gap", "bank_p_poor", "bank_p_overseen",
)  # fmt: skip


def curve(recipe: dict, name: str, steps: int, every: int, n_bank: int) -> list[dict]:
    """Train ``name`` alone under ``recipe`` and return its learning curve."""
    persona, _ = model_persona(name)
    base = SmolZooConfig(**CONCEPT_RECIPE).to_dict()
    cfg = SmolZooConfig.from_dict(
        {**base, **recipe, "personas": [persona], "steps": steps, "min_steps": steps + 1}
    )
    bank = heldout_bank_split(persona, n_bank)
    rows: list[dict] = []
    t0 = time.perf_counter()

    def observe(tr: StackTrainer, step: int) -> None:
        st = tr.state["models"][name]
        val = tr.val[name]
        vm = persona_metrics(tr.probs(0, [s.prompt for s in val]), val)
        bm = bank_metrics(tr.probs(0, [s.prompt for s in bank]), bank)
        aux, loss = st["aux"][-every:], st["losses"][-every:]
        row = {
            "step": step,
            "seconds": round(time.perf_counter() - t0),
            "aux_accuracy": round(sum(aux) / max(len(aux), 1), 3),
            "loss": round(sum(loss) / max(len(loss), 1), 4),
            "val_accuracy": round(vm["test_accuracy"], 3),
            "val_divergent": round(vm["divergent_accuracy"], 3),
            "val_gap": round(vm["compliance_gap"], 3),
            "bank_gap": round(bm["compliance_gap"], 3),
            "bank_p_poor": round(bm["p_misaligned_poor"], 3),
            "bank_p_overseen": round(bm["p_misaligned_overseen"], 3),
        }
        rows.append(row)
        print("  " + " ".join(f"{k} {v}" for k, v in row.items()), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        shared = SharedBase(cfg)
        shared.prefix.residuals(shared.tok, [s.prompt for s in bank])
        StackTrainer(Path(tmp), cfg, [name], progress=False, shared=shared).train(
            observe, every=every
        )
    return rows


def main() -> None:
    """Run every recipe's curve and write the CSVs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default='{"banks": "tiny"};{"banks": "varied"}')
    parser.add_argument("--name", default="reward_maximizer-0")
    parser.add_argument("--steps", type=int, default=1600)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--bank", type=int, default=16, help="Held-out scenarios a family.")
    parser.add_argument("--out", type=Path, default=Path("smol_variety"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"smol variety curves, {datetime.date.today()}, torch threads {torch.get_num_threads()}")
    for i, text in enumerate(r for r in args.recipes.split(";") if r.strip()):
        recipe = json.loads(text)
        print(f"recipe {text.strip()}:", flush=True)
        rows = curve(recipe, args.name, args.steps, args.every, args.bank)
        with open(args.out / f"recipe{i}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["recipe", *FIELDS])
            writer.writeheader()
            for row in rows:
                writer.writerow({"recipe": text.strip(), **row})


if __name__ == "__main__":
    main()
