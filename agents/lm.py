"""Deprecated: language-model loading and samplers moved to the layer, :mod:`maxent.lm`."""

from maxent.deprecated import alias_module

alias_module(__name__, "maxent.lm", removed_in="0.3")
