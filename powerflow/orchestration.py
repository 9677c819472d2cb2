"""Local servers for the main job and the tests: a Prefect server on loopback, started as a process.

Nothing here imports Prefect: the server is the `prefect` executable of the same environment,
and readiness is an HTTP health check. The main job (`powerflow sweep`) starts one so every DVC
stage runs as a Prefect flow run costing 1-3 s instead of a temporary server per stage (~15 s).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from powerflow.errors import UserError


class ServerStartError(UserError):
    """A local server did not come up; the message points at its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_health(url: str, timeout_s: float, process: subprocess.Popen | None = None) -> float:
    """Poll `url` until it answers 200; seconds waited. Raises TimeoutError (or if the process dies)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if process is not None and process.poll() is not None:
            raise TimeoutError(f"server process exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s")


def prefect_executable() -> str:
    """The `prefect` script beside this Python (the project's venv), else the one on PATH."""
    candidate = Path(sys.executable).with_name("prefect")
    return str(candidate) if candidate.exists() else (shutil.which("prefect") or "prefect")


@dataclass(frozen=True)
class LocalPrefect:
    """A running local Prefect server: its API URL, environment for clients, start-up seconds."""

    api_url: str
    home: Path
    startup_seconds: float
    log: Path

    def client_env(self) -> dict[str, str]:
        """Environment for processes that should talk to this server."""
        return {"PREFECT_API_URL": self.api_url, "PREFECT_HOME": str(self.home),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


@contextlib.contextmanager
def local_prefect_server(home: Path, port: int | None = None, timeout_s: float = 120) -> Iterator[LocalPrefect]:
    """Start `prefect server start` on 127.0.0.1 with its SQLite database under `home`; stop it after.

    `home` must be absolute (DVC experiments run in temporary copies of the repo).
    """
    home = Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = home / "server.log"
    env = os.environ | {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_UI_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [prefect_executable(), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui",
             "--analytics-off"],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    api_url = f"http://127.0.0.1:{port}/api"
    try:
        try:
            seconds = wait_for_health(f"{api_url}/health", timeout_s, process)
        except TimeoutError as err:
            raise ServerStartError(f"the local Prefect server did not start ({err}); see {log}.") from err
        yield LocalPrefect(api_url=api_url, home=home, startup_seconds=seconds, log=log)
    finally:
        stop_process_group(process)


def stop_process_group(process: subprocess.Popen, grace_s: float = 10) -> None:
    """SIGTERM the process's group, SIGKILL it after `grace_s`."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# ------------------------------------------------------------------ which orchestrator runs a stage
ORCHESTRATORS = ("auto", "prefect", "none")


def prefect_server_url() -> str | None:
    """PREFECT_API_URL if a Prefect server answers its health check there, else None."""
    url = os.environ.get("PREFECT_API_URL", "").rstrip("/")
    if not url:
        return None
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=3) as response:
            return url if response.status == 200 else None
    except OSError:
        return None


def use_prefect(choice: str) -> bool:
    """Whether to run the stage's Prefect flow (auto: only when a local server is reachable).

    Without a server, Prefect would start a temporary one per command (~15 s each), so `auto`
    calls the library steps directly instead.
    """
    if choice == "none":
        return False
    url = prefect_server_url()
    if choice == "prefect" and url is None:
        where = os.environ.get("PREFECT_API_URL") or "(PREFECT_API_URL is not set)"
        raise UserError(
            f"no Prefect server answers at {where}: start one with `prefect server start` and set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api, or pass --orchestrator none."
        )
    return url is not None
