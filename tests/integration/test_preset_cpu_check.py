"""The CPU check of every shipped preset, as a user runs it before renting a GPU.

For each preset, in a tiny git + DVC project (benchmarks/pipeline_project.py) with the repository's
accelerate configs: a small local model with a chat template (tests/byo_model.py), a prompt file
in the preset's own source columns and a local file for each benchmark the preset evaluates;
then `powerflow preset apply NAME --model DIR --data FILE --source BENCHMARK=FILE ...` and
`dvc repro report`, which must run every stage of the preset's configuration to the report.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from benchmarks.pipeline_project import ROOT, make_project, run
from powerflow.presets import get_preset, hub_preset_names
from tests.byo_model import math_prompt_records, save_hub_style_model
from tests.data.benchmark_files import (gpqa_records, math500_records, mmlu_pro_records, write_coverageqa_json,
                                        write_creative_json, write_records)

pytestmark = pytest.mark.slow

# A local file in each benchmark's published form (the hub's, or the release file's).
BENCHMARK_FILES = {
    "math500": lambda d: write_records(d / "math500.jsonl", math500_records()),
    "gpqa_diamond": lambda d: write_records(d / "gpqa_diamond.csv", gpqa_records()),
    "mmlu_pro": lambda d: write_records(d / "mmlu_pro.parquet", mmlu_pro_records()),
    "creative_writing_v3": lambda d: write_creative_json(d / "creative_writing_prompts_v3.json"),
    "coverageqa": lambda d: write_coverageqa_json(d / "CoverageQA.json"),
}
CHARACTERS = ("knight", "baker", "robot", "child", "crow", "ghost", "pilot", "miner")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The user's files, shared by every preset: the model and one file per benchmark."""
    folder = tmp_path_factory.mktemp("inputs")
    model = save_hub_style_model(folder / "tiny-model")
    sources = {name: write(folder) for name, write in BENCHMARK_FILES.items()}
    return folder, model, sources


def preset_overlay(name: str) -> dict:
    return yaml.safe_load(get_preset(name).text)


def prompt_file(folder: Path, name: str) -> Path:
    """Prompts in the columns the preset's data.columns maps (its hub dataset's): MATH-style problems
    for a reasoning preset, writing prompts (with their stories, as WritingPrompts has) for an
    open-ended one."""
    data = preset_overlay(name)["data"]
    column = data["columns"]["prompt"]
    if data.get("default_family") == "open_ended":
        records = [{column: f"[ WP ] A {who} finds a door in the forest, and behind it story number {i}.",
                    "story": "Once upon a time."} for i, who in enumerate(CHARACTERS * 3)]
    else:
        records = [{column if key == "problem" else key: value for key, value in r.items()}
                   for r in math_prompt_records()]
    missing = [c for c in data["columns"].values() if c not in records[0]]
    assert not missing, f"preset {name}: write its data.columns {missing} into the test's prompt file"
    return write_records(folder / f"{name}-prompts.jsonl", records)


def source_options(name: str, sources: dict[str, Path]) -> list[str]:
    """--source BENCHMARK=FILE for every benchmark the preset evaluates."""
    benchmarks = preset_overlay(name)["evaluate"]["benchmarks"]
    unknown = [b for b in benchmarks if b not in sources]
    assert not unknown, f"preset {name} evaluates {unknown}: add a file for it to BENCHMARK_FILES"
    return [arg for b in benchmarks for arg in ("--source", f"{b}={sources[b]}")]


def failed_stage(output: str) -> str:
    """The stage `dvc repro` names as failed, for the assertion message."""
    found = re.findall(r"failed to reproduce '([^']+)'", output)
    return found[-1] if found else "(no stage named)"


@pytest.mark.parametrize("name", hub_preset_names())
def test_the_cpu_check_of_a_preset_runs_dvc_repro_to_the_report(tmp_path, inputs, name):
    folder, model, sources = inputs
    project = make_project(tmp_path / "project", alphas=(2.0,))
    shutil.copytree(ROOT / "infra" / "accelerate", project / "infra" / "accelerate")  # the 8-GPU preset's config

    applied = run(["powerflow", "preset", "apply", name, "--model", str(model),
                   "--data", str(prompt_file(folder, name)), *source_options(name, sources)], project)
    assert applied.returncode == 0, applied.stderr[-3000:]
    assert "train.use_vllm" in applied.stdout and "note:" not in applied.stdout  # nothing left to fetch

    out = run(["dvc", "repro", "report"], project, timeout=1200)
    output = out.stdout + out.stderr
    assert out.returncode == 0, f"preset {name}: stage {failed_stage(output)} failed:\n{output[-5000:]}"
    assert (project / "outputs" / "report" / "report.md").is_file()

    cfg = preset_overlay(name)
    member = f"alpha-{cfg['sweep']['alphas'][0]}-{cfg['sweep']['objectives'][0]}-s0"
    assert (project / "models" / "policies" / member / "config.json").is_file()
    base = json.loads((project / "outputs" / "eval" / "base" / "metrics.json").read_text())
    assert all(base.get(f"eval/n_prompts/{b}", 0) >= 1 for b in cfg["evaluate"]["benchmarks"]), sorted(base)


def test_a_prompt_file_without_the_presets_columns_fails_in_prepare_as_the_gpu_run_would(tmp_path, inputs):
    """The check keeps the preset's data.columns: a file with `question` where MATH has `problem` stops
    `dvc repro` at `prepare`, with the key and the file's columns, before any training."""
    folder, model, sources = inputs
    project = make_project(tmp_path / "project", alphas=(2.0,))
    renamed = [{"question" if key == "problem" else key: value for key, value in r.items()}
               for r in math_prompt_records()]
    data = write_records(tmp_path / "questions.jsonl", renamed)
    name = "qwen2.5-math-7b-alpha4"
    applied = run(["powerflow", "preset", "apply", name, "--model", str(model), "--data", str(data),
                   *source_options(name, sources)], project)
    assert applied.returncode == 0, applied.stderr[-3000:]
    out = run(["dvc", "repro", "report"], project)
    output = out.stdout + out.stderr
    assert out.returncode != 0 and failed_stage(output) == "prepare", output[-3000:]
    assert "data.columns.prompt='problem' is not a column of" in output and "'question'" in output
    assert not (project / "outputs" / "report" / "report.md").exists()
