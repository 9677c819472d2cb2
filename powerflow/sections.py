"""The pipeline's own params.yaml sections and the parser every section goes through.

`section_from_dict` turns one YAML mapping into its config dataclass, refusing unknown keys and
wrong types with a ConfigError naming the dotted key; `load_params` reads the file. The sections
defined here are the ones without a package of their own: `exact:` (ExactCheckConfig), `model:`,
`sweep:`, `train:` and `report:`. The others live beside their code (powerflow.data.config,
powerflow.eval.config, powerflow.world.config, powerflow.baselines.config, powerflow.tracking);
powerflow.config assembles them all into a PipelineConfig.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from powerflow.errors import ConfigError
from powerflow.objectives import LOGZ_MODES, OBJECTIVES, VLLM_MODES


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
            if obj not in OBJECTIVES:
                raise ConfigError(f"{section}.objectives contains {obj!r}: use any of {', '.join(OBJECTIVES)}.")
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


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check one YAML value against a dataclass field annotation.

    Supported: int, float, str, bool, X | None, str | dict[str, X] (by the value's shape), tuple[X, ...],
    dict[str, X].
    """
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) > 1:  # str | dict[str, X]: the option of the value's shape
            shaped = [a for a in options if (typing.get_origin(a) is dict) == isinstance(value, dict)]
            options = shaped[:1] or options[:1]
        return _coerce(value, options[0], key)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping (key: value lines), got {value!r}.")
        return {str(k): _coerce(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}.")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, e.g. [{_example(typing.get_args(annotation)[0])}]; got {value!r}.")
        inner = typing.get_args(annotation)[0]
        return tuple(_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value))
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}.")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}.")
        return value
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}.")
        return value
    raise TypeError(f"unsupported annotation {annotation} for {key}")


def _example(annotation: Any) -> str:
    return {float: "0.5, 2.0", int: "1, 2", str: '"la_tb"'}.get(annotation, "...")


def section_from_dict(cls, data: Any, section: str):
    """Build a config dataclass from a params.yaml section, refusing unknown keys and bad types."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"params.yaml section `{section}` must be a mapping of keys to values, got {data!r}.")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"params.yaml has unknown key(s) {', '.join(f'{section}.{k}' for k in unknown)}: "
            f"remove them or use one of {', '.join(sorted(names))}."
        )
    kwargs = {k: _coerce(v, hints[k], f"{section}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def load_params(path: str | Path) -> dict[str, Any]:
    """Read params.yaml as a dict; a missing file or malformed YAML is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {path} not found: run from the project root or pass --params PATH.")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"params file {path} is not valid YAML ({err}): fix the syntax at the line shown.") from err
    if not isinstance(data, dict):
        raise ConfigError(f"params file {path} must hold a mapping of sections (e.g. `exact:`), got {type(data).__name__}.")
    return data


def load_exact_config(path: str | Path) -> ExactCheckConfig:
    """The `exact:` section of a params file as an ExactCheckConfig."""
    params = load_params(path)
    if "exact" not in params:
        raise ConfigError(f"params file {path} has no `exact:` section: add one (see params.yaml in the repository).")
    return section_from_dict(ExactCheckConfig, params["exact"], "exact")


# --------------------------------------------------------------------------- pipeline sections
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
    objectives: tuple[str, ...] = field(default=("la_tb",), metadata={"help": "Objectives: la_tb, tb, tb_token."})
    seeds: tuple[int, ...] = field(
        default=(0,),
        metadata={"help": "Training seeds, integers >= 0: each (α, objective) is trained once per seed (the "
                          "trainer's seed: LoRA init and rollouts), and the report gives the mean and the "
                          "standard error across seeds. The baselines (GRPO, EMPO) keep train.seed."},
    )

    def __post_init__(self):
        if not self.alphas:
            raise ConfigError("sweep.alphas is empty: list at least one α, e.g. [0.5, 1.0, 2.0, 4.0].")
        for a in self.alphas:
            check_alpha(a, "sweep.alphas")
        if not self.objectives:
            raise ConfigError("sweep.objectives is empty: list at least one, e.g. [la_tb].")
        for obj in self.objectives:
            if obj not in OBJECTIVES:
                raise ConfigError(f"sweep.objectives contains {obj!r}: use any of {', '.join(OBJECTIVES)}.")
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


def check_alpha(alpha: float, where: str) -> float:
    """α must be a finite number > 0; the error says so and where it came from."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha <= 0:
        raise ConfigError(f"{where}: α = {alpha!r} is not allowed: every α must be a finite number > 0 "
                          "(α > 1 sharpens, α < 1 flattens, α = 1 keeps the base).")
    return float(alpha)


LR_SCHEDULES = ("constant", "linear", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """Fine-tuning one policy with PowerFlowTrainer. Section `train:` of params.yaml."""

    steps: int = field(default=60, metadata={"help": "Optimizer steps per (α, objective) run."})
    prompts_per_step: int = field(default=8, metadata={"help": "Distinct prompts per optimizer step."})
    num_generations: int = field(default=8, metadata={"help": "Completions sampled per prompt (group size G)."})
    max_completion_length: int = field(default=24, metadata={"help": "Completion length cap in tokens."})
    learning_rate: float = field(default=3e-3, metadata={"help": "Learning rate of the policy (LoRA or full)."})
    logz: str = field(default="head", metadata={"help": "log Z estimator: head (learned MLP) or group (LOO)."})
    logz_learning_rate: float = field(default=0.1, metadata={"help": "Learning rate of the log Z head."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank; 0 fine-tunes all weights against a frozen copy."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator."})
    clip_epsilon: float = field(default=0.2, metadata={"help": "Importance-weight clip range [1-ε, 1+ε]."})
    lr_schedule: str = field(
        default="constant",
        metadata={"help": "Learning-rate schedule over train.steps: constant, linear (to 0) or cosine (to 0)."},
    )
    base_mix: float = field(
        default=0.0,
        metadata={"help": "Share of each prompt's num_generations rollouts sampled from the frozen base instead of "
                          "the policy (off-policy exploration; keeps TB's exact fixed point). With lora_r >= 1 the adapter "
                          "is switched off; with full fine-tuning the frozen reference copy samples."},
    )
    huber_delta: float | None = field(
        default=None,
        metadata={"help": "null: squared loss on the residual δ. κ > 0: Huber loss (quadratic for |δ| ≤ κ, linear "
                          "beyond), bounding the pull of rare completions with huge residuals; same fixed point."},
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient-norm clip."})
    families: tuple[str, ...] = field(
        default=("reasoning", "open_ended"), metadata={"help": "Prompt families the policy trains on."}
    )
    save_steps: int = field(default=20, metadata={"help": "Checkpoint every N steps (a rerun resumes from it)."})
    seed: int = field(default=0, metadata={"help": "Training seed of the baselines (GRPO, EMPO); the α sweep's "
                                                   "members train with sweep.seeds."})
    accelerate_config: str | None = field(
        default=None,
        metadata={"help": "accelerate config file, relative to the project root (e.g. infra/accelerate/zero3.yaml): "
                          "training runs on its processes through `accelerate launch`. null: one process."},
    )
    num_processes: int | None = field(
        default=None,
        metadata={"help": "Processes (GPUs) to launch, overriding the accelerate config's num_processes. "
                          "null: the config's. Each process trains on prompts_per_step prompts per step."},
    )
    # GPU memory and speed: the same objective and batch, computed differently.
    gradient_accumulation_steps: int = field(
        default=1,
        metadata={"help": "Micro-batches per optimizer step: the prompts_per_step × num_generations completions of a "
                          "step are generated together and their gradients computed this many at a time (less "
                          "activation memory, same step). Must divide prompts_per_step × num_generations."},
    )
    bf16: bool = field(
        default=False,
        metadata={"help": "Load the model in bfloat16 and train under bf16 autocast (GPUs with bf16: A100, H100, "
                          "...); false keeps fp32. log p_base is still computed with an fp32 LM head."},
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Recompute activations in the backward pass: less memory, ~30% slower."}
    )
    use_vllm: bool = field(
        default=False,
        metadata={"help": "Generate rollouts with vLLM through TRL (needs the gpu extra and a CUDA GPU). The policy's "
                          "weights, LoRA merged, are pushed to the engine every step; the log Z head never is."},
    )
    vllm_mode: str = field(
        default="colocate",
        metadata={"help": "colocate: vLLM runs inside each training process and shares its GPU "
                          "(vllm_gpu_memory_utilization of it); server: a separate `trl vllm-serve --model ...` "
                          "process on its own GPU(s), reached at vllm_server_base_url."},
    )
    vllm_gpu_memory_utilization: float = field(
        default=0.3,
        metadata={"help": "colocate mode: fraction of the GPU vLLM may take (its weights + KV cache); the trainer "
                          "keeps the rest. Server mode sets it on `trl vllm-serve` instead."},
    )
    vllm_server_base_url: str | None = field(
        default=None,
        metadata={"help": "server mode: base URL of the `trl vllm-serve` server, e.g. http://10.0.0.5:8000; "
                          "null = http://0.0.0.0:8000 (TRL's default, the same machine)."},
    )

    def __post_init__(self):
        self._check_launch()
        self._check_batch_and_precision()
        self._check_rollout_engine()
        positive = {"steps": self.steps, "prompts_per_step": self.prompts_per_step,
                    "max_completion_length": self.max_completion_length, "learning_rate": self.learning_rate,
                    "logz_learning_rate": self.logz_learning_rate, "clip_epsilon": self.clip_epsilon,
                    "max_grad_norm": self.max_grad_norm, "save_steps": self.save_steps}
        for name, value in positive.items():
            if not value > 0:
                raise ConfigError(f"train.{name}={value}: must be > 0.")
        if self.num_generations < 2:
            raise ConfigError(f"train.num_generations={self.num_generations}: use at least 2 completions per prompt.")
        if self.logz not in LOGZ_MODES:
            raise ConfigError(f"train.logz={self.logz!r}: use one of {', '.join(LOGZ_MODES)}.")
        if self.lora_r < 0:
            raise ConfigError(f"train.lora_r={self.lora_r}: use a rank >= 1, or 0 for full fine-tuning.")
        if not self.families:
            raise ConfigError("train.families is empty: list the prompt families to train on, e.g. [reasoning].")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"train.lr_schedule={self.lr_schedule!r}: use one of {', '.join(LR_SCHEDULES)}.")
        if not 0.0 <= self.base_mix <= 1.0:
            raise ConfigError(f"train.base_mix={self.base_mix}: use a fraction in [0, 1], e.g. 0.25 (0 = on-policy only).")
        if self.base_mix > 0 and self.use_vllm:
            raise ConfigError("train.base_mix > 0 is not supported with train.use_vllm (the engine holds only the "
                              "policy): set base_mix: 0 or use_vllm: false.")
        if self.huber_delta is not None and not (math.isfinite(self.huber_delta) and self.huber_delta > 0):
            raise ConfigError(f"train.huber_delta={self.huber_delta}: use a number > 0 (e.g. 1.0), or null for the "
                              "squared loss.")

    def _check_batch_and_precision(self) -> None:
        completions = self.prompts_per_step * self.num_generations
        if self.gradient_accumulation_steps < 1 or completions % self.gradient_accumulation_steps:
            raise ConfigError(
                f"train.gradient_accumulation_steps={self.gradient_accumulation_steps}: use an integer >= 1 that "
                f"divides prompts_per_step × num_generations = {completions} (each micro-batch is an equal share)."
            )

    def _check_rollout_engine(self) -> None:
        """vLLM settings that cannot work whatever the machine (the machine is checked at train time)."""
        if self.vllm_mode not in VLLM_MODES:
            raise ConfigError(
                f"train.vllm_mode={self.vllm_mode!r}: use colocate (vLLM shares the training GPU) or server "
                "(a separate `trl vllm-serve` process)."
            )
        if not 0.0 < self.vllm_gpu_memory_utilization < 1.0:
            raise ConfigError(
                f"train.vllm_gpu_memory_utilization={self.vllm_gpu_memory_utilization}: use a fraction in (0, 1), "
                "e.g. 0.3 for a 7B model colocated on an 80 GB GPU."
            )
        url = self.vllm_server_base_url
        if url is not None:
            if not url.startswith(("http://", "https://")):
                raise ConfigError(
                    f"train.vllm_server_base_url={url!r}: write the server's base URL with its scheme and port, "
                    "e.g. http://127.0.0.1:8000."
                )
            if self.vllm_mode != "server":
                raise ConfigError(
                    "train.vllm_server_base_url is set but train.vllm_mode is colocate: set vllm_mode: server to "
                    "use that server, or remove vllm_server_base_url."
                )

    def _check_launch(self) -> None:
        """accelerate_config names a file (checked against the project root by PipelineConfig);
        num_processes only makes sense with it."""
        if self.accelerate_config is not None and not self.accelerate_config.strip():
            raise ConfigError("train.accelerate_config is empty: name a file such as infra/accelerate/ddp.yaml, "
                              "or write null to train in one process.")
        if self.num_processes is not None:
            if self.num_processes < 1:
                raise ConfigError(f"train.num_processes={self.num_processes}: use the number of GPUs (>= 1), "
                                  "or null for the accelerate config's num_processes.")
            if self.accelerate_config is None:
                raise ConfigError(f"train.num_processes={self.num_processes} needs train.accelerate_config: set it "
                                  "to e.g. infra/accelerate/ddp.yaml, or write num_processes: null.")


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
