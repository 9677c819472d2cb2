"""Parameter presets (powerflow/presets/*.yaml): each merges over the repository's params.yaml
and validates, offline; the GPU presets ask for the settings that fit them on one 80 GB GPU; a
preset that does not validate leaves params.yaml byte for byte as it was. The CPU check of every
preset (apply_cpu_check, `preset apply NAME --model DIR`) validates with its overrides and keeps
the rest of the preset."""

import shutil
import socket
from pathlib import Path

import pytest
import yaml

from powerflow.config import load_pipeline_config
from powerflow.errors import ConfigError, UserError
from powerflow.presets import (CPU_STEPS, UnknownPresetError, apply_cpu_check, apply_preset, cpu_check_summary,
                               cpu_gradient_accumulation, get_preset, merge_overlay, merged_params_text,
                               hub_preset_names, parse_source_options, preset_names, runs_on_the_world)

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
    assert set(SINGLE_GPU + ["qwen2.5-math-7b-alpha4-8gpu"]) == set(hub_preset_names())
    assert set(preset_names()) == set(hub_preset_names()) | {"world-lora"}
    assert all(get_preset(name).description for name in preset_names())


@pytest.mark.parametrize("name", hub_preset_names())
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
    assert "\n  select_on: null " in text and "\n  uri: null\n" in text  # nulls stay spelled null


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


# ------------------------------------------------------------------------------ the CPU check
def _model_dir(path: Path) -> Path:
    """A folder that passes --model's check (a config.json): the check itself never loads the model."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text("{}")
    return path


def _gpu_form(project: Path, name: str):
    """The preset applied as it is (the GPU run's config), in a copy of `project`."""
    copy = project.parent / f"{project.name}-gpu"
    shutil.copytree(project, copy)
    apply_preset(name, copy / "params.yaml")
    return load_pipeline_config(copy / "params.yaml")


@pytest.mark.parametrize("name", hub_preset_names())
def test_the_cpu_check_of_every_preset_validates_with_the_overrides(project, no_network, name):
    model = _model_dir(project / "tiny-model")
    gpu = _gpu_form(project, name)
    check = apply_cpu_check(name, project / "params.yaml", model)
    cfg = load_pipeline_config(project / "params.yaml")

    assert cfg.model.name_or_path == str(model.resolve())
    t = cfg.train
    assert not t.use_vllm and not t.bf16 and t.accelerate_config is None and t.num_processes is None
    assert cfg.evaluate.backend == "transformers"
    assert t.steps == CPU_STEPS and t.save_steps <= t.steps
    assert t.prompts_per_step * t.num_generations <= 4 and t.max_completion_length <= 16
    completions = t.prompts_per_step * t.num_generations
    assert completions % t.gradient_accumulation_steps == 0
    assert (completions // t.gradient_accumulation_steps) % t.num_generations == 0  # micro-batches of whole groups
    assert (t.gradient_accumulation_steps > 1) == (gpu.train.gradient_accumulation_steps > 1)
    e = cfg.evaluate
    assert e.n_samples == 2 and e.max_new_tokens <= 16 and e.max_prompts_per_family == 2
    assert e.diagnostics_prompts <= 2 and e.diagnostics_samples == 2
    assert cfg.baselines.mcmc_max_new_tokens <= 16 and cfg.baselines.mcmc_blocks <= 2
    assert cfg.baselines.smc_particles == min(gpu.baselines.smc_particles, 2)  # Power-SMC cut short too

    # the preset's own configuration is kept: an error in it still surfaces on the CPU
    assert cfg.sweep == gpu.sweep and cfg.report == gpu.report and cfg.tracking == gpu.tracking
    assert cfg.data == gpu.data  # prompt_format, columns, system prompt, families, source
    assert e.benchmarks == gpu.evaluate.benchmarks and e.sources == gpu.evaluate.sources
    for key in ("logz", "logz_learning_rate", "lora_r", "lora_alpha", "learning_rate", "families", "base_mix",
                "gradient_checkpointing", "huber_delta", "lr_schedule", "vllm_mode"):
        assert getattr(t, key) == getattr(gpu.train, key), key
    assert (cfg.baselines.train, cfg.baselines.inference, cfg.baselines.alphas) == (
        gpu.baselines.train, gpu.baselines.inference, gpu.baselines.alphas)

    changed = {o.key: (o.before, o.after) for o in check.overrides}
    assert changed["model.name_or_path"] == (gpu.model.name_or_path, str(model.resolve()))
    assert changed["train.use_vllm"] == (True, False) and changed["evaluate.backend"] == ("vllm", "transformers")
    summary = cpu_check_summary(name, check)
    assert "train.use_vllm" in summary and "true -> false" in summary and "dvc repro report" in summary


@pytest.mark.parametrize("name", hub_preset_names())
def test_data_and_sources_replace_the_hub_inputs_and_keep_the_column_mapping(project, tmp_path_factory, name):
    gpu = _gpu_form(project, name)
    (project / "prompts.jsonl").write_text('{"problem": "1+1?"}\n')
    outside = tmp_path_factory.mktemp("benchmarks")
    sources = {}
    for benchmark in gpu.evaluate.benchmarks:
        (outside / f"{benchmark}.jsonl").write_text("{}\n")
        sources[benchmark] = str(outside / f"{benchmark}.jsonl")
    check = apply_cpu_check(name, project / "params.yaml", _model_dir(project / "m"), data=str(project / "prompts.jsonl"),
                            sources=sources)
    cfg = load_pipeline_config(project / "params.yaml")
    assert cfg.data.source == "prompts.jsonl"  # inside the project: stored relative to it
    assert cfg.data.columns == gpu.data.columns and cfg.data.hf_split == gpu.data.hf_split
    assert cfg.evaluate.sources == {b: str((outside / f"{b}.jsonl").resolve()) for b in gpu.evaluate.benchmarks}
    assert not check.notes  # nothing is read from the hub any more


def test_the_cpu_check_notes_what_is_still_read_from_the_hub(project):
    check = apply_cpu_check("llama-3.1-8b-instruct-alpha2-reasoning", project / "params.yaml",
                            _model_dir(project / "m"))
    notes = "\n".join(check.notes)
    assert "hf:DigitalLearningGmbH/MATH-lighteval" in notes and "--data FILE" in notes
    assert "--source math500=FILE" in notes and "--source gpqa_diamond=FILE" in notes
    creative = apply_cpu_check("llama-3.1-8b-instruct-alpha0.5-creative", project / "params.yaml",
                               _model_dir(project / "m"))
    assert any("evaluate.sources.coverageqa=data/benchmarks/CoverageQA.json: no such file" in n for n in creative.notes)


def test_cpu_check_keeps_section_headers_above_their_sections(project):
    apply_cpu_check("qwen2.5-math-7b-alpha4", project / "params.yaml", _model_dir(project / "m"))
    lines = (project / "params.yaml").read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("# Baselines on the same model"))
    assert lines[header + 2] == "baselines:"  # evaluate.max_prompts_per_family went into evaluate, above it
    evaluate = lines[lines.index("evaluate:"):header]
    assert "  max_prompts_per_family: 2" in evaluate


def test_cpu_gradient_accumulation_keeps_the_presets_accumulation_path():
    assert cpu_gradient_accumulation(1) == 1
    assert cpu_gradient_accumulation(8) == cpu_gradient_accumulation(16) == 2


def _unchanged_after(project: Path, error, match: str, *args, **kwargs):
    params = project / "params.yaml"
    before = sorted(p.name for p in project.iterdir()), params.read_bytes()
    with pytest.raises(error, match=match):
        apply_cpu_check(*args, **kwargs)
    assert (sorted(p.name for p in project.iterdir()), params.read_bytes()) == before  # no temporary file left


def test_cpu_check_of_an_unknown_preset_is_one_error_and_writes_nothing(project):
    _unchanged_after(project, UnknownPresetError, r"no preset named 'qwen-70b'.*qwen2.5-math-7b-alpha4",
                     "qwen-70b", project / "params.yaml", _model_dir(project / "m"))


def test_cpu_check_with_a_missing_model_directory_is_one_error_and_writes_nothing(project):
    _unchanged_after(project, UserError, r"--model .*no-such-model: no such directory.*save_pretrained",
                     "qwen2.5-math-7b-alpha4", project / "params.yaml", project / "no-such-model")
    (project / "empty").mkdir()
    _unchanged_after(project, UserError, r"--model .*empty.*no config.json",
                     "qwen2.5-math-7b-alpha4", project / "params.yaml", project / "empty")


@pytest.mark.parametrize("data, sources, match", [
    ("missing.jsonl", {}, r"--data missing.jsonl: no such file"),
    ("prompts.txt", {}, r"--data prompts.txt: use a \.jsonl, \.csv, \.parquet file"),
    (None, {"gpqa_diamond": "b.jsonl"}, r"--source gpqa_diamond=.*does not evaluate gpqa_diamond.*math500"),
    (None, {"math500": "missing.jsonl"}, r"--source math500=missing.jsonl: no such file"),
])
def test_cpu_check_refuses_bad_data_and_source_files(project, monkeypatch, data, sources, match):
    monkeypatch.chdir(project)
    (project / "prompts.txt").write_text("x")
    (project / "b.jsonl").write_text("{}\n")
    _unchanged_after(project, UserError, match, "qwen2.5-math-7b-alpha4", project / "params.yaml",
                     _model_dir(project / "m"), data=data, sources=sources)


def test_a_preset_that_does_not_validate_as_it_is_fails_its_cpu_check_too(tmp_path):
    """The GPU run of the 8-GPU preset needs infra/accelerate/ddp.yaml; the CPU check says so, though it
    runs without accelerate."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    _unchanged_after(tmp_path, ConfigError, r"qwen2.5-math-7b-alpha4-8gpu.*unchanged.*accelerate",
                     "qwen2.5-math-7b-alpha4-8gpu", tmp_path / "params.yaml", _model_dir(tmp_path / "m"))


def test_parse_source_options():
    assert parse_source_options(["math500=a.jsonl", " coverageqa = b.json "]) == {"math500": "a.jsonl",
                                                                                 "coverageqa": "b.json"}
    for bad in (["math500"], ["=a.jsonl"], ["math500="], ["math500=a.jsonl", "math500=b.jsonl"]):
        with pytest.raises(UserError, match="--source"):
            parse_source_options(bad)


def test_world_lora_trains_the_norm_gains_beside_the_adapter_on_the_world(project, no_network):
    """The measured LoRA recipe (docs/recipe.md §5) on the embedded world; it needs no CPU check."""
    assert runs_on_the_world("world-lora")
    params = project / "params.yaml"
    repository = load_pipeline_config(params)
    apply_preset("world-lora", params)
    cfg = load_pipeline_config(params)
    t = cfg.train
    assert cfg.model.is_world and cfg.data == repository.data and cfg.world == repository.world
    assert t.lora_r == 8 and t.lora_modules_to_save == ("model.norm",) and t.lr_multipliers == {"modules_to_save": 30.0}
    assert (t.steps, t.num_generations, t.base_mix) == (repository.train.steps, repository.train.num_generations,
                                                        repository.train.base_mix)
    assert cfg.sweep.name == "world-lora" and cfg.sweep.objectives == ("tb",)
    before = params.read_bytes()
    with pytest.raises(UserError, match=r"runs on the embedded world.*without --model"):
        apply_cpu_check("world-lora", params, _model_dir(project / "m"))
    assert params.read_bytes() == before


@pytest.mark.parametrize("name", hub_preset_names())
def test_gpu_presets_use_the_measured_lora_parametrisation(project, name):
    """Every GPU preset trains the norm gains beside its adapter at the measured rate, as world-lora does."""
    params = project / "params.yaml"
    apply_preset(name, params)
    t = load_pipeline_config(params).train
    apply_preset("world-lora", params)
    world = load_pipeline_config(params).train
    assert t.lora_r > 0 and t.lora_modules_to_save == world.lora_modules_to_save
    norm_rate = t.learning_rate * t.lr_multipliers["modules_to_save"]  # the rule written beside it: same norm rate
    assert norm_rate == pytest.approx(world.learning_rate * world.lr_multipliers["modules_to_save"])
    assert "lr_norm = 0.075" in get_preset(name).text
