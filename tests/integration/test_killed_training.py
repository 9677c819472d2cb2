"""A `powerflow train` process killed mid-run resumes from its last checkpoint and ends where an
uninterrupted run with the same seed ends: same weights, same curves, one MLflow run.

Two identical tiny projects (one prepared and pretrained, then copied): in one, the train command
is SIGKILLed (its whole process group) once a checkpoint is on disk, then run again; in the other,
it runs once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import mlflow
import pytest
from mlflow import MlflowClient
from safetensors.torch import load_file

from benchmarks.pipeline_project import BIN, env_for, prepared_project, run

pytestmark = pytest.mark.slow

STEPS, SAVE_STEPS = 16, 3
NAME = "alpha-2.0-la_tb-s0"
TRAIN = ["powerflow", "train", "--alpha", "2.0", "--objective", "la_tb"]


def kill_after_first_checkpoint(project, timeout_s=600):
    """Start the train command in its own process group; SIGKILL the group once a whole checkpoint exists."""
    log = open(project / "killed-train.log", "wb")
    proc = subprocess.Popen([str(BIN / TRAIN[0]), *TRAIN[1:]], cwd=project, env=env_for(project), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    workdir = project / "runs" / "train" / NAME
    deadline = time.monotonic() + timeout_s
    try:
        while not list(workdir.glob("checkpoint-*/trainer_state.json")):
            assert proc.poll() is None, (project / "killed-train.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def weights(path):
    return load_file(path / "model.safetensors") | {f"logz.{k}": v for k, v in
                                                     load_file(path / "logz_head.safetensors").items()}


def test_killed_training_resumes_to_the_parameters_of_an_uninterrupted_run(tmp_path):
    killed = prepared_project(tmp_path / "killed", steps=STEPS, save_steps=SAVE_STEPS)
    clean = tmp_path / "clean"
    shutil.copytree(killed, clean)

    status = kill_after_first_checkpoint(killed)
    assert status == -signal.SIGKILL
    assert not (killed / "models" / "policies" / NAME).exists()  # killed before the end
    first_run = json.loads((killed / "outputs" / "train" / NAME / "run.json").read_text())["run_id"]

    rerun = run(TRAIN, killed)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summary = json.loads((killed / "outputs" / "train" / NAME / "metrics.json").read_text())
    assert summary["train/resumed"] is True
    assert 0 < summary["train/resumed_from_step"] < STEPS
    assert summary["train/resumed_from_step"] % SAVE_STEPS == 0
    assert summary["train/steps"] == STEPS
    assert not (killed / "runs" / "train" / NAME).exists()  # closed: the checkpoints are gone

    uninterrupted = run(TRAIN, clean)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]
    assert json.loads((clean / "outputs" / "train" / NAME / "metrics.json").read_text())["train/resumed"] is False

    resumed_w, clean_w = weights(killed / "models" / "policies" / NAME), weights(clean / "models" / "policies" / NAME)
    assert resumed_w.keys() == clean_w.keys()
    for key in clean_w:
        assert (resumed_w[key] - clean_w[key]).abs().max().item() <= 1e-6, key
    # the curves hold every step, the ones before the kill included, with the same values
    resumed_h = (killed / "outputs" / "train" / NAME / "history.csv").read_text().splitlines()
    clean_h = (clean / "outputs" / "train" / NAME / "history.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in resumed_h[1:]] == [str(s) for s in range(1, STEPS + 1)]
    assert resumed_h == clean_h

    # the rerun logged into the run the killed process opened: one run, each step's loss once
    mlflow.set_tracking_uri(f"sqlite:///{killed / 'mlflow.db'}")
    try:
        client = MlflowClient()
        experiment = client.get_experiment_by_name("powerflow")
        runs = [r for r in client.search_runs([experiment.experiment_id]) if r.info.run_name == NAME]
        assert [r.info.run_id for r in runs] == [first_run]
        steps = sorted(m.step for m in client.get_metric_history(first_run, "train/loss"))
        assert steps == list(range(1, STEPS + 1))
        assert runs[0].data.metrics["train/resumed_from_step"] == summary["train/resumed_from_step"]
    finally:
        mlflow.set_tracking_uri(None)
