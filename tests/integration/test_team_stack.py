"""The team stack's servers, for real on loopback: a sweep tracked and registered through `mlflow server`.

Two tiny sweeps (one α, no baselines) run with MLFLOW_TRACKING_URI pointing at a tracking server:
- SQLite backend, artifacts proxied by the server to a local folder;
- SQLite backend, artifacts proxied to an S3 bucket on moto's S3-compatible server; the same
  bucket then holds the project's DVC remote (infra/dvc-remote.sh): push, clear the local cache
  and the cached outputs, pull, and `dvc repro` has nothing to run.
In both, the registered version loads back and generates in another process that knows only the
server's URL (no access to the project, the artifact folder or the bucket's credentials).
A real Prefect server also accepts the Kubernetes GPU work pool (infra/k8s) and its deployments
(infra/prefect/prefect.k8s.yaml), created with the commands infra/README.md gives.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from benchmarks.pipeline_project import ROOT, env_for, make_project, run
from powerflow.orchestration import local_prefect_server
from powerflow.servers import mlflow_server, moto_s3_server

pytestmark = pytest.mark.slow

BUCKET = "powerflow"
MODEL_NAME = "powerflow-world"
RUN = "alpha-2.0-la_tb-s0"

# Runs in a fresh process and folder: everything it needs comes from the tracking server.
LOAD_AND_GENERATE = """
import json, sys
from powerflow.tracking import load_policy
policy = load_policy(sys.argv[1])
(text,) = policy.predict([sys.argv[2]], params={"max_new_tokens": 8, "do_sample": False})
print(json.dumps({"text": text}))
"""


def tiny_sweep_project(path: Path) -> Path:
    """The tiny project with one α and no baselines: the cheapest sweep that trains and registers."""
    project = make_project(path, alphas=(2.0,))
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["baselines"].update(train=[], inference=[])
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["git", "commit", "-qam", "one alpha, no baselines"], project)
    assert out.returncode == 0, out.stderr
    return project


def run_sweep(project: Path, tracking_uri: str) -> None:
    out = run(["dvc", "repro", "report"], project, MLFLOW_TRACKING_URI=tracking_uri)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


def registered_version(project: Path) -> str:
    return str(json.loads((project / "outputs" / "register" / f"{RUN}.json").read_text())["version"])


def first_prompt(project: Path) -> str:
    return json.loads((project / "data" / "prepared" / "prompts.jsonl").read_text().splitlines()[0])["prompt"]


def assert_tracked_and_registered(client: MlflowClient, project: Path) -> str:
    """The run, its metrics and the registered version are on the server; returns the version's logged-model id
    (MLflow 3 stores a model's files under <experiment>/models/<model id>/)."""
    experiment = client.get_experiment_by_name("powerflow")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # the server decides where artifacts go
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert {RUN, "base"} <= set(runs)
    assert [m.step for m in client.get_metric_history(runs[RUN].info.run_id, "train/loss")] == [1, 2]
    assert "eval/reasoning/accuracy_mean" in runs[RUN].data.metrics
    version = client.get_model_version(MODEL_NAME, registered_version(project))
    assert version.tags["alpha"] == "2" and version.run_id == runs[RUN].info.run_id
    assert version.source.startswith("models:/m-")
    return version.source.removeprefix("models:/")


def assert_loads_in_another_process(tracking_uri: str, project: Path, workdir: Path) -> None:
    """A new Python process with only MLFLOW_TRACKING_URI loads the version and generates text."""
    workdir.mkdir()
    env = env_for(workdir, MLFLOW_TRACKING_URI=tracking_uri)
    model_uri = f"models:/{MODEL_NAME}/{registered_version(project)}"
    out = subprocess.run([sys.executable, "-c", LOAD_AND_GENERATE, model_uri, first_prompt(project)], cwd=workdir,
                         env=env | {"PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    text = json.loads(out.stdout.strip().splitlines()[-1])["text"]
    assert isinstance(text, str) and text


def test_sweep_through_a_server_with_proxied_local_artifacts(tmp_path):
    project = tiny_sweep_project(tmp_path / "project")
    with mlflow_server(tmp_path / "server") as server:
        run_sweep(project, server.url)
        model_id = assert_tracked_and_registered(MlflowClient(server.url), project)
        stored = list((tmp_path / "server" / "mlartifacts").rglob("model.safetensors"))
        assert any(model_id in path.parts for path in stored)  # the checkpoint went through the proxy
        assert not (project / "mlartifacts").exists() and not (project / "mlflow.db").exists()
        assert_loads_in_another_process(server.url, project, tmp_path / "elsewhere")


def test_sweep_through_a_server_on_s3_then_dvc_remote_on_the_same_bucket(tmp_path):
    with moto_s3_server(workdir=tmp_path) as s3:
        s3.create_bucket(BUCKET)
        project = tiny_sweep_project(tmp_path / "project")
        with mlflow_server(tmp_path / "server", artifacts_destination=f"s3://{BUCKET}/mlartifacts",
                           env=s3.env()) as server:
            run_sweep(project, server.url)  # the sweep has no S3 settings: artifacts go through the server
            model_id = assert_tracked_and_registered(MlflowClient(server.url), project)
            keys = s3.list_keys(BUCKET, prefix="mlartifacts/")
            assert any(f"/models/{model_id}/" in key and key.endswith("/model.safetensors") for key in keys), keys[:20]
            assert not (tmp_path / "server" / "mlartifacts").exists()
            assert_loads_in_another_process(server.url, project, tmp_path / "elsewhere")

        remote_env = s3.env() | {"S3_ENDPOINT_URL": s3.endpoint_url, "DVC_REMOTE_URL": f"s3://{BUCKET}/dvc"}
        out = run(["sh", str(ROOT / "infra" / "dvc-remote.sh")], project, **remote_env)
        assert out.returncode == 0, out.stdout + out.stderr
        assert s3.endpoint_url not in (project / ".dvc" / "config").read_text()  # addresses stay out of git
        out = run(["dvc", "push"], project, **remote_env)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        assert s3.list_keys(BUCKET, prefix="dvc/files/md5/")

        weights = (project / "models" / "policies" / RUN / "model.safetensors").read_bytes()
        for cached in (".dvc/cache", "models", "data/prepared"):
            shutil.rmtree(project / cached)
        out = run(["dvc", "pull"], project, **remote_env)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        assert (project / "models" / "policies" / RUN / "model.safetensors").read_bytes() == weights
        status = run(["dvc", "status", "report", "--json"], project, **remote_env)  # the sweep's stages
        assert status.returncode == 0 and json.loads(status.stdout) == {}, status.stdout + status.stderr
        out = run(["dvc", "repro", "report"], project, **remote_env)
        assert out.returncode == 0, out.stderr[-2000:]
        assert "Running stage" not in out.stdout and "Data and pipelines are up to date" in out.stdout


def test_gpu_work_pool_and_its_deployments_are_accepted_by_a_prefect_server(tmp_path):
    """`prefect work-pool create --base-job-template` and `prefect deploy --prefect-file` as infra/README.md
    says, against a real server: the template is stored and the deployments' job variables fit it."""
    project = make_project(tmp_path / "project", git=False)
    shutil.copytree(ROOT / "infra", project / "infra")
    image = "registry.invalid/powerflow-gpu:test"
    with local_prefect_server(project / ".prefect") as server:
        env = server.client_env() | {"POWERFLOW_GPU_IMAGE": image}

        def prefect(*args: str) -> str:
            out = run(["prefect", "--no-prompt", *args], project, timeout=300, **env)
            assert out.returncode == 0, f"prefect {' '.join(args)}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
            return out.stdout

        prefect("work-pool", "create", "powerflow-gpu", "--type", "kubernetes",
                "--base-job-template", "infra/k8s/gpu-job-template.json")
        prefect("deploy", "--prefect-file", "infra/prefect/prefect.k8s.yaml", "--all")
        deployment = json.loads(prefect("deployment", "inspect", "powerflow-pipeline/alpha-sweep-gpu", "-o", "json"))
    assert deployment["work_pool_name"] == "powerflow-gpu"
    assert deployment["entrypoint"] == "flows/pipeline.py:powerflow_pipeline"
    assert deployment["job_variables"] == {"image": image, "gpu_count": 1}
    assert deployment["pull_steps"] == [{"prefect.deployments.steps.set_working_directory": {"directory": "/app"}}]
