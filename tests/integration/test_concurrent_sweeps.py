"""Two sweeps started at once against one MLflow tracking server and one Prefect server.

Two tiny one-α projects (sweeps "sweep-a" at α=0.5 and "sweep-b" at α=2.0) run `dvc repro report`
at the same moment, every stage a Prefect flow run on the shared Prefect server, every run and
model version on the shared `mlflow server` (SQLite backend, proxied artifacts). Both must finish,
and each sweep's runs, metrics and registered versions must be its own: nothing created twice,
nothing logged into the other sweep's runs.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from benchmarks.pipeline_project import BIN, ONE_MEMBER_OVERRIDES, env_for, make_project
from powerflow.orchestration import local_prefect_server
from powerflow.servers import mlflow_server

pytestmark = pytest.mark.slow

SWEEPS = {"sweep-a": 0.5, "sweep-b": 2.0}  # sweep name -> its one α
# One flow run per DVC stage of a one-α sweep without baselines (and the two baselines every sweep runs).
FLOWS_PER_SWEEP = {"prepare": 1, "base": 1, "train": 1, "evaluate": 4, "register": 1, "report": 1}


def member(alpha: float) -> str:
    return f"alpha-{alpha}-la_tb-s0"


def prefect_api(api_url: str, path: str, body: dict) -> list[dict]:
    """POST a filter query to the Prefect server's REST API."""
    request = urllib.request.Request(f"{api_url}/{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def flow_runs_by_project(api_url: str) -> dict[str, list[tuple[str, str]]]:
    """{params.yaml path: [(flow name, state type), ...]} of every flow run on the server."""
    flows = {f["id"]: f["name"] for f in prefect_api(api_url, "flows/filter", {})}
    runs: dict[str, list[tuple[str, str]]] = {}
    offset = 0
    while batch := prefect_api(api_url, "flow_runs/filter", {"offset": offset, "limit": 200}):
        for r in batch:
            runs.setdefault(r["parameters"].get("params"), []).append((flows[r["flow_id"]], r["state_type"]))
        offset += len(batch)
    return runs


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    """Both sweeps run at once; yields (projects by sweep name, tracking URI, Prefect flow runs)."""
    root = tmp_path_factory.mktemp("concurrent")
    projects = {name: make_project(root / name, alphas=(alpha,),
                                   overrides=ONE_MEMBER_OVERRIDES | {"sweep": {"name": name}})
                for name, alpha in SWEEPS.items()}
    with mlflow_server(root / "mlflow") as tracking, local_prefect_server(root / "prefect") as prefect:
        procs = {}
        for name, project in projects.items():
            env = env_for(project, **prefect.client_env(), POWERFLOW_ORCHESTRATOR="prefect",
                          MLFLOW_TRACKING_URI=tracking.url)
            log = open(project / "repro.log", "w")
            procs[name] = (subprocess.Popen([str(BIN / "dvc"), "repro", "report"], cwd=project, env=env,
                                            stdout=log, stderr=subprocess.STDOUT), log)
        for name, (proc, log) in procs.items():
            status = proc.wait(timeout=1800)
            log.close()
            output = (projects[name] / "repro.log").read_text()
            assert status == 0, f"{name}: dvc repro exited {status}:\n{output[-4000:]}"
        flow_runs = flow_runs_by_project(prefect.api_url)
        mlflow.set_tracking_uri(tracking.url)
        try:
            yield projects, MlflowClient(), flow_runs
        finally:
            mlflow.set_tracking_uri(None)


def runs_of(client: MlflowClient) -> list:
    experiment = client.get_experiment_by_name("powerflow")
    return client.search_runs([experiment.experiment_id])


def test_each_sweep_has_one_parent_with_its_own_children(sweeps):
    projects, client, _ = sweeps
    runs = runs_of(client)
    parents = {r.data.tags["powerflow.sweep"]: r for r in runs if r.data.tags.get("powerflow.role") == "parent"}
    assert len([r for r in runs if r.data.tags.get("powerflow.role") == "parent"]) == len(SWEEPS)
    assert set(parents) == set(SWEEPS)
    for name, alpha in SWEEPS.items():
        parent = parents[name].info.run_id
        children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent}
        assert set(children) == {"base", member(alpha), "verbalized", "high_temperature"}
        assert all(r.data.tags["powerflow.sweep"] == name for r in children.values())
        trained = children[member(alpha)]
        run_json = json.loads((projects[name] / "outputs" / "train" / member(alpha) / "run.json").read_text())
        assert trained.info.run_id == run_json["run_id"] and run_json["parent_run_id"] == parent
        assert trained.data.params["run.alpha"] == str(alpha)
        assert [m.step for m in client.get_metric_history(trained.info.run_id, "train/loss")] == [1, 2]


def test_no_run_holds_the_other_sweeps_metrics(sweeps):
    projects, client, _ = sweeps
    runs = runs_of(client)
    for name, alpha in SWEEPS.items():
        own = {r.info.run_name: r for r in runs if r.data.tags.get("powerflow.sweep") == name
               and r.data.tags.get("powerflow.role") == "child"}
        for run_name in ("base", member(alpha)):
            metrics = json.loads((projects[name] / "outputs" / "eval" / run_name / "metrics.json").read_text())
            logged = {k: v for k, v in own[run_name].data.metrics.items() if k.startswith("eval/")}
            assert logged["eval/reasoning/accuracy_mean"] == pytest.approx(metrics["reasoning/accuracy_mean"])
            assert logged["eval/open_ended/coverage"] == pytest.approx(metrics["open_ended/coverage"])
            # a metric logged twice (by both sweeps) would have two entries in its history
            assert len(client.get_metric_history(own[run_name].info.run_id, "eval/reasoning/accuracy_mean")) == 1


def test_each_registered_version_points_at_its_own_sweep(sweeps):
    projects, client, _ = sweeps
    versions = client.search_model_versions("name='powerflow-world'")
    assert len(versions) == len(SWEEPS)
    by_sweep = {v.tags["sweep"]: v for v in versions}
    assert set(by_sweep) == set(SWEEPS)
    for name, alpha in SWEEPS.items():
        project, version = projects[name], by_sweep[name]
        run_id = json.loads((project / "outputs" / "train" / member(alpha) / "run.json").read_text())["run_id"]
        record = json.loads((project / "outputs" / "register" / f"{member(alpha)}.json").read_text())
        assert version.run_id == run_id and record["version"] == version.version
        assert version.tags["alpha"] == f"{alpha:g}"
        run = client.get_run(run_id)
        for key in ("prompts_sha256", "params_sha256", "git_commit", "sweep"):
            assert version.tags[key] == run.data.tags[key], key
        manifest = json.loads((project / "data" / "prepared" / "manifest.json").read_text())
        assert version.tags["prompts_sha256"] == manifest["prompts_sha256"]
        settings = json.loads((project / "outputs" / "eval" / member(alpha) / "settings.json").read_text())
        assert version.tags["checkpoint_sha256"] == settings["checkpoint_sha256"]


def test_each_sweep_keeps_its_own_alias(sweeps):
    """best-reasoning is the last report's pick; <sweep>-best-reasoning stays each sweep's own."""
    _, client, _ = sweeps
    aliases = client.get_registered_model("powerflow-world").aliases
    own = {name: client.get_model_version_by_alias("powerflow-world", f"{name}-best-reasoning") for name in SWEEPS}
    assert {name: v.tags["sweep"] for name, v in own.items()} == {name: name for name in SWEEPS}
    assert aliases["best-reasoning"] in {v.version for v in own.values()}


def test_every_flow_run_of_both_sweeps_completed(sweeps):
    projects, _, flow_runs = sweeps
    assert set(flow_runs) == {str(p.resolve() / "params.yaml") for p in projects.values()}
    for project in projects.values():
        runs = flow_runs[str(project.resolve() / "params.yaml")]
        assert {state for _, state in runs} == {"COMPLETED"}, runs
        names = [flow for flow, _ in runs]
        assert {flow: names.count(flow) for flow in set(names)} == FLOWS_PER_SWEEP
