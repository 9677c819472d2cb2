"""powerflow: fine-tune a language model to sample from its base model's α-power distribution.

`from powerflow import PowerFlowConfig, PowerFlowTrainer` — imported lazily, so that importing the
package (the CLI, the config loader) does not pull in TRL and torch until they are needed.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["PowerFlowConfig", "PowerFlowTrainer", "__version__"]


def __getattr__(name: str):
    if name in ("PowerFlowConfig", "PowerFlowTrainer"):
        from powerflow import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'powerflow' has no attribute {name!r}")
