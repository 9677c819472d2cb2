"""The `evaluate` stage: reasoning and diversity benchmarks of a checkpoint or an inference-time method.

Writes outputs/eval/<name>/ (metrics.json, samples.jsonl, settings.json, plots) atomically and logs
the numbers to the run; on the embedded world every trained run also gets its exact distance to
p_base^α (powerflow.world.oracle).
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

from powerflow.config import PipelineConfig
from powerflow.errors import UserError
from powerflow.io import atomic_directory, sha256_of_path, write_json_atomic, write_text_atomic
from powerflow.tracking.registry import CHECKPOINT_SHA_TAG
from powerflow.pipeline.layout import (
    BASE_RUN, MissingInputError, Step, as_is, inference_run, layout_of, require_input, run_params,
)
from powerflow.pipeline.loading import base_model_source, load_causal_lm, load_tokenizer
from powerflow.pipeline.runs import run_tags, sweep_parent, tracking_experiment, training_run_id


def prepared_split(cfg: PipelineConfig):
    """The prepared eval split: its rows with answers and each family's answer kind (the manifest's)."""
    from powerflow.eval.suite import PreparedSplit

    rows, manifest = _evaluation_rows_and_manifest(cfg)
    return PreparedSplit(rows=rows, answer_kinds=dict(manifest["answer_kinds"]))


def evaluation_rows(cfg: PipelineConfig) -> list[dict]:
    """Eval-split prompts joined with their answer keys (the only place answers are read)."""
    return _evaluation_rows_and_manifest(cfg)[0]


def _evaluation_rows_and_manifest(cfg: PipelineConfig) -> tuple[list[dict], dict]:
    from powerflow.data.prepare import load_prepared

    prompts, answers, manifest = load_prepared(require_input(layout_of(cfg).prepared, "prepare"))
    rows = prompts[prompts["split"] == "eval"].merge(answers[["id", "answer"]], on="id", how="left")
    out = []
    for r in rows.to_dict("records"):
        r["answer"] = json.loads(r["answer"]) if isinstance(r["answer"], str) else r["answer"]
        out.append(r)
    if not out:
        raise UserError("no eval prompts in data/prepared: set data.eval_fraction > 0 or give the source a split "
                        "column.")
    return out, manifest


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
                               alpha=checkpoint_alpha(checkpoint), objective=checkpoint_objective(checkpoint),
                               provenance={CHECKPOINT_SHA_TAG: sha256_of_path(checkpoint)})


def trained_checkpoint(cfg: PipelineConfig, name: str) -> Path:
    """models/policies/<name>/ of a trained run, with a fixable error naming the runs when absent."""
    path = layout_of(cfg).policy(name)
    if not (path / "config.json").is_file():
        members = [m.name for m in cfg.sweep.members] + list(cfg.baselines.train)
        raise MissingInputError(
            f"{path} holds no trained model: {name!r} must be \"base\", an inference-time baseline, or a trained run "
            f"({', '.join(members)}) whose `train` stage finished (e.g. `dvc repro train@...`).")
    return path


def checkpoint_alpha(checkpoint: Path) -> float | None:
    """The α a Power-Flow checkpoint was trained toward (its powerflow_config.json); None for a baseline."""
    config = checkpoint / "powerflow_config.json"
    alpha = json.loads(config.read_text()).get("alpha") if config.is_file() else None
    return float(alpha) if alpha is not None else None


def checkpoint_objective(checkpoint: Path) -> str | None:
    """The objective a Power-Flow checkpoint was trained with (its powerflow_config.json); None for a baseline."""
    config = checkpoint / "powerflow_config.json"
    return json.loads(config.read_text()).get("objective") if config.is_file() else None


def evaluate_inference_method(cfg: PipelineConfig, run: dict, progress: bool = True) -> dict:
    """Evaluate an inference-time baseline: the base model with the method's sampler.

    Greedy accuracy is the base model's (greedy decoding has no temperature); the n sampled
    answers come from the method, and cost/inference_tokens_per_answer counts every token it
    generated. Verbalized sampling answers the open-ended and creative families when there are some
    (`verbalized_rows`); on a model without a chat template it is not applicable: the run writes its
    outputs with eval/applicable = 0 and the reason, and no numbers.
    """
    source = base_model_source(cfg)
    out_dir = layout_of(cfg).evaluation(run["name"])
    if run["method"] != "verbalized":
        return evaluate_checkpoint(cfg, source, out_dir, progress, sampler=method_sampler(cfg, run))
    from powerflow.sampling.verbalized import requires_instruction_model

    if requires_instruction_model(load_tokenizer(source, cfg.model.trust_remote_code)):
        return write_not_applicable(cfg, source, out_dir, (
            "verbalized sampling needs an instruction-following chat model (the base model's tokenizer has no chat "
            "template; the embedded world has one with world.chat_fraction > 0); set model.name_or_path to an "
            "instruct model"))
    return evaluate_checkpoint(cfg, source, out_dir, progress, sampler=method_sampler(cfg, run),
                               select_rows=verbalized_rows)


def verbalized_rows(rows: list[dict], kinds: dict[str, str]) -> list[dict]:
    """The rows verbalized sampling answers: those of the open-ended and creative families, or every row
    when there are none (e.g. a math-only dataset), each asked by its `request` (the question before any
    chat template: the method writes its own conversation around it)."""
    from powerflow.eval.evaluate import CREATIVE, OPEN_ENDED

    open_ended = [r for r in rows if kinds.get(str(r["family"])) in (OPEN_ENDED, CREATIVE)]
    return [r | {"prompt": r.get("request") or r["prompt"]} for r in (open_ended or rows)]


def method_sampler(cfg: PipelineConfig, run: dict):
    """The Sampler of an inference-time baseline run (powerflow.registry), with its settings from params.yaml."""
    from powerflow.registry import baseline

    return baseline(run["method"]).build(cfg, run["alpha"])


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
                        alpha: float | None = None, sampler=None, provenance: dict | None = None,
                        objective: str | None = None, select_rows=None) -> dict:
    """Evaluate one model on the configured benchmarks; write out_dir/ whole, or nothing on failure.

    out_dir gets metrics.json (DVC metrics, logged to MLflow), samples.jsonl (the samples table),
    settings.json (the sampling settings and benchmarks behind every number, and "families": each
    family in evaluation order with its benchmark and answer kind) and plots/ (pass@k
    curves per reasoning family). With alpha given (a policy), the distribution diagnostics
    against the base model are added (powerflow.eval.diagnostics); `objective`, the one the policy
    trained with, adds its distance to that objective's own fixed point on the world. `sampler`: an inference-time
    method drawing the sampled answers instead of plain sampling (powerflow.eval.evaluate.Sampler).
    `provenance`: extra keys for settings.json (the evaluated checkpoint's checkpoint_sha256).
    `select_rows(rows, {family: scoring kind})`: the rows a method answers (default all). evaluate.judge
    "base" is the base model (`judge_source`).
    """
    from powerflow.eval.evaluate import evaluate_model
    from powerflow.eval.config import PREPARED
    from powerflow.eval.suite import eval_suite

    ecfg = replace(cfg.evaluate, judge=judge_source(cfg))
    prepared = prepared_split(cfg) if PREPARED in ecfg.benchmarks else None
    tokenizer = load_tokenizer(source, cfg.model.trust_remote_code)
    generator = generation_model(cfg, source)  # checked before the judge loads (it may be this model)
    with eval_suite(ecfg, prepared, cfg.project_root) as suite:
        rows = suite.rows if select_rows is None else select_rows(suite.rows, dict(suite.scoring.kinds))
        scoring = replace(suite.scoring, sampler=sampler) if sampler is not None else suite.scoring
        metrics, samples = evaluate_model(generator, tokenizer, rows, suite.grade, ecfg, progress=progress,
                                          scoring=scoring)
        evaluated = {str(r["family"]) for r in rows}
        families = [{"family": f, "benchmark": suite.benchmarks[f], "answer_kind": k}
                    for f, k in suite.answer_kinds.items() if f in evaluated]
    del generator
    if alpha is not None and ecfg.diagnostics_prompts > 0:
        metrics.update(policy_diagnostics_of(cfg, source, tokenizer, rows, alpha))
    if alpha is not None:
        metrics.update(world_exact_metrics(cfg, source, tokenizer, alpha, metrics, objective))
    with atomic_directory(out_dir) as tmp:
        write_text_atomic("".join(json.dumps(s, default=str) + "\n" for s in samples), tmp / "samples.jsonl")
        write_json_atomic(metrics, tmp / "metrics.json")
        write_json_atomic(evaluation_settings(cfg, source, alpha) | {"families": families} | (provenance or {}),
                          tmp / "settings.json")
        write_run_plots(metrics, tmp / "plots")
    return metrics


def judge_source(cfg: PipelineConfig) -> str | None:
    """evaluate.judge as the judge loader reads it: "base" is the base model's directory or id."""
    from powerflow.eval.config import BASE_JUDGE

    return base_model_source(cfg) if cfg.evaluate.judge == BASE_JUDGE else cfg.evaluate.judge


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


def world_exact_metrics(cfg: PipelineConfig, source: str, tokenizer, alpha: float, metrics: dict,
                        objective: str | None = None) -> dict:
    """The policy at `source` against the exact p_base^α of the embedded world; {} off the world.

    exact/target/<family>/<metric>: p_base^α itself on the world's support (powerflow.world.oracle):
      reasoning accuracy and pass@n, open-ended validity, expected coverage and KL to uniform of
      evaluate.n_samples samples, E|y|, and support_bound (the base's mass outside the support).
    exact/policy/<family>/<metric>: the same read off the policy's own probabilities on the support,
      with kl_target = KL(p_α ‖ π) there and mass = π's mass on the support.
    exact/accuracy_ratio: the sampled reasoning avg@n over the exact p^α accuracy.
    exact/target/<family>/support_share_max, reasoning/accuracy_max, open_ended/validity_max (α < 1):
      the true p_base^α is normalised over every sequence, and below 1 it lifts the base's thin tail
      outside the support; these bound its mass on the support and its accuracy (validity) from
      above (oracle.true_target_bounds), so the on-support numbers are the target only where the
      share is near 1.
    exact/own_target/..., exact/own_policy/...: the same against the fixed point of `objective` when
      it is not p_base^α itself (la_tb: π*_λ ∝ p_base^α e^{−λ_q|y|}, with its λ per family), so a
      run is measured against what its objective converges to as well as against what was asked.
    """
    from powerflow.eval.config import PREPARED
    from powerflow.registry import EXACT_POWER
    from powerflow.registry import objective as objective_named
    from powerflow.world import oracle

    if not (cfg.model.is_world and cfg.data.is_world) or PREPARED not in cfg.evaluate.benchmarks:
        return {}
    n = cfg.evaluate.n_samples
    base = load_causal_lm(base_model_source(cfg), cfg.model.trust_remote_code)
    supports = oracle.score_supports(cfg.world, base, tokenizer, evaluation_rows(cfg))
    target = oracle.oracle_metrics(supports, alpha, EXACT_POWER, n_samples=n)
    policy_model = load_causal_lm(source, cfg.model.trust_remote_code)
    log_pis = oracle.policy_support_log_probs(supports, policy_model, tokenizer)  # one policy pass for both targets
    policy = oracle.policy_distance(supports, policy_model, tokenizer, alpha, EXACT_POWER, n_samples=n, log_pis=log_pis)
    out = {f"exact/target/{k}": v for k, v in target.items()} | {f"exact/policy/{k}": v for k, v in policy.items()}
    if alpha < 1:  # below 1, p^α lifts the base's tail outside S: bound how much of the true target S holds
        out |= {f"exact/target/{k}": v for k, v in oracle.true_target_bounds(supports, base, tokenizer, alpha).items()}
    if objective is not None and not objective_named(objective).exact_power:
        own = oracle.oracle_metrics(supports, alpha, objective, n_samples=n)
        own_policy = oracle.policy_distance(supports, policy_model, tokenizer, alpha, objective, n_samples=n,
                                            log_pis=log_pis)
        out |= {f"exact/own_target/{k}": v for k, v in own.items()}
        out |= {f"exact/own_policy/{k}": v for k, v in own_policy.items()}
    sampled = metrics.get("reasoning/accuracy_mean")
    if sampled is not None and target.get("reasoning/accuracy", 0) > 0:
        out["exact/accuracy_ratio"] = sampled / target["reasoning/accuracy"]
    return out


def evaluation_settings(cfg: PipelineConfig, source: str, alpha: float | None) -> dict:
    """The settings recorded beside every evaluation: sampling, benchmarks, scorers, the model."""
    return {"model_source": str(source), "alpha": alpha, **asdict(cfg.evaluate)}


def write_run_plots(metrics: dict, plot_dir: Path) -> list[Path]:
    """One run's pass@k curve per reasoning family (a folder; empty when no family has pass@k)."""
    from powerflow.eval.families import families_of
    from powerflow.eval.plots import plot_run_pass_at_k

    plot_dir.mkdir(parents=True, exist_ok=True)
    run = [{"name": "this run", "alpha": None, "metrics": metrics}]
    written = []
    for family in families_of(run):
        if any(k.startswith(f"{family}/pass@") for k in metrics):
            written.append(plot_run_pass_at_k(metrics, plot_dir / f"{family}_pass_at_k.png", family))
    return written


def record_evaluation(cfg: PipelineConfig, name: str) -> str:
    """Log outputs/eval/<name>/ to its MLflow run (the base model and each inference-time baseline
    get a child run of their own; trained members log into their training run)."""
    from powerflow import tracking
    from powerflow.data.prepare import load_prepared

    lay = layout_of(cfg)
    out = require_input(lay.evaluation(name), "evaluate")
    experiment_id = tracking_experiment(cfg)
    method = inference_run(cfg, name)
    if name == BASE_RUN or method is not None:  # untrained: a child run of its own
        alpha, method_name = (method["alpha"], method["method"]) if method else (None, None)
        _p, _a, manifest = load_prepared(require_input(lay.prepared, "prepare"))
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
