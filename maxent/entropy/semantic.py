"""Semantic entropy of a group of sampled answers (Kuhn, Gal & Farquhar 2023) and SEED-GRPO's
uncertainty-aware advantage scaling (Chen, Chen, Wang & Yang 2025, "SEED-GRPO: Semantic Entropy
Enhanced GRPO for Uncertainty-Aware Policy Optimization", arXiv 2505.12346).

SEED-GRPO samples G answers per prompt q, clusters them by meaning (for verifiable tasks: the same
parsed final answer), measures SE(q) and scales the group-relative advantages by a decreasing
function of SE(q) / SE_max, SE_max = log G: prompts the model is sure about keep their learning
signal, prompts it is unsure about update more gently.

What could be confirmed of the paper here (arXiv 2505.12346v1; its method section only through
secondary summaries, its abstract directly): A_i = r_i - mean(r) (no std), p(C_k|q) =
sum_{o in C_k} pi_old(o|q), SE(q) by the Monte-Carlo estimator -(1/K) sum_k log p(C_k|q),
A^_i = A_i * f(alpha * SE(q) / SE_max(q)) with SE_max the maximal entropy (log G) and f "linear,
exponential or focal". The exact expressions of f and the paper's alpha could not be read;
``seed_scale`` uses the natural decreasing forms with f(0) = 1, plus a public reimplementation's
A / (1 + (alpha / log G) SE) as "inverse" (alpha ~ 0.042 there).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence

import torch
from torch import Tensor

__all__ = ["SEED_MODES", "SE_ESTIMATORS", "cluster_answers", "seed_advantages", "seed_scale",
           "semantic_entropy"]

SEED_MODES = ("linear", "exponential", "focal", "inverse")
SE_ESTIMATORS = ("plugin", "monte_carlo")


def cluster_answers(
    answers: Sequence[Hashable | None],
    equivalent: Callable[[Hashable, Hashable], bool] | None = None,
) -> list[int]:
    """Cluster id of each answer (ids 0, 1, ... in order of first appearance).

    Args:
        answers: the G answers of one prompt; ``None`` (unparsable) is its own singleton cluster
            every time (two failures to answer do not agree with each other).
        equivalent: ``equivalent(a, b) -> bool``, e.g. bidirectional entailment; each answer
            joins the first cluster whose first member is equivalent to it (Kuhn et al.'s
            greedy clustering). Default: equality of the (hashable) answers.

    Returns:
        list of G ints.
    """
    ids: list[int] = []
    n = 0
    if equivalent is None:
        seen: dict[Hashable, int] = {}
        for a in answers:
            if a is None:
                ids.append(n)
                n += 1
            else:
                if a not in seen:
                    seen[a] = n
                    n += 1
                ids.append(seen[a])
        return ids
    reps: list[tuple[Hashable, int]] = []
    for a in answers:
        if a is not None:
            for rep, cid in reps:
                if equivalent(rep, a):
                    ids.append(cid)
                    break
            else:
                reps.append((a, n))
                ids.append(n)
                n += 1
        else:
            ids.append(n)
            n += 1
    return ids


def _answer_log_weights(n: int, weights, log_weights: bool) -> list[float]:
    """Per-answer unnormalised log-weights (all 0 when ``weights`` is None), after checks."""
    if weights is None:
        return [0.0] * n
    w = torch.as_tensor(weights, dtype=torch.float64).flatten()
    if w.numel() != n:
        raise ValueError(f"weights must have one entry per answer ({n}), got {w.numel()}")
    if torch.isnan(w).any():
        raise ValueError(f"weights contain NaN: {w.tolist()}")
    if log_weights:  # sequence log-probs: kept in log space (products underflow)
        if not torch.isfinite(w).any():
            raise ValueError("log_weights are all -inf; at least one answer needs a probability")
        if (w == math.inf).any():
            raise ValueError(f"log_weights must be < +inf (log-probabilities), got {w.tolist()}")
        return w.tolist()
    if (w < 0).any() or not torch.isfinite(w).all():
        raise ValueError(f"weights must be finite and >= 0 (probabilities), got {w.tolist()}")
    if float(w.sum()) <= 0:
        raise ValueError("weights sum to 0; pass sequence probabilities (or log_weights=True)")
    return torch.log(w).tolist()


def _logsumexp(xs: list[float]) -> float:
    m = max(xs)
    if m == -math.inf:
        return m
    return m + math.log(math.fsum(math.exp(x - m) for x in xs))


def semantic_entropy(
    answers: Sequence[Hashable | None],
    weights: Sequence[float] | Tensor | None = None,
    *,
    equivalent: Callable[[Hashable, Hashable], bool] | None = None,
    log_weights: bool = False,
    estimator: str = "plugin",
) -> float:
    """Semantic entropy of one prompt's answers (Kuhn et al. 2023; SEED-GRPO Eq. for SE(q)).

    Answers are clustered by meaning (``cluster_answers``); p(C_k) = sum of the answers' weights
    in cluster k, renormalised over the group (SEED-GRPO: p(C_k|q) = sum_{o in C_k}
    pi_old(o|q)); with ``weights=None`` p(C_k) = |C_k| / G (frequencies). Then

    - ``"plugin"`` (default): SE = -sum_k p(C_k) log p(C_k), in [0, log G]: 0 for one cluster,
      log G when every answer differs.
    - ``"monte_carlo"``: SE ~ -(1/K) sum_k log p(C_k), the estimator SEED-GRPO's text writes
      (as summarised by secondary sources); equal to the plug-in value for uniform clusters,
      larger than log G possible for very uneven ones.

    Args:
        answers: the G parsed answers (hashable; ``None`` = unparsable, a singleton cluster each).
        weights: per-answer sequence probabilities (any positive scale), or log-probabilities
            with ``log_weights=True``; default: uniform.
        equivalent: optional pairwise equivalence; default: equal answers.
        log_weights: ``weights`` are log-probabilities (normalised with a softmax).
        estimator: ``"plugin"`` or ``"monte_carlo"``.

    Returns:
        SE in nats (a float).
    """
    if estimator not in SE_ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; valid names are "
                         f"{', '.join(map(repr, SE_ESTIMATORS))}")
    n = len(answers)
    if n == 0:
        raise ValueError("answers is empty; semantic entropy needs at least one answer")
    ids = cluster_answers(answers, equivalent)
    logw = _answer_log_weights(n, weights, log_weights)
    top_w = max(logw)  # shift first: rounding then scales with the spread, not with |log w|
    members: list[list[float]] = [[] for _ in range(max(ids) + 1)]
    for cid, lw in zip(ids, logw):
        members[cid].append(lw - top_w)
    # Cluster log-masses shifted by the largest (s_k <= 0, s_K = 0), clusters of zero mass
    # dropped; with R = sum_{k != K} e^{s_k}: log p(C_k) = s_k - log1p(R), so
    #   plug-in:     SE = log1p(R) + sum_{k != K} e^{s_k} (-s_k) / (1 + R)
    #   Monte Carlo: SE = log1p(R) + (1/K) sum_k (-s_k),
    # sums of non-negative terms: exact where a near-certain cluster (p = 1 - R, R below the
    # resolution of 1) would make -sum p log p lose the digits of its own term.
    lam = [v for v in map(_logsumexp, members) if v > -math.inf]
    top = max(range(len(lam)), key=lam.__getitem__)
    s = [v - lam[top] for v in lam]
    others = [sk for k, sk in enumerate(s) if k != top]
    r = math.fsum(math.exp(sk) for sk in others)
    if estimator == "plugin":
        return math.log1p(r) + math.fsum(math.exp(sk) * -sk for sk in others) / (1.0 + r)
    return math.log1p(r) + math.fsum(-sk for sk in s) / len(s)


def seed_scale(x: Tensor, mode: str = "linear", *, gamma: float = 2.0) -> Tensor:
    """SEED-GRPO's decreasing modulation f(x), x = alpha * SE(q) / log G >= 0, f(0) = 1:

    - ``"linear"``:       f(x) = max(0, 1 - x)
    - ``"exponential"``:  f(x) = exp(-x)
    - ``"focal"``:        f(x) = max(0, 1 - x) ** gamma      (focal-loss form, gamma = 2)
    - ``"inverse"``:      f(x) = 1 / (1 + x)                 (a public reimplementation's form)

    The paper names linear, exponential and focal; the exact expressions above are ours
    (the natural decreasing maps with f(0) = 1), see the module docstring.
    """
    if mode == "linear":
        return (1.0 - x).clamp(min=0.0)
    if mode == "exponential":
        return torch.exp(-x)
    if mode == "focal":
        return (1.0 - x).clamp(min=0.0) ** gamma
    if mode == "inverse":
        return 1.0 / (1.0 + x)
    raise ValueError(f"unknown SEED mode {mode!r}; valid names are {', '.join(map(repr, SEED_MODES))}")


def seed_advantages(
    rewards: Tensor,
    answers: Sequence[Sequence[Hashable | None]],
    *,
    alpha: float = 0.5,
    mode: str = "linear",
    scale_std: bool = True,
    weights: Tensor | None = None,
    log_weights: bool = False,
    equivalent: Callable[[Hashable, Hashable], bool] | None = None,
    estimator: str = "plugin",
    gamma: float = 2.0,
    eps: float = 1e-6,
) -> tuple[Tensor, Tensor]:
    """Group-relative advantages scaled by semantic entropy (SEED-GRPO):

        A_i = r_i - mean_g(r)          (divided by std_g(r) + eps when ``scale_std``; unbiased
                                        std, as verl/TRL; SEED-GRPO itself uses r_i - mean, i.e.
                                        ``scale_std=False``, Dr.GRPO style)
        A^_i = A_i * f(alpha * SE(q) / log G)

    f(0) = 1, so prompts whose G answers all agree (SE = 0) keep their advantages unchanged;
    the more the answers disagree, the smaller the update.

    Args:
        rewards: (P, G) rewards of G answers for each of P prompts.
        answers: P sequences of G parsed answers (``None`` = unparsable).
        alpha: sensitivity, >= 0; for "linear"/"focal" alpha <= 1 keeps f >= 0 on [0, log G]
            with the plug-in estimator. Default 0.5 (ours: halves the advantages of a prompt whose
            answers all differ, under "linear"; the paper's value could not be confirmed here).
        mode: one of ``SEED_MODES`` (see ``seed_scale``); default "linear".
        scale_std: divide by the group's std (GRPO) or not (Dr.GRPO / SEED-GRPO).
        weights: optional (P, G) sequence probabilities (or log-probs with ``log_weights``) for
            p(C_k); default: cluster frequencies.
        equivalent, estimator: passed to ``semantic_entropy``.
        gamma: exponent of the focal form.
        eps: added to the std.

    Returns:
        (advantages (P, G), semantic entropy per prompt (P,)), float tensors on ``rewards``'
        device, no gradient.
    """
    if mode not in SEED_MODES:
        raise ValueError(
            f"unknown SEED mode {mode!r}; valid names are {', '.join(map(repr, SEED_MODES))}")
    if not (math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha}")
    if not isinstance(rewards, Tensor) or rewards.ndim != 2:
        raise ValueError(f"rewards must be a (P, G) tensor, got {getattr(rewards, 'shape', rewards)}")
    P, G = rewards.shape
    if len(answers) != P or any(len(a) != G for a in answers):
        raise ValueError(f"answers must be {P} sequences of {G} answers each (one per reward), "
                         f"got lengths {[len(a) for a in answers]}")
    if weights is not None and tuple(torch.as_tensor(weights).shape) != (P, G):
        raise ValueError(f"weights must have shape ({P}, {G}), got "
                         f"{tuple(torch.as_tensor(weights).shape)}")
    r = rewards.detach().to(torch.promote_types(rewards.dtype, torch.float32))
    if torch.isnan(r).any():
        raise ValueError("rewards contain NaN")
    adv = r - r.mean(dim=1, keepdim=True)
    if scale_std and G > 1:
        adv = adv / (r.std(dim=1, keepdim=True) + eps)
    se = torch.tensor(
        [semantic_entropy(answers[p], None if weights is None else weights[p],
                          equivalent=equivalent, log_weights=log_weights, estimator=estimator)
         for p in range(P)], dtype=r.dtype, device=r.device)
    if G > 1:
        x = alpha * se / math.log(G)
        adv = adv * seed_scale(x, mode, gamma=gamma).unsqueeze(1)
    return adv, se
