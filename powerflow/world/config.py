"""Settings of the embedded world (params.yaml `world:`) and of its base model's pretraining (`base:`).

The world is docs/design.md section 3: a tokenizer (with a chat template when world.chat_fraction > 0), a
noisy teacher that writes the pretraining corpus, and prompt families with answer keys. Every field below is read by `teacher.py`,
`tokenizer.py` or `pretrain.py`; changing one changes the world, so DVC tracks both sections.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from powerflow.errors import ConfigError

# Prompts must stay short: the fine-tuning stage generates ~64 completions per step on 2 cores.
MAX_PROMPT_TOKENS = 12
CATEGORY_SLOT = "{category}"


# The open-ended categories: ten single-token answers each, most typical first (that order is the
# Zipf rank). Answers are disjoint across categories, so an answer is valid for exactly one category.
CATEGORY_ANSWERS: dict[str, tuple[str, ...]] = {
    "fruit": ("apple", "banana", "orange", "grape", "mango", "pear", "cherry", "peach", "plum", "kiwi"),
    "color": ("red", "blue", "green", "yellow", "purple", "black", "white", "pink", "brown", "gray"),
    "vegetable": ("carrot", "potato", "tomato", "onion", "pepper", "lettuce", "cabbage", "spinach", "celery", "garlic"),
    "tool": ("hammer", "wrench", "saw", "drill", "screwdriver", "pliers", "chisel", "shovel", "rake", "ladder"),
    "drink": ("water", "tea", "coffee", "milk", "juice", "soda", "lemonade", "cocoa", "cider", "beer"),
    "sport": ("soccer", "tennis", "golf", "hockey", "baseball", "cricket", "rugby", "boxing", "skiing", "surfing"),
    "flower": ("rose", "tulip", "daisy", "lily", "orchid", "sunflower", "daffodil", "poppy", "iris", "violet"),
    "bird": ("robin", "eagle", "sparrow", "owl", "parrot", "crow", "pigeon", "swan", "hawk", "penguin"),
}


@dataclass(frozen=True)
class WorldConfig:
    """The embedded world: prompt families, splits and the teacher's probabilities.

    Section `world:` of params.yaml. Reasoning prompts are "Q a + b + c =" with single digits;
    open-ended prompts are paraphrases of "name a <category> :". See `powerflow.world.teacher`.
    """

    seed: int = field(default=0, metadata={"help": "Seed of the prompt splits (the corpus has its own seed)."})
    n_operands: int = field(
        default=3, metadata={"help": "Single-digit operands per reasoning problem (2..4); 3 gives 1000 problems."}
    )
    max_operands: int | None = field(
        default=None,
        metadata={"help": "null: every problem has n_operands operands. An int (n_operands < it <= 12): the "
                          "long-completion family instead (labelled operands, n_operands..max_operands of them; "
                          "powerflow.world.teacher)."},
    )
    oracle_max_errors: int = field(
        default=2,
        metadata={"help": "The oracle's support holds worked solutions with at most this many wrong steps (the "
                          "rest of the base's mass is reported as the bound); 2 keeps every path of 3 operands."},
    )
    n_reasoning_train: int = field(default=320, metadata={"help": "Reasoning prompts in the train split."})
    n_reasoning_eval: int = field(
        default=64, metadata={"help": "Reasoning prompts in the eval split (never in the teacher corpus)."}
    )
    # 0.6 rather than 0.55: the base's own p(guess) wanders a few points around the teacher's from
    # prompt to prompt, and greedy must open with "guess" on (nearly) every prompt.
    p_guess: float = field(
        default=0.6,
        metadata={"help": "Probability that the teacher opens with 'guess' (then answers wrongly) instead of 'work'."},
    )
    # No ±1: a tiny model's one-shot estimate of the sum is blurred by about ±1, and with ±1 offsets
    # that blur put 10-14 % on the true sum after "guess answer" (greedy then guessed right too often).
    guess_offsets: tuple[int, ...] = field(
        default=(-4, -3, -2, 2, 3, 4),
        metadata={"help": "A guess is the true sum plus one of these nonzero offsets, uniformly (guesses are never right)."},
    )
    step_error: float = field(
        default=0.03, metadata={"help": "Probability that one worked step is wrong (the error propagates)."}
    )
    step_error_offsets: tuple[int, ...] = field(
        default=(-1, 1), metadata={"help": "A wrong step is off by one of these nonzero offsets, uniformly."}
    )
    categories: tuple[str, ...] = field(
        default=("fruit", "color", "vegetable", "tool", "drink", "sport", "flower", "bird"),
        metadata={"help": "Open-ended categories (names from powerflow.world.config.CATEGORY_ANSWERS)."},
    )
    open_train_templates: tuple[str, ...] = field(
        default=("name a {category} :", "give me a {category} :", "say a {category} :", "tell me a {category} :"),
        metadata={"help": "Open-ended prompt paraphrases of the train split; '{category}' is replaced."},
    )
    open_eval_templates: tuple[str, ...] = field(
        default=("pick a {category} :", "write a {category} :"),
        metadata={"help": "Held-out paraphrases of the eval split (in the corpus, never in the train split)."},
    )
    zipf_exponent: float = field(
        default=1.3,
        metadata={"help": "Teacher answer frequencies ∝ rank^-s; s = 1.3 over 10 answers puts 44 % on the top one."},
    )
    invalid_rate: float = field(
        default=0.03, metadata={"help": "Probability of an invalid open-ended answer (drawn from invalid_words)."}
    )
    invalid_words: tuple[str, ...] = field(
        default=("thing", "stuff"), metadata={"help": "The few invalid answers the noise is concentrated on."}
    )
    # Half the documents open-ended: the arithmetic is learned by ~1000 steps either way, while more
    # open-ended documents sharpen the category (less mass on other categories' answers, which
    # p^α with α < 1 amplifies).
    reasoning_fraction: float = field(
        default=0.5, metadata={"help": "Share of reasoning documents in the teacher corpus (the rest open-ended "
                                       "and chat)."}
    )
    # Chat documents (powerflow.world.chat, docs/design.md §3.3) are taken from the open-ended share, so the
    # reasoning documents (and the base's arithmetic) keep their count. 0.3 leaves 20 % open-ended documents;
    # at 0.2 (with fewer judge documents) the base never learned the judge's verdict.
    chat_fraction: float = field(
        default=0.3,
        metadata={"help": "Share of chat documents in the teacher corpus (direct, verbalized and judge requests in "
                          "the world's chat template), taken from the open-ended share. 0: no chat documents, no "
                          "chat words in the vocabulary and no chat template (the world before issue 21)."},
    )
    chat_mix: tuple[float, float, float] = field(
        default=(0.2, 0.3, 0.5),
        metadata={"help": "Relative weights of the chat documents' kinds: (direct, verbalized, judge); the judge's "
                          "verdict needs the most documents to be learned."},
    )
    # γ = 2 makes α = 1/γ = 0.5, a point of the default sweep, undo the alignment exactly:
    # (p_teacher^γ)^(1/γ) ∝ p_teacher.
    alignment_gamma: float = field(
        default=2.0,
        metadata={"help": "γ > 1 of the aligned chat style: a direct chat request is answered with p_aligned(a) ∝ "
                          "p_teacher(a)^γ (mode collapse); γ = 2 puts 77 % on the top answer against the teacher's 42 %."},
    )
    chat_k: int = field(
        default=5,
        metadata={"help": "Candidates per verbalized reply the corpus teaches (the VS prompts' k; match "
                          "baselines.verbalized_k)."},
    )
    chat_turns: int = field(
        default=3, metadata={"help": "Turns of the VS-Multi conversations the corpus teaches (the VS prompts' turns)."}
    )

    def __post_init__(self):
        section = "world"
        if not 2 <= self.n_operands <= 4:
            raise ConfigError(f"{section}.n_operands={self.n_operands}: use 2, 3 or 4 (prompts stay <= 12 tokens).")
        if self.max_operands is not None and not self.n_operands < self.max_operands <= 12:
            raise ConfigError(
                f"{section}.max_operands={self.max_operands}: use null (the default family) or an int in "
                f"{self.n_operands + 1}..12 (more than n_operands={self.n_operands}; labels d1..d12 exist)."
            )
        if self.oracle_max_errors < 0:
            raise ConfigError(f"{section}.oracle_max_errors={self.oracle_max_errors}: must be >= 0.")
        n_problems = 10**self.n_operands if self.max_operands is None else 10**self.max_operands
        if self.n_reasoning_train < 1 or self.n_reasoning_eval < 1:
            raise ConfigError(f"{section}.n_reasoning_train and n_reasoning_eval must be >= 1.")
        if self.n_reasoning_train + self.n_reasoning_eval > n_problems // 2:
            raise ConfigError(
                f"{section}: n_reasoning_train + n_reasoning_eval = {self.n_reasoning_train + self.n_reasoning_eval} "
                f"exceeds half of the {n_problems} problems with n_operands={self.n_operands}: lower them "
                "(the corpus needs the other problems to teach arithmetic)."
            )
        for name in ("p_guess", "step_error", "invalid_rate", "reasoning_fraction"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 <= value < 1):
                raise ConfigError(f"{section}.{name}={value}: must be a probability in [0, 1).")
        if not 0 < self.reasoning_fraction:
            raise ConfigError(f"{section}.reasoning_fraction must be > 0.")
        if not (math.isfinite(self.chat_fraction) and 0 <= self.chat_fraction < 1 - self.reasoning_fraction):
            raise ConfigError(
                f"{section}.chat_fraction={self.chat_fraction}: must be in [0, 1 - reasoning_fraction) = "
                f"[0, {1 - self.reasoning_fraction:g}) (chat documents are taken from the open-ended share)."
            )
        if len(self.chat_mix) != 3 or any(not (math.isfinite(w) and w >= 0) for w in self.chat_mix) \
                or sum(self.chat_mix) <= 0:
            raise ConfigError(f"{section}.chat_mix={list(self.chat_mix)}: give three weights >= 0, not all 0 "
                              "(direct, verbalized, judge).")
        if not (math.isfinite(self.alignment_gamma) and self.alignment_gamma >= 1):
            raise ConfigError(f"{section}.alignment_gamma={self.alignment_gamma}: must be >= 1 (1: no alignment; "
                              "2 by default).")
        if not 1 <= self.chat_k <= 10 or not 1 <= self.chat_turns <= 5:
            raise ConfigError(f"{section}.chat_k={self.chat_k}, chat_turns={self.chat_turns}: use chat_k in 1..10 "
                              "and chat_turns in 1..5 (a reply and a conversation must fit the model's context).")
        for name in ("guess_offsets", "step_error_offsets"):
            offsets = getattr(self, name)
            if not offsets or any(o == 0 or abs(o) > 5 for o in offsets):
                raise ConfigError(f"{section}.{name}={list(offsets)}: use a non-empty list of nonzero ints in -5..5.")
        if not (math.isfinite(self.zipf_exponent) and self.zipf_exponent >= 0):
            raise ConfigError(f"{section}.zipf_exponent={self.zipf_exponent}: must be >= 0 (0 is uniform).")
        unknown = [c for c in self.categories if c not in CATEGORY_ANSWERS]
        if not self.categories or unknown:
            raise ConfigError(
                f"{section}.categories has unknown {unknown or 'nothing'}: use names from {', '.join(CATEGORY_ANSWERS)}."
            )
        if self.invalid_rate > 0 and not self.invalid_words:
            raise ConfigError(f"{section}.invalid_words is empty while invalid_rate > 0: add words or set it to 0.")
        valid = {a for c in self.categories for a in CATEGORY_ANSWERS[c]}
        clash = sorted(set(self.invalid_words) & valid)
        if clash or any(len(w.split()) != 1 for w in self.invalid_words):
            raise ConfigError(f"{section}.invalid_words must be single words that are no valid answer ({clash}).")
        for name in ("open_train_templates", "open_eval_templates"):
            templates = getattr(self, name)
            if not templates:
                raise ConfigError(f"{section}.{name} is empty: give at least one template with '{CATEGORY_SLOT}'.")
            for t in templates:
                if CATEGORY_SLOT not in t or len(t.split()) > MAX_PROMPT_TOKENS:
                    raise ConfigError(
                        f"{section}.{name} has {t!r}: a template must contain '{CATEGORY_SLOT}' and have at most "
                        f"{MAX_PROMPT_TOKENS} space-separated tokens."
                    )
        overlap = sorted(set(self.open_train_templates) & set(self.open_eval_templates))
        if overlap:
            raise ConfigError(f"{section}: templates {overlap} are in both splits: keep eval paraphrases held out.")


@dataclass(frozen=True)
class PretrainConfig:
    """The world's base model and its pretraining on the teacher corpus.

    Section `base:` of params.yaml. A Llama causal LM built from a config (about 1.1 M parameters
    at the defaults, untied input and output embeddings), trained with AdamW on `n_documents`
    teacher documents. The defaults take about 110 s on two idle cores.
    """

    seed: int = field(default=0, metadata={"help": "Seed of the weights, the corpus and the batch order."})
    hidden_size: int = field(default=128, metadata={"help": "Model width."})
    num_layers: int = field(default=4, metadata={"help": "Transformer blocks."})
    num_heads: int = field(default=4, metadata={"help": "Attention heads (must divide hidden_size)."})
    intermediate_size: int = field(default=512, metadata={"help": "MLP width."})
    n_documents: int = field(default=48000, metadata={"help": "Teacher documents in the corpus (sampled once)."})
    steps: int = field(default=1500, metadata={"help": "Optimizer steps."})
    batch_size: int = field(default=64, metadata={"help": "Documents per step."})
    learning_rate: float = field(default=3e-3, metadata={"help": "Peak AdamW learning rate (linear warmup, cosine decay)."})
    warmup_steps: int = field(default=100, metadata={"help": "Linear warmup steps."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay (0: logits of never-seen answers keep falling)."})
    grad_clip: float = field(default=1.0, metadata={"help": "Gradient-norm clip."})
    micro_batches: int = field(
        default=4,
        metadata={"help": "Most forward passes a step's batch is split into, its documents grouped by length so "
                          "each pass pads less (gradients summed: the same update as one pass, up to float "
                          "rounding); 1: one pass per batch."},
    )
    num_threads: int = field(
        default=0, metadata={"help": "torch.set_num_threads for pretraining; 0 keeps the process's setting."}
    )

    def __post_init__(self):
        section = "base"
        positive = {"hidden_size": self.hidden_size, "num_layers": self.num_layers, "num_heads": self.num_heads,
                    "intermediate_size": self.intermediate_size, "n_documents": self.n_documents,
                    "steps": self.steps, "batch_size": self.batch_size, "learning_rate": self.learning_rate,
                    "grad_clip": self.grad_clip}
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{section}.{name}={value}: must be > 0.")
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 2:
            raise ConfigError(
                f"{section}.num_heads={self.num_heads} must divide hidden_size={self.hidden_size} into an even head "
                "size (rotary embeddings): e.g. hidden_size 128 with 4 heads."
            )
        if self.n_documents < self.batch_size:
            raise ConfigError(f"{section}.n_documents={self.n_documents} is below batch_size={self.batch_size}: raise it.")
        if self.warmup_steps < 0 or self.warmup_steps >= self.steps:
            raise ConfigError(f"{section}.warmup_steps={self.warmup_steps}: must be in [0, steps).")
        if self.micro_batches < 1:
            raise ConfigError(f"{section}.micro_batches={self.micro_batches}: use 1 (one pass per batch) or more.")
        if self.weight_decay < 0 or self.num_threads < 0:
            raise ConfigError(f"{section}.weight_decay and base.num_threads must be >= 0.")
