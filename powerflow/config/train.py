"""Section `train:` of params.yaml, and the TRL settings every trained method shares.

`TrainConfig` inherits the Power-Flow settings from powerflow.arguments.PowerFlowArguments, as the
trainer's PowerFlowConfig does: one definition of each default and check.
`powerflow.trainer.trainer_config` turns (TrainConfig, Member) into a PowerFlowConfig; the pipeline,
the exact check and the benchmarks all call it. `trl_arguments` is the budget every trained method
shares (the GRPO/EMPO baselines too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from powerflow.arguments import VLLM_MODES, PowerFlowArguments
from powerflow.errors import ConfigError


LR_SCHEDULES = ("constant", "linear", "cosine")


@dataclass
class TrainConfig(PowerFlowArguments):
    """Fine-tuning one policy with PowerFlowTrainer. Section `train:` of params.yaml.

    The Power-Flow settings (logz, base_mix, huber_delta, ψ penalties) come from PowerFlowArguments,
    the same dataclass the trainer's PowerFlowConfig inherits; the fields below are the budget every
    trained method shares (TRL's GRPOConfig names them differently: `trl_arguments` maps them) and
    what only the pipeline needs (families, save_steps, launch).
    """

    key_prefix: ClassVar[str] = "train"

    steps: int = field(default=60, metadata={"help": "Optimizer steps per (α, objective) run."})
    prompts_per_step: int = field(default=8, metadata={"help": "Distinct prompts per optimizer step."})
    num_generations: int = field(default=8, metadata={"help": "Completions sampled per prompt (group size G)."})
    max_completion_length: int = field(default=24, metadata={"help": "Completion length cap in tokens."})
    learning_rate: float = field(default=3e-3, metadata={"help": "Learning rate of the policy (LoRA or full)."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank; 0 fine-tunes all weights against a frozen copy."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator (scale lora_alpha / r, or "
                                                          "lora_alpha / √r with lora_rslora)."})
    lora_target_modules: tuple[str, ...] = field(
        default=("all-linear",),
        metadata={"help": "Modules that carry an adapter: module names (q_proj, embed_tokens, ...) or all-linear "
                          "(every linear layer of the blocks, PEFT's rule); [all-linear, embed_tokens] adds the input "
                          "embeddings. Not lm_head: TRL computes log-probabilities from lm_head.weight directly, so "
                          "an adapter there would never train."},
    )
    lora_modules_to_save: tuple[str, ...] = field(
        default=(),
        metadata={"help": "Modules trained in full beside the adapter (PEFT's modules_to_save; a name matches every "
                          "module whose name ends with it). [norm]: every RMSNorm/LayerNorm gain, which the adapter "
                          "cannot reach: the final norm fixes the scale of the logits, and sharpening (α > 1) "
                          "needs it to grow. p_base stays the untouched modules (adapter disabled)."},
    )
    lora_rslora: bool = field(
        default=False, metadata={"help": "Rank-stabilised LoRA: scale the adapter by lora_alpha / √r instead of / r."}
    )
    warmup_steps: int = field(
        default=0, metadata={"help": "Steps of linear learning-rate warm-up from 0 before lr_schedule takes over."}
    )
    clip_epsilon: float = field(default=0.2, metadata={"help": "Importance-weight clip range [1-ε, 1+ε]."})
    lr_schedule: str = field(
        default="constant",
        metadata={"help": "Learning-rate schedule over train.steps: constant, linear (to 0) or cosine (to 0)."},
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
        self.check_power_flow_arguments()
        self._check_launch()
        self._check_batch_and_precision()
        self._check_rollout_engine()
        positive = {"steps": self.steps, "prompts_per_step": self.prompts_per_step,
                    "max_completion_length": self.max_completion_length, "learning_rate": self.learning_rate,
                    "clip_epsilon": self.clip_epsilon,
                    "max_grad_norm": self.max_grad_norm, "save_steps": self.save_steps}
        for name, value in positive.items():
            if not value > 0:
                raise ConfigError(f"train.{name}={value}: must be > 0.")
        if self.num_generations < 2:
            raise ConfigError(f"train.num_generations={self.num_generations}: use at least 2 completions per prompt.")
        if self.lora_r < 0:
            raise ConfigError(f"train.lora_r={self.lora_r}: use a rank >= 1, or 0 for full fine-tuning.")
        if isinstance(self.lora_target_modules, str):
            self.lora_target_modules = (self.lora_target_modules,)
        self.lora_target_modules = tuple(self.lora_target_modules)
        if not self.lora_target_modules or not all(isinstance(m, str) and m.strip() for m in self.lora_target_modules):
            raise ConfigError(f"train.lora_target_modules={list(self.lora_target_modules)}: list module names, e.g. "
                              "[all-linear] or [all-linear, embed_tokens].")
        self.lora_modules_to_save = tuple(self.lora_modules_to_save)
        if "lm_head" in self.lora_target_modules:
            raise ConfigError("train.lora_target_modules names lm_head: TRL computes the log-probabilities from "
                              "lm_head.weight directly, so an adapter there would never train; remove it.")
        if self.alpha_warmup_steps >= self.steps:
            raise ConfigError(f"train.alpha_warmup_steps={self.alpha_warmup_steps} >= train.steps={self.steps}: the "
                              "run would end before reaching α (a different target); use fewer warm-up steps.")
        if not 0 <= self.warmup_steps < self.steps:
            raise ConfigError(f"train.warmup_steps={self.warmup_steps}: use an integer in [0, train.steps).")
        if not self.families:
            raise ConfigError("train.families is empty: list the prompt families to train on, e.g. [reasoning].")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"train.lr_schedule={self.lr_schedule!r}: use one of {', '.join(LR_SCHEDULES)}.")
        if self.base_mix > 0 and self.use_vllm:
            raise ConfigError("train.base_mix > 0 is not supported with train.use_vllm (the engine holds only the "
                              "policy): set base_mix: 0 or use_vllm: false.")

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


def trl_arguments(train: TrainConfig, output_dir: str | Path, seed: int | None = None,
                  max_prompt_tokens: int | None = None) -> dict[str, Any]:
    """The GRPOConfig settings every trained method shares (one budget: steps, batch, lr, lengths).

    One optimizer step = prompts_per_step × G completions per process, in gradient_accumulation_steps
    parts. seed: TRL's seed (adapter init, rollouts, data order); None = train.seed, the baselines'
    seed (a Power-Flow member passes its own). max_prompt_tokens sizes vLLM's context when it is used.
    """
    import torch

    t = train
    return dict(
        output_dir=str(output_dir),
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_schedule,
        per_device_train_batch_size=t.prompts_per_step * t.num_generations // t.gradient_accumulation_steps,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        num_generations=t.num_generations,
        max_completion_length=t.max_completion_length,
        max_steps=t.steps,
        epsilon=t.clip_epsilon,
        max_grad_norm=t.max_grad_norm,
        warmup_steps=t.warmup_steps,
        activation_checkpointing=t.gradient_checkpointing,  # transformers 5's name for gradient checkpointing
        bf16=t.bf16,
        **rollout_engine_arguments(t, max_prompt_tokens),
        use_cpu=not torch.cuda.is_available(),
        report_to="none",
        logging_steps=1,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=1,
        seed=t.seed if seed is None else seed,
        disable_tqdm=False,
    )


def rollout_engine_arguments(train: TrainConfig, max_prompt_tokens: int | None = None) -> dict[str, Any]:
    """TRL's vLLM settings from the `train:` section; {} when rollouts use transformers' generate.

    Checked here, at train time, because it depends on the machine: use_vllm needs the vllm package
    (the gpu extra) and a CUDA GPU, else a UserError naming the fix. vLLM's context is the longest
    prompt (data.max_prompt_tokens) plus train.max_completion_length, so its KV cache is sized for
    what training generates rather than for the model's full context (131k for Llama 3.1).
    """
    t = train
    if not t.use_vllm:
        return {}
    from powerflow.eval.generation import require_vllm

    require_vllm("train.use_vllm=true", "set train.use_vllm: false (rollouts with transformers' generate)")
    settings: dict[str, Any] = dict(use_vllm=True, vllm_mode=t.vllm_mode)
    if max_prompt_tokens is not None:
        settings["vllm_max_model_length"] = max_prompt_tokens + t.max_completion_length
    if t.vllm_mode == "colocate":
        settings["vllm_gpu_memory_utilization"] = t.vllm_gpu_memory_utilization
    elif t.vllm_server_base_url is not None:
        settings["vllm_server_base_url"] = t.vllm_server_base_url
    return settings


ALL_LINEAR = "all-linear"


def lora_config(r: int, lora_alpha: int, target_modules: tuple[str, ...] | list[str] = (ALL_LINEAR,),
                rslora: bool = False, model=None, modules_to_save: tuple[str, ...] | list[str] = ()):
    """The PEFT LoraConfig of a trained policy, or None for full fine-tuning (r = 0).

    target_modules: module names, where "all-linear" stands for every linear layer of the
    transformer blocks (PEFT's rule: the output layer is left out); with other names beside it
    (e.g. embed_tokens) it is expanded on `model`, which must then be given. The adapter's scale is
    lora_alpha / r, or lora_alpha / √r with rslora. modules_to_save: modules trained in full beside
    the adapter (a trainable copy; disabling the adapter uses the originals, so p_base is unchanged).
    No dropout: the policy's log-probabilities in the residual must be those it samples with.
    """
    if r == 0:
        return None
    from peft import LoraConfig

    targets = list(target_modules)
    if targets == [ALL_LINEAR]:
        modules: str | list[str] = ALL_LINEAR
    elif ALL_LINEAR in targets:
        if model is None:
            raise ValueError("lora_config: expanding all-linear next to other module names needs the model")
        modules = sorted(set(block_linear_names(model)) | {t for t in targets if t != ALL_LINEAR})
    else:
        modules = targets
    return LoraConfig(r=r, lora_alpha=lora_alpha, target_modules=modules, lora_dropout=0.0, use_rslora=rslora,
                      modules_to_save=list(modules_to_save) or None)


def block_linear_names(model) -> list[str]:
    """The short names of the model's linear layers, output layer excluded (what PEFT's all-linear adapts)."""
    import torch

    output = model.get_output_embeddings()
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Linear) and module is not output})


def train_lora_config(train: TrainConfig, model=None):
    """`lora_config` from the `train:` section (None when train.lora_r is 0)."""
    return lora_config(train.lora_r, train.lora_alpha, train.lora_target_modules, train.lora_rslora, model,
                       train.lora_modules_to_save)
