"""Multi-process training through `accelerate launch`: the train step re-run on every rank.

With `train.accelerate_config` set (infra/accelerate/{ddp,fsdp,zero3}.yaml), the train step
(`pipeline.train_policy`, `pipeline.train_baseline`) does not train in its own process. It runs

    python -m accelerate.commands.launch --config_file <cfg> [--num_processes N] --main_process_port <free>
        --no_python python -P -m powerflow.pipeline.ranks --params <params.yaml>
        (--alpha A --objective O --seed S | --method M) [--run-id ID]

and waits (`-P` and PYTHONPATH: the ranks import this very powerflow package, never a copy in
the project folder they run in). Each rank calls the same train step with POWERFLOW_ACCELERATE_RANK=1 in its
environment, so it trains instead of launching again. The MLflow run is opened before the launch
and closed after it by the calling process (`pipeline.train_member`): the ranks only log into it,
and only rank 0 does (`MlflowStepLogger` checks `is_world_process_zero`). Rank 0 alone writes the
policy, the curves and metrics.json, which the calling process reads back as the step's result.

Gradients: the policy is wrapped by accelerate (DDP / FSDP / DeepSpeed) and reduced in backward;
the log Z head lives outside the model and PowerFlowTrainer._before_optimizer_step averages its
gradients across ranks (`accelerator.reduce(..., "mean")`), the same reduction.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from powerflow.config.launch import load_accelerate_config
from powerflow.errors import ConfigError, UserError

if TYPE_CHECKING:
    from powerflow.config import PipelineConfig

RANK_ENV = "POWERFLOW_ACCELERATE_RANK"  # set in launched ranks: they train, they never launch again


class LaunchError(UserError):
    """`accelerate launch` failed or its ranks wrote no result; the ranks' own error is printed above."""


def in_launched_rank() -> bool:
    """True inside a process started by `train_on_ranks` (one of the accelerate ranks)."""
    return os.environ.get(RANK_ENV) == "1"


def launches(cfg: PipelineConfig) -> bool:
    """Whether the train step should launch ranks (an accelerate config is set and this is not a rank)."""
    return cfg.train.accelerate_config is not None and not in_launched_rank()


def is_main_rank() -> bool:
    """Rank 0 of a launched job (RANK from torchrun/DeepSpeed), or a process not launched at all."""
    return int(os.environ.get("RANK", "0")) == 0


def accelerate_config_path(cfg: PipelineConfig) -> Path:
    return cfg.project_root / cfg.train.accelerate_config


def launch_command(cfg: PipelineConfig, rank_args: list[str], port: int) -> list[str]:
    """The `accelerate launch` command line that runs `powerflow.pipeline.ranks.rank_main(rank_args)` on every rank."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config_path(cfg))]
    if cfg.train.num_processes is not None:
        command += ["--num_processes", str(cfg.train.num_processes)]
    command += ["--main_process_port", str(port), "--no_python",
                sys.executable, "-P", "-m", "powerflow.pipeline.ranks", "--params", str(cfg.path)]
    return command + rank_args


def package_root() -> Path:
    """The directory holding this `powerflow` package (first on the ranks' PYTHONPATH)."""
    return Path(__file__).resolve().parents[1]


def launch_environment(cluster) -> dict[str, str]:
    """This process's environment plus the rank marker and this package first on PYTHONPATH;
    no visible GPU when the config says use_cpu."""
    path = os.pathsep.join([str(package_root())] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    env = dict(os.environ) | {RANK_ENV: "1", "PYTHONPATH": path}
    if cluster.use_cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def check_launchable(cluster, path: Path) -> None:
    """Refuse, before starting anything, a config this machine cannot run (DeepSpeed not installed)."""
    from accelerate.utils import DistributedType, is_deepspeed_available

    if cluster.distributed_type == DistributedType.DEEPSPEED and not is_deepspeed_available():
        raise ConfigError(f"train.accelerate_config: {path} uses DeepSpeed, which is not installed here: "
                          "`pip install deepspeed` on the GPU machine, or use infra/accelerate/fsdp.yaml.")


def train_on_ranks(cfg: PipelineConfig, rank_args: list[str], result: Path) -> dict[str, Any]:
    """Run the train step on the accelerate config's ranks; the summary rank 0 wrote to `result`.

    `rank_args` select the step (`--alpha A --objective O --seed S` or `--method M`, plus `--run-id ID`).
    A stale `result` is removed first, so only this launch's can be read back.
    """
    from powerflow.orchestration import free_port, stop_process_group

    path = accelerate_config_path(cfg)
    cluster = load_accelerate_config(path)
    check_launchable(cluster, path)
    result.unlink(missing_ok=True)
    command = launch_command(cfg, rank_args, free_port())
    process = subprocess.Popen(command, cwd=cfg.project_root, env=launch_environment(cluster), start_new_session=True)
    try:
        status = process.wait()
    finally:
        stop_process_group(process)  # interrupted: no rank outlives the step
    if status != 0:
        raise LaunchError(f"`accelerate launch --config_file {path}` exited with status {status}: the ranks' error is "
                          "printed above. Fix it and run the same command again (training resumes from its last "
                          "checkpoint).")
    if not result.is_file():
        raise LaunchError(f"`accelerate launch --config_file {path}` finished but rank 0 wrote no {result}: check "
                          "that the config starts the ranks (num_processes, distributed_type).")
    return json.loads(result.read_text())


def rank_arguments(alpha: str | None = None, objective: str | None = None, method: str | None = None,
                   run_id: str | None = None, seed: int | None = None) -> list[str]:
    """The arguments `rank_main` parses: which train step to run (a member's α, objective and seed, or
    a baseline's method), and the MLflow run to log into."""
    if method is not None:
        args = ["--method", method]
    else:
        args = ["--alpha", str(alpha), "--objective", str(objective)]
        args += ["--seed", str(seed)] if seed is not None else []
    return args + (["--run-id", run_id] if run_id is not None else [])
