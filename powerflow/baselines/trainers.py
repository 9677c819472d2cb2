"""The training-time baselines as TRL GRPOTrainers, and the settings recorded with each run.

- grpo   GRPO with gold answers (Shao et al. 2024): reward `accuracy` from each family's answer kind.
         The dataset carries `answer` and `family` columns: the one place gold answers reach training.
- empo   EMPO (Zhang et al. 2025): reward `semantic_entropy`, the frequency of a sample's answer
         cluster within its prompt's group; max-entropy groups dropped. No answers are read.

Both are plain `trl.GRPOTrainer`s with one reward function: generation, the clipped surrogate,
advantages (group-normalised as `args.scale_rewards` says), KL (`args.beta`) and PEFT are TRL's.
With a PEFT config and beta > 0 the KL reference is the same weights with the adapter disabled.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from powerflow.baselines.rewards import Graders, accuracy_reward, empo_reward
from powerflow.errors import UserError
from powerflow.registry import Baseline

BASELINES = ("grpo", "empo")
REWARD_NAMES = {"grpo": "accuracy", "empo": "semantic_entropy"}
REWARD_DESCRIPTIONS = {
    "grpo": "1 if the family's answer kind grades the completion correct against the gold answer, else 0",
    "empo": "frequency n_c/G of the completion's answer cluster among its prompt's G samples (0 without an "
            "answer); groups whose answers all differ (entropy at its maximum) are dropped (None rewards)",
}
# GRPOConfig fields that define a baseline's recipe (logged with the run, compared across methods).
RECIPE_FIELDS = (
    "num_generations", "beta", "learning_rate", "lr_scheduler_type", "max_steps", "temperature", "top_p",
    "top_k", "scale_rewards", "loss_type", "multi_objective_aggregation", "epsilon", "epsilon_high",
    "num_iterations", "max_completion_length", "per_device_train_batch_size", "gradient_accumulation_steps",
    "steps_per_generation", "mask_truncated_completions", "max_grad_norm", "weight_decay", "seed",
)


class BaselineDataError(UserError):
    """The training dataset lacks a column the baseline's reward function reads."""


def _check_method(method: str) -> None:
    if method not in BASELINES:
        raise UserError(f"unknown training baseline {method!r}: use one of {', '.join(BASELINES)}.")


def _require_columns(method: str, dataset, columns: tuple[str, ...], why: str) -> None:
    missing = [c for c in columns if c not in (dataset.column_names or [])]
    if missing:
        raise BaselineDataError(
            f"the {method} baseline needs dataset column(s) {', '.join(missing)} ({why}); the dataset has "
            f"{', '.join(dataset.column_names or []) or 'no columns'}: add them to the training prompts."
        )


def baseline_trainer(
    method: str,
    model,
    tokenizer,
    train_dataset,
    args,
    graders: Graders,
    peft_config=None,
    callbacks=None,
    drop_max_entropy: bool = True,
    entropy_bounds: tuple[float, float] = (0.0, 1.0),
):
    """A `trl.GRPOTrainer` for one baseline with its reward function; `args` is a `trl.GRPOConfig`.

    graders: {family: AnswerKind} (powerflow.eval.grading.family_graders) of the training rows.
    grpo: `accuracy_reward(graders)`; the dataset must have `answer` and `family` columns (else
    BaselineDataError) and `args.remove_unused_columns` must be False (TRL's default).
    empo: `empo_reward(graders, args.num_generations)`; with more than one family the dataset
    needs a `family` column; entropy_bounds = (entropy_min, entropy_max) of EMPO's entropy
    thresholding (`powerflow.baselines.rewards.group_kept`). Each process's generation batch must hold whole groups and
    evaluation must use the training group size (else UserError).
    """
    from trl import GRPOTrainer

    _check_method(method)
    if method == "grpo":
        _require_columns(method, train_dataset, ("answer", "family"), "the accuracy reward grades against gold answers")
        if args.remove_unused_columns:
            raise UserError("the grpo baseline reads the answer and family columns: set remove_unused_columns=False.")
        reward = accuracy_reward(graders)
    else:
        if len(graders) > 1:
            _require_columns(method, train_dataset, ("family",), "each family's answers are read by its own kind")
        _check_empo_groups(args)
        reward = empo_reward(graders, args.num_generations, drop_max_entropy=drop_max_entropy,
                             entropy_min=entropy_bounds[0], entropy_max=entropy_bounds[1])
    return GRPOTrainer(
        model=model, reward_funcs=[reward], args=args, train_dataset=train_dataset, processing_class=tokenizer,
        peft_config=peft_config, callbacks=callbacks,
    )


def _check_empo_groups(args) -> None:
    """Each process's reward call must see whole groups (see powerflow.baselines.rewards)."""
    local_batch = args.per_device_train_batch_size * args.steps_per_generation
    if local_batch % args.num_generations:
        raise UserError(
            f"EMPO clusters each prompt's {args.num_generations} samples within one process, but a process "
            f"generates {local_batch} (per_device_train_batch_size × steps_per_generation): make that a multiple "
            "of num_generations."
        )
    if args.num_generations_eval not in (None, args.num_generations):
        raise UserError(
            f"EMPO groups by num_generations={args.num_generations}, but num_generations_eval="
            f"{args.num_generations_eval}: leave num_generations_eval unset."
        )


def recipe(method: str, args, **extra: Any) -> dict:
    """The settings recorded with a baseline run (plain JSON types, e.g. for MLflow params).

    method, the reward's name (TRL logs `rewards/<reward>/mean`) and description, whether gold
    answers are used, the TRL version, and the GRPOConfig fields in RECIPE_FIELDS; `extra` (e.g.
    drop_max_entropy, the extractor's name) is added as given.
    """
    import trl

    _check_method(method)
    settings: dict[str, Any] = {
        "method": method,
        "reward": REWARD_NAMES[method],
        "reward_description": REWARD_DESCRIPTIONS[method],
        "uses_gold_answers": method == "grpo",
        "trl_version": trl.__version__,
    }
    for name in RECIPE_FIELDS:
        value = getattr(args, name, None)
        settings[name] = getattr(value, "value", value)  # enums (lr_scheduler_type) as their text
    settings.update(extra)
    return settings


GRPO = Baseline("grpo", "trained", "GRPO with the gold-answer accuracy reward", partial(baseline_trainer, "grpo"))
EMPO = Baseline("empo", "trained", "EMPO: semantic-entropy reward, no labels", partial(baseline_trainer, "empo"))

