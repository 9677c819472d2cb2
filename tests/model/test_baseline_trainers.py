"""GRPO and EMPO baselines on a real tiny Qwen2 (enumerable world): rewards logged, weights move,
dropped EMPO groups get zero advantage in TRL's own advantage computation."""

import json
import math
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from trl import GRPOConfig

from powerflow.baselines.trainers import (
    BASELINES,
    BaselineDataError,
    baseline_trainer,
    recipe,
)
from powerflow.errors import UserError
from powerflow.eval.grading import AnswerKind, answer_kind
from powerflow.world.enumerable import random_base

GROUP = 4  # samples per prompt
# On random_base(seed=0) the first letter after "d" is b or c (p ≈ 0.46, 0.50) and after "b" EOS, c or d
# (0.47, 0.35, 0.12): groups often disagree, so both rewards give nonzero advantages.
PROMPTS = ("d", "b")
GOLD = "c"


class FirstLetter(AnswerKind):
    """The answer of an enumerable completion: its first letter; None for an empty one (EOS first).

    distinct=True makes every answer unique, so such a group's answers all differ.
    """

    name, scoring = "first_letter", "reasoning"
    calls = 0

    def __init__(self, distinct: bool = False):
        self.distinct = distinct

    def extract(self, completion: str):
        words = completion.split()
        if not words:
            return None
        if self.distinct:
            FirstLetter.calls += 1
            return f"{words[0]}-{FirstLetter.calls}"
        return words[0]

    def is_correct(self, extracted: str, answer) -> bool:
        return extracted == answer


LETTERS = {"letters": FirstLetter(), "distinct": FirstLetter(distinct=True)}


def config(tmp_path, **overrides) -> GRPOConfig:
    settings = {
        "output_dir": str(tmp_path), "per_device_train_batch_size": len(PROMPTS) * GROUP, "num_generations": GROUP,
        "max_completion_length": 3, "max_steps": 3, "learning_rate": 5e-3, "lr_scheduler_type": "constant",
        "logging_steps": 1, "save_strategy": "no", "report_to": "none", "use_cpu": True, "bf16": False, "seed": 0,
        "disable_tqdm": True, "gradient_checkpointing": False,
    }
    settings.update(overrides)
    return GRPOConfig(**settings)


def dataset(with_answers: bool = True, family: str = "letters") -> Dataset:
    rows = {"prompt": list(PROMPTS) * 4, "family": [family] * 8}
    if with_answers:
        rows["answer"] = [GOLD] * 8
    return Dataset.from_dict(rows)


def trainer_for(method, tmp_path, data=None, **overrides):
    model, tokenizer = random_base(seed=0)
    data = data if data is not None else dataset()
    return baseline_trainer(method, model, tokenizer, data, config(tmp_path, **overrides), LETTERS)


def weights(trainer):
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("method", BASELINES)
def test_training_logs_the_reward_and_moves_the_weights(tmp_path, method):
    trainer = trainer_for(method, tmp_path)
    before = weights(trainer)
    trainer.train()
    after = weights(trainer)
    assert any(not torch.equal(before[k], after[k]) for k in before), "no parameter changed"
    name = {"grpo": "accuracy", "empo": "semantic_entropy"}[method]
    logged = [h for h in trainer.state.log_history if f"rewards/{name}/mean" in h]
    assert len(logged) == 3
    values = [h[f"rewards/{name}/mean"] for h in logged]
    assert all(0.0 <= v <= 1.0 for v in values if not math.isnan(v))
    if method == "empo":
        assert all("empo/dropped_fraction" in h for h in logged)


def test_grpo_on_the_embedded_world_defaults_with_lora(tmp_path):
    """The world's open-ended kind (JSON answer keys) through TRL with a LoRA adapter: base weights frozen."""
    from peft import LoraConfig

    model, tokenizer = random_base(seed=1)  # one-letter answers: after "a" b or c (0.36, 0.41), after "b" a or b
    data = Dataset.from_dict({"prompt": ["a", "b"] * 4, "family": ["open_ended"] * 8,
                              "answer": ['["c", "d"]', '["a"]'] * 4})
    trainer = baseline_trainer("grpo", model, tokenizer, data,
                               config(tmp_path, max_steps=2, learning_rate=5e-2, max_completion_length=1),
                               {"open_ended": answer_kind("world_open")}, peft_config=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0))
    before = weights(trainer)
    trainer.train()
    after = weights(trainer)
    assert all("lora_" in k for k in before)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    logged = [h["rewards/accuracy/mean"] for h in trainer.state.log_history if "rewards/accuracy/mean" in h]
    assert len(logged) == 2 and all(math.isfinite(v) for v in logged)


@pytest.mark.parametrize("scale_rewards", ["group", "batch"])
def test_a_dropped_empo_group_gets_zero_advantage_and_is_left_out_of_the_reward_mean(tmp_path, scale_rewards):
    """Prompt "b" samples EOS first about half the time: its group mixes unanswered samples (reward 0 if
    kept) with answers that all differ (family "distinct"), so only dropping gives it zero advantage."""
    trainer = trainer_for("empo", tmp_path, scale_rewards=scale_rewards)
    trainer.model.train()
    inputs = [{"prompt": "b", "family": "distinct"}] * GROUP + [{"prompt": "d", "family": "letters"}] * GROUP
    seen_mixed_dropped_group = seen_kept_signal = False
    for _ in range(10):  # sample until both cases the test is about have occurred
        batch = trainer._generate_and_score_completions(inputs)
        advantages = batch["advantages"]
        rewards = list(trainer._logs["rewards"]["semantic_entropy"])[-2 * GROUP:]
        completions = list(trainer._logs["completion"])[-2 * GROUP:]
        assert all(math.isnan(r) for r in rewards[:GROUP])  # dropped: None rewards
        assert torch.equal(advantages[:GROUP], torch.zeros(GROUP))  # ... and no policy-gradient signal
        answered = [c.strip() != "" for c in completions[:GROUP]]
        seen_mixed_dropped_group |= any(answered) and not all(answered)
        kept = rewards[GROUP:]
        if not any(math.isnan(r) for r in kept):
            logged_mean = trainer._metrics["train"]["rewards/semantic_entropy/mean"][-1]
            assert logged_mean == pytest.approx(sum(kept) / GROUP)  # the dropped group does not pull it down
            seen_kept_signal |= bool(advantages[GROUP:].abs().max() > 0)
        if seen_mixed_dropped_group and seen_kept_signal:
            break
    assert seen_mixed_dropped_group and seen_kept_signal


def test_grpo_without_an_answer_column_is_refused(tmp_path):
    model, tokenizer = random_base(seed=0)
    with pytest.raises(BaselineDataError, match="answer") as err:
        baseline_trainer("grpo", model, tokenizer, dataset(with_answers=False), config(tmp_path), LETTERS)
    assert isinstance(err.value, UserError)


def test_empo_needs_no_answers_but_whole_groups(tmp_path):
    model, tokenizer = random_base(seed=0)
    trainer = baseline_trainer("empo", model, tokenizer, dataset(with_answers=False), config(tmp_path), LETTERS)
    assert trainer.reward_func_names == ["semantic_entropy"]
    with pytest.raises(BaselineDataError, match="family"):
        baseline_trainer("empo", model, tokenizer, Dataset.from_dict({"prompt": ["a"] * 8}), config(tmp_path), LETTERS)
    split_groups = config(tmp_path, per_device_train_batch_size=6, generation_batch_size=12)
    split_groups.steps_per_generation = 1  # as GRPOConfig resolves it on 2 processes: 6 samples each, 1.5 groups
    with pytest.raises(UserError, match="multiple of num_generations"):
        baseline_trainer("empo", model, tokenizer, dataset(), split_groups, LETTERS)
    with pytest.raises(UserError, match="num_generations_eval"):
        baseline_trainer("empo", model, tokenizer, dataset(), config(tmp_path, num_generations_eval=2), LETTERS)


def test_recipe_records_the_settings(tmp_path):
    args = config(tmp_path, beta=0.04, scale_rewards="batch")
    grpo, empo = recipe("grpo", args), recipe("empo", args, drop_max_entropy=True)
    assert grpo["method"] == "grpo" and grpo["reward"] == "accuracy" and grpo["uses_gold_answers"] is True
    assert empo["reward"] == "semantic_entropy" and empo["uses_gold_answers"] is False and empo["drop_max_entropy"]
    for r in (grpo, empo):
        assert (r["num_generations"], r["beta"], r["learning_rate"], r["max_steps"]) == (GROUP, 0.04, 5e-3, 3)
        assert (r["temperature"], r["scale_rewards"], r["loss_type"]) == (1.0, "batch", "dapo")
        assert r["lr_scheduler_type"] == "constant" and r["trl_version"].startswith("1.16")
        assert json.loads(json.dumps(r)) == r  # plain JSON types, loggable as run params
    with pytest.raises(UserError, match="unknown training baseline"):
        recipe("ppo", args)


def test_each_baseline_trains_at_its_own_recipe_from_params(tmp_path):
    """baselines.{grpo,empo}_learning_rate / _beta / empo_entropy_* reach TRL and EMPO's reward, as the
    pipeline's train_baseline stage builds them (powerflow.pipeline.train.baseline_arguments)."""
    from powerflow.config import load_pipeline_config
    from powerflow.pipeline.train import baseline_arguments

    import yaml

    settings = yaml.safe_load((Path(__file__).parents[2] / "params.yaml").read_text())
    settings["train"]["learning_rate"] = 5e-4
    settings["baselines"] |= {"empo_learning_rate": 1e-5, "empo_beta": 0.04, "empo_entropy_max": 0.7}
    settings["baselines"].pop("grpo_learning_rate", None)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(settings))
    cfg = load_pipeline_config(params)
    grpo_args, grpo_options = baseline_arguments(cfg, "grpo", tmp_path / "grpo")
    empo_args, empo_options = baseline_arguments(cfg, "empo", tmp_path / "empo")
    assert (grpo_args.learning_rate, grpo_args.beta, grpo_options) == (5e-4, 0.0, {})  # null: train's
    assert (empo_args.learning_rate, empo_args.beta) == (1e-5, 0.04)
    assert empo_args.mask_truncated_completions and empo_options == {"entropy_bounds": (0.0, 0.7)}
    model, tokenizer = random_base(seed=0)
    trainer = baseline_trainer("empo", model, tokenizer, dataset(with_answers=False), config(tmp_path), LETTERS,
                               **empo_options)
    reward = trainer.reward_funcs[0]
    # h = H(1/2, 1/4, 1/4) / log 4 = 0.75 >= 0.7: dropped; a group with h = 0.5 is kept
    assert reward(prompts=["d"] * 4, completions=["b", "b", "c", "d"], family=["letters"] * 4) == [None] * 4
    assert reward(prompts=["d"] * 4, completions=["b", "b", "c", "c"], family=["letters"] * 4) == [0.5] * 4
