"""A drop-in TRL front for maxent's GRPO: ``from maxent.trl import GRPOConfig, GRPOTrainer`` in
place of ``from trl import GRPOConfig, GRPOTrainer`` runs TRL GRPO code (TRL's field names and
defaults, reward functions and reward models, datasets, callbacks, tools and environment
factories, ``train``, ``save_model``) on maxent's engine. A TRL setting maxent cannot honour is refused naming it (``docs/trl.md`` lists
every field)."""

from __future__ import annotations

from maxent.trl.config import GRPOConfig, UnsupportedTRLField
from maxent.trl.trainer import GRPOTrainer, TrainOutput

__all__ = ["GRPOConfig", "GRPOTrainer", "TrainOutput", "UnsupportedTRLField"]
