"""The MLflow pyfunc model of a registered policy: a transformers causal-LM directory that generates.

This file is MLflow *model code* ("models from code"): `register_checkpoint` logs it by path, MLflow
copies it next to the checkpoint, and `mlflow.pyfunc.load_model` executes it in the loading process
to get the model object. It therefore imports nothing from powerflow: a registered version loads
wherever mlflow, torch and transformers are installed, and no pickled class has to match the code.

Usage of a loaded version (see `powerflow.tracking.load_policy`):

    policy = load_policy("models:/powerflow-base@best-reasoning")
    policy.predict(["12+7=", "name a fruit:"], params={"max_new_tokens": 32, "seed": 0})
    # -> ["...", "..."]: one completion per prompt, prompt excluded, special tokens removed

Importing this module (as `powerflow.tracking.policy_model`) defines the class and nothing else;
only MLflow's loader, which executes the file under another module name, registers the model.
"""

from __future__ import annotations

from typing import Any

import mlflow.models
from mlflow.pyfunc import PythonModel

# The key of the checkpoint directory in the pyfunc model's `artifacts` (see register_checkpoint).
CHECKPOINT_ARTIFACT = "checkpoint"

# Generation defaults; they are also the defaults of the model signature's params schema.
DEFAULT_PARAMS: dict[str, Any] = {"max_new_tokens": 32, "temperature": 1.0, "do_sample": True, "seed": 0}


def prompts_from_input(model_input: Any) -> list[str]:
    """A list of prompt strings from a list/tuple of strings, a str, or a DataFrame/dict with "prompt"."""
    if isinstance(model_input, str):
        return [model_input]
    if hasattr(model_input, "columns"):  # pandas.DataFrame
        if "prompt" in model_input.columns:
            return [str(p) for p in model_input["prompt"].tolist()]
        if len(model_input.columns) == 1:  # MLflow turns a list of strings into a one-column frame
            return [str(p) for p in model_input.iloc[:, 0].tolist()]
        raise ValueError(f"input DataFrame needs a 'prompt' column, got columns {list(model_input.columns)}")
    if isinstance(model_input, dict) and "prompt" in model_input:
        return prompts_from_input(list(model_input["prompt"]))
    if isinstance(model_input, (list, tuple)) and all(isinstance(p, str) for p in model_input):
        return list(model_input)
    raise ValueError(
        f"predict() takes a list of prompt strings or a DataFrame with a 'prompt' column, got {type(model_input).__name__}"
    )


class PolicyModel(PythonModel):
    """Generate completions with the causal LM stored in the model's `checkpoint` artifact."""

    def load_context(self, context) -> None:
        """Load model and tokenizer (safetensors only, no remote code) onto the GPU if there is one."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = context.artifacts[CHECKPOINT_ARTIFACT]
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        # Batched generation with a decoder-only model needs left padding (the prompt ends where
        # generation starts); a tokenizer without a pad token pads with EOS.
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(
            path, use_safetensors=True, trust_remote_code=False, dtype="auto"
        ).to(self.device)
        self.model.eval()

    def predict(self, context, model_input, params: dict[str, Any] | None = None) -> list[str]:
        """One completion per prompt: sample (or decode greedily) until EOS or max_new_tokens."""
        import torch

        settings = {**DEFAULT_PARAMS, **(params or {})}
        prompts = prompts_from_input(model_input)
        if not prompts:
            return []
        batch = self.tokenizer(prompts, return_tensors="pt", padding=True).to(self.device)
        generate_kwargs: dict[str, Any] = {
            "max_new_tokens": int(settings["max_new_tokens"]),
            "do_sample": bool(settings["do_sample"]),
            "eos_token_id": self.tokenizer.eos_token_id,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if generate_kwargs["do_sample"]:
            # Pure sampling from the policy at the given temperature: no top-k/top-p truncation
            # (the policy is trained to *be* the target distribution; truncation would distort it).
            generate_kwargs.update(temperature=float(settings["temperature"]), top_k=0, top_p=1.0)
        torch.manual_seed(int(settings["seed"]))
        with torch.no_grad():
            output = self.model.generate(**batch, **generate_kwargs)
        new_tokens = output[:, batch["input_ids"].shape[1] :]
        return self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)


# MLflow's models-from-code loader executes this file under a generated module name; a normal
# import (as powerflow.tracking.policy_model) must not touch MLflow's global model slot.
if __name__ != "powerflow.tracking.policy_model":
    mlflow.models.set_model(PolicyModel())
