"""Pretrain the world's base model on the teacher corpus (plain torch, seeded, CPU-deterministic).

The base is a small Llama causal LM built from a config (about 1.1 M parameters at the default
`PretrainConfig`) and trained by maximum likelihood on `teacher_corpus` documents, each followed
by EOS. It learns the teacher's distribution, including the "guess or work" fork of the reasoning
family and the skew of the open-ended family, which is what the power-distribution fine-tuning
then reshapes.

Output directory (written whole or not at all, via powerflow.io.atomic_directory):
    config.json generation_config.json model.safetensors   the model (AutoModelForCausalLM)
    tokenizer.json tokenizer_config.json ...               the tokenizer (AutoTokenizer)
    world.json                                             the WorldConfig as a dict
    base.json                                              the PretrainConfig as a dict
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path

from powerflow.io import atomic_directory, write_json_atomic
from powerflow.world.config import PretrainConfig, WorldConfig
from powerflow.world.teacher import teacher_corpus
from powerflow.world.tokenizer import build_tokenizer

# Longest teacher completion is 16 tokens with EOS (3 operands); the default generation length
# leaves room for that and for a policy that rambles a little (4 operands need 22).
DEFAULT_MAX_NEW_TOKENS = 24
# Longest document: 12 prompt tokens + 22 completion tokens + EOS < 64 positions for the prompt families;
# a chat document is up to 67 tokens (a third VS-Multi turn, powerflow.world.chat), and a VS prompt with
# k = 5 candidates over three turns needs about 80. Positions add no weights (rotary embeddings), so
# the non-chat base is the same model either way.
MAX_POSITIONS = 128


def build_base_model(vocab_size: int, cfg: PretrainConfig, eos_token_id: int, pad_token_id: int):
    """A LlamaForCausalLM from a config, weights seeded with cfg.seed; generation stops at EOS.

    Llama, not Qwen2: AutoTokenizer.from_pretrained forces Qwen2Tokenizer (a byte-level BPE) on any
    directory whose config.json says model_type "qwen2" (transformers 5.24,
    MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS), which would replace the world's word-level tokenizer
    when the model and tokenizer are saved together. For "llama" it honours tokenizer_config.json.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=MAX_POSITIONS,
        # Untied: the output embedding of an answer is then free to differ from its input embedding,
        # which measured a little less mass on other categories' answers (exact α=0.5 validity 0.635
        # against 0.604 after 1000 steps).
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
    )
    torch.manual_seed(cfg.seed)
    model = LlamaForCausalLM(config)
    gen = model.generation_config
    gen.bos_token_id = None
    gen.eos_token_id = eos_token_id
    gen.pad_token_id = pad_token_id
    gen.max_new_tokens = DEFAULT_MAX_NEW_TOKENS
    return model


def encode_documents(tokenizer, documents: list[str]):
    """(ids, mask): [N, L] long tensors, each document's tokens then EOS, right-padded with pad id."""
    import torch

    rows = [tokenizer(d, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for d in documents]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return ids, mask


def language_model_loss(model, ids, mask, tokens_per_document: float, batch_size: int | None = None):
    """Negative log-likelihood of the batch's documents per corpus token.

        L = −(1 / (B · n̄)) Σ_i Σ_t m_it log p(x_it | x_i,<t)

    with n̄ the corpus mean of predicted tokens per document, a constant: each document weighs its
    whole sequence's log-likelihood whatever batch it lands in. (A per-batch token mean would
    up-weight the documents of batches that happen to be short, e.g. over-count "guess" openings.)
    B is `batch_size` when the rows are one micro-batch of a larger batch (default: the rows given),
    so the micro-batches' losses sum to the batch's.
    """
    import torch

    width = int(mask.sum(-1).max())  # trim the batch to its longest document
    ids, mask = ids[:, :width], mask[:, :width]
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    targets, weights = ids[:, 1:], mask[:, 1:].float()
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    return (nll * weights).sum() / ((batch_size or len(ids)) * tokens_per_document)


# Cost of one more forward/backward pass in padded-token slots (kernel launches, the optimizer's
# bookkeeping stays per step): a split must save more slots than this to be taken.
PASS_OVERHEAD_TOKENS = 128


def length_groups(lengths: list[int], max_groups: int, overhead: int = PASS_OVERHEAD_TOKENS) -> list[list[int]]:
    """A batch's positions split into ≤ max_groups micro-batches of similar length, minimising padding.

    Sort the documents by length ℓ_(1) ≤ … ≤ ℓ_(B) and cut the order into contiguous groups G_1..G_g,
    chosen by dynamic programming to minimise

        Σ_j (|G_j| · max_{i∈G_j} ℓ_i + overhead)

    the padded token slots of the passes plus a fixed cost per pass. The groups hold every position
    once, so the summed micro-batch losses are the batch's loss (`language_model_loss`).
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    ordered = [lengths[i] for i in order]
    n, inf = len(order), float("inf")
    cost = [[inf] * (n + 1) for _ in range(max_groups + 1)]  # cost[g][k]: the first k sorted docs in g groups
    cut = [[0] * (n + 1) for _ in range(max_groups + 1)]
    cost[0][0] = 0.0
    for g in range(1, max_groups + 1):
        for k in range(1, n + 1):
            for start in range(g - 1, k):  # group g holds sorted docs start..k-1, padded to ordered[k-1]
                c = cost[g - 1][start] + (k - start) * ordered[k - 1] + overhead
                if c < cost[g][k]:
                    cost[g][k], cut[g][k] = c, start
    groups_used = min(range(1, max_groups + 1), key=lambda g: cost[g][n])
    groups, k = [], n
    for g in range(groups_used, 0, -1):
        start = cut[g][k]
        groups.append(order[start:k])
        k = start
    return groups[::-1]


def accumulated_loss(model, ids, mask, tokens_per_document: float, micro_batches: int) -> "torch.Tensor":
    """Back-propagate one batch's `language_model_loss` in length-grouped micro-batches (`length_groups`);
    returns the batch's loss (detached). The gradients are the one-pass batch's, up to float rounding."""
    lengths = mask.sum(-1).tolist()
    groups = length_groups(lengths, micro_batches) if micro_batches > 1 else [list(range(len(lengths)))]
    total = 0.0
    for group in groups:
        loss = language_model_loss(model, ids[group], mask[group], tokens_per_document, batch_size=len(lengths))
        loss.backward()
        total += loss.detach()
    return total


def learning_rate_at(step: int, cfg: PretrainConfig) -> float:
    """Linear warmup to the peak, then cosine decay to 10 % of it: lr(t) = lr·(0.1 + 0.9·½(1+cos πu))."""
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    u = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * u)))


def pretrain_base(
    world: WorldConfig, cfg: PretrainConfig, out_dir: str | Path, progress: Callable[[str], None] | None = None
) -> dict:
    """Train the base on teacher documents with AdamW and write it to out_dir atomically.

    Shows a tqdm bar, or calls progress(message) about 20 times when given. Returns metrics:
    base/final_loss (mean of the last 50 steps), base/seconds, base/n_parameters, base/n_documents,
    base/steps, base/tokens_seen.
    """
    import torch
    from tqdm.auto import tqdm

    started = time.perf_counter()
    threads_before = torch.get_num_threads()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    try:
        tokenizer = build_tokenizer(world)
        ids, mask = encode_documents(tokenizer, teacher_corpus(world, cfg.n_documents, seed=cfg.seed))
        model = build_base_model(len(tokenizer), cfg, tokenizer.eos_token_id, tokenizer.pad_token_id)
        tokens_per_document = float((mask.sum(-1) - 1).float().mean())
        n_parameters = sum(p.numel() for p in model.parameters())
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        order = torch.Generator().manual_seed(cfg.seed)
        batches = shuffled_batches(len(ids), cfg.batch_size, cfg.steps, order)
        losses, tokens_seen = [], 0
        report_every = max(1, cfg.steps // 20)
        model.train()
        bar = tqdm(total=cfg.steps, desc="pretrain base", disable=progress is not None, leave=False)
        for step, index in enumerate(batches):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(step, cfg)
            optimizer.zero_grad(set_to_none=True)
            loss = accumulated_loss(model, ids[index], mask[index], tokens_per_document, cfg.micro_batches)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            losses.append(loss.item())
            tokens_seen += int(mask[index].sum())
            bar.update(1)
            if step % report_every == 0 or step == cfg.steps - 1:
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
                if progress is not None:
                    progress(f"pretrain base: step {step + 1}/{cfg.steps} loss {losses[-1]:.4f}")
        bar.close()
        model.eval()
        with atomic_directory(out_dir) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            write_json_atomic(dataclasses.asdict(world), tmp / "world.json")
            write_json_atomic(dataclasses.asdict(cfg), tmp / "base.json")
    finally:
        torch.set_num_threads(threads_before)
    tail = losses[-50:]
    return {
        "base/final_loss": sum(tail) / len(tail),
        "base/seconds": time.perf_counter() - started,
        "base/n_parameters": n_parameters,
        "base/n_documents": cfg.n_documents,
        "base/steps": cfg.steps,
        "base/tokens_seen": tokens_seen,
    }


def shuffled_batches(n: int, batch_size: int, steps: int, generator) -> list:
    """`steps` batches of document indices: epochs of seeded permutations, cut into full batches.

    Batches mix the families and lengths; `accumulated_loss` runs each in passes of similar length
    (`length_groups`), which keeps the update of the mixed batch and pads less: with chat documents
    (up to 67 tokens against 23) 131 ms per step against 250 ms in one pass, 1.31x the world without
    chat (benchmarks/pretrain_step.py, 2 threads). Batches sorted
    by length would save about a quarter of the token slots, but measured worse: after 1500 steps
    the worked-path accuracy was 0.71 against 1.0 with mixed batches.

    Batches by document kind measured worse too (world.chat_fraction 0.3, 1500 steps, one thread
    on a shared 2-core machine). The text documents mixed as here, each chat kind (direct, judge,
    VS-Standard, VS-CoT, VS-Multi by turn) in batches of its own, fed from the same stream of
    permutations (each document seen as often, same B · n̄ loss): 293 s against 596 s mixed (the
    chat_fraction 0 base: 231–246 s), but the judge gave one verdict to everything (agreement
    0.11 against 1.0), VS-Standard validity fell to 0.17 (coverage@16 0.10 against 0.47; direct
    chat 0.32) and exact p^4 reasoning accuracy to 0.845 (0.954 mixed). Text and chat as two
    buckets (chat kinds mixed) took 393 s, 1.6x the plain base, short of the goal of 1.3x.
    """
    import torch

    batches: list = []
    while len(batches) < steps:
        perm = torch.randperm(n, generator=generator)
        batches += list(perm[: n - n % batch_size].view(-1, batch_size))
    return batches[:steps]
