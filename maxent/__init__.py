"""maxent: entropy-regularized reinforcement learning behind one Gym-style agent interface.

The layer (this package) holds what every algorithm shares: entropy estimates, temperature
controllers, soft Bellman losses, checkpoints, logging and the command line. Algorithms live in
``maxent.agents`` and environments in ``maxent.envs``.
"""

__version__ = "0.2.0"
