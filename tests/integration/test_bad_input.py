"""Bad input: one clear error naming the problem and the fix, exit status 2, nothing half-written.

Each case runs the installed `powerflow` command in a fresh tiny project (no git needed).
"""

from __future__ import annotations

import json
import socket

import pytest
import yaml

from benchmarks.pipeline_project import make_project, run, tiny_params


def _project(tmp_path, edit=None):
    path = make_project(tmp_path / "project", git=False)
    if edit is not None:
        params = tiny_params()
        edit(params)
        (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def _assert_one_error(out, *needles):
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-3000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("powerflow: error:")]
    assert len(errors) == 1, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


def _nothing_written(project):
    assert not (project / "data" / "prepared").exists()
    assert not (project / "models").exists()
    assert not (project / "mlflow.db").exists()


def test_missing_params_key(tmp_path):
    project = _project(tmp_path, lambda p: p["sweep"].pop("alphas"))
    out = run(["powerflow", "prepare"], project)
    _assert_one_error(out, "sweep.alphas", "add")
    _nothing_written(project)


def test_malformed_params_value(tmp_path):
    project = _project(tmp_path, lambda p: p["train"].update(steps="many"))
    out = run(["powerflow", "prepare"], project)
    _assert_one_error(out, "train.steps", "integer")
    _nothing_written(project)


def test_malformed_yaml(tmp_path):
    project = _project(tmp_path)
    (project / "params.yaml").write_text("sweep: [unclosed\n")
    out = run(["powerflow", "prepare"], project)
    _assert_one_error(out, "not valid YAML")


@pytest.mark.parametrize("alpha", [0, -1.5])
def test_non_positive_alpha_in_params(tmp_path, alpha):
    project = _project(tmp_path, lambda p: p["sweep"].update(alphas=[0.5, alpha]))
    out = run(["powerflow", "prepare"], project)
    _assert_one_error(out, "sweep.alphas", "> 0")
    _nothing_written(project)


def test_non_positive_alpha_on_the_command_line(tmp_path):
    project = _project(tmp_path)
    out = run(["powerflow", "train", "--alpha", "0", "--objective", "la_tb"], project)
    _assert_one_error(out, "--alpha", "> 0")
    assert not (project / "outputs").exists()


def test_unknown_model(tmp_path):
    project = _project(tmp_path, lambda p: p["model"].update(name_or_path="no-such-org/no-such-model"))
    out = run(["powerflow", "prepare"], project)
    _assert_one_error(out, "no-such-org/no-such-model", "model.name_or_path")
    _nothing_written(project)


def test_empty_prompts_file(tmp_path):
    def edit(p):
        p["data"].update(source="prompts.jsonl")

    project = _project(tmp_path, edit)
    (project / "prompts.jsonl").write_text("")
    out = run(["powerflow", "prepare"], project)
    _assert_one_error(out, "prompts.jsonl")
    _nothing_written(project)


def test_invalid_prompts_file_lists_failing_expectations(tmp_path):
    project = _project(tmp_path, lambda p: p["data"].update(source="prompts.jsonl"))
    rows = [{"id": "a", "prompt": "Q 1 + 2 + 3 =", "family": "reasoning", "split": "train"},
            {"id": "a", "prompt": "", "family": "poetry", "split": "train"}]
    (project / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = run(["powerflow", "prepare"], project)
    _assert_one_error(out, "unique", "family")
    report = [w for w in out.stderr.split() if w.endswith(".json")]
    assert report and (project / report[-1].strip(".,;:()'\"")).is_file() or any(
        (project / "data" / "validation").glob("*.json"))
    _nothing_written(project)


def test_unreachable_tracking_server(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    project = _project(tmp_path, lambda p: p["tracking"].update(uri=uri))
    out = run(["powerflow", "sweep", "--orchestrator", "none"], project, timeout=120)
    _assert_one_error(out, uri)
    _nothing_written(project)
    assert not (project / "outputs" / "eval").exists()


def test_unknown_baseline_method_on_the_command_line(tmp_path):
    project = _project(tmp_path)
    out = run(["powerflow", "train", "--method", "ppo"], project)
    _assert_one_error(out, "--method 'ppo'", "grpo, empo")
    _nothing_written(project)


def test_unknown_baseline_in_params(tmp_path):
    project = _project(tmp_path, lambda p: p["baselines"].update(inference=["mcmc", "beam_search"]))
    out = run(["powerflow", "prepare"], project)
    _assert_one_error(out, "baselines.inference", "beam_search", "low_temperature, mcmc")
    _nothing_written(project)


def _model_project(tmp_path, break_model):
    """A project whose model.name_or_path is a local model directory, broken by `break_model(path)`."""
    from tests.model_dirs import save_world_model

    model = save_world_model(tmp_path / "model")
    break_model(model)
    return _project(tmp_path, lambda p: p["model"].update(name_or_path=str(model))), model


def test_pickle_only_model_is_refused(tmp_path):
    import torch
    from safetensors.torch import load_file

    def to_pickle(model):
        torch.save(load_file(model / "model.safetensors"), model / "pytorch_model.bin")
        (model / "model.safetensors").unlink()

    project, model = _model_project(tmp_path, to_pickle)
    out = run(["powerflow", "pretrain"], project)
    _assert_one_error(out, "pytorch_model.bin", "safetensors only", "save_pretrained")
    _nothing_written(project)


def test_model_asking_for_custom_code_is_refused_unless_trusted(tmp_path):
    def add_auto_map(model):
        config = json.loads((model / "config.json").read_text())
        config["auto_map"] = {"AutoModelForCausalLM": "modeling_custom.CustomModel"}
        (model / "config.json").write_text(json.dumps(config))

    project, _model = _model_project(tmp_path, add_auto_map)
    out = run(["powerflow", "prepare"], project)
    _assert_one_error(out, "modeling_custom.CustomModel", "model.trust_remote_code: true")
    _nothing_written(project)


@pytest.mark.slow
def test_model_with_resized_weights_is_refused_at_evaluation(tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    def resize(model):
        weights = load_file(model / "model.safetensors")
        weights["model.layers.0.mlp.down_proj.weight"] = torch.zeros(33, 64)
        save_file(weights, model / "model.safetensors", metadata={"format": "pt"})

    project, _model = _model_project(tmp_path, resize)
    assert run(["powerflow", "prepare"], project).returncode == 0  # the tokenizer is fine
    out = run(["powerflow", "evaluate", "--run", "base"], project)
    _assert_one_error(out, "model.layers.0.mlp.down_proj.weight", "[33, 64]", "[32, 64]")
    assert not (project / "outputs" / "eval").exists()
    assert not (project / "models").exists()
    assert not (project / "mlflow.db").exists()
