"""Config validation: each bad value gives one error naming the field and the fix."""

import math

import pytest

from powerflow.config.parse import section_from_dict
from powerflow.config.sections import ExactCheckConfig, load_exact_config
from powerflow.errors import ConfigError
from powerflow.trainer import PowerFlowConfig


def _cfg(**kw):
    base = dict(output_dir="/tmp/pf-config-test", report_to="none", use_cpu=True, bf16=False)
    base.update(kw)
    return PowerFlowConfig(**base)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": -1.0}, "alpha"),
        ({"alpha": math.nan}, "alpha"),
        ({"alpha": math.inf}, "alpha"),
        ({"epsilon": 1.2}, "epsilon"),
        ({"epsilon": 0.2, "epsilon_high": -0.5}, "epsilon_high"),
        ({"objective": "subtb"}, "objective"),
        ({"logz": "table"}, "logz"),
        ({"temperature": 0.7}, "temperature"),
        ({"top_p": 0.9}, "top_p"),
        ({"top_k": 50}, "top_k"),
        ({"beta": 0.04}, "beta"),
        ({"mask_truncated_completions": True}, "mask_truncated_completions"),
        ({"logz": "group", "num_generations": 1, "per_device_train_batch_size": 1}, "num_generations"),
        ({"format_pattern": "(unclosed"}, "format_pattern"),
    ],
)
def test_power_flow_config_refuses(kwargs, field):
    with pytest.raises(ValueError, match=field) as err:
        _cfg(**kwargs)
    assert "set" in str(err.value) or "use" in str(err.value) or "fix" in str(err.value)


def test_train_section_and_trainer_config_share_one_definition_of_the_power_flow_settings():
    """params.yaml's `train:` and the trainer's config inherit PowerFlowArguments: same fields, same
    defaults, same checks (an error names the key as each spells it)."""
    from powerflow.arguments import POWER_FLOW_FIELDS, PowerFlowArguments
    from powerflow.config.train import TrainConfig

    trainer, train, shared = _cfg(), TrainConfig(), PowerFlowArguments()
    assert set(POWER_FLOW_FIELDS) >= {"logz", "logz_learning_rate", "base_mix", "huber_delta", "format_pattern"}
    for name in POWER_FLOW_FIELDS:
        assert getattr(trainer, name) == getattr(train, name) == getattr(shared, name), name
    with pytest.raises(ConfigError, match=r"^train\.base_mix=1\.5"):
        TrainConfig(base_mix=1.5)
    with pytest.raises(ConfigError, match=r"^PowerFlowConfig\.base_mix=1\.5"):
        _cfg(base_mix=1.5)


def test_power_flow_config_defaults():
    cfg = _cfg()
    assert (cfg.alpha, cfg.objective, cfg.logz, cfg.temperature, cfg.beta) == (4.0, "tb", "head", 1.0, 0.0)
    assert cfg.mask_truncated_completions is False


def test_params_section_refuses_unknown_keys_and_bad_types():
    with pytest.raises(ConfigError, match=r"exact\.alpah"):
        section_from_dict(ExactCheckConfig, {"alpah": [2.0]}, "exact")
    with pytest.raises(ConfigError, match=r"exact\.alphas must be a list"):
        section_from_dict(ExactCheckConfig, {"alphas": 2.0}, "exact")
    with pytest.raises(ConfigError, match=r"exact\.alphas contains -1"):
        section_from_dict(ExactCheckConfig, {"alphas": [2.0, -1]}, "exact")
    with pytest.raises(ConfigError, match=r"exact\.steps must be an integer"):
        section_from_dict(ExactCheckConfig, {"steps": "many"}, "exact")
    cfg = section_from_dict(ExactCheckConfig, {"alphas": [1, 3]}, "exact")
    assert cfg.alphas == (1.0, 3.0)


def test_params_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_exact_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("exact: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_exact_config(bad)
    other = tmp_path / "other.yaml"
    other.write_text("train: {}\n")
    with pytest.raises(ConfigError, match="no `exact:` section"):
        load_exact_config(other)


def test_repository_params_file_loads():
    from pathlib import Path

    cfg = load_exact_config(Path(__file__).resolve().parents[2] / "params.yaml")
    assert cfg.alphas and all(a > 0 for a in cfg.alphas)


# ------------------------------------------------------------------------- pipeline sections
def _pipeline_params(tmp_path, edit=None):
    from pathlib import Path

    import yaml

    params = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text())
    if edit:
        edit(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_repository_params_load_as_a_pipeline_config(tmp_path):
    from powerflow.config import load_pipeline_config

    cfg = load_pipeline_config(_pipeline_params(tmp_path))
    assert cfg.project_root == tmp_path.resolve()
    assert 1.0 in cfg.sweep.alphas and all(a > 0 for a in cfg.sweep.alphas)
    assert cfg.model.is_world and cfg.data.source == "world"


@pytest.mark.parametrize("edit, message", [
    (lambda p: p.pop("sweep"), r"no `sweep:` section"),
    (lambda p: p["sweep"].pop("objectives"), r"sweep\.objectives"),
    (lambda p: p["sweep"].update(alphas=[2.0, 0]), r"sweep\.alphas: α = 0\.0 is not allowed"),
    (lambda p: p["sweep"].update(alphas=[2.0, 2.0]), r"repeats"),
    (lambda p: p["sweep"].update(objectives=["dpo"]), r"sweep\.objectives contains 'dpo'"),
    (lambda p: p["sweep"].update(seeds=[]), r"sweep\.seeds is empty: list at least one training seed"),
    (lambda p: p["sweep"].update(seeds=[0, 1, 0]), r"sweep\.seeds \[0, 1, 0\] repeats a value: list each seed once"),
    (lambda p: p["sweep"].update(seeds=[0, -1]), r"sweep\.seeds contains -1: every seed must be an integer >= 0"),
    (lambda p: p["sweep"].update(seeds=[0, 1.5]), r"sweep\.seeds\[1\] must be an integer"),
    (lambda p: p["sweep"].update(seeds=[True]), r"sweep\.seeds\[0\] must be an integer"),
    (lambda p: p["sweep"].update(seeds=3), r"sweep\.seeds must be a list"),
    (lambda p: p["train"].update(num_generations=1), r"train\.num_generations"),
    (lambda p: p["train"].update(lr=1), r"train\.lr"),
    (lambda p: p.update(trian={}), r"unknown section\(s\) trian"),
    (lambda p: p["model"].update(trust_remote_code="yes"), r"model\.trust_remote_code must be true or false"),
])
def test_pipeline_params_errors_name_the_key(tmp_path, edit, message):
    from powerflow.config import load_pipeline_config

    with pytest.raises(ConfigError, match=message):
        load_pipeline_config(_pipeline_params(tmp_path, edit))


def test_a_member_is_one_value_named_as_dvc_renders_its_paths():
    from powerflow.errors import UserError
    from powerflow.member import Member

    member = Member(4, "tb", 0)
    assert member.alpha == 4.0 and isinstance(member.alpha, float) and member.label == "4.0"
    assert member.name == "alpha-4.0-tb-s0" and member.group == "alpha-4.0-tb"  # seed 0 is suffixed too
    assert Member.from_name("alpha-0.5-la_tb-s12") == Member(0.5, "la_tb", 12)
    assert Member.from_name(member.name) == member and member.params["alpha"] == 4.0
    assert member.command == "powerflow train --alpha 4.0 --objective tb --seed 0"
    for bad in ("grpo", "alpha-x-tb-s0", "alpha-4.0-tb-0", "mcmc-4.0"):
        assert not Member.is_name(bad)
    for alpha in (0, -1.0, float("nan"), float("inf"), True):
        with pytest.raises(UserError, match="finite number > 0"):
            Member(alpha, "tb", 0)


def test_alphas_written_as_integers_are_refused_since_dvc_would_name_other_folders(tmp_path):
    from powerflow.config import load_pipeline_config

    with pytest.raises(ConfigError, match=r"sweep\.alphas\[1\] = 4: write it as 4\.0"):
        load_pipeline_config(_pipeline_params(tmp_path, lambda p: p["sweep"].update(alphas=[0.5, 4])))


def test_the_sweep_lists_its_members_in_dvc_matrix_order(tmp_path):
    from powerflow.config import load_pipeline_config
    from powerflow.config.sections import SweepConfig
    from powerflow.pipeline.layout import train_command

    assert SweepConfig().seeds == (0,) and SweepConfig().objectives == ("tb",)
    assert train_command("alpha-4.0-la_tb-s2") == "powerflow train --alpha 4.0 --objective la_tb --seed 2"
    cfg = load_pipeline_config(_pipeline_params(tmp_path, lambda p: p["sweep"].update(
        alphas=[0.5, 4.0], objectives=["la_tb", "tb"], seeds=[0, 1])))
    members = cfg.sweep.members
    assert [m.name for m in members[:3]] == ["alpha-0.5-la_tb-s0", "alpha-0.5-la_tb-s1", "alpha-0.5-tb-s0"]
    assert len({m.name for m in members}) == len(members) == 8


def test_a_command_names_a_member_of_the_sweep_and_alpha_is_parsed_there(tmp_path):
    from powerflow.config import load_pipeline_config
    from powerflow.errors import UserError
    from powerflow.member import Member

    one = load_pipeline_config(_pipeline_params(tmp_path, lambda p: p["sweep"].update(seeds=[7], objectives=["tb"])))
    assert one.sweep.member("2.0") == Member(2.0, "tb", 7) and one.sweep.member(2, None, "7").seed == 7
    with pytest.raises(UserError, match=r"--alpha 3.0: α = 3 is not in sweep.alphas"):
        one.sweep.member("3.0")
    assert one.sweep.member("3.0", listed=False, seed=3) == Member(3.0, "tb", 3)  # a Prefect run parameter
    for bad in ("0", "-1", "nan", "inf", "four"):
        with pytest.raises(UserError, match="--alpha"):
            one.sweep.member(bad)
    several = load_pipeline_config(_pipeline_params(tmp_path, lambda p: p["sweep"].update(
        seeds=[0, 1, 2], objectives=["la_tb", "tb"])))
    assert several.sweep.member("2.0", "tb", 1).name == "alpha-2.0-tb-s1"
    with pytest.raises(UserError, match=r"--seed is required: sweep\.seeds lists 3 seeds \(0, 1, 2\).*--seed 0"):
        several.sweep.member("2.0", "tb")
    with pytest.raises(UserError, match="--objective is required: sweep.objectives lists 2 objectives"):
        several.sweep.member("2.0", None, 0)
    with pytest.raises(UserError, match=r"--objective exact: not in sweep.objectives"):
        several.sweep.member("2.0", "exact", 0)
    for bad in (-1, "x", "1.5", True):
        with pytest.raises(UserError, match="integer >= 0"):
            several.sweep.member("2.0", "tb", bad)


def test_data_answer_kind_reads_one_kind_or_a_mapping_from_yaml():
    from powerflow.config.parse import section_from_dict
    from powerflow.data.config import DataConfig

    assert section_from_dict(DataConfig, {"answer_kind": "math"}, "data").answer_kind == "math"
    mapping = section_from_dict(DataConfig, {"answer_kind": {"reasoning": "multiple_choice"}}, "data")
    assert mapping.answer_kind == {"reasoning": "multiple_choice"}
    assert section_from_dict(DataConfig, {}, "data").answer_kind is None


def test_the_old_benchmark_name_world_reads_as_prepared_with_a_deprecation_note():
    import warnings

    from powerflow.eval.config import EvalConfig

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = EvalConfig(benchmarks=("world", "math500", "prepared"))
    assert cfg.benchmarks == ("prepared", "math500")
    assert any(issubclass(w.category, DeprecationWarning) and "write 'prepared'" in str(w.message) for w in caught)
    assert EvalConfig().benchmarks == ("prepared",)
