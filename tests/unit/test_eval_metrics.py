"""Eval metrics against hand-computed values, and the `evaluate:` config's errors."""

import itertools
import math

import pytest

from powerflow.config.parse import section_from_dict
from powerflow.errors import ConfigError
from powerflow.eval.config import EvalConfig
from powerflow.eval.evaluate import EvalDataError, answer_groups, reference_of, slug
from powerflow.eval.metrics import (
    coverage,
    distinct_n,
    grouped_means,
    maj_at_k,
    majority_answer,
    kl_to_uniform,
    mean_and_standard_error,
    pass_at_k,
    pass_at_k_values,
)


@pytest.mark.parametrize(
    "n, c, k, expected",
    [
        (4, 0, 1, 0.0),  # no correct sample: never passes
        (4, 0, 4, 0.0),
        (4, 4, 1, 1.0),  # all correct
        (4, 1, 1, 0.25),  # pass@1 = c / n
        (8, 3, 1, 3 / 8),
        (4, 1, 2, 1 - 3 / 6),  # 1 - C(3,2)/C(4,2)
        (5, 2, 2, 1 - 3 / 10),  # 1 - C(3,2)/C(5,2)
        (5, 2, 3, 1 - 1 / 10),  # 1 - C(3,3)/C(5,3)
        (5, 2, 4, 1.0),  # k > n - c: every 4-subset holds a correct one
        (4, 1, 4, 1.0),
    ],
)
def test_pass_at_k_hand_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_matches_binomial_form_and_grows_with_k():
    n, c = 16, 5
    values = [pass_at_k(n, c, k) for k in range(1, n + 1)]
    for k, v in enumerate(values, start=1):
        exact = 1 - math.comb(n - c, k) / math.comb(n, k)
        assert v == pytest.approx(exact, abs=1e-12)
    assert all(a <= b for a, b in itertools.pairwise(values))


@pytest.mark.parametrize("n, c, k", [(0, 0, 1), (4, 5, 1), (4, -1, 1), (4, 2, 0), (4, 2, 5)])
def test_pass_at_k_refuses_impossible_counts(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_pass_at_k_values_are_powers_of_two_then_n():
    assert pass_at_k_values(1) == [1]
    assert pass_at_k_values(8) == [1, 2, 4, 8]
    assert pass_at_k_values(6) == [1, 2, 4, 6]


def test_mean_and_standard_error_hand_values():
    # mean 2.5, sample variance ((1.5²+0.5²)·2)/3 = 5/3, se = √(5/3 / 4)
    mean, se = mean_and_standard_error([1, 2, 3, 4])
    assert mean == pytest.approx(2.5)
    assert se == pytest.approx(math.sqrt(5 / 12))
    assert mean_and_standard_error([0.7]) == (0.7, 0.0)
    assert mean_and_standard_error([3, 3, 3]) == (3.0, 0.0)
    with pytest.raises(ValueError):
        mean_and_standard_error([])


def test_coverage_counts_distinct_valid_answers():
    valid = {"apple", "pear", "kiwi", "plum"}
    assert coverage(["apple", "apple", "pear"], valid) == 0.5
    assert coverage([], valid) == 0.0
    assert coverage(["apple", "stuff", "thing"], valid) == 0.25  # invalid ones do not count
    assert coverage(["plum", "kiwi", "pear", "apple"], valid) == 1.0
    with pytest.raises(ValueError):
        coverage(["a"], set())


def test_kl_to_uniform_is_zero_for_uniform_and_log_v_for_a_point_mass():
    valid = ["a", "b", "c", "d"]
    assert kl_to_uniform(["a", "b", "c", "d", "d", "c", "b", "a"], valid) == pytest.approx(0.0, abs=1e-12)
    assert kl_to_uniform(["b"] * 5, valid) == pytest.approx(math.log(4))
    # P = (1/2, 1/2, 0, 0): log 4 - log 2 = log 2
    assert kl_to_uniform(["a", "b"], valid) == pytest.approx(math.log(2))
    # P = (3/4, 1/4): log 4 - H, H = -(3/4 log 3/4 + 1/4 log 1/4); answers outside V ignored
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert kl_to_uniform(["a", "a", "a", "b", "zzz"], valid) == pytest.approx(math.log(4) - h)
    assert math.isnan(kl_to_uniform([], valid))
    assert math.isnan(kl_to_uniform(["zzz"], valid))


def test_distinct_n_hand_values():
    assert distinct_n(["a b a b"], 1) == 0.5  # {a, b} / 4
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)  # {ab, ba} / 3
    assert distinct_n(["a b", "a c"], 1) == 0.75  # {a, b, c} / 4
    assert distinct_n(["a b", "c"], 2) == 1.0  # n-grams do not cross texts: only (a, b)
    assert distinct_n(["", "x"], 2) == 0.0
    assert distinct_n(["x y z"], 1) == 1.0


def test_eval_config_loads_from_params_and_refuses_bad_values():
    cfg = section_from_dict(EvalConfig, {"n_samples": 4, "max_prompts_per_family": None}, "evaluate")
    assert (cfg.n_samples, cfg.backend, cfg.max_prompts_per_family) == (4, "transformers", None)
    for bad, key in [({"backend": "onnx"}, "evaluate.backend"), ({"n_samples": 0}, "evaluate.n_samples"),
                     ({"temperature": 0.0}, "evaluate.temperature"), ({"top_p": 1.5}, "evaluate.top_p"),
                     ({"max_prompts_per_family": 0}, "evaluate.max_prompts_per_family"),
                     ({"n_examples": -1}, "evaluate.n_examples"), ({"batch_size": 0}, "evaluate.batch_size"),
                     ({"max_new_tokens": 0}, "evaluate.max_new_tokens"), ({"seed": -3}, "evaluate.seed")]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            section_from_dict(EvalConfig, bad, "evaluate")
    with pytest.raises(ConfigError, match=r"evaluate\.n_sample"):
        section_from_dict(EvalConfig, {"n_sample": 4}, "evaluate")


def test_majority_answer_groups_by_equivalence_and_breaks_ties_by_first_group():
    assert majority_answer(["1", "2", "2", None, None]) == 1  # two "2"s beat one "1"; None never votes
    assert majority_answer(["1", "2"]) == 0  # tie: the group formed first
    assert majority_answer([None, None]) is None
    as_number = lambda a, b: float(a) == float(b)  # noqa: E731
    # "0.5" and "1/2" are one group under an equivalence that parses them
    half = lambda a, b: {a, b} <= {"0.5", "1/2"} or a == b  # noqa: E731
    assert majority_answer(["3", "0.5", "1/2"], half) == 1
    assert majority_answer(["3", "3.0", "0.5"], as_number) == 0


def test_maj_at_k_by_hand():
    answers = ["a", "b", "b", "a", "a", "a", None, "c"]
    correct = [True, False, False, True, True, True, False, False]
    # k = 1: per-sample correctness -> 4/8
    assert maj_at_k(answers, correct, 1) == pytest.approx(0.5)
    # k = 2 blocks: (a,b) tie -> a right; (b,a) tie -> b wrong; (a,a) right; (None,c) -> c wrong
    assert maj_at_k(answers, correct, 2) == pytest.approx(0.5)
    # k = 4 blocks: (a,b,b,a) tie -> a (formed first) right; (a,a,None,c) -> a right
    assert maj_at_k(answers, correct, 4) == pytest.approx(1.0)
    # k = 8: a x4 wins
    assert maj_at_k(answers, correct, 8) == 1.0
    # k = 3: two blocks, the remainder dropped: (a,b,b) -> b wrong; (a,a,a) right
    assert maj_at_k(answers, correct, 3) == pytest.approx(0.5)
    assert maj_at_k([None, None], [False, False], 2) == 0.0
    with pytest.raises(ValueError):
        maj_at_k(answers, correct, 9)


def test_grouped_means_by_hand():
    out = grouped_means([1.0, 0.0, 0.5, 1.0], ["Algebra", "Algebra", None, "Geometry"])
    assert list(out) == ["Algebra", "Geometry"]
    assert out["Algebra"] == pytest.approx((0.5, 0.5, 2))  # s = sqrt(0.5), se = s / sqrt(2)
    assert out["Geometry"] == (1.0, 0.0, 1)


def test_slug_and_answer_groups():
    assert slug("Counting & Probability") == "counting_probability"
    assert slug(3) == "3" and slug("!!") == "none"
    assert answer_groups(["a", "b"]) == [["a"], ["b"]]
    assert answer_groups([["usa", "united states"], "france"]) == [["usa", "united states"], ["france"]]
    for bad in ("a", [], None):
        with pytest.raises(EvalDataError):
            answer_groups(bad)


def test_reference_of_maps_first_aliases_to_group_indices():
    groups = [["usa", "united states"], ["france"]]
    assert reference_of({"id": "q", "meta": {"reference": {"france": 3, "usa": 1}}}, groups) == {1: 3.0, 0: 1.0}
    assert reference_of({"id": "q", "meta": {}}, groups) is None
    with pytest.raises(EvalDataError, match="first alias"):
        reference_of({"id": "q", "meta": {"reference": {"united states": 1}}}, groups)
