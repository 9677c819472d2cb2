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
INFERENCE = ("low_temperature", "mcmc", "smc")  # inference-time methods on the base model, one run per α


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
                          "low_temperature (token-level temperature 1/α), mcmc (MCMC power sampling toward p^α), "
                          "smc (Power-SMC: sequential Monte Carlo toward p^α)."},
    )
    alphas: tuple[float, ...] = field(
        default=(4.0,), metadata={"help": "α of the inference-time methods (compare with the same α in sweep.alphas)."}
    )
    mcmc_max_new_tokens: int = field(
        default=24, metadata={"help": "MCMC T_max: tokens per answer (published: 3072 for MATH500)."}
    )
    mcmc_blocks: int = field(default=3, metadata={"help": "MCMC blocks per answer (published: 16)."})
    mcmc_steps: int = field(default=10, metadata={"help": "Metropolis-Hastings steps after each block (published: 10)."})
    # Each trained baseline at its own recipe (docs/baselines.md "Choosing the baselines' settings":
    # scripts/baseline_sweep.py picks them on the prepared train split, never on the eval prompts).
    grpo_learning_rate: float | None = field(
        default=None, metadata={"help": "GRPO's learning rate; null: train.learning_rate (the Power-Flow members')."}
    )
    grpo_beta: float = field(default=0.0, metadata={"help": "GRPO's KL coefficient β to the base (0: no reference)."})
    empo_learning_rate: float | None = field(
        default=None, metadata={"help": "EMPO's learning rate; null: train.learning_rate (EMPO's paper: 1e-6 on 1.5B-7B)."}
    )
    empo_beta: float = field(default=0.0, metadata={"help": "EMPO's KL coefficient β to the base (paper: 0 or 0.04)."})
    empo_entropy_min: float = field(
        default=0.0, metadata={"help": "EMPO entropy thresholding: drop a prompt's group when its normalised semantic "
                                       "entropy h = H / log G is below this (0 keeps them all)."}
    )
    empo_entropy_max: float = field(
        default=1.0, metadata={"help": "EMPO entropy thresholding: drop a group when h >= this (1.0 drops only groups "
                                       "whose answers all differ)."}
    )
    verbalized_method: str = field(
        default="vs_standard",
        metadata={"help": "direct, cot, sequence, multi_turn, vs_standard, vs_cot or vs_multi."},
    )
    verbalized_k: int = field(default=5, metadata={"help": "Candidates per verbalized-sampling response."})
    verbalized_max_new_tokens: int = field(
        default=1024, metadata={"help": "Tokens per verbalized-sampling response (one response holds k candidates; "
                                        "the embedded world's replies need about 40)."}
    )
    high_temperature: float = field(
        default=2.0, metadata={"help": "Temperature T > 1 of the high-temperature baseline (run high_temperature): "
                                       "the token-level flattening beside Power-Flow at α = 1/T < 1 (2.0: α = 0.5)."}
    )
    smc_particles: int = field(
        default=8, metadata={"help": "Power-SMC particles per answer (each answer is its own system; T_max is "
                                     "mcmc_max_new_tokens)."}
    )
    smc_ramp_tokens: int = field(
        default=0, metadata={"help": "Power-SMC exponent ramp: α_t rises from 1 to α over this many first tokens "
                                     "(0: α from the first token)."}
    )

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
        for name in ("mcmc_max_new_tokens", "mcmc_blocks", "verbalized_k", "verbalized_max_new_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"baselines.{name}={getattr(self, name)}: must be an integer >= 1.")
        from powerflow.sampling.verbalized import METHODS as VERBALIZED_METHODS

        if self.verbalized_method not in VERBALIZED_METHODS:
            raise ConfigError(
                f"baselines.verbalized_method={self.verbalized_method!r}: use one of {', '.join(VERBALIZED_METHODS)}."
            )
        if not (math.isfinite(self.high_temperature) and self.high_temperature > 1):
            raise ConfigError(f"baselines.high_temperature={self.high_temperature}: use a temperature > 1 (2.0 "
                              "flattens each token as α = 0.5 would).")
        self._check_trained_recipes()
        if self.mcmc_steps < 0:
            raise ConfigError(f"baselines.mcmc_steps={self.mcmc_steps}: use an integer >= 0 (0 = proposal only).")
        if self.mcmc_blocks > self.mcmc_max_new_tokens:
            raise ConfigError(
                f"baselines.mcmc_blocks={self.mcmc_blocks} > mcmc_max_new_tokens={self.mcmc_max_new_tokens}: a block "
                "needs at least one token; lower mcmc_blocks."
            )
        if self.smc_particles < 1:
            raise ConfigError(f"baselines.smc_particles={self.smc_particles}: must be an integer >= 1 (8 by default).")
        if self.smc_ramp_tokens < 0:
            raise ConfigError(f"baselines.smc_ramp_tokens={self.smc_ramp_tokens}: must be an integer >= 0 "
                              "(0 = no ramp).")

    def _check_trained_recipes(self) -> None:
        for name in ("grpo_learning_rate", "empo_learning_rate"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"baselines.{name}={value}: use a number > 0, or null for train.learning_rate.")
        for name in ("grpo_beta", "empo_beta"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ConfigError(f"baselines.{name}={getattr(self, name)}: use a number >= 0 (0: no KL term).")
        if not 0.0 <= self.empo_entropy_min < self.empo_entropy_max <= 1.0:
            raise ConfigError(
                f"baselines.empo_entropy_min={self.empo_entropy_min}, empo_entropy_max={self.empo_entropy_max}: use "
                "0 <= empo_entropy_min < empo_entropy_max <= 1 (normalised semantic entropy; 0 and 1 keep every "
                "group that has some agreement)."
            )

    def trained_recipe(self, method: str, learning_rate: float) -> dict:
        """The per-method settings of a trained baseline: {learning_rate, beta} (GRPOConfig fields) and,
        for EMPO, entropy_bounds; `learning_rate` (train.learning_rate) where the method's is null."""
        if method not in ("grpo", "empo"):
            return {"learning_rate": learning_rate, "beta": 0.0}
        own = getattr(self, f"{method}_learning_rate")
        recipe = {"learning_rate": learning_rate if own is None else own, "beta": getattr(self, f"{method}_beta")}
        if method == "empo":
            recipe["entropy_bounds"] = (self.empo_entropy_min, self.empo_entropy_max)
        return recipe

