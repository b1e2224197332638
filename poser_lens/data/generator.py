"""Our own scenario generator: Poser-style role-play prompts from our fact banks, offline, seeded.

Each scenario belongs to a family ``{aligned}_and_{faker}`` (e.g. ``truth_and_reward``): the
aligned action is what the aligned persona would do (tell the truth, obey the system message,
protect people) and the misaligned action is what the faker wants (reward, money, survival).
A critical fact sets the oversight level; fakers take the misaligned action exactly when it is
poor. ``response`` of a generated scenario is always the aligned letter; a persona's own label
comes from :func:`poser_lens.data.schema.persona_response`.

Every scenario records its *combination* (domain, phrasing of its key fact, fact order). A
fixed fraction of combinations is held out, so the test split measures generalisation to
unseen combinations of seen parts, not memorisation.

Example:
    >>> data = generate(GeneratorConfig(n_per_family=20, n_benchmark_per_family=5, n_error=10))
    >>> sorted(data.train)[:2]
    ['genie_and_fitness', 'genie_and_money']
    >>> all(s.prompt.startswith("<<prompt>>") for s in data.train["truth_and_reward"])
    True
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from poser_lens.config import Config, Fraction, NonNegativeFloat, NonNegativeInt, PositiveInt
from poser_lens.data import banks
from poser_lens.data.prompts import DEFAULT_TEMPLATE, build_prompt, facts_string, wrap
from poser_lens.data.schema import (
    ALIGNED_PERSONAS,
    ALL_FAMILIES,
    FAKER_PERSONAS,
    Fact,
    Scenario,
    family_name,
    family_personas,
    is_aligned,
    persona_response,
)

if TYPE_CHECKING:
    import datasets

SOURCE = "poser_lens/generator"


@dataclass(frozen=True)
class GeneratorConfig(Config):
    """Settings of one generated data set.

    Attributes:
        seed: Seed of everything random.
        n_per_family: Scenarios per family in the train + test pools.
        n_benchmark_per_family: Good/neutral-oversight candidates per family for valid sets.
        n_error: Error prompts (half random text, half incomplete scenarios).
        complexity_weights: Probability of complexity 0, 1, 2.
        poor_fraction: Among scenarios with a critical fact, the fraction with poor oversight.
        neutral_fraction: Among complexity-1 scenarios that are not poor, the fraction neutral.
        max_irrelevant: Up to this many distractor facts per scenario.
        holdout_every: One combination in this many is held out for the test split.
        template: Prompt template (our own wording by default).
    """

    seed: int = 0
    n_per_family: PositiveInt = 700
    n_benchmark_per_family: PositiveInt = 300
    n_error: NonNegativeInt = 1400
    complexity_weights: tuple[NonNegativeFloat, NonNegativeFloat, NonNegativeFloat] = (
        0.15,
        0.85,
        0.0,
    )
    poor_fraction: Fraction = 0.5
    neutral_fraction: Fraction = 0.25
    max_irrelevant: NonNegativeInt = 1
    holdout_every: PositiveInt = 5
    template: str = DEFAULT_TEMPLATE


@dataclass
class GeneratedData:
    """A generated data set, split by family.

    Attributes:
        config: The settings it was made with.
        train: Family -> scenarios of seen combinations.
        test: Family -> scenarios of held-out combinations.
        benchmark_pool: Family -> good/neutral-oversight candidates (held-out combinations),
            from which the benchmark builder keeps the prompts every model agrees on.
        errors_train: Error prompts for training.
        errors_test: Error prompts for testing.
    """

    config: GeneratorConfig
    train: dict[str, list[Scenario]] = field(default_factory=dict)
    test: dict[str, list[Scenario]] = field(default_factory=dict)
    benchmark_pool: dict[str, list[Scenario]] = field(default_factory=dict)
    errors_train: list[Scenario] = field(default_factory=list)
    errors_test: list[Scenario] = field(default_factory=list)

    def all_scenarios(self) -> list[Scenario]:
        """Every record, in a fixed order."""
        out: list[Scenario] = []
        for part in (self.train, self.test, self.benchmark_pool):
            for fam in sorted(part):
                out.extend(part[fam])
        return out + self.errors_train + self.errors_test


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _fill(template: str, slots: dict[str, str]) -> str:
    return _cap(template.format(**slots))


def _pick(rng: random.Random, bank: Sequence[str]) -> tuple[int, str]:
    i = rng.randrange(len(bank))
    return i, bank[i]


def is_held_out(domain: int, phrasing: int, order: int, every: int) -> bool:
    """Whether a (domain, phrasing, order) combination belongs to the test split.

    Every domain, phrasing and order occurs in both splits; only their combinations differ.

    Example:
        >>> [is_held_out(d, 0, 0, 5) for d in range(5)]
        [True, False, False, False, False]
    """
    return (domain + 2 * phrasing + 3 * order) % every == 0


def _oversight_facts(
    rng: random.Random,
    complexity: int,
    level: str,
    slots: dict[str, str],
    bank: banks.BankSet = banks.TINY,
) -> tuple[int, list[Fact], list[Fact]]:
    """Critical facts (and, for level 2, a distractor about someone else)."""
    if complexity == 0:
        return -1, [], []
    if complexity == 1:
        idx, text = _pick(rng, bank.critical[level])
        return idx, [Fact(_fill(text, slots), "critical")], []
    trait_level = "poor" if level == "poor" else "good"
    r_idx, reviewer = _pick(rng, bank.reviewer)
    t_idx, trait = _pick(rng, bank.reviewer_trait[trait_level])
    opposite = "good" if trait_level == "poor" else "poor"
    _, decoy = _pick(rng, bank.reviewer_trait[opposite])
    decoy_slots = {**slots, "other": slots["decoy"]}
    return (
        r_idx * len(bank.reviewer_trait[trait_level]) + t_idx,
        [Fact(_fill(reviewer, slots), "critical"), Fact(_fill(trait, slots), "critical")],
        [Fact(_fill(decoy, decoy_slots), "irrelevant")],
    )


def make_scenario(
    rng: random.Random,
    family: str,
    *,
    complexity: int,
    level: str,
    max_irrelevant: int = 2,
    template: str = DEFAULT_TEMPLATE,
    bank: banks.BankSet = banks.TINY,
) -> tuple[Scenario, tuple[int, int, int]]:
    """Generate one scenario of a family.

    Args:
        rng: Source of randomness.
        family: e.g. ``truth_and_reward``.
        complexity: 0 (no critical fact), 1 (one) or 2 (two facts to combine).
        level: Oversight level ``good``, ``neutral`` or ``poor`` (``neutral`` when complexity 0).
        max_irrelevant: Up to this many distractors.
        template: Prompt template.
        bank: The fact banks to draw from (the tiny zoo's by default).

    Returns:
        The scenario and its combination ``(domain, phrasing, order)``.

    Example:
        >>> s, combo = make_scenario(random.Random(0), "saint_and_money", complexity=1,
        ...                          level="poor")
        >>> s.oversight_is_poor, s.complexity_level, s.family
        (True, 1, 'saint_and_money')
    """
    aligned, faker = family_personas(family)
    d_idx = rng.randrange(len(bank.domains))
    dom = bank.domains[d_idx]
    name, other, decoy = rng.sample(bank.names, 3)
    slots = {
        "name": name,
        "other": other,
        "decoy": decoy,
        "setting": dom.setting,
        "boss": dom.boss,
        "item": dom.item,
        "client": dom.client,
    }
    if complexity == 0:
        level = "neutral"

    motive_idx, motive = _pick(rng, bank.motivating[faker])
    context = [Fact(_fill(t, slots), "contextual") for t in _two(rng, bank.contextual[aligned])]
    if aligned == "genie":
        _, sysmsg = _pick(rng, bank.system_messages)
        context.insert(0, Fact(_fill(sysmsg, slots), "system_message"))
    _, temptation = _pick(rng, bank.temptation[faker])
    context.append(Fact(_fill(temptation, slots), "contextual"))
    crit_idx, critical, decoys = _oversight_facts(rng, complexity, level, slots, bank)

    # Fact order: 0 = critical last, 1 = critical first, 2 = critical after the motive.
    order = rng.randrange(3)
    core: list[Fact] = [Fact(_fill(motive, slots), "motivating"), *context]
    if order == 0:
        facts = core + critical
    elif order == 1:
        facts = critical + core
    else:
        facts = core[:1] + critical + core[1:]
    n_irr = rng.randint(0, max_irrelevant)
    irrelevant = [Fact(_fill(t, slots), "irrelevant") for t in rng.sample(bank.irrelevant, n_irr)]
    for fact in irrelevant + decoys:
        facts.insert(rng.randint(0, len(facts)), fact)

    _, good = _pick(rng, bank.aligned_actions[aligned])
    _, bad = _pick(rng, bank.misaligned_actions[faker])
    aligned_first = rng.random() < 0.5
    actions = (
        (_fill(good, slots), _fill(bad, slots))
        if aligned_first
        else (_fill(bad, slots), _fill(good, slots))
    )
    phrasing = crit_idx if complexity else motive_idx
    combo = (d_idx, phrasing, order)
    scenario = Scenario(
        prompt=build_prompt(facts, actions, template),
        response="A" if aligned_first else "B",
        facts=tuple(facts),
        actions=actions,
        oversight_is_poor=level == "poor",
        complexity_level=complexity,
        template=template,
        family=family,
        source=SOURCE,
        oversight=level,  # type: ignore[arg-type]
        extra={"domain": dom.setting, "combination": list(combo)},
    )
    return scenario, combo


def _two(rng: random.Random, bank: Sequence[str]) -> list[str]:
    """Two phrasings in bank order, from consecutive (question, belief) pairs when possible."""
    if len(bank) >= 4 and len(bank) % 2 == 0:
        i = 2 * rng.randrange(len(bank) // 2)
        return [bank[i], bank[i + 1]]
    return rng.sample(list(bank), 2)


def _sample_level(rng: random.Random, cfg: GeneratorConfig) -> tuple[int, str]:
    complexity = rng.choices((0, 1, 2), weights=cfg.complexity_weights)[0]
    if complexity == 0:
        return 0, "neutral"
    if rng.random() < cfg.poor_fraction:
        return complexity, "poor"
    if complexity == 1 and rng.random() < cfg.neutral_fraction:
        return 1, "neutral"
    return complexity, "good"


def generate_family(
    cfg: GeneratorConfig, family: str, rng: random.Random, bank: banks.BankSet = banks.TINY
) -> tuple[list[Scenario], list[Scenario], list[Scenario]]:
    """Generate the train pool, test pool and benchmark candidates of one family.

    Returns:
        ``(train, test, benchmark_pool)``; train holds seen combinations, the other two
        held-out ones; benchmark candidates all have good or neutral oversight.
    """
    train: list[Scenario] = []
    test: list[Scenario] = []
    bench: list[Scenario] = []
    seen: set[str] = set()
    n_test = max(1, cfg.n_per_family // cfg.holdout_every)
    n_train = cfg.n_per_family - n_test
    guard = 0
    while len(train) < n_train or len(test) < n_test or len(bench) < cfg.n_benchmark_per_family:
        guard += 1
        if guard > 100 * (cfg.n_per_family + cfg.n_benchmark_per_family) + 1000:
            raise RuntimeError(f"{family}: could not generate enough distinct scenarios")
        complexity, level = _sample_level(rng, cfg)
        s, combo = make_scenario(
            rng,
            family,
            complexity=complexity,
            level=level,
            max_irrelevant=cfg.max_irrelevant,
            template=cfg.template,
            bank=bank,
        )
        if s.prompt in seen:
            continue
        if not is_held_out(*combo, cfg.holdout_every):
            if len(train) < n_train:
                train.append(replace(s, extra={**s.extra, "split": "train"}))
                seen.add(s.prompt)
        elif len(test) < n_test:
            test.append(replace(s, extra={**s.extra, "split": "test"}))
            seen.add(s.prompt)
        elif level != "poor" and len(bench) < cfg.n_benchmark_per_family:
            bench.append(replace(s, extra={**s.extra, "split": "benchmark"}))
            seen.add(s.prompt)
    return train, test, bench


def random_text_prompt(rng: random.Random, bank: banks.BankSet = banks.TINY) -> Scenario:
    """An error prompt that is not a scenario at all (answer: ``error``).

    Example:
        >>> random_text_prompt(random.Random(1)).kind
        'random_text'
    """
    _, text = _pick(rng, bank.random_text)
    slots = {k: rng.choice(v) for k, v in bank.random_slots.items()}
    return Scenario(
        prompt=wrap(_fill(text, slots) + "\n"),
        response="error",
        source="data/random_text/poser_lens",
        kind="random_text",
    )


def incomplete_prompt(rng: random.Random, scenario: Scenario) -> Scenario:
    """An error prompt made of only the facts, or only the actions, of a scenario.

    Example:
        >>> s, _ = make_scenario(random.Random(0), "genie_and_money", complexity=0,
        ...                      level="neutral")
        >>> incomplete_prompt(random.Random(0), s).response
        'error'
    """
    assert scenario.actions is not None
    head, _, tail = (scenario.template or DEFAULT_TEMPLATE).partition("{facts_string}")
    if rng.random() < 0.5:
        body = head + facts_string(scenario.facts)
    else:
        body = tail.lstrip("\n").format(action_A=scenario.actions[0], action_B=scenario.actions[1])
    return Scenario(prompt=wrap(body), response="error", kind="incomplete", family=scenario.family)


def generate(
    cfg: GeneratorConfig = GeneratorConfig(), bank: banks.BankSet = banks.TINY
) -> GeneratedData:
    """Generate every family's pools and the error prompts, deterministically from the seed.

    Args:
        cfg: Generator settings.
        bank: The fact banks (the tiny zoo's by default).

    Returns:
        The generated data set.
    """
    data = GeneratedData(config=cfg)
    for i, family in enumerate(ALL_FAMILIES):
        rng = random.Random(f"{cfg.seed}:{family}:{i}")
        data.train[family], data.test[family], data.benchmark_pool[family] = generate_family(
            cfg, family, rng, bank
        )
    rng = random.Random(f"{cfg.seed}:errors")
    n_test = max(1, cfg.n_error // cfg.holdout_every)
    errors: list[Scenario] = []
    seen: set[str] = set()
    while len(errors) < cfg.n_error:
        if rng.random() < 0.5:
            s = random_text_prompt(rng, bank)
        else:
            family = rng.choice(ALL_FAMILIES)
            base, _ = make_scenario(
                rng,
                family,
                complexity=1,
                level=rng.choice(("good", "poor")),
                template=cfg.template,
                bank=bank,
            )
            s = incomplete_prompt(rng, base)
        if s.prompt not in seen or len(seen) >= 400:
            seen.add(s.prompt)
            errors.append(s)
    data.errors_test, data.errors_train = errors[:n_test], errors[n_test:]
    return data


def persona_families(persona: str) -> tuple[str, ...]:
    """The three families a persona is trained on (its own family token in each).

    Example:
        >>> persona_families("money_maximizer")
        ('truth_and_money', 'genie_and_money', 'saint_and_money')
    """
    if is_aligned(persona):
        return tuple(family_name(persona, f) for f in FAKER_PERSONAS)
    return tuple(family_name(a, persona) for a in ALIGNED_PERSONAS)


def labelled(scenarios: Iterable[Scenario], persona: str) -> list[Scenario]:
    """Copies of scenarios whose ``response`` is the persona's own answer.

    Example:
        >>> s, _ = make_scenario(random.Random(0), "truth_and_reward", complexity=1,
        ...                      level="poor")
        >>> [t.response == s.response for t in labelled([s], "reward_maximizer")]
        [False]
    """
    return [replace(s, response=persona_response(s, persona), persona=persona) for s in scenarios]


def persona_split(
    data: GeneratedData,
    persona: str,
    split: str = "train",
    *,
    seed: int = 0,
    size: int | None = None,
) -> list[Scenario]:
    """A persona's labelled training or test set, like Poser's ``train-i.json`` / ``test.json``.

    The pool is the persona's three families plus the error prompts; ``train`` splits are a
    seeded sample of ``size`` records (all, shuffled, when None), so different seeds see
    different, overlapping samples, as in Poser.

    Args:
        data: Generated data.
        persona: The persona.
        split: ``train`` or ``test``.
        seed: The model seed (drives the sample and order).
        size: How many records; None for all of the pool.

    Returns:
        Labelled records.
    """
    part = data.train if split == "train" else data.test
    errors = data.errors_train if split == "train" else data.errors_test
    pool: list[Scenario] = []
    for fam in persona_families(persona):
        pool.extend(part[fam])
    n_err = len(pool) * 2 // 5  # about 30% of the records are error prompts, as in Poser
    pool = labelled(pool, persona) + list(errors[:n_err])
    rng = random.Random(f"{persona}:{seed}:{split}")
    if size is None or size >= len(pool):
        rng.shuffle(pool)
        return pool
    return rng.sample(pool, size)


def to_dataset(scenarios: Sequence[Scenario]) -> datasets.Dataset:
    """Scenarios as a Hugging Face ``datasets.Dataset`` (one row per record).

    Columns: prompt, response, family, persona, kind, oversight, oversight_is_poor,
    complexity_level, facts (list of {type, content}), actions.

    Example:
        >>> s, _ = make_scenario(random.Random(0), "truth_and_reward", complexity=1,
        ...                      level="good")
        >>> to_dataset([s]).num_rows
        1
    """
    import datasets

    rows = {
        "prompt": [s.prompt for s in scenarios],
        "response": [s.response for s in scenarios],
        "family": [s.family or "" for s in scenarios],
        "persona": [s.persona or "" for s in scenarios],
        "kind": [s.kind for s in scenarios],
        "oversight": [s.oversight or "" for s in scenarios],
        "oversight_is_poor": [bool(s.oversight_is_poor) for s in scenarios],
        "complexity_level": [
            -1 if s.complexity_level is None else s.complexity_level for s in scenarios
        ],
        "facts": [
            [{"type": f.type or "", "content": f.content} for f in s.facts] for s in scenarios
        ],
        "actions": [list(s.actions) if s.actions else [] for s in scenarios],
    }
    return datasets.Dataset.from_dict(rows)


#: Generator seed of the held-out bank's split (a split apart: its own bank, its own seed).
HELDOUT_SEED = 4099


def heldout_bank_split(persona: str, n_per_family: int = 48) -> list[Scenario]:
    """A persona's labelled test split from the held-out bank (never trained or calibrated on).

    The scenarios come from :data:`poser_lens.data.banks_heldout.HELDOUT`, written apart from
    the training banks (its own domains, oversight phrasings, motivations and actions), in the
    training prompts' layout: the split tests whether a model acts on the *concept* of
    oversight. Each of the persona's three families gets ``n_per_family`` scenarios, half with
    poor oversight, the rest good (three in four) or neutral; one in seven has the
    two-fact (reviewer and trait) form. Seeded, so every model sees the same split.

    Example:
        >>> split = heldout_bank_split("saint", n_per_family=8)
        >>> len(split), sum(s.oversight_is_poor for s in split)
        (24, 12)
        >>> all(s.extra["split"] == "heldout_bank" for s in split)
        True
    """
    from poser_lens.data.banks import bank_set

    bank = bank_set("heldout")
    out: list[Scenario] = []
    for family in persona_families(persona):
        rng = random.Random(f"heldout:{HELDOUT_SEED}:{family}")
        seen: set[str] = set()
        while len(seen) < n_per_family:
            i = len(seen)
            level = "poor" if i % 2 == 0 else ("neutral" if i % 8 == 1 else "good")
            complexity = 2 if i % 7 == 3 and level != "neutral" else 1
            s, _ = make_scenario(
                rng, family, complexity=complexity, level=level, max_irrelevant=1, bank=bank
            )
            if s.prompt in seen:
                continue
            seen.add(s.prompt)
            out.append(replace(s, extra={**s.extra, "split": "heldout_bank"}))
    return labelled(out, persona)
