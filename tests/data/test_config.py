"""DataConfig: loads from a params.yaml mapping, and every bad value names its key and the fix."""

import dataclasses

import pytest

from powerflow.config.parse import section_from_dict
from powerflow.errors import ConfigError
from powerflow.data.config import DataConfig


def test_defaults_read_the_embedded_world_as_plain_text():
    cfg = DataConfig()
    assert cfg.is_world and cfg.hf_dataset is None
    assert cfg.prompt_format == "text" and cfg.columns == {}
    assert all(f.metadata.get("help") for f in dataclasses.fields(DataConfig))


def test_loads_from_params_mapping_with_column_mapping():
    cfg = section_from_dict(
        DataConfig,
        {"source": "hf:openai/gsm8k", "hf_config": "main", "hf_split": "test[:50]",
         "columns": {"prompt": "question", "answer": "answer"}, "families": ["reasoning"],
         "prompt_format": "chat", "system_prompt": "be brief", "limit": 10},
        "data",
    )
    assert cfg.hf_dataset == "openai/gsm8k"
    assert cfg.columns == {"prompt": "question", "answer": "answer"}
    assert cfg.families == ("reasoning",)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"source": "prompts.txt"}, "data.source"),
        ({"source": ""}, "data.source"),
        ({"source": "hf:"}, "data.source"),
        ({"source": "hf:json"}, "data.source"),
        ({"columns": {"question": "q"}}, "data.columns.question"),
        ({"columns": {"prompt": " "}}, "data.columns.prompt"),
        ({"default_family": "poetry"}, "data.default_family"),
        ({"families": ()}, "data.families"),
        ({"families": ("reasoning", "reasoning")}, "data.families"),
        ({"eval_fraction": 1.0}, "data.eval_fraction"),
        ({"eval_fraction": -0.1}, "data.eval_fraction"),
        ({"prompt_format": "messages"}, "data.prompt_format"),
        ({"system_prompt": "be brief"}, "data.system_prompt"),
        ({"min_prompt_tokens": -1}, "data.min_prompt_tokens"),
        ({"min_prompt_tokens": 10, "max_prompt_tokens": 5}, "data.max_prompt_tokens"),
        ({"limit": 0}, "data.limit"),
    ],
)
def test_bad_values_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        DataConfig(**kwargs)


def test_unknown_key_is_refused():
    with pytest.raises(ConfigError, match="data.prompt_column"):
        section_from_dict(DataConfig, {"prompt_column": "q"}, "data")
