"""The world-lora preset (issue 20) from the command line, as its header says to run it:
`powerflow preset apply world-lora`, `powerflow train --alpha 4.0`, `powerflow evaluate --run ...`.

The recipe must reach the trainer: the saved policy (adapter merged) differs from the base in its
final norm's gain, the only norm the preset trains, and in the adapted linear layers, while every
other norm gain is the base's bit for bit; the evaluation measures it against the exact p_base^4.
"""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from benchmarks.pipeline_project import prepared_project, run

pytestmark = pytest.mark.slow


def test_world_lora_trains_the_adapter_and_the_final_norm_and_is_evaluated_exactly(tmp_path):
    project = prepared_project(tmp_path / "project", alphas=(4.0,), steps=3, save_steps=3)
    applied = run(["powerflow", "preset", "apply", "world-lora"], project)
    assert applied.returncode == 0, applied.stderr[-3000:]
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["train"]["lora_modules_to_save"] == ["model.norm"] and params["train"]["steps"] == 3
    params["sweep"]["alphas"] = [4.0]
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    trained = run(["powerflow", "train", "--alpha", "4.0"], project)
    assert trained.returncode == 0, trained.stderr[-3000:]
    name = "alpha-4.0-tb-s0"
    policy = load_file(project / "models" / "policies" / name / "model.safetensors")
    base = load_file(project / "models" / "base" / "model.safetensors")
    assert set(policy) == set(base)  # merged: the checkpoint names of the base, no adapter tensors
    norms = [k for k in base if k.endswith("norm.weight")]
    moved = [k for k in norms if not torch.equal(policy[k], base[k])]
    assert moved == ["model.norm.weight"]
    assert any(not torch.equal(policy[k], base[k]) for k in base if k.endswith("q_proj.weight"))
    config = json.loads((project / "models" / "policies" / name / "powerflow_config.json").read_text())
    assert config["lr_multipliers"] == {"modules_to_save": 30.0} and config["alpha"] == 4.0

    evaluated = run(["powerflow", "evaluate", "--run", name], project)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    metrics = json.loads((project / "outputs" / "eval" / name / "metrics.json").read_text())
    assert 0.0 < metrics["exact/target/reasoning/accuracy"] < 1.0
    assert metrics["exact/policy/reasoning/kl_target"] >= 0.0
