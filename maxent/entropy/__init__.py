"""The entropy layer: what every maxent agent asks for its entropy, and the reason the library exists.

- :mod:`~maxent.entropy.estimates` — entropies and log-densities of squashed Gaussians, categoricals,
  mixtures and Monte-Carlo samples;
- :mod:`~maxent.entropy.temperature` — temperature (alpha) and entropy controllers behind one
  interface: fixed, dual descent towards a target entropy, schedules, QARL's curriculum;
- :mod:`~maxent.entropy.soft` — soft Bellman targets and SAC's critic, actor and alpha losses;
- :mod:`~maxent.entropy.token` — token-level policy losses for language models and the entropy
  interventions on them (Clip-Cov, KL-Cov, STEER);
- :mod:`~maxent.entropy.semantic` — semantic entropy and SEED-GRPO's advantage scaling;
- :mod:`~maxent.entropy.law` — the entropy law's covariance diagnostics.

All of it is pure functions of tensors and numbers, and small controller objects with
``state_dict()``; it imports nothing else of maxent.
"""

from maxent.entropy.estimates import (
    ads_entropy_score,
    categorical_entropy,
    categorical_log_prob,
    gaussian_entropy,
    gaussian_log_prob_from_noise,
    gaussian_mixture_entropy,
    monte_carlo_entropy,
    sample_squashed_gaussian,
    squashed_gaussian_entropy,
    squashed_gaussian_log_prob,
)

__all__ = ["ads_entropy_score", "categorical_entropy", "categorical_log_prob", "gaussian_entropy",
           "gaussian_log_prob_from_noise", "gaussian_mixture_entropy", "monte_carlo_entropy",
           "sample_squashed_gaussian", "squashed_gaussian_entropy", "squashed_gaussian_log_prob"]
