"""Static checks of infra/: the compose stack, env examples, Dockerfiles, the GPU work pool and its deployments.

No Docker engine or Kubernetes cluster runs here: these tests read the files the way Compose,
Prefect and the shell would, and check that they agree with each other and with the project
(pyproject's pins and extras, the flows the deployments name, the variables the templates use).
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
COMPOSE = INFRA / "compose.yaml"
SERVICES = {"postgres", "minio", "create-bucket", "mlflow", "prefect-server", "prefect-worker"}
ONE_SHOT = {"create-bucket"}
GPU_POOL = "powerflow-gpu"

# ${VAR}, ${VAR:-default}, ${VAR?error}; not $${VAR} (escaped: the container's shell expands it)
COMPOSE_VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:[:?+-][^}]*)?\}")
CREDENTIAL_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|ROOT_USER", re.IGNORECASE)  # MinIO root user = access key
PLACEHOLDER = "change-me"


def env_example(name: str) -> dict[str, str]:
    """KEY=VALUE lines of infra/env/<name>.env.example (comments and blanks skipped)."""
    pairs = {}
    for line in (INFRA / "env" / f"{name}.env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{name}.env.example: {line!r} is not KEY=VALUE"
            pairs[key] = value
    return pairs


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def command_text(service: dict) -> str:
    command = service.get("command", [])
    return " ".join(command) if isinstance(command, list) else command


# ------------------------------------------------------------------------------ compose
def test_compose_has_the_stack_services(services):
    assert set(services) == SERVICES


def strings_in(node) -> list[str]:
    """Every string of a parsed YAML document (keys and values): what Compose interpolates."""
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in (*strings_in(key), *strings_in(value))]
    if isinstance(node, list):
        return [s for item in node for s in strings_in(item)]
    return [node] if isinstance(node, str) else []


def test_every_compose_variable_is_set_by_the_stack_env_example_and_every_setting_is_used(compose):
    used = {name for text in strings_in(compose) for name in COMPOSE_VARIABLE.findall(text)}
    defined = set(env_example("stack"))
    assert used, "compose.yaml takes its settings from ${VARIABLES}"
    assert used <= defined, f"used in compose.yaml, missing from infra/env/stack.env.example: {sorted(used - defined)}"
    assert defined <= used, f"in stack.env.example but unused by compose.yaml: {sorted(defined - used)}"


def test_long_running_services_have_healthchecks_and_wait_for_healthy_dependencies(services):
    for name, service in services.items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no" and "healthcheck" not in service
            continue
        check = service.get("healthcheck", {})
        assert check.get("test") and check.get("retries"), f"{name} has no healthcheck"
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            assert condition == {"condition": expected}, f"{name} -> {dependency}: {condition}"
    assert set(services["mlflow"]["depends_on"]) == {"postgres", "create-bucket"}
    assert set(services["prefect-server"]["depends_on"]) == {"postgres"}
    assert set(services["prefect-worker"]["depends_on"]) == {"prefect-server", "mlflow"}
    assert services["create-bucket"]["depends_on"] == {"minio": {"condition": "service_healthy"}}


def test_postgres_creates_a_database_for_prefect_and_one_for_mlflow(services):
    postgres = services["postgres"]
    init = [v for v in postgres["volumes"] if "/docker-entrypoint-initdb.d/" in v]
    assert len(init) == 1
    script = INFRA / init[0].split(":")[0]
    assert script.resolve().parent == (INFRA / "postgres").resolve() and script.is_file()
    text = script.read_text()
    assert 'for db in "$PREFECT_DB" "$MLFLOW_DB"' in text and "CREATE DATABASE" in text
    assert postgres["environment"]["PREFECT_DB"] == "${PREFECT_DB}"
    assert postgres["environment"]["MLFLOW_DB"] == "${MLFLOW_DB}"


def test_the_bucket_is_created_on_the_object_store(services):
    command = command_text(services["create-bucket"])
    assert "mc alias set store http://minio:9000" in command
    assert 'mc mb --ignore-existing "store/$$S3_BUCKET"' in command
    assert services["create-bucket"]["environment"]["S3_BUCKET"] == "${S3_BUCKET}"


def test_mlflow_server_uses_postgres_and_proxies_artifacts_to_the_bucket(services):
    mlflow = services["mlflow"]
    command = mlflow["command"]
    assert command[:2] == ["mlflow", "server"]
    options = dict(arg.split("=", 1) for arg in command[2:] if "=" in arg)
    assert options["--backend-store-uri"] == (
        "postgresql://${POSTGRES_USER}:${POSTGRES_PASSWORD}@postgres:5432/${MLFLOW_DB}")
    assert options["--artifacts-destination"] == "s3://${S3_BUCKET}/mlartifacts"
    assert "--serve-artifacts" in command
    assert options["--allowed-hosts"] == "${MLFLOW_ALLOWED_HOSTS}"
    assert mlflow["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    # the worker reaches MLflow as mlflow:5000: that Host header must be allowed
    worker_uri = services["prefect-worker"]["environment"]["MLFLOW_TRACKING_URI"]
    assert worker_uri == "http://mlflow:5000"
    assert "mlflow:5000" in env_example("stack")["MLFLOW_ALLOWED_HOSTS"].split(",")


def test_prefect_server_on_postgres_and_a_process_worker(services):
    server = services["prefect-server"]
    assert server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"] == (
        "postgresql+asyncpg://${POSTGRES_USER}:${POSTGRES_PASSWORD}@postgres:5432/${PREFECT_DB}")
    assert command_text(server).startswith("prefect server start --host 0.0.0.0 --port 4200")
    worker = services["prefect-worker"]
    assert command_text(worker) == "prefect worker start --pool ${PREFECT_WORK_POOL} --type process"
    assert worker["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    # the worker polls the pool the root prefect.yaml deploys to
    pools = {d["work_pool"]["name"] for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}
    assert pools == {env_example("stack")["PREFECT_WORK_POOL"]}


def test_project_services_build_the_cpu_image(services, compose):
    for name in ("mlflow", "prefect-server", "prefect-worker"):
        build = services[name]["build"]
        context = (INFRA / build["context"]).resolve()
        assert context == ROOT and (context / build["dockerfile"]).is_file(), name
        assert build["dockerfile"] == "infra/docker/Dockerfile.cpu"
        assert services[name]["image"] == "${POWERFLOW_IMAGE}"


# ------------------------------------------------------------------------------ credentials
def committed_infra_files() -> list[Path]:
    files = [p for p in INFRA.rglob("*") if p.is_file() and not p.name.endswith(".env")]
    return files + [ROOT / ".dockerignore"]


def test_env_examples_hold_placeholders_for_every_credential():
    for name in ("stack", "client", "cluster"):
        for key, value in env_example(name).items():
            if CREDENTIAL_KEY.search(key):
                assert value.startswith(PLACEHOLDER), f"{name}.env.example: {key} must be a {PLACEHOLDER} placeholder"


def test_no_literal_credentials_in_committed_infra_files(services):
    for name, service in services.items():
        environment = service.get("environment", {})
        for key, value in environment.items():
            if CREDENTIAL_KEY.search(key):
                assert re.fullmatch(r"\$\{[A-Z_]+\}", str(value)), f"{name}: {key}={value!r} is a literal"
    known_defaults = re.compile(r"minioadmin|AKIA[0-9A-Z]{16}|password123|:postgres@", re.IGNORECASE)
    for path in committed_infra_files():
        text = path.read_text(errors="replace")
        assert not known_defaults.search(text), f"{path.relative_to(ROOT)} holds a literal credential"


def test_real_env_files_are_git_ignored_and_examples_are_not():
    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0

    for name in ("stack", "client", "cluster"):
        assert ignored(f"infra/env/{name}.env")
        assert not ignored(f"infra/env/{name}.env.example")
    dockerignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "infra/env/*.env" in dockerignore and ".dvc/config.local" in dockerignore


def test_dvc_remote_script_keeps_addresses_out_of_the_committed_config():
    script = (INFRA / "dvc-remote.sh").read_text()
    dvc_lines = [line for line in script.splitlines() if line.startswith("dvc remote")]
    assert len(dvc_lines) == 2 and all("--local" in line for line in dvc_lines)
    assert "S3_ENDPOINT_URL:?" in script  # fails with a message when the endpoint is not set


# ------------------------------------------------------------------------------ images
def pyproject() -> dict:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_cpu_image_installs_the_pinned_cpu_torch_and_the_team_extra():
    dockerfile = (INFRA / "docker" / "Dockerfile.cpu").read_text()
    assert re.findall(r"^FROM .*$", dockerfile, re.MULTILINE) == ["FROM python:3.11-slim"]
    torch_pin = next(d for d in pyproject()["project"]["dependencies"] if d.startswith("torch=="))
    assert f"pip install {torch_pin} --index-url https://download.pytorch.org/whl/cpu" in dockerfile
    assert 'pip install ".[team]"' in dockerfile
    assert "psycopg2-binary" in dockerfile  # the MLflow server's postgresql:// driver
    assert "WORKDIR /app" in dockerfile


def test_gpu_image_adds_the_gpu_extra_with_vllms_pins():
    dockerfile = (INFRA / "docker" / "Dockerfile.gpu").read_text()
    assert re.search(r"^FROM nvidia/cuda:\S+", dockerfile, re.MULTILINE)
    assert 'uv pip install ".[team,gpu]" --override /tmp/gpu-overrides.txt' in dockerfile
    assert "COPY infra/docker/gpu-overrides.txt /tmp/gpu-overrides.txt" in dockerfile
    assert "uv venv --python 3.11" in dockerfile and "WORKDIR /app" in dockerfile
    extras = pyproject()["project"]["optional-dependencies"]
    assert any(d.startswith("vllm") for d in extras["gpu"]) and extras["team"]
    overrides = [line for line in (INFRA / "docker" / "gpu-overrides.txt").read_text().splitlines()
                 if line and not line.startswith("#")]
    assert {re.split(r"[<>=!~]", line)[0] for line in overrides} == {"torch", "transformers"}


# ------------------------------------------------------------------------------ Kubernetes GPU pool
@pytest.fixture(scope="module")
def job_template() -> dict:
    return json.loads((INFRA / "k8s" / "gpu-job-template.json").read_text())


def container_of(manifest: dict) -> dict:
    return manifest["spec"]["template"]["spec"]["containers"][0]


def test_job_template_is_a_valid_prefect_base_job_template(job_template):
    from prefect.server.schemas.actions import WorkPoolCreate

    pool = WorkPoolCreate(name=GPU_POOL, type="kubernetes", base_job_template=job_template)  # Prefect's own check
    manifest = pool.base_job_template["job_configuration"]["job_manifest"]
    assert manifest["kind"] == "Job" and container_of(manifest)["name"] == "prefect-job"
    assert manifest["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_job_template_requests_gpus_from_a_variable(job_template):
    from prefect.utilities.templating import apply_values

    container = container_of(job_template["job_configuration"]["job_manifest"])
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "{{ gpu_count }}"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "{{ gpu_count }}"
    pod = job_template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == "{{ node_selector }}" and pod["tolerations"] == "{{ tolerations }}"
    variables = job_template["variables"]["properties"]
    assert variables["gpu_count"]["type"] == "integer" and variables["gpu_count"]["default"] == 1
    defaults = {k: v["default"] for k, v in variables.items() if "default" in v}

    def rendered(values: dict) -> dict:
        config = apply_values(job_template["job_configuration"], defaults | values)
        return config["job_manifest"]["spec"]["template"]["spec"]

    pod = rendered({})
    assert container_of({"spec": {"template": {"spec": pod}}})["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    pod = rendered({"gpu_count": 4, "node_selector": {"pool": "h100"}})
    assert pod["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] == 4
    assert pod["nodeSelector"] == {"pool": "h100"}


def load_entrypoint(entrypoint: str):
    path, _, name = entrypoint.partition(":")
    spec = importlib.util.spec_from_file_location(f"entrypoint_{Path(path).stem}", ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def test_k8s_deployments_use_the_gpu_pool_and_existing_flows(job_template):
    from prefect import Flow

    file = yaml.safe_load((INFRA / "prefect" / "prefect.k8s.yaml").read_text())
    gpu_dockerfile = (INFRA / "docker" / "Dockerfile.gpu").read_text()
    (pull,) = file["pull"]
    workdir = pull["prefect.deployments.steps.set_working_directory"]["directory"]
    assert f"WORKDIR {workdir}" in gpu_dockerfile  # flow runs start in the image's project
    variables = set(job_template["variables"]["properties"])
    deployments = file["deployments"]
    assert {d["entrypoint"] for d in deployments} == {"flows/pipeline.py:powerflow_pipeline",
                                                     "flows/stages.py:evaluate_registered_flow"}
    for deployment in deployments:
        assert deployment["work_pool"]["name"] == GPU_POOL
        job_variables = deployment["work_pool"]["job_variables"]
        assert set(job_variables) <= variables
        assert job_variables["image"] == "{{ $POWERFLOW_GPU_IMAGE }}"  # no registry address in the repo
        assert isinstance(load_entrypoint(deployment["entrypoint"]), Flow)
        assert (ROOT / deployment["parameters"]["params"]).is_file()
