"""Grading by answer kind: the verdict type, and the one registry every grading path goes through.

Whoever asks "is this answer right" (evaluation, GRPO's gold-answer reward, the report) or "are
these two answers the same" (maj@k, EMPO's equivalence clustering) asks the `AnswerKind` of the
row's family, built here by name:

    kind          scoring     key (answer)                 extract / correct / same
    world_integer reasoning   a non-negative integer       last "answer N" (the embedded world only)
    world_open    open_ended  list of valid answers        normalised text ∈ list (the world only)
    math          reasoning   a LaTeX answer ("\\frac{1}{2}", "(0,9) \\cup (9,36)", "4210_{5}")
                                                           last \\boxed{} or "the answer is";
                                                           math-verify equivalence, in a worker
    multiple_choice    reasoning  a letter A-J             the MMLU-Pro letter cascade
    multiple_choice_4  reasoning  a letter A-D             the same over four options (GPQA)
    open_qa       open_ended  list of answers or alias groups   normalised first line in a group
    none          creative    no key (null)                not graded: diversity, judged quality

Where a row's kind comes from: a benchmark's loader declares it (powerflow.eval.benchmarks); a
user's prompt table gets `data.answer_kind`, or the kind inferred from its source and answers,
recorded in the prepared manifest (powerflow.data.answer_kinds). A completion a kind cannot read
is "no answer" (Grade.valid False), never an exception: graders take any text. A key a kind cannot
take is refused when the table is prepared (`AnswerKind.key_problem`), so grading never meets one.

The world's kinds live in powerflow.world.grading and are named here only as text, so nothing
outside the world imports the world's grader.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

from powerflow.errors import ConfigError, UserError

REASONING, OPEN_ENDED, CREATIVE = "reasoning", "open_ended", "creative"


@dataclass(frozen=True)
class Grade:
    """The verdict on one completion: format found, answer right, and the normalised answer.

    valid: the completion gives an answer in the expected format (an extraction failure is
        valid=False, correct=False: counted as wrong and reported as "no answer", never guessed).
    correct: the answer equals the gold one (reasoning) or is one of the valid answers (open-ended).
    extracted: the answer as graded, normalised; None when no answer was found.
    """

    valid: bool
    correct: bool
    extracted: str | None


NO_ANSWER = Grade(valid=False, correct=False, extracted=None)


class UnknownAnswerKindError(ConfigError):
    """An answer kind that is not registered; the message lists the ones that are."""


class AnswerKeyError(UserError):
    """An answer key that its kind cannot grade against (e.g. a word where an integer is expected)."""


class AnswerKind:
    """How one kind of answer is read, judged right, and compared. Subclasses set name and scoring.

    scoring: how evaluation summarises the family (reasoning: accuracy, pass@k, maj@k; open_ended:
    validity, coverage, KL to uniform; creative: diversity and judged quality only).
    """

    name: ClassVar[str]
    scoring: ClassVar[str]

    def extract(self, completion: str) -> str | None:
        """The answer a completion gives, normalised; None when it gives none."""
        raise NotImplementedError

    def is_correct(self, extracted: str, answer: Any) -> bool:
        """True when the extracted answer is right against the key."""
        raise NotImplementedError

    def grade(self, answer: Any, completion: str) -> Grade:
        """extract, then judge: no answer → NO_ANSWER; else valid with correct = is_correct."""
        extracted = self.extract(completion)
        if extracted is None:
            return NO_ANSWER
        return Grade(valid=True, correct=self.is_correct(extracted, answer), extracted=extracted)

    def same(self, representative: str, answer: str) -> bool:
        """True when two extracted answers mean the same (the representative plays the gold role)."""
        return representative == answer

    def key_problem(self, answer: Any) -> str | None:
        """Why `answer` cannot be this kind's key (one sentence), or None when it can."""
        return None


class NoAnswerKey(AnswerKind):
    """Rows without an answer key (creative writing, open prompts): never graded; a key is ignored."""

    name = "none"
    scoring = CREATIVE

    def extract(self, completion: str) -> str | None:
        return None

    def grade(self, answer: Any, completion: str) -> Grade:
        return NO_ANSWER



# name -> ("module:Class", constructor options). Classes are loaded on first use, by name only.
_REGISTRY: dict[str, tuple[str, dict]] = {
    "world_integer": ("powerflow.world.grading:IntegerAnswers", {}),
    "world_open": ("powerflow.world.grading:ValidAnswerList", {}),
    "math": ("powerflow.eval.math:MathAnswers", {}),
    "multiple_choice": ("powerflow.eval.choice:ChoiceAnswers", {"n_options": 10}),
    "multiple_choice_4": ("powerflow.eval.choice:ChoiceAnswers", {"n_options": 4}),
    "open_qa": ("powerflow.eval.openended:AliasGroupAnswers", {}),
    "none": ("powerflow.eval.grading:NoAnswerKey", {}),
}
ANSWER_KINDS = tuple(_REGISTRY)
# The worker-process verifier the math kinds share (started only when a math family is graded).
MATH_VERIFIER = "powerflow.eval.math:MathVerifier"
WORLD_KINDS = ("world_integer", "world_open")
# Kinds whose comparison runs math-verify (they take a shared MathVerifier).
VERIFIED_KINDS = ("math",)


def decoded_key(answer: Any) -> Any:
    """An answer key as a dataset column stores it (JSON text: '"10"', '["apple"]'), decoded; text
    that is not JSON is the key itself ("apple"), any other value is returned as it is."""
    if isinstance(answer, str):
        import json

        try:
            return json.loads(answer)
        except ValueError:
            return answer
    return answer


def check_answer_kind(name: str, where: str = "answer kind") -> str:
    """`name` when it is a registered kind; UnknownAnswerKindError naming `where` and the kinds otherwise."""
    if name not in _REGISTRY:
        raise UnknownAnswerKindError(
            f"{where}={name!r} is not an answer kind: use one of {', '.join(ANSWER_KINDS)}."
        )
    return name


def answer_kind(name: str, verifier=None) -> AnswerKind:
    """The AnswerKind registered as `name`; `verifier`: a MathVerifier for the math kind (else shared)."""
    path, options = _REGISTRY[check_answer_kind(name)]
    cls = _load(path)
    if name in VERIFIED_KINDS:
        options = {**options, "verifier": verifier}
    return cls(**options)


def _load(path: str):
    """The attribute a "module:attribute" text names, its module imported on first use."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def scoring_of(name: str) -> str:
    """How evaluation summarises a family of kind `name`: reasoning, open_ended or creative."""
    return answer_kind(name).scoring


@contextmanager
def family_graders(kinds: Mapping[str, str], math_timeout_s: float = 5.0) -> Iterator[dict[str, AnswerKind]]:
    """{family: AnswerKind} for {family: kind name}; the math kinds share one MathVerifier, whose
    worker process is stopped on exit (none is started when no family is a math kind)."""
    verifier = None
    if any(k in VERIFIED_KINDS for k in kinds.values()):
        verifier = _load(MATH_VERIFIER)(timeout_s=math_timeout_s)
    try:
        yield {family: answer_kind(kind, verifier) for family, kind in kinds.items()}
    finally:
        if verifier is not None:
            verifier.close()
