"""Shared by every stage: where each step reads and writes, how runs are named, and provenance.

`Layout` is the project's directory layout (data/prepared, models/, outputs/, runs/); a member's
name (alpha-4.0-tb-s0) is powerflow.member.Member's; `run_params`
and `params_sha256` say which params a result depends on; the history functions read and write a
training's curves (history.csv). Nothing here loads a model or talks to a server.
"""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from powerflow.config import PipelineConfig
from powerflow.errors import UserError
from powerflow.io import write_text_atomic
from powerflow.member import Member, alpha_text
from powerflow.registry import baseline_names


BASE_RUN = "base"
VERBALIZED_RUN = "verbalized"
# The lines of a training log that become curves (DVC plots, MLflow step metrics).
HISTORY_KEYS = ("loss", "reward", "powerflow/log_z", "powerflow/residual_var", "powerflow/completion_length",
                "powerflow/log_p_base_per_token", "powerflow/clip_fraction", "powerflow/truncated_fraction")

# Wraps one step function (identity, a timer, the step's Prefect task) before a stage calls it.
Step = Callable[[Callable[..., Any]], Callable[..., Any]]


def as_is(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The identity `Step`: call the library function itself."""
    return fn


class MissingInputError(UserError):
    """A step's input (the output of an earlier step) is absent: run that step first."""


@dataclass(frozen=True)
class Layout:
    """Where every step reads and writes, relative to the project root (params.yaml's folder)."""

    root: Path

    @property
    def prepared(self) -> Path:
        return self.root / "data" / "prepared"

    @property
    def base_model(self) -> Path:
        return self.root / "models" / "base"

    def policy(self, name: str) -> Path:
        return self.root / "models" / "policies" / name

    def train_outputs(self, name: str) -> Path:
        return self.root / "outputs" / "train" / name

    def train_workdir(self, name: str) -> Path:
        """Trainer checkpoints of a run in progress (not a DVC output: a rerun resumes from them)."""
        return self.root / "runs" / "train" / name

    def pending_metrics(self, name: str) -> Path:
        """Step metrics the tracking server has not taken yet (not a DVC output: DVC never deletes it)."""
        from powerflow.tracking.pending import PENDING_FILE

        return self.train_outputs(name) / PENDING_FILE

    def registration(self, name: str) -> Path:
        return self.root / "outputs" / "register" / f"{name}.json"

    def evaluation(self, name: str) -> Path:
        return self.root / "outputs" / "eval" / name

    @property
    def report(self) -> Path:
        return self.root / "outputs" / "report"


def layout_of(cfg: PipelineConfig) -> Layout:
    return Layout(cfg.project_root)


def require_input(path: Path, step: str) -> Path:
    """`path`, or a MissingInputError naming the step that writes it."""
    if not path.exists():
        raise MissingInputError(f"{path} does not exist: run the `{step}` step first (e.g. `dvc repro {step}`).")
    return path


def git_commit(root: Path) -> str:
    """HEAD's commit hash, with "+dirty" when tracked files differ; "unknown" outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def params_sha256(sections: dict[str, Any]) -> str:
    """sha256 of the params sections a result depends on, as canonical JSON."""
    return hashlib.sha256(json.dumps(sections, sort_keys=True, default=str).encode()).hexdigest()


def run_params(cfg: PipelineConfig, alpha: float | None, objective: str | None,
               method: str | None = None, seed: int | None = None) -> dict[str, Any]:
    """The params a run depends on, nested as in params.yaml (logged under dotted names).

    method: None for a Power-Flow member or the base model, else a baseline's name (grpo, mcmc, ...).
    seed: a Power-Flow member's training seed (run.seed); a trained baseline's is train.seed.
    """
    trained = alpha is not None and method is None or method in baseline_names("trained")
    sections = ["model", "world", "base", "data"] + (["train"] if trained else []) + ["evaluate"]
    sections += ["baselines"] if method is not None else []
    params = {name: cfg.raw.get(name, {}) for name in sections}
    if alpha is not None or method is not None:
        params["run"] = {"alpha": alpha, "objective": objective, "method": method or "power_flow"}
        seed = training_seed(cfg, method, seed)
        if seed is not None:
            params["run"]["seed"] = seed
    return params


def training_seed(cfg: PipelineConfig, method: str | None, seed: int | None) -> int | None:
    """The seed a run trained with: a member's sweep seed, train.seed for GRPO/EMPO, None if untrained."""
    if seed is not None:
        return seed
    return cfg.train.seed if method in baseline_names("trained") else None


def history_rows(log_history: list[dict]) -> list[dict]:
    """The per-step training curves (step + HISTORY_KEYS) from the trainer's log history.

    Read from `trainer.state.log_history`, which a resumed trainer restores from its checkpoint, so
    a run that was killed and resumed still has every step (a step logged twice keeps its last
    entry). A key logged as None is left out (EMPO: every group of the step dropped, no reward).
    """
    rows: dict[int, dict] = {}
    for logs in log_history:
        if "loss" in logs:
            row = {"step": int(logs["step"])}
            row.update({k: float(logs[k]) for k in HISTORY_KEYS if logs.get(k) is not None})
            rows[row["step"]] = row
    return [rows[step] for step in sorted(rows)]


def baseline_runs(cfg: PipelineConfig) -> list[dict]:
    """Every baseline run of the sweep: {"name", "method", "alpha", "trained"}, in params order.

    Trained (grpo, empo) are named by the method; inference-time ones on the base model by method
    and α ("mcmc-4.0", "low_temperature-4.0"); verbalized sampling is "verbalized".
    """
    b = cfg.baselines
    runs = [{"name": m, "method": m, "alpha": None, "trained": True} for m in b.train]
    runs += [{"name": f"{m}-{alpha_text(a)}", "method": m, "alpha": float(a), "trained": False}
             for m in b.inference for a in b.alphas]
    runs += [{"name": m, "method": m, "alpha": None, "trained": False} for m in baseline_names("always")]
    return runs


def inference_run(cfg: PipelineConfig, name: str) -> dict | None:
    """The inference-time baseline called `name`, or None when `name` is not one."""
    return next((r for r in baseline_runs(cfg) if r["name"] == name and not r["trained"]), None)


def check_baseline(method: str) -> str:
    """The method if it is a trained baseline, else a UserError naming the choices."""
    if method not in baseline_names("trained"):
        raise UserError(f"--method {method!r}: trained baselines are {', '.join(baseline_names('trained'))}.")
    return method


def write_history_csv(rows: list[dict], path: Path) -> Path:
    """The per-step curves as CSV (columns: step and HISTORY_KEYS present), for `dvc plots`."""
    columns = ["step"] + [k for k in HISTORY_KEYS if any(k in r for r in rows)]
    lines = [",".join(c.replace("/", "_") for c in columns)]
    for r in rows:
        lines.append(",".join("" if r.get(c) is None else f"{r[c]:.6g}" for c in columns))
    return write_text_atomic("\n".join(lines) + "\n", path)


def read_history_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def train_command(name: str) -> str:
    """The `powerflow train` command line of a trained member (alpha-4.0-tb-s0, grpo, ...)."""
    if name in baseline_names("trained"):
        return f"powerflow train --method {name}"
    return Member.from_name(name).command
