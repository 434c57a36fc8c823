"""Environments built on the maxent layer, registered under ``maxent/...`` ids on import.

Entry points are strings, so importing ``maxent.envs`` stays cheap: an environment's module (and
what it needs, e.g. scikit-learn or MuJoCo) is imported only when that id is made.
"""

import gymnasium

# id -> (entry point, native vectorized entry point or None)
_ENVIRONMENTS = {
    "maxent/ConfoundedCausalBandit-v0": ("maxent.envs.causal:make_smoking", None),
    "maxent/LSDBandit-v0": ("maxent.envs.lsd:LSDBandit", "maxent.envs.lsd:LSDBanditVector"),
    "maxent/RechargingBandit-v0": ("maxent.envs.lsd:make_recharging",
                                   "maxent.envs.lsd:make_recharging_vector"),
    "maxent/HomeostaticBandit-v0": ("maxent.envs.homeostatic:HomeostaticBandit",
                                    "maxent.envs.homeostatic:HomeostaticBanditVector"),
    "maxent/ConceptShiftDigits-v0": ("maxent.envs.concept_shift:ConceptShiftClassification",
                                     "maxent.envs.concept_shift:ConceptShiftClassificationVector"),
    "maxent/MeasurementAcquisition-v0": ("maxent.envs.subsampling:MeasurementAcquisition", None),
    "maxent/TextArithmetic-v0": ("maxent.envs.text:make_arithmetic", None),
    "maxent/TextCountdown-v0": ("maxent.envs.text:make_countdown", None),
    "maxent/TextSequence-v0": ("maxent.envs.text:make_sequence", None),
    "maxent/TextBandit-v0": ("maxent.envs.text_bandit:TextBandit",
                             "maxent.envs.text_bandit:TextBanditVector"),
    "maxent/TextBanditChat-v0": ("maxent.envs.text_wrappers:TextBanditChat", None),
    "maxent/TextRechargingBandit-v0": ("maxent.envs.text_wrappers:make_text_recharging", None),
    "maxent/ToolArithmetic-v0": ("maxent.envs.tool_env:ToolArithmetic", None),
}

for _id, (_entry, _vector_entry) in _ENVIRONMENTS.items():
    if _id not in gymnasium.registry:
        gymnasium.register(id=_id, entry_point=_entry, vector_entry_point=_vector_entry)

# Domain-randomised twins of the MuJoCo tasks, one id per named uncertainty set
# ("maxent/DomainRandomized-hopper-2d-v0"...), so that a DR run reloads from its saved id.
from maxent.envs.uncertainty import register_domain_randomized  # noqa: E402

register_domain_randomized()
