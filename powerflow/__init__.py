"""powerflow: fine-tune a language model to sample from its base model's α-power distribution.

    from powerflow.trainer import PowerFlowConfig, PowerFlowTrainer

This package imports nothing, so importing it (the CLI, the config loader) does not pull in TRL
and torch: import each name from the module that defines it.
"""

from __future__ import annotations

__version__ = "0.1.0"
