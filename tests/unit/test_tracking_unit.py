"""powerflow.tracking without a tracking store: config, URIs, names, params, prompt handling."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from powerflow.config.parse import section_from_dict
from powerflow.errors import ConfigError
from powerflow.tracking import (
    TrackingConfig,
    flatten_params,
    metric_key,
    registered_model_name,
    resolve_tracking_uri,
)
from powerflow.tracking.store import absolute_sqlite_uri, resolve_artifact_location


@pytest.fixture
def no_env_uri(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def test_config_loads_from_params_section_and_documents_every_field():
    cfg = section_from_dict(TrackingConfig, {"experiment": "sweeps", "timeout_s": 2}, "tracking")
    assert cfg.experiment == "sweeps" and cfg.timeout_s == 2.0 and cfg.uri is None
    assert section_from_dict(TrackingConfig, None, "tracking") == TrackingConfig()
    for f in dataclasses.fields(TrackingConfig):
        assert f.metadata.get("help"), f"tracking.{f.name} has no help text"


@pytest.mark.parametrize(
    "data, key",
    [
        ({"uri": "./mlruns"}, "tracking.uri"),
        ({"uri": "file:///tmp/mlruns"}, "tracking.uri"),
        ({"registered_model": "org/model"}, "tracking.registered_model"),
        ({"timeout_s": 0}, "tracking.timeout_s"),
        ({"experiment": " "}, "tracking.experiment"),
    ],
)
def test_config_rejects_bad_values_naming_the_key(data, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        section_from_dict(TrackingConfig, data, "tracking")


def test_default_uri_is_an_absolute_sqlite_file_in_the_project_root(no_env_uri, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = resolve_tracking_uri(TrackingConfig(), Path("project"))
    assert uri == f"sqlite:///{tmp_path / 'project' / 'mlflow.db'}"
    assert uri.startswith("sqlite:////")


def test_environment_variable_overrides_the_configured_uri(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert resolve_tracking_uri(TrackingConfig(uri="sqlite:///x.db"), tmp_path) == "http://tracking.example:5000"


def test_configured_relative_sqlite_path_is_made_absolute_against_the_root(no_env_uri, tmp_path):
    assert resolve_tracking_uri(TrackingConfig(uri="sqlite:///db/runs.db"), tmp_path) == (
        f"sqlite:///{tmp_path / 'db' / 'runs.db'}"
    )
    assert absolute_sqlite_uri("sqlite:////abs/runs.db", tmp_path) == "sqlite:////abs/runs.db"
    assert absolute_sqlite_uri("postgresql://u@h/db", tmp_path) == "postgresql://u@h/db"


def test_artifact_location_is_absolute_locally_and_left_to_a_server(tmp_path):
    local = "sqlite:////x/mlflow.db"
    assert resolve_artifact_location(TrackingConfig(), local, tmp_path) == str(tmp_path.resolve() / "mlartifacts")
    assert resolve_artifact_location(TrackingConfig(artifact_root="art"), local, tmp_path) == str(
        tmp_path.resolve() / "art"
    )
    assert resolve_artifact_location(TrackingConfig(), "http://h:5000", tmp_path) is None
    s3 = TrackingConfig(artifact_root="s3://bucket/runs")
    assert resolve_artifact_location(s3, "http://h:5000", tmp_path) == "s3://bucket/runs"


def test_flatten_params_uses_dotted_keys_and_yaml_like_values():
    nested = {"train": {"lr": 1, "alphas": (0.5, 2.0), "peft": {"r": 8}, "objective": "la_tb", "bf16": False},
              "seed": None, "empty": {}}
    assert flatten_params(nested) == {
        "train.lr": "1",
        "train.alphas": "[0.5, 2.0]",
        "train.peft.r": "8",
        "train.objective": "la_tb",
        "train.bf16": "false",
        "seed": "null",
    }
    assert flatten_params({"lr": 0.003}, prefix="train") == {"train.lr": "0.003"}


def test_metric_key_spells_out_characters_mlflow_refuses():
    assert metric_key("eval/pass@1") == "eval/pass_at_1"
    assert metric_key("eval/reasoning/accuracy") == "eval/reasoning/accuracy"
    assert metric_key("train/kl(p||q)") == "train/kl_p__q_"


def test_registered_model_name_is_one_per_base_model(tmp_path):
    cfg = TrackingConfig()
    assert registered_model_name(cfg, "Qwen/Qwen2.5-Math-7B") == "powerflow-qwen-qwen2.5-math-7b"
    assert registered_model_name(cfg, str(tmp_path / "world" / "Base Model") + "/") == "powerflow-base-model"
    assert registered_model_name(cfg, "./data/base") == "powerflow-base"
    assert registered_model_name(TrackingConfig(registered_model="mine"), "Qwen/Qwen2.5-Math-7B") == "mine"


def test_import_is_light():
    """Importing the package (as the CLI and config loader do) pulls in neither mlflow nor transformers."""
    code = "import sys, powerflow.tracking; print(sorted(m for m in ('mlflow', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_policy_model_import_registers_no_model_and_reads_prompts():
    import pandas as pd

    from powerflow.tracking.policy_model import prompts_from_input

    # Only MLflow's loader registers the model; checked in a fresh interpreter, since loading a
    # policy earlier in this test session (other tests do) legitimately sets the global.
    code = ("import mlflow.models.model, powerflow.tracking.policy_model; "
            "print(mlflow.models.model.__mlflow_model__ is None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
    assert prompts_from_input(["a b", "c"]) == ["a b", "c"]
    assert prompts_from_input("a") == ["a"]
    assert prompts_from_input(pd.DataFrame({"answer": [1, 2], "prompt": ["a", "b"]})) == ["a", "b"]
    assert prompts_from_input(pd.DataFrame({0: ["a"]})) == ["a"]
    with pytest.raises(ValueError, match="prompt"):
        prompts_from_input(pd.DataFrame({"x": ["a"], "y": ["b"]}))
    with pytest.raises(ValueError, match="prompt"):
        prompts_from_input([1, 2])


@pytest.mark.parametrize("sweep, expected", [
    ("sweep-a", "sweep-a-best-reasoning"),
    ("team sweep 2.1", "team-sweep-2-1-best-reasoning"),
    ("v1", "v1-best-reasoning"),  # never a reserved version alias (v<digits>)
    ("...", "sweep-best-reasoning"),
])
def test_sweep_alias_is_a_valid_mlflow_alias_of_its_sweep(sweep, expected):
    from mlflow.utils.validation import _validate_model_alias_name, _validate_model_alias_name_reserved

    from powerflow.tracking import sweep_alias

    alias = sweep_alias(sweep, "best-reasoning")
    assert alias == expected
    _validate_model_alias_name(alias)  # raises MlflowException on characters MLflow refuses
    _validate_model_alias_name_reserved(alias)


def test_version_tags_carry_every_familys_headline_numbers():
    from powerflow.pipeline.register import evaluation_tags

    metrics = {"reasoning/accuracy_mean": 0.4375, "math500/accuracy_mean": 0.25, "coverageqa/coverage": 0.5,
               "math500/by_subject/algebra/accuracy_mean": 1.0, "exact/target/reasoning/accuracy": 0.9,
               "cost/tokens_per_answer": 12.0, "math500/pass@2": 0.5}
    assert evaluation_tags(metrics) == {"eval/reasoning/accuracy_mean": "0.4375", "eval/math500/accuracy_mean": "0.25",
                                        "eval/coverageqa/coverage": "0.5"}
