"""Evaluation settings: section `evaluate:` of params.yaml.

Load with `powerflow.config.section_from_dict(EvalConfig, params["evaluate"], "evaluate")`.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field

from powerflow.errors import ConfigError

# Generation backends `generate_completions` knows; "vllm" needs the gpu extra and a CUDA GPU.
BACKENDS = ("transformers", "vllm")
logger = logging.getLogger(__name__)

# The prepared eval split of data.source (data/prepared), graded by the answer kinds its manifest
# records; on the embedded world its families are reasoning and open_ended.
PREPARED = "prepared"
# Eval sets `evaluate.benchmarks` may name: the prepared eval split, then the loaders of
# powerflow.eval.benchmarks.
BENCHMARKS = (PREPARED, "math500", "gpqa_diamond", "mmlu_pro", "creative_writing_v3", "coverageqa")
# Old name of the prepared split (params files before the answer-kind registry): read as
# "prepared", with a deprecation note.
DEPRECATED_BENCHMARKS = {"world": PREPARED}


# evaluate.judge naming the pipeline's own base model as judge (powerflow.pipeline.evaluate.judge_source).
BASE_JUDGE = "base"


@dataclass(frozen=True)
class EvalConfig:
    """How each checkpoint (and the base model) is sampled and scored on the eval prompts."""

    backend: str = field(
        default="transformers",
        metadata={"help": "Generation backend: transformers (CPU or GPU) or vllm (needs the gpu extra and a GPU)."},
    )
    n_samples: int = field(
        default=8, metadata={"help": "Sampled completions per prompt at `temperature` (avg@n, pass@k, coverage)."}
    )
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature; 1 samples the policy itself."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass in (0, 1]; 1 disables it."})
    max_new_tokens: int = field(
        default=24, metadata={"help": "Completion length limit; a completion reaching it without EOS is truncated."}
    )
    batch_size: int = field(default=64, metadata={"help": "Sequences generated per forward batch."})
    seed: int = field(default=0, metadata={"help": "Seed of sampling; the same seed gives the same completions."})
    max_prompts_per_family: int | None = field(
        default=None, metadata={"help": "Use at most this many eval prompts per family (first ones); null = all."}
    )
    n_examples: int = field(
        default=5, metadata={"help": "Sampled completions kept per prompt in the samples table (greedy always kept)."}
    )
    benchmarks: tuple[str, ...] = field(
        default=(PREPARED,),
        metadata={"help": "Eval sets: prepared (the prepared eval split of data.source, graded by its answer "
                          "kinds), math500, gpqa_diamond, mmlu_pro, creative_writing_v3, coverageqa. The old "
                          "name world is read as prepared (deprecated)."},
    )
    sources: dict[str, str] = field(
        default_factory=dict,
        metadata={"help": "Benchmark -> hub dataset id or local file (.jsonl/.json/.csv/.parquet); a benchmark "
                          "not listed uses its hub id (creative_writing_v3 and coverageqa need a file)."},
    )
    embedder: str | None = field(
        default="all-MiniLM-L6-v2",
        metadata={"help": "Sentence-embedding model for semantic diversity: all-MiniLM-L6-v2 (offline, bundled), "
                          "any sentence-transformers name or path; null skips semantic diversity."},
    )
    judge: str | None = field(
        default=None,
        metadata={"help": "LLM judge of answer quality on every open-ended and creative family: a local transformers "
                          "model name/path, \"base\" (the pipeline's base model judges, e.g. the embedded world's "
                          "chat base), or openai:<base_url>#<model> for an OpenAI-compatible server; null: no judge. "
                          "On a family with an answer key the judge's agreement with the key is reported beside "
                          "its scores."},
    )
    judge_scheme: str = field(
        default="creative_writing",
        metadata={"help": "The judge's rubric and prompt (powerflow.eval.judge.JUDGE_SCHEMES): creative_writing (12 "
                          "criteria on 0-20, EQ-Bench style) or short (one 'Score: N' line on 0-10, a four-line "
                          "prompt small chat models follow, the embedded world's included)."},
    )
    judge_max_new_tokens: int = field(
        default=400, metadata={"help": "Tokens a local judge may write per answer (its analysis and the scores)."}
    )
    math_timeout_s: float = field(
        default=5.0, metadata={"help": "Seconds math-verify may spend on one answer (in a worker process)."}
    )
    diagnostics_prompts: int = field(
        default=16,
        metadata={"help": "Prompts per family for the distribution diagnostics of a policy (residual variance, "
                          "E|y|); 0 skips them."},
    )
    diagnostics_samples: int = field(
        default=8, metadata={"help": "Samples per prompt for the diagnostics (policy and base each)."}
    )

    def __post_init__(self):
        section = "evaluate"
        if self.backend not in BACKENDS:
            raise ConfigError(f"{section}.backend={self.backend!r}: use one of {', '.join(BACKENDS)}.")
        at_least_one = {"n_samples": self.n_samples, "max_new_tokens": self.max_new_tokens,
                        "batch_size": self.batch_size, "judge_max_new_tokens": self.judge_max_new_tokens}
        for name, value in at_least_one.items():
            if value < 1:
                raise ConfigError(f"{section}.{name}={value}: must be an integer >= 1.")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(
                f"{section}.temperature={self.temperature}: must be a finite number > 0 (1.0 samples the model as is)."
            )
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"{section}.top_p={self.top_p}: must be in (0, 1]; use 1.0 to disable nucleus sampling.")
        if self.judge_scheme not in ("creative_writing", "short"):
            raise ConfigError(f"{section}.judge_scheme={self.judge_scheme!r}: use creative_writing or short.")
        if self.seed < 0:
            raise ConfigError(f"{section}.seed={self.seed}: use a seed >= 0.")
        if self.max_prompts_per_family is not None and self.max_prompts_per_family < 1:
            raise ConfigError(
                f"{section}.max_prompts_per_family={self.max_prompts_per_family}: use an integer >= 1, or null for all."
            )
        object.__setattr__(self, "benchmarks", renamed_benchmarks(self.benchmarks, section))
        unknown = [b for b in self.benchmarks if b not in BENCHMARKS]
        if unknown or not self.benchmarks:
            raise ConfigError(
                f"{section}.benchmarks={list(self.benchmarks)}: name at least one of {', '.join(BENCHMARKS)}."
            )
        stray = [b for b in self.sources if b not in BENCHMARKS or b == PREPARED]
        if stray:
            raise ConfigError(
                f"{section}.sources has {stray}: sources are keyed by a benchmark other than prepared "
                "(the prepared split's source is data.source) "
                f"({', '.join(BENCHMARKS[1:])})."
            )
        if not (math.isfinite(self.math_timeout_s) and self.math_timeout_s > 0):
            raise ConfigError(f"{section}.math_timeout_s={self.math_timeout_s}: use a number of seconds > 0.")
        if self.diagnostics_prompts < 0 or self.diagnostics_samples < 2:
            raise ConfigError(
                f"{section}.diagnostics_prompts={self.diagnostics_prompts}, diagnostics_samples="
                f"{self.diagnostics_samples}: use prompts >= 0 (0 skips) and samples >= 2 (a variance needs two)."
            )
        if self.n_examples < 0:
            raise ConfigError(f"{section}.n_examples={self.n_examples}: use an integer >= 0 (0 keeps greedy only).")


def renamed_benchmarks(names, section: str = "evaluate") -> tuple[str, ...]:
    """`names` with deprecated benchmark names replaced (world → prepared), each once, in order."""
    out: list[str] = []
    for name in names:
        new = DEPRECATED_BENCHMARKS.get(name)
        if new is not None:
            note = (f"{section}.benchmarks names {name!r}, the old name of {new!r} (the prepared eval split of "
                    f"data.source): write {new!r}; {name!r} will stop working.")
            warnings.warn(note, DeprecationWarning, stacklevel=3)
            logger.warning(note)
            name = new
        if name not in out:
            out.append(name)
    return tuple(out)
