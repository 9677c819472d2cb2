"""The pipeline's steps: prepare → base → train → evaluate → register → report.

A trained checkpoint is evaluated from disk (models/policies/<name>/) and registered only after
its evaluation succeeded, with the checksum the evaluation recorded: a crash in evaluation
registers nothing, and the report's aliases only ever point at evaluated versions.

One definition of each step, reached three ways: the `powerflow` CLI (which DVC stages call),
the Prefect tasks in `tasks/` (one task per function here), and tests. Nothing here imports
Prefect. Each step reads params.yaml through `PipelineConfig`, reads its inputs from the
project's directory layout (`Layout`), and writes its outputs atomically, so a failed step
leaves the previous outputs (or none) and never half of one.

Steps that talk to the tracking server (`open_training_run`, `close_training_run`,
`record_evaluation`, `register_policy`, `set_registry_aliases`) are separate from the compute
steps so an orchestrator can retry them alone. The stages that chain several steps
(`train_member`, `evaluate_member`, `report_sweep`) take a `step` wrapper: the CLI passes a timer,
the Prefect flows pass "the task of this step", so each chain is written once.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from powerflow.config import PipelineConfig, UserError, check_alpha
from powerflow.io import atomic_directory, sha256_of_path, write_json_atomic, write_text_atomic
from powerflow.tracking.registry import CHECKPOINT_SHA_TAG

BASE_RUN = "base"
TRAINED_BASELINES = ("grpo", "empo")
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


# ----------------------------------------------------------------------------------- layout
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


def alpha_label(alpha: float | int | str) -> str:
    """The α as it appears in run names and paths: the text DVC and the CLI pass ("0.5", "4.0").

    DVC renders `${item.alpha}` with Python's str() of the YAML value and the stage's output paths
    use that text, so a string (what the CLI receives) is kept as written; a number (a Prefect
    parameter) is written as a float, 4 -> "4.0", matching params.yaml's `4.0`.
    """
    text = alpha.strip() if isinstance(alpha, str) else str(float(alpha))
    try:
        check_alpha(float(text), "--alpha")
    except ValueError as err:
        if isinstance(err, UserError):
            raise
        raise UserError(f"--alpha {text!r} is not a number: pass α as a number > 0, e.g. --alpha 4.0.") from err
    return text


def check_seed(seed: int | str, where: str = "--seed") -> int:
    """A training seed as an int >= 0 (from an int, or the text DVC and the CLI pass); a UserError otherwise."""
    text = seed.strip() if isinstance(seed, str) else seed
    if isinstance(text, str) and text.isdigit():
        return int(text)
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return text
    raise UserError(f"{where} {seed!r} is not a training seed: pass an integer >= 0, e.g. {where} 0.")


def run_name(alpha: float | int | str, objective: str, seed: int | str) -> str:
    """Name of one sweep member, e.g. alpha-4.0-la_tb-s0: MLflow child run, model and output folders.

    Always suffixed with the seed, seed 0 included: DVC's matrix paths are one pattern
    (alpha-${item.alpha}-${item.objective}-s${item.seed}) whatever sweep.seeds holds.
    """
    return f"{group_name(alpha, objective)}-s{check_seed(seed)}"


def group_name(alpha: float | int | str, objective: str) -> str:
    """Name of the seeds of one (α, objective), e.g. alpha-4.0-la_tb: the report's seed-mean row."""
    return f"alpha-{alpha_label(alpha)}-{objective}"


def sweep_members(cfg: PipelineConfig) -> list[tuple[str, str, int]]:
    """(α label, objective, seed) for every run of the sweep, in params.yaml order (DVC's matrix order)."""
    return [(alpha_label(a), obj, seed) for a in cfg.sweep.alphas for obj in cfg.sweep.objectives
            for seed in cfg.sweep.seeds]


def member_seed(cfg: PipelineConfig, seed: int | str | None) -> int:
    """The seed of the member a command names: `seed` itself, or sweep.seeds' only seed when None.

    With several seeds in sweep.seeds a command must say which (DVC's stages always do).
    """
    if seed is not None:
        return check_seed(seed)
    if len(cfg.sweep.seeds) == 1:
        return cfg.sweep.seeds[0]
    raise UserError(f"--seed is required: sweep.seeds lists {len(cfg.sweep.seeds)} seeds "
                    f"({', '.join(map(str, cfg.sweep.seeds))}); pass one of them, e.g. --seed {cfg.sweep.seeds[0]}.")


def member_objective(cfg: PipelineConfig, objective: str | None) -> str:
    """The objective of the member a command names: `objective` itself (one of OBJECTIVES), or
    sweep.objectives' only objective when None (with several, the command must say which)."""
    from powerflow.objectives import OBJECTIVES

    if objective is not None:
        if objective not in OBJECTIVES:
            raise UserError(f"--objective {objective!r} is unknown: use one of {', '.join(OBJECTIVES)}.")
        return objective
    if len(cfg.sweep.objectives) == 1:
        return cfg.sweep.objectives[0]
    raise UserError(f"--objective is required: sweep.objectives lists {', '.join(cfg.sweep.objectives)}; pass one "
                    f"of them, e.g. --objective {cfg.sweep.objectives[0]}.")


def _require(path: Path, step: str) -> Path:
    if not path.exists():
        raise MissingInputError(f"{path} does not exist: run the `{step}` step first (e.g. `dvc repro {step}`).")
    return path


# ------------------------------------------------------------------------------ provenance
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
    trained = alpha is not None and method is None or method in TRAINED_BASELINES
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
        return check_seed(seed)
    return cfg.train.seed if method in TRAINED_BASELINES else None


# ---------------------------------------------------------------------------------- models
def base_model_source(cfg: PipelineConfig) -> str:
    """Directory or model id the pipeline starts from: the pretrained world base, or model.name_or_path."""
    if cfg.model.is_world:
        return str(_require(layout_of(cfg).base_model / "config.json", "base").parent)
    return cfg.model.name_or_path


def load_tokenizer(source: str, trust_remote_code: bool = False):
    """AutoTokenizer for a directory or model id, with a fixable error when it cannot be found."""
    from transformers import AutoTokenizer

    from powerflow.checkpoints import check_remote_code

    check_remote_code(source, trust_remote_code)
    try:
        return AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise UserError(_unknown_model_message(source, err)) from err


def load_causal_lm(source: str, trust_remote_code: bool = False, dtype: str = "float32"):
    """AutoModelForCausalLM from safetensors only, fp32 (or `dtype`), eval mode; fixable error when not found.

    Refused with a CheckpointError (powerflow.checkpoints): pickle-only or corrupt weights, weights
    that do not match config.json name for name and shape for shape (never re-initialised at
    random), and custom code (`auto_map`) unless model.trust_remote_code is true.
    """
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    from powerflow.checkpoints import CheckpointError, check_loading_info

    check_model_source(source, trust_remote_code)
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            source, trust_remote_code=trust_remote_code, use_safetensors=True, dtype=dtype,
            output_loading_info=True, ignore_mismatched_sizes=True)
    except SafetensorError as err:
        raise CheckpointError(f"the weights of {source} are not readable safetensors ({err}): they are truncated or "
                              "corrupt; copy or download the model again.") from err
    except (OSError, ValueError) as err:
        raise UserError(_unknown_model_message(source, err)) from err
    check_loading_info(source, info)
    return model.eval()


def check_model_source(source: str, trust_remote_code: bool = False) -> None:
    """What load_causal_lm checks before loading (weights format, file headers, custom code), alone: cheap."""
    from powerflow.checkpoints import check_checkpoint_dir, check_remote_code

    if Path(source).expanduser().is_dir():
        check_checkpoint_dir(Path(source).expanduser(), trust_remote_code)
    else:
        check_remote_code(source, trust_remote_code)


def _unknown_model_message(source: str, err: Exception) -> str:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    looks_local = source.startswith((".", "/", "~")) or source.count("/") > 1
    if looks_local and not Path(source).expanduser().exists():
        first = "no such directory"
    return (f"model {source!r} could not be loaded ({first}). model.name_or_path must be \"world\", a local "
            "model directory with safetensors weights, or a model id already in the Hugging Face cache "
            "(this machine is offline: download it elsewhere and copy the directory here).")


# --------------------------------------------------------------------------------- prepare
def prepare_prompts(cfg: PipelineConfig) -> dict:
    """Load, map, render and validate the prompt table; write data/prepared/ (DVC output)."""
    from powerflow.data import prepare_prompts as prepare

    world_rows = None
    if cfg.model.is_world or cfg.data.source == "world":
        from powerflow.world import build_tokenizer, world_prompt_rows

        world_rows = world_prompt_rows(cfg.world) if cfg.data.source == "world" else None
    if cfg.model.is_world:
        tokenizer = build_tokenizer(cfg.world)
    else:
        tokenizer = load_tokenizer(cfg.model.name_or_path, cfg.model.trust_remote_code)
    prepared = prepare(cfg.data, tokenizer, layout_of(cfg).prepared, cfg.project_root, world_rows=world_rows)
    return dict(prepared.manifest)


# ------------------------------------------------------------------------------------ base
def pretrain_base(cfg: PipelineConfig) -> dict:
    """Pretrain the embedded world's base model (models/base/); a hub or local model skips it.

    For a non-world model the step writes only models/base/powerflow_base.json naming the model,
    so DVC's graph stays the same whichever base is used.
    """
    out = layout_of(cfg).base_model
    if not cfg.model.is_world:
        load_tokenizer(cfg.model.name_or_path, cfg.model.trust_remote_code)  # fail here, not in train
        check_model_source(cfg.model.name_or_path, cfg.model.trust_remote_code)
        with atomic_directory(out) as tmp:
            write_json_atomic({"name_or_path": cfg.model.name_or_path, "pretrained_here": False},
                              tmp / "powerflow_base.json")
        return {"base/pretrained_here": 0.0}
    from powerflow.world import pretrain_base as pretrain

    return pretrain(cfg.world, cfg.base, out)


# ----------------------------------------------------------------------------------- train
def training_prompts(cfg: PipelineConfig) -> tuple[list[str], dict]:
    """Training prompts (split train, families in train.families) and the prepared manifest.

    Only the prompt table is read: answer keys never reach training.
    """
    from powerflow.data import load_prepared

    prompts, _answers, manifest = load_prepared(_require(layout_of(cfg).prepared, "prepare"))
    rows = prompts[(prompts["split"] == "train") & prompts["family"].isin(cfg.train.families)]
    if rows.empty:
        raise UserError(
            f"no training prompts: data/prepared has no split=train rows in families {list(cfg.train.families)}; "
            "check data.source and train.families in params.yaml."
        )
    return rows["prompt"].tolist(), manifest


def trainer_arguments(cfg: PipelineConfig, alpha: float, objective: str, output_dir: Path,
                      seed: int | None = None):
    """PowerFlowConfig for one sweep member from the `train:` section, trained with `seed` (its sweep seed)."""
    from powerflow.trainer import PowerFlowConfig

    t = cfg.train
    return PowerFlowConfig(alpha=alpha, objective=objective, logz=t.logz, logz_learning_rate=t.logz_learning_rate, huber_delta=t.huber_delta,
                           base_mix=t.base_mix,
                           **shared_training_arguments(cfg, output_dir, seed=seed))


def shared_training_arguments(cfg: PipelineConfig, output_dir: Path, seed: int | None = None) -> dict[str, Any]:
    """The GRPOConfig settings every trained method shares (one budget: steps, batch, lr, lengths).

    seed: TRL's seed (adapter init, rollouts, data order); None = train.seed, the baselines' seed. A
    Power-Flow member passes its sweep seed (sweep.seeds).
    """
    import torch

    t = cfg.train
    return dict(
        output_dir=str(output_dir),
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_schedule,
        # one optimizer step = prompts_per_step × G completions per process, in gradient_accumulation_steps parts
        per_device_train_batch_size=t.prompts_per_step * t.num_generations // t.gradient_accumulation_steps,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        num_generations=t.num_generations,
        max_completion_length=t.max_completion_length,
        max_steps=t.steps,
        epsilon=t.clip_epsilon,
        max_grad_norm=t.max_grad_norm,
        activation_checkpointing=t.gradient_checkpointing,  # transformers 5's name for gradient checkpointing
        bf16=t.bf16,
        **rollout_engine_arguments(cfg),
        use_cpu=not torch.cuda.is_available(),
        report_to="none",
        logging_steps=1,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=1,
        seed=t.seed if seed is None else seed,
        disable_tqdm=False,
    )


def rollout_engine_arguments(cfg: PipelineConfig) -> dict[str, Any]:
    """TRL's vLLM settings from the `train:` section; {} when rollouts use transformers' generate.

    Checked here, at train time, because it depends on the machine: use_vllm needs the vllm package
    (the gpu extra) and a CUDA GPU, else a UserError naming the fix. vLLM's context is the longest
    prompt data.max_prompt_tokens allows plus train.max_completion_length, so its KV cache is sized
    for what training generates rather than for the model's full context (131k for Llama 3.1).
    """
    t = cfg.train
    if not t.use_vllm:
        return {}
    from powerflow.eval.generation import require_vllm

    require_vllm("train.use_vllm=true", "set train.use_vllm: false (rollouts with transformers' generate)")
    settings = dict(use_vllm=True, vllm_mode=t.vllm_mode,
                    vllm_max_model_length=cfg.data.max_prompt_tokens + t.max_completion_length)
    if t.vllm_mode == "colocate":
        settings["vllm_gpu_memory_utilization"] = t.vllm_gpu_memory_utilization
    elif t.vllm_server_base_url is not None:
        settings["vllm_server_base_url"] = t.vllm_server_base_url
    return settings


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


# The stamp of the params a workdir's checkpoints were trained with, and the MLflow run they log to.
WORKDIR_STAMP = "params.sha256"
WORKDIR_RUN = "run.json"


def training_workdir(workdir: Path, params: dict) -> Path:
    """`workdir` (runs/train/<name>/) ready for a run with `params`: kept if a run with the same
    params left it (its checkpoints and MLflow run id are resumed), cleared first otherwise.

    The params' hash is kept in workdir/params.sha256, so a rerun never resumes someone else's
    training or logs into someone else's run.
    """
    import shutil

    stamp, digest = workdir / WORKDIR_STAMP, params_sha256(params)
    if workdir.is_dir() and (not stamp.is_file() or stamp.read_text().strip() != digest):
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(digest + "\n", stamp)
    return workdir


def resumable_checkpoint(workdir: Path, params: dict) -> str | None:
    """The newest complete checkpoint a killed run with the same params left in `workdir`, if any.

    The trainer writes trainer_state.json last, so a checkpoint without a readable one was cut
    off mid-write by the kill: it is removed and the one before it (kept by save_total_limit
    until the new one is whole) is resumed instead.
    """
    import shutil

    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    training_workdir(workdir, params)
    by_step = sorted((int(p.name.rsplit("-", 1)[1]), p) for p in workdir.glob(f"{PREFIX_CHECKPOINT_DIR}-*")
                     if p.is_dir() and p.name.rsplit("-", 1)[1].isdigit())
    for _step, path in reversed(by_step):
        if checkpoint_is_complete(path):
            return str(path)
        shutil.rmtree(path)
    return None


def train_or_restore(trainer, checkpoint: str | None) -> None:
    """trainer.train(), resumed from `checkpoint`; a checkpoint of the last step is only loaded.

    transformers' Trainer checks max_steps only after an optimizer step, so train() resumed from a
    checkpoint saved at max_steps would train one step more (measured: global_step max_steps + 1).
    A run that finished training but failed to close its MLflow run would then not end with the
    parameters it trained. Such a checkpoint is loaded the way train() loads one (weights, log Z
    head, trainer state with its log history) and nothing is trained.
    """
    from transformers import TrainerState

    if checkpoint is not None:
        state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
        if state.global_step >= trainer.args.max_steps > 0:
            trainer._load_from_checkpoint(checkpoint)
            trainer.state = state
            return
    trainer.train(resume_from_checkpoint=checkpoint)


def checkpoint_is_complete(path: Path) -> bool:
    """Whether a trainer checkpoint was written to the end (its trainer_state.json parses)."""
    try:
        json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return True


def checkpoint_step(checkpoint: str | None) -> int:
    """The global step a checkpoint directory (…/checkpoint-<step>) was saved at; 0 for None."""
    return int(Path(checkpoint).name.rsplit("-", 1)[1]) if checkpoint else 0


def train_policy(cfg: PipelineConfig, alpha: str, objective: str, seed: int | str,
                 run_id: str | None = None) -> dict:
    """Fine-tune the base toward p_base^α with PowerFlowTrainer, seeded with `seed`; write models/policies/<name>/.

    The policy is saved merged (LoRA folded into the weights) as a standalone transformers
    directory, with the log Z head and the resolved config beside it. Curves go to
    outputs/train/<name>/history.csv and, when `run_id` is given, to that MLflow run step by step.
    A rerun after a crash resumes from the last trainer checkpoint in runs/train/<name>/.
    """
    from datasets import Dataset

    from powerflow import distributed
    from powerflow.trainer import PowerFlowTrainer

    seed = check_seed(seed)
    name, value = run_name(alpha, objective, seed), float(alpha_label(alpha))
    if distributed.launches(cfg):  # train.accelerate_config: this step runs on the config's ranks
        return distributed.train_on_ranks(
            cfg, distributed.rank_arguments(alpha_label(alpha), objective, seed=seed, run_id=run_id),
            layout_of(cfg).train_outputs(name) / "metrics.json")
    prompts, manifest = training_prompts(cfg)

    def build(model, tokenizer, peft_config, callbacks):
        args = trainer_arguments(cfg, value, objective, layout_of(cfg).train_workdir(name), seed=seed)
        return PowerFlowTrainer(model=model, args=args, train_dataset=Dataset.from_dict({"prompt": prompts}),
                                processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks)

    summary = fit_and_save(cfg, name, build, run_params(cfg, value, objective, seed=seed), run_id)
    summary.update({"alpha": value, "objective": objective, "seed": seed,
                    "prompts_sha256": manifest.get("prompts_sha256")})
    if distributed.is_main_rank():
        write_json_atomic(summary, layout_of(cfg).train_outputs(name) / "metrics.json")
    return summary


def fit_and_save(cfg: PipelineConfig, name: str, build: Callable[..., Any], params: dict,
                 run_id: str | None) -> dict:
    """Train the trainer `build(model, tokenizer, peft_config, callbacks)` makes from the base model;
    save the merged policy to models/policies/<name>/ and the curves to outputs/train/<name>/.

    Resumes from runs/train/<name>/ when a killed run with the same params left a checkpoint; the
    trainer saves a last checkpoint at the final step, and that folder is kept until the MLflow run
    is closed (`close_member_run`), so a rerun after a failed close trains nothing again. Step
    metrics the tracking server did not take are kept in outputs/train/<name>/mlflow_pending.jsonl
    (`MlflowStepLogger`). Returns the training summary (train/* numbers). On several ranks
    (powerflow.distributed) every rank trains; only rank 0 writes the policy and the curves.
    """
    import shutil

    from peft import LoraConfig

    rollout_engine_arguments(cfg)  # use_vllm on a machine without vLLM fails here, before the model loads
    lay = layout_of(cfg)
    source = base_model_source(cfg)
    tokenizer = load_tokenizer(source, cfg.model.trust_remote_code)
    model = load_causal_lm(source, cfg.model.trust_remote_code, dtype="bfloat16" if cfg.train.bf16 else "float32")
    workdir = lay.train_workdir(name)
    peft_config = None
    if cfg.train.lora_r > 0:
        peft_config = LoraConfig(r=cfg.train.lora_r, lora_alpha=cfg.train.lora_alpha,
                                 target_modules="all-linear", lora_dropout=0.0)
    callbacks = []
    if run_id is not None:
        from powerflow.tracking import MlflowStepLogger

        callbacks.append(MlflowStepLogger(run_id, prefix="train/", spool=lay.pending_metrics(name),
                                          timeout_s=cfg.tracking.timeout_s))
    trainer = build(model, tokenizer, peft_config, callbacks)
    started = time.perf_counter()
    with trainer.accelerator.main_process_first():  # rank 0 clears a stale workdir before the others look
        resume = resumable_checkpoint(workdir, params)
    train_or_restore(trainer, resume)
    seconds = time.perf_counter() - started

    if trainer.accelerator.num_processes > 1:
        save_gathered_policy(cfg, trainer, tokenizer, peft_config is not None, workdir / "gathered", lay.policy(name))
    else:
        with atomic_directory(lay.policy(name)) as tmp:
            policy = trainer.model.merge_and_unload() if peft_config is not None else trainer.model
            policy.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            if hasattr(trainer, "save_powerflow_files"):
                trainer.save_powerflow_files(tmp)
    rows = history_rows(trainer.state.log_history)
    summary = training_summary(trainer, rows, seconds, resumed_from=resume)
    if trainer.accelerator.is_main_process:
        if run_id is None:  # no run to close: the policy is saved, its checkpoints are no longer needed
            shutil.rmtree(workdir, ignore_errors=True)
        write_history_csv(rows, lay.train_outputs(name) / "history.csv")
    return summary


def save_gathered_policy(cfg: PipelineConfig, trainer, tokenizer, lora: bool, staging: Path, out: Path) -> None:
    """Several ranks: save the policy as one process does, from the weights every rank gathers.

    Every rank joins `trainer.save_model` (collective: FSDP with FULL_STATE_DICT and DeepSpeed ZeRO-3
    gather their shards there; the adapter, or the full model, and PowerFlowTrainer's log Z head and
    config land in `staging`). Rank 0 then folds the saved adapter into a fresh copy of the base and
    writes `out` whole: the same files as a single-process run.
    """
    import shutil

    trainer.save_model(str(staging))
    trainer.accelerator.wait_for_everyone()
    if not trainer.accelerator.is_main_process:
        return
    from powerflow.trainer import CONFIG_FILE, LOGZ_HEAD_FILE

    with atomic_directory(out) as tmp:
        if lora:
            from peft import PeftModel

            base = load_causal_lm(base_model_source(cfg), cfg.model.trust_remote_code)
            policy = PeftModel.from_pretrained(base, str(staging)).merge_and_unload()
        else:
            policy = load_causal_lm(str(staging), cfg.model.trust_remote_code)
        policy.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        for extra in (LOGZ_HEAD_FILE, CONFIG_FILE):
            if (staging / extra).is_file():
                shutil.copy2(staging / extra, tmp / extra)


# ------------------------------------------------------------------------------ baselines
def baseline_runs(cfg: PipelineConfig) -> list[dict]:
    """Every baseline run of the sweep: {"name", "method", "alpha", "trained"}, in params order.

    Trained (grpo, empo) are named by the method; inference-time ones on the base model by method
    and α ("mcmc-4.0", "low_temperature-4.0"); verbalized sampling is "verbalized".
    """
    b = cfg.baselines
    runs = [{"name": m, "method": m, "alpha": None, "trained": True} for m in b.train]
    runs += [{"name": f"{m}-{alpha_label(a)}", "method": m, "alpha": float(a), "trained": False}
             for m in b.inference for a in b.alphas]
    runs.append({"name": VERBALIZED_RUN, "method": "verbalized", "alpha": None, "trained": False})
    return runs


def inference_run(cfg: PipelineConfig, name: str) -> dict | None:
    """The inference-time baseline called `name`, or None when `name` is not one."""
    return next((r for r in baseline_runs(cfg) if r["name"] == name and not r["trained"]), None)


def check_baseline(method: str) -> str:
    """The method if it is a trained baseline, else a UserError naming the choices."""
    if method not in TRAINED_BASELINES:
        raise UserError(f"--method {method!r}: trained baselines are {', '.join(TRAINED_BASELINES)}.")
    return method


def training_rows(cfg: PipelineConfig) -> list[dict]:
    """Training prompts joined with their answer keys and families: for GRPO's gold-answer reward,
    the one training method that reads answers."""
    from powerflow.data import load_prepared

    prompts, answers, _ = load_prepared(_require(layout_of(cfg).prepared, "prepare"))
    rows = prompts[(prompts["split"] == "train") & prompts["family"].isin(cfg.train.families)]
    rows = rows.merge(answers[["id", "answer"]], on="id", how="left")
    out = []
    for r in rows.to_dict("records"):
        answer = json.loads(r["answer"]) if isinstance(r["answer"], str) else r["answer"]
        out.append({"prompt": r["prompt"], "answer": answer, "family": r["family"]})
    return out


def train_baseline(cfg: PipelineConfig, method: str, run_id: str | None = None) -> dict:
    """Fine-tune the base with a baseline's reward (GRPO: gold accuracy; EMPO: semantic entropy)
    on the same prompts and budget as the Power-Flow members; write models/policies/<method>/."""
    from datasets import Dataset
    from trl import GRPOConfig

    from powerflow import distributed
    from powerflow.baselines.trainers import baseline_trainer, recipe

    method = check_baseline(method)
    if distributed.launches(cfg):  # train.accelerate_config: this step runs on the config's ranks
        return distributed.train_on_ranks(cfg, distributed.rank_arguments(method=method, run_id=run_id),
                                          layout_of(cfg).train_outputs(method) / "metrics.json")
    _prompts, manifest = training_prompts(cfg)
    rows = training_rows(cfg)
    if method == "grpo":  # answers are JSON strings so lists (open-ended keys) fit one column type
        columns = {"prompt": [r["prompt"] for r in rows], "answer": [json.dumps(r["answer"]) for r in rows],
                   "family": [r["family"] for r in rows]}
    else:
        columns = {"prompt": [r["prompt"] for r in rows], "family": [r["family"] for r in rows]}
    # β = 0 as in the benchmark's GRPO; truncated completions (no EOS within the length limit) are
    # masked out of the loss, the DAPO/TRL recipe: without it EMPO collapses on the world to one
    # runaway completion repeating "answer 19" that always agrees with itself.
    args = GRPOConfig(beta=0.0, mask_truncated_completions=True,
                      **shared_training_arguments(cfg, layout_of(cfg).train_workdir(method)))

    def build(model, tokenizer, peft_config, callbacks):  # the world's grader and answer extraction
        return baseline_trainer(method, model, tokenizer, Dataset.from_dict(columns), args,
                                peft_config=peft_config, callbacks=callbacks)

    summary = fit_and_save(cfg, method, build, run_params(cfg, None, None, method), run_id)
    summary.update({"method": method, "prompts_sha256": manifest.get("prompts_sha256")})
    out = layout_of(cfg).train_outputs(method)
    if distributed.is_main_rank():
        write_json_atomic(recipe(method, args), out / "recipe.json")
        write_json_atomic(summary, out / "metrics.json")
    return summary


def train_baseline_member(cfg: PipelineConfig, method: str, step: Step = as_is) -> dict:
    """The `train_baseline` stage for one method: open its run, train, close the run."""
    method = check_baseline(method)
    run_id = step(open_member_run)(cfg, method, None, None, method)
    summary = step(train_baseline)(cfg, method, run_id=run_id)
    step(close_member_run)(cfg, method, run_id)
    return summary


def register_baseline(cfg: PipelineConfig, method: str) -> dict:
    """Register models/policies/<method> like a Power-Flow policy (tag method=<method>)."""
    method = check_baseline(method)
    return register_checkpoint_of(cfg, method, None, None, method)


def training_summary(trainer, rows: list[dict], seconds: float, resumed_from: str | None) -> dict:
    """Final-step training numbers (slash-grouped names) for metrics.json and MLflow."""
    last = rows[-1] if rows else {}
    summary = {f"train/{k}": v for k, v in last.items() if k != "step"}
    summary.update({
        "train/steps": trainer.state.global_step,
        "train/seconds": seconds,
        "train/skipped_steps": getattr(trainer, "skipped_steps", 0),
        "train/resumed": resumed_from is not None,
        "train/resumed_from_step": checkpoint_step(resumed_from),
    })
    return summary


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


# ------------------------------------------------------------------------------- tracking
def tracking_experiment(cfg: PipelineConfig) -> str:
    """Connect to the tracking store (fails fast with a fix when unreachable); the experiment id."""
    from powerflow import tracking

    return tracking.connect(cfg.tracking, cfg.project_root)


def sweep_parent(cfg: PipelineConfig, experiment_id: str) -> str:
    from powerflow import tracking

    return tracking.sweep_parent_run(experiment_id, cfg.sweep.name, tags={"powerflow.base_model": cfg.model.name_or_path})


def run_tags(cfg: PipelineConfig, alpha: float | None, objective: str | None, prompts_sha: str,
             method: str | None = None, seed: int | None = None) -> dict[str, str]:
    """Tags every run and registered version carries: what it is and where it came from (`seed`: the
    training seed of a trained run)."""
    params = run_params(cfg, alpha, objective, method, seed)
    tags = {
        "base_model": cfg.model.name_or_path,
        "prompts_sha256": prompts_sha,
        "git_commit": git_commit(cfg.project_root),
        "params_sha256": params_sha256(params),
        "sweep": cfg.sweep.name,
    }
    if alpha is not None:
        tags["alpha"] = f"{alpha:g}"
    if objective is not None:
        tags["objective"] = str(objective)
    if alpha is not None or method is not None:
        tags["method"] = method or "power_flow"
    seed = training_seed(cfg, method, seed) if alpha is not None or method is not None else None
    if seed is not None:
        tags["seed"] = str(seed)
    return tags


def open_training_run(cfg: PipelineConfig, alpha: str, objective: str, seed: int | str) -> str:
    """Create the MLflow child run of one sweep member (params, tags) before training starts.

    Its id is written to outputs/train/<name>/run.json so later steps log into the same run.
    """
    seed = check_seed(seed)
    return open_member_run(cfg, run_name(alpha, objective, seed), float(alpha_label(alpha)), objective, seed=seed)


def open_member_run(cfg: PipelineConfig, name: str, alpha: float | None, objective: str | None,
                    method: str | None = None, seed: int | None = None) -> str:
    """The MLflow child run of one trained member (Power-Flow or a baseline); run.json holds its id.

    A training of the same params that was killed or could not close its run left its run id in
    runs/train/<name>/run.json: its rerun resumes that run (and its checkpoints) instead of
    starting a second one, as long as the store still has it.
    """
    from powerflow import tracking
    from powerflow.data import load_prepared

    lay = layout_of(cfg)
    _prompts, _answers, manifest = load_prepared(_require(lay.prepared, "prepare"))
    experiment_id = tracking_experiment(cfg)
    params = run_params(cfg, alpha, objective, method, seed)
    workdir = training_workdir(lay.train_workdir(name), params)
    record = unfinished_run(workdir, experiment_id)
    if record is None:
        parent = sweep_parent(cfg, experiment_id)
        tags = run_tags(cfg, alpha, objective, manifest.get("prompts_sha256", ""), method, seed)
        run_id = tracking.start_child_run(experiment_id, parent, name, params, tags)
        record = {"run_id": run_id, "parent_run_id": parent, "experiment_id": experiment_id, "name": name}
        write_json_atomic(record, workdir / WORKDIR_RUN)
    write_json_atomic(record, lay.train_outputs(name) / "run.json")
    return record["run_id"]


def unfinished_run(workdir: Path, experiment_id: str) -> dict | None:
    """The run record (run.json) an unfinished training in `workdir` logged to, if the store has that run."""
    from powerflow import tracking

    path = workdir / WORKDIR_RUN
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if record.get("experiment_id") != experiment_id or not tracking.run_is_active(record["run_id"], experiment_id):
        return None
    return record


def close_training_run(cfg: PipelineConfig, alpha: str, objective: str, seed: int | str, run_id: str) -> None:
    """Log the final training numbers and the resolved config to the run."""
    close_member_run(cfg, run_name(alpha, objective, seed), run_id)


class ResultsNotLoggedError(UserError):
    """Training finished but the tracking server stayed unreachable; the message says where the
    results are kept and which command sends them."""


def close_member_run(cfg: PipelineConfig, name: str, run_id: str) -> None:
    """Send the run's pending step metrics, then its final numbers, config and curves; clear its workdir.

    An unreachable tracking server is waited for up to tracking.outage_wait_s, then the step fails
    with ResultsNotLoggedError naming the files that hold the results. runs/train/<name>/ (the
    final checkpoint and the run id) is removed only once everything is logged, so the rerun the
    message asks for resumes at the last step, trains nothing, and logs into the same run.
    """
    import shutil

    from powerflow import tracking

    lay = layout_of(cfg)
    deadline = time.monotonic() + cfg.tracking.outage_wait_s
    while True:
        try:
            with tracking.bounded_requests():
                log_training_results(cfg, name, run_id)
            break
        except Exception as err:
            if not tracking.is_unreachable(err):
                raise
            if time.monotonic() >= deadline:
                raise ResultsNotLoggedError(results_kept_message(cfg, name, run_id, err)) from err
            time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
    shutil.rmtree(lay.train_workdir(name), ignore_errors=True)


def results_kept_message(cfg: PipelineConfig, name: str, run_id: str, err: Exception) -> str:
    """Where a trained member's results wait for an unreachable tracking server, and the command that sends them."""
    from powerflow.tracking import PendingMetrics, resolve_tracking_uri

    lay = layout_of(cfg)
    out, pending = lay.train_outputs(name), PendingMetrics(lay.pending_metrics(name))
    first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
    kept = [f"the policy {lay.policy(name)}/", f"its numbers {out / 'metrics.json'} and {out / 'history.csv'}"]
    if pending.path.is_file():
        kept.append(f"{len(pending)} step metrics not yet logged in {pending.path}")
    kept.append(f"the final trainer checkpoint in {lay.train_workdir(name)}/")
    return (f"training of {name} finished, but the MLflow tracking store "
            f"{resolve_tracking_uri(cfg.tracking, cfg.project_root)} did not take its results within "
            f"tracking.outage_wait_s={cfg.tracking.outage_wait_s:g} s ({first}). Nothing is lost; kept on disk: "
            f"{'; '.join(kept)}. Start the server and run `{train_command(name)}` again (or `dvc repro`): it "
            f"resumes at the final checkpoint, trains no further step, and logs everything to run {run_id}.")


def train_command(name: str) -> str:
    """The `powerflow train` command line of a trained member (alpha-4.0-la_tb-s0, grpo, ...)."""
    if name in TRAINED_BASELINES:
        return f"powerflow train --method {name}"
    alpha, objective, seed = name.removeprefix("alpha-").rsplit("-", 2)
    return f"powerflow train --alpha {alpha} --objective {objective} --seed {seed.removeprefix('s')}"


def log_training_results(cfg: PipelineConfig, name: str, run_id: str) -> None:
    """Log a trained member's pending step metrics, final numbers, resolved config and curves to its run."""
    from powerflow import tracking

    tracking_experiment(cfg)
    tracking.PendingMetrics(layout_of(cfg).pending_metrics(name)).send()
    out = layout_of(cfg).train_outputs(name)
    metrics = json.loads((out / "metrics.json").read_text())
    curves = {f"train/{k}" for k in HISTORY_KEYS}  # already logged step by step during training
    final = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and k not in curves}
    tracking.log_metrics(run_id, final, step=int(metrics.get("train/steps", 0)))
    config_file = layout_of(cfg).policy(name) / "powerflow_config.json"
    if config_file.exists():
        tracking.log_artifacts(run_id, config_file, "config")
    recipe = out / "recipe.json"
    if recipe.exists():
        tracking.log_artifacts(run_id, recipe, "config")
    tracking.log_artifacts(run_id, out / "history.csv", "training")


def train_member(cfg: PipelineConfig, alpha: str, objective: str, seed: int | str, step: Step = as_is) -> dict:
    """The whole `train` stage for one (α, objective, seed): open the run, train, close the run."""
    seed = check_seed(seed)
    run_id = step(open_training_run)(cfg, alpha, objective, seed)
    summary = step(train_policy)(cfg, alpha, objective, seed, run_id=run_id)
    step(close_training_run)(cfg, alpha, objective, seed, run_id)
    return summary


def training_run_id(cfg: PipelineConfig, name: str) -> str:
    path = _require(layout_of(cfg).train_outputs(name) / "run.json", "train")
    return json.loads(path.read_text())["run_id"]


# -------------------------------------------------------------------------------- register
def register_policy(cfg: PipelineConfig, alpha: str, objective: str, seed: int | str) -> dict:
    """Register models/policies/<name> in the Model Registry (idempotent); write outputs/register/<name>.json."""
    seed = check_seed(seed)
    return register_checkpoint_of(cfg, run_name(alpha, objective, seed), float(alpha_label(alpha)), objective,
                                  seed=seed)


def register_checkpoint_of(cfg: PipelineConfig, name: str, alpha: float | None, objective: str | None,
                           method: str | None = None, seed: int | None = None) -> dict:
    """Register one trained member's checkpoint after its evaluation; write outputs/register/<name>.json.

    Only an evaluated checkpoint is registered: outputs/eval/<name>/ must exist and record the
    checkpoint's current sha256 (a crashed or stale evaluation registers nothing). The version is
    tagged with where it came from (`run_tags`) and its headline evaluation numbers (eval/...).
    """
    from powerflow import tracking
    from powerflow.data import load_prepared

    lay = layout_of(cfg)
    checkpoint = _require(lay.policy(name), "train")
    checksum, metrics = evaluated_checkpoint(cfg, name, checkpoint)
    _p, _a, manifest = load_prepared(_require(lay.prepared, "prepare"))
    tracking_experiment(cfg)
    model_name = tracking.registered_model_name(cfg.tracking, cfg.model.name_or_path)
    tags = run_tags(cfg, alpha, objective, manifest.get("prompts_sha256", ""), method, seed) | evaluation_tags(metrics)
    version = tracking.register_checkpoint(training_run_id(cfg, name), checkpoint, model_name, tags,
                                           checksum=checksum)
    if not version.created:  # registered before: its evaluation may have been rerun since
        tracking.set_version_tags(model_name, version.version, evaluation_tags(metrics))
    record = asdict(version) | {"alpha": alpha, "objective": objective, "run": name}
    if training_seed(cfg, method, seed) is not None:
        record["seed"] = training_seed(cfg, method, seed)
    if method is not None:
        record["method"] = method
    created = record.pop("created")  # kept out of the file: registering again must not change it
    write_json_atomic(record, lay.registration(name))
    return record | {"created": created}


class StaleEvaluationError(UserError):
    """The evaluation on disk is of other bytes than the checkpoint about to be registered."""


# Evaluation numbers a registered version carries as tags (eval/<metric>), when the run has them.
EVAL_TAG_METRICS = ("reasoning/accuracy_greedy", "reasoning/accuracy_mean", "open_ended/coverage",
                    "open_ended/validity", "open_ended/semantic_diversity")


def evaluated_checkpoint(cfg: PipelineConfig, name: str, checkpoint: Path) -> tuple[str, dict]:
    """(sha256 of `checkpoint`, its evaluation metrics) once outputs/eval/<name>/ is an evaluation of
    exactly these bytes; a MissingInputError / StaleEvaluationError (nothing registered) otherwise."""
    out = layout_of(cfg).evaluation(name)
    metrics = json.loads(_require(out / "metrics.json", "evaluate").read_text())
    evaluated = json.loads(_require(out / "settings.json", "evaluate").read_text()).get(CHECKPOINT_SHA_TAG)
    checksum = sha256_of_path(checkpoint)
    if evaluated != checksum:
        raise StaleEvaluationError(
            f"{out} is not an evaluation of {checkpoint} (checkpoint_sha256 {str(evaluated)[:12]} there, "
            f"{checksum[:12]} now): evaluate it again first (`powerflow evaluate --run {name}` or `dvc repro`).")
    return checksum, metrics


def evaluation_tags(metrics: dict) -> dict[str, str]:
    """Headline evaluation numbers as version tags: {"eval/reasoning/accuracy_mean": "0.4375", ...}."""
    return {f"eval/{k}": f"{float(metrics[k]):.6g}" for k in EVAL_TAG_METRICS
            if isinstance(metrics.get(k), (int, float))}


# -------------------------------------------------------------------------------- evaluate
def evaluation_rows(cfg: PipelineConfig) -> list[dict]:
    """Eval-split prompts joined with their answer keys (the only place answers are read)."""
    from powerflow.data import load_prepared

    prompts, answers, _ = load_prepared(_require(layout_of(cfg).prepared, "prepare"))
    rows = prompts[prompts["split"] == "eval"].merge(answers[["id", "answer"]], on="id", how="left")
    out = []
    for r in rows.to_dict("records"):
        r["answer"] = json.loads(r["answer"]) if isinstance(r["answer"], str) else r["answer"]
        out.append(r)
    if not out:
        raise UserError("no eval prompts in data/prepared: set data.eval_fraction > 0 or give the source a split column.")
    return out


def evaluate_target(cfg: PipelineConfig, name: str, progress: bool = True) -> dict:
    """Evaluate the base model (name "base"), an inference-time baseline, or a trained checkpoint
    (a sweep member or a trained baseline); write outputs/eval/<name>/ whole, or nothing.

    A trained checkpoint is evaluated from models/policies/<name>/, before it is registered:
    settings.json records its checkpoint_sha256, and the register step registers those bytes only
    (`register_checkpoint_of`), so what is registered is exactly what was evaluated.
    """
    lay = layout_of(cfg)
    if name == BASE_RUN:
        return evaluate_checkpoint(cfg, base_model_source(cfg), lay.evaluation(name), progress)
    method = inference_run(cfg, name)
    if method is not None:
        return evaluate_inference_method(cfg, method, progress)
    checkpoint = trained_checkpoint(cfg, name)
    return evaluate_checkpoint(cfg, str(checkpoint), lay.evaluation(name), progress,
                               alpha=checkpoint_alpha(checkpoint),
                               provenance={CHECKPOINT_SHA_TAG: sha256_of_path(checkpoint)})


def trained_checkpoint(cfg: PipelineConfig, name: str) -> Path:
    """models/policies/<name>/ of a trained run, with a fixable error naming the runs when absent."""
    path = layout_of(cfg).policy(name)
    if not (path / "config.json").is_file():
        members = [run_name(a, o, s) for a, o, s in sweep_members(cfg)] + list(cfg.baselines.train)
        raise MissingInputError(
            f"{path} holds no trained model: {name!r} must be \"base\", an inference-time baseline, or a trained run "
            f"({', '.join(members)}) whose `train` stage finished (e.g. `dvc repro train@...`).")
    return path


def checkpoint_alpha(checkpoint: Path) -> float | None:
    """The α a Power-Flow checkpoint was trained toward (its powerflow_config.json); None for a baseline."""
    config = checkpoint / "powerflow_config.json"
    alpha = json.loads(config.read_text()).get("alpha") if config.is_file() else None
    return float(alpha) if alpha is not None else None


def evaluate_inference_method(cfg: PipelineConfig, run: dict, progress: bool = True) -> dict:
    """Evaluate an inference-time baseline: the base model with the method's sampler.

    Greedy accuracy is the base model's (greedy decoding has no temperature); the n sampled
    answers come from the method, and cost/inference_tokens_per_answer counts every token it
    generated. Verbalized sampling on a model without a chat template is not applicable: the run
    writes its outputs with eval/applicable = 0 and the reason, and no numbers.
    """
    source = base_model_source(cfg)
    out_dir = layout_of(cfg).evaluation(run["name"])
    if run["method"] == "verbalized":
        from powerflow.sampling.verbalized import requires_instruction_model

        if requires_instruction_model(load_tokenizer(source, cfg.model.trust_remote_code)):
            return write_not_applicable(cfg, source, out_dir, (
                "verbalized sampling needs an instruction-following chat model (the base model's tokenizer has "
                "no chat template, as the embedded world's has not); set model.name_or_path to an instruct model"))
    return evaluate_checkpoint(cfg, source, out_dir, progress, sampler=method_sampler(cfg, run))


def method_sampler(cfg: PipelineConfig, run: dict):
    """The Sampler of an inference-time baseline run, with its settings from params.yaml."""
    b, e = cfg.baselines, cfg.evaluate
    if run["method"] == "low_temperature":
        from powerflow.sampling.temperature import low_temperature_sampler

        return low_temperature_sampler(run["alpha"], e.max_new_tokens, e.batch_size)
    if run["method"] == "mcmc":
        from powerflow.sampling.mcmc import MCMCConfig, mcmc_sampler

        return mcmc_sampler(MCMCConfig(alpha=run["alpha"], max_new_tokens=b.mcmc_max_new_tokens,
                                       n_blocks=b.mcmc_blocks, n_mcmc=b.mcmc_steps, batch_size=e.batch_size))
    if run["method"] == "verbalized":
        from powerflow.sampling.verbalized import VerbalizedConfig, verbalized_sampler

        return verbalized_sampler(VerbalizedConfig(method=b.verbalized_method, k=b.verbalized_k))
    raise UserError(f"unknown inference-time baseline {run['method']!r}")


def write_not_applicable(cfg: PipelineConfig, source: str, out_dir: Path, reason: str) -> dict:
    """An evaluation folder that says the method does not apply here, and why (no numbers)."""
    metrics = {"eval/applicable": 0.0}
    with atomic_directory(out_dir) as tmp:
        write_text_atomic("", tmp / "samples.jsonl")
        write_json_atomic(metrics, tmp / "metrics.json")
        write_json_atomic(evaluation_settings(cfg, source, None) | {"not_applicable": reason}, tmp / "settings.json")
        (tmp / "plots").mkdir()
    return metrics


def evaluate_registered(cfg: PipelineConfig, model_uri: str, out_dir: Path | None = None,
                        progress: bool = True) -> dict:
    """Download a registered version (models:/name/N or models:/name@alias) and evaluate it.

    Default output folder: outputs/eval/registered/<model name>-v<version>/. The version's alpha
    tag, when it has one, turns on the policy diagnostics against the base model.
    """
    import tempfile

    from powerflow import tracking

    tracking_experiment(cfg)
    version = tracking.resolve_version(model_uri)
    out_dir = out_dir or layout_of(cfg).root / "outputs" / "eval" / "registered" / f"{version.name}-v{version.version}"
    alpha = tracking.version_tags(version).get("alpha")
    with tempfile.TemporaryDirectory() as tmp:
        source = tracking.download_checkpoint(version.uri, Path(tmp) / "policy")
        metrics = evaluate_checkpoint(cfg, str(source), out_dir, progress,
                                      alpha=float(alpha) if alpha not in (None, "") else None)
    return metrics | {"registered/version": float(version.version)}


def evaluate_checkpoint(cfg: PipelineConfig, source: str, out_dir: Path, progress: bool = True,
                        alpha: float | None = None, sampler=None, provenance: dict | None = None) -> dict:
    """Evaluate one model on the configured benchmarks; write out_dir/ whole, or nothing on failure.

    out_dir gets metrics.json (DVC metrics, logged to MLflow), samples.jsonl (the samples table),
    settings.json (the sampling settings and benchmarks behind every number) and plots/ (pass@k
    curves per reasoning family). With alpha given (a policy), the distribution diagnostics
    against the base model are added (powerflow.eval.diagnostics). `sampler`: an inference-time
    method drawing the sampled answers instead of plain sampling (powerflow.eval.evaluate.Sampler).
    `provenance`: extra keys for settings.json (the evaluated checkpoint's checkpoint_sha256).
    """
    from powerflow.eval import evaluate_model
    from powerflow.eval.suite import WORLD, eval_suite

    ecfg = cfg.evaluate
    world_rows = evaluation_rows(cfg) if WORLD in ecfg.benchmarks else None
    tokenizer = load_tokenizer(source, cfg.model.trust_remote_code)
    with eval_suite(ecfg, world_rows, cfg.project_root) as suite:
        generator = generation_model(cfg, source)
        scoring = replace(suite.scoring, sampler=sampler) if sampler is not None else suite.scoring
        metrics, samples = evaluate_model(generator, tokenizer, suite.rows, suite.grade, ecfg, progress=progress,
                                          scoring=scoring)
        rows = suite.rows
    del generator
    if alpha is not None and ecfg.diagnostics_prompts > 0:
        metrics.update(policy_diagnostics_of(cfg, source, tokenizer, rows, alpha))
    if alpha is not None:
        metrics.update(world_exact_metrics(cfg, source, tokenizer, alpha, metrics))
    with atomic_directory(out_dir) as tmp:
        write_text_atomic("".join(json.dumps(s, default=str) + "\n" for s in samples), tmp / "samples.jsonl")
        write_json_atomic(metrics, tmp / "metrics.json")
        write_json_atomic(evaluation_settings(cfg, source, alpha) | (provenance or {}), tmp / "settings.json")
        write_run_plots(metrics, tmp / "plots")
    return metrics


def generation_model(cfg: PipelineConfig, source: str):
    """What evaluate.backend samples from: the transformers model, or a vLLM engine on a GPU."""
    if cfg.evaluate.backend == "vllm":
        from powerflow.eval.generation import vllm_engine

        return vllm_engine(source, seed=cfg.evaluate.seed, trust_remote_code=cfg.model.trust_remote_code)
    return load_causal_lm(source, cfg.model.trust_remote_code)


def policy_diagnostics_of(cfg: PipelineConfig, source: str, tokenizer, rows: list[dict], alpha: float) -> dict:
    """Residual variance and E|y| of the policy at `source` against the base model, on the first
    evaluate.diagnostics_prompts prompts of each family."""
    from powerflow.eval.diagnostics import policy_diagnostics
    from powerflow.eval.evaluate import rows_by_family

    ecfg = cfg.evaluate
    prompts = [r["prompt"] for family in rows_by_family(rows, ecfg.diagnostics_prompts).values() for r in family]
    policy = load_causal_lm(source, cfg.model.trust_remote_code)
    base = load_causal_lm(base_model_source(cfg), cfg.model.trust_remote_code)
    return policy_diagnostics(policy, base, tokenizer, prompts, alpha, n_samples=ecfg.diagnostics_samples,
                              max_new_tokens=ecfg.max_new_tokens, seed=ecfg.seed, batch_size=ecfg.batch_size)


def world_exact_metrics(cfg: PipelineConfig, source: str, tokenizer, alpha: float, metrics: dict) -> dict:
    """The policy at `source` against the exact p_base^α of the embedded world; {} off the world.

    exact/target/<family>/<metric>: p_base^α itself on the world's support (powerflow.world.oracle):
      reasoning accuracy and pass@n, open-ended validity, expected coverage and KL to uniform of
      evaluate.n_samples samples, E|y|, and support_bound (the base's mass outside the support).
    exact/policy/<family>/<metric>: the same read off the policy's own probabilities on the support,
      with kl_target = KL(p_α ‖ π) there and mass = π's mass on the support.
    exact/accuracy_ratio: the sampled reasoning avg@n over the exact p^α accuracy.
    """
    from powerflow.eval.suite import WORLD
    from powerflow.world import oracle

    if not cfg.model.is_world or WORLD not in cfg.evaluate.benchmarks:
        return {}
    n = cfg.evaluate.n_samples
    base = load_causal_lm(base_model_source(cfg), cfg.model.trust_remote_code)
    supports = oracle.score_supports(cfg.world, base, tokenizer, evaluation_rows(cfg))
    target = oracle.oracle_metrics(supports, alpha, "tb", n_samples=n)
    policy = oracle.policy_distance(supports, load_causal_lm(source, cfg.model.trust_remote_code), tokenizer,
                                    alpha, "tb", n_samples=n)
    out = {f"exact/target/{k}": v for k, v in target.items()} | {f"exact/policy/{k}": v for k, v in policy.items()}
    sampled = metrics.get("reasoning/accuracy_mean")
    if sampled is not None and target.get("reasoning/accuracy", 0) > 0:
        out["exact/accuracy_ratio"] = sampled / target["reasoning/accuracy"]
    return out


def evaluation_settings(cfg: PipelineConfig, source: str, alpha: float | None) -> dict:
    """The settings recorded beside every evaluation: sampling, benchmarks, scorers, the model."""
    return {"model_source": str(source), "alpha": alpha, **asdict(cfg.evaluate)}


def write_run_plots(metrics: dict, plot_dir: Path) -> list[Path]:
    """One run's pass@k curve per reasoning family (a folder; empty when no family has pass@k)."""
    from powerflow.report import families_of, plot_pass_at_k

    plot_dir.mkdir(parents=True, exist_ok=True)
    run = [{"name": "this run", "alpha": None, "metrics": metrics}]
    written = []
    for family in families_of(run):
        if any(k.startswith(f"{family}/pass@") for k in metrics):
            written.append(plot_pass_at_k([{"name": family, "metrics": metrics}], plot_dir / f"{family}_pass_at_k.png",
                                          family))
    return written


def record_evaluation(cfg: PipelineConfig, name: str) -> str:
    """Log outputs/eval/<name>/ to its MLflow run (the base model and each inference-time baseline
    get a child run of their own; trained members log into their training run)."""
    from powerflow import tracking
    from powerflow.data import load_prepared

    lay = layout_of(cfg)
    out = _require(lay.evaluation(name), "evaluate")
    experiment_id = tracking_experiment(cfg)
    method = inference_run(cfg, name)
    if name == BASE_RUN or method is not None:  # untrained: a child run of its own
        alpha, method_name = (method["alpha"], method["method"]) if method else (None, None)
        _p, _a, manifest = load_prepared(_require(lay.prepared, "prepare"))
        parent = sweep_parent(cfg, experiment_id)
        run_id = tracking.start_child_run(
            experiment_id, parent, name, run_params(cfg, alpha, None, method_name),
            run_tags(cfg, alpha, None, manifest.get("prompts_sha256", ""), method_name))
    else:
        run_id = training_run_id(cfg, name)
    metrics = json.loads((out / "metrics.json").read_text())
    tracking.log_metrics(run_id, {f"eval/{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))})
    for artifact in ("samples.jsonl", "settings.json", "plots"):
        if (out / artifact).exists():
            tracking.log_artifacts(run_id, out / artifact, "eval/plots" if artifact == "plots" else "eval")
    return run_id


def evaluate_member(cfg: PipelineConfig, name: str, step: Step = as_is) -> dict:
    """The whole `evaluate` stage for one run: evaluate, then log to MLflow."""
    metrics = step(evaluate_target)(cfg, name)
    step(record_evaluation)(cfg, name)
    return metrics


# ---------------------------------------------------------------------------------- report
def collect_runs(cfg: PipelineConfig) -> tuple[list[dict], dict[str, list[dict]]]:
    """Evaluation metrics, training summaries and registrations of the base and every sweep member."""
    lay = layout_of(cfg)
    runs = [{"name": BASE_RUN, "alpha": None, "objective": None, "method": "base",
             "metrics": json.loads(_require(lay.evaluation(BASE_RUN) / "metrics.json", "evaluate").read_text()),
             "train": {}, "registered": None}]
    histories = {}
    for alpha, objective, seed in sweep_members(cfg):
        name = run_name(alpha, objective, seed)
        runs.append({
            "name": name, "alpha": float(alpha), "objective": objective, "method": "power_flow",
            "seed": seed, "group": group_name(alpha, objective),
            "metrics": json.loads(_require(lay.evaluation(name) / "metrics.json", "evaluate").read_text()),
            "train": json.loads(_require(lay.train_outputs(name) / "metrics.json", "train").read_text()),
            "registered": json.loads(_require(lay.registration(name), "register").read_text()),
        })
        histories[name] = read_history_csv(lay.train_outputs(name) / "history.csv")
    for b in baseline_runs(cfg):  # alpha None: the report draws them as references, never as α points
        name = b["name"]
        runs.append({
            "name": name, "alpha": None, "objective": None, "method": b["method"], "method_alpha": b["alpha"],
            "metrics": json.loads(_require(lay.evaluation(name) / "metrics.json", "evaluate").read_text()),
            "train": json.loads(_require(lay.train_outputs(name) / "metrics.json", "train").read_text())
            if b["trained"] else {},
            "registered": json.loads(_require(lay.registration(name), "register").read_text()) if b["trained"] else None,
        })
        if b["trained"]:
            histories[name] = read_history_csv(lay.train_outputs(name) / "history.csv")
    return runs, histories


def write_sweep_report(cfg: PipelineConfig, orchestration: list[str] = ()) -> dict:
    """Markdown summary, PNG plots, summary.json (DVC metrics), alpha_metrics.csv (one row per run)
    and alpha_means.csv (one row per (α, objective): the seed means), the last two DVC plots.

    summary.json: "best" (the runs the aliases point at), "best_groups" (the (α, objective) they were
    chosen from by seed mean), "groups" (per (α, objective): seeds, runs, and per metric the mean
    over seeds and its se, across seeds with ≥ 2 seeds, per prompt with one), "runs" (every run).
    """
    from powerflow.report import write_report

    runs, histories = collect_runs(cfg)
    lay = layout_of(cfg)
    with atomic_directory(lay.report) as tmp:
        result = write_report(runs, histories, tmp, title=cfg.report.title, notes=list(orchestration),
                              min_validity=cfg.report.min_validity)
        summary = {r["name"]: {k: v for k, v in r["metrics"].items() if isinstance(v, (int, float))} for r in runs}
        write_json_atomic({"best": result["best"], "best_groups": result["best_groups"],
                           "groups": groups_summary(result["groups"]), "runs": summary}, tmp / "summary.json")
        write_alpha_metrics_csv(runs, tmp / "alpha_metrics.csv")
        write_alpha_means_csv(result["groups"], tmp / "alpha_means.csv")
    return {"best": result["best"], "report": str(lay.report / "report.md")}


def groups_summary(groups: list[dict]) -> dict[str, dict]:
    """The report's seed groups for summary.json: no NaN (null instead), seeds and runs as text
    ("0,1,2") so `dvc metrics show` lists numbers only."""
    def number(x):
        return x if isinstance(x, (int, float)) and math.isfinite(x) else None

    return {g["group"]: {"alpha": g["alpha"], "objective": g["objective"], "n_seeds": g["n_seeds"],
                         "seeds": ",".join(str(s) for s in g["seeds"]), "runs": ",".join(g["members"]),
                         "se_over": g["se_over"], "mean": {k: number(v) for k, v in g["mean"].items()},
                         "se": {k: number(v) for k, v in g["se"].items()}} for g in groups}


ALPHA_PLOT_COLUMNS = ("reasoning/accuracy_greedy", "reasoning/accuracy_mean",
                      "open_ended/coverage", "open_ended/validity", "open_ended/kl_uniform",
                      "open_ended/semantic_diversity", "diag/residual_var", "diag/length_ratio",
                      "cost/tokens_per_answer")


def write_alpha_metrics_csv(runs: list[dict], path: Path) -> Path:
    """One row per sweep member (α, objective, seed, headline metrics), for `dvc plots show`."""
    header = ["alpha", "objective", "seed"] + [c.replace("/", "_") for c in ALPHA_PLOT_COLUMNS]
    lines = [",".join(header)]
    for r in runs:
        if r["alpha"] is None:
            continue
        values = [f"{r['metrics'].get(c, float('nan')):.6g}" for c in ALPHA_PLOT_COLUMNS]
        lines.append(",".join([f"{r['alpha']:g}", r["objective"], str(r.get("seed", ""))] + values))
    return write_text_atomic("\n".join(lines) + "\n", path)


def write_alpha_means_csv(groups: list[dict], path: Path) -> Path:
    """One row per (α, objective): n_seeds, the seed mean of each headline metric and its se
    (`<column>_se`: across seeds, or per prompt with one seed; empty when unknown), for `dvc plots show`."""
    columns = [c.replace("/", "_") for c in ALPHA_PLOT_COLUMNS]
    header = ["alpha", "objective", "n_seeds"] + columns + [f"{c}_se" for c in columns]
    lines = [",".join(header)]
    for g in groups:
        means = [f"{g['mean'].get(c, float('nan')):.6g}" for c in ALPHA_PLOT_COLUMNS]
        ses = [f"{se:.6g}" if (se := g["se"].get(c)) is not None and math.isfinite(se) else ""
               for c in ALPHA_PLOT_COLUMNS]
        lines.append(",".join([f"{g['alpha']:g}", g["objective"], str(g["n_seeds"])] + means + ses))
    return write_text_atomic("\n".join(lines) + "\n", path)


def set_registry_aliases(cfg: PipelineConfig) -> dict[str, str]:
    """Point the registry aliases at the report's choices: best-<role> (the latest report of any sweep
    on this base model) and <sweep>-best-<role> (this sweep's, untouched by other sweeps).

    With several seeds a choice is the median-seed run of the (α, objective) with the best seed mean
    (`powerflow.report.best_choices`): the alias names one registered version, a typical seed."""
    from powerflow import tracking

    lay = layout_of(cfg)
    best = json.loads(_require(lay.report / "summary.json", "report").read_text())["best"]
    tracking_experiment(cfg)
    model_name = tracking.registered_model_name(cfg.tracking, cfg.model.name_or_path)
    aliases = {}
    for role, name in best.items():
        if not name or name == BASE_RUN:
            continue
        record = json.loads(_require(lay.registration(name), "register").read_text())
        for alias in (f"best-{role}", tracking.sweep_alias(cfg.sweep.name, f"best-{role}")):
            tracking.set_alias(model_name, alias, record["version"])
            aliases[alias] = f"{name} (version {record['version']})"
    return aliases


def record_report(cfg: PipelineConfig) -> None:
    """Log the report folder to the sweep's parent run."""
    from powerflow import tracking

    experiment_id = tracking_experiment(cfg)
    tracking.log_artifacts(sweep_parent(cfg, experiment_id), layout_of(cfg).report, "report")


def report_sweep(cfg: PipelineConfig, orchestration: list[str] = (), step: Step = as_is) -> dict:
    """The whole `report` stage: write the report, set the aliases, log it to the parent run."""
    result = step(write_sweep_report)(cfg, list(orchestration))
    result["aliases"] = step(set_registry_aliases)(cfg)
    step(record_report)(cfg)
    return result

