"""A crash in evaluation registers nothing and sets no alias; a rerun completes.

A tiny one-α project runs `dvc repro report` for real; while its `evaluate@0.5-la_tb-0` stage is
generating, the `powerflow evaluate` process is killed with SIGKILL (no exception handler, no
cleanup code runs). Training has finished by then. Nothing downstream of the evaluation may exist:
no evaluation folder, no registered version, no alias, no eval metrics on the run. The same
command then completes without training again, and registers exactly the evaluated bytes once.
"""

from __future__ import annotations

import json
import signal
import subprocess

import mlflow
import psutil
import pytest
from mlflow import MlflowClient

from benchmarks.pipeline_project import BIN, ONE_MEMBER_OVERRIDES, env_for, make_project, run

pytestmark = pytest.mark.slow

MEMBER = "alpha-0.5-la_tb-s0"
STAGE = "evaluate@0.5-la_tb-0"
MODEL = "powerflow-world"


def evaluate_process(dvc: subprocess.Popen, member: str) -> psutil.Process | None:
    """The `powerflow evaluate --run <member>` process DVC started, if it is running."""
    for child in psutil.Process(dvc.pid).children(recursive=True):
        try:
            cmdline = child.cmdline()
        except psutil.NoSuchProcess:
            continue
        if "evaluate" in cmdline and member in cmdline and any(part.endswith("powerflow") for part in cmdline[:2]):
            return child
    return None


def repro_killing_evaluation(project, member: str, stage: str) -> tuple[int, str, bool]:
    """`dvc repro report`, SIGKILLing the member's evaluation once it prints generation progress.

    Returns (exit status, output, whether the kill happened while the evaluation ran).
    """
    dvc = subprocess.Popen([str(BIN / "dvc"), "repro", "report"], cwd=project, env=env_for(project),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, in_stage, killed = [], False, False
    try:
        for line in dvc.stdout:  # universal newlines: tqdm's \r updates arrive as lines
            lines.append(line)
            in_stage = in_stage or f"Running stage '{stage}'" in line
            if in_stage and not killed and line.lstrip().startswith("generate"):
                process = evaluate_process(dvc, member)
                if process is not None:
                    process.send_signal(signal.SIGKILL)
                    killed = True
        status = dvc.wait(timeout=60)
    finally:
        if dvc.poll() is None:
            dvc.kill()
            dvc.wait()
    return status, "".join(lines), killed


@pytest.fixture()
def one_member(tmp_path):
    """A tiny one-α project (no baselines) and an MlflowClient on its tracking store."""
    project = make_project(tmp_path / "project", alphas=(0.5,), overrides=ONE_MEMBER_OVERRIDES)
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    yield project, MlflowClient()
    mlflow.set_tracking_uri(None)


def member_run(client: MlflowClient, name: str):
    experiment = client.get_experiment_by_name("powerflow")
    (found,) = client.search_runs([experiment.experiment_id], filter_string=f"attributes.run_name = '{name}'")
    return found


def test_killed_evaluation_registers_nothing_and_a_rerun_completes(one_member):
    project, client = one_member
    status, output, killed = repro_killing_evaluation(project, MEMBER, STAGE)
    assert killed, f"the evaluation of {MEMBER} was never seen generating:\n{output[-3000:]}"
    assert status != 0, output[-3000:]
    assert f"failed to reproduce '{STAGE}'" in output, output[-3000:]

    # Training finished and was logged; nothing after the evaluation happened.
    assert (project / "models" / "policies" / MEMBER / "model.safetensors").is_file()
    assert not (project / "outputs" / "eval" / MEMBER).exists()
    assert not (project / "outputs" / "register" / f"{MEMBER}.json").exists()
    assert not (project / "outputs" / "report").exists()
    run_ = member_run(client, MEMBER)
    assert "train/loss" in run_.data.metrics
    assert not [k for k in run_.data.metrics if k.startswith("eval/")]
    assert client.search_model_versions(f"name='{MODEL}'") == []
    assert all(not m.aliases for m in client.search_registered_models())
    # Registering by hand is refused too: there is no evaluation of this checkpoint.
    by_hand = run(["powerflow", "register", "--alpha", "0.5"], project)
    assert by_hand.returncode == 2 and "run the `evaluate` step first" in by_hand.stderr, by_hand.stderr[-2000:]
    assert client.search_model_versions(f"name='{MODEL}'") == []

    rerun = run(["dvc", "repro", "report"], project)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert f"Running stage '{STAGE}'" in rerun.stdout
    assert "Running stage 'train@0.5-la_tb-0'" not in rerun.stdout  # the trained policy was kept

    (version,) = client.search_model_versions(f"name='{MODEL}'")
    assert version.run_id == run_.info.run_id
    settings = json.loads((project / "outputs" / "eval" / MEMBER / "settings.json").read_text())
    assert version.tags["checkpoint_sha256"] == settings["checkpoint_sha256"]  # the evaluated bytes
    metrics = json.loads((project / "outputs" / "eval" / MEMBER / "metrics.json").read_text())
    assert float(version.tags["eval/reasoning/accuracy_mean"]) == pytest.approx(metrics["reasoning/accuracy_mean"])
    assert "eval/reasoning/accuracy_mean" in member_run(client, MEMBER).data.metrics
    aliases = client.get_registered_model(MODEL).aliases
    assert aliases.get("best-reasoning") == aliases.get("default-best-reasoning") == version.version


def test_registering_a_checkpoint_changed_since_its_evaluation_is_refused(one_member):
    """Only the evaluated bytes are registered; unknown runs name the ones there are."""
    project, client = one_member
    assert run(["dvc", "repro", STAGE], project).returncode == 0
    config = project / "models" / "policies" / MEMBER / "powerflow_config.json"
    config.write_text(config.read_text() + "\n")  # the checkpoint is no longer what was evaluated
    out = run(["powerflow", "register", "--alpha", "0.5"], project)
    assert out.returncode == 2 and "is not an evaluation of" in out.stderr and "evaluate it again" in out.stderr, \
        out.stderr[-2000:]
    assert client.search_model_versions(f"name='{MODEL}'") == []
    unknown = run(["powerflow", "evaluate", "--run", "alpha-9.0-la_tb-s0"], project)
    assert unknown.returncode == 2 and MEMBER in unknown.stderr and "holds no trained model" in unknown.stderr, \
        unknown.stderr[-2000:]
    assert not (project / "outputs" / "eval" / "alpha-9.0-la_tb-s0").exists()
