"""The math-verify worker works from callers with no `if __name__ == "__main__":` guard.

A worker started with multiprocessing's "spawn" method re-imports the caller's main module, so a
plain script that grades at top level started a worker that graded at import, and so on: the
worker died before it was ready. Each case runs the same top-level code in a fresh interpreter:
as a script file, with `python -c`, and from stdin (`python -`, where `__main__` has no file,
as in a notebook).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

CODE = (
    "from powerflow.eval.math import is_equivalent\n"
    'print(is_equivalent("1/2", "0.5"), is_equivalent("2", "3"))\n'
)

# A fresh interpreter plus a worker that imports math-verify: seconds when idle, more when loaded.
TIMEOUT_S = 300


def _environment() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return env


def _run(arguments: list[str], cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *arguments],
        cwd=cwd,
        env=_environment(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def _check(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, f"exit code {result.returncode}; stderr:\n{result.stderr}"
    assert result.stdout.strip() == "True False", result.stdout


def test_a_plain_script_without_a_main_guard(tmp_path):
    script = tmp_path / "grade.py"
    script.write_text(CODE)
    _check(_run([str(script)], cwd=tmp_path))


def test_python_dash_c(tmp_path):
    _check(_run(["-c", CODE], cwd=tmp_path))


def test_code_from_stdin(tmp_path):
    _check(_run(["-"], cwd=tmp_path, stdin=CODE))


def test_a_module_run_with_dash_m_without_a_main_guard(tmp_path):
    (tmp_path / "grading_job.py").write_text(CODE)
    _check(_run(["-m", "grading_job"], cwd=tmp_path))
