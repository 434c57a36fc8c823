"""Algorithms built on the maxent layer, each behind the interface of :mod:`maxent.training.agent`.

Names are imported lazily (PEP 562), so ``from maxent.agents import SAC`` does not pull in
transformers, scipy or scikit-learn for agents you do not use.
"""

from importlib import import_module

# Registers the maxent/... env ids (entry points are strings: no environment module is imported),
# so that every agent can be given one.
import maxent.envs  # noqa: F401

_EXPORTS = {
    "SAC": "sac", "SACConfig": "sac",
    "SurgeryAgent": "causal", "NaiveAgent": "causal", "UCBAgent": "causal",
    "UCB1": "bandits", "Thompson": "bandits", "Boltzmann": "bandits", "GreedyOracle": "bandits",
    "ExactPlanner": "bandits", "LPPlanner": "bandits", "ISICombUCB1": "bandits",
    "CombUCB1": "bandits", "OptimisticPlanner": "bandits",
    "HomeostaticLearner": "homeostatic", "HomeostaticConfig": "homeostatic",
    "RehearsalLearner": "rehearsal", "RehearsalConfig": "rehearsal", "EWC": "rehearsal",
    "EWCConfig": "rehearsal",
    "ADS": "ads", "ADSConfig": "ads",
    "GRPO": "grpo", "GRPOConfig": "grpo",
    "QARL": "qarl", "QARLConfig": "qarl", "RARLConfig": "qarl",
    "LLMAgent": "llm_agent", "LLMAgentConfig": "llm_agent",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'maxent.agents' has no attribute {name!r}")
    value = getattr(import_module(f"maxent.agents.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
