"""The `prepare` stage: build, validate and write the prompt tables to data/prepared/."""

from __future__ import annotations


from powerflow.config import PipelineConfig
from powerflow.pipeline.layout import layout_of
from powerflow.pipeline.loading import load_tokenizer


def prepare_prompts(cfg: PipelineConfig) -> dict:
    """Load, map, render and validate the prompt table; write data/prepared/ (DVC output)."""
    from powerflow.data.prepare import prepare_prompts as prepare

    world_rows = None
    if cfg.model.is_world or cfg.data.source == "world":
        from powerflow.world.teacher import world_families, world_prompt_rows
        from powerflow.world.tokenizer import build_tokenizer

        families = world_families(cfg.world, cfg.data.families)  # the chat family when the world has chat
        world_rows = world_prompt_rows(cfg.world, families) if cfg.data.source == "world" else None
    if cfg.model.is_world:
        tokenizer = build_tokenizer(cfg.world)
    else:
        tokenizer = load_tokenizer(cfg.model.name_or_path, cfg.model.trust_remote_code)
    prepared = prepare(cfg.data, tokenizer, layout_of(cfg).prepared, cfg.project_root, world_rows=world_rows)
    return dict(prepared.manifest)
