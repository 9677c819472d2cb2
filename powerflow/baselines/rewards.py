"""Reward functions of the training-time baselines, in the form TRL's GRPOTrainer calls them.

- accuracy_reward   GRPO with gold answers: 1 when the row's answer kind (powerflow.eval.grading)
                    grades the completion right, else 0. The only place in the project where a gold
                    answer reaches training.
- empo_reward       EMPO (Zhang et al. 2025, "Right Question is Already Half the Answer: Fully
                    Unsupervised LLM Reasoning Incentivization", arXiv 2504.05812): no labels; each
                    sample is rewarded with the frequency of its answer's meaning among the G samples
                    of its prompt, and prompts whose samples all disagree are dropped. Answers are
                    read and compared by the row's answer kind (math-verify for math answers).

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

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from powerflow.errors import UserError
from powerflow.eval.grading import AnswerKind, decoded_key

# family -> the AnswerKind that reads, grades and compares that family's answers.
Graders = Mapping[str, AnswerKind]
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
def accuracy_reward(graders: Graders) -> RewardFn:
    """GRPO's verifiable reward: r_i = 1[kind(family_i).grade(answer_i, y_i).correct].

    The dataset must carry `answer` (the key, JSON text as a dataset column stores it) and `family`
    columns; TRL hands them over per completion. TRL logs the mean as `rewards/accuracy/mean`.
    """

    def accuracy(prompts: list, completions: list, answer: list, family: list, **kwargs: Any) -> list[float]:
        return [
            1.0 if grader_of(graders, fam).grade(decoded_key(key), completion_text(c)).correct else 0.0
            for c, key, fam in zip(completions, answer, family, strict=True)
        ]

    return accuracy


def grader_of(graders: Graders, family: Any) -> AnswerKind:
    """The AnswerKind of `family`; with no family (a dataset without the column) the only one there is."""
    if family is None and len(graders) == 1:
        return next(iter(graders.values()))
    if family not in graders:
        raise UserError(
            f"no answer kind for family {family!r}: the answer kinds cover {', '.join(map(str, graders))}; give the "
            "training rows a family column whose values are those families."
        )
    return graders[family]


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


def normalised_semantic_entropy(cluster_ids: Sequence[int | None]) -> float:
    """h = H / log n_valid ∈ [0, 1]: `semantic_entropy` over its maximum (EMPO's entropy thresholds
    are on this scale). h = 1 exactly when no two answers agree, also for n_valid ≤ 1 (no consensus)."""
    counts = Counter(c for c in cluster_ids if c is not None)
    if max(counts.values(), default=0) <= 1:
        return 1.0
    return semantic_entropy(cluster_ids) / math.log(sum(counts.values()))


def group_kept(cluster_ids: Sequence[int | None], entropy_min: float = 0.0, entropy_max: float = 1.0) -> bool:
    """EMPO's entropy thresholding: a group is trained on iff entropy_min ≤ h < entropy_max,
    h = `normalised_semantic_entropy`. The defaults drop exactly the groups whose answers all differ
    (h = 1); entropy_max = inf keeps them; entropy_min > 0 also drops groups that (nearly) agree already."""
    h = normalised_semantic_entropy(cluster_ids)
    return entropy_min <= h < entropy_max


def cluster_frequency_rewards(cluster_ids: Sequence[int | None], drop_max_entropy: bool = True,
                              entropy_min: float = 0.0, entropy_max: float = 1.0) -> list[float | None]:
    """EMPO's rewards for one prompt's group of G samples, from their cluster ids (EMPO §3).

        r_i = p̂(c_i | q) = n_{c_i} / G        (0 for a sample with no answer, c_i = None)

    the frequency of the sample's meaning cluster among all G samples: an unanswered sample counts
    in G but earns nothing, as in the authors' code (`probabilities = counts / n_generations`,
    reward 0.0 for an empty prediction; github.com/QingyangZhang/EMPO, src/open_r1/rewards.py).
    Maximising E[r] minimises the semantic entropy of the policy's answers.

    Entropy thresholding (`group_kept`): a group outside entropy_min ≤ h < entropy_max is dropped.
    By default that is the group where no two samples agree — `semantic_entropy` at its maximum
    log n_valid — which carries no consensus to learn from (the authors keep a group only while its
    entropy is < log G); drop_max_entropy=False keeps it (no upper bound). Dropped means every reward
    is None, which TRL 1.16 treats as unscorable: zero advantage, left out of the baseline, the std
    and the logged reward mean (module docstring). A group that agrees completely needs no rule:
    equal rewards already give zero advantage.
    """
    counts = Counter(c for c in cluster_ids if c is not None)
    if not group_kept(cluster_ids, entropy_min, entropy_max if drop_max_entropy else math.inf):
        return [None] * len(cluster_ids)
    group_size = len(cluster_ids)
    return [0.0 if c is None else counts[c] / group_size for c in cluster_ids]


def empo_rewards(answers: Sequence[str | None], same: SameFn, drop_max_entropy: bool = True,
                 entropy_min: float = 0.0, entropy_max: float = 1.0) -> list[float | None]:
    """EMPO's rewards for one group of answers: `cluster_answers`, then `cluster_frequency_rewards`.

    [a, a, b, None] -> [0.5, 0.5, 0.25, 0.0]; [a, b, c, None] -> [None] * 4 (dropped).
    """
    return cluster_frequency_rewards(cluster_answers(answers, same), drop_max_entropy, entropy_min, entropy_max)


def empo_reward(graders: Graders, num_generations: int, drop_max_entropy: bool = True,
                entropy_min: float = 0.0, entropy_max: float = 1.0) -> RewardFn:
    """EMPO's reward function for TRL: `empo_rewards` on each consecutive group of num_generations.

    Answers are `kind.extract(completion)` and clusters `kind.same`, kind the answer kind of the
    row's family (the dataset's `family` column; without one, the only kind given); groups outside
    entropy_min ≤ h < entropy_max are dropped (`group_kept`). Gold answers are
    never read, even when the dataset has them. TRL logs the mean over kept samples as
    `rewards/semantic_entropy/mean`; through `log_metric` the function adds `empo/semantic_entropy`
    (mean H over groups that answered) and `empo/dropped_fraction` (groups dropped by the entropy
    threshold).
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
        kinds = [grader_of(graders, fam) for fam in families]
        answers = [kind.extract(completion_text(c)) for kind, c in zip(kinds, completions, strict=True)]
        rewards: list[float | None] = []
        entropies, dropped = [], 0
        for start in range(0, n, num_generations):
            group = slice(start, start + num_generations)
            _check_one_prompt(prompts[group], num_generations)
            ids = cluster_answers(answers[group], kinds[start].same)
            group_rewards = cluster_frequency_rewards(ids, drop_max_entropy, entropy_min, entropy_max)
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
