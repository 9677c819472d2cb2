"""TransformersJudge on a tiny random Llama with the world's WordLevel tokenizer, saved to disk.

Llama, not Qwen2: AutoTokenizer swaps in a byte-level Qwen2Tokenizer for a "qwen2" directory
(see powerflow.world.pretrain.build_base_model), which would not be the tokenizer saved here.

The model knows none of the rubric's words, so its greedy output is gibberish: the test checks
that decoding is deterministic, that gibberish is counted as parse failures and that nothing
crashes — the plumbing of a local judge, not the quality of a judgement.
"""

from __future__ import annotations

import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from powerflow.eval.judge import (
    CREATIVE_WRITING_RUBRIC,
    TransformersJudge,
    judge_from_config,
    judge_prompt,
    judge_quality,
)
from powerflow.world.config import WorldConfig
from powerflow.world.enumerable import save_pair
from powerflow.world.tokenizer import build_tokenizer

ITEMS = [
    ("Write a haiku about rain.", "Drops on a tin roof / the gutter hums its one note / night keeps the rhythm"),
    ("Write the opening line of a mystery.", "The clock in the hall had stopped at 3:12, and so had Mr. Pell."),
    ("Describe a market at dawn.", "Crates thud; oranges glow under a sky the colour of weak tea."),
]
MAX_NEW = 12  # enough to see a few tokens of gibberish; keeps the test to a few seconds


def tiny_judge_directory(directory, chat_template: str | None = None):
    """A random 2-layer Llama over the world vocabulary, long enough positions for a judge prompt.

    The world without chat documents, whose tokenizer has no chat template (the default world's has one).
    """
    tokenizer = build_tokenizer(WorldConfig(chat_fraction=0.0))
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, initializer_range=0.3,
        tie_word_embeddings=False, bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return save_pair(model, tokenizer, directory)


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    return TransformersJudge(str(tiny_judge_directory(tmp_path_factory.mktemp("judge"))), max_new_tokens=MAX_NEW,
                             batch_size=2)


def test_greedy_judge_output_is_deterministic(judge):
    prompts = [judge_prompt(CREATIVE_WRITING_RUBRIC, p, r) for p, r in ITEMS]
    first = judge.complete(prompts)
    assert len(first) == len(ITEMS) and all(isinstance(t, str) for t in first)
    assert any(t.strip() for t in first)  # real tokens came out, so "the same twice" is not vacuous
    assert judge.complete(prompts) == first
    assert judge.complete(prompts[1:2]) == first[1:2]  # alone or in a padded batch: the same answer
    assert judge.format_prompt(prompts[0]) == prompts[0]  # no chat template: the raw prompt


def test_gibberish_judgements_are_counted_as_failures(judge):
    result = judge_quality(judge, CREATIVE_WRITING_RUBRIC, ITEMS)
    assert result.n_failures == len(ITEMS) and result.qualities == [None] * len(ITEMS)
    assert math.isnan(result.mean) and math.isnan(result.se)
    assert len(result.raw) == len(ITEMS)


def test_chat_template_wraps_the_prompt_when_the_tokenizer_has_one(tmp_path):
    template = "{% for m in messages %}Q {{ m['content'] }}{% endfor %}{% if add_generation_prompt %} answer{% endif %}"
    judge = judge_from_config(str(tiny_judge_directory(tmp_path, chat_template=template)), max_new_tokens=2)
    assert isinstance(judge, TransformersJudge) and judge.max_new_tokens == 2
    assert judge.format_prompt("1 + 2 =") == "Q 1 + 2 = answer"
    assert len(judge.complete(["1 + 2 ="])) == 1
