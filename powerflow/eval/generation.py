"""Completions for evaluation: one interface, `generate_completions`, with a backend setting.

Backends: "transformers" (batched `model.generate`, CPU or CUDA) and "vllm" (vLLM's offline
`LLM` engine, the `gpu` extra on a CUDA machine). With "vllm" the `model` argument is the engine
`vllm_engine(path)` returns; where vLLM is not installed the backend answers with a UserError
saying what it needs. Both backends return the same `Completion`s: text decoded by the same
tokenizer, the generated ids cut after the first EOS, and `truncated` when no EOS came.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass

from powerflow.errors import UserError


@dataclass(frozen=True)
class Completion:
    """One generated answer: its text (special tokens removed), its length and whether it was cut."""

    text: str
    n_tokens: int  # generated tokens, the EOS included when one was produced
    truncated: bool  # reached max_new_tokens without producing EOS
    token_ids: tuple[int, ...] = ()  # the n_tokens generated ids (EOS included): for re-scoring


class BackendUnavailable(UserError):
    """The generation backend named in params.yaml cannot run on this machine."""


def generate_completions(
    model,
    tokenizer,
    prompts: list[str],
    *,
    n: int,
    greedy: bool,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool = True,
    backend: str = "transformers",
) -> list[list[Completion]]:
    """n completions for each prompt: result[i][j] is sample j of prompts[i].

    Greedy decoding is deterministic, so with greedy=True the one greedy completion is repeated n
    times. Sampling draws from the model's own next-token distribution at `temperature`, with
    nucleus `top_p` and no top-k cut, whatever the model's saved generation_config says; the same
    seed (and batch_size) gives the same completions.
    """
    if n < 1 or max_new_tokens < 1 or batch_size < 1:
        raise ValueError(f"need n, max_new_tokens, batch_size >= 1; got {n}, {max_new_tokens}, {batch_size}")
    if backend == "vllm":
        return _generate_vllm(model, tokenizer, prompts, n=n, greedy=greedy, max_new_tokens=max_new_tokens,
                              temperature=temperature, top_p=top_p, seed=seed, progress=progress)
    if backend != "transformers":
        raise BackendUnavailable(f"generation backend {backend!r} is unknown: set evaluate.backend to transformers.")
    if greedy:
        once = _generate_transformers(
            model, tokenizer, prompts, n=1, greedy=True, max_new_tokens=max_new_tokens, temperature=1.0,
            top_p=1.0, seed=seed, batch_size=batch_size, progress=progress,
        )
        return [row * n for row in once]
    return _generate_transformers(
        model, tokenizer, prompts, n=n, greedy=False, max_new_tokens=max_new_tokens, temperature=temperature,
        top_p=top_p, seed=seed, batch_size=batch_size, progress=progress,
    )


def require_vllm(setting: str, fallback: str) -> None:
    """BackendUnavailable unless the vllm package is installed and a CUDA GPU is visible.

    setting: the params that asked for vLLM ("evaluate.backend=vllm"); fallback: the change that
    avoids it ("set evaluate.backend: transformers"). Both go into the message.
    """
    if importlib.util.find_spec("vllm") is None:
        raise BackendUnavailable(
            f"{setting} needs the gpu extra and a CUDA GPU (pip install 'powerflow[gpu]' on a GPU "
            f"machine): install it there, or {fallback}."
        )
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailable(f"{setting} needs a CUDA GPU and none is visible: run on a GPU machine, or {fallback}.")


def vllm_engine(source: str, seed: int = 0, gpu_memory_utilization: float = 0.85, trust_remote_code: bool = False):
    """vLLM's offline engine for a model directory (or hub id), fp32/bf16 as the checkpoint says.

    The engine holds the GPU until it is deleted; `generate_completions(engine, ...,
    backend="vllm")` samples from it. A UserError when vLLM or a GPU is missing.
    """
    require_vllm("evaluate.backend=vllm", "set evaluate.backend: transformers")
    from vllm import LLM

    return LLM(model=str(source), seed=seed, gpu_memory_utilization=gpu_memory_utilization,
               trust_remote_code=trust_remote_code)


def _generate_vllm(engine, tokenizer, prompts, *, n, greedy, max_new_tokens, temperature, top_p, seed, progress):
    """n completions per prompt from a vLLM engine, from the same prompt token ids as transformers.

    Greedy = temperature 0. The per-request seed makes sampling repeatable for a given engine.
    """
    if importlib.util.find_spec("vllm") is None or isinstance(engine, _TORCH_MODULE_TYPES()):
        raise BackendUnavailable(
            "evaluate.backend=vllm needs a vLLM engine (powerflow.eval.generation.vllm_engine) from the gpu extra on "
            "a CUDA GPU: install it there, or set evaluate.backend: transformers."
        )
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    eos_ids = set(filter(lambda i: i is not None, [tokenizer.eos_token_id]))
    params = SamplingParams(
        n=1 if greedy else n, temperature=0.0 if greedy else temperature, top_p=1.0 if greedy else top_p,
        max_tokens=max_new_tokens, seed=seed,
    )
    requests = [TokensPrompt(prompt_token_ids=tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    outputs = engine.generate(requests, params, use_tqdm=progress)
    results = []
    for out in outputs:
        row = [vllm_completion(list(o.token_ids), o.finish_reason, eos_ids, tokenizer) for o in out.outputs]
        results.append(row * n if greedy else row)
    return results


def vllm_completion(token_ids: list[int], finish_reason: str | None, eos_ids: set[int], tokenizer) -> Completion:
    """A vLLM output as a Completion: an EOS stop whose EOS id vLLM left out gets it back, so
    n_tokens counts the EOS exactly as the transformers backend does."""
    if finish_reason == "stop" and eos_ids and not any(t in eos_ids for t in token_ids):
        token_ids = token_ids + [min(eos_ids)]
    return _to_completion(token_ids, eos_ids, tokenizer)


def _TORCH_MODULE_TYPES() -> tuple[type, ...]:
    import torch

    return (torch.nn.Module,)


def batch_seed(seed: int, batch_index: int) -> int:
    """Seed of one generation batch, a hash of (seed, batch index) into [0, 2^63).

    Hashing instead of seed + batch_index keeps neighbouring seeds from sharing batch streams.
    """
    digest = hashlib.sha256(f"{seed}:{batch_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _eos_ids(model, tokenizer) -> set[int]:
    """Every token id that ends a completion (generation_config may list several)."""
    ids = model.generation_config.eos_token_id
    ids = [] if ids is None else ([ids] if isinstance(ids, int) else list(ids))
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    if not ids:
        raise UserError("the tokenizer and the model's generation_config name no EOS token: set eos_token_id.")
    return set(ids)


def sampling_rows(model, tokenizer, prompts: list[str], n: int) -> tuple[list[tuple[int, list[int]]], set[int], int]:
    """(rows, EOS ids, pad id) for sampling n completions per prompt.

    rows = [(prompt index, prompt token ids)], each prompt repeated n times in sample order; the
    pad id is the tokenizer's, else the smallest EOS id. A prompt with no tokens is an error.
    """
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    for prompt, ids in zip(prompts, encoded):
        if not ids:
            raise ValueError(f"prompt {prompt!r} tokenizes to no tokens: generation needs at least one.")
    eos_ids = _eos_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos_ids)
    return [(i, ids) for i, ids in enumerate(encoded) for _ in range(n)], eos_ids, pad_id


def _left_padded_batch(rows: list[list[int]], pad_id: int, device):
    """input_ids and attention_mask for token rows padded on the left, shape [B, max_len]."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row):] = 1
    return ids.to(device), mask.to(device)


def _to_completion(new_tokens: list[int], eos_ids: set[int], tokenizer) -> Completion:
    """Cut generated tokens at the first EOS (kept in n_tokens) and decode what precedes it."""
    for position, token in enumerate(new_tokens):
        if token in eos_ids:
            body = new_tokens[:position]
            return Completion(tokenizer.decode(body, skip_special_tokens=True), position + 1, truncated=False,
                              token_ids=tuple(new_tokens[:position + 1]))
    return Completion(tokenizer.decode(new_tokens, skip_special_tokens=True), len(new_tokens), truncated=True,
                      token_ids=tuple(new_tokens))


def _generate_transformers(
    model, tokenizer, prompts, *, n, greedy, max_new_tokens, temperature, top_p, seed, batch_size, progress
) -> list[list[Completion]]:
    """Batched `model.generate` over prompts repeated n times, left padded, one seed per batch."""
    import torch
    from tqdm.auto import tqdm

    rows, eos_ids, pad_id = sampling_rows(model, tokenizer, prompts, n)
    # Explicit values override the model's saved generation_config (a hub model may save top_k=20
    # or a repetition penalty): evaluation samples the model's own distribution, with no top-k cut.
    decoding = {"do_sample": False, "num_beams": 1} if greedy else {
        "do_sample": True, "num_beams": 1, "temperature": temperature, "top_p": top_p, "top_k": 0
    }
    results: list[list[Completion]] = [[] for _ in prompts]
    device = model.device
    was_training = model.training
    model.eval()
    starts = range(0, len(rows), batch_size)
    try:
        # fork_rng: seeding per batch must not move the caller's global random state.
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.inference_mode():
            for batch_index, start in enumerate(tqdm(starts, desc="generate", disable=not progress, leave=False)):
                batch = rows[start:start + batch_size]
                ids, mask = _left_padded_batch([r for _, r in batch], pad_id, device)
                torch.manual_seed(batch_seed(seed, batch_index))
                out = model.generate(
                    input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, eos_token_id=sorted(eos_ids),
                    pad_token_id=pad_id, repetition_penalty=1.0, **decoding,
                )
                for (prompt_index, _), generated in zip(batch, out[:, ids.shape[1]:].tolist()):
                    results[prompt_index].append(_to_completion(generated, eos_ids, tokenizer))
    finally:
        model.train(was_training)
    return results
