"""Log-densities and entropy estimates for maximum-entropy policies: the tanh-squashed Gaussian
of SAC (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications", App. C) and
categorical policies, from small action spaces up to LLM vocabularies.

The sampling and log-prob functions run every gradient step, so they avoid host syncs and
spend as few tensor ops as they can; constants are folded into one Python float per call.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "categorical_entropy",
    "categorical_log_prob",
    "gaussian_entropy",
    "gaussian_log_prob_from_noise",
    "monte_carlo_entropy",
    "sample_squashed_gaussian",
    "squashed_gaussian_entropy",
    "squashed_gaussian_log_prob",
]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)
# Per-dimension constant of log N(u) minus the tanh correction: 0.5 log(2 pi) + 2 log 2.
_SQUASH_CONST = _HALF_LOG_2PI + 2.0 * _LOG_2
# Per-dimension constant of the Gaussian entropy: 0.5 (1 + log(2 pi)).
_GAUSS_ENT_CONST = 0.5 + _HALF_LOG_2PI


def _tanh_half_log_det(u: Tensor) -> Tensor:
    """u + softplus(-2u); the tanh correction is log(1 - tanh(u)^2) = 2 (log 2 - this)."""
    return u + F.softplus(-2.0 * u)


def _squashed_log_prob(u: Tensor, noise: Tensor | None, log_std: Tensor) -> Tensor:
    """Sum over the last dim of log N(u) - log(1 - tanh(u)^2), given the standard-normal noise."""
    # log N(u) = -0.5 noise^2 - log_std - 0.5 log(2 pi); minus 2 (log 2 - u - softplus(-2u)).
    # Constants leave the per-element work and are subtracted once after the sum.
    per_dim = 2.0 * _tanh_half_log_det(u) - log_std
    if noise is not None:  # None means noise = 0 (the deterministic action)
        per_dim = torch.addcmul(per_dim, noise, noise, value=-0.5)
    return per_dim.sum(-1) - per_dim.shape[-1] * _SQUASH_CONST


def gaussian_log_prob_from_noise(noise: Tensor, log_std: Tensor) -> Tensor:
    """Log-density of u = mean + exp(log_std) * noise under the diagonal Gaussian it came from.

    log N(u; mean, sigma) = sum_i (-0.5 noise_i^2 - log_std_i - 0.5 log(2 pi)), summed over the
    last dim, where noise = (u - mean) / sigma is the standard-normal draw. Working from the noise
    skips the subtraction and division that recover it from u.

    Args:
        noise: standard-normal draws, shape (..., dim).
        log_std: log standard deviations, broadcastable to ``noise``.

    Returns:
        Log-density, shape ``noise.shape[:-1]`` (after broadcasting with ``log_std``).
    """
    per_dim = torch.addcmul(-log_std, noise, noise, value=-0.5)
    return per_dim.sum(-1) - per_dim.shape[-1] * _HALF_LOG_2PI


def squashed_gaussian_log_prob(mean: Tensor, log_std: Tensor, pre_tanh: Tensor) -> Tensor:
    """Log-density of a = tanh(u), u ~ N(mean, diag(exp(log_std))^2), at the pre-tanh point u.

    SAC paper, Eq. 26 (Appendix C): log pi(a|s) = log N(u) - sum_i log(1 - tanh(u_i)^2), with the
    correction written stably as log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), which stays
    finite for any |u| (the naive log(1 - tanh(u)^2) is -inf once tanh(u) rounds to +-1, about
    |u| > 9 in float32). Take u, not a: atanh(a) loses all precision near the bounds.

    Args:
        mean: Gaussian means, shape (..., dim).
        log_std: log standard deviations, broadcastable to ``mean``.
        pre_tanh: the pre-tanh point u, shape of ``mean``.

    Returns:
        Log-density summed over the last dim, shape ``mean.shape[:-1]``.
    """
    z = (pre_tanh - mean) * torch.exp(-log_std)
    return _squashed_log_prob(pre_tanh, z, log_std)


def sample_squashed_gaussian(
    mean: Tensor,
    log_std: Tensor,
    *,
    deterministic: bool = False,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Reparameterised sample a = tanh(mean + exp(log_std) * eps), eps ~ N(0, I), and log pi(a).

    SAC paper, Eq. 11 and Appendix C. The log-density is computed from eps directly,
    log pi(a) = sum_i (-0.5 eps_i^2 - log_std_i - 0.5 log(2 pi)
                       - 2 (log 2 - u_i - softplus(-2 u_i))),
    so gradients reach ``mean`` and ``log_std`` exactly as through
    ``Normal(mean, std).rsample()`` followed by ``log_prob`` (there (u - mean) / std is eps
    identically), with fewer ops.

    Args:
        mean: Gaussian means, shape (..., dim).
        log_std: log standard deviations, broadcastable to ``mean`` (clamp them in the policy).
        deterministic: if True, no noise: a = tanh(mean), log-prob evaluated at u = mean.
        generator: optional ``torch.Generator`` on ``mean``'s device for reproducible draws.
        noise: pre-drawn standard-normal eps of ``mean``'s shape, used instead of drawing (lets a
            compiled caller keep the random draw outside the compiled graph).

    Returns:
        ``(action, log_prob)``: action in [-1, 1] with ``mean``'s shape (float32 tanh rounds to
        exactly +-1 for |u| > ~9; the log-prob is still finite), log_prob of shape
        ``mean.shape[:-1]``.
    """
    if deterministic:
        return torch.tanh(mean), _squashed_log_prob(mean, None, log_std)
    eps = noise if noise is not None else torch.randn(
        mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    u = torch.addcmul(mean, torch.exp(log_std), eps)
    return torch.tanh(u), _squashed_log_prob(u, eps, log_std)


def gaussian_entropy(log_std: Tensor) -> Tensor:
    """Entropy of a diagonal Gaussian: H = sum_i (0.5 + 0.5 log(2 pi) + log_std_i).

    Args:
        log_std: log standard deviations, shape (..., dim).

    Returns:
        Entropy in nats, shape ``log_std.shape[:-1]``.
    """
    return log_std.sum(-1) + log_std.shape[-1] * _GAUSS_ENT_CONST


def _check_chunk_size(chunk_size) -> None:
    if chunk_size is not None and (
            isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0):
        raise ValueError(
            f"chunk_size must be a positive int (rows per chunk) or None, got {chunk_size!r}"
        )


def _shifted(logits: Tensor, dtype: torch.dtype, row_max: Tensor | None = None):
    """s = z - max(z) in ``dtype`` (a fresh tensor), masked (-inf) logits clamped to the dtype's
    lowest finite value first; returns ``(s, row_max, argmax)`` (argmax only when computed)."""
    if logits.dtype == dtype:
        z = logits.clamp(min=torch.finfo(dtype).min)
    else:
        z = logits.to(dtype).clamp_(min=torch.finfo(dtype).min)
    idx = None
    if row_max is None:
        row_max, idx = z.max(-1, keepdim=True)
    return z.sub_(row_max), row_max, idx


def _entropy_forward_rows(logits: Tensor, dtype: torch.dtype):
    """H, row max m, L = log1p(R) and T = H - L for each row of ``logits`` (see
    :func:`categorical_entropy` for the formulation)."""
    s, m, idx = _shifted(logits, dtype)
    e = torch.exp(s)
    e.scatter_(-1, idx, 0.0)  # R sums the other classes only: 1 + R would round R away
    r = e.sum(-1, keepdim=True)
    big_l = torch.log1p(r)
    t = torch.linalg.vecdot(e, s, dim=-1).unsqueeze(-1).neg_().div_(1.0 + r)
    return big_l + t, m, big_l, t


class _CategoricalEntropy(torch.autograd.Function):
    """Entropy with a hand-written backward, dH/dz_j = -p_j (s_j + T): the same positive
    terms as the forward, and only the logits (no probabilities) kept for the backward pass."""

    @staticmethod
    def forward(logits, chunk_size, dtype):
        rows = logits.reshape(-1, logits.shape[-1])
        parts = [_entropy_forward_rows(c, dtype)
                 for c in (rows.split(chunk_size) if chunk_size else (rows,))]
        h, m, big_l, t = (torch.cat(p) for p in zip(*parts))
        return h.reshape(logits.shape[:-1]), m, big_l, t

    @staticmethod
    def setup_context(ctx, inputs, output):
        logits, chunk_size, dtype = inputs
        _, m, big_l, t = output
        ctx.save_for_backward(logits, m, big_l, t)
        ctx.chunk_size, ctx.dtype = chunk_size, dtype
        ctx.mark_non_differentiable(m, big_l, t)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_h, *_):
        logits, m, big_l, t = ctx.saved_tensors
        rows = logits.reshape(-1, logits.shape[-1])
        g = grad_h.reshape(-1, 1).to(ctx.dtype)
        out = torch.empty_like(rows)
        step = ctx.chunk_size or max(rows.shape[0], 1)
        for lo in range(0, rows.shape[0], step):
            sl = slice(lo, lo + step)
            s, _, _ = _shifted(rows[sl], ctx.dtype, m[sl])
            p = (s - big_l[sl]).exp_()
            # -g p_j (log p_j + H) with log p_j + H = s_j + T: no cancellation near collapse.
            out[sl] = s.add_(t[sl]).mul_(p).mul_(-g[sl])
        return out.reshape(logits.shape), None, None


def categorical_entropy(logits: Tensor, *, chunk_size: int | None = None) -> Tensor:
    """Entropy of the categorical distribution softmax(logits) over the last dim.

    Formulation. Shift by the row maximum m = z_k: s_j = z_j - m <= 0, s_k = 0, and let
    R = sum_{j != k} exp(s_j) (the argmax left out), so Z = 1 + R, log Z = log1p(R) =: L and
    log p_j = s_j - L. Then

        H = -sum_j p_j log p_j = L + T,  T = sum_j p_j |s_j| = sum_{j != k} e^{s_j} |s_j| / (1 + R),

    a sum of non-negative terms, so nothing cancels. The textbook logsumexp(z) - sum_j p_j z_j
    subtracts two numbers of size |m| whose difference near collapse (H << 1) is below float32's
    resolution of |m|; here R never passes through 1 + R before its log, and terms with
    underflowed e^{s_j} (p_j log p_j -> 0) and masked logits (clamped to the lowest finite
    value, so 0 * finite) contribute exactly 0. Each term carries a relative error of at most
    (|s_j| + a few) eps (exp amplifies the rounding of s_j; below s_j ~ -104 it underflows to 0),
    so H is accurate to a relative (n + ~110) eps whatever its size.

    The backward pass is dH/dz_j = -p_j (log p_j + H) = -p_j (s_j + T), again free of the
    cancellation that autograd of the textbook form suffers (for the argmax, p_k - p_k (1 + T)).
    It recomputes p from the logits, chunk by chunk, so autograd keeps no (..., n_classes)
    float32 probabilities; it is differentiable once (no double backward).

    Args:
        logits: unnormalised log-probabilities, shape (..., n_classes); any float dtype.
            Half precision (bf16/fp16) is upcast to float32, so the result is float32.
        chunk_size: if given, the flattened leading dims are processed this many rows at a time,
            upcasting one chunk at a time (forward and backward). This bounds the float32
            temporaries to a few ``chunk_size * n_classes`` (for LLM vocabularies).

    Returns:
        Entropy in nats, shape ``logits.shape[:-1]``, float32 (float64 for float64 input).
        A row whose logits are all -inf counts as uniform (log n_classes).
    """
    if logits.ndim == 0:
        raise ValueError(
            "categorical_entropy needs logits with a class dimension (shape (..., n_classes)), "
            "got a 0-dim tensor; add a last dimension"
        )
    if logits.shape[-1] == 0:
        raise ValueError(
            "categorical_entropy needs at least one class, got logits of shape "
            f"{tuple(logits.shape)}; the last dimension indexes the classes"
        )
    if not logits.is_floating_point():
        raise ValueError(f"categorical_entropy needs float logits, got {logits.dtype}; "
                         "cast them with .float()")
    _check_chunk_size(chunk_size)
    dtype = torch.promote_types(logits.dtype, torch.float32)
    return _CategoricalEntropy.apply(logits, chunk_size, dtype)[0]


def _log_prob_forward_rows(logits: Tensor, index: Tensor, dtype: torch.dtype):
    """log p_t, row max m, L = log1p(R), R and the argmax for each row (see
    :func:`categorical_log_prob`)."""
    z = logits.to(dtype)
    m, idx = z.max(-1, keepdim=True)
    s = z - m
    s_t = s.gather(-1, index)
    e = s.exp_()  # s is not needed past s_t
    e.scatter_(-1, idx, 0.0)
    r = e.sum(-1, keepdim=True)
    big_l = torch.log1p(r)
    return s_t - big_l, m, big_l, r, idx


class _CategoricalLogProb(torch.autograd.Function):
    """log softmax(z)_t with the backward d/dz_j = delta_jt - p_j, where the argmax's
    1 - p_k is taken as R / (1 + R) (autograd of log_softmax rounds it to 0 near collapse)."""

    @staticmethod
    def forward(logits, index, chunk_size, dtype):
        rows, idx_rows = logits.reshape(-1, logits.shape[-1]), index.reshape(-1, 1)
        if chunk_size:
            pairs = zip(rows.split(chunk_size), idx_rows.split(chunk_size))
        else:
            pairs = ((rows, idx_rows),)
        parts = [_log_prob_forward_rows(c, i, dtype) for c, i in pairs]
        lp, m, big_l, r, argmax = (torch.cat(p) for p in zip(*parts))
        return lp.reshape(index.shape), m, big_l, r, argmax

    @staticmethod
    def setup_context(ctx, inputs, output):
        logits, index, chunk_size, dtype = inputs
        _, m, big_l, r, argmax = output
        ctx.save_for_backward(logits, index, m, r, argmax)
        ctx.chunk_size, ctx.dtype = chunk_size, dtype
        ctx.mark_non_differentiable(m, big_l, r, argmax)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_lp, *_):
        logits, index, m, r, argmax = ctx.saved_tensors
        rows, t = logits.reshape(-1, logits.shape[-1]), index.reshape(-1, 1)
        g = grad_lp.reshape(-1, 1).to(ctx.dtype)
        out = torch.empty_like(rows)
        step = ctx.chunk_size or max(rows.shape[0], 1)
        for lo in range(0, rows.shape[0], step):
            sl = slice(lo, lo + step)
            p = (rows[sl].to(ctx.dtype) - m[sl]).exp_().div_(1.0 + r[sl])  # m + L would round
            # delta_jt - p_j: 1 - p_t at the target, R / (1 + R) exactly when it is the argmax.
            own = torch.where(t[sl] == argmax[sl], r[sl] / (1.0 + r[sl]),
                              1.0 - p.gather(-1, t[sl]))
            out[sl] = p.mul_(-g[sl]).scatter_(-1, t[sl], own * g[sl])
        return out.reshape(logits.shape), None, None, None


def categorical_log_prob(logits: Tensor, index: Tensor, *,
                         chunk_size: int | None = None) -> Tensor:
    """log softmax(logits)[..., index]: the log-probability of class ``index`` (a sampled token).

    Formulation, as in :func:`categorical_entropy`: with s_j = z_j - max z and
    R = sum_{j != argmax} e^{s_j}, log p_t = s_t - log1p(R), two non-positive terms, so nothing
    cancels. ``log_softmax(z).gather(t)`` computes the argmax's log-probability as
    -log(1 + R), which rounds to 0 once R < 2^-24 in float32 (every digit of a near-certain
    token's log p lost, though never more than ~1e-7 nats), and its backward 1 - p_t to 0. The
    backward here recomputes p chunk by chunk from the logits, so autograd keeps no
    (..., n_classes) tensor beyond the logits themselves; it is differentiable once.

    Args:
        logits: unnormalised log-probabilities, shape (..., n_classes); half precision is upcast
            to float32.
        index: integer class indices, shape ``logits.shape[:-1]``.
        chunk_size: rows (of the flattened leading dims) processed at a time, as in
            :func:`categorical_entropy`.

    Returns:
        Log-probabilities, shape ``index.shape``, float32 (float64 for float64 logits).
    """
    if logits.ndim == 0 or logits.shape[-1] == 0:
        raise ValueError("categorical_log_prob needs logits of shape (..., n_classes) with at "
                         f"least one class, got shape {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise ValueError(f"categorical_log_prob needs float logits, got {logits.dtype}; "
                         "cast them with .float()")
    if index.is_floating_point() or index.is_complex() or index.dtype == torch.bool:
        raise ValueError(f"index must hold integer class ids, got {index.dtype}; use .long()")
    if tuple(index.shape) != tuple(logits.shape[:-1]):
        raise ValueError(f"index must have shape logits.shape[:-1] = {tuple(logits.shape[:-1])}, "
                         f"got {tuple(index.shape)}")
    _check_chunk_size(chunk_size)
    dtype = torch.promote_types(logits.dtype, torch.float32)
    return _CategoricalLogProb.apply(logits, index.long(), chunk_size, dtype)[0]


def monte_carlo_entropy(log_probs: Tensor, dim: int = -1) -> Tensor:
    """Monte-Carlo entropy estimate H ~ -(1/N) sum_n log pi(a_n) from N samples a_n ~ pi.

    Args:
        log_probs: log-probabilities of samples drawn from the policy itself.
        dim: the sample dimension to average over.

    Returns:
        Entropy estimate with ``dim`` removed.
    """
    return -log_probs.mean(dim)


def squashed_gaussian_entropy(
    mean: Tensor,
    log_std: Tensor,
    *,
    n_samples: int = 16,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Monte-Carlo estimate of the entropy of a = tanh(u), u ~ N(mean, diag(exp(log_std))^2).

    There is no closed form. Since tanh is a bijection,
    H(a) = H(u) + E_u[sum_i log(1 - tanh(u_i)^2)] exactly; H(u) is the closed-form Gaussian
    entropy and only the tanh term is sampled:
    H ~ gaussian_entropy(log_std) + (1/N) sum_n sum_i 2 (log 2 - u_ni - softplus(-2 u_ni)).
    Same mean as -mean(log pi(a_n)), with its 0.5 eps^2 term replaced by the expectation: much
    lower variance when std is small or tanh saturates (trained policies), somewhat higher for
    std >~ 0.8 at |mean| < 1. Reparameterised: differentiable in ``mean`` and ``log_std``.

    Args:
        mean: Gaussian means, shape (..., dim).
        log_std: log standard deviations, broadcastable to ``mean``.
        n_samples: number of draws per distribution (>= 1).
        generator: optional ``torch.Generator`` for reproducible draws.

    Returns:
        Entropy estimate in nats, shape ``mean.shape[:-1]``.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
    eps = torch.randn(
        (n_samples, *mean.shape), generator=generator, device=mean.device, dtype=mean.dtype
    )
    u = torch.addcmul(mean, torch.exp(log_std), eps)  # (n_samples, ..., dim)
    # E[sum_i log(1 - tanh(u_i)^2)]; reduce first, then scale and shift the smaller tensor.
    half = _tanh_half_log_det(u).sum(-1).mean(0)
    return gaussian_entropy(log_std) + (2.0 * _LOG_2 * u.shape[-1] - 2.0 * half)


# --------------------------------------------------------------------------- Gaussian mixtures
# Entropy of the predictive distribution of a measurement under N posterior particles, the
# acquisition criterion of Active Diffusion Subsampling (Nolan et al., TMLR 2025).

__all__ += ["ads_entropy_score", "gaussian_mixture_entropy"]


def _pairwise_sq_dists(points: Tensor, sigma: float, name: str) -> Tensor:
    """||p_i - p_k||^2 over the last dim for points (..., N, d) -> (..., N, N), after checks."""
    if points.ndim < 2:
        raise ValueError(
            f"{name} needs points of shape (..., n_components, dim), got shape "
            f"{tuple(points.shape)}; add a trailing dim of size 1 for scalar measurements"
        )
    if points.shape[-2] < 1:
        raise ValueError(f"{name} needs at least one component (particle), got 0")
    if not (isinstance(sigma, (int, float)) and not isinstance(sigma, bool) and sigma > 0
            and math.isfinite(sigma)):
        raise ValueError(f"{name}: sigma must be a positive finite number, got {sigma!r}")
    diff = points.unsqueeze(-2) - points.unsqueeze(-3)  # (..., N, N, d)
    return diff.square().sum(-1)


def gaussian_mixture_entropy(means: Tensor, sigma: float, *, bound: str = "kl") -> Tensor:
    """Entropy of the equal-weight mixture p(y) = (1/N) sum_k N(y; mu_k, sigma^2 I_d), in nats,
    from pairwise distances (Kolchinsky & Tracey 2017, "Estimating Mixture Entropy with Pairwise
    Distances", Eqs. 9-10; the mixture has no closed-form entropy).

    H_D = d/2 log(2 pi e sigma^2) - (1/N) sum_i log( (1/N) sum_k exp(-D(p_i || p_k)) ), with
    ``bound="kl"``: D = ||mu_i - mu_k||^2 / (2 sigma^2), an upper bound on H;
    ``bound="bhattacharyya"``: D = ||mu_i - mu_k||^2 / (8 sigma^2), a lower bound on H.
    Both are exact when all means coincide (H = d/2 log(2 pi e sigma^2)) and when the components
    are far apart (that plus log N). The mixture of N posterior particles with measurement noise
    sigma is the predictive distribution that Active Diffusion Subsampling scores; see
    :func:`ads_entropy_score` for the paper's own form.

    Args:
        means: component means mu_k, shape (..., N, d).
        sigma: component standard deviation (> 0), shared by all components and dims.
        bound: ``"kl"`` (upper bound, default) or ``"bhattacharyya"`` (lower bound).

    Returns:
        Entropy estimate, shape ``means.shape[:-2]``.
    """
    scale = {"kl": 2.0, "bhattacharyya": 8.0}.get(bound)
    if scale is None:
        raise ValueError(f"bound must be 'kl' or 'bhattacharyya', got {bound!r}")
    sq = _pairwise_sq_dists(means, sigma, "gaussian_mixture_entropy")
    n, d = means.shape[-2], means.shape[-1]
    log_mean = torch.logsumexp(sq * (-1.0 / (scale * sigma * sigma)), -1) - math.log(n)
    gauss = 0.5 * d * (1.0 + math.log(2.0 * math.pi * sigma * sigma))
    return gauss - log_mean.mean(-1)


def ads_entropy_score(particles: Tensor, sigma: float) -> Tensor:
    """The maximum-entropy acquisition score of Active Diffusion Subsampling (Nolan et al., TMLR
    2025), in the form of the authors' code (``select_pixel_entropy``):

    S = sum_i log sum_k exp( ||y_i - y_k||^2 / (2 sigma^2) ),

    where y_i is particle i's predicted measurement at one candidate location; the location of
    largest S is acquired. Note the sign: this is not the pairwise entropy estimate
    H_KL = const - (1/N) sum_i log (1/N) sum_k exp(-||y_i - y_k||^2 / (2 sigma^2)) of
    :func:`gaussian_mixture_entropy`, although both grow with the spread of the particles, are
    minimal (S = N log N) when they agree, and coincide to first order in ||.||^2 / sigma^2:
    S / N = log N + (1/N^2) sum_ik ||y_i - y_k||^2 / (2 sigma^2) + O(sigma^-4), so for large sigma
    both rank locations by the particles' variance. For small sigma S follows the largest
    pairwise distance while H_KL saturates at log N once the particles separate.

    Args:
        particles: predicted measurements, shape (..., N, d) (d = 1 for a pixel, the row width
            for a line); leading dims are candidate locations.
        sigma: the Gaussian kernel width (> 0), the assumed measurement noise.

    Returns:
        Score, shape ``particles.shape[:-2]``.
    """
    sq = _pairwise_sq_dists(particles, sigma, "ads_entropy_score")
    return torch.logsumexp(sq * (0.5 / (sigma * sigma)), -1).sum(-1)
