"""Reward functions of the training-time baselines, in the form TRL's GRPOTrainer calls them.

- accuracy_reward   GRPO with gold answers: 1 when the project's grader says the completion is
                    right, else 0. The only place in the project where a gold answer reaches training.
- empo_reward       EMPO (Zhang et al. 2025, "Right Question is Already Half the Answer: Fully
                    Unsupervised LLM Reasoning Incentivization", arXiv 2504.05812): no labels; each
                    sample is rewarded with the frequency of its answer's meaning among the G samples
                    of its prompt, and prompts whose samples all disagree are dropped.

How TRL 1.16 calls a reward function (trl/trainer/grpo_trainer.py, `_calculate_rewards` and
`_generate_and_score_completions`):

- `f(prompts=..., completions=..., completion_ids=..., **columns, trainer_state=, log_extra=,
  log_metric=)`: one list entry per completion of this process's generation batch, every dataset
  column repeated per completion (GRPOConfig.remove_unused_columns defaults to False so they stay).
  Completions are decoded with `skip_special_tokens=True`; conversational ones are message lists.
- Each prompt's G = num_generations completions are consecutive (RepeatSampler with
  mini_repeat_count=G). A process's batch holds whole groups exactly when its length
  (per_device_train_batch_size × steps_per_generation) is a multiple of G; TRL itself only requires
  that of the global batch, so `empo_reward` checks it on every call.
- A None reward becomes NaN. A completion for which every reward function returned None is
  "unscorable": it is left out of its group's mean and std (nanmean/nanstd), out of the batch std
  (scale_rewards="batch"), out of the logged `rewards/<name>/mean`, and its advantage is set to 0
  (`torch.nan_to_num(advantages, nan=0.0)`). This is how a dropped EMPO group is expressed here.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from powerflow.errors import UserError
from powerflow.eval.grading import Grade

# grade(family, answer key, completion text) -> Grade: the project's graders in one signature.
GradeFn = Callable[[Any, Any, str], Grade]
# extract(family, completion text) -> the answer it gives, or None when it gives none.
ExtractFn = Callable[[Any, str], "str | None"]
# same(representative, answer) -> True when the two answers mean the same (one equivalence class).
SameFn = Callable[[str, str], bool]
RewardFn = Callable[..., list]


class GroupLayoutError(UserError):
    """A reward call's completions do not come as whole groups of num_generations per prompt."""


def completion_text(completion: str | Sequence[dict]) -> str:
    """The text of a completion: the string itself, or the joined contents of a message list."""
    if isinstance(completion, str):
        return completion
    return "".join(m["content"] for m in completion if isinstance(m.get("content"), str))


# ------------------------------------------------------------------------------------- GRPO
def accuracy_reward(grade: GradeFn) -> RewardFn:
    """GRPO's verifiable reward: r_i = 1[grade(family_i, answer_i, y_i).correct].

    The dataset must carry `answer` (the key in the form `grade` takes) and `family` columns; TRL
    hands them over per completion. TRL logs the mean as `rewards/accuracy/mean`.
    """

    def accuracy(prompts: list, completions: list, answer: list, family: list, **kwargs: Any) -> list[float]:
        return [
            1.0 if grade(fam, key, completion_text(c)).correct else 0.0
            for c, key, fam in zip(completions, answer, family, strict=True)
        ]

    return accuracy


# ------------------------------------------------------------------------------------- EMPO
def cluster_answers(answers: Sequence[str | None], same: SameFn) -> list[int | None]:
    """Greedy clustering by equivalence: the id of each answer's cluster, None for no answer.

    Each answer joins the first cluster (in order of creation) whose representative — its first
    member — it is `same` as, called `same(representative, answer)` (math-verify is not symmetric:
    the representative plays the gold role); otherwise it opens a new cluster. Ids are 0, 1, ... in
    order of first appearance. For an equivalence relation (exact match) this is exact; for a
    non-transitive one (math-verify, entailment) it is the usual greedy semantic clustering of
    semantic-entropy work (Kuhn et al. 2023), which EMPO uses.
    """
    representatives: list[str] = []
    ids: list[int | None] = []
    for answer in answers:
        if answer is None:
            ids.append(None)
            continue
        for cluster, representative in enumerate(representatives):
            if same(representative, answer):
                ids.append(cluster)
                break
        else:
            representatives.append(answer)
            ids.append(len(representatives) - 1)
    return ids


def semantic_entropy(cluster_ids: Sequence[int | None]) -> float:
    """Semantic entropy of the answers given: H = −Σ_c f_c log f_c, f_c = n_c / n_valid (nats).

    n_c counts the answers in cluster c and n_valid the samples that gave an answer: samples with
    no answer (None) are left out of the denominator, so H is the entropy of the model's meaning
    distribution given that it answers (EMPO §3, Kuhn et al. 2023). Its maximum, log n_valid, is
    reached exactly when every answer is in a different cluster. NaN when no sample answered.
    """
    counts = Counter(c for c in cluster_ids if c is not None)
    n_valid = sum(counts.values())
    if n_valid == 0:
        return math.nan
    return -sum((n / n_valid) * math.log(n / n_valid) for n in counts.values())


def cluster_frequency_rewards(cluster_ids: Sequence[int | None], drop_max_entropy: bool = True) -> list[float | None]:
    """EMPO's rewards for one prompt's group of G samples, from their cluster ids (EMPO §3).

        r_i = p̂(c_i | q) = n_{c_i} / G        (0 for a sample with no answer, c_i = None)

    the frequency of the sample's meaning cluster among all G samples: an unanswered sample counts
    in G but earns nothing, as in the authors' code (`probabilities = counts / n_generations`,
    reward 0.0 for an empty prediction; github.com/QingyangZhang/EMPO, src/open_r1/rewards.py).
    Maximising E[r] minimises the semantic entropy of the policy's answers.

    Entropy thresholding: when no two samples agree — every answer in its own cluster, i.e.
    `semantic_entropy` at its maximum log n_valid (log G when all samples answered) — the group
    carries no consensus to learn from and is dropped (the authors keep a group only while its
    entropy is < log G). Dropped means every reward is None, which TRL 1.16 treats as unscorable:
    zero advantage, left out of the baseline, the std and the logged reward mean (module docstring).
    A group that agrees completely needs no rule: equal rewards already give zero advantage.
    """
    counts = Counter(c for c in cluster_ids if c is not None)
    if drop_max_entropy and max(counts.values(), default=0) <= 1:
        return [None] * len(cluster_ids)
    group_size = len(cluster_ids)
    return [0.0 if c is None else counts[c] / group_size for c in cluster_ids]


def empo_rewards(answers: Sequence[str | None], same: SameFn, drop_max_entropy: bool = True) -> list[float | None]:
    """EMPO's rewards for one group of answers: `cluster_answers`, then `cluster_frequency_rewards`.

    [a, a, b, None] -> [0.5, 0.5, 0.25, 0.0]; [a, b, c, None] -> [None] * 4 (dropped).
    """
    return cluster_frequency_rewards(cluster_answers(answers, same), drop_max_entropy)


def empo_reward(extract: ExtractFn, same: SameFn, num_generations: int, drop_max_entropy: bool = True) -> RewardFn:
    """EMPO's reward function for TRL: `empo_rewards` on each consecutive group of num_generations.

    Answers are `extract(family, completion)`, family taken from the dataset's `family` column
    when it has one (else None). Gold answers are never read, even when the dataset has them.
    TRL logs the mean over kept samples as `rewards/semantic_entropy/mean`; through `log_metric`
    the function adds `empo/semantic_entropy` (mean H over groups that answered) and
    `empo/dropped_fraction` (groups dropped by the entropy threshold).
    """
    if num_generations < 1:
        raise ValueError(f"empo_reward needs num_generations >= 1, got {num_generations}")

    def reward(prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
        n = len(completions)
        if n % num_generations:
            raise GroupLayoutError(
                f"EMPO got {n} completions, not whole groups of num_generations={num_generations}: make "
                "per_device_train_batch_size × steps_per_generation a multiple of num_generations."
            )
        families = kwargs.get("family") or [None] * n
        answers = [extract(fam, completion_text(c)) for fam, c in zip(families, completions, strict=True)]
        rewards: list[float | None] = []
        entropies, dropped = [], 0
        for start in range(0, n, num_generations):
            group = slice(start, start + num_generations)
            _check_one_prompt(prompts[group], num_generations)
            ids = cluster_answers(answers[group], same)
            group_rewards = cluster_frequency_rewards(ids, drop_max_entropy)
            dropped += group_rewards[0] is None
            entropy = semantic_entropy(ids)
            if not math.isnan(entropy):
                entropies.append(entropy)
            rewards.extend(group_rewards)
        log_metric = kwargs.get("log_metric")
        if log_metric is not None:
            if entropies:
                log_metric("empo/semantic_entropy", sum(entropies) / len(entropies))
            log_metric("empo/dropped_fraction", dropped / (n // num_generations))
        return rewards

    reward.__name__ = reward.__qualname__ = "semantic_entropy"  # TRL logs rewards/<__name__>/...
    return reward


def _check_one_prompt(prompts: Sequence, num_generations: int) -> None:
    if any(p != prompts[0] for p in prompts):
        raise GroupLayoutError(
            f"EMPO expected {num_generations} consecutive completions of one prompt, got several prompts: "
            "evaluation must use the training group size (leave num_generations_eval unset)."
        )


# ------------------------------------------------------------------------- world and math
def world_extract(family: str, completion: str) -> str | None:
    """The answer a world completion gives, in the form two answers are compared in.

    reasoning: the world grader's extracted value (N of the last "answer N", canonical integer).
    open_ended: the world grader's normalisation (EOS text dropped first: SQuAD normalisation alone
    would turn "apple</s>" into "apples"), then `normalize_answer`; an empty result is no answer.
    """
    from powerflow.eval.openended import normalize_answer
    from powerflow.world.grading import (
        FAMILIES,
        extract_reasoning_answer,
        normalize_open_answer,
    )

    if family == "reasoning":
        return extract_reasoning_answer(completion)
    if family == "open_ended":
        return normalize_answer(normalize_open_answer(completion)) or None
    raise ValueError(f"unknown world prompt family {family!r}: use one of {', '.join(FAMILIES)}")


def world_same(a: str, b: str) -> bool:
    """Normalised exact match (`normalize_answer`): the world's equivalence of two answers."""
    from powerflow.eval.openended import normalize_answer

    return normalize_answer(a) == normalize_answer(b)


def world_grade(family: str, answer: Any, completion: str) -> Grade:
    """The world grader, taking the answer key as stored in the prepared answer table (JSON text).

    A dataset column cannot mix strings ("10") and lists (valid answers), so the key may arrive as
    its JSON text ('"10"', '["apple", "apples"]'); text that is not JSON is used as it is.
    """
    from powerflow.world.grading import grade

    if isinstance(answer, str):
        try:
            answer = json.loads(answer)
        except ValueError:
            pass
    return grade(family, answer, completion)


def math_extract(family: Any, completion: str) -> str | None:
    """The final answer of a math completion (`powerflow.eval.math.extract_answer`); family unused."""
    from powerflow.eval.math import extract_answer

    return extract_answer(completion)


def math_grade(family: Any, answer: str, completion: str) -> Grade:
    """`grade_math(completion, answer)` in the grade(family, answer, completion) signature."""
    from powerflow.eval.math import grade_math

    return grade_math(completion, str(answer))


def math_same(verifier=None) -> SameFn:
    """math-verify equivalence as `same(representative, answer)`: the representative is the gold side.

    Uses `verifier` (a `powerflow.eval.math.MathVerifier`) or, when None, the shared one.
    """
    from powerflow.eval.math import is_equivalent

    def same(representative: str, answer: str) -> bool:
        if verifier is None:
            return is_equivalent(answer, representative)
        return verifier.equivalent(answer, representative)

    return same
