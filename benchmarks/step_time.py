"""Power-Flow step time and peak memory, each divided by TRL's GRPOTrainer (β = 0) in the same command.

Both trainers get the same tiny Qwen2 model, tokenizer, prompts, batch, number of generations,
completion length and LoRA config; GRPO gets a trivial reward function (its cost is negligible).
Completions are forced to the full length (min_new_tokens) so that the two policies, which learn
different things, still generate the same number of tokens per step.
Every measurement runs in its own fresh subprocess, GRPO and Power-Flow alternating, so peak RSS
is per run and neither warms caches for the other.

- step time: median over steps (after `--warmup` steps) of the wall time between optimizer steps;
  it includes generation, scoring (for Power-Flow: the base model's log-probs and prompt
  features), forward, backward and the optimizer step.
- peak memory: the child's peak RSS (ru_maxrss) minus its RSS just before training, i.e. what
  training added on top of the loaded libraries and model; the total peak RSS is reported too.

    .venv/bin/python benchmarks/step_time.py --repeats 5

writes benchmarks/results/step_time.json and prints medians and ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "step_time.json"


def _rss_kib() -> int:
    """Current resident set size of this process, KiB (Linux /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def _length_reward(completions, **kwargs):
    """GRPO's reward in this benchmark: cheap, so the comparison times the trainers, not the reward."""
    return [float(len(c)) for c in completions]


def run_child(kind: str, steps: int, warmup: int, seed: int) -> dict:
    """Train `steps` steps of one trainer kind and report its step times and memory."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from powerflow.config.train import TrainConfig, train_lora_config, trl_arguments
    from powerflow.member import Member
    from powerflow.trainer import PowerFlowTrainer, trainer_config
    from powerflow.world.enumerable import build_model, build_tokenizer

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    tokenizer = build_tokenizer(26)
    model = build_model(len(tokenizer), seed=seed, hidden_size=128, num_layers=4, init_scale=0.1)
    prompts = ["a b c", "d e f g", "h i", "j k l m n"]
    dataset = Dataset.from_dict({"prompt": prompts * (steps * 2)})
    workdir = tempfile.TemporaryDirectory(prefix=f"bench-{kind}-")
    # One budget for both trainers (powerflow.config.train): 4 prompts x G = 8 a step, lr 1e-4, constant.
    budget = TrainConfig(steps=steps, prompts_per_step=4, num_generations=8, max_completion_length=24,
                         learning_rate=1e-4, lr_schedule="constant", seed=seed, logz="group" if kind == "powerflow-group"
                         else "head", lora_r=8, lora_alpha=16)
    # Every completion is exactly max_completion_length tokens (EOS suppressed until then), so both
    # trainers do the same generation work each step whatever their policies learn about length.
    overrides = dict(use_cpu=True, logging_steps=10_000, save_strategy="no", disable_tqdm=True,
                     generation_kwargs={"min_new_tokens": 24})
    lora = train_lora_config(budget)
    if kind == "grpo":
        args = GRPOConfig(beta=0.0, **(trl_arguments(budget, workdir.name, seed=seed) | overrides))
        trainer = GRPOTrainer(model=model, reward_funcs=_length_reward, args=args,
                              train_dataset=dataset, processing_class=tokenizer, peft_config=lora)
    else:
        args = trainer_config(budget, Member(4.0, "la_tb", seed), workdir.name, **overrides)
        trainer = PowerFlowTrainer(model=model, args=args,
                                   train_dataset=dataset, processing_class=tokenizer, peft_config=lora)

    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    trainer.add_callback(Clock())
    rss_before = _rss_kib()
    start = time.perf_counter()
    trainer.train()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    times = [b - a for a, b in zip([start] + stamps[:-1], stamps)][warmup:]
    workdir.cleanup()
    return {"kind": kind, "step_seconds": statistics.median(times), "rss_before_kib": rss_before,
            "peak_rss_kib": peak, "train_peak_kib": peak - rss_before}


def _spawn(kind: str, steps: int, warmup: int, seed: int) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--steps", str(steps), "--warmup", str(warmup),
           "--seed", str(seed)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child {kind} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=["grpo", "powerflow", "powerflow-group"], default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(args.child, args.steps, args.warmup, args.seed)))
        return 0

    kinds = ["grpo", "powerflow", "powerflow-group"]
    runs: dict[str, list[dict]] = {k: [] for k in kinds}
    for rep in range(args.repeats):
        for kind in kinds:
            runs[kind].append(_spawn(kind, args.steps, args.warmup, args.seed))
            print(f"repeat {rep + 1}/{args.repeats} {kind}: {runs[kind][-1]['step_seconds'] * 1000:.0f} ms/step",
                  flush=True)

    def med(kind, key):
        return statistics.median(r[key] for r in runs[kind])

    summary = {
        "command": "python benchmarks/step_time.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "baseline": "trl.GRPOTrainer, beta=0, same model/batch/generations/LoRA",
        "setup": "Qwen2 4 layers x 128 hidden, vocab 27, LoRA r=8 all-linear, batch 32 = 4 prompts x 8 "
                 "generations, 24 new tokens, CPU fp32",
        "repeats": args.repeats,
        "steps_per_run": args.steps,
        "warmup_steps_excluded": args.warmup,
        "median_step_seconds": {k: med(k, "step_seconds") for k in kinds},
        "median_train_peak_mib": {k: med(k, "train_peak_kib") / 1024 for k in kinds},
        "median_total_peak_rss_mib": {k: med(k, "peak_rss_kib") / 1024 for k in kinds},
        "runs": runs,
    }
    for k in kinds[1:]:
        summary[f"ratio_step_time/{k}"] = med(k, "step_seconds") / med("grpo", "step_seconds")
        summary[f"ratio_train_peak_memory/{k}"] = med(k, "train_peak_kib") / med("grpo", "train_peak_kib")
        summary[f"ratio_total_peak_rss/{k}"] = med(k, "peak_rss_kib") / med("grpo", "peak_rss_kib")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    for k in kinds[1:]:
        print(f"{k}: step time x{summary[f'ratio_step_time/{k}']:.3f}, training peak memory "
              f"x{summary[f'ratio_train_peak_memory/{k}']:.3f}, total peak RSS x{summary[f'ratio_total_peak_rss/{k}']:.3f}"
              " of GRPO")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
