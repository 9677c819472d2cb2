"""One Prefect flow per pipeline stage; the DVC stages reach them through the `powerflow` CLI.

Each flow loads params.yaml (validated) and runs its stage with every step as a Prefect task: the
chains themselves are powerflow.pipeline's (`train_member`, ...), given `step=steps.as_task`. The
sweep flow (flows/pipeline.py) calls these as subflows, so no chain is written twice.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from prefect import flow

from powerflow.config import PipelineConfig, load_pipeline_config
from powerflow.pipeline.evaluate import evaluate_member
from powerflow.pipeline.report import report_sweep
from powerflow.pipeline.train import train_baseline_member, train_member
from tasks import steps


def load_config(params: str, alphas: list[float] | None = None, objectives: list[str] | None = None,
                seeds: list[int] | None = None) -> PipelineConfig:
    """params.yaml with the sweep's α list / objectives / seeds replaced when given (run parameters),
    validated as params.yaml's own lists are."""
    cfg = load_pipeline_config(Path(params))
    if alphas is None and objectives is None and seeds is None:
        return cfg
    sweep = replace(cfg.sweep, alphas=tuple(float(a) for a in (alphas if alphas is not None else cfg.sweep.alphas)),
                    objectives=tuple(objectives if objectives is not None else cfg.sweep.objectives),
                    seeds=tuple(seeds if seeds is not None else cfg.sweep.seeds))
    return replace(cfg, sweep=sweep)


@flow(name="prepare")
def prepare_flow(params: str = "params.yaml") -> dict:
    """Load, validate (Great Expectations) and write the prompt table."""
    return steps.prepare_prompts(load_config(params))


@flow(name="base")
def base_flow(params: str = "params.yaml") -> dict:
    """Pretrain the embedded world's base model (skipped for a hub or local model)."""
    return steps.pretrain_base(load_config(params))


@flow(name="train")
def train_flow(alpha: float, objective: str | None = None, seed: int | None = None,
               params: str = "params.yaml") -> dict:
    """Fine-tune one policy toward p_base^α with `objective` and training seed `seed` (default: the
    sweep's only objective / seed), logging to its MLflow child run."""
    cfg = load_config(params)
    return train_member(cfg, cfg.sweep.member(alpha, objective, seed, listed=False), step=steps.as_task)


@flow(name="train-baseline")
def train_baseline_flow(method: str, params: str = "params.yaml") -> dict:
    """Fine-tune a training-time baseline (grpo or empo) on the same budget, logging to its own run."""
    return train_baseline_member(load_config(params), method, step=steps.as_task)


@flow(name="register-baseline")
def register_baseline_flow(method: str, params: str = "params.yaml") -> dict:
    """Register a trained baseline in the MLflow Model Registry once it is evaluated (idempotent)."""
    return steps.register_baseline(load_config(params), method)


@flow(name="register")
def register_flow(alpha: float, objective: str | None = None, seed: int | None = None,
                  params: str = "params.yaml") -> dict:
    """Register one trained policy (α, objective, seed) in the MLflow Model Registry once it is evaluated
    (idempotent)."""
    cfg = load_config(params)
    return steps.register_policy(cfg, cfg.sweep.member(alpha, objective, seed, listed=False))


@flow(name="evaluate")
def evaluate_flow(run: str, params: str = "params.yaml") -> dict:
    """Evaluate the base model (run="base"), a sweep member's or trained baseline's checkpoint (before it
    is registered), or an inference-time baseline (run="mcmc-4.0", "low_temperature-4.0", "verbalized")."""
    return evaluate_member(load_config(params), run, step=steps.as_task)


@flow(name="evaluate-registered")
def evaluate_registered_flow(model_uri: str, params: str = "params.yaml") -> dict:
    """Evaluate any registered checkpoint, e.g. models:/powerflow-world@best-reasoning."""
    return steps.evaluate_registered(load_config(params), model_uri)


@flow(name="report")
def report_flow(params: str = "params.yaml", alphas: list[float] | None = None,
                objectives: list[str] | None = None, notes: list[str] | None = None,
                seeds: list[int] | None = None) -> dict:
    """Compare the sweep: Markdown report and plots (seed means with several seeds), registry aliases,
    report logged to the parent run."""
    return report_sweep(load_config(params, alphas, objectives, seeds), notes or [], step=steps.as_task)
