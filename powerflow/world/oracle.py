"""Ground truth for the embedded world: the exact p_base^α over the world's structured support.

The world's teacher writes a small, known set of completions per prompt (powerflow.world.teacher):

  reasoning  "guess answer N" for every number N the tokenizer knows (0..max_number), and every
             worked path "work a + b = r₁ , r₁ + c = r₂ , answer r₂" whose steps are right or off by
             one of the teacher's step-error offsets (the error propagates, as the teacher writes it),
             with at most world.oracle_max_errors wrong steps (every path of the default family);
  open_ended every one-word answer of every category, plus the invalid words;
  chat       the same one-word answers after the direct chat prompt 'user: name a fruit : assistant:'
             (the teacher answers it in its aligned style, p_aligned ∝ p_teacher^γ, but over the same words).

The base model is a neural network, so it also puts a little mass elsewhere; that mass is measured
and reported as the *bound* (1 − Σ_{y∈S} p_base(y|q)): every number below is exact on the support S
and the bound says how much it can be off. Restricted to S, the targets are

    p_α(y|q)  = p_base(y|q)^α / Σ_{y'∈S} p_base(y'|q)^α                      (TB's fixed point)
    π*_λ(y|q) = p_base(y|q)^α e^{−λ|y|} / Σ_{y'∈S} p_base(y'|q)^α e^{−λ|y'|}  (LA-TB's, λ from exact.py)

and from them, per α, the oracle's reasoning accuracy and validity, and the open-ended validity,
expected coverage of n samples and KL to uniform over the valid answers. `policy_distance` scores a
policy on the same support: its exact accuracy mass and KL(target ‖ π) on S.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from powerflow.world.config import WorldConfig
from powerflow.world.teacher import CATEGORY_ANSWERS, _offset, max_number, worked_completion

_REASONING_PROMPT = re.compile(r"^Q\s+(\d(?:\s*\+\s*\d)+)\s*=$")
_LONG_PROMPT = re.compile(r"^Q((?:\s+d\d+\s+\d)+)\s*=$")


@dataclass(frozen=True)
class SupportItem:
    """One completion of the support: its text, and how the world's grader scores it."""

    text: str
    correct: bool
    valid: bool
    kind: str  # "guess", "work" or "answer"
    answer: str


def prompt_digits(prompt: str) -> tuple[int, ...]:
    """(3, 5, 2) from 'Q 3 + 5 + 2 =' or from 'Q d1 3 d2 5 d3 2 =' (long-completion); ValueError otherwise."""
    text = prompt.strip()
    if match := _REASONING_PROMPT.match(text):
        return tuple(int(d) for d in match.group(1).split("+"))
    if match := _LONG_PROMPT.match(text):
        words = match.group(1).split()
        if words[0::2] == [f"d{k + 1}" for k in range(len(words) // 2)]:
            return tuple(int(d) for d in words[1::2])
    raise ValueError(f"not a world reasoning prompt: {prompt!r} (expected 'Q a + b + c =' or 'Q d1 a d2 b =')")


def worked_paths(cfg: WorldConfig, digits: Sequence[int]) -> list[tuple[int, ...]]:
    """Every list of written partial sums the teacher can produce with at most cfg.oracle_max_errors
    wrong steps: each step right or off by an offset.

    Step k writes r_k = r_{k−1} + d_k (+ o_k, o_k ∈ step_error_offsets, reflected at 0 as the teacher
    does), with r_0 = d_0. Paths that write the same sums are listed once.
    """
    n_steps = len(digits) - 1
    paths = set()
    for n_errors in range(min(cfg.oracle_max_errors, n_steps) + 1):
        for wrong in itertools.combinations(range(n_steps), n_errors):
            for offsets in itertools.product(cfg.step_error_offsets, repeat=n_errors):
                offset_at = dict(zip(wrong, offsets))
                results, left = [], digits[0]
                for k, digit in enumerate(digits[1:]):
                    left = left + digit if k not in offset_at else _offset(left + digit, offset_at[k])
                    results.append(left)
                paths.add(tuple(results))
    return sorted(paths)


def reasoning_support(cfg: WorldConfig, digits: Sequence[int]) -> list[SupportItem]:
    """Every guess answer and every worked path of one reasoning prompt, graded against the true answer."""
    gold = sum(digits)
    items = [SupportItem(f"guess answer {n}", n == gold, True, "guess", str(n)) for n in range(max_number(cfg) + 1)]
    for results in worked_paths(cfg, digits):
        items.append(SupportItem(worked_completion(cfg, digits, results), results[-1] == gold, True, "work",
                                 str(results[-1])))
    return items


def open_support(cfg: WorldConfig, valid_answers: Sequence[str]) -> list[SupportItem]:
    """Every one-word answer the world knows (all categories' answers and the invalid words)."""
    words = [a for answers in CATEGORY_ANSWERS.values() for a in answers] + list(cfg.invalid_words)
    valid = set(valid_answers)
    return [SupportItem(w, w in valid, w in valid, "answer", w) for w in dict.fromkeys(words)]


def support_of(cfg: WorldConfig, row: dict) -> list[SupportItem]:
    """The support of one prepared prompt row (family, prompt, answer)."""
    if row["family"] == "reasoning":
        return reasoning_support(cfg, prompt_digits(row["prompt"]))
    if row["family"] in ("open_ended", "chat"):
        return open_support(cfg, list(row["answer"]))
    raise ValueError(f"no oracle for prompt family {row['family']!r}: the world has reasoning, open_ended and chat")


@torch.no_grad()
def completion_log_probs(model, tokenizer, prompt: str, completions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(log π(y|q) [N] float64, |y| [N]) of each completion followed by EOS, in one batched forward pass.

        log π(y|q) = Σ_{t=1}^{|y|} log softmax(logits(q, y_<t))[y_t],   y ending in EOS (|y| counts it)
    """
    eos = tokenizer.eos_token_id
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    comps = [tokenizer(c, add_special_tokens=False)["input_ids"] + [eos] for c in completions]
    return token_log_probs(model, prompt_ids, comps, eos)


@torch.no_grad()
def token_log_probs(model, prompt_ids: Sequence[int], comps: Sequence[Sequence[int]],
                    pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(log π(y|q) [N] float64, |y| [N]) of completions given as token ids (an EOS, if any, included)."""
    ids, mask, logp_all = next_token_log_probs(model, prompt_ids, comps, pad_id)
    logp = logp_all[:, :-1].gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    comp_mask = mask[:, 1:].clone()
    comp_mask[:, : len(prompt_ids) - 1] = 0  # keep only the completion's tokens (targets after the prompt)
    lengths = torch.tensor([float(len(c)) for c in comps], dtype=torch.float64)
    return (logp * comp_mask).sum(dim=-1), lengths


@torch.no_grad()
def next_token_log_probs(model, prompt_ids: Sequence[int], comps: Sequence[Sequence[int]],
                         pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One batched forward pass over prompt + each completion (right-padded with pad_id, so every row's
    positions line up): (ids [N, T], mask [N, T], log softmax of the next-token logits [N, T, V] float64, CPU)."""
    width = max(len(c) for c in comps)
    device = next(model.parameters()).device
    ids = torch.full((len(comps), len(prompt_ids) + width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, comp in enumerate(comps):
        seq = list(prompt_ids) + list(comp)
        ids[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
    was_training = model.training
    model.eval()
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.double().cpu()
    model.train(was_training)
    return ids, mask, torch.log_softmax(logits, dim=-1)


def power_on_support(log_p: torch.Tensor, alpha: float) -> torch.Tensor:
    """log p_α(y|q) = α log p(y|q) − log Σ_{y'∈S} p(y'|q)^α, restricted to the support S."""
    return torch.log_softmax(alpha * log_p, dim=0)


def tilted_on_support(log_p: torch.Tensor, length: torch.Tensor, alpha: float) -> tuple[torch.Tensor, float]:
    """(log π*_λ [N], λ): LA-TB's fixed point p^α e^{−λ|y|}, normalised on S (see exact.length_tilted_target)."""
    from powerflow.exact import length_tilted_target

    return length_tilted_target(log_p, length, alpha)


def expected_coverage(valid_probs: Sequence[float], n: int) -> float:
    """E[coverage] of n i.i.d. samples: (1/|V|) Σ_{a∈V} (1 − (1 − p(a))^n)."""
    return sum(1.0 - (1.0 - p) ** n for p in valid_probs) / len(valid_probs)


def kl_uniform_of(valid_probs: Sequence[float]) -> float:
    """KL(p(·|valid) ‖ U_V) = log|V| − H(p(·|valid)) of the distribution itself (no sampling)."""
    total = sum(valid_probs)
    if total <= 0:
        return math.nan
    entropy = -sum(p / total * math.log(p / total) for p in valid_probs if p > 0)
    return max(math.log(len(valid_probs)) - entropy, 0.0)


def sampled_kl_uniform(probs: Sequence[float], valid: Sequence[bool], n: int, draws: int = 400, seed: int = 0) -> float:
    """E[KL(P̂_n ‖ U_V)]: the evaluation's kl_uniform of n samples, averaged over seeded Monte-Carlo draws.

    The evaluation computes KL from the empirical distribution of n samples (powerflow.eval.metrics
    .kl_to_uniform), which is biased upward at small n; this is its exact-in-expectation counterpart.
    """
    from powerflow.eval.metrics import kl_to_uniform

    rng = random.Random(seed)
    names = list(range(len(probs)))
    valid_set = {i for i in names if valid[i]}
    values = []
    for _ in range(draws):
        kl = kl_to_uniform(rng.choices(names, weights=probs, k=n), valid_set)
        if not math.isnan(kl):
            values.append(kl)
    return sum(values) / len(values) if values else math.nan


def target_log_probs(log_p: torch.Tensor, length: torch.Tensor, alpha: float, objective: str) -> torch.Tensor:
    """The fixed point of `objective` on S (powerflow.registry): p_α for tb, the length tilt for la_tb."""
    from powerflow.registry import objective as objective_named

    return objective_named(objective).fixed_point(log_p, length, alpha)[0]


def distribution_metrics(family: str, log_q: torch.Tensor, items: Sequence[SupportItem], n: int) -> dict[str, float]:
    """What the evaluation measures, computed exactly from a distribution q on S (normalised on S)."""
    probs = log_q.exp().tolist()
    if family == "reasoning":
        correct = sum(p for p, it in zip(probs, items) if it.correct)
        work = sum(p for p, it in zip(probs, items) if it.kind == "work")
        return {"accuracy": correct, f"pass@{n}": 1.0 - (1.0 - min(correct, 1.0)) ** n, "work_fraction": work}
    valid = [it.valid for it in items]
    valid_probs = [p for p, v in zip(probs, valid) if v]
    return {"validity": sum(valid_probs), "coverage": expected_coverage(valid_probs, n),
            "kl_uniform": sampled_kl_uniform(probs, valid, n), "kl_uniform_population": kl_uniform_of(valid_probs)}


@dataclass
class PromptSupport:
    """One eval prompt with its support scored by the base model."""

    row: dict
    items: list[SupportItem]
    log_p_base: torch.Tensor  # float64 [N]
    length: torch.Tensor  # float64 [N]

    @property
    def bound(self) -> float:
        """1 − Σ_{y∈S} p_base(y|q): the base's mass outside the support."""
        return float(1.0 - self.log_p_base.exp().sum())


def score_supports(cfg: WorldConfig, base_model, tokenizer, rows: Sequence[dict]) -> list[PromptSupport]:
    """The support of every row, scored by the base model."""
    out = []
    for row in rows:
        items = support_of(cfg, row)
        log_p, length = completion_log_probs(base_model, tokenizer, row["prompt"], [it.text for it in items])
        out.append(PromptSupport(row=dict(row), items=items, log_p_base=log_p, length=length))
    return out


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def oracle_metrics(supports: Sequence[PromptSupport], alpha: float, objective: str = "tb", n_samples: int = 16) -> dict:
    """Exact target metrics per family, averaged over prompts (each prompt weighs the same).

    objective "tb" gives p_base^α itself; "la_tb" its length tilt (any registered objective: its
    fixed point). Keys: "<family>/<metric>", plus "<family>/support_bound" (mean base mass outside
    S) and "<family>/lambda" for a target with a tilt λ (la_tb).
    """
    from powerflow.registry import objective as objective_named

    per_family: dict[str, list[dict]] = {}
    for s in supports:
        log_q, tilt = objective_named(objective).fixed_point(s.log_p_base, s.length, alpha)
        m = distribution_metrics(s.row["family"], log_q, s.items, n_samples)
        m["support_bound"] = s.bound
        m["length"] = float((log_q.exp() * s.length).sum())
        if tilt is not None:
            m["lambda"] = float(tilt)
        per_family.setdefault(s.row["family"], []).append(m)
    return {f"{family}/{key}": _mean([m[key] for m in ms])
            for family, ms in per_family.items() for key in ms[0]}


def policy_support_log_probs(supports: Sequence[PromptSupport], policy_model, tokenizer) -> list[torch.Tensor]:
    """log π(y|q) of every y ∈ S, per prompt: the one policy pass `policy_distance` needs, to be shared
    when a policy is measured against more than one target."""
    return [completion_log_probs(policy_model, tokenizer, s.row["prompt"], [it.text for it in s.items])[0]
            for s in supports]


def policy_distance(supports: Sequence[PromptSupport], policy_model, tokenizer, alpha: float,
                    objective: str = "tb", n_samples: int = 16,
                    log_pis: Sequence[torch.Tensor] | None = None) -> dict:
    """How far a policy is from the target, on the support, per family (means over prompts).

    `log_pis`: the policy's log-probabilities on S from `policy_support_log_probs`, when already
    computed (`policy_model` is then not run).

        kl_target = Σ_{y∈S} t(y) [log t(y) − log π(y|q)]   (t the target on S; π unnormalised on S,
                                                            so π's mass outside S counts as error)
        mass      = Σ_{y∈S} π(y|q)
        length    = Σ_{y∈S} π(y|q) |y| / mass                      (E|y| of π renormalised on S, EOS counted)
    plus the exact metrics of π itself on S (its accuracy mass, validity, coverage of n samples).
    """
    if log_pis is None:
        log_pis = policy_support_log_probs(supports, policy_model, tokenizer)
    per_family: dict[str, list[dict]] = {}
    for s, log_pi in zip(supports, log_pis, strict=True):
        log_t = target_log_probs(s.log_p_base, s.length, alpha, objective)
        kl = float((log_t.exp() * (log_t - log_pi)).sum())
        mass = float(log_pi.exp().sum())
        m = distribution_metrics(s.row["family"], log_pi, s.items, n_samples)
        if s.row["family"] != "reasoning":  # coverage and KL as if π were renormalised on S
            m.update({k: v for k, v in distribution_metrics(
                s.row["family"], log_pi - math.log(max(mass, 1e-300)), s.items, n_samples).items() if k != "validity"})
        length = float((log_pi.exp() * s.length).sum()) / max(mass, 1e-300)
        m.update({"kl_target": kl, "mass": mass, "length": length})
        per_family.setdefault(s.row["family"], []).append(m)
    return {f"{family}/{key}": _mean([m[key] for m in ms]) for family, ms in per_family.items() for key in ms[0]}


@torch.no_grad()
def off_support_power_lower_bound(model, tokenizer, prompt: str, completions: Sequence[str],
                                  alpha: float) -> tuple[float, float]:
    """(Z_S, B): Z_S = Σ_{y∈S} p(y|q)^α and a lower bound B ≤ Σ_{y∉S} p(y|q)^α, for α ≤ 1.

    Every terminal sequence outside S leaves S's prefix tree at some node u (a prefix of an item of
    S) by a token v that is not a child of u. Grouping them by (u, v):

        Σ_{y∉S} p(y)^α = Σ_u Σ_{v∉children(u)} p(u)^α p(v|u)^α · Z(u v),   Z(w) = Σ_{s} p(s|w)^α ≥ 1

    because for α ≤ 1, Σ_s p(s|w)^α ≥ (Σ_s p(s|w))^α = 1 (s over the terminal suffixes of w; v = EOS
    ends the sequence, Z = 1). Dropping Z gives B. The true target p_base^α is normalised over every
    sequence, so its mass on S is at most Z_S / (Z_S + B): the oracle's p_α restricted to S is TB's
    fixed point only when B ≪ Z_S.
    """
    if alpha > 1:
        raise ValueError("the bound holds for alpha <= 1 (Z(w) >= 1); for alpha > 1 the mass outside S is at "
                         "most the base's own (PromptSupport.bound)")
    eos = tokenizer.eos_token_id
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    comps = [tuple(tokenizer(c, add_special_tokens=False)["input_ids"] + [eos]) for c in completions]
    children: dict[tuple, set] = {}
    for comp in comps:
        for t in range(len(comp)):
            children.setdefault(comp[:t], set()).add(comp[t])
    _, _, logp = next_token_log_probs(model, prompt_ids, comps, eos)
    z_s, bound, seen = 0.0, 0.0, set()
    for i, comp in enumerate(comps):
        prefix_logp = 0.0
        for t in range(len(comp)):
            prefix = comp[:t]
            dist = logp[i, len(prompt_ids) - 1 + t]
            if prefix not in seen:
                seen.add(prefix)
                out = torch.ones_like(dist, dtype=torch.bool)
                out[list(children[prefix])] = False
                bound += float(torch.exp(alpha * (prefix_logp + dist[out])).sum())
            prefix_logp += float(dist[comp[t]])
        z_s += math.exp(alpha * prefix_logp)
    return z_s, bound


def true_target_bounds(supports: Sequence[PromptSupport], base_model, tokenizer, alpha: float) -> dict:
    """For α ≤ 1, what the oracle's p_α on S can say about TB's true fixed point p_base^α / Z, Z over
    every sequence (means over prompts, per family; keys "<family>/...").

        support_share_max = Z_S / (Z_S + B)          ≥ the true target's mass on S
        accuracy_max      = Σ_{y∈S correct} p^α / (Z_S + B)   (reasoning)
        validity_max      = Σ_{y∈S valid} p^α / (Z_S + B)     (open-ended)

    with Z_S, B from off_support_power_lower_bound. Where support_share_max is near 1 the oracle's
    p_α is the target; where it is not, the true target puts that much mass on sequences outside S
    (p^α with α < 1 lifts the base's thin tail) and its accuracy is at most accuracy_max.
    """
    per_family: dict[str, list[dict]] = {}
    for s in supports:
        z_s, bound = off_support_power_lower_bound(base_model, tokenizer, s.row["prompt"],
                                                   [it.text for it in s.items], alpha)
        weights = (alpha * s.log_p_base).exp()
        total = z_s + bound
        m = {"support_share_max": z_s / total}
        if s.row["family"] == "reasoning":
            m["accuracy_max"] = float(sum(w for w, it in zip(weights.tolist(), s.items) if it.correct)) / total
        else:
            m["validity_max"] = float(sum(w for w, it in zip(weights.tolist(), s.items) if it.valid)) / total
        per_family.setdefault(s.row["family"], []).append(m)
    return {f"{family}/{key}": _mean([m[key] for m in ms]) for family, ms in per_family.items() for key in ms[0]}


@torch.no_grad()
def sampled_completions(model, prompt_ids: Sequence[int], eos: int, n: int, max_new_tokens: int,
                        seed: int) -> list[list[int]]:
    """n completions of the prompt drawn from the model at temperature 1 (no top-k/top-p), as token
    ids up to and including the first EOS, or max_new_tokens long when truncated."""
    torch.manual_seed(seed)
    was_training = model.training
    model.eval()
    out = model.generate(torch.tensor([list(prompt_ids)]), do_sample=True, top_k=0, top_p=1.0, temperature=1.0,
                         max_new_tokens=max_new_tokens, num_return_sequences=n, pad_token_id=eos, eos_token_id=eos)
    model.train(was_training)
    rows = out[:, len(prompt_ids):].tolist()
    return [row[: row.index(eos) + 1] if eos in row else row for row in rows]


@torch.no_grad()
def sampled_true_target(support: PromptSupport, policy_model, base_model, tokenizer, alpha: float, n: int,
                        max_new_tokens: int, seed: int = 0) -> dict:
    """TB's true fixed point t(y) = p_base(y|q)^α / Z, Z over every sequence, estimated for one prompt:
    exact on the support S, importance-sampled outside it with the policy π as the proposal.

        Z ≈ Z_S + max(Ẑ_out, B),   Ẑ_out = (1/n) Σ_i [y_i ∉ S] w_i,   w_i = p_base(y_i)^α / π(y_i),   y_i ~ π
        share_S = Z_S / Z;  accuracy (validity) = (Σ_{y∈S, correct} p^α + (1/n) Σ_i [y_i ∉ S, correct] w_i) / Z
        KL(t ‖ π) = Σ_{y∈S} t(y) log(t(y)/π(y)) + (1/n) Σ_i [y_i ∉ S] (w_i/Z) log(w_i/Z)

    Samples are π's at temperature 1, up to max_new_tokens (a truncated one is a terminal state scored
    by its prefix, as in training). Ẑ_out is unbiased for the mass π can reach; mass π never samples is
    missed, so the outside mass is taken as at least off_support_power_lower_bound's B (α ≤ 1);
    sampled_above_bound says which of the two was used, ess is the effective sample size of the
    outside weights. The KL's outside term uses the samples only (a lower estimate when B was used).
    """
    from powerflow.world.grading import grade

    eos = tokenizer.eos_token_id
    prompt_ids = tokenizer(support.row["prompt"], add_special_tokens=False)["input_ids"]
    samples = sampled_completions(policy_model, prompt_ids, eos, n, max_new_tokens, seed)
    log_pi, _ = token_log_probs(policy_model, prompt_ids, samples, eos)
    log_p, _ = token_log_probs(base_model, prompt_ids, samples, eos)
    support_ids = {tuple(tokenizer(it.text, add_special_tokens=False)["input_ids"] + [eos]) for it in support.items}
    outside = torch.tensor([tuple(x) not in support_ids for x in samples], dtype=torch.float64)
    family = support.row["family"]
    good = torch.tensor([grade(family, support.row["answer"], tokenizer.decode(x, skip_special_tokens=True)).correct
                         for x in samples], dtype=torch.float64)
    w = (alpha * log_p - log_pi).exp() * outside
    z_s = float((alpha * support.log_p_base).exp().sum())
    z_s_bound, bound = off_support_power_lower_bound(base_model, tokenizer, support.row["prompt"],
                                                     [it.text for it in support.items], alpha) if alpha <= 1 else (z_s, 0.0)
    z = z_s + max(float(w.mean()), bound)  # what π cannot reach is at least the bound
    weights_s = (alpha * support.log_p_base).exp()
    key = "accuracy" if family == "reasoning" else "validity"
    good_s = torch.tensor([it.correct if family == "reasoning" else it.valid for it in support.items],
                          dtype=torch.float64)
    log_pi_s, _ = completion_log_probs(policy_model, tokenizer, support.row["prompt"], [it.text for it in support.items])
    log_t_s = alpha * support.log_p_base - math.log(z)
    kl = float((log_t_s.exp() * (log_t_s - log_pi_s)).sum())
    ratio = w / z
    kl += float(torch.where(outside > 0, ratio * torch.log(ratio.clamp_min(1e-300)), torch.zeros_like(ratio)).mean())
    ess = float(w.sum() ** 2 / (w ** 2).sum()) if float(w.sum()) > 0 else 0.0
    return {"share_s": z_s / z, key: (float((weights_s * good_s).sum()) + float((w * good).mean())) / z,
            "kl_target": kl, "policy_share_s": 1.0 - float(outside.mean()), "ess": ess,
            "share_s_max": z_s_bound / (z_s_bound + bound), "sampled_above_bound": float(float(w.mean()) > bound)}


def sampled_true_targets(supports: Sequence[PromptSupport], policy_model, base_model, tokenizer, alpha: float,
                         n: int = 128, max_new_tokens: int = 24) -> dict:
    """sampled_true_target per prompt, averaged per family: keys "<family>/<metric>"."""
    per_family: dict[str, list[dict]] = {}
    for i, s in enumerate(supports):
        m = sampled_true_target(s, policy_model, base_model, tokenizer, alpha, n, max_new_tokens, seed=i)
        per_family.setdefault(s.row["family"], []).append(m)
    return {f"{family}/{key}": _mean([m[key] for m in ms]) for family, ms in per_family.items() for key in ms[0]}
