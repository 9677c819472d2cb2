"""One backward of the PowerFlow loss on a fixed batch, in one process or on each accelerate rank.

Used by tests/model/test_multi_rank.py: the test computes the full-batch gradients in its own
process and saves the inputs; then

    accelerate launch --config_file infra/accelerate/ddp_cpu.yaml tests/model/multi_rank_grads.py INPUTS OUT

runs `main` on two gloo ranks, each on its half of the batch, and every rank saves the gradients it
holds after the step's reductions (DDP's in backward, the log Z head's in _before_optimizer_step).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from powerflow.config.sections import ExactCheckConfig
from powerflow.verify import trainer_for_enumerable

# 8 completions of one prompt on the enumerable world: 4 per rank.
CFG = ExactCheckConfig(steps=1, num_generations=8)
ALPHA, OBJECTIVE = 2.0, "la_tb"


def build_trainer(output_dir: Path):
    """A PowerFlowTrainer (LoRA, log Z head) whose gradient clipping never acts: gradients are compared raw."""
    trainer, _, _ = trainer_for_enumerable(CFG, alpha=ALPHA, objective=OBJECTIVE, output_dir=output_dir,
                                           max_grad_norm=1e9)
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop; one micro-batch here
    trainer.model.train()
    return trainer


def trainable_state(trainer) -> dict[str, dict[str, torch.Tensor]]:
    return {"model": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
            "head": {k: v.detach().clone() for k, v in trainer.logz_head.state_dict().items()}}


def load_state(trainer, state) -> None:
    trainer.model.load_state_dict(state["model"])
    trainer.logz_head.load_state_dict(state["head"])


def rank_slice(batch: dict, rank: int, world: int) -> dict:
    """This rank's contiguous share of every per-sample tensor of `batch` (other values as they are)."""
    size = batch["completion_ids"].size(0)
    share = size // world
    return {k: v[rank * share : (rank + 1) * share] if torch.is_tensor(v) and v.dim() > 0 and v.size(0) == size else v
            for k, v in batch.items()}


def loss_gradients(trainer, model, inputs) -> dict[str, torch.Tensor]:
    """Gradients after one training step's backward and pre-step reductions: the policy's trainable
    (LoRA) parameters by name and the log Z head's as `logz_head.<name>`, plus the head's output bias
    after the (gathered) warm start as `warm_bias`."""
    trainer.model.zero_grad(set_to_none=True)
    trainer.logz_head.zero_grad(set_to_none=True)
    loss = trainer._compute_loss(model, inputs)
    trainer.accelerator.backward(loss)
    trainer._before_optimizer_step()
    grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    grads |= {f"logz_head.{n}": p.grad.detach().clone() for n, p in trainer.logz_head.named_parameters()}
    grads["warm_bias"] = trainer.logz_head.out.bias.detach().clone()
    return grads


def main(inputs_path: str, out_dir: str) -> None:
    """One rank: the saved initial state, this rank's half of the saved batch, one backward through DDP."""
    saved = torch.load(inputs_path, weights_only=False)
    out = Path(out_dir)
    trainer = build_trainer(out / "trainer")
    accelerator = trainer.accelerator
    assert accelerator.num_processes == 2, f"expected 2 ranks, got {accelerator.num_processes}"
    load_state(trainer, saved["state"])
    model = accelerator.prepare_model(trainer.model)  # DistributedDataParallel: gradients averaged in backward
    inputs = rank_slice(saved["batch"], accelerator.process_index, accelerator.num_processes)
    grads = loss_gradients(trainer, model, inputs)
    torch.save({"grads": grads, "backend": accelerator.state.backend, "type": str(type(model).__name__)},
               out / f"rank{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
