"""PowerFlowConfig and PowerFlowTrainer: TRL's GRPOTrainer with the α-power GFlowNet objective.

Generation, batching, gradient accumulation, accelerate/DeepSpeed and `use_vllm` are TRL's. This
subclass changes three things:

1. scoring (`_generate_and_score_completions`): after TRL has sampled completions from π_θ, the
   frozen base model scores them — log p_base(y|q) in fp32, with truncated completions scored by
   their prefix — and log Z inputs (prompt features or leave-one-out estimates) are computed while
   the whole group of each prompt is still together (TRL shuffles and splits right after);
2. the loss (`_compute_loss`): w · δ², δ the residual of `objective` (see powerflow.objectives);
3. the log Z head: its own parameter group and learning rate, saved and restored with checkpoints.
   It is kept outside `self.model`, so vLLM weight syncs (which push `self.model`, LoRA merged)
   never carry it; `rollout_engine_weights(trainer)` lists exactly what a sync pushes.

With a PEFT config, p_base is the same weights with the adapter disabled (no second copy in
memory); without one, a frozen deep copy taken before training.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save_file
from transformers import PreTrainedModel, TrainerCallback
from trl import GRPOConfig, GRPOTrainer
from trl.trainer.utils import add_fused_lm_head, create_model_from_path, disable_dropout_in_model, pad

from powerflow.arguments import VLLM_MODES, PowerFlowArguments
from powerflow.config.train import TrainConfig, trl_arguments
from powerflow.member import Member
from powerflow.registry import objective as registered_objective
from powerflow.objectives import (
    LogZHead,
    completion_length,
    leave_one_out_log_z,
    mean_pool,
    power_flow_loss,
    residual_fn,
    sequence_log_prob,
)

LOGZ_HEAD_FILE = "logz_head.safetensors"
CONFIG_FILE = "powerflow_config.json"


@dataclass
class PowerFlowConfig(PowerFlowArguments, GRPOConfig):
    """GRPOConfig plus the α-power objective. Rollouts always sample from π_θ at temperature 1.

    The Power-Flow settings (logz, base_mix, huber_delta, ψ penalties, with their defaults and
    checks) are PowerFlowArguments', shared with params.yaml's `train:`; this class adds the member's
    α and objective. Build one for a sweep member with powerflow.config.train.trainer_config.

    `epsilon` and `epsilon_high` (GRPO's clip range) are reused as ε_low and ε_high of the
    sequence-level importance weight w = clip(π_θ/π_old, 1 − ε_low, 1 + ε_high).
    """

    key_prefix: ClassVar[str] = "PowerFlowConfig"

    alpha: float = field(
        default=4.0,
        metadata={"help": "Power α of the target p_base(y|q)^α: > 1 sharpens (reasoning), < 1 flattens (diversity)."},
    )
    objective: str = field(
        default="tb",
        metadata={"help": "An objective of powerflow.registry: 'tb' (exact p_α, the default), 'la_tb' "
                          "(length-aware), 'tb_token' (ablation) or a plugin's."},
    )

    def __post_init__(self):
        self.check_power_flow_arguments()
        self._validate_power_flow_fields()
        GRPOConfig.__post_init__(self)

    def _validate_power_flow_fields(self) -> None:
        """Refuse settings that would silently train toward the wrong target, naming the fix."""
        if not isinstance(self.alpha, (int, float)) or not math.isfinite(self.alpha) or self.alpha <= 0:
            raise ValueError(
                f"PowerFlowConfig.alpha must be a finite number > 0, got {self.alpha!r}: use alpha > 1 to sharpen "
                "(e.g. 4 for base models), alpha < 1 to flatten (e.g. 0.5), alpha = 1 to keep p_base."
            )
        registered_objective(self.objective)  # a ConfigError naming the registered objectives when unknown
        eps_low = self.epsilon
        eps_high = self.epsilon if self.epsilon_high is None else self.epsilon_high
        if not (0.0 <= eps_low < 1.0) or not (eps_high >= 0.0):
            raise ValueError(
                f"PowerFlowConfig clip range [1 - epsilon, 1 + epsilon_high] = [{1 - eps_low}, {1 + eps_high}] is "
                "inverted or empty: set epsilon in [0, 1) and epsilon_high >= 0."
            )
        sampling = {"temperature": (self.temperature, 1.0), "top_p": (self.top_p, 1.0),
                    "repetition_penalty": (self.repetition_penalty, 1.0)}
        for name, (value, required) in sampling.items():
            if value != required:
                raise ValueError(
                    f"PowerFlowConfig.{name}={value} changes the rollout distribution, but rollouts must sample "
                    f"from π_θ itself: set {name}={required} (the power is set by alpha, not by {name})."
                )
        if self.top_k not in (0, None) or self.min_p is not None:
            raise ValueError(
                "PowerFlowConfig.top_k / min_p truncate the rollout distribution: set top_k=0 and min_p=None so "
                "rollouts sample from π_θ itself."
            )
        if self.beta != 0.0:
            raise ValueError(f"PowerFlowConfig.beta={self.beta}: the α-power objective has no KL term; set beta=0.0.")
        if self.vllm_mode not in VLLM_MODES:
            raise ValueError(
                f"PowerFlowConfig.vllm_mode={self.vllm_mode!r} is unknown: set it to 'colocate' (vLLM shares the "
                "training GPUs) or 'server' (a separate `trl vllm-serve` process)."
            )
        if self.mask_truncated_completions:
            raise ValueError(
                "PowerFlowConfig.mask_truncated_completions=True drops truncated samples from the loss, which lets "
                "the policy escape into truncation; set it to False (truncated samples are scored by their prefix)."
            )
        if self.logz == "group" and (self.num_generations or 0) < 2:
            raise ValueError("PowerFlowConfig.logz='group' needs num_generations >= 2: raise num_generations or use logz='head'.")
        if self.base_mix > 0 and self.use_vllm:
            raise ValueError("PowerFlowConfig.base_mix > 0 with use_vllm: the vLLM engine holds only the policy's "
                             "weights; set base_mix: 0 or use_vllm: false.")


def trainer_config(train: TrainConfig, member: Member, output_dir: str | Path, *,
                   max_prompt_tokens: int | None = None, **overrides: Any) -> PowerFlowConfig:
    """The PowerFlowConfig of one member: its α and objective, the Power-Flow settings and budget of
    `train`, trained with the member's seed. `overrides` replace GRPOConfig settings (the exact check
    and the benchmarks set e.g. logging or saving)."""
    settings = trl_arguments(train, output_dir, seed=member.seed, max_prompt_tokens=max_prompt_tokens)
    settings.update(train.power_flow_arguments())
    settings.update(overrides)
    return PowerFlowConfig(alpha=member.alpha, objective=member.objective, **settings)


class _StepGuard(TrainerCallback):
    """Runs the trainer's checks between backward and optimizer step (see PowerFlowTrainer)."""

    def __init__(self, trainer: "PowerFlowTrainer"):
        self.trainer = trainer

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.trainer._before_optimizer_step()

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.trainer._after_optimizer_step()


class PowerFlowTrainer(GRPOTrainer):
    """Fine-tunes π_θ toward p_base(y|q)^α (or its length tilt) with trajectory balance.

    Same constructor as GRPOTrainer, without reward functions: the reward is the frozen base
    model's own log-density. `args` must be a PowerFlowConfig.
    """

    _tag_names = ["trl", "grpo", "powerflow"]

    def __init__(self, model, args: PowerFlowConfig | None = None, train_dataset=None, eval_dataset=None,
                 processing_class=None, callbacks=None, optimizers=(None, None), peft_config=None, **kwargs):
        if args is None:
            args = PowerFlowConfig("powerflow-output")
        if not isinstance(args, PowerFlowConfig):
            raise TypeError(f"PowerFlowTrainer needs args=PowerFlowConfig(...), got {type(args).__name__}.")
        if "reward_funcs" in kwargs:
            raise TypeError("PowerFlowTrainer takes no reward_funcs: the reward is the base model's log p_base(y|q).")
        reference = None
        if peft_config is None:
            if isinstance(model, str):
                init_kwargs = dict(args.model_init_kwargs or {})
                init_kwargs.setdefault("trust_remote_code", args.trust_remote_code)
                model = create_model_from_path(model, **init_kwargs)
            reference = copy.deepcopy(model)  # taken before TRL patches the forward
        # Scoring hand-offs within one generation batch: _generate -> base_log_density -> scoring.
        self._pending_prompt_ids = None
        self._pending_log_p_base = None
        self._pending_prompt_features = None
        super().__init__(
            model=model, reward_funcs=[self.base_log_density], args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
            processing_class=processing_class, callbacks=callbacks, optimizers=optimizers, peft_config=peft_config,
            **kwargs,
        )
        if reference is not None:
            self.ref_model = self._prepare_reference(reference)
        self.logz_head = self._build_logz_head() if args.logz == "head" else None
        self._check_logz_head_outside_model()
        self._format_regex = re.compile(args.format_pattern) if args.format_pattern else None
        self._nonfinite_pending = False
        self._logz_warm = self.logz_head is None  # a head is warm-started on the first training batch
        self.skipped_steps = 0
        self.add_callback(_StepGuard(self))

    # ------------------------------------------------------------------ set-up
    def _prepare_reference(self, reference: PreTrainedModel):
        """Freeze a copy of the initial weights as p_base (full fine-tuning only)."""
        reference.requires_grad_(False)
        reference.eval()
        if self.args.disable_dropout:
            disable_dropout_in_model(reference)
        add_fused_lm_head(reference, temperature=1.0, cast_lm_head_to_fp32=self.args.cast_lm_head_to_fp32)
        return self.accelerator.prepare_model(reference, evaluation_mode=True)

    def _build_logz_head(self) -> LogZHead:
        hidden = int(self.accelerator.unwrap_model(self.model).config.get_text_config().hidden_size)
        return LogZHead(hidden, self.args.logz_hidden_size).to(self.accelerator.device)

    def _check_logz_head_outside_model(self) -> None:
        """Refuse a log Z head reachable from `self.model`.

        With `use_vllm`, TRL pushes every parameter of `self.model` (LoRA merged, see
        `rollout_engine_weights`) to the rollout engine at each weight sync; the head is not part of
        the language model and vLLM has no tensor of that name, so it must stay outside the model.
        """
        if self.logz_head is None:
            return
        model_params = {id(p) for p in self.model.parameters()}
        inside = [name for name, p in self.logz_head.named_parameters() if id(p) in model_params]
        if inside:
            raise RuntimeError(
                f"the log Z head's parameters {inside} are registered inside the policy model, so TRL would push "
                "them to the vLLM engine with the model's weights: keep the head as PowerFlowTrainer.logz_head, "
                "outside trainer.model."
            )

    def create_optimizer(self, model=None):
        """TRL/transformers' optimizer, plus the log Z head as its own group (own lr, no decay), and
        with `lr_multipliers` the parameters they name in groups of their own at those multiples of the lr."""
        optimizer = super().create_optimizer(model)
        if self.args.lr_multipliers:
            split_groups_by_lr_multiplier(optimizer, self.model, self.args.lr_multipliers)
        if self.logz_head is not None:
            known = {id(p) for group in optimizer.param_groups for p in group["params"]}
            head_params = [p for p in self.logz_head.parameters() if id(p) not in known]
            if head_params:
                optimizer.add_param_group(
                    {"params": head_params, "lr": self.args.logz_learning_rate, "weight_decay": 0.0}
                )
        return optimizer

    def current_alpha(self) -> float:
        """The power the loss uses now: args.alpha, annealed from 1 over `alpha_warmup_steps` (see
        PowerFlowArguments.annealed_alpha); evaluation always uses args.alpha."""
        if not self.model.training:
            return self.args.alpha
        return self.args.annealed_alpha(self.args.alpha, self.state.global_step)

    # ----------------------------------------------------------------- scoring
    @contextlib.contextmanager
    def _base_model(self):
        """The module that computes p_base: the frozen reference copy, or the policy with its adapter disabled."""
        if self.ref_model is not None:
            yield self.ref_model
        else:
            with self.accelerator.unwrap_model(self.model).disable_adapter():
                yield self.model

    def _backbone(self, model):
        """The transformer body whose `last_hidden_state` the fused LM head projects."""
        unwrapped = self.accelerator.unwrap_model(model)
        if hasattr(unwrapped, "get_base_model"):
            unwrapped = unwrapped.get_base_model()
        return unwrapped.base_model

    def _base_forward(self, input_ids, attention_mask, logits_to_keep, prompt_mask=None):
        """One forward pass of the base model over prompt + completion.

        Returns (per-token log p_base of the completion tokens [B, C], prompt features [B, H] or None).
        With `prompt_mask`, a hook on the backbone keeps the last hidden states of the prompt positions,
        mean-pooled into the log Z head's features: no second pass over the prompt.
        """
        batch_size = self.args.per_device_train_batch_size if self.model.training else self.args.per_device_eval_batch_size
        kept: list[torch.Tensor] = []
        with self._base_model() as model:
            handle = None
            if prompt_mask is not None:
                width = prompt_mask.size(1)
                handle = self._backbone(model).register_forward_hook(
                    lambda module, args, output: kept.append(output.last_hidden_state[:, :width].detach().float())
                )
            try:
                logps, _, _ = self._get_per_token_logps_and_entropies(
                    model, input_ids, attention_mask, logits_to_keep, batch_size=batch_size
                )
            finally:
                if handle is not None:
                    handle.remove()
        features = mean_pool(torch.cat(kept), prompt_mask) if prompt_mask is not None else None
        return logps, features

    def base_rollout_slots(self, n: int, group_size: int) -> list[bool]:
        """Which of n consecutive rollouts (groups of G copies of a prompt) are drawn from p_base.

        The last round(base_mix · G) of every group, so every prompt gets the same mixture
            q(y|q) = (1 − m/G) π_θ(y|q) + (m/G) p_base(y|q).
        TB is off-policy: δ ≡ 0 on the support of q is the same fixed point, and q ⊇ supp(p_base^α).
        """
        m = round(self.args.base_mix * group_size) if self.model.training else 0
        return [i % group_size >= group_size - m for i in range(n)]

    @contextlib.contextmanager
    def _base_sampler(self):
        """Make TRL's generation sample from p_base: the frozen reference copy, or the policy with its adapter off.

        TRL generates from `self.model_wrapped`; with full fine-tuning it is pointed at the reference copy for
        the duration (the copy's forward is unpatched without `fused_lm_head=True`, so generation is TRL's own).
        """
        if self.ref_model is None:
            with self._base_model():
                yield
            return
        policy = self.model_wrapped
        self.model_wrapped = self.ref_model
        try:
            yield
        finally:
            self.model_wrapped = policy

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        """TRL's generation, with the base-model share of each group (base_mix) sampled from p_base."""
        slots = self.base_rollout_slots(len(prompt_ids), num_generations)
        if not any(slots):
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations,
                                                 has_tool_images)
        if images is not None or multimodal_fields:
            raise ValueError("base_mix > 0 supports text prompts only: set base_mix: 0 for multimodal training.")
        own = [i for i, from_base in enumerate(slots) if not from_base]
        base = [i for i, from_base in enumerate(slots) if from_base]
        completions: list = [None] * len(prompt_ids)
        policy_ids = super()._generate_single_turn([prompt_ids[i] for i in own], None, {}, num_generations)[0] \
            if own else []
        with self._base_sampler():
            base_ids, _ = super()._generate_single_turn([prompt_ids[i] for i in base], None, {}, num_generations)
        for i, ids in zip(own, policy_ids):
            completions[i] = ids
        for i, ids in zip(base, base_ids):
            completions[i] = ids
        self._metrics["train"]["powerflow/base_rollout_fraction"].append(len(base) / len(prompt_ids))
        return completions, None

    def _generate(self, prompts):
        outputs = super()._generate(prompts)
        self._pending_prompt_ids = outputs[0]  # prompt_ids_list, read by base_log_density
        return outputs

    def base_log_density(self, prompts, completions, completion_ids, **kwargs) -> list[float]:
        """The GFlowNet log-reward before the power: log p_base(y|q) = Σ_t log p_base(y_t | y_<t, q).

        Registered as the trainer's only reward function, so TRL logs it as
        `rewards/base_log_density/mean`. Truncated completions are scored by their prefix. The
        per-sample values are kept for the loss (α is applied there, per objective).
        """
        device = self.accelerator.device
        pad_id = self._tokenizer.pad_token_id
        prompt_ids = pad([torch.tensor(ids) for ids in self._pending_prompt_ids], padding_value=pad_id,
                         padding_side="left").to(device)
        prompt_mask = pad([torch.ones(len(ids), dtype=torch.long) for ids in self._pending_prompt_ids],
                          padding_value=0, padding_side="left").to(device)
        comp = pad([torch.tensor(ids) for ids in completion_ids], padding_value=pad_id, padding_side="right").to(device)
        comp_mask = pad([torch.ones(len(ids), dtype=torch.long) for ids in completion_ids], padding_value=0,
                        padding_side="right").to(device)
        with torch.no_grad():
            logps, self._pending_prompt_features = self._base_forward(
                torch.cat([prompt_ids, comp], dim=1), torch.cat([prompt_mask, comp_mask], dim=1), comp.size(1),
                prompt_mask=prompt_mask if self.args.logz == "head" else None,
            )
        self._pending_log_p_base = sequence_log_prob(logps, comp_mask)
        return self._pending_log_p_base.tolist()

    def _is_truncated(self, completion_ids, completion_mask):
        """True where the last kept token is not an EOS: the sample hit max length (terminal by truncation)."""
        last = (completion_mask.sum(dim=1) - 1).clamp(min=0)
        last_tokens = completion_ids.gather(1, last.unsqueeze(1)).squeeze(1)
        eos = torch.tensor(self.eos_token_ids, device=completion_ids.device)
        return ~torch.isin(last_tokens, eos)

    def _penalty(self, completion_ids, completion_mask, truncated):
        """ψ(y) = format_penalty · [pattern missing] + truncation_penalty · [truncated]."""
        psi = truncated.float() * self.args.truncation_penalty
        if self._format_regex is not None:
            texts = self.processing_class.batch_decode(completion_ids * completion_mask, skip_special_tokens=True)
            missing = torch.tensor([self._format_regex.search(t) is None for t in texts], device=psi.device)
            psi = psi + missing.float() * self.args.format_penalty
        return psi

    def _group_log_z(self, batch, log_p_base, length, psi):
        """Leave-one-out log Z from the old policy's residuals, groups gathered across processes."""
        old = batch.get("old_per_token_logps")
        input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
        attention_mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
        if old is None:
            old, _, _ = self._get_per_token_logps_and_entropies(
                self.model, input_ids, attention_mask, batch["completion_ids"].size(1),
                batch_size=self.args.per_device_train_batch_size,
            )
        log_pi_old = sequence_log_prob(old, batch["completion_mask"])
        partial = residual_fn(self.args.objective)(
            torch.zeros_like(log_pi_old), log_pi_old, log_p_base, length, self.current_alpha(), psi
        )
        mode = "train" if self.model.training else "eval"
        group = self.num_generations if mode == "train" else self.num_generations_eval
        everything = self.accelerator.gather(partial)
        n = partial.size(0)
        rank = self.accelerator.process_index
        return leave_one_out_log_z(everything, group)[rank * n : (rank + 1) * n]

    def _generate_and_score_completions(self, inputs):
        batch = super()._generate_and_score_completions(inputs)
        completion_ids, completion_mask = batch["completion_ids"], batch["completion_mask"]
        with torch.no_grad():
            log_p_base, self._pending_log_p_base = self._pending_log_p_base, None
            if log_p_base is None or log_p_base.shape[0] != completion_ids.shape[0]:
                raise RuntimeError("base_log_density did not score this batch; was _calculate_rewards overridden?")
            length = completion_length(completion_mask)
            truncated = self._is_truncated(completion_ids, completion_mask)
            psi = self._penalty(completion_ids, completion_mask, truncated)
            batch["pf_log_p_base"] = log_p_base
            batch["pf_truncated"] = truncated
            batch["pf_psi"] = psi
            if self.args.logz == "head":
                batch["pf_prompt_features"], self._pending_prompt_features = self._pending_prompt_features, None
            else:
                batch["pf_log_z"] = self._group_log_z(batch, log_p_base, length, psi)
        mode = "train" if self.model.training else "eval"
        per_token = self.accelerator.gather(log_p_base / length).mean().item()
        self._metrics[mode]["powerflow/log_p_base_per_token"].append(per_token)
        self._metrics[mode]["powerflow/alpha"].append(self.current_alpha())
        self._metrics[mode]["powerflow/truncated_fraction"].append(
            self.accelerator.gather(truncated.float()).mean().item()
        )
        return batch

    # -------------------------------------------------------------------- loss
    def _policy_log_z(self, inputs):
        if self.logz_head is not None:
            return self.logz_head(inputs["pf_prompt_features"])
        return inputs["pf_log_z"]

    @torch.no_grad()
    def _warm_start_logz_head(self, log_pi, log_p_base, length, psi) -> None:
        """Set the head's output bias to the batch moment estimate of log Z before its first update.

            b₂ ← − mean_y [ δ(y) at log Z = 0 ]

        A fresh head predicts 0, which for α ≠ 1 is far from log Z; the first updates would then carry
        large residuals of one sign and can collapse the policy before the head catches up. The
        estimate is exact when all residuals agree (at the fixed point; for α = 1 and π = p_base it is 0).
        """
        partial = residual_fn(self.args.objective)(
            torch.zeros_like(log_pi), log_pi.detach(), log_p_base, length, self.current_alpha(), psi
        )
        estimate = -self.accelerator.gather(partial.float()).mean()
        if torch.isfinite(estimate):
            self.logz_head.out.bias.fill_(estimate.item())
            self._logz_warm = True

    def _compute_loss(self, model, inputs):
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        input_ids = torch.cat([inputs["prompt_ids"], completion_ids], dim=1)
        attention_mask = torch.cat([inputs["prompt_mask"], completion_mask], dim=1)
        per_token_logps, _, _ = self._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, completion_ids.size(1)
        )
        log_pi = sequence_log_prob(per_token_logps, completion_mask)
        old = inputs.get("old_per_token_logps")
        log_pi_old = log_pi.detach() if old is None else sequence_log_prob(old, completion_mask)
        length = completion_length(completion_mask)
        if not self._logz_warm and self.model.training:
            self._warm_start_logz_head(log_pi, inputs["pf_log_p_base"], length, inputs["pf_psi"])
        terms = power_flow_loss(
            objective=self.args.objective,
            alpha=self.current_alpha(),
            log_z=self._policy_log_z(inputs),
            log_pi=log_pi,
            log_pi_old=log_pi_old,
            log_p_base=inputs["pf_log_p_base"],
            length=length,
            psi=inputs["pf_psi"],
            epsilon_low=self.epsilon_low,
            epsilon_high=self.epsilon_high,
            huber_delta=self.args.huber_delta,
        )
        mode = "train" if self.model.training else "eval"
        loss = terms.loss
        if not torch.isfinite(loss):
            # Never backpropagate a non-finite loss: flag the accumulation window so its optimizer step is
            # skipped (see _before_optimizer_step), and return a zero that touches no parameter.
            self._nonfinite_pending = True
            loss = torch.zeros((), device=loss.device, requires_grad=True)
        self._log_terms(mode, terms, length)
        normalizer = self.current_gradient_accumulation_steps if mode == "train" else 1.0
        return loss / normalizer

    def _log_terms(self, mode, terms, length):
        gather = self.accelerator.gather
        residual = gather(terms.residual.detach().float())
        finite = residual[torch.isfinite(residual)]
        metrics = self._metrics[mode]
        metrics["powerflow/log_z"].append(gather(terms.log_z.detach().float()).mean().item())
        metrics["powerflow/completion_length"].append(gather(length).mean().item())
        metrics["powerflow/residual_var"].append(finite.var(unbiased=False).item() if finite.numel() else math.nan)
        metrics["powerflow/clip_fraction"].append(gather(terms.clipped.float()).mean().item())
        metrics["powerflow/skipped_steps"].append(float(self.skipped_steps + int(self._nonfinite_pending)))

    # --------------------------------------------------------- optimizer guard
    def _before_optimizer_step(self) -> None:
        """Reduce and clip the head's gradients; drop every gradient if the window saw a non-finite loss.

        A parameter whose .grad is None is left untouched by torch optimizers (no update, no weight
        decay, no moment change), so clearing all gradients skips the step exactly.
        """
        if self.logz_head is not None:
            grads = [p.grad for p in self.logz_head.parameters() if p.grad is not None]
            if grads and self.accelerator.num_processes > 1:
                for g in grads:
                    g.copy_(self.accelerator.reduce(g, reduction="mean"))
            if grads and self.args.max_grad_norm and self.args.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(list(self.logz_head.parameters()), self.args.max_grad_norm)
        if self._nonfinite_pending:
            for p in self._trainable_parameters():
                p.grad = None
            self.skipped_steps += 1
            self._nonfinite_pending = False

    def _after_optimizer_step(self) -> None:
        if self.logz_head is not None:
            self.logz_head.zero_grad(set_to_none=True)

    def _trainable_parameters(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.logz_head is not None:
            params += list(self.logz_head.parameters())
        return params

    # ------------------------------------------------------------- persistence
    def _save(self, output_dir: str | None = None, state_dict=None):
        """Save the adapter (or model) as TRL does, plus the log Z head and the resolved config.

        On several ranks only the writer (args.should_save, rank 0) writes: the head is the same on every
        rank (its gradients are averaged before each step).
        """
        super()._save(output_dir, state_dict=state_dict)
        if self.args.should_save:
            self.save_powerflow_files(output_dir if output_dir is not None else self.args.output_dir)

    def save_powerflow_files(self, output_dir: str | Path) -> None:
        """Write the log Z head (if any) and the resolved config beside a saved model."""
        output_dir = Path(output_dir)
        if self.logz_head is not None:
            tensors = {k: v.detach().cpu().contiguous() for k, v in self.logz_head.state_dict().items()}
            save_file(tensors, output_dir / LOGZ_HEAD_FILE, metadata={
                "hidden_size": str(self.logz_head.hidden_size), "width": str(self.logz_head.width)})
        (output_dir / CONFIG_FILE).write_text(json.dumps(resolved_config(self.args), indent=2, sort_keys=True))

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model=model)
        if self.logz_head is not None:
            path = Path(resume_from_checkpoint) / LOGZ_HEAD_FILE
            if not path.is_file():
                raise FileNotFoundError(
                    f"checkpoint {resume_from_checkpoint} has no {LOGZ_HEAD_FILE}: it was not written by "
                    "PowerFlowTrainer with logz='head'; resume with the same logz setting it was trained with."
                )
            load_logz_state(path, self.logz_head)
            self._logz_warm = True


def split_groups_by_lr_multiplier(optimizer: torch.optim.Optimizer, model: torch.nn.Module,
                                  multipliers: dict[str, float]) -> None:
    """Give the parameters whose name contains a key of `multipliers` groups of their own at factor × lr.

    LoRA+ (Hayou et al., 2024) is {"lora_B": ratio}: with W = W₀ + (α/r)·B·A, B starting at 0 and A
    random, both factors learn at a stable rate only when lr_B = ratio · lr_A. The first matching key
    decides a parameter's factor. Each group keeps its other settings (weight decay); must run before
    the first step and before the scheduler, which reads each group's lr. A key that matches no
    trainable parameter is refused (a typo would silently train at one rate).
    """
    names = {id(p): n for n, p in model.named_parameters() if p.requires_grad}
    factor_of = {}
    for pid, name in names.items():
        factor_of[pid] = next((f for key, f in multipliers.items() if key in name), None)
    unused = [key for key in multipliers if not any(key in n for n in names.values())]
    if unused:
        raise ValueError(f"lr_multipliers names {unused}, which match no trainable parameter of the model (e.g. "
                         f"{sorted(names.values())[:2]}): fix the name, or set train.lora_r >= 1 for lora_A/lora_B.")
    groups = []
    for group in optimizer.param_groups:
        settings = {k: v for k, v in group.items() if k != "params"}
        by_factor: dict[float | None, list] = {}
        for p in group["params"]:
            by_factor.setdefault(factor_of.get(id(p)), []).append(p)
        for factor, params in by_factor.items():
            groups.append({**settings, "params": params, "lr": settings["lr"] * (factor or 1.0)})
    optimizer.param_groups = groups


def rollout_engine_weights(trainer: GRPOTrainer) -> Iterator[tuple[str, torch.Tensor]]:
    """The (name, tensor) pairs the trainer pushes to its vLLM rollout engine at a weight sync.

    Runs TRL's own iterator, `VLLMGeneration._iter_named_params` (TRL 1.16), the one
    `VLLMGeneration.sync_weights` feeds to the engine in both vLLM modes: it walks `trainer.model`,
    merges the LoRA adapter into the base weights (gathered first under ZeRO-3; FSDP is walked
    module by module), strips PEFT's prefixes (`base_model.model.`, `.base_layer`, `modules_to_save`)
    so the names are the checkpoint names vLLM loads, skips the adapter's own tensors, and unmerges
    afterwards. With `use_vllm` the trainer's engine wrapper is used; without it (or without vLLM
    installed) the same method runs on a bare `VLLMGeneration` that never starts an engine.

    Tensors are detached copies: the adapter is unmerged when the walk ends, which would change a
    borrowed tensor in place. Every process must consume the iterator (the gather is collective).
    Nothing of the log Z head appears: it lives outside `trainer.model`
    (`PowerFlowTrainer._check_logz_head_outside_model`).
    """
    generation = getattr(trainer, "vllm_generation", None)
    if generation is None:
        from trl.distributed import DistributedBackend
        from trl.generation.vllm_generation import VLLMGeneration

        generation = object.__new__(VLLMGeneration)  # the weight walk only; __init__ would start vLLM
        generation.model = trainer.model
        generation.accelerator = trainer.accelerator
        generation._dist = DistributedBackend(trainer.accelerator)
    for name, tensor in generation._iter_named_params():
        yield name, tensor.detach().clone()


def resolved_config(args: PowerFlowConfig) -> dict:
    """The full config as plain JSON types (TrainingArguments.to_dict, minus secrets TRL redacts)."""
    return json.loads(args.to_json_string())


def load_logz_head(checkpoint_dir: str | Path, hidden_size: int | None = None) -> LogZHead:
    """Rebuild the log Z head saved in a checkpoint directory (its size from the file's metadata).

    hidden_size: the policy's hidden size, when known; a head of another size is refused. Any
    problem with the file is a CheckpointError naming it (missing, corrupt, wrong shapes).
    """
    from safetensors import safe_open

    from powerflow.checkpoints import CheckpointError, check_safetensors_file

    path = Path(checkpoint_dir) / LOGZ_HEAD_FILE
    if not path.is_file():
        raise CheckpointError(f"{checkpoint_dir} has no {LOGZ_HEAD_FILE}: it is not a PowerFlowTrainer checkpoint "
                              "trained with logz='head' (or the file was not copied with it).")
    check_safetensors_file(path)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    try:
        size, width = int(meta["hidden_size"]), int(meta["width"])
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"{path} lacks the hidden_size/width metadata PowerFlowTrainer writes (got {meta}): "
                              "it was not saved by powerflow; use the head saved with the policy.") from err
    if hidden_size is not None and size != hidden_size:
        raise CheckpointError(f"{path} is a log Z head for hidden size {size}, but the policy's hidden size is "
                              f"{hidden_size}: use the head saved with this policy.")
    head = LogZHead(size, width)
    load_logz_state(path, head)
    return head


def load_logz_state(path: Path, head: LogZHead) -> None:
    """Load a saved head's tensors into `head`, refusing (CheckpointError) names or shapes that differ."""
    from safetensors import SafetensorError

    from powerflow.checkpoints import CheckpointError

    try:
        # read on CPU (safetensors refuses "cpu:0", the device of a gloo rank); load_state_dict copies over
        saved = load_file(path, device="cpu")
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file ({err}): it is truncated or corrupt.") from err
    expected = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in saved.items()}
    if found != expected:
        wrong = [f"{k} {list(found[k])} (expected {list(expected[k])})" for k in expected if k in found
                 and found[k] != expected[k]]
        missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
        parts = ([f"wrong shapes: {', '.join(wrong)}"] if wrong else []) + \
                ([f"missing: {', '.join(missing)}"] if missing else []) + ([f"unexpected: {', '.join(extra)}"] if extra else [])
        raise CheckpointError(f"{path} does not fit a log Z head of hidden size {head.hidden_size}, width {head.width} "
                              f"({'; '.join(parts)}): it belongs to another model or was edited; use the head saved "
                              "with this policy.")
    head.load_state_dict(saved)
