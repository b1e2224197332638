"""The typed scores, the one settings merge and ``collect_scores``, for every strategy.

Each strategy's score layout is a ``TypedDict`` in its module: a real score (and its restricted
copy) must have exactly the keys the type names, nested ``TypedDict`` values included.
"""

import importlib
import re
import typing

import pytest
from s4s6_support import contexts

from poser_lens.evaluation import evaluate
from poser_lens.runs import RunDir
from poser_lens.strategies import STRATEGY_NAMES, get_strategy, strategy_class
from poser_lens.strategies.base import Strategy
from poser_lens.strategies.ensemble import EnsembleStrategy

NotRequired = (
    getattr(typing, "NotRequired", None) or pytest.importorskip("typing_extensions").NotRequired
)

#: Small configs, so every strategy scores a small-zoo model in seconds.
SMALL: dict[str, dict] = {
    "s1_belief": {"n_pairs": 4, "coeffs": (0.0, 1.0, 2.0)},
    "s2_noise": {"n_pairs": 4, "n_draws": 2, "coeffs": (0.0, 1.0, 4.0)},
    "s3_lora": {"n_steps": 2, "n_heldout": 3, "batch_size": 2, "layers": (5 / 40, 1.0)},
    "s3_full": {"n_steps": 2, "n_heldout": 3, "batch_size": 2},
    "s4_concepts": {"n_prompts": 20},
    "s6_attention": {"n_prompts": 8},
    "s6_saliency": {"n_prompts": 8},
    "s6_counterfactual": {"n_prompts": 8},
    "patching": {"n_prompts": 6},
    "weight_noise": {"sigmas": (0.0, 0.5, 1.0), "n_prompts": 8},
}
#: Strategy name -> its score type (module, name).
SCORE_TYPES = {
    "s1_belief": ("s1_belief", "BeliefScore"),
    "s2_noise": ("s2_noise", "NoiseScore"),
    "s3_lora": ("s3_learning_speed", "SpeedScore"),
    "s3_full": ("s3_learning_speed", "SpeedScore"),
    "s4_concepts": ("s4_concepts", "ConceptScore"),
    "s5_decision_speed": ("s5_decision_speed", "DecisionSpeedScore"),
    "s6_attention": ("s6_attentiveness", "AttentionScore"),
    "s6_saliency": ("s6_attentiveness", "SaliencyScore"),
    "s6_counterfactual": ("s6_attentiveness", "CounterfactualScore"),
    "patching": ("oversight_patching", "PatchingScore"),
    "weight_noise": ("weight_noise", "WeightNoiseScore"),
    "defection_probe": ("defection_probe", "DefectionScore"),
    "confidence_baseline": ("baselines", "ConfidenceScore"),
    "random": ("baselines", "RandomScore"),
}
MODEL_STRATEGIES = [n for n in STRATEGY_NAMES if n != "ensemble"]


def score_type(name):
    module, cls = SCORE_TYPES[name]
    return getattr(importlib.import_module(f"poser_lens.strategies.{module}"), cls)


def hints(td):
    return typing.get_type_hints(td, localns={"NotRequired": NotRequired}, include_extras=True)


def check_layout(value, tp, where):
    """``value`` has the keys ``tp`` (a TypedDict, or dicts of them) names, recursively."""
    if typing.get_origin(tp) is NotRequired:
        tp = typing.get_args(tp)[0]
    if typing.is_typeddict(tp):
        assert isinstance(value, dict), where
        fields = hints(tp)
        required = {k for k, t in fields.items() if typing.get_origin(t) is not NotRequired}
        assert set(value) <= set(fields), f"{where}: keys {set(value) - set(fields)} not typed"
        assert required <= set(value), f"{where}: keys {required - set(value)} missing"
        for k, v in value.items():
            check_layout(v, fields[k], f"{where}.{k}")
    elif typing.get_origin(tp) is dict:
        assert isinstance(value, dict), where
        for k, v in value.items():
            check_layout(v, typing.get_args(tp)[1], f"{where}[{k}]")


def declared_score_type(strategy):
    """The ``S`` the strategy class fills in for ``Strategy[S, C]``.

    Followed through generic subclasses (``SteeringStrategy[S, C]``, ``_SpeedStrategy[C]``),
    substituting their type parameters on the way up.
    """

    def resolve(cls, subst):
        for base in cls.__dict__.get("__orig_bases__", cls.__bases__):
            origin = typing.get_origin(base) or base
            if not (isinstance(origin, type) and issubclass(origin, Strategy)):
                continue
            args = [subst.get(a, a) for a in typing.get_args(base)]
            if origin is Strategy:
                return args[0] if args else None
            return resolve(
                origin, dict(zip(getattr(origin, "__parameters__", ()), args, strict=False))
            )
        return None

    return resolve(type(strategy), {})


@pytest.fixture(scope="module")
def scored(small_zoo):
    """Strategy name -> (strategy, score of the aligned model, score of the faker)."""
    ctxs = contexts(small_zoo)
    out = {}
    for name in MODEL_STRATEGIES:
        s = get_strategy(name, **SMALL.get(name, {}))
        out[name] = (s, *(s.score_model(c) for c in ctxs))
    return out


@pytest.mark.parametrize("name", MODEL_STRATEGIES)
def test_scores_have_the_keys_their_type_names(scored, name):
    s, a, b = scored[name]
    tp = score_type(name)
    assert declared_score_type(s) is tp
    check_layout(a, tp, name)
    if s.per_prompt:
        check_layout(s.restrict(a, set(a.get("prompt_index", [0, 1, 2])[:2])), tp, f"{name} kept")
    assert isinstance(s.margin(a, b), float)


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_settings_merge_the_headline_and_refuse_unknown_names(name):
    s = get_strategy(name)
    assert s.settings() == s.headline
    for key, values in s.grid().items():
        assert s.settings(**{key: values[-1]}) == {**s.headline, key: values[-1]}
    with pytest.raises(ValueError, match=f"{name}: unknown setting 'no_such_setting'"):
        s.settings(no_such_setting=1)
    with pytest.raises(ValueError, match="unknown setting"):
        evaluate(s, [], {}, settings={"no_such_setting": 1})
    with pytest.raises(ValueError, match="unknown setting"):
        s.margin({}, {}, no_such_setting=1)


def test_optional_settings_are_accepted_but_not_recorded():
    s2, rnd = get_strategy("s2_noise"), get_strategy("random")
    assert "kl_target" not in s2.settings() and s2.settings(kl_target=0.3)["kl_target"] == 0.3
    assert rnd.settings(seed=2) == {"seed": 2} and evaluate(rnd, [], {}).settings == {}


def test_collect_scores_reads_the_run_and_the_ensemble_assembles_members(tmp_path):
    run = RunDir(tmp_path)
    for strat, model, score in (
        ("random", "saint-0", {"name": "saint-0", "family": "f"}),
        ("s5_decision_speed", "saint-0", {"accuracy": [0.5]}),
        ("random", "genie-1", {"name": "genie-1", "family": "f"}),
    ):
        run.write_score(strat, model, {"families": {"f": score}})
    assert get_strategy("random").collect_scores(run.scores) == run.scores("random")
    ens = EnsembleStrategy(members=("s2_noise", "random", "s5_decision_speed"))
    table = ens.collect_scores(run.scores)  # s2_noise was not scored: left out
    assert table == {
        "genie-1": {"f": {"random": {"name": "genie-1", "family": "f"}}},
        "saint-0": {
            "f": {
                "random": run.scores("random")["saint-0"]["f"],
                "s5_decision_speed": {"accuracy": [0.5]},
            }
        },
    }
    assert list(table["saint-0"]["f"]) == ["random", "s5_decision_speed"]  # member order


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_module_docstring_names_the_score_and_figure(name):
    module = importlib.import_module(strategy_class(name).__module__)
    doc = module.__doc__
    assert "Figure" in doc, module.__name__
    for ref in re.findall(r":(?:func|class|data):`~?(poser_lens\.[\w.]+)`", doc.replace("\n", " ")):
        mod, attr = ref.rsplit(".", 1)
        assert hasattr(importlib.import_module(mod), attr), ref
    if name in SCORE_TYPES:
        assert SCORE_TYPES[name][1] in doc
