"""The Prefect path a user takes: a real server and process worker on loopback, `prefect deploy`,
`prefect deployment run ... --watch`, then the MLflow results the run produced.
"""

from __future__ import annotations

import json
import subprocess

import mlflow
import pytest
from mlflow import MlflowClient

from benchmarks.pipeline_project import BIN, env_for, make_project
from powerflow.orchestration import local_prefect_server, stop_process_group

pytestmark = pytest.mark.slow


def _prefect(args, project, env, timeout=600):
    out = subprocess.run([str(BIN / "prefect"), "--no-prompt", *args], cwd=project, env=env, capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, f"prefect {' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def test_alpha_sweep_deployment_runs_on_a_process_worker(tmp_path):
    project = make_project(tmp_path / "project", git=False)
    with local_prefect_server(project / ".prefect") as server:
        env = env_for(project, **server.client_env(), POWERFLOW_ORCHESTRATOR="auto")
        _prefect(["work-pool", "create", "powerflow-process", "--type", "process"], project, env)
        _prefect(["deploy", "--all"], project, env)
        log = open(project / "worker.log", "wb")
        worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", "powerflow-process"],
                                  cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            run = _prefect(["deployment", "run", "powerflow-pipeline/alpha-sweep", "--param", "alphas=[0.5, 4]",
                            "--watch", "--watch-timeout", "1200"], project, env, timeout=1300)
            assert "Completed" in run.stdout, run.stdout[-3000:]
            evaluation = _prefect(["deployment", "run", "evaluate-registered/evaluate-registered", "--param",
                                   "model_uri=models:/powerflow-world@best-reasoning", "--watch"], project, env)
            assert "Completed" in evaluation.stdout, evaluation.stdout[-3000:]
        finally:
            stop_process_group(worker)
            log.close()

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    try:
        client = MlflowClient()
        runs = client.search_runs([client.get_experiment_by_name("powerflow").experiment_id])
        names = {r.info.run_name for r in runs}
        # the sweep flow runs the baselines too (tiny params: GRPO, EMPO, MCMC and low temperature at α=2)
        assert {"alpha-0.5-la_tb-s0", "alpha-4.0-la_tb-s0", "base", "grpo", "empo", "mcmc-2.0", "low_temperature-2.0",
                "verbalized", "high_temperature"} <= names
        trained = [r for r in runs if r.info.run_name == "alpha-4.0-la_tb-s0"][0]
        assert trained.data.params["run.alpha"] == "4.0" and trained.data.tags["seed"] == "0"
        assert "eval/reasoning/accuracy_mean" in trained.data.metrics
        versions = client.search_model_versions("name='powerflow-world'")
        assert sorted(v.tags["alpha"] for v in versions if v.tags.get("method") == "power_flow") == ["0.5", "4"]
        assert sorted(v.tags["method"] for v in versions if v.tags.get("method") != "power_flow") == ["empo", "grpo"]
        assert all("eval/reasoning/accuracy_mean" in v.tags for v in versions)  # each registered after its evaluation
        assert "best-reasoning" in client.get_registered_model("powerflow-world").aliases
    finally:
        mlflow.set_tracking_uri(None)
    assert (project / "outputs" / "report" / "report.md").is_file()
    registered = list((project / "outputs" / "eval" / "registered").glob("*/metrics.json"))
    assert registered and "reasoning/accuracy_mean" in json.loads(registered[0].read_text())
