"""A new objective and a new inference-time baseline are one module each (powerflow.registry).

The test writes two modules into a tiny project's plugins/ folder, names them in `plugins:`, lists
their names in sweep.objectives and baselines.inference, and runs the real sweep with `dvc repro
report`: nothing else in the project changes, and both show up trained/evaluated and in the report.
"""

from __future__ import annotations

import json

import pytest
import yaml

from benchmarks.pipeline_project import make_project, run

# TB with the residual halved: the same zero set, so the same fixed point p_base^α.
TOY_OBJECTIVE = '''
from powerflow.exact import power_target
from powerflow.objectives import trajectory_balance_residual


class HalfTrajectoryBalance:
    name = "half_tb"
    summary = "TB with its residual halved (same fixed point)"
    exact_power = True

    def residual(self, log_z, log_pi, log_p_base, length, alpha, psi=None):
        return 0.5 * trajectory_balance_residual(log_z, log_pi, log_p_base, length, alpha, psi)

    def fixed_point(self, log_p_base, length, alpha):
        return power_target(log_p_base, alpha), None


OBJECTIVE = HalfTrajectoryBalance()
'''

# Plain sampling at temperature 1, whatever α: an inference-time method that is not a power at all.
TOY_BASELINE = '''
from powerflow.registry import Baseline
from powerflow.sampling.temperature import low_temperature_sampler


def plain_sampler(cfg, alpha):
    return low_temperature_sampler(1.0, cfg.evaluate.max_new_tokens, cfg.evaluate.batch_size)


BASELINE = Baseline("plain_sampling", "inference", "temperature 1 (no power)", plain_sampler)
'''


@pytest.mark.slow
def test_a_plugin_objective_and_a_plugin_baseline_run_through_the_sweep_and_appear_in_the_report(tmp_path):
    project = make_project(tmp_path / "project", alphas=(2.0,), git=False, overrides={
        "sweep": {"objectives": ["tb", "half_tb"]},
        "baselines": {"train": [], "inference": ["plain_sampling"], "alphas": [2.0]},
    })
    (project / "plugins" / "toy_objective.py").write_text(TOY_OBJECTIVE)
    (project / "plugins" / "toy_baseline.py").write_text(TOY_BASELINE)
    params = yaml.safe_load((project / "params.yaml").read_text())
    (project / "params.yaml").write_text(yaml.safe_dump({"plugins": ["toy_objective", "toy_baseline"], **params},
                                                        sort_keys=False))
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        assert run(cmd, project).returncode == 0

    out = run(["dvc", "repro", "report"], project, timeout=1500)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    trained = json.loads((project / "outputs/train/alpha-2.0-half_tb-s0/metrics.json").read_text())
    assert trained["objective"] == "half_tb" and trained["train/steps"] > 0
    assert json.loads((project / "models/policies/alpha-2.0-half_tb-s0/powerflow_config.json").read_text())[
        "objective"] == "half_tb"
    sampled = json.loads((project / "outputs/eval/plain_sampling-2.0/metrics.json").read_text())
    assert any(k.endswith("/accuracy_mean") for k in sampled)
    report = (project / "outputs/report/report.md").read_text()
    assert "Power-Flow α=2 (half_tb)" in report and "plain_sampling α=2" in report
    registered = json.loads((project / "outputs/register/alpha-2.0-half_tb-s0.json").read_text())
    assert registered["objective"] == "half_tb" and registered["alpha"] == 2.0

    # The plugins are DVC deps: nothing of the sweep is stale after the run, and an edit of a plugin reruns its stages.
    assert dvc_status(project) == {}
    with open(project / "plugins" / "toy_objective.py", "a") as f:
        f.write("\n# an edit of the plugin\n")
    stale = dvc_status(project)
    assert {"train@2.0-half_tb-0", "evaluate@2.0-half_tb-0", "evaluate_method@plain_sampling-2.0",
            "report"} <= set(stale), stale
    assert all({"changed deps": {"plugins": "modified"}} in entries for entries in stale.values()), stale


def dvc_status(project) -> dict:
    out = run(["dvc", "status", "--json", "--with-deps", "report"], project)  # the sweep (verify_exact did not run)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout or "{}")


def test_a_plugin_that_defines_nothing_or_clashes_is_one_clear_error(tmp_path):
    from powerflow.errors import ConfigError
    from powerflow.registry import load_plugins

    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "empty_plugin.py").write_text("X = 1\n")
    (tmp_path / "plugins" / "clashing_plugin.py").write_text(TOY_OBJECTIVE.replace('name = "half_tb"', 'name = "tb"'))
    with pytest.raises(ConfigError, match="defines neither OBJECTIVE nor BASELINE"):
        load_plugins(["empty_plugin"], tmp_path)
    with pytest.raises(ConfigError, match="'tb', a name already taken"):
        load_plugins(["clashing_plugin"], tmp_path)
    with pytest.raises(ConfigError, match=r"cannot be imported .*put no_such_plugin_module.py in .*plugins/"):
        load_plugins(["no_such_plugin_module"], tmp_path)
