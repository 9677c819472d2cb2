"""The Power-Flow settings of training, defined once: defaults, help and validation.

`PowerFlowArguments` is one dataclass in TRL's convention (a `help` per field). Both schemas that
carry these settings inherit it, so they cannot disagree on a default or a check:

    powerflow.config.train.TrainConfig   params.yaml's `train:` (plus the shared budget and launch)
    powerflow.trainer.PowerFlowConfig    the trainer's config (plus GRPOConfig and the member's α, objective)

A bad value raises ConfigError naming the key as its owner spells it (`train.base_mix` in
params.yaml, `PowerFlowConfig.base_mix` in Python). Nothing here imports torch or TRL.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import ClassVar

from powerflow.errors import ConfigError

LOGZ_MODES = ("head", "group")
VLLM_MODES = ("colocate", "server")  # how TRL runs the vLLM rollout engine (train.vllm_mode)


@dataclass
class PowerFlowArguments:
    """How the α-power objective is estimated and shaped; none of these moves TB's fixed point
    except the ψ penalties (format_pattern, truncation_penalty), which change the target on purpose."""

    key_prefix: ClassVar[str] = "PowerFlowArguments"  # how an error names a field: <key_prefix>.<field>

    logz: str = field(
        default="head",
        metadata={"help": "log Z estimator: head (a learned MLP on the pooled prompt hidden states, its own "
                          "learning rate logz_learning_rate) or group (parameter-free leave-one-out mean over the "
                          "other samples of the prompt)."},
    )
    logz_learning_rate: float = field(default=0.1, metadata={"help": "Learning rate of the log Z head's parameters."})
    logz_hidden_size: int = field(default=64, metadata={"help": "Width of the log Z head's hidden layer."})
    base_mix: float = field(
        default=0.0,
        metadata={"help": "Share of each prompt's num_generations rollouts sampled from the frozen base instead of "
                          "the policy (off-policy exploration; TB's fixed point is unchanged because p_base covers "
                          "the target's support). round(base_mix · G) per group: with LoRA the adapter is switched "
                          "off, with full fine-tuning the frozen reference copy samples."},
    )
    huber_delta: float | None = field(
        default=None,
        metadata={"help": "null: squared loss w·δ². κ > 0: Huber loss (quadratic for |δ| ≤ κ, linear beyond), "
                          "bounding the pull of rare completions with huge residuals; same fixed point."},
    )
    lr_multipliers: dict[str, float] | None = field(
        default=None,
        metadata={"help": "Learning-rate multipliers by parameter name: {substring: factor}; a trainable parameter "
                          "whose name contains a key learns at factor × learning_rate (the first key that matches). "
                          "{lora_B: 16} is LoRA+; {modules_to_save: 10} speeds up what lora_modules_to_save trains "
                          "in full (the norm gains). null: one rate. The fixed point does not move."},
    )
    alpha_warmup_steps: int = field(
        default=0,
        metadata={"help": "Anneal the power: α_t = 1 + (α − 1) · min(1, t / alpha_warmup_steps) at optimizer step t, "
                          "so training starts at the base's own fixed point (α = 1, where π = p_base already) and "
                          "reaches α after this many steps; from then on the objective is α's, so the fixed point "
                          "is unchanged (it must be < train.steps). 0: α from the first step."},
    )
    format_pattern: str | None = field(
        default=None,
        metadata={"help": "Regex a completion must contain; when set, ψ(y) = format_penalty for those that don't."},
    )
    format_penalty: float = field(
        default=-0.5, metadata={"help": "ψ for a completion missing format_pattern (per token for la_tb)."}
    )
    truncation_penalty: float = field(
        default=0.0,
        metadata={"help": "Added to ψ for completions that hit max_completion_length without EOS (0 = prefix "
                          "score only)."},
    )

    def __post_init__(self):
        self.check_power_flow_arguments()

    def _key(self, name: str) -> str:
        return f"{self.key_prefix}.{name}"

    def check_power_flow_arguments(self) -> None:
        """Refuse settings that would silently train toward the wrong target, naming the fix."""
        if self.logz not in LOGZ_MODES:
            raise ConfigError(f"{self._key('logz')}={self.logz!r}: use one of {', '.join(LOGZ_MODES)}.")
        if not (math.isfinite(self.logz_learning_rate) and self.logz_learning_rate > 0):
            raise ConfigError(f"{self._key('logz_learning_rate')}={self.logz_learning_rate}: must be a finite "
                              "number > 0, e.g. 0.1.")
        if self.logz_hidden_size < 1:
            raise ConfigError(f"{self._key('logz_hidden_size')}={self.logz_hidden_size}: use a width >= 1, e.g. 64.")
        if not 0.0 <= self.base_mix <= 1.0:
            raise ConfigError(f"{self._key('base_mix')}={self.base_mix}: use a fraction in [0, 1], e.g. 0.25 "
                              "(0 = on-policy rollouts only).")
        if self.huber_delta is not None and not (math.isfinite(self.huber_delta) and self.huber_delta > 0):
            raise ConfigError(f"{self._key('huber_delta')}={self.huber_delta}: use a number > 0 (e.g. 1.0), or "
                              "null for the squared loss.")
        for key, factor in (self.lr_multipliers or {}).items():
            if not key or not isinstance(factor, (int, float)) or not (math.isfinite(factor) and factor > 0):
                raise ConfigError(f"{self._key('lr_multipliers')}: {key!r}: {factor!r} must map a non-empty name "
                                  "substring to a number > 0, e.g. {lora_B: 16}; or write null for one rate.")
        if not isinstance(self.alpha_warmup_steps, int) or self.alpha_warmup_steps < 0:
            raise ConfigError(f"{self._key('alpha_warmup_steps')}={self.alpha_warmup_steps!r}: use an integer >= 0 "
                              "(0 = the target's α from the first step).")
        for name in ("format_penalty", "truncation_penalty"):
            if not math.isfinite(getattr(self, name)):
                raise ConfigError(f"{self._key(name)} must be finite, got {getattr(self, name)}.")
        if self.format_pattern is not None:
            try:
                re.compile(self.format_pattern)
            except re.error as err:
                raise ConfigError(f"{self._key('format_pattern')} is not a valid regex ({err}): fix the "
                                  "pattern.") from err

    def annealed_alpha(self, alpha: float, step: int) -> float:
        """The power at optimizer step `step` of a run toward `alpha`:

            α_t = 1 + (α − 1) · min(1, t / T),   T = alpha_warmup_steps (α_t = α when T = 0).
        """
        if self.alpha_warmup_steps <= 0:
            return alpha
        return 1.0 + (alpha - 1.0) * min(1.0, step / self.alpha_warmup_steps)

    def power_flow_arguments(self) -> dict:
        """These settings as keyword arguments (for the trainer's config)."""
        return {name: getattr(self, name) for name in POWER_FLOW_FIELDS}


POWER_FLOW_FIELDS = tuple(f.name for f in dataclasses.fields(PowerFlowArguments))
