"""Parameter presets (powerflow/presets/*.yaml): each merges over the repository's params.yaml
and validates, offline; the GPU presets ask for the settings that fit them on one 80 GB GPU; a
preset that does not validate leaves params.yaml byte for byte as it was."""

import shutil
import socket
from pathlib import Path

import pytest
import yaml

from powerflow.config import ConfigError, load_pipeline_config
from powerflow.presets import (UnknownPresetError, apply_preset, get_preset, merge_overlay, merged_params_text,
                               preset_names)

ROOT = Path(__file__).resolve().parents[2]
SINGLE_GPU = ["qwen2.5-math-7b-alpha4", "llama-3.1-8b-instruct-alpha2-reasoning",
              "llama-3.1-8b-instruct-alpha0.5-creative"]


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt fails the test: validating a preset must not reach a hub."""
    def refuse(*args, **kwargs):
        raise AssertionError("a preset's validation tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def project(tmp_path):
    """A project folder with the repository's params.yaml and accelerate configs."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(ROOT / "infra" / "accelerate", tmp_path / "infra" / "accelerate")
    return tmp_path


def test_the_seed_presets_are_shipped():
    assert set(SINGLE_GPU + ["qwen2.5-math-7b-alpha4-8gpu"]) <= set(preset_names())
    assert all(get_preset(name).description for name in preset_names())


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_validates_over_the_repository_params(project, no_network, name):
    params = project / "params.yaml"
    apply_preset(name, params)
    cfg = load_pipeline_config(params)
    overlay = yaml.safe_load(get_preset(name).text)
    assert cfg.model.name_or_path == overlay["model"]["name_or_path"]
    assert list(cfg.sweep.alphas) == overlay["sweep"]["alphas"]
    assert cfg.data.source == overlay["data"]["source"]
    assert cfg.world == load_pipeline_config(ROOT / "params.yaml").world  # sections it does not name are kept


@pytest.mark.parametrize("name", SINGLE_GPU)
def test_7b_and_8b_presets_train_bf16_lora_with_colocated_vllm_on_one_gpu(project, name):
    params = project / "params.yaml"
    apply_preset(name, params)
    cfg = load_pipeline_config(params)
    t = cfg.train
    assert t.bf16 and t.gradient_checkpointing and t.lora_r > 0
    assert t.use_vllm and t.vllm_mode == "colocate" and 0 < t.vllm_gpu_memory_utilization <= 0.4
    assert t.accelerate_config is None  # one process, one GPU
    assert (t.prompts_per_step * t.num_generations) % t.gradient_accumulation_steps == 0
    assert cfg.evaluate.backend == "vllm" and "world" not in cfg.evaluate.benchmarks
    text = get_preset(name).text
    assert "Memory on one 80 GB GPU" in text and "of 80" in text  # the arithmetic is written down


def test_creative_preset_flattens_with_the_chat_template(project):
    params = project / "params.yaml"
    apply_preset("llama-3.1-8b-instruct-alpha0.5-creative", params)
    cfg = load_pipeline_config(params)
    assert cfg.sweep.alphas == (0.5,)
    assert cfg.data.prompt_format == "chat" and cfg.model.name_or_path == "meta-llama/Llama-3.1-8B-Instruct"
    assert cfg.train.families == ("open_ended",) and cfg.data.default_family == "open_ended"


def test_reasoning_presets_sharpen(project):
    for name, alpha, fmt in [("qwen2.5-math-7b-alpha4", 4.0, "text"),
                             ("llama-3.1-8b-instruct-alpha2-reasoning", 2.0, "chat")]:
        apply_preset(name, project / "params.yaml")
        cfg = load_pipeline_config(project / "params.yaml")
        assert cfg.sweep.alphas == (alpha,) and cfg.data.prompt_format == fmt
        assert "math500" in cfg.evaluate.benchmarks


def test_multi_gpu_preset_launches_through_accelerate(project):
    apply_preset("qwen2.5-math-7b-alpha4-8gpu", project / "params.yaml")
    cfg = load_pipeline_config(project / "params.yaml")
    assert cfg.train.accelerate_config == "infra/accelerate/ddp.yaml" and cfg.train.num_processes == 8
    assert (project / cfg.train.accelerate_config).is_file()
    assert cfg.train.use_vllm and cfg.train.bf16


def test_apply_keeps_the_comments_of_params_yaml(project):
    params = project / "params.yaml"
    comments = [line for line in params.read_text().splitlines() if line.lstrip().startswith("#")]
    apply_preset("qwen2.5-math-7b-alpha4", params)
    text = params.read_text()
    assert [line for line in text.splitlines() if line.lstrip().startswith("#")] == comments
    assert "\n  judge: null " in text and "\n  uri: null\n" in text  # nulls stay spelled null


def test_a_preset_that_does_not_validate_leaves_params_untouched(tmp_path):
    """The 8-GPU preset names infra/accelerate/ddp.yaml; in a project without it validation fails."""
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    before = params.read_bytes()
    with pytest.raises(ConfigError, match=r"qwen2.5-math-7b-alpha4-8gpu.*unchanged.*accelerate"):
        apply_preset("qwen2.5-math-7b-alpha4-8gpu", params)
    assert params.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["params.yaml"]  # no temporary file left behind


def test_unknown_preset_lists_the_available_ones(project):
    with pytest.raises(UnknownPresetError) as err:
        apply_preset("qwen-70b", project / "params.yaml")
    assert all(name in str(err.value) for name in preset_names())


def test_malformed_params_file_is_refused(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        merged_params_text("qwen2.5-math-7b-alpha4", params)
    assert params.read_text() == "model: [unclosed\n"


def test_merge_replaces_lists_and_scalars_and_merges_mappings():
    base = {"sweep": {"alphas": [0.5, 1.0], "name": "a"}, "data": {"columns": {"id": "uid"}}, "x": 1}
    overlay = {"sweep": {"alphas": [4.0]}, "data": {"columns": {"prompt": "problem"}}}
    assert merge_overlay(base, overlay) == {
        "sweep": {"alphas": [4.0], "name": "a"}, "data": {"columns": {"id": "uid", "prompt": "problem"}}, "x": 1}
