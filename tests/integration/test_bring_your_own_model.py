"""A user's own Hugging Face model and data through `dvc repro report`, as the README's "Bring your
own model" section describes.

The model is built here: a random-init Qwen2ForCausalLM with a BPE tokenizer trained on the test's
own text and a chat template, saved with `save_pretrained` (tests/byo_model.py). Two projects:

- math: a MATH-style prompt table (answers in every shape MATH's take: \\frac, intervals and
  unions, bases with subscripts, tuples, matrices, text, \\sqrt, degrees, percentages) in MATH's
  column names, chat prompts, and a MATH500-format benchmark file; evaluated on the prepared split
  and math500.
- choice and open-ended: an open-ended prompt table (lists of valid answers) and MMLU-Pro, GPQA and
  CoverageQA files.

Each runs Power-Flow, GRPO, EMPO, MCMC, low temperature and verbalized sampling. Every stage must
exit 0 and every run must have numbers in the report's headline table; the world's grader must
never be asked (its integer grader would fail on the first LaTeX answer).
"""

from __future__ import annotations

import json
import re

import pytest

from benchmarks.pipeline_project import make_project, run
from tests.byo_model import (
    gpqa_style_records,
    math500_style_records,
    math_prompt_records,
    mmlu_pro_style_records,
    open_ended_records,
    save_hub_style_model,
)
from tests.data.benchmark_files import write_coverageqa_json, write_records

pytestmark = pytest.mark.slow

RUNS = ("base", "alpha-2.0-la_tb-s0", "grpo", "empo", "low_temperature-2.0", "mcmc-2.0", "smc-2.0", "verbalized")
SMALL = {
    "sweep": {"alphas": [2.0]},
    "baselines": {"train": ["grpo", "empo"], "inference": ["low_temperature", "mcmc", "smc"], "alphas": [2.0],
                  "smc_particles": 2, "verbalized_k": 2},
    "evaluate": {"n_samples": 2, "max_new_tokens": 12, "max_prompts_per_family": 4, "n_examples": 1,
                 "diagnostics_prompts": 2, "diagnostics_samples": 2},
}


def byo_project(root, data: dict, evaluate: dict, files: dict) -> tuple:
    """A tiny project whose model is a saved Qwen2 directory and whose data are the given files."""
    model_dir = save_hub_style_model(root / "my" / "model")
    overrides = {**SMALL, "model": {"name_or_path": str(model_dir)},
                 "data": {"source": "my/prompts.jsonl", "max_prompt_tokens": 512, "eval_fraction": 0.3, **data},
                 "evaluate": {**SMALL["evaluate"], **evaluate}}
    path = make_project(root / "project", alphas=(2.0,), overrides=overrides)
    for name, records in files.items():  # records, or a writer of the file's release form
        records(path / name) if callable(records) else write_records(path / name, records)
    out = run(["dvc", "repro", "report"], path)
    return path, out


def headline_rows(report: str) -> dict[str, list[str]]:
    """run name -> the cells of its headline-table row."""
    section = report.split("## Headline", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| run ") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells
    return rows


def assert_every_run_has_numbers(path) -> str:
    report = (path / "outputs" / "report" / "report.md").read_text()
    rows = headline_rows(report)
    for name in RUNS:
        assert name in rows, f"{name} missing from the headline:\n{report[:3000]}"
        numbers = [c for c in rows[name][3:] if re.fullmatch(r"-?\d+\.\d+( ± \d+\.\d+)?( \(k=\d+\))?", c)]
        assert len(numbers) >= 3, f"{name} has no numbers in the headline: {rows[name]}"
    assert "embedded world" not in report.split("\n", 1)[0]
    assert "No run has a reasoning accuracy" not in report
    return report


@pytest.fixture(scope="module")
def math_project(tmp_path_factory):
    root = tmp_path_factory.mktemp("byo-math")
    return byo_project(
        root,
        data={"columns": {"id": "unique_id", "prompt": "problem", "answer": "answer"}, "prompt_format": "chat"},
        evaluate={"benchmarks": ["prepared", "math500"], "sources": {"math500": "my/math500.jsonl"}},
        files={"my/prompts.jsonl": math_prompt_records(), "my/math500.jsonl": math500_style_records()},
    )


@pytest.fixture(scope="module")
def choice_project(tmp_path_factory):
    root = tmp_path_factory.mktemp("byo-choice")
    path, out = byo_project(
        root,
        data={"prompt_format": "text"},
        evaluate={"benchmarks": ["prepared", "mmlu_pro", "gpqa_diamond", "coverageqa"],
                  "sources": {"mmlu_pro": "my/mmlu_pro.jsonl", "gpqa_diamond": "my/gpqa.csv",
                              "coverageqa": "my/coverageqa.json"}},
        files={"my/prompts.jsonl": open_ended_records(), "my/mmlu_pro.jsonl": mmlu_pro_style_records(),
               "my/gpqa.csv": gpqa_style_records(), "my/coverageqa.json": write_coverageqa_json},
    )
    return path, out


def test_math_data_on_a_users_model_runs_every_stage(math_project):
    path, out = math_project
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    manifest = json.loads((path / "data" / "prepared" / "manifest.json").read_text())
    assert manifest["answer_kinds"] == {"reasoning": "math"}
    assert manifest["answer_kinds_from"] == "inferred from the source"
    for name in RUNS:
        metrics = json.loads((path / "outputs" / "eval" / name / "metrics.json").read_text())
        assert 0.0 <= metrics["math500/accuracy_mean"] <= 1.0
        assert 0.0 <= metrics["reasoning/no_answer"] <= 1.0
        assert not any(k.startswith("exact/") for k in metrics)  # no oracle off the world
    recipe = json.loads((path / "outputs" / "train" / "grpo" / "recipe.json").read_text())
    assert recipe["answer_kinds"] == {"reasoning": "math"}


def test_math_report_has_numbers_for_every_run(math_project):
    path, out = math_project
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    report = assert_every_run_has_numbers(path)
    assert "math500" in report and "p_base^" not in report


def test_choice_and_open_ended_data_run_every_stage(choice_project):
    path, out = choice_project
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    manifest = json.loads((path / "data" / "prepared" / "manifest.json").read_text())
    assert manifest["answer_kinds"] == {"open_ended": "open_qa"}
    metrics = json.loads((path / "outputs" / "eval" / "grpo" / "metrics.json").read_text())
    for family in ("mmlu_pro", "gpqa_diamond"):
        assert 0.0 <= metrics[f"{family}/accuracy_mean"] <= 1.0
    for family in ("open_ended", "coverageqa"):
        assert 0.0 <= metrics[f"{family}/coverage"] <= 1.0
    report = assert_every_run_has_numbers(path)
    header = next(line for line in report.splitlines() if line.startswith("| run |"))
    blocks = [f for f in ("open_ended", "mmlu_pro", "gpqa_diamond", "coverageqa") if f in header]
    assert sorted(blocks, key=header.index) == ["open_ended", "mmlu_pro", "gpqa_diamond", "coverageqa"]  # as run
    assert "Best reasoning on mmlu_pro" in report  # select_on: the first answer-keyed benchmark that ran


def test_world_kinds_are_refused_for_a_users_data(tmp_path):
    from powerflow.data.answer_kinds import family_answer_kinds
    from powerflow.data.config import DataConfig
    from powerflow.data.schema import to_prompt_schema
    from powerflow.errors import ConfigError

    import pandas as pd

    cfg = DataConfig(source="my/prompts.jsonl", columns={"id": "unique_id", "prompt": "problem"},
                     answer_kind="world_integer")
    prompts, answers = to_prompt_schema(pd.DataFrame(math_prompt_records()), cfg)
    with pytest.raises(ConfigError, match="world's kinds grade only the embedded world"):
        family_answer_kinds(cfg, prompts, answers)
