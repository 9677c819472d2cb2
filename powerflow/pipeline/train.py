"""The `train` stage: one Power-Flow member (α, objective, seed) or one trained baseline (GRPO, EMPO).

`train_member` / `train_baseline_member` chain the stage's steps: open the member's MLflow run,
train (resuming from the last checkpoint of the same params), write the policy atomically to
models/policies/<name>/ with its curves and metrics under outputs/train/<name>/, then close the run
(send the final numbers; wait out a tracking outage without losing anything).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from powerflow.config import PipelineConfig
from powerflow.config.train import rollout_engine_arguments, train_lora_config, trl_arguments
from powerflow.errors import UserError
from powerflow.io import atomic_directory, write_json_atomic, write_text_atomic
from powerflow.pipeline.layout import (
    HISTORY_KEYS, Step, as_is, check_baseline, history_rows, layout_of, params_sha256, require_input, run_params,
    train_command, write_history_csv,
)
from powerflow.member import Member
from powerflow.registry import baseline
from powerflow.pipeline.loading import base_model_source, load_causal_lm, load_tokenizer
from powerflow.pipeline.runs import run_tags, sweep_parent, tracking_experiment


def training_prompts(cfg: PipelineConfig) -> tuple[list[str], dict]:
    """Training prompts (split train, families in train.families) and the prepared manifest.

    Only the prompt table is read: answer keys never reach training.
    """
    from powerflow.data.prepare import load_prepared

    prompts, _answers, manifest = load_prepared(require_input(layout_of(cfg).prepared, "prepare"))
    rows = prompts[(prompts["split"] == "train") & prompts["family"].isin(cfg.train.families)]
    if rows.empty:
        raise UserError(
            f"no training prompts: data/prepared has no split=train rows in families {list(cfg.train.families)}; "
            "check data.source and train.families in params.yaml."
        )
    return rows["prompt"].tolist(), manifest


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


def train_policy(cfg: PipelineConfig, member: Member, run_id: str | None = None) -> dict:
    """Fine-tune the base toward p_base^α with PowerFlowTrainer, seeded with the member's seed; write
    models/policies/<name>/.

    The policy is saved merged (LoRA folded into the weights) as a standalone transformers
    directory, with the log Z head and the resolved config beside it. Curves go to
    outputs/train/<name>/history.csv and, when `run_id` is given, to that MLflow run step by step.
    A rerun after a crash resumes from the last trainer checkpoint in runs/train/<name>/.
    """
    from datasets import Dataset

    from powerflow import distributed
    from powerflow.trainer import PowerFlowTrainer, trainer_config

    name = member.name
    if distributed.launches(cfg):  # train.accelerate_config: this step runs on the config's ranks
        return train_on_ranks(cfg, distributed.rank_arguments(member.label, member.objective, seed=member.seed,
                                                              run_id=run_id),
                              layout_of(cfg).train_outputs(name) / "metrics.json")
    prompts, manifest = training_prompts(cfg)

    def build(model, tokenizer, peft_config, callbacks):
        args = trainer_config(cfg.train, member, layout_of(cfg).train_workdir(name),
                              max_prompt_tokens=cfg.data.max_prompt_tokens)
        return PowerFlowTrainer(model=model, args=args, train_dataset=Dataset.from_dict({"prompt": prompts}),
                                processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks)

    summary = fit_and_save(cfg, name, build, run_params(cfg, member.alpha, member.objective, seed=member.seed), run_id)
    summary.update({"alpha": member.alpha, "objective": member.objective, "seed": member.seed,
                    "prompts_sha256": manifest.get("prompts_sha256")})
    if distributed.is_main_rank():
        write_json_atomic(summary, layout_of(cfg).train_outputs(name) / "metrics.json")
    return summary


def train_on_ranks(cfg: PipelineConfig, rank_args: list[str], result: Path) -> dict:
    """Run this train step on train.accelerate_config's ranks (powerflow.distributed); rank 0's summary."""
    from powerflow import distributed

    rollout_engine_arguments(cfg.train)  # train.use_vllm without vLLM or a GPU: one error here, not one per rank
    return distributed.train_on_ranks(cfg, rank_args, result)


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

    from powerflow.progress import show_training_progress

    rollout_engine_arguments(cfg.train)  # use_vllm on a machine without vLLM fails here, before the model loads
    lay = layout_of(cfg)
    source = base_model_source(cfg)
    tokenizer = load_tokenizer(source, cfg.model.trust_remote_code)
    model = load_causal_lm(source, cfg.model.trust_remote_code, dtype="bfloat16" if cfg.train.bf16 else "float32")
    workdir = lay.train_workdir(name)
    peft_config = train_lora_config(cfg.train, model)
    callbacks = []
    if run_id is not None:
        from powerflow.tracking.callback import MlflowStepLogger

        callbacks.append(MlflowStepLogger(run_id, prefix="train/", spool=lay.pending_metrics(name),
                                          timeout_s=cfg.tracking.timeout_s))
    trainer = build(model, tokenizer, peft_config, callbacks)
    show_training_progress(trainer, name)  # one bar with loss, residual variance, length; not a dict per step
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


def training_rows(cfg: PipelineConfig) -> tuple[list[dict], dict[str, str]]:
    """Training prompts joined with their answer keys and families, and each family's answer kind
    (the prepared manifest's): for GRPO's gold-answer reward, the one training method that reads
    answers, and for EMPO's answer clustering."""
    from powerflow.data.prepare import load_prepared

    prompts, answers, manifest = load_prepared(require_input(layout_of(cfg).prepared, "prepare"))
    rows = prompts[(prompts["split"] == "train") & prompts["family"].isin(cfg.train.families)]
    rows = rows.merge(answers[["id", "answer"]], on="id", how="left")
    out = []
    for r in rows.to_dict("records"):
        answer = json.loads(r["answer"]) if isinstance(r["answer"], str) else None
        out.append({"prompt": r["prompt"], "answer": answer, "family": r["family"]})
    return out, dict(manifest["answer_kinds"])


def baseline_columns(rows: list[dict], method: str) -> dict[str, list]:
    """The training dataset's columns for a baseline: prompt and family, and for GRPO (the one method
    that reads gold answers) the answer as JSON text, so lists (open-ended keys) fit one column type."""
    columns = {"prompt": [r["prompt"] for r in rows], "family": [r["family"] for r in rows]}
    if method == "grpo":
        columns["answer"] = [json.dumps(r["answer"]) for r in rows]
    return columns


def train_baseline(cfg: PipelineConfig, method: str, run_id: str | None = None) -> dict:
    """Fine-tune the base with a baseline's reward (GRPO: gold accuracy; EMPO: semantic entropy)
    on the same prompts and budget as the Power-Flow members; write models/policies/<method>/."""
    from datasets import Dataset

    from powerflow import distributed
    from powerflow.baselines.trainers import recipe
    from powerflow.eval.grading import family_graders

    method = check_baseline(method)
    if distributed.launches(cfg):  # train.accelerate_config: this step runs on the config's ranks
        return train_on_ranks(cfg, distributed.rank_arguments(method=method, run_id=run_id),
                              layout_of(cfg).train_outputs(method) / "metrics.json")
    _prompts, manifest = training_prompts(cfg)
    rows, answer_kinds = training_rows(cfg)
    columns = baseline_columns(rows, method)
    args, options = baseline_arguments(cfg, method, layout_of(cfg).train_workdir(method))
    with family_graders(answer_kinds, cfg.evaluate.math_timeout_s) as graders:
        def build(model, tokenizer, peft_config, callbacks):  # graded by each family's answer kind
            return baseline(method).build(model, tokenizer, Dataset.from_dict(columns), args, graders,
                                          peft_config=peft_config, callbacks=callbacks, **options)

        summary = fit_and_save(cfg, method, build, run_params(cfg, None, None, method), run_id)
    summary.update({"method": method, "prompts_sha256": manifest.get("prompts_sha256")})
    out = layout_of(cfg).train_outputs(method)
    if distributed.is_main_rank():
        write_json_atomic(recipe(method, args, answer_kinds=answer_kinds, **options), out / "recipe.json")
        write_json_atomic(summary, out / "metrics.json")
    return summary


def baseline_arguments(cfg: PipelineConfig, method: str, workdir) -> tuple[Any, dict]:
    """(GRPOConfig, extra build options) of a trained baseline: the shared budget of `train:` with the
    method's own learning rate and KL β from `baselines:` (`BaselinesConfig.trained_recipe`); EMPO's
    entropy bounds are the extra option. Truncated completions (no EOS within the length limit) are
    masked out of the loss, the DAPO/TRL recipe: without it EMPO collapses on the world to one runaway
    completion repeating "answer 19" that always agrees with itself."""
    from trl import GRPOConfig

    settings = cfg.baselines.trained_recipe(method, cfg.train.learning_rate)
    options = {"entropy_bounds": settings.pop("entropy_bounds")} if "entropy_bounds" in settings else {}
    shared = trl_arguments(cfg.train, workdir, max_prompt_tokens=cfg.data.max_prompt_tokens)
    return GRPOConfig(mask_truncated_completions=True, **(shared | settings)), options


def train_baseline_member(cfg: PipelineConfig, method: str, step: Step = as_is) -> dict:
    """The `train_baseline` stage for one method: open its run, train, close the run."""
    method = check_baseline(method)
    run_id = step(open_member_run)(cfg, method, None, None, method)
    summary = step(train_baseline)(cfg, method, run_id=run_id)
    step(close_member_run)(cfg, method, run_id)
    return summary


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


def open_training_run(cfg: PipelineConfig, member: Member) -> str:
    """Create the MLflow child run of one sweep member (params, tags) before training starts.

    Its id is written to outputs/train/<name>/run.json so later steps log into the same run.
    """
    return open_member_run(cfg, member.name, member.alpha, member.objective, seed=member.seed)


def open_member_run(cfg: PipelineConfig, name: str, alpha: float | None, objective: str | None,
                    method: str | None = None, seed: int | None = None) -> str:
    """The MLflow child run of one trained member (Power-Flow or a baseline); run.json holds its id.

    A training of the same params that was killed or could not close its run left its run id in
    runs/train/<name>/run.json: its rerun resumes that run (and its checkpoints) instead of
    starting a second one, as long as the store still has it.
    """
    from powerflow import tracking
    from powerflow.data.prepare import load_prepared

    lay = layout_of(cfg)
    _prompts, _answers, manifest = load_prepared(require_input(lay.prepared, "prepare"))
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


def close_training_run(cfg: PipelineConfig, member: Member, run_id: str) -> None:
    """Log the final training numbers and the resolved config to the run."""
    close_member_run(cfg, member.name, run_id)


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


def train_member(cfg: PipelineConfig, member: Member, step: Step = as_is) -> dict:
    """The whole `train` stage for one member (α, objective, seed): open the run, train, close the run."""
    run_id = step(open_training_run)(cfg, member)
    summary = step(train_policy)(cfg, member, run_id=run_id)
    step(close_training_run)(cfg, member, run_id)
    return summary
