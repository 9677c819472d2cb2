"""`powerflow preset list | show | apply` as a user runs them, in a temporary project."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from powerflow.config import load_pipeline_config
from powerflow.presets import get_preset, preset_names

ROOT = Path(__file__).resolve().parents[2]


def _powerflow(*args, cwd):
    exe = shutil.which("powerflow", path=str(Path(sys.executable).parent)) or "powerflow"
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})


def test_apply_writes_a_valid_params_yaml_in_the_project(tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    out = _powerflow("preset", "apply", "llama-3.1-8b-instruct-alpha0.5-creative", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "wrote params.yaml" in out.stdout
    cfg = load_pipeline_config(tmp_path / "params.yaml")
    assert cfg.model.name_or_path == "meta-llama/Llama-3.1-8B-Instruct" and cfg.sweep.alphas == (0.5,)
    assert cfg.data.prompt_format == "chat" and cfg.train.use_vllm
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_apply_with_params_option_and_list_and_show(tmp_path):
    params = tmp_path / "conf" / "params.yaml"
    params.parent.mkdir()
    shutil.copy(ROOT / "params.yaml", params)
    out = _powerflow("preset", "apply", "qwen2.5-math-7b-alpha4", "--params", str(params), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert yaml.safe_load(params.read_text())["model"]["name_or_path"] == "Qwen/Qwen2.5-Math-7B"
    listing = _powerflow("preset", "list", cwd=tmp_path)
    assert listing.returncode == 0
    assert [line.split()[0] for line in listing.stdout.splitlines()] == preset_names()
    shown = _powerflow("preset", "show", "qwen2.5-math-7b-alpha4", cwd=tmp_path)
    assert shown.returncode == 0 and shown.stdout == get_preset("qwen2.5-math-7b-alpha4").text


def test_unknown_preset_exits_2_with_the_list_and_writes_nothing(tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    before = (tmp_path / "params.yaml").read_bytes()
    out = _powerflow("preset", "apply", "gpt-5", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith("powerflow: error: no preset named 'gpt-5'")
    assert all(name in out.stderr for name in preset_names())
    assert (tmp_path / "params.yaml").read_bytes() == before


def test_a_preset_that_does_not_validate_exits_2_and_leaves_params(tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")  # no infra/accelerate/ here
    before = (tmp_path / "params.yaml").read_bytes()
    out = _powerflow("preset", "apply", "qwen2.5-math-7b-alpha4-8gpu", cwd=tmp_path)
    assert out.returncode == 2 and "unchanged" in out.stderr and "infra/accelerate/ddp.yaml" in out.stderr
    assert (tmp_path / "params.yaml").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_apply_with_model_writes_the_cpu_check_and_prints_each_override(tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "tiny-model").mkdir()
    (tmp_path / "tiny-model" / "config.json").write_text("{}")  # apply checks the folder; dvc repro loads it
    (tmp_path / "math.jsonl").write_text('{"problem": "What is 1+1?"}\n')
    (tmp_path / "math500.jsonl").write_text("{}\n")
    out = _powerflow("preset", "apply", "qwen2.5-math-7b-alpha4", "--model", "tiny-model", "--data", "math.jsonl",
                     "--source", "math500=math500.jsonl", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "wrote params.yaml: preset qwen2.5-math-7b-alpha4 merged over it with the CPU-check overrides" in out.stdout
    for line in ("train.use_vllm", "true -> false", "evaluate.backend", "vllm -> transformers",
                 "data.source", "hf:DigitalLearningGmbH/MATH-lighteval -> math.jsonl",
                 "evaluate.sources.math500", "null -> math500.jsonl", "dvc repro report"):
        assert line in out.stdout, line
    cfg = load_pipeline_config(tmp_path / "params.yaml")
    assert cfg.model.name_or_path == str((tmp_path / "tiny-model").resolve()) and not cfg.train.use_vllm
    assert cfg.data.columns == {"prompt": "problem"} and cfg.evaluate.sources == {"math500": "math500.jsonl"}


def test_cpu_check_with_a_missing_model_exits_2_and_writes_nothing(tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    before = (tmp_path / "params.yaml").read_bytes()
    out = _powerflow("preset", "apply", "qwen2.5-math-7b-alpha4", "--model", "no-such-dir", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith("powerflow: error: --model no-such-dir: no such directory")
    assert len(out.stderr.strip().splitlines()) == 1
    assert (tmp_path / "params.yaml").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_data_and_source_without_model_exit_2(tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    before = (tmp_path / "params.yaml").read_bytes()
    out = _powerflow("preset", "apply", "qwen2.5-math-7b-alpha4", "--source", "math500=m.jsonl", cwd=tmp_path)
    assert out.returncode == 2 and "add --model DIR" in out.stderr
    assert (tmp_path / "params.yaml").read_bytes() == before
