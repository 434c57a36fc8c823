"""maxent: entropy-regularized reinforcement learning behind one Gym-style agent interface.

The layer (this package) holds what every algorithm shares, in three parts: the entropy layer
(:mod:`maxent.entropy`: entropy estimates, temperature controllers, soft and token-level losses),
training plumbing (:mod:`maxent.training`: the agent base, checkpoints, run directories, logging,
replay) and the LLM machinery (:mod:`maxent.llm`). Algorithms live in :mod:`maxent.agents`,
environments in :mod:`maxent.envs`, the command line in :mod:`maxent.cli`.
"""

from maxent import deprecated as _deprecated
__version__ = "0.2.0"

_deprecated.install()
