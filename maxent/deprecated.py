"""Old import paths kept for one release after a module moved: the old name becomes an alias of the
new module and importing it warns once, naming the new path.

    # agents/lm.py
    from maxent.deprecated import alias_module
    alias_module(__name__, "maxent.lm", removed_in="0.3")
"""

from __future__ import annotations

import sys
import warnings
from importlib import import_module


def alias_module(old: str, new: str, removed_in: str) -> None:
    """Make module ``old`` the same object as module ``new`` and warn that ``old`` is deprecated."""
    warnings.warn(f"{old} moved to {new}; import it from there ({old} is removed in maxent "
                  f"{removed_in})", DeprecationWarning, stacklevel=3)
    # The import system returns sys.modules[old] after running this module, so the caller gets
    # the new module itself: one set of globals, no copies that drift.
    sys.modules[old] = import_module(new)
