"""The tracking server going down during a run: training finishes, nothing is lost.

Step metrics the server does not take are kept in outputs/train/<name>/mlflow_pending.jsonl and
sent when it answers again; closing the run waits up to tracking.outage_wait_s for it, and if it
stays down the command fails naming the files that hold the results, keeping the final checkpoint
so that the rerun trains nothing and logs everything into the same run.

The first tests use an MLflow SQLite store and a loopback port nothing listens on; the slow ones
run `powerflow train` against a real `mlflow server` (powerflow/servers.py) that they stop and restart.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import mlflow
import pytest
import yaml
from mlflow import MlflowClient
from transformers import TrainerControl, TrainerState, TrainingArguments

from benchmarks.pipeline_project import BIN, env_for, prepared_project, run
from powerflow.orchestration import free_port
from powerflow.servers import mlflow_server
from powerflow.tracking import (
    PendingMetrics,
    TrackingConfig,
    connect,
    start_child_run,
    sweep_parent_run,
)
from powerflow.tracking.callback import MlflowStepLogger

NAME = "alpha-2.0-la_tb-s0"
TRAIN = ["powerflow", "train", "--alpha", "2.0", "--objective", "la_tb", "--seed", "0"]
STEPS = 30  # long enough that the server is stopped while the trainer still runs


@pytest.fixture
def store(tmp_path):
    """A fresh SQLite store and one child run in it; the global tracking URI is reset afterwards."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = connect(TrackingConfig(uri=uri), tmp_path)
    run_id = start_child_run(experiment_id, sweep_parent_run(experiment_id, "outage"), NAME, {}, {})
    yield {"uri": uri, "run_id": run_id}
    mlflow.set_tracking_uri(None)


def _losses(run_id, uri=None):
    return sorted((m.step, m.value) for m in MlflowClient(tracking_uri=uri).get_metric_history(run_id, "train/loss"))


def test_step_metrics_wait_on_disk_while_the_store_is_unreachable(store, tmp_path):
    spool = tmp_path / "mlflow_pending.jsonl"
    logger = MlflowStepLogger(store["run_id"], spool=spool, timeout_s=2, retry_interval_s=0)
    args, control = TrainingArguments(output_dir=str(tmp_path / "unused"), report_to=[]), TrainerControl()
    logger.on_train_begin(args, TrainerState(global_step=0), control)

    logger.on_log(args, TrainerState(global_step=1), control, logs={"loss": 1.0})
    mlflow.set_tracking_uri(f"http://127.0.0.1:{free_port()}")  # nothing listens there: the server is down
    for step in (2, 3):
        logger.on_log(args, TrainerState(global_step=step), control, logs={"loss": float(step)})
    assert [e["step"] for e in PendingMetrics(spool).events()] == [2, 3]
    assert logger.unreachable_since is not None

    mlflow.set_tracking_uri(store["uri"])  # back: the next event sends everything that waited
    logger.on_log(args, TrainerState(global_step=4), control, logs={"loss": 4.0})
    assert _losses(store["run_id"]) == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)]
    assert not spool.exists() and logger.unreachable_since is None


def test_a_resumed_trainer_does_not_log_its_steps_twice(store, tmp_path):
    args, control = TrainingArguments(output_dir=str(tmp_path / "unused"), report_to=[]), TrainerControl()
    first = MlflowStepLogger(store["run_id"], spool=tmp_path / "pending.jsonl")
    first.on_train_begin(args, TrainerState(global_step=0), control)
    for step in (1, 2, 3):  # killed after step 3; the last checkpoint was at step 2
        first.on_log(args, TrainerState(global_step=step), control, logs={"loss": float(step)})
    resumed = MlflowStepLogger(store["run_id"], spool=tmp_path / "pending.jsonl")
    resumed.on_train_begin(args, TrainerState(global_step=2), control)
    for step in (3, 4):
        resumed.on_log(args, TrainerState(global_step=step), control, logs={"loss": float(step)})
    assert _losses(store["run_id"]) == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)]


def test_pending_metrics_are_sent_once_each_with_their_last_value(store, tmp_path):
    pending = PendingMetrics(tmp_path / "pending.jsonl")
    pending.append(store["run_id"], {"train/loss": 1.0, "train/reward": -5.0}, step=1, timestamp_ms=1000)
    pending.append(store["run_id"], {"train/loss": 1.5}, step=1, timestamp_ms=2000)  # step 1 trained again
    pending.append(store["run_id"], {"train/loss": 2.0}, step=2, timestamp_ms=3000)
    with open(pending.path, "a") as f:
        f.write('{"run_id": "cut off by a ki')  # the last line of a killed writer
    saved = pending.path.read_text()
    assert pending.send() == 3
    assert not pending.path.exists()
    pending.path.write_text(saved)
    pending.send()  # a second send (a close retried after a partial failure) adds nothing
    assert _losses(store["run_id"]) == [(1, 1.5), (2, 2.0)]
    history = MlflowClient().get_metric_history(store["run_id"], "train/reward")
    assert [(m.step, m.value, m.timestamp) for m in history] == [(1, -5.0, 1000)]


def test_prefect_does_not_retry_a_close_that_already_waited_out_the_outage():
    """close_member_run waits tracking.outage_wait_s itself; its ResultsNotLoggedError must not start
    three more waits (tasks/steps.py retries tracking steps unless the error is a UserError)."""
    from mlflow.exceptions import MlflowException
    from prefect.states import Failed

    from powerflow.pipeline.train import ResultsNotLoggedError
    from tasks.steps import close_training_run, retry_unless_user_error

    assert close_training_run.retries == 3 and close_training_run.retry_condition_fn is retry_unless_user_error
    assert retry_unless_user_error(None, None, Failed(data=ResultsNotLoggedError("server down"))) is False
    assert retry_unless_user_error(None, None, Failed(data=MlflowException("database is locked"))) is True


# ------------------------------------------------------------------------- a real server
@pytest.fixture(scope="module")
def ready_project(tmp_path_factory):
    """A prepared and pretrained tiny project, copied by each test (STEPS steps, one checkpoint per 10)."""
    return prepared_project(tmp_path_factory.mktemp("outage") / "project", steps=STEPS, save_steps=10)


def _copy(project, tmp_path, **tracking):
    path = shutil.copytree(project, tmp_path / "project")
    if tracking:
        params = yaml.safe_load((path / "params.yaml").read_text())
        params["tracking"] = {**params.get("tracking", {}), **tracking}
        (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def _start_training(project, server):
    log = open(project / "train.log", "wb")
    proc = subprocess.Popen([str(BIN / TRAIN[0]), *TRAIN[1:]], cwd=project, stdout=log, stderr=subprocess.STDOUT,
                            env=env_for(project, MLFLOW_TRACKING_URI=server.url), start_new_session=True)
    log.close()
    return proc


def _stop_after_first_step(project, server, proc, timeout_s=600):
    """Wait for the run's first train/loss on the server, then stop the server; returns the run id."""
    run_json = project / "outputs" / "train" / NAME / "run.json"
    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, (project / "train.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no step metrics reached the server"
        if run_json.is_file():
            run_id = json.loads(run_json.read_text())["run_id"]
            if _losses(run_id, server.url):
                server.stop()
                return run_id
        time.sleep(0.05)


def _wait(proc, project, timeout_s=600):
    try:
        proc.wait(timeout=timeout_s)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, (project / "train.log").read_text()


@pytest.mark.slow
def test_training_goes_on_through_an_outage_and_its_metrics_reach_the_server(ready_project, tmp_path):
    project = _copy(ready_project, tmp_path)
    with mlflow_server(tmp_path / "server") as server:
        proc = _start_training(project, server)
        run_id = _stop_after_first_step(project, server, proc)
        pending = project / "outputs" / "train" / NAME / "mlflow_pending.jsonl"
        while not pending.exists() and proc.poll() is None:  # the trainer keeps the next steps on disk
            time.sleep(0.05)
        assert pending.exists(), "training ended before the outage was noticed"
        server.start()
        status, log = _wait(proc, project)
        assert status == 0, log[-3000:]
        assert [step for step, _ in _losses(run_id, server.url)] == list(range(1, STEPS + 1))
        metrics = MlflowClient(tracking_uri=server.url).get_run(run_id).data.metrics
    assert metrics["train/steps"] == STEPS
    assert "did not take the step metrics" in log  # the outage was reported, not hidden
    assert not pending.exists()
    assert not (project / "runs" / "train" / NAME).exists()  # closed: checkpoints cleared


@pytest.mark.slow
def test_results_are_kept_when_the_server_stays_down_and_logged_by_the_rerun(ready_project, tmp_path):
    project = _copy(ready_project, tmp_path, outage_wait_s=3)
    out = project / "outputs" / "train" / NAME
    with mlflow_server(tmp_path / "server") as server:
        proc = _start_training(project, server)
        run_id = _stop_after_first_step(project, server, proc)
        status, log = _wait(proc, project)
        assert status == 2, log[-3000:]
        errors = [line for line in log.splitlines() if line.startswith("powerflow: error:")]
        assert len(errors) == 1 and "Traceback" not in log, log[-3000:]
        for kept in (out / "metrics.json", out / "history.csv", out / "mlflow_pending.jsonl",
                     project / "models" / "policies" / NAME, project / "runs" / "train" / NAME):
            assert str(kept) in errors[0], errors[0]
            assert kept.exists()
        assert " ".join(TRAIN) in errors[0] and "tracking.outage_wait_s=3" in errors[0]
        assert (project / "runs" / "train" / NAME / f"checkpoint-{STEPS}" / "trainer_state.json").is_file()

        server.start()
        rerun = run(TRAIN, project, MLFLOW_TRACKING_URI=server.url)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        summary = json.loads((out / "metrics.json").read_text())
        assert summary["train/resumed_from_step"] == STEPS  # resumed at the end: no step trained again
        client = MlflowClient(tracking_uri=server.url)
        experiment = client.get_experiment_by_name("powerflow")
        runs = [r for r in client.search_runs([experiment.experiment_id]) if r.info.run_name == NAME]
        assert [r.info.run_id for r in runs] == [run_id]  # the same run, not a second one
        assert [step for step, _ in _losses(run_id, server.url)] == list(range(1, STEPS + 1))
        assert client.get_run(run_id).data.metrics["train/steps"] == STEPS
    assert not (out / "mlflow_pending.jsonl").exists()
    assert not (project / "runs" / "train" / NAME).exists()
