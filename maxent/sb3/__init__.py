"""A drop-in Stable-Baselines3 front for maxent's SAC: ``from maxent.sb3 import SAC`` in place of
``from stable_baselines3 import SAC`` runs SB3 code (arguments, ``learn``, ``predict``, callbacks,
``evaluate_policy``, ``save``/``load``, zoo hyperparameters) on maxent's engine."""

from __future__ import annotations

try:
    import stable_baselines3  # noqa: F401  (the callbacks and logger SB3 code hands the front)
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError("maxent.sb3 runs Stable-Baselines3 code and needs it installed: "
                      "pip install stable-baselines3") from None

from maxent.sb3.sac import SAC, SACPolicyView
from maxent.sb3.translate import UnsupportedArgument
from maxent.sb3.zoo import from_zoo, parse_python_value

__all__ = ["SAC", "SACPolicyView", "UnsupportedArgument", "from_zoo", "parse_python_value"]
