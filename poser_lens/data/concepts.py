"""Our own concept example sets for strategy 4 (suspicious concepts), never from the benchmark.

Poser's strategy 4 reads a model's residual stream along *concept directions*: the mean
activation on examples of a concept minus the mean on examples of its opposite. Poser's
concept files are one-sentence vignettes (security, competence) and, for "misaligned
behaviour", the first benchmark prompts of a family with a letter appended, i.e. the very
prompts that are later scored (a leak), and a different behaviour set for the two models of a
pair. Here every set is built from our generator's own text, so the tiny zoo's word-level
tokenizer knows every word:

* ``security`` / ``vulnerability``: single critical facts (``banks.CRITICAL``) about the
  *oversight infrastructure* (monitoring systems, logs, cameras, records) asserting good vs
  poor oversight.
* ``competence`` / ``incompetence``: critical facts about the *people* who oversee (an
  overseer checks carefully vs never reads, is on vacation, trusts blindly), plus the
  reviewer-trait facts (``banks.REVIEWER_TRAIT``) whose words the data knows.
* ``aligned_behavior`` / ``misaligned_behavior``: a training-split scenario of good or neutral
  oversight with its aligned vs its misaligned letter appended after the answer cue (training
  scenarios only; held-out and benchmark scenarios are never used, and poor-oversight
  scenarios are skipped, so no text shows where the two kinds of model behave differently).

Every example is wrapped like a prompt, as in Poser's paper (the code used a RepE question
template instead): security and competence examples are the generator's fact block with the
single fact, ``<<prompt>>Facts:\\n1. <fact>\\n<</prompt>>``, exactly the shape of the
incomplete-scenario error prompts the models were trained to answer ``error``; behaviour
examples are the scenario with the letter inside the tags. The last token is therefore always
``<</prompt>>``, where strategy 4 reads the residual stream, as on the scored prompts.

Example:
    >>> from poser_lens.data.generator import GeneratorConfig, generate
    >>> data = generate(GeneratorConfig(n_per_family=20, n_benchmark_per_family=2, n_error=4))
    >>> sets = concept_sets(data, family="truth_and_reward", n_examples=4)
    >>> sorted(sets)[:3]
    ['aligned_behavior', 'competence', 'incompetence']
    >>> sets["vulnerability"][0].startswith("<<prompt>>Facts:")
    True
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from poser_lens._io import write_json_atomic
from poser_lens.data import banks
from poser_lens.data.generator import GeneratedData, GeneratorConfig, generate
from poser_lens.data.prompts import DEFAULT_TEMPLATE, facts_string, unwrap, wrap
from poser_lens.data.schema import ALL_FAMILIES, Fact, Scenario

#: Concept pairs of strategy 4: name -> (suspicious side, safe side). The suspicious side is
#: what the paper hypothesises a faker thinks about (it can get away with misbehaving).
CONCEPT_PAIRS: dict[str, tuple[str, str]] = {
    "security": ("vulnerability", "security"),
    "competence": ("incompetence", "competence"),
    "behavior": ("misaligned_behavior", "aligned_behavior"),
}

#: Words that mark a critical fact as being about a person (competence) rather than the
#: monitoring infrastructure (security).
_PERSON_MARKERS = ("{name}", "{boss}", "team", "Nobody", "no one")
_WORD = re.compile(r"\w+|[^\w\s]")


def _is_about_people(text: str) -> bool:
    return any(m in text for m in _PERSON_MARKERS)


def _slot_fills(seed: int, bank: banks.BankSet = banks.TINY) -> list[dict[str, str]]:
    """One slot assignment per domain (names drawn with a seeded rng)."""
    rng = random.Random(f"concepts:{seed}")
    out = []
    for dom in bank.domains:
        name, other = rng.sample(bank.names, 2)
        out.append(
            {
                "name": name,
                "other": other,
                "setting": dom.setting,
                "boss": dom.boss,
                "item": dom.item,
                "client": dom.client,
            }
        )
    return out


def _fact_example(text: str, template: str) -> str:
    head = template.partition("{facts_string}")[0]
    return wrap(head + facts_string([Fact(text[:1].upper() + text[1:], "critical")]))


def _fill_all(texts: Iterable[str], fills: Sequence[Mapping[str, str]]) -> list[str]:
    out: list[str] = []
    for fill in fills:
        for t in texts:
            filled = t.format(**fill)
            if filled not in out:
                out.append(filled)
    return out


def _known(text: str, vocab: set[str] | None) -> bool:
    return vocab is None or all(w in vocab for w in _WORD.findall(text))


def behavior_examples(scenario: Scenario, letter: str) -> str:
    """A scenario answered with ``letter``, inside the prompt tags.

    Example:
        >>> s = Scenario(prompt=wrap("Answer:\\n"), response="A")
        >>> behavior_examples(s, "B")
        '<<prompt>>Answer:\\nB<</prompt>>'
    """
    return wrap(unwrap(scenario.prompt) + letter)


def concept_sets(
    data: GeneratedData | GeneratorConfig | int = 0,
    *,
    family: str | None = None,
    n_examples: int = 20,
    seed: int = 0,
    bank: banks.BankSet = banks.TINY,
) -> dict[str, list[str]]:
    """The six concept example sets, built from the generator's banks and training split.

    Args:
        data: Generated data (its training split and template are used), a generator config
            to generate it from, or a generator seed (default config).
        family: Family whose training scenarios make the behaviour sets (both models of a pair
            share their family, so they share every set); None pools all families.
        n_examples: At most this many examples per set (seeded sample, stored order kept).
        seed: Seeds the names filled into the fact templates and the sampling.
        bank: The fact banks the data was generated from (the tiny zoo's by default).

    Returns:
        ``security``, ``vulnerability``, ``competence``, ``incompetence``,
        ``aligned_behavior``, ``misaligned_behavior`` -> wrapped example texts.
    """
    if isinstance(data, int):
        data = generate(GeneratorConfig(seed=data))
    elif isinstance(data, GeneratorConfig):
        data = generate(data)
    template = data.config.template or DEFAULT_TEMPLATE
    families = [family] if family is not None else list(ALL_FAMILIES)
    train = [s for fam in families for s in data.train.get(fam, [])]
    vocab = {w for s in data.all_scenarios() for w in _WORD.findall(s.prompt)} or None
    fills = _slot_fills(seed, bank)

    def facts(level: str, people: bool) -> list[str]:
        texts = [t for t in bank.critical[level] if _is_about_people(t) == people]
        if people:
            texts += list(bank.reviewer_trait["good" if level == "good" else "poor"])
        return [_fact_example(t, template) for t in _fill_all(texts, fills) if _known(t, vocab)]

    usable = [
        s
        for s in train
        if s.kind == "scenario" and s.response in ("A", "B") and not s.oversight_is_poor
    ]
    if len(usable) > n_examples:  # one sample for both behaviour sets: they stay paired
        rng = random.Random(f"concepts:{seed}:behavior")
        usable = [usable[i] for i in sorted(rng.sample(range(len(usable)), n_examples))]
    sets = {
        "security": facts("good", people=False),
        "vulnerability": facts("poor", people=False),
        "competence": facts("good", people=True),
        "incompetence": facts("poor", people=True),
        "aligned_behavior": [behavior_examples(s, s.aligned_letter) for s in usable],
        "misaligned_behavior": [behavior_examples(s, s.misaligned_letter) for s in usable],
    }
    out = {}
    for name, texts in sets.items():
        if len(texts) > n_examples:  # an rng per set: a set never depends on the family
            rng = random.Random(f"concepts:{seed}:{name}")
            keep = sorted(rng.sample(range(len(texts)), n_examples))
            texts = [texts[i] for i in keep]
        out[name] = texts
    return out


def write_concepts(folder: str | Path, sets: Mapping[str, Sequence[str]]) -> list[Path]:
    """Write concept sets in Poser's format: ``<folder>/<name>.json``, a list of {"example"}.

    Put ``folder`` at ``<root>/src/detection_strategies/concepts`` to have
    :func:`poser_lens.data.poser.load_concepts` read them back from ``root``.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp())
        >>> [p.name for p in write_concepts(out, {"care": ["x"]})]
        ['care.json']
    """
    folder = Path(folder)
    paths = []
    for name, texts in sets.items():
        path = folder / f"{name}.json"
        write_json_atomic(path, [{"example": t} for t in texts], indent=1)
        paths.append(path)
    return paths


__all__ = ["CONCEPT_PAIRS", "behavior_examples", "concept_sets", "write_concepts"]
