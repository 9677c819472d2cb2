"""A tiny, real pipeline project for benchmarks and tests: the repo's dvc.yaml and prefect.yaml with small params.

The project is a git + DVC repository in a temporary folder. Its params.yaml keeps every section
of the real one, shrunk so the whole sweep runs in a few minutes on 2 cores: a 1-layer base
pretrained for a few dozen steps, two training steps per α, a handful of eval prompts. Every
stage still runs the real code through the installed `powerflow` command.

It lives here, not in tests/, because benchmarks/orchestration.py builds one too and benchmarks
never import tests; the tests import it from here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

TINY_OVERRIDES = {
    # The world with its chat documents (params.yaml's chat_fraction): the chat family, verbalized
    # sampling and the base as judge all run, on a base too small to do them well.
    "world": {"n_reasoning_train": 24, "n_reasoning_eval": 6},
    "base": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64, "n_documents": 600,
             "steps": 30, "batch_size": 16, "warmup_steps": 5},
    # The pipeline tests exercise the LoRA adapter + learned log Z head path and name their runs
    # alpha-*-la_tb-s*; the main job's recipe (full fine-tuning, TB, group log Z) is covered by the
    # trainer tests in tests/model and by scripts/recipe_ablation.py.
    "sweep": {"objectives": ["la_tb"]},
    "train": {"steps": 2, "prompts_per_step": 2, "num_generations": 2, "max_completion_length": 12,
              "save_steps": 1, "lora_r": 8, "logz": "head", "learning_rate": 3e-3, "lr_schedule": "constant"},
    "evaluate": {"n_samples": 2, "max_new_tokens": 12, "max_prompts_per_family": 3, "n_examples": 1,
                 "judge_max_new_tokens": 4},
    "baselines": {"alphas": [2.0], "mcmc_max_new_tokens": 12, "mcmc_blocks": 2, "mcmc_steps": 2,
                  "verbalized_max_new_tokens": 12},
}


# One α and no baselines but the two that always run (verbalized sampling, high temperature): the
# smallest sweep that trains, evaluates, registers and reports, for tests that run several.
ONE_MEMBER_OVERRIDES = {"baselines": {"train": [], "inference": []}}


def tiny_params(alphas=(0.5, 2.0), overrides: dict | None = None) -> dict:
    """The repository's params.yaml with the tiny overrides, the given α list, then `overrides`
    ({section: {key: value}}, merged into each section)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in [*TINY_OVERRIDES.items(), *(overrides or {}).items()]:
        params[section] = {**params.get(section, {}), **values}
    params["sweep"]["alphas"] = list(alphas)
    return params


def env_for(project: Path, **extra: str) -> dict[str, str]:
    """Environment of a user in `project`: offline, no telemetry, this venv first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update({
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "HF_HUB_OFFLINE": "1", "DVC_NO_ANALYTICS": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "GX_ANALYTICS_ENABLED": "false", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "2",
        "PREFECT_HOME": str(project / ".prefect"), "POWERFLOW_ORCHESTRATOR": "none",
        "PWD": str(project),  # a shell sets it on `cd`; prefect.yaml's pull step reads it at deploy time
        "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com",
    })
    env.update(extra)
    return env


def make_project(path: Path, alphas=(0.5, 2.0), git: bool = True, overrides: dict | None = None) -> Path:
    """Write a tiny project at `path` (dvc.yaml, prefect.yaml, params.yaml, the code DVC hashes);
    `overrides` as in `tiny_params`."""
    path.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", "prefect.yaml", ".gitignore"):
        shutil.copy(ROOT / name, path / name)
    # DVC hashes these as stage dependencies; the commands run the installed package.
    # and Prefect deployments load flows/ by path (entrypoints in prefect.yaml); plugins/ holds the
    # project's plugin modules (empty but for its README: DVC refuses a missing dep).
    for package in ("powerflow", "tasks", "flows", "plugins"):
        shutil.copytree(ROOT / package, path / package, ignore=shutil.ignore_patterns("__pycache__"))
    # Bytecode a run writes beside a plugin module is not a change of the plugins/ dep (`dvc init`
    # keeps an existing .dvcignore).
    shutil.copy(ROOT / ".dvcignore", path / ".dvcignore")
    (path / "params.yaml").write_text(yaml.safe_dump(tiny_params(alphas, overrides), sort_keys=False))
    if git:
        env = env_for(path)
        for cmd in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"],
                    ["git", "add", "-A"], ["git", "commit", "-qm", "tiny project"]):
            subprocess.run(cmd, cwd=path, env=env, check=True, capture_output=True)
    return path


def run(cmd: list[str], project: Path, timeout: int = 900, **env: str) -> subprocess.CompletedProcess:
    """Run a command in the project as a user would; output captured as text."""
    exe = str(BIN / cmd[0]) if (BIN / cmd[0]).exists() else cmd[0]
    return subprocess.run([exe, *cmd[1:]], cwd=project, env=env_for(project, **env), capture_output=True,
                          text=True, timeout=timeout)


def prepared_project(path: Path, alphas=(2.0,), **train) -> Path:
    """A tiny project (no git) with `train` overrides, its prompts prepared and its base pretrained:
    ready for `powerflow train`."""
    project = make_project(path, alphas=alphas, git=False)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"].update(train)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["powerflow", "prepare"], ["powerflow", "pretrain"]):
        out = run(cmd, project)
        if out.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` failed in {project}:\n{out.stderr[-3000:]}")
    return project
