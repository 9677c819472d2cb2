"""The world's tokenizer: one token per space-separated word, built with `tokenizers`.

Every word the teacher writes is one token: the reasoning markers ("Q", "+", "=", ",", "guess",
"work", "answer"), each whole number 0..max_number (a number is one token, so every arithmetic
step is a lookup a tiny model learns — no carries over digit tokens), the words of the open-ended
templates, the category names, every category's answers and the invalid words, and (when
world.chat_fraction > 0) the chat words of `powerflow.world.chat.chat_vocabulary`, after all the
others so that every other word keeps its id. Anything else maps to "<unk>".

Chat (world.chat_fraction > 0): the tokenizer carries the world's `chat_template` (saved with it,
so `apply_chat_template` works after `AutoTokenizer.from_pretrained`), and each instruction phrase of
the VS prompts is one vocabulary word registered as an added token, found in the raw text before
the split on spaces (powerflow.world.chat).

Special tokens: "</s>" (id 0) is EOS and pad; "<unk>" is id 1. There is no BOS and no
post-processor, so `add_special_tokens=True` adds nothing: encoding a prompt gives exactly its
word ids, and the pretraining code appends EOS to each document itself. Padding is on the left
(generation in batches needs it). `decode` joins tokens with single spaces, so a text with single
spaces between known words round-trips; `skip_special_tokens=True` drops "</s>".
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerFast

from powerflow.world.chat import CHAT_TEMPLATE, chat_vocabulary
from powerflow.world.config import CATEGORY_SLOT, WorldConfig
from powerflow.world.teacher import CATEGORY_ANSWERS, REASONING_WORDS, max_number, operand_labels

EOS = "</s>"
UNK = "<unk>"


def world_vocabulary(cfg: WorldConfig) -> list[str]:
    """The vocabulary in id order: specials, reasoning words, numbers, template words, categories, answers, noise."""
    templates = tuple(cfg.open_train_templates) + tuple(cfg.open_eval_templates)
    template_words = sorted({w for t in templates for w in t.split() if w != CATEGORY_SLOT})
    words = [EOS, UNK, *REASONING_WORDS, *(str(n) for n in range(max_number(cfg) + 1)), *template_words]
    words += list(CATEGORY_ANSWERS)
    words += [a for answers in CATEGORY_ANSWERS.values() for a in answers]
    words += list(cfg.invalid_words)
    words += operand_labels(cfg)  # the long-completion family's operand names (none by default)
    words += chat_vocabulary(cfg)  # last, so the other words keep their ids (none when chat_fraction is 0)
    return list(dict.fromkeys(words))  # drop repeats, keep first position


def build_tokenizer(cfg: WorldConfig) -> PreTrainedTokenizerFast:
    """A WordLevel tokenizer over `world_vocabulary(cfg)`, deterministic; `save_pretrained` + `AutoTokenizer` reload it."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    vocab = {word: i for i, word in enumerate(world_vocabulary(cfg))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    # An instruction phrase holds spaces: matched in the raw text before the split, keeping its vocabulary id.
    phrases = [w for w in vocab if " " in w]
    if phrases:
        tok.add_tokens([AddedToken(w, normalized=False, special=False) for w in phrases])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, pad_token=EOS, unk_token=UNK, padding_side="left",
        model_input_names=["input_ids", "attention_mask"],
    )
    if cfg.chat_fraction > 0:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
