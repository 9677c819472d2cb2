"""The world's pretraining step with length-grouped micro-batches, divided by one pass per batch.

Baseline: the world without chat documents (world.chat_fraction 0) trained one pass per batch, the
way the base was pretrained before issue 21. Measured in this one process, every setting on the
same corpus sample, the same batches (params.yaml's base: batch 64) and a fresh model each:

    chat_fraction ∈ {0, 0.3} × base.micro_batches ∈ {1, 4}

ms per optimizer step (forward, backward, AdamW) as the median of `--repeats` rounds of `--steps`
steps, the settings interleaved within each round so machine noise hits them alike. The chat
documents are up to 67 tokens against 23, so one pass pads every mixed batch to its longest
document; micro-batches group a batch's documents by length (powerflow.world.pretrain.length_groups)
and sum their gradients, the same update.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/pretrain_step.py

writes benchmarks/results/pretrain_step.json and prints each setting's ms/step and its ratio to the baseline.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "pretrain_step.json"
SETTINGS = ((0.0, 1), (0.0, 4), (0.3, 1), (0.3, 4))


def step_ms(world, micro_batches: int, steps: int, n_documents: int) -> float:
    """Mean ms per pretraining step over `steps` batches of a fresh base, after 3 warm-up steps."""
    import torch

    from powerflow.world.config import PretrainConfig
    from powerflow.world.pretrain import accumulated_loss, build_base_model, encode_documents, shuffled_batches
    from powerflow.world.teacher import teacher_corpus
    from powerflow.world.tokenizer import build_tokenizer

    cfg = PretrainConfig()
    tokenizer = build_tokenizer(world)
    ids, mask = encode_documents(tokenizer, teacher_corpus(world, n_documents, seed=cfg.seed))
    n_bar = float((mask.sum(-1) - 1).float().mean())
    batches = shuffled_batches(len(ids), cfg.batch_size, steps + 3, torch.Generator().manual_seed(cfg.seed))
    model = build_base_model(len(tokenizer), cfg, tokenizer.eos_token_id, tokenizer.pad_token_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate)
    for i, batch in enumerate(batches):
        if i == 3:
            started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        accumulated_loss(model, ids[batch], mask[batch], n_bar, micro_batches)
        optimizer.step()
    return (time.perf_counter() - started) / steps * 1000


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    from powerflow.world.config import WorldConfig

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--documents", type=int, default=6000)
    args = parser.parse_args(argv)
    rounds: dict[tuple[float, int], list[float]] = {s: [] for s in SETTINGS}
    for _ in range(args.repeats):
        for chat, micro in SETTINGS:
            rounds[(chat, micro)].append(step_ms(WorldConfig(chat_fraction=chat), micro, args.steps, args.documents))
    baseline = statistics.median(rounds[(0.0, 1)])
    rows = [{"chat_fraction": chat, "micro_batches": micro, "ms_per_step": statistics.median(values),
             "ratio_to_baseline": statistics.median(values) / baseline, "runs_ms": values}
            for (chat, micro), values in rounds.items()]
    for r in rows:
        print(f"chat_fraction {r['chat_fraction']:.1f} micro_batches {r['micro_batches']}: "
              f"{r['ms_per_step']:.1f} ms/step, {r['ratio_to_baseline']:.2f}x the baseline")
    RESULTS.write_text(json.dumps({"baseline": "chat_fraction 0, micro_batches 1", "steps": args.steps,
                                   "repeats": args.repeats, "rows": rows}, indent=1) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
