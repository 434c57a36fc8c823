"""Algorithms built on the maxent layer, each behind the interface of :mod:`maxent.agent`."""

from maxent.agents.causal import NaiveAgent, SurgeryAgent, UCBAgent
from maxent.agents.sac import SAC, SACConfig

__all__ = ["SAC", "NaiveAgent", "SACConfig", "SurgeryAgent", "UCBAgent"]
