"""Deprecated: the robustness harness runs agents, so it moved out of the layer to
:mod:`maxent.commands.robustness` (the command-line side)."""

from maxent.deprecated import alias_module

alias_module(__name__, "maxent.commands.robustness", removed_in="0.3")
