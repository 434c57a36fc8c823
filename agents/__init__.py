"""Algorithms built on the maxent layer, each behind the interface of :mod:`maxent.training.agent`.

Names are imported lazily (PEP 562), so ``from maxent.agents import SAC`` does not pull in
transformers, scipy or scikit-learn for agents you do not use. The names are every agent and config
class of the one algorithm table, :mod:`maxent.agents.registry`.
"""

from importlib import import_module

# Registers the maxent/... env ids (entry points are strings: no environment module is imported),
# so that every agent can be given one.
import maxent.envs  # noqa: F401
from maxent.agents.registry import ALGORITHMS

# Class name -> "module:Class" of its module, from the table (agents and configs alike).
_EXPORTS = {path.rsplit(":", 1)[1]: path.split(":")[0]
            for algorithm in ALGORITHMS.values() for path in (algorithm.agent, algorithm.config)}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'maxent.agents' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
