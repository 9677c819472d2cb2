"""Fixtures for the data tests: real `tokenizers` WordLevel tokenizers (one token per word)."""

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

# A chat template in the ChatML shape most instruct models use; its markers are single tokens.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}"
    "{% if add_generation_prompt %}<|im_start|> assistant {% endif %}"
)
WORDS = ("what", "is", "two", "plus", "three", "name", "a", "fruit", "color", "be", "brief")


def word_tokenizer(chat_template: str | None = None) -> PreTrainedTokenizerFast:
    """Whitespace-split WordLevel tokenizer: a prompt of n words is n tokens (unknown words -> <unk>)."""
    vocab = {"<unk>": 0, "<|im_start|>": 1, "<|im_end|>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<|im_end|>", pad_token="<unk>")
    if chat_template is not None:
        fast.chat_template = chat_template
    return fast


@pytest.fixture(scope="session")
def tokenizer():
    return word_tokenizer()


@pytest.fixture(scope="session")
def chat_tokenizer():
    return word_tokenizer(CHAT_TEMPLATE)


@pytest.fixture
def world_rows():
    """Rows in the shape the embedded world writes: id, family, split, prompt, answer."""
    return [
        {"id": "r-1", "family": "reasoning", "split": "train", "prompt": "what is two plus three", "answer": "5"},
        {"id": "r-2", "family": "reasoning", "split": "eval", "prompt": "what is three plus two", "answer": "5"},
        {"id": "o-1", "family": "open_ended", "split": "train", "prompt": "name a fruit", "answer": ["apple", "pear"]},
        {"id": "o-2", "family": "open_ended", "split": "eval", "prompt": "name a color", "answer": ["red", "blue"]},
    ]
