"""A user's own model and data, built inside the test: what "bring your own model" starts from.

- `save_hub_style_model(dir)`: a random-init `Qwen2ForCausalLM` (a real hub architecture) with a
  byte-level BPE tokenizer trained on this module's own text, a chat template in ChatML form
  (`<|im_start|>role ... <|im_end|>`, as Qwen2's), saved with `save_pretrained` (safetensors).
- `math_prompt_records()` / `math500_style_records()`: MATH-style problems whose LaTeX answers
  take the shapes real MATH answers take (integers, fractions, `\\frac`, intervals and unions,
  bases with subscripts, tuples, matrices, text, `\\sqrt`, degrees, percentages, ...).
- `mmlu_pro_style_records()`, `gpqa_style_records()`, `open_ended_records()`: the other answer kinds.

Nothing is downloaded; everything is deterministic.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

# Final answers as MATH writes them (each shape the issue lists, some twice).
MATH_ANSWERS = (
    "12", "-3", "\\frac{14}{3}", "\\dfrac{1}{2}", "3/4", "(0,9) \\cup (9,36)", "[-2, 5)", "4210_{5}",
    "1011_2", "(3, -1)", "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\text{Monday}", "\\text{(C)}",
    "2\\sqrt{5}", "\\sqrt{2}/2", "30^\\circ", "45^{\\circ}", "25\\%", "12.5", "x^2 + 2x + 1", "\\pi",
    "\\infty", "1,\\!000", "y = 2x + 3",
)
SUBJECTS = ("Algebra", "Number Theory", "Geometry", "Precalculus", "Counting & Probability")


def _training_text() -> list[str]:
    """The text the tokenizer is trained on: the problems, answers and templates the tests use."""
    lines = [f"Problem {i}: compute the value. The final answer is \\boxed{{{a}}}." for i, a in enumerate(MATH_ANSWERS)]
    lines += ["Please reason step by step, and put your final answer within \\boxed{}.",
              "The answer is (A). The answer is (B). Answer: C. (D) (E) (F) (G) (H) (I) (J)",
              "Name a fruit. apple banana cherry grape kiwi mango pear plum. Give one answer.",
              "You are a helpful assistant. system user assistant"]
    return lines * 4


def build_bpe_tokenizer():
    """A byte-level BPE `PreTrainedTokenizerFast` trained on `_training_text`, with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(_training_text(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        additional_special_tokens=["<|im_start|>"])
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def save_hub_style_model(path: str | Path, seed: int = 0) -> Path:
    """Save a tiny random-init Qwen2ForCausalLM with its BPE tokenizer and chat template to `path`."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    path = Path(path)
    tokenizer = build_bpe_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024, tie_word_embeddings=True,
        bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def math_prompt_records() -> list[dict]:
    """A user's prompt table in MATH's column names (unique_id, problem, answer, subject, level)."""
    return [{"unique_id": f"train/{i:03d}.json", "problem": f"Problem {i}: compute the value of item {i}.",
             "answer": answer, "subject": SUBJECTS[i % len(SUBJECTS)], "level": 1 + i % 5}
            for i, answer in enumerate(MATH_ANSWERS)]


def math500_style_records() -> list[dict]:
    """A MATH500-format benchmark file (problem, solution, answer, subject, level, unique_id)."""
    return [{"problem": f"Evaluate expression {i}.", "solution": f"Work it out: \\boxed{{{a}}}.", "answer": a,
             "subject": SUBJECTS[i % len(SUBJECTS)], "level": 1 + i % 5, "unique_id": f"test/{i:03d}.json"}
            for i, a in enumerate(reversed(MATH_ANSWERS))]


def mmlu_pro_style_records() -> list[dict]:
    """MMLU-Pro format: question, options (up to 10, "N/A" padding), answer letter, answer_index."""
    options = ["apple", "pear", "plum", "kiwi", "mango", "grape", "cherry", "banana", "N/A", "N/A"]
    return [{"question_id": i, "question": f"Which fruit is number {i}?", "options": options,
             "answer": "ABCDEFGH"[i % 8], "answer_index": i % 8, "category": ("biology", "other")[i % 2],
             "src": "test"} for i in range(6)]


def gpqa_style_records() -> list[dict]:
    """GPQA format: Question, Correct Answer, Incorrect Answer 1-3, Record ID, High-level domain."""
    return [{"Question": f"Which option is right in case {i}?", "Correct Answer": f"right {i}",
             "Incorrect Answer 1": f"wrong a{i}", "Incorrect Answer 2": f"wrong b{i}",
             "Incorrect Answer 3": f"wrong c{i}", "Record ID": f"rec{i}", "High-level domain": "Physics"}
            for i in range(4)]


def open_ended_records() -> list[dict]:
    """A user's open-ended prompt table: several valid answers per prompt (a list), no gold value."""
    fruits = ["apple", "banana", "cherry", "grape", "kiwi", "mango", "pear", "plum"]
    return [{"id": f"open-{i}", "prompt": f"Name a fruit (list {i}).", "answer": fruits[i % 3:],
             "family": "open_ended"} for i in range(8)]
