"""generate_completions and evaluate_model on a tiny real Qwen2 (letters a-d, EOS '</s>')."""

import math
from dataclasses import dataclass

import pytest
import torch

from powerflow.errors import UserError
from powerflow.eval.config import EvalConfig
from powerflow.eval.evaluate import EvalDataError, evaluate_model
from powerflow.eval.generation import generate_completions
from powerflow.world.enumerable import random_base

PROMPTS = ["a", "b c", "d a b", "c"]
MAX_NEW = 4


@dataclass(frozen=True)
class LetterGrade:
    valid: bool
    correct: bool
    extracted: str | None


def letter_grade(family: str, answer, completion: str) -> LetterGrade:
    """The answer is the first letter of the completion: reasoning compares it with the gold letter,
    open-ended checks it is in the list of valid letters (correct = valid, as the world's grader)."""
    tokens = completion.split()
    first = tokens[0] if tokens else None
    if family == "reasoning":
        return LetterGrade(valid=first is not None, correct=first == answer, extracted=first)
    valid = first in answer
    return LetterGrade(valid=valid, correct=valid, extracted=first)


@pytest.fixture(scope="module")
def pair():
    return random_base(seed=0, n_symbols=4)


def eval_rows():
    reasoning = [{"id": f"r{i}", "family": "reasoning", "prompt": p, "answer": gold}
                 for i, (p, gold) in enumerate(zip(PROMPTS, "abca"))]
    open_ended = [{"id": f"o{i}", "family": "open_ended", "prompt": p, "answer": valid}
                  for i, (p, valid) in enumerate(zip(PROMPTS[:3], [["a", "b", "c"], ["b", "d"], ["a", "b", "c", "d"]]))]
    return reasoning + open_ended


def sample(model, tok, prompts=PROMPTS, **kw):
    args = {"n": 6, "greedy": False, "max_new_tokens": MAX_NEW, "seed": 0, "progress": False}
    args.update(kw)
    return generate_completions(model, tok, prompts, **args)


def test_completions_have_the_requested_shape_and_consistent_lengths(pair):
    model, tok = pair
    out = sample(model, tok, batch_size=5)  # 24 sequences in batches of 5: a ragged last batch
    assert len(out) == len(PROMPTS) and all(len(row) == 6 for row in out)
    flat = [c for row in out for c in row]
    for c in flat:
        assert 1 <= c.n_tokens <= MAX_NEW
        # one letter per token; n_tokens counts the EOS when there is one
        assert len(c.text.split()) == c.n_tokens - (0 if c.truncated else 1)
        assert set(c.text.split()) <= set("abcd")
        if c.truncated:
            assert c.n_tokens == MAX_NEW
    assert any(c.truncated for c in flat) and any(not c.truncated for c in flat)


def test_sampling_is_reproducible_with_a_seed_and_leaves_global_rng_alone(pair):
    model, tok = pair
    state = torch.get_rng_state()
    first = sample(model, tok, seed=3)
    assert torch.equal(state, torch.get_rng_state())
    assert sample(model, tok, seed=3) == first
    assert sample(model, tok, seed=4) != first


def test_greedy_is_the_argmax_path_and_ignores_seed_and_batching(pair):
    model, tok = pair
    greedy = generate_completions(model, tok, PROMPTS, n=3, greedy=True, max_new_tokens=MAX_NEW, seed=0,
                                  batch_size=64, progress=False)
    again = generate_completions(model, tok, PROMPTS, n=1, greedy=True, max_new_tokens=MAX_NEW, seed=9,
                                 batch_size=1, progress=False)
    assert all(len(set(row)) == 1 for row in greedy)  # n copies of one completion
    assert [row[0] for row in greedy] == [row[0] for row in again]  # left padding does not change it
    for prompt, row in zip(PROMPTS, again):  # step-by-step argmax without padding
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        new = []
        with torch.no_grad():
            for _ in range(MAX_NEW):
                nxt = int(model(input_ids=torch.tensor([ids + new])).logits[0, -1].argmax())
                new.append(nxt)
                if nxt == tok.eos_token_id:
                    break
        assert row[0].n_tokens == len(new)
        assert row[0].text == tok.decode([t for t in new if t != tok.eos_token_id])


def test_sampling_ignores_a_top_k_saved_in_the_generation_config(pair):
    model, tok = pair
    model.generation_config.top_k = 1  # would make sampling greedy if it were applied
    try:
        out = sample(model, tok, prompts=["a"], n=32)
    finally:
        model.generation_config.top_k = None
    assert len({c.text for c in out[0]}) > 1


def test_backends_other_than_transformers_raise_user_errors(pair):
    model, tok = pair
    with pytest.raises(UserError, match="evaluate.backend"):
        sample(model, tok, backend="vllm")
    with pytest.raises(UserError, match="transformers"):
        sample(model, tok, backend="onnx")


def test_evaluate_model_counts_keys_and_consistency_with_samples(pair):
    model, tok = pair
    cfg = EvalConfig(n_samples=8, max_new_tokens=MAX_NEW, n_examples=8, batch_size=16)
    model.train()  # evaluation switches to eval mode and restores the caller's mode
    metrics, samples = evaluate_model(model, tok, eval_rows(), letter_grade, cfg, progress=False)
    assert model.training
    model.eval()

    expected_keys = {
        "reasoning/accuracy_greedy", "reasoning/accuracy_mean", "reasoning/accuracy_mean_se", "reasoning/pass@1",
        "reasoning/pass@2", "reasoning/pass@4", "reasoning/pass@8", "reasoning/validity",
        "reasoning/tokens_per_answer", "open_ended/validity", "open_ended/validity_se", "open_ended/coverage",
        "open_ended/coverage_se", "open_ended/kl_uniform", "open_ended/distinct_1", "open_ended/tokens_per_answer",
        "cost/tokens_per_answer", "cost/seconds_per_answer", "eval/n_prompts/reasoning",
        "eval/n_prompts/open_ended", "eval/n_samples",
    }
    assert expected_keys <= set(metrics)
    assert metrics["eval/n_prompts/reasoning"] == 4 and metrics["eval/n_prompts/open_ended"] == 3
    assert metrics["eval/n_samples"] == 8

    greedy = [s for s in samples if s["kind"] == "greedy"]
    sampled = [s for s in samples if s["kind"] == "sample"]
    assert len(greedy) == 7 and len(sampled) == 7 * 8
    assert set(samples[0]) == {"id", "family", "kind", "index", "completion", "extracted", "valid", "correct",
                               "n_tokens", "truncated"}

    def of(family, rows):
        return [s for s in rows if s["family"] == family]

    tokens = [s["n_tokens"] for s in sampled]
    assert metrics["cost/tokens_per_answer"] == pytest.approx(sum(tokens) / len(tokens))
    for family in ("reasoning", "open_ended"):
        fam_tokens = [s["n_tokens"] for s in of(family, sampled)]
        assert metrics[f"{family}/tokens_per_answer"] == pytest.approx(sum(fam_tokens) / len(fam_tokens))

    r_sampled = of("reasoning", sampled)
    accuracy = sum(s["correct"] for s in r_sampled) / len(r_sampled)  # same n per prompt: mean of means
    assert metrics["reasoning/accuracy_mean"] == pytest.approx(accuracy)
    assert metrics["reasoning/pass@1"] == pytest.approx(accuracy)
    assert metrics["reasoning/pass@8"] >= metrics["reasoning/pass@4"] >= metrics["reasoning/pass@1"]
    assert metrics["reasoning/accuracy_greedy"] == pytest.approx(
        sum(s["correct"] for s in of("reasoning", greedy)) / 4)
    assert metrics["reasoning/validity"] == pytest.approx(sum(s["valid"] for s in r_sampled) / len(r_sampled))

    valid_sets = {r["id"]: set(r["answer"]) for r in eval_rows() if r["family"] == "open_ended"}
    per_prompt_coverage = [
        len({s["extracted"] for s in sampled if s["id"] == pid and s["valid"]}) / len(valid)
        for pid, valid in valid_sets.items()
    ]
    assert metrics["open_ended/coverage"] == pytest.approx(sum(per_prompt_coverage) / 3)
    o_sampled = of("open_ended", sampled)
    assert metrics["open_ended/validity"] == pytest.approx(sum(s["valid"] for s in o_sampled) / len(o_sampled))
    assert 0 <= metrics["open_ended/kl_uniform"] <= math.log(4)


def test_evaluate_model_is_deterministic_and_honours_limits(pair):
    model, tok = pair
    cfg = EvalConfig(n_samples=4, max_new_tokens=MAX_NEW, n_examples=2, seed=1, max_prompts_per_family=2)
    m1, s1 = evaluate_model(model, tok, eval_rows(), letter_grade, cfg, progress=False)
    m2, s2 = evaluate_model(model, tok, eval_rows(), letter_grade, cfg, progress=False)
    _, s3 = evaluate_model(model, tok, eval_rows(), letter_grade, EvalConfig(
        n_samples=4, max_new_tokens=MAX_NEW, n_examples=2, seed=2, max_prompts_per_family=2), progress=False)
    assert s1 == s2
    timing = "cost/seconds_per_answer"

    def untimed(m):  # wall times differ between runs; NaN (an undefined distinct-4) compares as a string
        return {k: ("nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in m.items()
                if not k.endswith("seconds_per_answer")}

    assert untimed(m1) == untimed(m2)
    assert m1[timing] > 0 and m1["reasoning/seconds_per_answer"] > 0
    assert [s for s in s1 if s["kind"] == "greedy"] == [s for s in s3 if s["kind"] == "greedy"]
    assert [s for s in s1 if s["kind"] == "sample"] != [s for s in s3 if s["kind"] == "sample"]
    assert m1["eval/n_prompts/reasoning"] == 2 and m1["eval/n_prompts/open_ended"] == 2
    assert {s["id"] for s in s1} == {"r0", "r1", "o0", "o1"}
    assert len(s1) == 4 * (1 + 2)  # greedy + n_examples per prompt
    assert {s["index"] for s in s1 if s["kind"] == "sample"} == {0, 1}
    assert "reasoning/pass@4" in m1 and "reasoning/pass@8" not in m1


def test_evaluate_model_refuses_accepted_answers_outside_the_answer_list(pair):
    model, tok = pair
    rows = [{"id": "o0", "family": "open_ended", "prompt": "a", "answer": ["A", "B", "C", "D"]}]

    def case_blind(family, answer, completion):  # case does not matter: both sides are normalised
        first = (completion.split() or [None])[0]
        ok = first is not None and first.upper() in answer
        return LetterGrade(valid=ok, correct=ok, extracted=first)

    metrics, _ = evaluate_model(model, tok, rows, case_blind, EvalConfig(n_samples=16, max_new_tokens=MAX_NEW),
                                progress=False)
    assert metrics["open_ended/coverage"] > 0

    def renaming(family, answer, completion):  # accepts an answer, reports a form the list lacks
        g = case_blind(family, answer, completion)
        return LetterGrade(valid=g.valid, correct=g.correct, extracted=f"letter {g.extracted}")

    with pytest.raises(EvalDataError, match="normalised"):
        evaluate_model(model, tok, rows, renaming, EvalConfig(n_samples=16, max_new_tokens=MAX_NEW),
                       progress=False)
    with pytest.raises(EvalDataError, match="answer"):
        evaluate_model(model, tok, [{"id": "x", "family": "reasoning", "prompt": "a"}], letter_grade,
                       EvalConfig(), progress=False)
