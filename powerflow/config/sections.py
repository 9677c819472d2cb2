"""The pipeline's own params.yaml sections: `model:`, `sweep:`, `report:` and `exact:`.

The other sections live beside their code (powerflow.data.config, powerflow.eval.config,
powerflow.world.config, powerflow.baselines.config, powerflow.tracking.config, and `train:` in
powerflow.config.train); powerflow.config assembles them all into a PipelineConfig.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from powerflow.config.parse import load_params, section_from_dict
from powerflow.errors import ConfigError, UserError
from powerflow.member import Member
from powerflow.arguments import LOGZ_MODES
from powerflow.registry import load_plugins, objective_names


@dataclass(frozen=True)
class ExactCheckConfig:
    """The exact-verification job: train on an enumerable model, compare with the exact target.

    Section `exact:` of params.yaml.
    """

    seed: int = field(default=0, metadata={"help": "Seed of the base model's weights and of training."})
    prompt: str = field(default="d", metadata={"help": "Prompt, space-separated letters of the vocabulary."})
    n_symbols: int = field(default=4, metadata={"help": "Letters besides EOS; vocabulary = n_symbols + 1 (≤ 8)."})
    base_init_scale: float = field(default=0.3, metadata={"help": "Init std of the random base (structure of p_base)."})
    alphas: tuple[float, ...] = field(default=(0.5, 2.0, 4.0), metadata={"help": "Powers α to train, each > 0."})
    objectives: tuple[str, ...] = field(default=("la_tb", "tb"), metadata={"help": "Objectives: la_tb, tb, tb_token."})
    logz: str = field(default="head", metadata={"help": "log Z estimator: head or group."})
    max_completion_length: int = field(default=4, metadata={"help": "Maximum completion length L (≤ 6)."})
    num_generations: int = field(default=64, metadata={"help": "Samples per prompt per step (G)."})
    steps: int = field(default=800, metadata={"help": "Optimizer steps per run."})
    learning_rate: float = field(default=3e-3, metadata={"help": "Learning rate of the LoRA adapter."})
    logz_learning_rate: float = field(default=0.1, metadata={"help": "Learning rate of the log Z head."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank; 0 trains all weights with a frozen reference copy."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator."})
    low_temperature_alpha: float = field(
        default=4.0, metadata={"help": "α of the token-level low-temperature comparison on the forked base."}
    )

    def __post_init__(self):
        section = "exact"
        for name in ("alphas",):
            for a in getattr(self, name):
                if not math.isfinite(a) or a <= 0:
                    raise ConfigError(f"{section}.{name} contains {a}: every α must be a finite number > 0 (e.g. 0.5, 2, 4).")
        for obj in self.objectives:
            if obj not in objective_names():
                raise ConfigError(f"{section}.objectives contains {obj!r}: use any of {', '.join(objective_names())}.")
        if self.logz not in LOGZ_MODES:
            raise ConfigError(f"{section}.logz={self.logz!r}: use one of {', '.join(LOGZ_MODES)}.")
        positive = {"n_symbols": self.n_symbols, "max_completion_length": self.max_completion_length,
                    "num_generations": self.num_generations, "steps": self.steps,
                    "learning_rate": self.learning_rate, "logz_learning_rate": self.logz_learning_rate,
                    "base_init_scale": self.base_init_scale, "low_temperature_alpha": self.low_temperature_alpha}
        for name, value in positive.items():
            if not value > 0:
                raise ConfigError(f"{section}.{name}={value}: must be > 0.")
        if self.n_symbols + 1 > 8 or self.max_completion_length > 6:
            raise ConfigError(
                f"{section}: n_symbols={self.n_symbols}, max_completion_length={self.max_completion_length} is too "
                "large to enumerate: keep n_symbols <= 7 and max_completion_length <= 6."
            )
        if self.lora_r < 0:
            raise ConfigError(f"{section}.lora_r={self.lora_r}: use a rank >= 1, or 0 for full fine-tuning.")


def load_exact_config(path: str | Path) -> ExactCheckConfig:
    """The `exact:` section of a params file as an ExactCheckConfig."""
    params = load_params(path)
    load_plugins(params.get("plugins") or [], Path(path).resolve().parent)
    if "exact" not in params:
        raise ConfigError(f"params file {path} has no `exact:` section: add one (see params.yaml in the repository).")
    return section_from_dict(ExactCheckConfig, params["exact"], "exact")


WORLD_MODEL = "world"

@dataclass(frozen=True)
class ModelConfig:
    """Which base model the pipeline fine-tunes. Section `model:` of params.yaml."""

    name_or_path: str = field(
        default=WORLD_MODEL,
        metadata={"help": '"world" (the embedded world\'s base, pretrained by the `base` stage), a '
                          "transformers model id, or a local model directory."},
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow model code from the hub/directory; off unless you trust it."}
    )

    def __post_init__(self):
        if not self.name_or_path.strip():
            raise ConfigError('model.name_or_path is empty: write "world", a model id or a model directory.')

    @property
    def is_world(self) -> bool:
        return self.name_or_path == WORLD_MODEL


@dataclass(frozen=True)
class SweepConfig:
    """The α sweep: one fine-tuned policy per (α, objective, seed). Section `sweep:` of params.yaml.

    DVC's `train` matrix reads these lists; `dvc exp run -S 'sweep.alphas=[0.5,1,2,4,3]'` adds an α,
    `dvc exp run -S 'sweep.seeds=[0,1,2]'` trains every (α, objective) three times.
    """

    name: str = field(default="default", metadata={"help": "Sweep name: the MLflow parent run's name."})
    alphas: tuple[float, ...] = field(default=(0.5, 1.0, 2.0, 4.0), metadata={"help": "Powers α, each > 0."})
    objectives: tuple[str, ...] = field(default=("tb",), metadata={"help": "Objectives: tb (exact p^α), la_tb, tb_token, or a plugin's."})
    seeds: tuple[int, ...] = field(
        default=(0,),
        metadata={"help": "Training seeds, integers >= 0: each (α, objective) is trained once per seed (the "
                          "trainer's seed: LoRA init and rollouts), and the report gives the mean and the "
                          "standard error across seeds. The baselines (GRPO, EMPO) keep train.seed."},
    )

    def __post_init__(self):
        if not self.alphas:
            raise ConfigError("sweep.alphas is empty: list at least one α, e.g. [0.5, 1.0, 2.0, 4.0].")
        if not self.objectives:
            raise ConfigError("sweep.objectives is empty: list at least one, e.g. [la_tb].")
        for obj in self.objectives:
            if obj not in objective_names():
                raise ConfigError(f"sweep.objectives contains {obj!r}: use any of {', '.join(objective_names())} "
                                  "(or a plugin's: params.yaml `plugins:`).")
        if len(set(self.alphas)) != len(self.alphas):
            raise ConfigError(f"sweep.alphas {list(self.alphas)} repeats a value: list each α once.")
        if not self.seeds:
            raise ConfigError("sweep.seeds is empty: list at least one training seed, e.g. [0] (or [0, 1, 2] for "
                              "a mean and standard error across seeds).")
        for seed in self.seeds:
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise ConfigError(f"sweep.seeds contains {seed!r}: every seed must be an integer >= 0, e.g. [0, 1, 2].")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"sweep.seeds {list(self.seeds)} repeats a value: list each seed once, e.g. [0, 1, 2].")
        # The sweep's members, built (and α validated) once, here; commands look them up by name.
        try:
            members = tuple(Member(a, o, s) for a in self.alphas for o in self.objectives for s in self.seeds)
        except UserError as err:
            raise ConfigError(f"sweep.alphas: {err}") from None
        object.__setattr__(self, "_members", members)

    @property
    def members(self) -> tuple[Member, ...]:
        """Every member, in DVC's matrix order (α, then objective, then seed)."""
        return self._members

    def member(self, alpha: float | str, objective: str | None = None, seed: int | str | None = None,
               listed: bool = True) -> Member:
        """The member a command names (the CLI's text, a Prefect parameter): α is parsed here, once.

        listed: α, objective and seed must be in this sweep's lists (the CLI, which DVC's matrix
        calls); False for a Prefect flow, whose run parameters may name a member params.yaml does
        not list. Objective and seed may be left out when the sweep has only one. Anything else is
        a UserError naming the flag and the choices.
        """
        objective = _command_choice(objective, self.objectives, "--objective", listed)
        seed = _command_choice(_command_seed(seed), self.seeds, "--seed", listed)
        if not listed:
            return Member(_command_alpha(alpha), objective, seed)
        text = alpha.strip() if isinstance(alpha, str) else alpha
        found = [m for m in self.members if m.objective == objective and m.seed == seed
                 and (m.label == text or m.alpha == text)]  # DVC passes the label itself: nothing to parse
        if not found:  # a person typed it: parse it to say what is wrong, and accept 4 for 4.0
            value = _command_alpha(alpha)
            found = [m for m in self.members if m.objective == objective and m.seed == seed and m.alpha == value]
            if not found:
                raise UserError(f"--alpha {alpha}: α = {value:g} is not in sweep.alphas {list(self.alphas)}: add it "
                                "to sweep.alphas in params.yaml (or `dvc exp run -S 'sweep.alphas=[...]'`).")
        return found[0]


def _command_alpha(alpha: float | str) -> float:
    """α from a command (text or number), > 0 and finite, else a UserError naming --alpha."""
    try:
        value = float(alpha.strip() if isinstance(alpha, str) else alpha)
    except (TypeError, ValueError):
        raise UserError(f"--alpha {alpha!r} is not a number: pass α as a number > 0, e.g. --alpha 4.0.") from None
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"--alpha {alpha}: α = {alpha!r} is not allowed: every α must be a finite number > 0 "
                        "(α > 1 sharpens, α < 1 flattens, α = 1 keeps the base).")
    return value


def _command_seed(seed: int | str | None) -> int | None:
    """A training seed from a command (int or its text), or None; a UserError unless an integer >= 0."""
    text = seed.strip() if isinstance(seed, str) else seed
    if text is None or isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return text
    if isinstance(text, str) and text.isdigit():
        return int(text)
    raise UserError(f"--seed {seed!r} is not a training seed: pass an integer >= 0, e.g. --seed 0.")


def _command_choice(value, choices: tuple, flag: str, listed: bool = True):
    """`value` if it is one of `choices`; the only choice when None; else a UserError naming `flag`."""
    if value is None:
        if len(choices) == 1:
            return choices[0]
        what = "seeds" if flag == "--seed" else "objectives"
        raise UserError(f"{flag} is required: sweep.{what} lists {len(choices)} {what} "
                        f"({', '.join(map(str, choices))}); pass one of them, e.g. {flag} {choices[0]}.")
    if listed and value not in choices:
        what = "seeds" if flag == "--seed" else "objectives"
        raise UserError(f"{flag} {value}: not in sweep.{what} {list(choices)}: pass one of them, or add it to "
                        f"sweep.{what} in params.yaml.")
    return value


@dataclass(frozen=True)
class ReportConfig:
    """The report stage: comparison across α and the registry aliases. Section `report:`."""

    title: str | None = field(
        default=None,
        metadata={"help": "Title of the Markdown report; null builds it from the sweep and the model "
                          "(powerflow α sweep `default` on the embedded world)."},
    )
    min_validity: float = field(
        default=0.8, metadata={"help": "best-diversity α: highest coverage among runs with at least this validity."}
    )
    select_on: str | None = field(
        default=None,
        metadata={"help": "The answer-keyed eval family best-reasoning is chosen on (highest <family>/accuracy_mean, "
                          "e.g. math500), and the MCMC/GRPO/EMPO comparisons are made on; null: the first that ran."},
    )
    select_diversity_on: str | None = field(
        default=None,
        metadata={"help": "The open-ended eval family best-diversity is chosen on (highest <family>/coverage with "
                          "validity >= min_validity, e.g. coverageqa); null: the first that ran."},
    )

    def __post_init__(self):
        if not 0 <= self.min_validity <= 1:
            raise ConfigError(f"report.min_validity={self.min_validity}: use a fraction in [0, 1].")
        if self.title is not None and not self.title.strip():
            raise ConfigError("report.title is empty: write a title, or null to build it from the sweep and the model.")
        for key in ("select_on", "select_diversity_on"):
            value = getattr(self, key)
            if value is not None and (not value.strip() or "/" in value):
                raise ConfigError(f"report.{key}={value!r}: name an eval family (the part of a metric before '/', "
                                  "e.g. math500), or write null for the first that ran.")
