"""Shared by every stage that touches a model: the base model's source and the tokenizer/LM loaders.

Every load goes through `transformers` (`AutoTokenizer`, `AutoModelForCausalLM`); an unknown or
unreachable model id is one UserError naming the id and the fix.
"""

from __future__ import annotations

from pathlib import Path

from powerflow.config import PipelineConfig
from powerflow.errors import UserError
from powerflow.pipeline.layout import require_input, layout_of


def base_model_source(cfg: PipelineConfig) -> str:
    """Directory or model id the pipeline starts from: the pretrained world base, or model.name_or_path."""
    if cfg.model.is_world:
        return str(require_input(layout_of(cfg).base_model / "config.json", "base").parent)
    return cfg.model.name_or_path


def load_tokenizer(source: str, trust_remote_code: bool = False):
    """AutoTokenizer for a directory or model id, with a fixable error when it cannot be found."""
    from transformers import AutoTokenizer

    from powerflow.checkpoints import check_remote_code

    check_remote_code(source, trust_remote_code)
    try:
        return AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise UserError(_unknown_model_message(source, err)) from err


def load_causal_lm(source: str, trust_remote_code: bool = False, dtype: str = "float32"):
    """AutoModelForCausalLM from safetensors only, fp32 (or `dtype`), eval mode; fixable error when not found.

    Refused with a CheckpointError (powerflow.checkpoints): pickle-only or corrupt weights, weights
    that do not match config.json name for name and shape for shape (never re-initialised at
    random), and custom code (`auto_map`) unless model.trust_remote_code is true.
    """
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    from powerflow.checkpoints import CheckpointError, check_loading_info

    check_model_source(source, trust_remote_code)
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            source, trust_remote_code=trust_remote_code, use_safetensors=True, dtype=dtype,
            output_loading_info=True, ignore_mismatched_sizes=True)
    except SafetensorError as err:
        raise CheckpointError(f"the weights of {source} are not readable safetensors ({err}): they are truncated or "
                              "corrupt; copy or download the model again.") from err
    except (OSError, ValueError) as err:
        raise UserError(_unknown_model_message(source, err)) from err
    check_loading_info(source, info)
    return model.eval()


def check_model_source(source: str, trust_remote_code: bool = False) -> None:
    """What load_causal_lm checks before loading (weights format, file headers, custom code), alone: cheap."""
    from powerflow.checkpoints import check_checkpoint_dir, check_remote_code

    if Path(source).expanduser().is_dir():
        check_checkpoint_dir(Path(source).expanduser(), trust_remote_code)
    else:
        check_remote_code(source, trust_remote_code)


def _unknown_model_message(source: str, err: Exception) -> str:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    looks_local = source.startswith((".", "/", "~")) or source.count("/") > 1
    if looks_local and not Path(source).expanduser().exists():
        first = "no such directory"
    return (f"model {source!r} could not be loaded ({first}). model.name_or_path must be \"world\", a local "
            "model directory with safetensors weights, or a model id already in the Hugging Face cache "
            "(this machine is offline: download it elsewhere and copy the directory here).")
