"""Causal LMs small enough to enumerate: the test bed for exact verification.

Vocabulary: "</s>" (id 0: EOS and pad) and n_symbols letters "a", "b", ... (ids 1..n). Prompts
are strings of letters, e.g. "d" or "a b". The model is a real `transformers` Qwen2 built from a
config; the tokenizer is a real `tokenizers` WordLevel tokenizer that `AutoTokenizer` reloads.

Two bases are provided:
- `random_base`: random weights at a large init scale, so p_base is structured and p_α is far
  from it (the trainer's convergence tests start here).
- `forked_base`: fitted to a "guess or work" distribution where the most likely *first token*
  leads to scattered completions while the most likely *complete sequence* starts with the
  other token. Token-level low temperature and sequence-level p^α disagree on it by design.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

EOS = "</s>"


def symbols(n_symbols: int) -> list[str]:
    """The letters of the vocabulary after EOS: 'a', 'b', ... (n_symbols ≤ 26)."""
    if not 1 <= n_symbols <= 26:
        raise ValueError(f"n_symbols must be in 1..26, got {n_symbols}")
    return list(string.ascii_lowercase[:n_symbols])


def build_tokenizer(n_symbols: int = 4) -> PreTrainedTokenizerFast:
    """WordLevel tokenizer over EOS + letters, left padding (TRL generation needs it)."""
    vocab = {EOS: 0, **{s: i + 1 for i, s in enumerate(symbols(n_symbols))}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=EOS))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, pad_token=EOS, unk_token=EOS, padding_side="left"
    )


def build_model(
    vocab_size: int, seed: int = 0, hidden_size: int = 32, num_layers: int = 2, init_scale: float = 0.02
) -> Qwen2ForCausalLM:
    """A Qwen2 causal LM from a config, seeded; init_scale is the std of every weight matrix."""
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        initializer_range=init_scale,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=0,
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = 0
    model.generation_config.pad_token_id = 0
    return model


def random_base(seed: int = 0, n_symbols: int = 4, init_scale: float = 0.3, hidden_size: int = 32):
    """(model, tokenizer) with random weights at a large init scale: a structured, smooth p_base."""
    tokenizer = build_tokenizer(n_symbols)
    model = build_model(len(tokenizer), seed=seed, hidden_size=hidden_size, init_scale=init_scale)
    return model, tokenizer


def fit_to_distribution(
    model: torch.nn.Module,
    prompt_ids: list[int],
    target: Mapping[tuple[int, ...], float],
    steps: int = 300,
    lr: float = 1e-2,
) -> float:
    """Maximum likelihood on weighted completions: minimise −Σ_y t(y) log π(y|q) (= KL(t‖π) + H(t)).

    target maps completion token ids (ending in EOS) to probabilities. Returns the final loss.
    """
    seqs = list(target)
    weights = torch.tensor([target[s] for s in seqs], dtype=torch.float32)
    weights = weights / weights.sum()
    width = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), len(prompt_ids) + width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        row = list(prompt_ids) + list(s)
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    labels = ids.clone()
    labels[:, : len(prompt_ids)] = -100
    labels[mask == 0] = -100
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    loss_value = float("nan")
    for _ in range(steps):
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        logp = torch.log_softmax(logits, dim=-1)
        tgt = labels[:, 1:]
        tok_logp = logp.gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1) * (tgt != -100)
        loss = -(weights * tok_logp.sum(-1)).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss_value = loss.item()
    model.eval()
    return loss_value


def forked_distribution(tokenizer: PreTrainedTokenizerFast, p_guess: float = 0.55) -> dict[tuple[int, ...], float]:
    """'Guess or work': first token 'a' (p_guess) then one of b/c/d at random, or 'b c d' (1 − p_guess).

    Token level, 'a' is the likelier opening; sequence level, 'b c d </s>' (1 − p_guess) beats each
    guess (p_guess / 3). Needs n_symbols ≥ 4.
    """
    ids = {s: tokenizer.convert_tokens_to_ids(s) for s in ["a", "b", "c", "d", EOS]}
    eos = ids[EOS]
    dist = {(ids["a"], ids[x], eos): p_guess / 3 for x in ["b", "c", "d"]}
    dist[(ids["b"], ids["c"], ids["d"], eos)] = 1.0 - p_guess
    return dist


def forked_base(seed: int = 0, prompt: str = "d", steps: int = 300):
    """(model, tokenizer) fitted to `forked_distribution` for `prompt`."""
    tokenizer = build_tokenizer(4)
    model = build_model(len(tokenizer), seed=seed, init_scale=0.1)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    fit_to_distribution(model, prompt_ids, forked_distribution(tokenizer), steps=steps)
    return model, tokenizer


def save_pair(model, tokenizer, directory: str | Path) -> Path:
    """Save a (model, tokenizer) pair as a transformers directory (safetensors)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory
