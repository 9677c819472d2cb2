"""Multiple-choice answers (MMLU-Pro, GPQA): the chosen letter of a completion, and its grade.

- option_letters   "ABCD" for 4 options
- format_options   "(A) ...\\n(B) ..." for a prompt
- extract_choice   the official MMLU-Pro extraction cascade, restricted to the options that exist
- grade_choice     extract + compare -> `Grade`
- ChoiceAnswers    the answer kinds multiple_choice (A-J) and multiple_choice_4 (A-D, GPQA)
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from functools import lru_cache

from powerflow.eval.grading import REASONING, AnswerKind, Grade

# Letters name options; 26 is where the alphabet ends (MMLU-Pro uses up to 10, GPQA 4).
MAX_OPTIONS = len(string.ascii_uppercase)


def option_letters(n: int) -> str:
    """The letters naming n options, from A: option_letters(4) == "ABCD"."""
    if not 1 <= n <= MAX_OPTIONS:
        raise ValueError(f"a multiple-choice question needs 1 to {MAX_OPTIONS} options; got {n}")
    return string.ascii_uppercase[:n]


def format_options(options: Sequence[str]) -> str:
    """The options as prompt lines, one per option: "(A) first\\n(B) second" (no trailing newline)."""
    letters = option_letters(len(options))
    return "\n".join(f"({letter}) {option}" for letter, option in zip(letters, options, strict=True))


@lru_cache(maxsize=MAX_OPTIONS)
def _cascade(n_options: int) -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """The three MMLU-Pro patterns with the letter class [A-J] narrowed to the first n_options."""
    letters = option_letters(n_options)
    letter = f"[{letters[0]}-{letters[-1]}]"
    return (
        re.compile(rf"answer is \(?({letter})\)?"),
        re.compile(rf".*[aA]nswer:\s*({letter})"),
        re.compile(rf"\b{letter}\b(?!.*\b{letter}\b)", re.DOTALL),
    )


def extract_choice(text: str, n_options: int = 10) -> str | None:
    """The option letter a completion chooses, by the official MMLU-Pro cascade; None if none.

    The cascade of TIGER-AI-Lab/MMLU-Pro, evaluate_from_api.py (`extract_answer`,
    `extract_again`, `extract_final`); evaluate_from_local.py and compute_accuracy.py hold the
    first two steps unchanged. The first hit wins:

    1. `answer is \\(?([A-J])\\)?`: the FIRST "answer is X" / "answer is (X)".
    2. `.*[aA]nswer:\\s*([A-J])`: "Answer: X"; `.` stops at line breaks and `.*` is greedy, so
       this is the last "answer:" on the first line that has one.
    3. `\\b[A-J]\\b(?!.*\\b[A-J]\\b)` with DOTALL: the last standalone capital letter in the text
       (beware: the pronoun "I" is one when there are 9 or more options).

    Letters are restricted to the first n_options (A-D for GPQA), so a letter naming no option
    is ignored by every step. Letters are case-sensitive as in the official code: a lowercase
    "(b)" is not an answer. Unlike the official scorer there is no random-guess fallback: no
    match is None, an extraction failure the caller reports separately.
    """
    for pattern in _cascade(n_options):
        match = pattern.search(text)
        if match:
            return match.group(match.re.groups)  # group 1 for steps 1-2, the whole match for 3
    return None


def grade_choice(completion: str, gold_letter: str, n_options: int) -> Grade:
    """valid = a letter was extracted; correct = it is the gold letter. No letter: invalid, wrong."""
    gold = gold_letter.strip().upper()
    if gold not in option_letters(n_options):
        raise ValueError(
            f"gold letter {gold_letter!r} names none of the {n_options} options "
            f"{option_letters(n_options)}"
        )
    extracted = extract_choice(completion, n_options)
    return Grade(valid=extracted is not None, correct=extracted == gold, extracted=extracted)


class ChoiceAnswers(AnswerKind):
    """A gold option letter (kinds multiple_choice: A-J, the MMLU-Pro cascade; multiple_choice_4:
    A-D, GPQA, so the pronoun "I" is never read as option I). Letters compare as equal strings."""

    scoring = REASONING

    def __init__(self, n_options: int = 10) -> None:
        self.n_options = n_options
        self.name = "multiple_choice" if n_options == 10 else f"multiple_choice_{n_options}"

    def extract(self, completion: str) -> str | None:
        return extract_choice(completion, self.n_options)

    def is_correct(self, extracted: str, answer) -> bool:
        return extracted == str(answer).strip().upper()

    def key_problem(self, answer) -> str | None:
        letters = option_letters(self.n_options)
        if not isinstance(answer, str) or answer.strip().upper() not in letters:
            return f"{self.name} keys are one letter of {letters}, got {answer!r}"
        return None
