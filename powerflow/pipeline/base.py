"""The `base` stage: pretrain the embedded world's base model into models/base/ (world only)."""

from __future__ import annotations


from powerflow.config import PipelineConfig
from powerflow.io import atomic_directory, write_json_atomic
from powerflow.pipeline.layout import layout_of
from powerflow.pipeline.loading import check_model_source, load_tokenizer


def pretrain_base(cfg: PipelineConfig) -> dict:
    """Pretrain the embedded world's base model (models/base/); a hub or local model skips it.

    For a non-world model the step writes only models/base/powerflow_base.json naming the model,
    so DVC's graph stays the same whichever base is used.
    """
    out = layout_of(cfg).base_model
    if not cfg.model.is_world:
        load_tokenizer(cfg.model.name_or_path, cfg.model.trust_remote_code)  # fail here, not in train
        check_model_source(cfg.model.name_or_path, cfg.model.trust_remote_code)
        with atomic_directory(out) as tmp:
            write_json_atomic({"name_or_path": cfg.model.name_or_path, "pretrained_here": False},
                              tmp / "powerflow_base.json")
        return {"base/pretrained_here": 0.0}
    from powerflow.world.pretrain import pretrain_base as pretrain

    return pretrain(cfg.world, cfg.base, out)
