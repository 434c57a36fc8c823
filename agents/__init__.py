"""Algorithms built on the maxent layer, each behind the interface of :mod:`maxent.agent`."""

from maxent.agents.sac import SAC, SACConfig

__all__ = ["SAC", "SACConfig"]
