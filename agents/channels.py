"""Deprecated: exact discrete probability moved to the layer, :mod:`maxent.channels`."""

from maxent.deprecated import alias_module

alias_module(__name__, "maxent.channels", removed_in="0.3")
