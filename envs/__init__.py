"""Environments built on the maxent layer, registered under ``maxent/...`` ids on import."""

import gymnasium

if "maxent/ConfoundedCausalBandit-v0" not in gymnasium.registry:
    gymnasium.register(
        id="maxent/ConfoundedCausalBandit-v0",
        entry_point="maxent.envs.causal:make_smoking",
    )
