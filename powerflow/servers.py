"""Real servers on loopback for the team-stack tests and benchmarks: an MLflow tracking server and an
S3 store (moto).

Each is a context manager that starts the server as a process group of this venv's executable
(`mlflow`, or `moto_server` of the dev extra), bound to 127.0.0.1, waits for its health endpoint
and always stops it on exit. The MLflow server can be stopped and started again on the same port
with the same stores, which is how the fault tests take the tracking server down in the middle of
a run and bring it back. Nothing here imports mlflow or moto; `MotoS3Server.client` imports boto3.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from powerflow.orchestration import free_port, stop_process_group, wait_for_health

BIN = Path(sys.executable).parent  # the venv's scripts: mlflow, moto_server

STARTUP_TIMEOUT_S = 120  # an MLflow server imports its app in ~10 s alone, much longer on 2 busy cores

# moto accepts any credentials; these are the placeholders its documentation uses.
MOTO_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": "us-east-1"}


def _spawn(cmd: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start `cmd` in its own process group (so stop_process_group reaches its workers), output to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _wait_or_stop(process: subprocess.Popen, health_url: str, log: Path, what: str) -> None:
    """Wait until `health_url` answers; on failure stop the process and raise with the log's tail."""
    try:
        wait_for_health(health_url, STARTUP_TIMEOUT_S, process)
    except TimeoutError as err:
        stop_process_group(process)
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise RuntimeError(f"{what} did not start ({err}); log {log}:\n{tail}") from err


@dataclass
class MlflowServer:
    """`mlflow server` on 127.0.0.1:port with fixed backend and artifact stores; restartable."""

    workdir: Path
    port: int
    backend_store_uri: str
    artifacts_destination: str
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The tracking URI clients use (MLFLOW_TRACKING_URI)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        """Server output (appended across restarts)."""
        return self.workdir / "mlflow-server.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def command(self) -> list[str]:
        """The `mlflow server` command line: one worker, proxied artifacts, loopback only."""
        return [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port),
                "--workers", "1", "--backend-store-uri", self.backend_store_uri,
                "--serve-artifacts", "--artifacts-destination", self.artifacts_destination,
                "--allowed-hosts", f"127.0.0.1:{self.port},localhost:{self.port}"]

    def start(self) -> None:
        """Start the server (again) on the same port and stores; returns when /health answers."""
        if self.running:
            return
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no huey job consumers: tests run no server jobs
        env |= self.env
        self.process = _spawn(self.command(), self.log, env)
        _wait_or_stop(self.process, f"{self.url}/health", self.log, "mlflow server")

    def stop(self) -> None:
        """Stop the server and its workers (SIGTERM, then SIGKILL); the stores stay."""
        if self.process is not None:
            stop_process_group(self.process)


@contextlib.contextmanager
def mlflow_server(workdir: Path, backend_store_uri: str | None = None, artifacts_destination: str | None = None,
                  env: dict | None = None, port: int | None = None) -> Iterator[MlflowServer]:
    """A running MLflow tracking server; default stores are `<workdir>/mlflow.db` and `<workdir>/mlartifacts`.

    `env` is added to the server's environment (e.g. the S3 settings of `moto_s3_server().env()`
    for an `s3://` artifacts destination); MLFLOW_* variables of the caller are not inherited.
    """
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    server = MlflowServer(
        workdir=workdir,
        port=port or free_port(),
        backend_store_uri=backend_store_uri or f"sqlite:///{workdir / 'mlflow.db'}",
        artifacts_destination=artifacts_destination or str(workdir / "mlartifacts"),
        env=dict(env or {}),
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


@dataclass
class MotoS3Server:
    """moto's S3-compatible server on 127.0.0.1: its endpoint and the client settings to reach it."""

    endpoint_url: str
    process: subprocess.Popen

    def env(self) -> dict[str, str]:
        """Environment for boto3, s3fs (dvc-s3) and MLflow clients and servers to use this store."""
        return MOTO_CREDENTIALS | {
            "AWS_ENDPOINT_URL": self.endpoint_url,       # boto3 >= 1.28, aiobotocore
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint_url,  # MLflow's S3 artifact repository
        }

    def client(self):
        """A boto3 S3 client for this store."""
        import boto3

        creds = MOTO_CREDENTIALS
        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=creds["AWS_DEFAULT_REGION"],
                            aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"])

    def create_bucket(self, name: str) -> None:
        """Create bucket `name` (us-east-1 takes no location constraint)."""
        self.client().create_bucket(Bucket=name)

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key in `bucket` under `prefix`."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


@contextlib.contextmanager
def moto_s3_server(port: int | None = None, workdir: Path | None = None) -> Iterator[MotoS3Server]:
    """A running moto server (in-memory S3) on 127.0.0.1; its log goes to `workdir` (default: devnull)."""
    port = port or free_port()
    log = Path(workdir).resolve() / "moto-server.log" if workdir else Path(os.devnull)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | MOTO_CREDENTIALS
    process = _spawn([str(BIN / "moto_server"), "--host", "127.0.0.1", "--port", str(port)], log, env)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_or_stop(process, f"{endpoint}/moto-api/data.json", log, "moto server")
        yield MotoS3Server(endpoint_url=endpoint, process=process)
    finally:
        stop_process_group(process)
