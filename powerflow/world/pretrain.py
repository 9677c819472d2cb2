"""Pretrain the world's base model on the teacher corpus (plain torch, seeded, CPU-deterministic).

The base is a small Llama causal LM built from a config (about 1.4 M parameters at the default
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
# Batches per pool that the length bucketing sorts together: large enough that most batches hold
# documents of one length, small enough that consecutive epochs still mix differently.
BUCKET_POOL = 32
# Longest document: 12 prompt tokens + 22 completion tokens + EOS < 64 positions.
MAX_POSITIONS = 64


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
        tie_word_embeddings=True,
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


def language_model_loss(model, ids, mask):
    """Mean next-token negative log-likelihood over real tokens: −(1/Σm) Σ_t m_t log p(x_t | x_<t)."""
    import torch

    width = int(mask.sum(-1).max())  # trim the batch to its longest document
    ids, mask = ids[:, :width], mask[:, :width]
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    targets, weights = ids[:, 1:], mask[:, 1:].float()
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    return (nll * weights).sum() / weights.sum()


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
        n_parameters = sum(p.numel() for p in model.parameters())
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        order = torch.Generator().manual_seed(cfg.seed)
        batches = length_bucketed_batches(mask.sum(-1), cfg.batch_size, cfg.steps, order)
        losses, tokens_seen = [], 0
        report_every = max(1, cfg.steps // 20)
        model.train()
        bar = tqdm(total=cfg.steps, desc="pretrain base", disable=progress is not None, leave=False)
        for step, index in enumerate(batches):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(step, cfg)
            loss = language_model_loss(model, ids[index], mask[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
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


def length_bucketed_batches(lengths, batch_size: int, steps: int, generator) -> list:
    """`steps` batches of document indices, each batch of documents of similar length.

    Per epoch: a seeded permutation, cut into pools of BUCKET_POOL batches; each pool is sorted by
    length and cut into batches; all batches of the epoch are then shuffled. A batch is padded to
    its longest document only, so short open-ended and guess documents stop paying for the width
    of worked solutions (about 1.6x fewer token slots than mixed batches on the default world).
    """
    import torch

    n = len(lengths)
    batches: list = []
    while len(batches) < steps:
        perm = torch.randperm(n, generator=generator)
        epoch = []
        pool = batch_size * BUCKET_POOL
        for start in range(0, n - batch_size + 1, pool):
            chunk = perm[start : start + pool]
            chunk = chunk[torch.sort(lengths[chunk], stable=True).indices]
            epoch += [chunk[i : i + batch_size] for i in range(0, len(chunk) - batch_size + 1, batch_size)]
        batches += [epoch[i] for i in torch.randperm(len(epoch), generator=generator).tolist()]
    return batches[:steps]
