"""The eval suite a config names: rows of every benchmark, their answer kinds, the scorers.

    with eval_suite(cfg.evaluate, prepared) as suite:
        metrics, samples = evaluate_model(model, tokenizer, suite.rows, suite.grade, cfg.evaluate,
                                          scoring=suite.scoring)

Families are the benchmark names ("math500", "gpqa_diamond", ...) plus the families of the
prepared eval split (benchmark "prepared": the eval rows of data.source, e.g. the embedded
world's "reasoning" and "open_ended"). Every family has one answer kind of the registry in
powerflow.eval.grading: a benchmark's loader declares it, the prepared split's come from its
manifest. Grading, maj@k's "same answer" and how a family is summarised all ask that kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from powerflow.eval.config import PREPARED, EvalConfig
from powerflow.eval.evaluate import Scoring
from powerflow.eval.grading import CREATIVE, OPEN_ENDED, AnswerKind, Grade, family_graders


@dataclass(frozen=True)
class PreparedSplit:
    """The prepared eval split: its rows (with answers) and each family's answer kind (manifest)."""

    rows: list[dict]
    answer_kinds: dict[str, str]


@dataclass(frozen=True)
class Suite:
    """Eval rows of every configured benchmark, the grader that dispatches by family, the scorers."""

    rows: list[dict]
    grade: Callable[[str, Any, str], Grade]
    scoring: Scoring
    answer_kinds: dict[str, str]  # family -> answer kind name (powerflow.eval.grading)
    benchmarks: dict[str, str]  # family -> the benchmark it belongs to ("prepared", "math500", ...)


def suite_families(cfg: EvalConfig, prepared: PreparedSplit | None, project_root=None
                   ) -> tuple[list[dict], dict[str, str], dict[str, str]]:
    """(rows, family -> answer kind, family -> benchmark) of every benchmark cfg.benchmarks names."""
    from powerflow.eval.benchmarks import load_benchmark

    rows: list[dict] = []
    kinds: dict[str, str] = {}
    benchmarks: dict[str, str] = {}
    for name in cfg.benchmarks:
        if name == PREPARED:
            if prepared is None or not prepared.rows:
                raise ValueError("evaluate.benchmarks names prepared but no prepared eval rows were given")
            rows += prepared.rows
            for family in dict.fromkeys(str(r["family"]) for r in prepared.rows):
                kinds[family] = prepared.answer_kinds[family]
                benchmarks[family] = PREPARED
        else:
            bench = load_benchmark(name, cfg.sources.get(name), limit=cfg.max_prompts_per_family, seed=cfg.seed,
                                   project_root=project_root)
            rows += bench.rows
            kinds[bench.name] = bench.answer_kind
            benchmarks[bench.name] = name
    return rows, kinds, benchmarks


@contextmanager
def eval_suite(cfg: EvalConfig, prepared: PreparedSplit | None = None, project_root=None) -> Iterator[Suite]:
    """Load the configured benchmarks and scorers; the math verifier's worker stops on exit.

    prepared: the prepared eval split (needed when "prepared" is in cfg.benchmarks).
    project_root: relative paths in cfg.sources resolve against it (default: the working directory).
    """
    rows, kinds, benchmarks = suite_families(cfg, prepared, project_root)
    with family_graders(kinds, cfg.math_timeout_s) as graders:
        scoring = Scoring(
            kinds={family: kind.scoring for family, kind in graders.items()},
            same_answer=lambda family, a, b: graders[family].same(a, b),
            embedder=_embedder(cfg, graders),
            judge=_judge(cfg, graders),
            **_judge_scheme(cfg),
        )
        yield Suite(rows=rows, grade=family_grader(graders), scoring=scoring, answer_kinds=kinds,
                    benchmarks=benchmarks)


def family_grader(graders: dict[str, AnswerKind]) -> Callable[[str, Any, str], Grade]:
    """grade(family, answer, completion) by the family's answer kind; an unknown family is an error."""

    def grade(family: str, answer: Any, completion: str) -> Grade:
        if family not in graders:
            raise ValueError(f"family {family!r} has no answer kind: known families are {', '.join(graders)}")
        return graders[family].grade(answer, completion)

    return grade


def _embedder(cfg: EvalConfig, graders: dict[str, AnswerKind]):
    """The sentence embedder when some family is open-ended or creative and one is configured."""
    needs = any(g.scoring in (OPEN_ENDED, CREATIVE) for g in graders.values())
    if cfg.embedder is None or not needs:
        return None
    from powerflow.eval.diversity import load_embedder

    return load_embedder(cfg.embedder)


def _judge(cfg: EvalConfig, graders: dict[str, AnswerKind]):
    """The LLM judge when an open-ended or creative family is evaluated and evaluate.judge is set."""
    if cfg.judge is None or not any(g.scoring in (OPEN_ENDED, CREATIVE) for g in graders.values()):
        return None
    from powerflow.eval.judge import judge_from_config

    return judge_from_config(cfg.judge, max_new_tokens=cfg.judge_max_new_tokens, batch_size=cfg.batch_size)


def _judge_scheme(cfg: EvalConfig) -> dict:
    """Scoring's rubric and judge_prompt from evaluate.judge_scheme (the creative-writing default needs none)."""
    if cfg.judge_scheme == "creative_writing":
        return {}
    from powerflow.eval.judge import judge_scheme

    scheme = judge_scheme(cfg.judge_scheme)
    return {"rubric": scheme.rubric, "judge_prompt": scheme.prompt}
