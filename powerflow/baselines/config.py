"""The baselines of the sweep: section `baselines:` of params.yaml.

Every method runs on the same base model, prompts, evaluation and training budget (the `train:`
section) as the α-power policies, and appears as a sibling MLflow run and a row of the report.
Verbalized sampling always runs (run "verbalized"): it needs an instruction-following chat model,
and on a model without a chat template (the embedded world) it is reported as not applicable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from powerflow.errors import ConfigError
from powerflow.registry import baseline_names

# The default lists; powerflow.registry holds every method that can be named (built-ins and plugins').
TRAINED = ("grpo", "empo")  # training-time methods: fine-tuned, registered, evaluated like a policy
INFERENCE = ("low_temperature", "mcmc")  # inference-time methods on the base model, one run per α


@dataclass(frozen=True)
class BaselinesConfig:
    """Which baseline methods the sweep runs, and their settings."""

    train: tuple[str, ...] = field(
        default=TRAINED,
        metadata={"help": "Training-time baselines: grpo (gold-answer accuracy reward), empo (semantic-entropy "
                          "reward, no labels). Same steps, batch, learning rate and LoRA as train:."},
    )
    inference: tuple[str, ...] = field(
        default=INFERENCE,
        metadata={"help": "Inference-time baselines on the base model, one run per α in baselines.alphas: "
                          "low_temperature (token-level temperature 1/α), mcmc (MCMC power sampling toward p^α)."},
    )
    alphas: tuple[float, ...] = field(
        default=(4.0,), metadata={"help": "α of the inference-time methods (compare with the same α in sweep.alphas)."}
    )
    mcmc_max_new_tokens: int = field(
        default=24, metadata={"help": "MCMC T_max: tokens per answer (published: 3072 for MATH500)."}
    )
    mcmc_blocks: int = field(default=3, metadata={"help": "MCMC blocks per answer (published: 16)."})
    mcmc_steps: int = field(default=10, metadata={"help": "Metropolis-Hastings steps after each block (published: 10)."})
    verbalized_method: str = field(
        default="vs_standard",
        metadata={"help": "direct, cot, sequence, multi_turn, vs_standard, vs_cot or vs_multi."},
    )
    verbalized_k: int = field(default=5, metadata={"help": "Candidates per verbalized-sampling response."})

    def __post_init__(self):
        for key, kind in (("train", "trained"), ("inference", "inference")):
            names = baseline_names(kind)
            bad = [m for m in getattr(self, key) if m not in names]
            if bad:
                raise ConfigError(f"baselines.{key} has {bad}: use any of {', '.join(names)} (or [], or a plugin's: "
                                  "params.yaml `plugins:`).")
        for alpha in self.alphas:
            if not (math.isfinite(alpha) and alpha > 0):
                raise ConfigError(f"baselines.alphas has {alpha}: every α must be a finite number > 0.")
        for name in ("mcmc_max_new_tokens", "mcmc_blocks", "verbalized_k"):
            if getattr(self, name) < 1:
                raise ConfigError(f"baselines.{name}={getattr(self, name)}: must be an integer >= 1.")
        from powerflow.sampling.verbalized import METHODS as VERBALIZED_METHODS

        if self.verbalized_method not in VERBALIZED_METHODS:
            raise ConfigError(
                f"baselines.verbalized_method={self.verbalized_method!r}: use one of {', '.join(VERBALIZED_METHODS)}."
            )
        if self.mcmc_steps < 0:
            raise ConfigError(f"baselines.mcmc_steps={self.mcmc_steps}: use an integer >= 0 (0 = proposal only).")
        if self.mcmc_blocks > self.mcmc_max_new_tokens:
            raise ConfigError(
                f"baselines.mcmc_blocks={self.mcmc_blocks} > mcmc_max_new_tokens={self.mcmc_max_new_tokens}: a block "
                "needs at least one token; lower mcmc_blocks."
            )
