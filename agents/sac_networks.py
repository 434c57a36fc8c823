"""Network pieces of the SAC family (agents/sac_family.py): Batch Renormalization (Ioffe 2017,
used by CrossQ, Bhatt et al. ICLR 2024), SimBa's running observation normalisation and pre-LN
residual blocks (Lee et al. ICLR 2025), DroQ's dropout + layer-norm critics (Hiraoka et al. ICLR
2022), and stacked critics with one or several (TQC's quantile) outputs.

Critics are stacked like SAC's: ``n`` networks as ``(n, fan_in, fan_out)`` weights, one batched
matmul per layer for all of them. Every random draw (the keys of the dropout masks) comes from a
generator the agent owns and checkpoints, so a resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from maxent.training.counter_random import draw_key, keep_mask
from maxent.training.fastpath import full_precision_head

__all__ = ["ARCHITECTURES", "NORMS", "BatchRenorm", "FamilyActor", "FamilyCritics", "RunningObsNorm",
           "set_norm_training"]

NORMS = ("none", "layer", "batchrenorm")
ARCHITECTURES = ("mlp", "simba")


class BatchRenorm(nn.Module):
    """Batch Renormalization over the batch dim (-2) of ``(..., batch, features)`` inputs, with
    statistics of shape ``shape`` (e.g. ``(n_critics, 1, width)``: one set per stacked critic).

    Training: normalise with the batch's mean and (biased) variance; after ``warmup_steps``
    updates, correct towards the running statistics by ``r`` (clipped to [1/r_max, r_max]) and
    ``d`` (clipped to [-d_max, d_max]), both without gradient; the running statistics move by
    ``momentum``. Eval: the running statistics. Defaults are CrossQ's (momentum 0.01, eps 1e-3,
    warm-up 100k updates, r_max 3, d_max 5).
    """

    def __init__(self, shape: tuple[int, ...], momentum: float = 0.01, eps: float = 1e-3,
                 warmup_steps: int = 100_000, r_max: float = 3.0, d_max: float = 5.0):
        super().__init__()
        self.momentum, self.eps, self.warmup_steps = momentum, eps, warmup_steps
        self.r_max, self.d_max = r_max, d_max
        self.weight = nn.Parameter(torch.ones(shape))
        self.bias = nn.Parameter(torch.zeros(shape))
        self.register_buffer("running_mean", torch.zeros(shape))
        self.register_buffer("running_var", torch.ones(shape))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.training = False  # acting reads the running statistics; the update switches it on

    def train(self, mode: bool = True) -> BatchRenorm:
        """Ignored: a ``model.train()``/``eval()`` around evaluation must not turn batch statistics
        on for acting; only :func:`set_norm_training` switches them."""
        return self

    def forward(self, x: torch.Tensor, weight: torch.Tensor | None = None,
                bias: torch.Tensor | None = None, batch_stats: bool | None = None) -> torch.Tensor:
        """Normalise ``x``; ``batch_stats`` (default: :attr:`training`) picks batch statistics
        (and updates the running ones in place) over the running statistics. Computes in
        float32 whatever ``x``'s dtype (bf16 under autocast): bf16 batch moments would make the
        running statistics drift."""
        x = x.float()
        weight = self.weight if weight is None else weight
        bias = self.bias if bias is None else bias
        if not (self.training if batch_stats is None else batch_stats):
            normed = (x - self.running_mean) * torch.rsqrt(self.running_var + self.eps)
            return normed * weight + bias
        mean = x.mean(dim=-2, keepdim=True)
        var = x.var(dim=-2, unbiased=False, keepdim=True)
        std = torch.sqrt(var + self.eps)
        normed = (x - mean) / std
        # The warm-up test is a tensor select, not a Python branch on the step count, so that a
        # compiled update is one graph whatever the count (the unselected side adds exact zeros).
        running_std = torch.sqrt(self.running_var + self.eps)
        r = (std.detach() / running_std).clamp(1 / self.r_max, self.r_max)
        d = ((mean.detach() - self.running_mean) / running_std).clamp(-self.d_max, self.d_max)
        normed = torch.where(self.steps >= self.warmup_steps, normed * r + d, normed)
        with torch.no_grad():
            self.running_mean.lerp_(mean.detach().float(), self.momentum)
            self.running_var.lerp_(var.detach().float(), self.momentum)
            self.steps += 1
        return normed * weight + bias


class RunningObsNorm(nn.Module):
    """SimBa's running-statistics observation normalisation: ``(obs - mean) / sqrt(var + eps)``
    with mean and variance of every observation seen so far (Chan et al.'s parallel update), kept
    as buffers so checkpoints hold them. Updated only by :meth:`observe` (env steps), never by
    the update's forward passes."""

    def __init__(self, obs_dim: int, eps: float = 1e-8):
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(obs_dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(obs_dim, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def observe(self, obs: torch.Tensor) -> None:
        obs = obs.reshape(-1, self.mean.shape[0]).double()
        n = obs.shape[0]
        batch_mean, batch_var = obs.mean(0), obs.var(0, unbiased=False)
        total = self.count + n
        delta = batch_mean - self.mean
        m2 = self.var * self.count + batch_var * n + delta.square() * self.count * n / total
        self.mean += delta * n / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return ((obs - self.mean.to(obs.dtype)) * torch.rsqrt(self.var.to(obs.dtype) + self.eps))


def set_norm_training(module: nn.Module, mode: bool) -> None:
    """Switch only the BatchRenorm layers of ``module`` (dropout keeps its own mode): CrossQ's
    updates choose per forward pass whether batch statistics are used and updated."""
    for m in module.modules():
        if isinstance(m, BatchRenorm):
            m.training = mode


def _uniform_(tensor: torch.Tensor, fan_in: int) -> None:
    bound = 1 / math.sqrt(fan_in)
    tensor.uniform_(-bound, bound)


class FamilyCritics(nn.Module):
    """``n`` stacked Q-networks of one of the family's shapes; returns ``(n, batch)`` or, with
    ``n_outputs > 1`` (TQC's quantiles), ``(n, batch, n_outputs)``.

    ``architecture="mlp"``: per hidden layer ``[BatchRenorm] Linear [Dropout] [LayerNorm] ReLU``
    (CrossQ puts a BatchRenorm before every linear layer, the head's included; DroQ puts dropout
    then layer norm after each hidden linear layer). ``"simba"``: a linear embedding, one pre-LN
    residual block ``x + W2 relu(W1 LN(x))`` (inner width 4x) per entry of ``hidden``, a final
    LN, then the head. ``obs_norm`` (a shared :class:`RunningObsNorm`) normalises observations.
    ``generator`` draws the dropout masks.
    """

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...], n: int, *,
                 n_outputs: int = 1, norm: str = "none", dropout: float = 0.0,
                 architecture: str = "mlp", obs_norm: RunningObsNorm | None = None,
                 renorm_warmup_steps: int = 100_000, generator: torch.Generator | None = None):
        super().__init__()
        self.n, self.n_outputs, self.norm, self.dropout = n, n_outputs, norm, dropout
        self.architecture = architecture
        self.obs_norm = obs_norm
        self.generator = generator
        fan_in = obs_dim + action_dim
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        self.norms = nn.ModuleList()                 # BatchRenorm before each linear (CrossQ)
        self.ln_weights, self.ln_biases = nn.ParameterList(), nn.ParameterList()

        def linear(i: int, o: int) -> None:
            w, b = torch.empty(n, i, o), torch.empty(n, 1, o)
            with torch.no_grad():
                _uniform_(w, i)
                _uniform_(b, i)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))

        def layer_norm(width: int) -> None:
            self.ln_weights.append(nn.Parameter(torch.ones(n, 1, width)))
            self.ln_biases.append(nn.Parameter(torch.zeros(n, 1, width)))

        if architecture == "mlp":
            sizes = [fan_in, *hidden]
            for i in range(len(hidden)):
                if norm == "batchrenorm":
                    self.norms.append(BatchRenorm((n, 1, sizes[i]), warmup_steps=renorm_warmup_steps))
                linear(sizes[i], sizes[i + 1])
                if norm == "layer":
                    layer_norm(sizes[i + 1])
            if norm == "batchrenorm":
                self.norms.append(BatchRenorm((n, 1, sizes[-1]), warmup_steps=renorm_warmup_steps))
        else:
            width = hidden[0]
            linear(fan_in, width)                    # embedding
            for _ in hidden:
                layer_norm(width)
                linear(width, 4 * width)
                linear(4 * width, width)
            layer_norm(width)                        # SimBa's final layer norm
        last = hidden[-1] if architecture == "mlp" else hidden[0]
        linear(last, n_outputs)                      # head

    def forward(self, obs: torch.Tensor, action: torch.Tensor, detach_params: bool = False,
                batch_stats: bool | None = None, masks: torch.Tensor | None = None) -> torch.Tensor:
        """Q-values of ``(obs, action)``. ``batch_stats`` is passed to the BatchRenorm layers;
        ``masks`` (from :meth:`draw_masks`) holds the keys of this pass's dropout masks."""
        p = (lambda t: t.detach()) if detach_params else (lambda t: t)  # noqa: E731
        if self.obs_norm is not None:
            obs = self.obs_norm(obs)
        x = torch.cat([obs, action], dim=-1)
        h = x.unsqueeze(0).expand(self.n, *x.shape)
        weights, biases = list(self.weights), list(self.biases)
        lnw, lnb = list(self.ln_weights), list(self.ln_biases)
        if self.architecture == "mlp":
            for i in range(len(weights) - 1):
                if self.norms:
                    bn = self.norms[i]
                    h = bn(h, p(bn.weight), p(bn.bias), batch_stats)
                h = torch.baddbmm(p(biases[i]), h, p(weights[i]))
                h = self._dropout(h, None if masks is None else masks[i])
                if lnw:
                    h = F.layer_norm(h, h.shape[-1:]) * p(lnw[i]) + p(lnb[i])
                h = h.relu()
            if self.norms:
                bn = self.norms[-1]
                h = bn(h, p(bn.weight), p(bn.bias), batch_stats)
        else:
            h = torch.baddbmm(p(biases[0]), h, p(weights[0]))
            for k in range(len(lnw) - 1):
                inner = F.layer_norm(h, h.shape[-1:]) * p(lnw[k]) + p(lnb[k])
                inner = torch.baddbmm(p(biases[1 + 2 * k]), inner, p(weights[1 + 2 * k])).relu()
                h = h + torch.baddbmm(p(biases[2 + 2 * k]), inner, p(weights[2 + 2 * k]))
            h = F.layer_norm(h, h.shape[-1:]) * p(lnw[-1]) + p(lnb[-1])
        with full_precision_head(h) as h:                         # Q / quantile outputs
            if self.n_outputs == 1:
                # A weighted sum, not a width-1 matmul: batched GEMV calls cost several times
                # the multiply-and-sum they do (as in SAC's StackedCritics).
                return (h * p(weights[-1]).transpose(-1, -2)).sum(-1) + p(biases[-1]).squeeze(-1)
            return torch.baddbmm(p(biases[-1]), h, p(weights[-1]))  # (n, batch, n_outputs)

    def draw_masks(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """The keys of one training pass's dropout masks, one row per hidden layer, as
        :meth:`forward` would draw them (``None`` without dropout): drawn outside a compiled
        update, they come from the same generator stream in the same order. Each mask is a
        counter-based hash of its key (:mod:`maxent.training.counter_random`), not one generator
        draw per element, which cost as much as the update. ``batch`` is accepted for the
        callers' symmetry with the pass; a key covers any batch."""
        if not (self.training and self.dropout > 0 and self.architecture == "mlp"):
            return None
        generator = self.generator if generator is None else generator
        return draw_key(generator, self.weights[0].device, len(self.weights) - 1)

    def _dropout(self, h: torch.Tensor, key: torch.Tensor | None) -> torch.Tensor:
        if not (self.training and self.dropout > 0):
            return h
        if key is None:
            key = draw_key(self.generator, h.device)[0]
        return h * keep_mask(h.shape, key, self.dropout) / (1.0 - self.dropout)


class FamilyActor(nn.Module):
    """Tanh-Gaussian policy head (mean, clamped log-std) on an MLP (with CrossQ's BatchRenorm
    before every linear layer and after the last hidden one when ``norm="batchrenorm"``) or on
    SimBa's residual trunk (embedding, pre-LN residual blocks, final LN), with optional shared
    observation normalisation. Same interface as SAC's ``Actor``."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...], log_std_min: float,
                 log_std_max: float, *, norm: str = "none", architecture: str = "mlp",
                 obs_norm: RunningObsNorm | None = None, renorm_warmup_steps: int = 100_000):
        super().__init__()
        self.action_dim, self.log_std_min, self.log_std_max = action_dim, log_std_min, log_std_max
        self.obs_norm = obs_norm
        layers: list[nn.Module] = []
        if architecture == "mlp":
            sizes = [obs_dim, *hidden]
            for i in range(len(hidden)):
                if norm == "batchrenorm":
                    layers.append(BatchRenorm((1, sizes[i]), warmup_steps=renorm_warmup_steps))
                layers += [nn.Linear(sizes[i], sizes[i + 1]), nn.ReLU()]
            if norm == "batchrenorm":
                layers.append(BatchRenorm((1, sizes[-1]), warmup_steps=renorm_warmup_steps))
            width = sizes[-1]
        else:
            width = hidden[0]
            layers.append(nn.Linear(obs_dim, width))
            layers += [_ResidualBlock(width) for _ in hidden]
            layers.append(nn.LayerNorm(width))
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(width, 2 * action_dim)

    def forward(self, obs: torch.Tensor, batch_stats: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, log_std)``; ``batch_stats`` is passed to the BatchRenorm layers."""
        if self.obs_norm is not None:
            obs = self.obs_norm(obs)
        h = obs
        for layer in self.trunk:
            h = layer(h, batch_stats=batch_stats) if isinstance(layer, BatchRenorm) else layer(h)
        with full_precision_head(h) as h:
            mean, log_std = self.head(h).split(self.action_dim, dim=-1)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)


class _ResidualBlock(nn.Module):
    """SimBa's block: ``x + W2 relu(W1 LayerNorm(x))`` with inner width 4x."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.up, self.down = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(self.up(self.norm(x)).relu())
