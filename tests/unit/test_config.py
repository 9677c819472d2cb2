"""Config validation: each bad value gives one error naming the field and the fix."""

import math

import pytest

from powerflow.config import ConfigError, ExactCheckConfig, load_exact_config, section_from_dict
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


def test_power_flow_config_defaults():
    cfg = _cfg()
    assert (cfg.alpha, cfg.objective, cfg.logz, cfg.temperature, cfg.beta) == (4.0, "la_tb", "head", 1.0, 0.0)
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


def test_alpha_labels_match_what_dvc_renders():
    from powerflow.config import UserError
    from powerflow.pipeline import alpha_label, run_name

    assert alpha_label("4.0") == "4.0" and alpha_label(4) == "4.0" and alpha_label(0.5) == "0.5"
    assert run_name("2.0", "tb", 0) == "alpha-2.0-tb-s0"
    for bad in ("0", "-1", "nan", "inf", "four"):
        with pytest.raises(UserError, match="--alpha"):
            alpha_label(bad)


def test_seeds_default_to_one_and_each_member_is_named_by_alpha_objective_and_seed(tmp_path):
    from powerflow.config import SweepConfig, load_pipeline_config
    from powerflow.pipeline import group_name, run_name, sweep_members, train_command

    assert SweepConfig().seeds == (0,)
    # seed 0 is suffixed too (DVC's matrix paths are one pattern); the CLI's text and DVC's str() agree
    assert run_name("4.0", "la_tb", 0) == run_name(4, "la_tb", "0") == "alpha-4.0-la_tb-s0"
    assert run_name("0.5", "tb", 12) == "alpha-0.5-tb-s12" and group_name(4, "la_tb") == "alpha-4.0-la_tb"
    assert train_command("alpha-4.0-la_tb-s2") == "powerflow train --alpha 4.0 --objective la_tb --seed 2"
    cfg = load_pipeline_config(_pipeline_params(tmp_path, lambda p: p["sweep"].update(
        alphas=[0.5, 4.0], objectives=["la_tb", "tb"], seeds=[0, 1])))
    members = sweep_members(cfg)
    assert members[:3] == [("0.5", "la_tb", 0), ("0.5", "la_tb", 1), ("0.5", "tb", 0)]  # DVC's matrix order
    assert len({run_name(*m) for m in members}) == len(members) == 8


def test_a_member_command_needs_a_seed_only_when_the_sweep_has_several(tmp_path):
    from powerflow.config import UserError, load_pipeline_config
    from powerflow.pipeline import check_seed, member_seed

    one = load_pipeline_config(_pipeline_params(tmp_path, lambda p: p["sweep"].update(seeds=[7])))
    assert member_seed(one, None) == 7 and member_seed(one, "3") == 3
    several = load_pipeline_config(_pipeline_params(tmp_path, lambda p: p["sweep"].update(seeds=[0, 1, 2])))
    assert member_seed(several, 1) == 1
    with pytest.raises(UserError, match=r"--seed is required: sweep\.seeds lists 3 seeds \(0, 1, 2\).*--seed 0"):
        member_seed(several, None)
    for bad in (-1, "x", "1.5", True):
        with pytest.raises(UserError, match="integer >= 0"):
            check_seed(bad)


def test_member_objective_defaults_to_the_only_one_and_is_required_with_several():
    from dataclasses import replace
    from pathlib import Path

    from powerflow.config import UserError, load_pipeline_config
    from powerflow.pipeline import member_objective

    cfg = load_pipeline_config(Path(__file__).resolve().parents[2] / "params.yaml")
    only = cfg.sweep.objectives[0]
    assert member_objective(cfg, None) == only and member_objective(cfg, "la_tb") == "la_tb"
    several = replace(cfg, sweep=replace(cfg.sweep, objectives=("la_tb", "tb")))
    with pytest.raises(UserError, match="--objective is required: sweep.objectives lists la_tb, tb"):
        member_objective(several, None)
    with pytest.raises(UserError, match="--objective 'exact' is unknown"):
        member_objective(cfg, "exact")


def test_data_answer_kind_reads_one_kind_or_a_mapping_from_yaml():
    from powerflow.config import section_from_dict
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
