"""Evaluation end to end on every benchmark kind, with real parts: benchmark files in each
benchmark's published schema, the math-verify worker, the offline all-MiniLM-L6-v2 embedder, a
local transformers judge, and a tiny random Llama over the world vocabulary as the policy.

The policy knows none of the benchmarks' words, so it answers nothing right: the run checks the
plumbing (every family reports its metrics, failures are counted, costs are measured, the samples
table is complete) and the suite's grader is checked on hand-written completions. Then the
pipeline step `evaluate_checkpoint` writes its folder whole, or leaves the previous one untouched.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import yaml

from powerflow.config import load_pipeline_config
from powerflow.config.parse import section_from_dict
from powerflow.errors import UserError
from powerflow.eval.config import EvalConfig
from powerflow.eval.evaluate import evaluate_model
from powerflow.eval.grading import NO_ANSWER
from powerflow.eval.suite import eval_suite
from powerflow.pipeline.evaluate import evaluate_checkpoint
from powerflow.pipeline.loading import load_causal_lm, load_tokenizer
from tests.data.benchmark_files import (
    coverageqa_release,
    gpqa_records,
    math500_records,
    mmlu_pro_records,
    write_coverageqa_json,
    write_creative_json,
    write_records,
)
from tests.model.test_judge_local import tiny_judge_directory

ROOT = Path(__file__).resolve().parents[2]
N_SAMPLES = 4
MAX_PROMPTS = 3
N_EXAMPLES = 2  # sampled rows kept per prompt in the samples table (fewer than N_SAMPLES: the cut shows)
REASONING = ("math500", "gpqa_diamond", "mmlu_pro")
FAMILIES = (*REASONING, "coverageqa", "creative_writing_v3")
# Rows in each file below: gpqa has one more than MAX_PROMPTS so the limit bites; creative has 2
# prompts × (3 + 2 seed modifiers) = 5 rows; CoverageQA's release form has 2 questions.
ROWS_IN_FILE = {"math500": 3, "gpqa_diamond": 4, "mmlu_pro": 3, "coverageqa": 2, "creative_writing_v3": 5}
DIVERSITY_KEYS = ("semantic_diversity", "semantic_diversity_se", "distinct_1", "distinct_2", "distinct_3",
                  "distinct_4", "rouge_l", "self_bleu")


def write_benchmark_files(directory: Path) -> dict[str, str]:
    """One small file per benchmark, each in a different accepted format; benchmark -> path."""
    return {
        "math500": str(write_records(directory / "math500.jsonl", math500_records())),
        "gpqa_diamond": str(write_records(directory / "gpqa_diamond.csv", gpqa_records(ROWS_IN_FILE["gpqa_diamond"]))),
        "mmlu_pro": str(write_records(directory / "mmlu_pro.parquet", mmlu_pro_records())),
        "coverageqa": str(write_coverageqa_json(directory / "CoverageQA.json")),
        "creative_writing_v3": str(write_creative_json(directory / "creative_writing_prompts_v3.json")),
    }


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Run this module's tiny models on one thread, then restore the setting.

    The local judge decodes 400 tokens (judge_from_config's default; evaluate.judge cannot lower
    it) over a long rubric prompt: with intra-op threads on a loaded 2-core machine that took
    17-28 s here instead of about 1 s on one thread.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random 2-layer Llama with the world tokenizer, saved: the judge, the policy and the base."""
    return tiny_judge_directory(tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, str]:
    return write_benchmark_files(tmp_path_factory.mktemp("benchmarks"))


@pytest.fixture(scope="module")
def suite_run(tiny_model_dir, sources):
    """(suite, metrics, samples) of one evaluation of the tiny policy on all five benchmarks.

    The suite stays open for the module, so the grader tests below use its math-verify worker.
    """
    cfg = section_from_dict(EvalConfig, {
        "benchmarks": list(FAMILIES), "sources": sources, "n_samples": N_SAMPLES, "max_new_tokens": 12,
        "max_prompts_per_family": MAX_PROMPTS, "n_examples": N_EXAMPLES, "embedder": "all-MiniLM-L6-v2",
        "judge": str(tiny_model_dir),
    }, "evaluate")
    tokenizer = load_tokenizer(str(tiny_model_dir))
    model = load_causal_lm(str(tiny_model_dir))
    with eval_suite(cfg, None) as suite:
        metrics, samples = evaluate_model(model, tokenizer, suite.rows, suite.grade, cfg, progress=False,
                                          scoring=suite.scoring)
        yield suite, metrics, samples


# ------------------------------------------------------------------------------ the suite run
def test_the_suite_loads_every_benchmark_with_its_kind(suite_run):
    suite, _, _ = suite_run
    assert suite.answer_kinds == {"math500": "math", "gpqa_diamond": "multiple_choice_4",
                                  "mmlu_pro": "multiple_choice", "coverageqa": "open_qa",
                                  "creative_writing_v3": "none"}
    assert suite.benchmarks == {f: f for f in suite.answer_kinds}
    assert dict(suite.scoring.kinds) == {"math500": "reasoning", "gpqa_diamond": "reasoning",
                                         "mmlu_pro": "reasoning", "coverageqa": "open_ended",
                                         "creative_writing_v3": "creative"}
    assert suite.scoring.embedder is not None and suite.scoring.judge is not None


def test_reasoning_families_report_accuracy_pass_and_majority_at_k(suite_run):
    _, metrics, _ = suite_run
    for family in REASONING:
        keys = ["accuracy_greedy", "accuracy_mean", "accuracy_mean_se", "validity", "extraction_failures"]
        keys += [f"{m}@{k}" for m in ("pass", "maj") for k in (1, 2, 4)]
        missing = [k for k in keys if f"{family}/{k}" not in metrics]
        assert not missing, f"{family} lacks {missing}"
        assert metrics[f"{family}/extraction_failures"] == pytest.approx(1.0 - metrics[f"{family}/validity"])
        assert not any(f"{family}/{k}" in metrics for k in ("coverage", "quality", "semantic_diversity"))
    breakdowns = {
        "math500": ["by_subject/prealgebra", "by_subject/algebra", "by_level/1", "by_level/2", "by_level/5"],
        "mmlu_pro": ["by_category/math", "by_category/law"],
        "gpqa_diamond": [k.split("/", 1)[1].rsplit("/", 1)[0] for k in metrics
                         if k.startswith("gpqa_diamond/by_domain/") and k.endswith("/accuracy_mean")] or ["by_domain/?"],
    }
    for family, groups in breakdowns.items():
        for group in groups:
            assert 0.0 <= metrics[f"{family}/{group}/accuracy_mean"] <= 1.0
    assert metrics["math500/by_subject/algebra/n_prompts"] == 2  # two of the three rows are Algebra
    assert metrics["mmlu_pro/by_category/law/n_prompts"] == 2


def test_nothing_extracted_scores_zero(suite_run):
    """An answer that is not extracted is wrong, never a guess (the world vocabulary has no capital
    letter A-J, no "is" and no "answer:" without a space, so no option letter can come out)."""
    _, metrics, samples = suite_run
    for family in ("gpqa_diamond", "mmlu_pro"):
        assert metrics[f"{family}/validity"] == 0.0 and metrics[f"{family}/extraction_failures"] == 1.0
    for family in REASONING:
        accuracies = [v for k, v in metrics.items() if k.startswith(f"{family}/")
                      and k.rsplit("/", 1)[-1] in ("accuracy_greedy", "accuracy_mean", "pass@1", "pass@2", "pass@4",
                                                   "maj@1", "maj@2", "maj@4")]
        breakdowns = [k for k in metrics if k.startswith(f"{family}/by_") and k.endswith("/accuracy_mean")]
        assert len(accuracies) == 8 + len(breakdowns) and (breakdowns or family not in ("math500", "mmlu_pro"))
        if metrics[f"{family}/validity"] == 0.0:
            assert accuracies == [0.0] * len(accuracies), family
        assert metrics[f"{family}/accuracy_mean"] <= metrics[f"{family}/validity"]
    graded = [s for s in samples if s["family"] in REASONING]
    assert graded and all(s["valid"] or (not s["correct"] and s["extracted"] is None) for s in graded)


def test_open_ended_family_reports_validity_coverage_kl_and_diversity(suite_run):
    _, metrics, _ = suite_run
    keys = ["validity", "validity_se", "coverage", "coverage_se", "kl_uniform", "quality", "quality_se",
            *DIVERSITY_KEYS]
    missing = [k for k in keys if f"coverageqa/{k}" not in metrics]
    assert not missing, f"coverageqa lacks {missing}"
    assert metrics["coverageqa/quality"] == metrics["coverageqa/validity"]  # a keyed family's quality
    assert 0.0 <= metrics["coverageqa/coverage"] <= 1.0
    if metrics["coverageqa/validity"] == 0.0:  # no valid answer: no distribution to compare with uniform
        assert metrics["coverageqa/coverage"] == 0.0 and math.isnan(metrics["coverageqa/kl_uniform"])
    assert "coverageqa/accuracy_mean" not in metrics and "coverageqa/pass@1" not in metrics


def test_creative_family_reports_diversity_and_counts_judge_failures(suite_run):
    """The random judge writes gibberish: every judgement fails to parse, so quality is missing (NaN)."""
    _, metrics, _ = suite_run
    missing = [k for k in DIVERSITY_KEYS if f"creative_writing_v3/{k}" not in metrics]
    assert not missing, f"creative_writing_v3 lacks {missing}"
    assert metrics["creative_writing_v3/judge_failures"] == 1.0
    assert math.isnan(metrics["creative_writing_v3/quality"]) and math.isnan(metrics["creative_writing_v3/quality_se"])
    assert "creative_writing_v3/validity" not in metrics and "creative_writing_v3/accuracy_mean" not in metrics


def test_diversity_metrics_are_in_range(suite_run):
    _, metrics, _ = suite_run
    for family in ("coverageqa", "creative_writing_v3"):
        for key in ("distinct_1", "distinct_2", "distinct_3", "distinct_4", "rouge_l", "self_bleu"):
            assert 0.0 <= metrics[f"{family}/{key}"] <= 1.0, (family, key)
        # four random 12-token completions are never the same text: their embeddings differ
        assert 0.0 < metrics[f"{family}/semantic_diversity"] < 2.0
        assert math.isfinite(metrics[f"{family}/semantic_diversity_se"])


def test_prompt_counts_and_costs_per_family(suite_run):
    _, metrics, _ = suite_run
    assert metrics["eval/n_samples"] == N_SAMPLES
    for family in FAMILIES:
        assert metrics[f"eval/n_prompts/{family}"] == min(MAX_PROMPTS, ROWS_IN_FILE[family]), family
        assert 0 < metrics[f"{family}/tokens_per_answer"] <= 12  # max_new_tokens bounds a completion
        assert metrics[f"{family}/seconds_per_answer"] > 0
    assert metrics["cost/tokens_per_answer"] > 0 and metrics["cost/seconds_per_answer"] > 0


def test_samples_table_holds_every_family_with_its_prompts(suite_run):
    suite, metrics, samples = suite_run
    assert all(k in s for s in samples for k in ("id", "family", "kind", "index", "completion", "extracted", "valid",
                                                  "correct", "n_tokens", "truncated"))
    for family in FAMILIES:
        prompt_ids = [r["id"] for r in suite.rows if r["family"] == family][:MAX_PROMPTS]
        n = metrics[f"eval/n_prompts/{family}"]
        assert len(prompt_ids) == n
        rows = [s for s in samples if s["family"] == family]
        greedy = [s["id"] for s in rows if s["kind"] == "greedy"]
        sampled = [(s["id"], s["index"]) for s in rows if s["kind"] == "sample"]
        assert greedy == prompt_ids, family
        assert sampled == [(i, j) for i in prompt_ids for j in range(N_EXAMPLES)], family
    creative = [s for s in samples if s["family"] == "creative_writing_v3"]
    assert all(s["valid"] is None and s["correct"] is None for s in creative)  # no key: not graded
    assert {s["id"] for s in samples if s["family"] == "gpqa_diamond"} == {"rec000", "rec001", "rec002"}


# ------------------------------------------------------------------- the grader on known answers
@pytest.mark.parametrize(("family", "gold", "completion", "correct", "extracted"), [
    ("math500", "0.5", "Halving it gives \\boxed{\\frac{1}{2}}.", True, "\\frac{1}{2}"),
    ("math500", "0.5", "So the result is \\boxed{\\frac{1}{3}}.", False, "\\frac{1}{3}"),
    ("mmlu_pro", "C", "The answer is (C).", True, "C"),
    ("mmlu_pro", "C", "Answer: D", False, "D"),
    ("gpqa_diamond", "B", "Weighing the options, the answer is (B)", True, "B"),
    ("coverageqa", [["apple", "malus domestica"], ["pear"]], "The Apple", True, "apple"),
    ("coverageqa", [["apple", "malus domestica"], ["pear"]], "Malus domestica.\nor a pear", True, "apple"),
])
def test_the_suite_grader_dispatches_by_benchmark(suite_run, family, gold, completion, correct, extracted):
    suite, _, _ = suite_run
    grade = suite.grade(family, gold, completion)
    assert (grade.valid, grade.correct, grade.extracted) == (True, correct, extracted)


def test_the_suite_grader_counts_no_answer_as_invalid(suite_run):
    suite, _, _ = suite_run
    assert not suite.grade("math500", "2", "I think it is two").valid
    assert not suite.grade("mmlu_pro", "C", "none of them").valid
    release = next(iter(coverageqa_release().values()))["answers"]
    assert not suite.grade("coverageqa", release, "Atlantis").correct
    assert suite.grade("creative_writing_v3", None, "Once upon a time") == NO_ANSWER  # no key: never graded
    with pytest.raises(ValueError, match="has no answer kind"):
        suite.grade("poetry", None, "Once upon a time")


def test_majority_grouping_uses_math_verify_for_math_only(suite_run):
    suite, _, _ = suite_run
    same = suite.scoring.same_answer
    assert same("math500", "\\frac12", "0.5")
    assert not same("math500", "\\frac12", "0.4")
    assert same("mmlu_pro", "C", "C") and not same("mmlu_pro", "C", "D")
    assert same("coverageqa", "apple", "Apple")  # open answers: equal after normalize_answer
    assert not same("coverageqa", "apple", "pear")


# ------------------------------------------------------------------------------ the pipeline step
def write_project(directory: Path, model_dir: Path, sources: dict[str, str]) -> Path:
    """params.yaml of the repository with the tiny model as base and a small math + CoverageQA eval."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"]["name_or_path"] = str(model_dir)
    params["evaluate"].update({
        "benchmarks": ["math500", "coverageqa"], "sources": sources, "n_samples": N_SAMPLES, "max_new_tokens": 12,
        "max_prompts_per_family": MAX_PROMPTS, "n_examples": 1, "diagnostics_prompts": 2, "diagnostics_samples": 2,
    })
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def evaluated_policy(tmp_path_factory, tiny_model_dir, sources):
    """(cfg, out_dir, metrics) of evaluate_checkpoint on the tiny model as a policy with α = 1.

    Policy = base and α = 1 make the residual log π − α log p_base zero for every completion.
    """
    project = tmp_path_factory.mktemp("project")
    cfg = load_pipeline_config(write_project(project, tiny_model_dir,
                                             {k: sources[k] for k in ("math500", "coverageqa")}))
    out_dir = project / "outputs" / "eval" / "policy"
    metrics = evaluate_checkpoint(cfg, str(tiny_model_dir), out_dir, progress=False, alpha=1.0)
    return cfg, out_dir, metrics


def test_evaluate_checkpoint_writes_metrics_samples_settings_and_plots(evaluated_policy, tiny_model_dir):
    cfg, out_dir, metrics = evaluated_policy
    assert sorted(p.name for p in out_dir.iterdir()) == ["metrics.json", "plots", "samples.jsonl", "settings.json"]
    stored = json.loads((out_dir / "metrics.json").read_text())
    assert stored.keys() == metrics.keys()
    assert stored["eval/n_prompts/math500"] == 3 and stored["eval/n_prompts/coverageqa"] == 2
    assert "math500/pass@4" in stored and "coverageqa/coverage" in stored
    assert stored["diag/residual_var"] == pytest.approx(0.0, abs=1e-9)
    assert stored["diag/length_ratio"] == pytest.approx(1.0)
    assert stored["diag/mean_length"] == stored["diag/mean_length_base"] > 0

    samples = [json.loads(line) for line in (out_dir / "samples.jsonl").read_text().splitlines()]
    assert {s["family"] for s in samples} == {"math500", "coverageqa"}
    assert len(samples) == (3 + 2) * (1 + 1)  # per prompt: the greedy row and n_examples = 1 sampled row

    settings = json.loads((out_dir / "settings.json").read_text())
    assert settings["model_source"] == str(tiny_model_dir) and settings["alpha"] == 1.0
    expected = {"n_samples": N_SAMPLES, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 12, "seed": 0,
                "benchmarks": ["math500", "coverageqa"]}
    assert {k: settings[k] for k in expected} == expected
    assert settings["sources"]["math500"] == cfg.evaluate.sources["math500"]

    plot = out_dir / "plots" / "math500_pass_at_k.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in (out_dir / "plots").iterdir()] == [plot.name]  # CoverageQA has no pass@k
    assert not [p for p in out_dir.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left


@pytest.mark.parametrize("breakage", ["missing", "broken"])
def test_a_bad_benchmark_file_fails_with_its_name_and_keeps_the_previous_output(
    evaluated_policy, tiny_model_dir, sources, tmp_path, breakage
):
    _, out_dir, _ = evaluated_policy
    before = snapshot(out_dir)
    bad = tmp_path / "CoverageQA-bad.json"
    if breakage == "broken":
        bad.write_text('{"Name a colour.": {"answers": [["red"], ')  # cut off mid-file
    broken_cfg = load_pipeline_config(write_project(tmp_path / "project", tiny_model_dir,
                                                    {"math500": sources["math500"], "coverageqa": str(bad)}))
    with pytest.raises(UserError, match="CoverageQA-bad.json"):
        evaluate_checkpoint(broken_cfg, str(tiny_model_dir), out_dir, progress=False, alpha=1.0)
    assert snapshot(out_dir) == before
    assert not [p for p in out_dir.parent.iterdir() if p.name.startswith(".")]


def test_a_failure_after_generation_keeps_the_previous_output(evaluated_policy, tiny_model_dir, sources, tmp_path):
    """The base model for the diagnostics is missing: the evaluation itself has run, nothing is written."""
    _, out_dir, _ = evaluated_policy
    before = snapshot(out_dir)
    missing_base = tmp_path / "no-such-base-model"
    cfg = load_pipeline_config(write_project(tmp_path / "project", missing_base,
                                             {k: sources[k] for k in ("math500", "coverageqa")}))
    # no judge: params.yaml's judge is the base model, which would be found missing before generation
    cfg = dataclasses.replace(cfg, evaluate=dataclasses.replace(cfg.evaluate, judge=None))
    with pytest.raises(UserError, match="no-such-base-model") as failure:
        evaluate_checkpoint(cfg, str(tiny_model_dir), out_dir, progress=False, alpha=1.0)
    assert any(entry.name == "policy_diagnostics_of" for entry in failure.traceback)  # after the evaluation
    assert snapshot(out_dir) == before
    assert not [p for p in out_dir.parent.iterdir() if p.name.startswith(".")]
