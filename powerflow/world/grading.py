"""Answer extraction and grading for the world's prompt families.

reasoning: every teacher completion ends in the fixed format "answer N" (N a non-negative
  integer). The extracted answer is N of the last "answer N" in the completion, as a canonical
  integer string ("07" → "7"); valid = that format was found; correct = extracted == gold.
open_ended and chat (the same questions as direct chat requests): the completion is normalised (EOS
  text removed, whitespace stripped, lower-cased, trailing punctuation dropped); valid = the result is
  one of the valid answers (normalised the same way); correct = valid.

As answer kinds of the registry (powerflow.eval.grading): `IntegerAnswers` ("world_integer") and
`ValidAnswerList` ("world_open"). Only the world's own prompt rows are given these kinds.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable

from typing import Any

from powerflow.eval.grading import NO_ANSWER, OPEN_ENDED, REASONING, AnswerKind, Grade, decoded_key

FAMILIES = ("reasoning", "open_ended", "chat")
# The last "answer <integer>" wins; a token must follow "answer" as a whole word.
_ANSWER = re.compile(r"(?<![\w])answer\s+(-?\d+)(?![\w])")
_EOS_TEXT = "</s>"


def extract_reasoning_answer(completion: str) -> str | None:
    """N of the last 'answer N' in the completion as a canonical integer string, or None."""
    matches = _ANSWER.findall(completion)
    return str(int(matches[-1])) if matches else None


def normalize_open_answer(text: str) -> str:
    """Strip EOS text and whitespace, lower-case, drop trailing punctuation: ' Apple.</s>' → 'apple'."""
    text = text.replace(_EOS_TEXT, " ").strip().lower()
    return text.rstrip(string.punctuation + " ").strip()


def grade(family: str, answer: str | int | Iterable[str], completion: str) -> Grade:
    """Grade one completion against a prompt row's answer key (see the module docstring)."""
    if family == "reasoning":
        extracted = extract_reasoning_answer(completion)
        gold = str(int(str(answer).strip()))
        return Grade(valid=extracted is not None, correct=extracted == gold, extracted=extracted)
    if family in ("open_ended", "chat"):
        if isinstance(answer, str):
            raise TypeError("open_ended answer key must be a list of valid answers, not one string")
        extracted = normalize_open_answer(completion)
        valid = extracted in {normalize_open_answer(a) for a in answer}
        return Grade(valid=valid, correct=valid, extracted=extracted or None)
    raise ValueError(f"unknown prompt family {family!r}: use one of {', '.join(FAMILIES)}")


class IntegerAnswers(AnswerKind):
    """The world's reasoning answers: "answer N", N an integer, exact match (kind world_integer)."""

    name = "world_integer"
    scoring = REASONING

    def extract(self, completion: str) -> str | None:
        return extract_reasoning_answer(completion)

    def is_correct(self, extracted: str, answer: Any) -> bool:
        return extracted == str(int(str(decoded_key(answer)).strip()))

    def key_problem(self, answer: Any) -> str | None:
        try:
            int(str(decoded_key(answer)).strip())
        except ValueError:
            return f"world_integer keys are integers, got {answer!r}"
        return None


class ValidAnswerList(AnswerKind):
    """The world's open-ended answers: normalised text in the list of valid answers (kind world_open).

    extract gives the form two answers are compared in: the world's normalisation, then SQuAD's
    `normalize_answer` (EOS text dropped first, or "apple</s>" would become "apples"); same is
    equality of that form.
    """

    name = "world_open"
    scoring = OPEN_ENDED

    def extract(self, completion: str) -> str | None:
        from powerflow.eval.openended import normalize_answer

        return normalize_answer(normalize_open_answer(completion)) or None

    def grade(self, answer: Any, completion: str) -> Grade:
        key = decoded_key(answer)
        if isinstance(key, str):
            key = [key]
        verdict = grade("open_ended", key, completion)
        return verdict if verdict.extracted is not None else NO_ANSWER

    def same(self, representative: str, answer: str) -> bool:
        from powerflow.eval.openended import normalize_answer

        return normalize_answer(representative) == normalize_answer(answer)

    def key_problem(self, answer: Any) -> str | None:
        key = decoded_key(answer)
        if not isinstance(key, (list, tuple)) or not key:
            return f"world_open keys are non-empty lists of valid answers, got {answer!r}"
        return None
