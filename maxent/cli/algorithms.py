"""The algorithm table as the command line reads it: :mod:`maxent.agents.registry` under its old
import path (``ALGORITHMS``, ``Algorithm``, ``find``, ``algorithm_for_kind``)."""

from maxent.agents.registry import ALGORITHMS, Algorithm, algorithm_for_kind, find

__all__ = ["ALGORITHMS", "Algorithm", "algorithm_for_kind", "find"]
