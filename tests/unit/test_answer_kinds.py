"""The grading registry by answer kind (powerflow.eval.grading) on adversarial answers.

Every kind takes any completion text without raising: an answer it cannot read is "no answer"
(Grade.valid False). Keys a kind cannot take are refused by `key_problem` (used when a table is
prepared), and an unknown kind is one clear error naming the kinds there are.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from powerflow.errors import ConfigError
from powerflow.eval.grading import (
    ANSWER_KINDS,
    NO_ANSWER,
    UnknownAnswerKindError,
    answer_kind,
    check_answer_kind,
    family_graders,
    scoring_of,
)

ROOT = Path(__file__).resolve().parents[2]
ADVERSARIAL = ("", "   ", "\\boxed{}", "\\boxed{\\frac{1}{2}} and \\boxed{3}", "−5", "\\boxed{−5}", "\\boxed{\\frac{",
               "\\boxed{\\left( \\right.}", "$$ $$", "answer", "\x00", "🙂" * 50, "\\boxed{" * 30)


@pytest.fixture(scope="module")
def graders():
    with family_graders({kind: kind for kind in ANSWER_KINDS}, math_timeout_s=5.0) as table:
        yield table


KEYS = {"world_integer": "7", "world_open": ["apple", "pear"], "math": "\\frac{1}{2}", "multiple_choice": "C",
        "multiple_choice_4": "B", "open_qa": [["apple", "apples"], ["pear"]], "none": None}


@pytest.mark.parametrize("completion", ADVERSARIAL)
@pytest.mark.parametrize("kind", ANSWER_KINDS)
def test_no_kind_raises_on_any_completion(graders, kind, completion):
    grade = graders[kind].grade(KEYS[kind], completion)
    assert isinstance(grade.valid, bool) and isinstance(grade.correct, bool)
    assert not grade.correct or grade.valid  # right implies an answer was read
    assert (grade.extracted is None) == (not grade.valid) or kind in ("world_open", "open_qa")


def test_an_empty_completion_is_no_answer_for_every_kind(graders):
    for kind in ANSWER_KINDS:
        assert graders[kind].grade(KEYS[kind], "") == NO_ANSWER, kind


def test_math_reads_the_last_box_and_verifies_equivalence(graders):
    math = graders["math"]
    assert math.grade("3", "\\boxed{\\frac{1}{2}} then \\boxed{3}").correct  # the last box wins
    assert not math.grade("\\frac{1}{2}", "\\boxed{\\frac{1}{2}} then \\boxed{3}").correct
    assert math.grade("(0,9) \\cup (9,36)", "so \\boxed{(0,9)\\cup(9,36)}").correct
    assert math.grade("4210_{5}", "\\boxed{4210_5}").correct
    assert math.grade("\\frac{14}{3}", "\\boxed{\\dfrac{28}{6}}").correct
    assert math.grade("-5", "\\boxed{-5}").correct
    assert not math.grade("5", "\\boxed{-5}").correct
    assert math.grade("30^\\circ", "\\boxed{30^{\\circ}}").correct
    assert math.grade("2\\sqrt{5}", "\\boxed{\\sqrt{20}}").correct


def test_math_never_raises_on_latex_it_cannot_parse(graders):
    math = graders["math"]
    grade = math.grade("\\begin{pmatrix} 1 & 2 \\end{pmatrix}", "\\boxed{\\frac{}{\\left(}}")
    assert grade.valid and not grade.correct  # an answer was given; it is not equivalent
    assert math.grade("3", "\\boxed{\\frac{\\left(}") == NO_ANSWER  # an unclosed box gives no answer
    assert not math.grade("\\text{(C)}", "\\boxed{}").correct
    assert math.grade("\\text{Monday}", "\\boxed{\\text{Monday}}").correct
    assert math.same("\\frac{1}{2}", "0.5") and not math.same("\\frac{1}{2}", "0.4")


def test_unicode_minus_is_read_as_a_minus_or_as_no_match_never_an_error(graders):
    grade = graders["math"].grade("-5", "\\boxed{−5}")
    assert grade.valid


def test_multiple_choice_letters(graders):
    choice, four = graders["multiple_choice"], graders["multiple_choice_4"]
    assert choice.grade("C", "The answer is (C).").correct
    assert not choice.grade("C", "Answer: D").correct
    assert choice.grade("I", "I think the answer is (I)").correct  # A-J: I is an option
    assert four.grade("B", "I think so. The answer is (B)").correct
    assert four.extract("I guess") is None  # A-D: the pronoun is not an option
    assert choice.key_problem("K") and four.key_problem("E") and choice.key_problem("C") is None


def test_open_answers_and_world_kinds(graders):
    assert graders["open_qa"].grade(KEYS["open_qa"], "Apples.\nor pears").extracted == "apple"
    assert not graders["open_qa"].grade(KEYS["open_qa"], "stone").correct
    assert graders["world_open"].grade(KEYS["world_open"], " Pear.</s>").correct
    assert graders["world_integer"].grade('"7"', "work 3 + 4 = 7 , answer 07").correct
    assert graders["world_integer"].key_problem("(0,9) \\cup (9,36)") is not None
    assert graders["world_open"].key_problem("apple") is not None


def test_creative_rows_are_never_graded(graders):
    assert graders["none"].grade(None, "Once upon a time") == NO_ANSWER
    assert scoring_of("none") == "creative" and scoring_of("math") == "reasoning" and scoring_of("open_qa") == "open_ended"


def test_an_unknown_kind_is_one_clear_error():
    with pytest.raises(UnknownAnswerKindError, match="data.answer_kind='latex' is not an answer kind: use one of") as err:
        check_answer_kind("latex", "data.answer_kind")
    assert isinstance(err.value, ConfigError)
    for kind in ANSWER_KINDS:
        assert kind in str(err.value)
    with pytest.raises(UnknownAnswerKindError):
        answer_kind("integer")


def test_math_graders_share_one_verifier_that_stops_on_exit():
    with family_graders({"a": "math", "b": "math", "c": "multiple_choice"}) as table:
        assert table["a"].verifier is table["b"].verifier
        assert table["a"].grade("2", "\\boxed{2}").correct
        verifier = table["a"].verifier
    assert verifier.worker_pid is None
    with family_graders({"c": "multiple_choice"}) as table:
        assert not hasattr(table["c"], "verifier")


def _imports(path: Path) -> set[str]:
    """Every module a source file imports, at top level or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_nothing_outside_the_world_imports_the_worlds_grader():
    """The world's grader is reached only through the registry, which gives it to world rows only."""
    offenders = []
    for folder in ("powerflow", "tasks", "flows", "benchmarks", "scripts"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.is_relative_to(ROOT / "powerflow" / "world"):
                continue
            hit = {m for m in _imports(path) if m.startswith("powerflow.world.grading") or m == "powerflow.world.grade"}
            if hit:
                offenders.append(f"{path.relative_to(ROOT)}: {sorted(hit)}")
    assert not offenders, offenders
