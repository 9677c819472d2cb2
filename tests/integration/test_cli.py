"""The `powerflow` console script as a user runs it (a real subprocess of the installed entry point)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _powerflow(*args, cwd=ROOT, timeout=600):
    exe = shutil.which("powerflow", path=str(Path(sys.executable).parent)) or "powerflow"
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "2"})


def test_help_lists_the_commands():
    out = _powerflow("--help")
    assert out.returncode == 0
    assert "verify-exact" in out.stdout


def test_no_command_prints_usage_and_fails():
    out = _powerflow()
    assert out.returncode == 2
    assert "usage" in out.stdout


@pytest.mark.slow
def test_verify_exact_writes_a_report(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("exact:\n  alphas: [2.0]\n  objectives: [tb]\n  steps: 20\n  num_generations: 16\n")
    out_file = tmp_path / "out" / "metrics.json"
    out = _powerflow("verify-exact", "--params", str(params), "--out", str(out_file))
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out_file.read_text())
    (run,) = data["runs"]
    assert run["alpha"] == 2.0 and run["objective"] == "tb" and run["train/steps"] == 20
    assert run["kl/policy_target"] < run["kl/base_target"]  # 20 steps already move toward the target
    assert data["low_temperature"]["kl/low_temperature_power"] > 0.1
    assert "KL(pi||tgt)" in out.stdout


@pytest.mark.parametrize(
    "text, message",
    [
        ("exact:\n  alphas: [0]\n", "every α must be a finite number > 0"),
        ("exact:\n  alphas: [2.0]\n  stepz: 3\n", "unknown key(s) exact.stepz"),
        ("exact: [1, 2\n", "not valid YAML"),
        ("other: {}\n", "no `exact:` section"),
    ],
)
def test_bad_params_give_one_clear_error_and_write_nothing(tmp_path, text, message):
    params = tmp_path / "params.yaml"
    params.write_text(text)
    out_file = tmp_path / "out" / "metrics.json"
    out = _powerflow("verify-exact", "--params", str(params), "--out", str(out_file))
    assert out.returncode == 2
    assert message in out.stderr
    assert out.stderr.count("powerflow: error:") == 1 and "Traceback" not in out.stderr
    assert not out_file.exists() and not out_file.parent.exists()


def test_missing_params_file_names_the_fix(tmp_path):
    out = _powerflow("verify-exact", "--params", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "m.json"))
    assert out.returncode == 2
    assert "not found" in out.stderr and "--params" in out.stderr


def _pipeline_params(tmp_path, **sweep):
    import yaml

    from benchmarks.pipeline_project import tiny_params

    params = tiny_params(alphas=(2.0,), overrides={"sweep": sweep})
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def test_a_member_command_needs_seed_when_the_sweep_has_several(tmp_path):
    params = _pipeline_params(tmp_path, seeds=[0, 1])
    for command in ("train", "register"):
        out = _powerflow(command, "--params", str(params), "--alpha", "2.0", "--orchestrator", "none", cwd=tmp_path)
        assert out.returncode == 2, out.stderr[-2000:]
        assert "--seed is required: sweep.seeds lists 2 seeds (0, 1); pass one of them, e.g. --seed 0" in out.stderr
        assert out.stderr.count("powerflow: error:") == 1 and "Traceback" not in out.stderr
    negative = _powerflow("train", "--params", str(params), "--alpha", "2.0", "--seed", "-1", cwd=tmp_path)
    assert negative.returncode == 2 and "integer >= 0" in negative.stderr, negative.stderr[-2000:]
    assert not (tmp_path / "models").exists() and not (tmp_path / "outputs").exists()
    assert "--seed" in _powerflow("train", "--help").stdout


def test_sweep_refuses_a_bad_seeds_override_before_running_anything(tmp_path):
    params = _pipeline_params(tmp_path)
    before = params.read_text()
    for override, message in [("sweep.seeds=[0,0]", "sweep.seeds [0, 0] repeats a value"),
                              ("sweep.seeds=[]", "sweep.seeds is empty"),
                              ("seeds", "write section.key=value")]:
        out = _powerflow("sweep", "--params", str(params), "--orchestrator", "none", "-S", override, cwd=tmp_path)
        assert out.returncode == 2 and message in out.stderr, out.stderr[-2000:]
    assert params.read_text() == before and not (tmp_path / "mlflow.db").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".params-check-")]
