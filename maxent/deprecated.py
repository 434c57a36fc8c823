"""Old import paths, kept for one release after a module moved: importing one warns with a
``DeprecationWarning`` that names the new path, and gives the new module itself (one set of
globals, no copy that drifts). Nothing is left at the old places; this table is the whole record.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from importlib import import_module

REMOVED_IN = "0.3"

# old module -> its home now
MOVED = {
    **{f"maxent.{name}": f"maxent.entropy.{name}"
       for name in ("temperature", "soft", "token", "semantic", "law")},
    **{f"maxent.{name}": f"maxent.training.{name}"
       for name in ("agent", "checkpoint", "config", "logging", "runlock", "replay", "vector",
                    "fastpath", "denormals", "optim")},
    **{f"maxent.{name}": f"maxent.llm.{name}" for name in ("vllm_sampler", "cpu_memory", "steering")},
    "maxent.lm": "maxent.llm",
    "maxent.commands": "maxent.cli",
    **{f"maxent.commands.{name}": f"maxent.cli.{name}"
       for name in ("algorithms", "export", "robustness", "sweep")},
    "maxent.robustness": "maxent.cli.robustness",
    "maxent.agents.lm": "maxent.llm",
    "maxent.agents.channels": "maxent.channels",
}


class _MovedModuleLoader(importlib.abc.Loader):
    def __init__(self, new: str):
        self.new = new

    def create_module(self, spec):
        warnings.warn(f"{spec.name} moved to {self.new}; import it from there ({spec.name} is "
                      f"removed in maxent {REMOVED_IN})", DeprecationWarning, stacklevel=2)
        return import_module(self.new)

    def exec_module(self, module):
        pass  # the new module ran when it was first imported


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _MovedModuleLoader(new),
                                              is_package=new in ("maxent.cli", "maxent.llm"))


def install() -> None:
    """Let the old paths import (called once, by ``maxent/__init__.py``)."""
    if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MovedModuleFinder())
