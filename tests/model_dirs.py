"""Small, real model directories for tests: the world's tokenizer and a tiny Llama built from a config."""

from __future__ import annotations

from pathlib import Path

HIDDEN_SIZE = 32


def save_world_model(path: Path) -> Path:
    """Save an untrained world base (config.json, model.safetensors, tokenizer files) to `path`; return it."""
    from powerflow.world.config import PretrainConfig, WorldConfig
    from powerflow.world.pretrain import build_base_model
    from powerflow.world.tokenizer import build_tokenizer

    tokenizer = build_tokenizer(WorldConfig())
    cfg = PretrainConfig(hidden_size=HIDDEN_SIZE, num_layers=1, num_heads=2, intermediate_size=2 * HIDDEN_SIZE)
    model = build_base_model(len(tokenizer), cfg, tokenizer.eos_token_id, tokenizer.pad_token_id)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return Path(path)
