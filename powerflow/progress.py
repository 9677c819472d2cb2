"""One progress bar per training stage, with the few numbers a user watches.

transformers' default ProgressCallback writes the whole metric dict of every logging step under
its bar (with `logging_steps=1`, one long line per step of every training). `TrainingProgress`
replaces it: one bar per training, its postfix the latest loss, residual variance and completion
length. Every number is still logged in full to MLflow (`MlflowStepLogger`) and history.csv.
"""

from __future__ import annotations

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

# (log key, postfix label) shown on the bar, when the trainer logs them. Power-Flow logs the
# residual variance and completion length; the GRPO/EMPO baselines log TRL's mean length and reward.
WATCHED = (
    ("loss", "loss"),
    ("powerflow/residual_var", "resid_var"),
    ("powerflow/completion_length", "len"),
    ("reward", "reward"),
    ("completions/mean_length", "len"),
)


def watched_numbers(logs: dict) -> dict[str, str]:
    """The bar's postfix: the WATCHED values present in one log record, each label once, 3 significant digits."""
    out: dict[str, str] = {}
    for key, label in WATCHED:
        value = logs.get(key)
        if label not in out and isinstance(value, (int, float)):
            out[label] = f"{value:.3g}"
    return out


class TrainingProgress(TrainerCallback):
    """A tqdm bar over the training's steps (rank 0 only), described by `name`, with `watched_numbers`."""

    def __init__(self, name: str):
        self.name = name
        self.bar = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and not args.disable_tqdm:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc=f"train {self.name}",
                            dynamic_ncols=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is not None and logs:
            numbers = watched_numbers(logs)
            if numbers:
                self.bar.set_postfix(numbers, refresh=False)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def show_training_progress(trainer, name: str) -> TrainingProgress:
    """Swap the trainer's per-step log printing (ProgressCallback / PrinterCallback) for one `TrainingProgress` bar."""
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    progress = TrainingProgress(name)
    trainer.add_callback(progress)
    return progress
