"""Evaluation settings: section `evaluate:` of params.yaml.

Load with `powerflow.config.section_from_dict(EvalConfig, params["evaluate"], "evaluate")`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from powerflow.config import ConfigError

# Generation backends `generate_completions` knows; only "transformers" runs in this version.
BACKENDS = ("transformers", "vllm")


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

    def __post_init__(self):
        section = "evaluate"
        if self.backend not in BACKENDS:
            raise ConfigError(f"{section}.backend={self.backend!r}: use one of {', '.join(BACKENDS)}.")
        at_least_one = {"n_samples": self.n_samples, "max_new_tokens": self.max_new_tokens,
                        "batch_size": self.batch_size}
        for name, value in at_least_one.items():
            if value < 1:
                raise ConfigError(f"{section}.{name}={value}: must be an integer >= 1.")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(
                f"{section}.temperature={self.temperature}: must be a finite number > 0 (1.0 samples the model as is)."
            )
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"{section}.top_p={self.top_p}: must be in (0, 1]; use 1.0 to disable nucleus sampling.")
        if self.seed < 0:
            raise ConfigError(f"{section}.seed={self.seed}: use a seed >= 0.")
        if self.max_prompts_per_family is not None and self.max_prompts_per_family < 1:
            raise ConfigError(
                f"{section}.max_prompts_per_family={self.max_prompts_per_family}: use an integer >= 1, or null for all."
            )
        if self.n_examples < 0:
            raise ConfigError(f"{section}.n_examples={self.n_examples}: use an integer >= 0 (0 keeps greedy only).")
