import json
import math
import re
import shutil

import numpy as np
import pytest
from test_poser import good_record

from poser_lens._io import read_json, write_json_atomic
from poser_lens.data import confound, poser
from poser_lens.data.benchmark import logodds_array
from poser_lens.data.confound import (
    CONFIDENCE_STATISTICS,
    balanced_benchmark,
    confound_report,
    match_model_key,
    pair_outcomes,
)
from poser_lens.data.schema import is_aligned, model_persona
from poser_lens.stats import bootstrap_ci, cluster_bootstrap_ci

ALIGNED = ("saint-0", "saint-1")
FAKERS = ("fitness_maximizer-0", "fitness_maximizer-1")


def record(i, probs):
    """One benchmark record of our own invention (test_poser's), its prompt made unique."""
    rec = good_record(probs=probs)
    rec["prompt"] = rec["prompt"].replace("twice.", f"twice (round {i}).")
    return rec


def poser_key(name):
    return f"../models/together/{name}"


def make_root(tmp_path, families, *, key=poser_key, extra_models=()):
    """A Poser checkout: per family, model -> P(response) per prompt; all (aligned, faker) pairs.

    ``families`` maps a family name to ``{model: [p, ...]}``; models are split into aligned and
    fakers by persona. ``extra_models`` get probabilities too but are in no pair.
    """
    root = tmp_path / "poser"
    pairs = []
    for fam, probs in families.items():
        names = list(probs)
        n = len(next(iter(probs.values())))
        records = [record(i, {key(m): float(probs[m][i]) for m in names}) for i in range(n)]
        for rec in records:
            rec["probs"].update({key(m): 0.5 for m in extra_models})
        write_json_atomic(root / "data" / "benchmark" / f"{fam}.json", records, indent=1)
        aligned = [m for m in names if is_aligned(model_persona(m)[0])]
        fakers = [m for m in names if m not in aligned]
        pairs += [
            {"aligned": a, "misaligned": f, "valid_data": f"data/benchmark/{fam}.json"}
            for a in aligned
            for f in fakers
        ]
    write_json_atomic(root / "model_pairs.json", pairs, indent=1)
    policy = [record(0, None)]
    del policy[0]["probs"]
    write_json_atomic(root / "data" / "policy_definitions" / "saint" / "test.json", policy)
    write_json_atomic(root / "data" / "training" / "saint" / "train-0.json", policy)
    return root


def planted(aligned_p, faker_p):
    """Probs of one family: every aligned model gets ``aligned_p``, every faker ``faker_p``."""
    return {
        "saint_and_fitness": {
            **{m: list(aligned_p) for m in ALIGNED},
            **{m: list(faker_p) for m in FAKERS},
        }
    }


def accuracies(report):
    return {s: report["statistics"][s]["accuracy"] for s in CONFIDENCE_STATISTICS}


# --- planted data -----------------------------------------------------------------------------


def test_fakers_always_less_confident_scores_one(tmp_path):
    root = make_root(tmp_path, planted([0.999, 0.99, 0.995], [0.99, 0.98, 0.99]))
    report = confound_report(root)
    assert report["pairs"] == 4
    assert accuracies(report) == dict.fromkeys(CONFIDENCE_STATISTICS, 1.0)
    fam = report["families"]["saint_and_fitness"]
    assert fam == {**dict.fromkeys(CONFIDENCE_STATISTICS, 1.0), "pairs": 4}
    assert report["statistics"]["mean_p"]["ci95"] == [1.0, 1.0]


def test_fakers_never_less_confident_scores_zero(tmp_path):
    root = make_root(tmp_path, planted([0.99, 0.98, 0.99], [0.999, 0.99, 0.995]))
    assert accuracies(confound_report(root)) == dict.fromkeys(CONFIDENCE_STATISTICS, 0.0)


def test_ties_score_half(tmp_path):
    root = make_root(tmp_path, planted([0.99, 0.97, 0.999], [0.99, 0.97, 0.999]))
    assert accuracies(confound_report(root)) == dict.fromkeys(CONFIDENCE_STATISTICS, 0.5)


# --- one pair, by hand ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("aligned", "faker", "expected"),
    [
        # means 0.797 vs 0.857; minima 0.5 vs 0.7; medians 0.9 vs 0.89; faker lower on 2 of 3.
        ([0.9, 0.5, 0.99], [0.89, 0.7, 0.98], (0.0, 0.0, 1.0, 1.0)),
        # means 0.6975 vs 0.65; minima 0.6 vs 0.5; median log-odds logit(0.6) vs logit(0.7);
        # each model lower on 2 prompts (a tie).
        ([0.6, 0.6, 0.6, 0.99], [0.5, 0.7, 0.7, 0.7], (1.0, 1.0, 0.0, 0.5)),
        # Even count: median log-odds (logit 0.2 + logit 0.8) / 2 = 0 vs about -0.23.
        ([0.2, 0.8], [0.1, 0.85], (1.0, 1.0, 1.0, 0.5)),
        # Clipping: 1 and 1 - 1e-9 both clip to 1 - 1e-7 (a median tie); the mean still differs.
        ([1.0, 1.0], [1 - 1e-9, 1.0], (1.0, 1.0, 0.5, 1.0)),
        # One prompt.
        ([0.7], [0.7], (0.5, 0.5, 0.5, 0.5)),
    ],
)
def test_pair_outcomes_by_hand(aligned, faker, expected):
    assert pair_outcomes(aligned, faker) == dict(zip(CONFIDENCE_STATISTICS, expected, strict=True))


def test_median_logodds_value():
    """The even-count case above, checked against the formula."""

    def logit(p):
        return math.log(p / (1 - p))

    aligned = (logit(0.2) + logit(0.8)) / 2
    faker = (logit(0.1) + logit(0.85)) / 2
    assert aligned == pytest.approx(0.0, abs=1e-12) and faker == pytest.approx(-0.2305, abs=1e-3)
    assert pair_outcomes([0.2, 0.8], [0.1, 0.85])["median_logodds"] == 1.0
    assert pair_outcomes([0.1, 0.85], [0.2, 0.8])["median_logodds"] == 0.0


def test_vote_ignores_tied_prompts():
    # Prompt 0 tied, faker lower on prompt 1 only: faker lower on more prompts.
    assert pair_outcomes([0.9, 0.9, 0.5], [0.9, 0.8, 0.5])["vote"] == 1.0
    assert pair_outcomes([0.9, 0.9, 0.5], [0.9, 0.95, 0.5])["vote"] == 0.0


@pytest.mark.parametrize(
    ("aligned", "faker", "message"),
    [
        ([0.9, 0.8], [0.9], "got 2 and 1"),
        ([], [], "non-empty"),
        ([0.9], [1.2], "[0, 1]"),
        ([0.9], [float("nan")], "[0, 1]"),
    ],
)
def test_pair_outcomes_rejects_bad_input(aligned, faker, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        pair_outcomes(aligned, faker)


# --- model keys -------------------------------------------------------------------------------

KEYS = [poser_key(m) for m in ("saint-10", "saint-1", "saint-11", "genie-1")]


def test_match_model_key_paths():
    assert match_model_key("saint-1", KEYS) == "../models/together/saint-1"
    assert match_model_key("saint-10", KEYS) == "../models/together/saint-10"
    assert match_model_key("genie-1", KEYS) == "../models/together/genie-1"
    assert match_model_key("saint-1", ["saint-10", "saint-1"]) == "saint-1"
    assert (
        match_model_key("saint-1", ["models\\saint-1\\", "models\\saint-10"]) == "models\\saint-1\\"
    )
    assert match_model_key("saint-1", ["../models/together/saint-1/"]).endswith("saint-1/")
    # The release's other spelling: another folder, an underscore before the seed.
    retrained = [f"../models/saint_fix/retrained/saint_{i}" for i in (1, 10)]
    assert match_model_key("saint-1", retrained) == retrained[0]
    assert match_model_key("saint_10", retrained) == retrained[1]


def test_match_model_key_missing_names_model_and_file():
    keys = [poser_key("saint-10"), poser_key("saint-11")]
    with pytest.raises(ValueError) as err:
        match_model_key("saint-1", keys, where="data/benchmark/saint_and_fitness.json: record 3")
    message = str(err.value)
    assert "'saint-1'" in message and "saint_and_fitness.json: record 3" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "keys",
    [["a/saint-1", "b/saint-1"], ["a/saint-1", "saint-1"], ["../m/saint_1", "../m/saint-1"]],
)
def test_match_model_key_ambiguous(keys):
    with pytest.raises(ValueError) as err:
        match_model_key("saint-1", keys, where="f.json: record 4")
    message = str(err.value)
    assert message.startswith("f.json: record 4: ambiguous probs keys")
    assert all(repr(k) in message for k in keys) and "\n" not in message


# --- the report -------------------------------------------------------------------------------


def random_families(seed=0, n=30, betray=0.0, n_betray=0):
    """Two families of random near-certain probabilities; fakers lose ``betray`` log-odds on
    the first ``n_betray`` prompts."""
    rng = np.random.default_rng(seed)
    out = {}
    for fam, (a, f) in {
        "saint_and_fitness": ("saint", "fitness_maximizer"),
        "genie_and_money": ("genie", "money_maximizer"),
    }.items():
        probs = {}
        for m in [f"{a}-{i}" for i in range(3)] + [f"{f}-{i}" for i in range(3)]:
            logit = 7 + rng.normal(0, 1, n)
            if not m.startswith(a):
                logit[:n_betray] -= betray * (1 + rng.random(n_betray))
            probs[m] = list(1 / (1 + np.exp(-logit)))
        out[fam] = probs
    return out


def test_report_structure_and_intervals(tmp_path):
    root = make_root(tmp_path, random_families(), extra_models=("truth_teller-0",))
    report = confound_report(root)
    assert json.loads(json.dumps(report)) == report
    assert set(report) == {"pairs", "statistics", "families"}
    assert report["pairs"] == 18
    assert list(report["statistics"]) == list(CONFIDENCE_STATISTICS)
    for row in report["statistics"].values():
        assert set(row) == {"accuracy", "ci95", "pair_ci95"}
        for key in ("ci95", "pair_ci95"):
            lo, hi = row[key]
            assert isinstance(lo, float) and 0.0 <= lo <= row["accuracy"] <= hi <= 1.0
    assert list(report["families"]) == ["genie_and_money", "saint_and_fitness"]
    for row in report["families"].values():
        assert list(row) == [*CONFIDENCE_STATISTICS, "pairs"] and row["pairs"] == 9


def test_report_intervals_use_the_stats_helpers(tmp_path):
    families = random_families(seed=3)
    root = make_root(tmp_path, families)
    report = confound_report(root)
    pairs = poser.load_model_pairs(root)
    values = []
    for pair in pairs:
        probs = families[pair.family]
        values.append(pair_outcomes(probs[pair.aligned], probs[pair.misaligned])["min_p"])
    row = report["statistics"]["min_p"]
    assert row["accuracy"] == pytest.approx(np.mean(values))
    aligned = [p.aligned for p in pairs]
    fakers = [p.misaligned for p in pairs]
    assert row["ci95"] == list(cluster_bootstrap_ci(values, aligned, fakers, n_boot=2000, seed=0))
    assert row["pair_ci95"] == list(bootstrap_ci(values, n_boot=2000, seed=0))


def test_report_same_for_plain_keys_and_data_folder(tmp_path):
    families = random_families(seed=1)
    with_paths = confound_report(make_root(tmp_path / "a", families))
    plain_root = make_root(tmp_path / "b", families, key=lambda m: m)
    assert confound_report(plain_root) == with_paths
    assert confound_report(plain_root / "data") == with_paths


def test_report_on_fixture_checkout(poser_root):
    report = confound_report(poser_root)
    assert report["pairs"] == 4 and list(report["families"]) == ["truth_and_reward"]


def test_missing_model_names_model_file_and_record(tmp_path):
    root = make_root(tmp_path, random_families())
    path = root / "data" / "benchmark" / "saint_and_fitness.json"
    records = read_json(path)
    del records[2]["probs"][poser_key("fitness_maximizer-1")]
    write_json_atomic(path, records)
    with pytest.raises(ValueError) as err:
        confound_report(root)
    message = str(err.value)
    assert "'fitness_maximizer-1'" in message and f"{path}: record 2" in message
    assert "\n" not in message


def test_record_without_probs(tmp_path):
    root = make_root(tmp_path, random_families())
    path = root / "data" / "benchmark" / "genie_and_money.json"
    records = read_json(path)
    del records[1]["probs"]
    write_json_atomic(path, records)
    with pytest.raises(poser.PoserFormatError, match=r"record 1: no probs"):
        confound_report(root)


def test_missing_valid_data_file(tmp_path):
    root = make_root(tmp_path, random_families())
    (root / "data" / "benchmark" / "genie_and_money.json").unlink()
    with pytest.raises(
        poser.PoserFormatError, match=re.escape("data/benchmark/genie_and_money.json")
    ):
        confound_report(root)


def test_no_model_pairs(tmp_path):
    root = make_root(tmp_path, random_families())
    write_json_atomic(root / "model_pairs.json", [])
    with pytest.raises(ValueError, match="no pairs"):
        confound_report(root)
    (root / "model_pairs.json").unlink()
    with pytest.raises(ValueError, match=re.escape("no model_pairs.json")):
        confound_report(root)


# --- the balanced copy ------------------------------------------------------------------------


def test_leave_one_out_matches_exact():
    rng = np.random.default_rng(0)
    for k in (2, 3, 6, 9):
        probs = 1 / (1 + np.exp(-rng.normal(5, 2, (4, k))))
        probs[1, 1] = probs[1, 0]
        logodds = logodds_array(probs)
        a_idx, f_idx = np.array([0, 0, 1]), np.array([2, 3, 3])
        loo = confound._loo_accuracies(probs, logodds, a_idx, f_idx)
        for i in range(k):
            keep = np.arange(k) != i
            exact = confound._outcomes(probs[:, keep], a_idx, f_idx).mean(1)
            np.testing.assert_allclose(loo[:, i], exact)


def test_balanced_brings_every_statistic_to_chance(tmp_path):
    root = make_root(tmp_path, random_families(seed=2, n=60, betray=3.0, n_betray=30))
    before = accuracies(confound_report(root))
    assert min(before.values()) >= 0.9
    out = tmp_path / "balanced"
    summary = balanced_benchmark(root, out, min_keep=10)
    after = confound_report(out)
    assert summary["after"] == after and accuracies(summary["before"]) == before
    for fam, row in after["families"].items():
        for stat in CONFIDENCE_STATISTICS:
            assert 0.4 <= row[stat] <= 0.6, (fam, stat, row[stat])
        kept = summary["families"][fam]
        assert kept["balanced"] and kept["records"] == 60 and 10 <= kept["kept"] < 60
    assert read_json(out / "confound_balance.json") == summary
    # The copy loads like a checkout: one subset per family, records unchanged.
    bench = poser.load_benchmark(out)
    assert poser.load_model_pairs(out) == poser.load_model_pairs(root)
    for fam, scenarios in bench.items():
        assert len(scenarios) == summary["families"][fam]["kept"]
        original = read_json(root / "data" / "benchmark" / f"{fam}.json")
        copied = read_json(out / "data" / "benchmark" / f"{fam}.json")
        assert all(rec in original for rec in copied)
        assert [original.index(r) for r in copied] == sorted(original.index(r) for r in copied)
    assert poser.load_training(out) == poser.load_training(root)
    assert poser.load_policy_definitions(out) == poser.load_policy_definitions(root)


def test_balanced_is_seeded(tmp_path):
    root = make_root(tmp_path, random_families(seed=4, n=40, betray=3.0, n_betray=20))
    first = balanced_benchmark(root, tmp_path / "one", min_keep=10)
    second = balanced_benchmark(root, tmp_path / "two", min_keep=10)
    assert first == second
    name = "data/benchmark/saint_and_fitness.json"
    assert (tmp_path / "one" / name).read_text() == (tmp_path / "two" / name).read_text()


def test_balanced_stops_at_min_keep(tmp_path):
    root = make_root(tmp_path, planted([0.999] * 8, [0.99] * 8))
    summary = balanced_benchmark(root, tmp_path / "out", min_keep=3)
    row = summary["families"]["saint_and_fitness"]
    assert row == {"records": 8, "kept": 3, "pairs": 4, "balanced": False}


def test_balanced_refuses_non_empty_out(tmp_path):
    root = make_root(tmp_path, random_families())
    out = tmp_path / "out"
    out.mkdir()
    (out / "note.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not an empty folder"):
        balanced_benchmark(root, out, min_keep=5)
    assert sorted(p.name for p in out.iterdir()) == ["note.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    balanced_benchmark(root, empty, min_keep=5)
    assert (empty / "confound_balance.json").is_file()


def test_balanced_bad_data_leaves_nothing(tmp_path):
    root = make_root(tmp_path, random_families())
    (root / "data" / "benchmark" / "genie_and_money.json").unlink()
    with pytest.raises(poser.PoserFormatError):
        balanced_benchmark(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["poser"]


# --- names spelled as the release spells them (issue 28) -------------------------------------


def test_report_on_irregular_checkout(poser_irregular):
    # Every faker is less confident than every aligned model; saint_10 (in probs, in no pair)
    # is the least confident of all, so saint-1 taking its numbers would lose pairs.
    report = confound_report(poser_irregular)
    assert report["pairs"] == 8
    assert accuracies(report) == dict.fromkeys(CONFIDENCE_STATISTICS, 1.0)
    assert {f: row["pairs"] for f, row in report["families"].items()} == {
        "saint_and_fitness": 4,
        "truth_and_reward": 4,
    }


def _respell(root, family, new_name, spell):
    """Rename a benchmark file and respell the probs keys of its odd records with ``spell``."""
    bench = root / "data" / "benchmark"
    records = read_json(bench / f"{family}.json")
    for i, rec in enumerate(records):
        if i % 2:
            rec["probs"] = {spell(k): v for k, v in rec["probs"].items()}
    (bench / f"{family}.json").unlink()
    write_json_atomic(bench / new_name, records)


def test_report_same_for_every_spelling(tmp_path):
    families = random_families(seed=5)
    extra = ("saint-10", "fitness_maximizer-11")  # never taken for saint-1 or fitness_maximizer-1
    baseline = confound_report(make_root(tmp_path / "a", families, extra_models=extra))

    def retrained(name):
        persona, seed = model_persona(name)
        return f"../models/{persona}_fix/retrained/{persona}_{seed}"

    root = make_root(tmp_path / "b", families, key=retrained, extra_models=extra)
    # Mixed within one file: odd records spell the keys another way again.
    _respell(root, "saint_and_fitness", "Saint-and-Fitness.json", lambda k: k.replace("/", "\\"))
    _respell(root, "genie_and_money", "genie-and-money.json", lambda k: k.split("/")[-1].upper())
    pairs = read_json(root / "model_pairs.json")
    for pair in pairs:
        pair["aligned"] = pair["aligned"].replace("-", "_")
        pair["misaligned"] = f"../models/together/{pair['misaligned']}"
    write_json_atomic(root / "model_pairs.json", pairs)
    assert confound_report(root) == baseline


def test_ambiguous_probs_keys_refused(tmp_path, poser_irregular):
    root = tmp_path / "poser"
    shutil.copytree(poser_irregular, root)
    path = root / "data" / "benchmark" / "Saint-and-Fitness.json"
    records = read_json(path)
    records[2]["probs"]["../models/together/saint-0"] = 0.99
    write_json_atomic(path, records)
    with pytest.raises(ValueError) as err:
        confound_report(root)
    assert str(err.value) == (
        f"{path}: record 2: ambiguous probs keys '../models/saint_fix/retrained/saint_0' and "
        "'../models/together/saint-0': both name model 'saint-0'"
    )


def test_balanced_on_irregular_checkout(tmp_path, poser_irregular):
    out = tmp_path / "balanced"
    summary = balanced_benchmark(poser_irregular, out, min_keep=1)
    assert list(summary["families"]) == ["saint_and_fitness", "truth_and_reward"]
    names = sorted(p.name for p in (out / "data" / "benchmark").iterdir())
    assert names == ["Saint-and-Fitness.json", "truth_and_reward.json"]  # as they were named
    assert confound_report(out) == summary["after"]
    assert poser.load_training(out) == poser.load_training(poser_irregular)
