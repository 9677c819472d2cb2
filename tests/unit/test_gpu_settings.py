"""The `train:` GPU settings (bf16, gradient checkpointing and accumulation, vLLM rollouts):
validated in params.yaml, passed to TRL by `powerflow.config.train.trl_arguments`, refused at train time
with a fix where the machine cannot run them (this one has neither vLLM nor a GPU)."""

import importlib.util
from pathlib import Path

import pytest
import yaml

from benchmarks.pipeline_project import tiny_params
from powerflow.config import load_pipeline_config
from powerflow.config.train import TrainConfig
from powerflow.errors import ConfigError, UserError
from powerflow.config.train import rollout_engine_arguments, trl_arguments
from powerflow.member import Member


def _cfg(tmp_path: Path, **train):
    params = tiny_params()
    if train.get("use_vllm"):
        train.setdefault("base_mix", 0.0)  # the vLLM engine holds only the policy: no base-model rollouts
    params["train"].update(train)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return load_pipeline_config(path)


def _engine(cfg):
    return rollout_engine_arguments(cfg.train, cfg.data.max_prompt_tokens)


def test_defaults_keep_the_cpu_path(tmp_path):
    cfg = _cfg(tmp_path)
    args = trl_arguments(cfg.train, tmp_path / "out", max_prompt_tokens=cfg.data.max_prompt_tokens)
    t = cfg.train
    assert args["bf16"] is False and args["activation_checkpointing"] is False
    assert args["gradient_accumulation_steps"] == 1
    assert args["per_device_train_batch_size"] == t.prompts_per_step * t.num_generations
    assert not [k for k in args if k.startswith(("vllm", "use_vllm"))]


def test_gpu_memory_settings_reach_the_trainer_config(tmp_path):
    from powerflow.trainer import trainer_config

    cfg = _cfg(tmp_path, prompts_per_step=4, num_generations=4, bf16=True, gradient_checkpointing=True,
               gradient_accumulation_steps=4)
    args = trainer_config(cfg.train, Member(4.0, "la_tb", 0), tmp_path / "out")  # the PowerFlowConfig TRL receives
    assert args.bf16 is True and args.gradient_checkpointing is True
    assert args.gradient_accumulation_steps == 4 and args.per_device_train_batch_size == 4
    # one optimizer step still sees prompts_per_step × G completions, generated together
    assert args.generation_batch_size == 16 and args.steps_per_generation == 4


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="checks the machine without vLLM")
@pytest.mark.parametrize("mode", ["colocate", "server"])
def test_use_vllm_without_vllm_is_a_user_error_naming_both_fixes(tmp_path, mode):
    cfg = _cfg(tmp_path, use_vllm=True, vllm_mode=mode)
    with pytest.raises(UserError) as err:
        trl_arguments(cfg.train, tmp_path / "out", max_prompt_tokens=cfg.data.max_prompt_tokens)
    message = str(err.value)
    assert "train.use_vllm=true" in message and "pip install 'powerflow[gpu]'" in message
    assert "set train.use_vllm: false" in message


def test_vllm_arguments_follow_the_mode(tmp_path, monkeypatch):
    """What TRL receives once the machine has vLLM and a GPU (the check itself is tested above)."""
    import powerflow.eval.generation as generation

    monkeypatch.setattr(generation, "require_vllm", lambda setting, fallback: None)
    colocate = _engine(_cfg(tmp_path, use_vllm=True, vllm_gpu_memory_utilization=0.35))
    cfg = _cfg(tmp_path, use_vllm=True)
    assert colocate == {"use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.35,
                        "vllm_max_model_length": cfg.data.max_prompt_tokens + cfg.train.max_completion_length}
    server = _engine(_cfg(tmp_path, use_vllm=True, vllm_mode="server",
                                           vllm_server_base_url="http://10.0.0.5:8000"))
    assert server["vllm_mode"] == "server" and server["vllm_server_base_url"] == "http://10.0.0.5:8000"
    assert "vllm_gpu_memory_utilization" not in server


@pytest.mark.parametrize(("train", "match"), [
    ({"vllm_mode": "remote"}, r"train.vllm_mode='remote'.*colocate.*server"),
    ({"vllm_gpu_memory_utilization": 1.5}, r"train.vllm_gpu_memory_utilization=1.5.*\(0, 1\)"),
    ({"vllm_mode": "server", "vllm_server_base_url": "10.0.0.5:8000"}, r"vllm_server_base_url=.*http://"),
    ({"vllm_server_base_url": "http://10.0.0.5:8000"}, r"vllm_mode is colocate.*vllm_mode: server"),
    ({"prompts_per_step": 3, "num_generations": 4, "gradient_accumulation_steps": 5},
     r"gradient_accumulation_steps=5.*divides.*= 12"),
    ({"gradient_accumulation_steps": 0}, r"gradient_accumulation_steps=0"),
])
def test_bad_gpu_settings_name_the_key_and_the_fix(train, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**train)


def test_params_yaml_types_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="train.bf16 must be true or false"):
        _cfg(tmp_path, bf16="yes")


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="checks the machine without vLLM")
def test_use_vllm_without_vllm_fails_before_accelerate_launches_ranks(tmp_path):
    import shutil

    from powerflow import distributed
    from powerflow.pipeline.train import train_on_ranks

    shutil.copytree(Path(__file__).resolve().parents[2] / "infra" / "accelerate", tmp_path / "infra" / "accelerate")
    cfg = _cfg(tmp_path, use_vllm=True, accelerate_config="infra/accelerate/ddp_cpu.yaml")
    assert distributed.launches(cfg)
    with pytest.raises(UserError, match="train.use_vllm=true needs the gpu extra"):
        train_on_ranks(cfg, ["--alpha", "4.0", "--objective", "la_tb"], tmp_path / "result.json")
