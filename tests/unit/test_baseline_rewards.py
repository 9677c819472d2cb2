"""Baseline rewards by hand: GRPO accuracy, EMPO clustering, semantic entropy, frequencies, dropping."""

import json
import math

import pytest

from powerflow.baselines.rewards import (
    group_kept,
    normalised_semantic_entropy,
    GroupLayoutError,
    accuracy_reward,
    cluster_answers,
    cluster_frequency_rewards,
    empo_reward,
    empo_rewards,
    semantic_entropy,
)
from powerflow.errors import ConfigError, UserError
from powerflow.eval.grading import AnswerKind, answer_kind, family_graders

WORLD = {"reasoning": answer_kind("world_integer"), "open_ended": answer_kind("world_open")}
world_same = WORLD["open_ended"].same


def same_parity(a: str, b: str) -> bool:
    """An equivalence that is not string equality: integers equal modulo 2."""
    return int(a) % 2 == int(b) % 2


class FirstWord(AnswerKind):
    """A toy kind: the first word is the answer, exact match."""

    name, scoring = "first_word", "reasoning"

    def extract(self, completion: str):
        words = completion.split()
        return words[0] if words else None


FIRST_WORD = {"q": FirstWord()}


# ------------------------------------------------------------------------------ accuracy
def test_accuracy_reward_grades_each_completion_against_its_own_answer():
    reward = accuracy_reward(WORLD)
    assert reward.__name__ == "accuracy"
    completions = ["work 3 + 4 = 7 , answer 7", "guess answer 9", "apple", "stone", "no format"]
    answers = ['"7"', '"7"', '["apple", "apples"]', '["apple"]', '"7"']
    families = ["reasoning", "reasoning", "open_ended", "open_ended", "reasoning"]
    rewards = reward(prompts=["q"] * 5, completions=completions, answer=answers, family=families,
                     completion_ids=[[1]] * 5, trainer_state=None)
    assert rewards == [1.0, 0.0, 1.0, 0.0, 0.0]


def test_accuracy_reward_reads_conversational_completions():
    reward = accuracy_reward(WORLD)
    completions = [[{"role": "assistant", "content": "answer 12"}], [{"role": "assistant", "content": "answer 13"}]]
    rewards = reward(prompts=["q", "q"], completions=completions, answer=["12", "12"], family=["reasoning"] * 2)
    assert rewards == [1.0, 0.0]


def test_world_kinds_take_json_or_plain_answer_keys():
    assert WORLD["reasoning"].grade('"10"', "answer 10").correct
    assert WORLD["reasoning"].grade("10", "answer 10").correct
    assert WORLD["open_ended"].grade(["Banana"], "banana.").correct
    assert not WORLD["open_ended"].grade('["banana"]', "kiwi").correct


def test_accuracy_reward_grades_math_answers_with_math_verify():
    completions = [r"so \boxed{\frac{28}{6}}", r"\boxed{(0,9)\cup(9,36)}", r"\boxed{4210_5}", "no box", r"\boxed{3}"]
    # as the training dataset's answer column holds them: JSON text
    answers = [json.dumps(a) for a in ("\\frac{14}{3}", "(0,9) \\cup (9,36)", "4210_{5}", "2", "\\text{(C)}")]
    with family_graders({"reasoning": "math"}) as graders:
        rewards = accuracy_reward(graders)(prompts=["q"] * 5, completions=completions, answer=answers,
                                           family=["reasoning"] * 5)
    assert rewards[:4] == [1.0, 1.0, 1.0, 0.0]
    assert rewards[4] == 0.0


def test_a_family_without_an_answer_kind_is_one_clear_error():
    with pytest.raises(UserError, match="no answer kind for family 'poetry'"):
        accuracy_reward(WORLD)(prompts=["q"], completions=["x"], answer=['"1"'], family=["poetry"])


# ---------------------------------------------------------------------------- clustering
def test_clustering_uses_the_given_equivalence_and_keeps_none():
    assert cluster_answers(["1", "2", None, "3", "4", "5"], same_parity) == [0, 1, None, 0, 1, 0]


def test_clustering_numbers_clusters_in_order_of_first_appearance():
    assert cluster_answers(["b", "a", "b", "c", "a"], str.__eq__) == [0, 1, 0, 2, 1]
    assert cluster_answers([None, None], str.__eq__) == [None, None]
    assert cluster_answers([], str.__eq__) == []


def test_clustering_compares_with_the_representative_first():
    calls = []

    def same(representative, answer):
        calls.append((representative, answer))
        return False

    cluster_answers(["x", "y", "z"], same)
    assert calls == [("x", "y"), ("x", "z"), ("y", "z")]


# -------------------------------------------------------------------------------- entropy
def test_semantic_entropy_by_hand_leaves_unanswered_samples_out_of_the_denominator():
    # [0, 0, 1, None]: f = (2/3, 1/3) over the 3 answers given
    expected = -(2 / 3) * math.log(2 / 3) - (1 / 3) * math.log(1 / 3)
    assert semantic_entropy([0, 0, 1, None]) == pytest.approx(expected)
    assert semantic_entropy([0, 0, 0, 0]) == 0.0
    assert semantic_entropy([0, 1, 2, 3]) == pytest.approx(math.log(4))  # all different: the maximum
    assert math.isnan(semantic_entropy([None, None]))


# ---------------------------------------------------------------------------- EMPO rewards
def test_empo_rewards_are_cluster_frequencies_over_all_g_samples():
    assert empo_rewards(["a", "a", "b", None], world_same) == [0.5, 0.5, 0.25, 0.0]
    assert empo_rewards(["1", "2", "3", "5"], same_parity) == [0.75, 0.25, 0.75, 0.75]


def test_empo_rewards_merge_answers_the_equivalence_calls_the_same():
    # world_same is normalised exact match: case, articles and punctuation do not split a cluster
    assert empo_rewards(["The Apple", "apple.", "pear", "kiwi"], world_same) == [0.5, 0.5, 0.25, 0.25]


def test_a_group_whose_answers_all_differ_is_dropped():
    assert empo_rewards(["a", "b", "c", "d"], world_same) == [None] * 4
    assert empo_rewards(["a", "b", None, None], world_same) == [None] * 4  # no two samples agree
    assert empo_rewards([None, None, None], world_same) == [None] * 3
    # the same groups kept when thresholding is off: frequencies 1/G, and 0 without an answer
    assert empo_rewards(["a", "b", "c", "d"], world_same, drop_max_entropy=False) == [0.25] * 4
    assert empo_rewards([None, None], world_same, drop_max_entropy=False) == [0.0, 0.0]


def test_dropping_is_exactly_maximum_semantic_entropy():
    for ids in ([0, 1, 2, 3], [0, 1, None, None], [0, 0, 1, 2], [0, None, 0, 1], [0, 0, 0, 0]):
        n_valid = sum(i is not None for i in ids)
        at_maximum = math.isclose(semantic_entropy(ids), math.log(n_valid))
        assert (cluster_frequency_rewards(ids)[0] is None) == at_maximum, ids


def test_entropy_thresholds_keep_groups_inside_the_band():
    # h = H / log n_valid: 0 unanimous, 1 all different; [0, 0, 1, 2]: h = H([.5, .25, .25]) / log 4 = 0.75
    assert normalised_semantic_entropy([0, 0, 0, 0]) == 0.0
    assert normalised_semantic_entropy([0, 0, 1, 2]) == pytest.approx(0.75)
    assert normalised_semantic_entropy([0, 1, None, None]) == 1.0
    assert group_kept([0, 0, 1, 2]) and not group_kept([0, 1, 2, 3])
    assert not group_kept([0, 0, 1, 2], entropy_max=0.7)  # too uncertain for EMPO's upper threshold
    assert not group_kept([0, 0, 0, 0], entropy_min=0.1)  # already agrees: the lower threshold drops it
    assert empo_rewards(["a", "a", "b", "c"], world_same, entropy_max=0.7) == [None] * 4
    assert empo_rewards(["a", "a", "b", "c"], world_same, entropy_max=0.8) == [0.5, 0.5, 0.25, 0.25]
    assert empo_rewards(["7", "7", "7"], world_same, entropy_min=0.2) == [None] * 3


def test_a_unanimous_group_is_kept_with_equal_rewards():
    assert empo_rewards(["7", "7", "7"], world_same) == [1.0, 1.0, 1.0]


# --------------------------------------------------------------------- EMPO reward function
def test_empo_reward_splits_consecutive_groups_and_ignores_gold_answers():
    reward = empo_reward(FIRST_WORD, num_generations=4)
    assert reward.__name__ == "semantic_entropy"
    prompts = ["p"] * 4 + ["q"] * 4
    completions = ["a x", "a y", "b", "", "a", "b", "c", "d"]
    metrics = {}
    rewards = reward(prompts=prompts, completions=completions, answer=["a"] * 8,
                     log_metric=lambda name, value: metrics.setdefault(name, value))
    assert rewards == [0.5, 0.5, 0.25, 0.0] + [None] * 4
    h_first = -(2 / 3) * math.log(2 / 3) - (1 / 3) * math.log(1 / 3)
    h_second = math.log(4)
    assert metrics["empo/semantic_entropy"] == pytest.approx((h_first + h_second) / 2)
    assert metrics["empo/dropped_fraction"] == 0.5


def test_empo_reward_reads_each_completion_by_its_familys_kind():
    reward = empo_reward(WORLD, num_generations=2)
    completions = ["work 1 + 2 = 3 , answer 3", "guess answer 3", "Apple", "the apple."]
    rewards = reward(prompts=["r", "r", "o", "o"], completions=completions,
                     family=["reasoning", "reasoning", "open_ended", "open_ended"])
    assert rewards == [1.0, 1.0, 1.0, 1.0]


def test_empo_clusters_math_answers_by_equivalence():
    with family_graders({"reasoning": "math"}) as graders:
        reward = empo_reward(graders, num_generations=4)
        completions = [r"\boxed{\frac{1}{2}}", r"\boxed{0.5}", r"\boxed{1/2}", r"\boxed{3}"]
        rewards = reward(prompts=["p"] * 4, completions=completions)  # no family column: the only kind
    assert rewards == [0.75, 0.75, 0.75, 0.25]


def test_empo_reward_refuses_completions_that_are_not_whole_groups():
    reward = empo_reward(FIRST_WORD, num_generations=4)
    with pytest.raises(GroupLayoutError, match="multiple of num_generations") as err:
        reward(prompts=["p"] * 6, completions=["a"] * 6)
    assert isinstance(err.value, UserError)
    with pytest.raises(GroupLayoutError, match="several prompts"):
        reward(prompts=["p", "p", "q", "q"], completions=["a"] * 4)


def test_world_kinds_extract_each_family():
    assert WORLD["reasoning"].extract("work 2 + 2 = 4 , answer 04") == "4"
    assert WORLD["reasoning"].extract("guess") is None
    assert WORLD["open_ended"].extract(" The Banana!</s>") == "banana"
    assert WORLD["open_ended"].extract("</s>") is None


def test_math_kind_extracts_the_last_box():
    assert answer_kind("math").extract(r"so \boxed{2} then \boxed{\frac{1}{2}}") == r"\frac{1}{2}"
    assert answer_kind("math").extract("no answer here") is None


# ------------------------------------------------------------- each trained baseline's recipe
def test_each_trained_baseline_reads_its_own_learning_rate_beta_and_entropy_band():
    from powerflow.baselines.config import BaselinesConfig
    from powerflow.config.parse import section_from_dict

    cfg = section_from_dict(BaselinesConfig, {"empo_learning_rate": 1e-5, "empo_beta": 0.04, "empo_entropy_max": 0.8},
                            "baselines")
    assert cfg.trained_recipe("empo", 5e-4) == {"learning_rate": 1e-5, "beta": 0.04, "entropy_bounds": (0.0, 0.8)}
    assert cfg.trained_recipe("grpo", 5e-4) == {"learning_rate": 5e-4, "beta": 0.0}  # null: train.learning_rate


@pytest.mark.parametrize("settings, key", [
    ({"grpo_learning_rate": 0}, "baselines.grpo_learning_rate"),
    ({"empo_beta": -0.1}, "baselines.empo_beta"),
    ({"empo_entropy_min": 0.5, "empo_entropy_max": 0.5}, "baselines.empo_entropy_min"),
    ({"empo_entropy_max": 1.5}, "baselines.empo_entropy_min"),
])
def test_bad_trained_recipe_settings_name_the_key(settings, key):
    from powerflow.baselines.config import BaselinesConfig
    from powerflow.config.parse import section_from_dict

    with pytest.raises(ConfigError, match=key):
        section_from_dict(BaselinesConfig, settings, "baselines")
