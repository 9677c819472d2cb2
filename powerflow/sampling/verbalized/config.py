"""Settings and their validation: `VerbalizedConfig` (section `baselines.verbalized` of params.yaml).

Also the method and format names the other modules dispatch on: METHODS (every prompt family),
VS_METHODS (those whose candidates carry verbalized probabilities), MULTI_TURN_METHODS, FORMATS
(the response formats a prompt can ask for) and SECTION (the params.yaml key errors name).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from powerflow.errors import ConfigError

METHODS = ("direct", "cot", "sequence", "multi_turn", "vs_standard", "vs_cot", "vs_multi")
VS_METHODS = ("vs_standard", "vs_cot", "vs_multi")  # candidates with verbalized probabilities
MULTI_TURN_METHODS = ("multi_turn", "vs_multi")
FORMATS = ("json", "tagged")
SECTION = "baselines.verbalized"


@dataclass(frozen=True)
class VerbalizedConfig:
    """Verbalized sampling and its prompting baselines: section `baselines.verbalized` of params.yaml."""

    method: str = field(
        default="vs_standard",
        metadata={"help": "Prompt family: direct, cot, sequence, multi_turn (baselines) or vs_standard, vs_cot, "
                          "vs_multi (verbalized sampling)."},
    )
    k: int = field(
        default=5, metadata={"help": "Candidates per response (sequence and vs_*; the paper uses 5)."}
    )
    threshold: float | None = field(
        default=None,
        metadata={"help": "τ in (0, 1): vs_* prompts ask for tail responses, each probability below τ, and the draw "
                          "keeps to candidates below τ; null asks for the full distribution."},
    )
    max_new_tokens: int = field(
        default=1024, metadata={"help": "Tokens per response (one response holds k candidates)."}
    )
    temperature: float = field(default=1.0, metadata={"help": "Decoding temperature of each response (> 0)."})
    turns: int = field(
        default=3, metadata={"help": "Turns per conversation for multi_turn and vs_multi (k new candidates per turn)."}
    )
    format: str = field(
        default="json",
        metadata={"help": "Response format asked for: json ({\"responses\": [{\"text\", \"probability\"}]}) or tagged "
                          "(<response><text>…</text><probability>…</probability></response>)."},
    )

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"{SECTION}.method={self.method!r}: use one of {', '.join(METHODS)}.")
        if self.format not in FORMATS:
            raise ConfigError(f"{SECTION}.format={self.format!r}: use json or tagged.")
        for name in ("k", "max_new_tokens", "turns"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{SECTION}.{name}={getattr(self, name)}: must be an integer >= 1.")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"{SECTION}.temperature={self.temperature}: use a finite number > 0 (e.g. 1.0).")
        if self.threshold is not None:
            if not (math.isfinite(self.threshold) and 0 < self.threshold < 1):
                raise ConfigError(f"{SECTION}.threshold={self.threshold}: use a probability in (0, 1) such as 0.1, "
                                  "or null for no threshold.")
            if self.method not in VS_METHODS:
                raise ConfigError(f"{SECTION}.threshold is set but method={self.method!r} states no probabilities: "
                                  f"set threshold: null, or use one of {', '.join(VS_METHODS)}.")
