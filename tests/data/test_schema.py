"""Mapping a raw table to the prompt schema, and rendering prompts for base and instruct models."""

import json

import numpy as np
import pandas as pd
import pytest

from powerflow.errors import ConfigError
from powerflow.data.config import DataConfig
from powerflow.data.schema import (
    ANSWER_COLUMNS,
    PROMPT_COLUMNS,
    assign_split,
    encode_answer,
    render_prompts,
    stable_fraction,
    to_prompt_schema,
)


def test_world_rows_keep_their_schema(world_rows):
    prompts, answers = to_prompt_schema(pd.DataFrame(world_rows), DataConfig())
    assert list(prompts.columns) == ["id", "family", "split", "prompt", "request"]
    assert (prompts["request"] == prompts["prompt"]).all()  # a source without requests: the prompt is the request
    assert list(answers.columns) == list(ANSWER_COLUMNS)
    assert prompts["split"].tolist() == ["train", "eval", "train", "eval"]
    assert [json.loads(a) for a in answers["answer"]] == ["5", "5", ["apple", "pear"], ["red", "blue"]]


def test_defaults_for_missing_id_family_split():
    raw = pd.DataFrame({"prompt": [f"p{i}" for i in range(2000)]})
    prompts, answers = to_prompt_schema(raw, DataConfig(source="x.csv", default_family="open_ended", eval_fraction=0.25))
    assert prompts["id"].tolist()[:3] == ["row-0", "row-1", "row-2"]
    assert set(prompts["family"]) == {"open_ended"}
    share = (prompts["split"] == "eval").mean()
    assert 0.22 < share < 0.28  # u(id) is uniform: about eval_fraction of the rows
    assert answers.empty and list(answers.columns) == list(ANSWER_COLUMNS)


def test_hash_split_is_stable_per_id_and_seeded():
    ids = [f"q{i}" for i in range(200)]
    before = {i: assign_split(i, 0.3, seed=0) for i in ids}
    raw = pd.DataFrame({"id": ids + ["extra-1", "extra-2"], "prompt": "x"})
    prompts, _ = to_prompt_schema(raw.iloc[::-1], DataConfig(source="x.csv", eval_fraction=0.3))
    # adding rows and reordering moves no row to another split
    assert {r["id"]: r["split"] for r in prompts.to_dict("records") if r["id"] in before} == before
    assert [stable_fraction(i, 0) for i in ids] != [stable_fraction(i, 1) for i in ids]
    assert all(0.0 <= stable_fraction(i, 0) < 1.0 for i in ids)


def test_split_aliases_ids_as_text_and_limit():
    raw = pd.DataFrame({"id": [1.0, 2.0, 3.0], "prompt": ["a", "b", "c"], "split": ["TRAIN", "validation", "test"]})
    prompts, _ = to_prompt_schema(raw, DataConfig(source="x.csv", limit=2))
    assert prompts["id"].tolist() == ["1", "2"]
    assert prompts["split"].tolist() == ["train", "eval"]


def test_missing_values_stay_missing_for_validation():
    raw = pd.DataFrame({"id": ["a", None], "prompt": [None, "b"], "family": [None, "reasoning"]})
    prompts, _ = to_prompt_schema(raw, DataConfig(source="x.csv"))
    assert prompts["prompt"].tolist() == ["", "b"]
    assert prompts["id"].tolist() == ["a", None]
    assert prompts["family"].tolist() == [None, "reasoning"]
    assert prompts["split"].notna().all()


def test_encode_answer_strings_and_lists():
    assert json.loads(encode_answer(10)) == "10"
    assert json.loads(encode_answer(10.0)) == "10"
    assert json.loads(encode_answer(np.array(["a", "b"]))) == ["a", "b"]
    assert json.loads(encode_answer(("x", 3))) == ["x", "3"]


def test_rows_without_answer_are_left_out_of_answers():
    raw = pd.DataFrame({"prompt": ["a", "b"], "answer": ["1", None]})
    _, answers = to_prompt_schema(raw, DataConfig(source="x.csv"))
    assert answers["id"].tolist() == ["row-0"]


def test_text_prompts_count_tokens_without_special_tokens(world_rows, tokenizer):
    prompts, _ = to_prompt_schema(pd.DataFrame(world_rows), DataConfig())
    rendered = render_prompts(prompts, tokenizer, DataConfig())
    assert list(rendered.columns) == list(PROMPT_COLUMNS)
    assert rendered["prompt"].tolist() == prompts["prompt"].tolist()
    assert rendered["prompt_tokens"].tolist() == [5, 5, 3, 3]


def test_chat_prompts_use_the_template_with_generation_prompt(world_rows, chat_tokenizer):
    cfg = DataConfig(prompt_format="chat", system_prompt="be brief")
    prompts, _ = to_prompt_schema(pd.DataFrame(world_rows), cfg)
    rendered = render_prompts(prompts, chat_tokenizer, cfg)
    first = rendered["prompt"].iloc[0]
    assert first == ("<|im_start|> system be brief <|im_end|> <|im_start|> user what is two plus three <|im_end|> "
                     "<|im_start|> assistant ")
    expected = chat_tokenizer.apply_chat_template(
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "name a fruit"}],
        tokenize=False, add_generation_prompt=True)
    assert rendered["prompt"].iloc[2] == expected
    assert rendered["prompt_tokens"].iloc[0] == len(chat_tokenizer(first, add_special_tokens=False)["input_ids"]) == 15


def test_chat_keeps_blank_prompts_blank(chat_tokenizer):
    cfg = DataConfig(source="x.csv", prompt_format="chat")
    prompts, _ = to_prompt_schema(pd.DataFrame({"prompt": ["name a fruit", "  "]}), cfg)
    rendered = render_prompts(prompts, chat_tokenizer, cfg)
    assert rendered["prompt"].iloc[1] == "  " and rendered["prompt_tokens"].iloc[1] == 0


def test_chat_without_template_is_a_clear_error(world_rows, tokenizer):
    cfg = DataConfig(prompt_format="chat")
    prompts, _ = to_prompt_schema(pd.DataFrame(world_rows), cfg)
    with pytest.raises(ConfigError, match=r"no chat template.*prompt_format: text"):
        render_prompts(prompts, tokenizer, cfg)
