"""Exact verification: fine-tune an enumerable model with PowerFlowTrainer, measure KL to the target.

This is what the `powerflow verify-exact` command and the trainer's convergence tests run: the
same function, so a green test means the command a user types works the same way.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from powerflow.config.sections import ExactCheckConfig
from powerflow.config.train import TrainConfig, lora_config
from powerflow.member import Member
from powerflow.exact import enumerate_terminals, exact_report, kl_divergence, power_target


def _prompt_ids(tokenizer, prompt: str) -> list[int]:
    return tokenizer(prompt, add_special_tokens=False)["input_ids"]


def exact_train_config(cfg: ExactCheckConfig) -> TrainConfig:
    """The exact check's budget as a `train:` section: one prompt, G samples a step, linear decay."""
    return TrainConfig(steps=cfg.steps, prompts_per_step=1, num_generations=cfg.num_generations,
                       max_completion_length=cfg.max_completion_length, learning_rate=cfg.learning_rate,
                       lr_schedule="linear", logz=cfg.logz, logz_learning_rate=cfg.logz_learning_rate,
                       lora_r=cfg.lora_r, lora_alpha=cfg.lora_alpha, max_grad_norm=1.0, seed=cfg.seed)


def trainer_for_enumerable(cfg: ExactCheckConfig, alpha: float, objective: str, output_dir: str | Path, *,
                           lora_modules_to_save: tuple[str, ...] = (), **overrides):
    """A PowerFlowTrainer on a fresh random enumerable base, built from an ExactCheckConfig.

    Returns (trainer, base TerminalSet, prompt ids). `overrides` go to PowerFlowConfig (trainer_config);
    `lora_modules_to_save` to the adapter (modules trained in full beside it, e.g. ("norm",)).
    """
    from datasets import Dataset

    from powerflow.trainer import PowerFlowTrainer, trainer_config
    from powerflow.world.enumerable import random_base

    model, tokenizer = random_base(seed=cfg.seed, n_symbols=cfg.n_symbols, init_scale=cfg.base_init_scale)
    prompt_ids = _prompt_ids(tokenizer, cfg.prompt)
    base = enumerate_terminals(model, prompt_ids, tokenizer.eos_token_id, cfg.max_completion_length)
    settings = dict(warmup_steps=0, use_cpu=True, logging_steps=max(1, cfg.steps // 10), save_strategy="no",
                    save_total_limit=None, disable_tqdm=True)
    overrides = dict(overrides)
    if "gradient_checkpointing" in overrides:  # transformers 5 calls it activation_checkpointing
        overrides["activation_checkpointing"] = overrides.pop("gradient_checkpointing")
    args = trainer_config(exact_train_config(cfg), Member(alpha, objective, cfg.seed), output_dir,
                          **(settings | overrides))
    peft_config = lora_config(cfg.lora_r, cfg.lora_alpha, modules_to_save=lora_modules_to_save)
    dataset = Dataset.from_dict({"prompt": [cfg.prompt] * (cfg.steps + 1)})
    trainer = PowerFlowTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config
    )
    return trainer, base, prompt_ids


def policy_terminals(trainer, prompt_ids, max_length: int):
    """Exact terminal distribution of the trainer's current policy (adapter enabled)."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    return enumerate_terminals(model, prompt_ids, trainer.processing_class.eos_token_id, max_length)


def train_and_measure(cfg: ExactCheckConfig, alpha: float, objective: str, output_dir: str | Path, *,
                      lora_modules_to_save: tuple[str, ...] = (), **overrides) -> dict:
    """Train one (α, objective) run and return the exact report plus the trained log Z and time.

    `lora_modules_to_save` and `overrides` (PowerFlowConfig settings, e.g. `lr_multipliers`) go to
    `trainer_for_enumerable`: the presets' LoRA parametrisation is checked with them."""
    from powerflow.progress import show_training_progress

    trainer, base, prompt_ids = trainer_for_enumerable(cfg, alpha, objective, output_dir,
                                                       lora_modules_to_save=lora_modules_to_save, **overrides)
    show_training_progress(trainer, f"exact {objective} α={alpha:g}")  # no metric dict per logging step
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    policy = policy_terminals(trainer, prompt_ids, cfg.max_completion_length)
    report = exact_report(policy, base, alpha, objective)
    logz = [h["powerflow/log_z"] for h in trainer.state.log_history if "powerflow/log_z" in h]
    report.update(
        {
            "alpha": alpha,
            "objective": objective,
            "train/seconds": seconds,
            "train/steps": float(trainer.state.global_step),
            "train/log_z_final": logz[-1] if logz else float("nan"),
            "train/skipped_steps": float(trainer.skipped_steps),
        }
    )
    return report


def low_temperature_gap(alpha: float, seed: int = 0, prompt: str = "d", max_length: int = 4) -> dict:
    """KL between token-level tempering (softmax(α·logits) per step) and p_α on the forked base.

    The forked base opens with a 'guess' token slightly more often than with a worked solution; the
    guesses scatter. Token-level power amplifies the likelier opening; sequence-level power moves
    mass to the single most likely complete sequence. The gap is why the product trains for p_α.
    """
    from powerflow.world.enumerable import forked_base

    model, tokenizer = forked_base(seed=seed, prompt=prompt)
    prompt_ids = _prompt_ids(tokenizer, prompt)
    base = enumerate_terminals(model, prompt_ids, tokenizer.eos_token_id, max_length)
    tempered = enumerate_terminals(model, prompt_ids, tokenizer.eos_token_id, max_length, token_power=alpha)
    target = power_target(base.log_prob, alpha)
    best = int(target.argmax())
    return {
        "alpha": alpha,
        "kl/low_temperature_power": kl_divergence(tempered.log_prob, target),
        "kl/base_power": kl_divergence(base.log_prob, target),
        "mass_on_mode/power": float(target.exp()[best]),
        "mass_on_mode/low_temperature": float(tempered.log_prob.exp()[best]),
        "mass_on_mode/base": float(base.log_prob.exp()[best]),
    }


def run_exact_check(cfg: ExactCheckConfig, workdir: str | Path | None = None, progress=print) -> dict:
    """Every (α, objective) run of the config plus the low-temperature comparison, as one dict."""
    runs = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for objective in cfg.objectives:
            for alpha in cfg.alphas:
                progress(f"training objective={objective} alpha={alpha} for {cfg.steps} steps ...")
                report = train_and_measure(cfg, alpha, objective, Path(tmp) / f"{objective}-{alpha}")
                progress(
                    f"  KL(policy || target) = {report['kl/policy_target']:.4f} nats "
                    f"(from {report['kl/base_target']:.4f} at the base) in {report['train/seconds']:.0f}s"
                )
                runs.append(report)
    return {
        "config": asdict(cfg),
        "runs": runs,
        "low_temperature": low_temperature_gap(cfg.low_temperature_alpha, seed=cfg.seed),
    }


def format_table(result: dict) -> str:
    """A plain-text table of the runs, for the terminal."""
    header = (
        f"{'objective':<9} {'alpha':>5} {'KL(base||tgt)':>13} {'KL(pi||tgt)':>11} {'KL(pi||p_a)':>11} "
        f"{'E|y| pi':>7} {'E|y| tgt':>8} {'trunc pi':>8} {'lambda':>7} {'secs':>5}"
    )
    lines = [header, "-" * len(header)]
    for r in result["runs"]:
        lam = r["lambda/target"]
        lines.append(
            f"{r['objective']:<9} {r['alpha']:>5g} {r['kl/base_target']:>13.4f} {r['kl/policy_target']:>11.4f} "
            f"{r['kl/policy_power']:>11.4f} {r['length/policy']:>7.3f} {r['length/target']:>8.3f} "
            f"{r['truncated_mass/policy']:>8.3f} {('-' if lam != lam else f'{lam:.3f}'):>7} {r['train/seconds']:>5.0f}"
        )
    lt = result["low_temperature"]
    lines.append("")
    lines.append(
        f"token-level low temperature vs p_alpha (alpha={lt['alpha']:g}, forked base): "
        f"KL = {lt['kl/low_temperature_power']:.3f} nats; mass on p_alpha's mode: "
        f"p_alpha {lt['mass_on_mode/power']:.3f}, low temperature {lt['mass_on_mode/low_temperature']:.3f}, "
        f"base {lt['mass_on_mode/base']:.3f}"
    )
    return "\n".join(lines)
