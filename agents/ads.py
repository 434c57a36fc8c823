"""Active Diffusion Subsampling (Nolan et al., TMLR 2025): a small denoising diffusion model of the
images, N posterior particles guided by the measurements taken so far, and the maximum-entropy
choice of where to measure next.

Reads top to bottom: config, the denoiser, the noise schedule and its training loss, guided
posterior sampling (DPS or replacement guidance), the acquisition rule, then the agent.

The acquisition scores location j by the entropy of the particles' predicted measurements there,
in the paper's form S_j = sum_i log sum_k exp(||y_i^j - y_k^j||^2 / 2 sigma^2)
(:func:`maxent.entropy.ads_entropy_score`), and measures argmax_j S_j over unmeasured j. The
baselines share the diffusion model (for reconstruction) and differ only in that rule: random
unmeasured locations, or a fixed order of decreasing pixel variance over the training set.

One difference from the paper: there, measurements are taken *during* a single reverse diffusion
(from the Tweedie estimates x0_hat at a few steps); here, every acquisition is one ``predict``
call that runs a full guided reverse diffusion from the current measurements, so the agent fits
the step-by-step environment interface and each decision uses finished posterior samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

import maxent.envs  # noqa: F401  (registers maxent/... ids, so load() can gym.make a saved id)
from maxent.training.agent import Agent, AgentConfig
from maxent.training.config import check_choice, check_range
from maxent.training.saved import Check, Generator, Module, Optimizer, Value
from maxent.entropy import ads_entropy_score, gaussian_mixture_entropy
from maxent.envs.subsampling import check_images

__all__ = ["ADS", "STRATEGIES", "ADSConfig", "Denoiser"]

STRATEGIES = ("ads", "gmm", "random", "data_variance")
DIFFUSION_LOSS = "train/diffusion_loss"


# --------------------------------------------------------------------------- config


@dataclass
class ADSConfig(AgentConfig):
    """Settings of :class:`ADS`.

    Attributes:
        strategy: acquisition rule: ``"ads"`` (the paper's entropy score, default), ``"gmm"``
            (the pairwise-KL Gaussian-mixture entropy estimate instead), ``"random"`` (uniform
            over unmeasured locations) or ``"data_variance"`` (fixed order, highest training-set
            variance first).
        n_particles: N, posterior samples per acquisition; default 16 (the paper's).
        sigma: width of each mixture component in pixel units ([0, 1] images), i.e. the assumed
            measurement noise in the entropy; default 1.0. (The paper's MNIST run uses 10 on
            [-1, 1] images, 5 in these units: both are in the regime where the score ranks
            locations almost by the particles' variance.)
        hidden: width of the denoiser MLP; default 256.
        n_layers: hidden layers of the denoiser; default 3.
        train_timesteps: T of the DDPM noise schedule (linear betas 1e-4..0.02); default 1000.
        sample_steps: reverse steps of the DDIM sampler; default 50.
        eta: DDIM stochasticity (1 = ancestral DDPM-like sampling, 0 = deterministic); default 1.
        guidance: ``"dps"`` (gradient of ||y - A x0_hat|| through the denoiser, Chung et al.
            2023; the paper's) or ``"replacement"`` (measured pixels of each x_t replaced by the
            measurement noised to level t); default ``"dps"``.
        guidance_scale: DPS step size zeta on [-1, 1] images; default 1.0.
        hard_consistency: set measured pixels of the final samples to their measured values;
            default True.
        lr: Adam learning rate of the denoiser; default 2e-3 (cosine-free, constant).
        batch_size: training images per gradient step; default 256.
        ema_decay: exponential moving average of the weights used for sampling; default 0.995.
    """

    strategy: str = "ads"
    n_particles: int = 16
    sigma: float = 1.0
    hidden: int = 256
    n_layers: int = 3
    train_timesteps: int = 1000
    sample_steps: int = 50
    eta: float = 1.0
    guidance: str = "dps"
    guidance_scale: float = 1.0
    hard_consistency: bool = True
    lr: float = 2e-3
    batch_size: int = 256
    ema_decay: float = 0.995

    def __post_init__(self) -> None:
        name = type(self).__name__
        check_choice(name, "strategy", self.strategy, STRATEGIES)
        check_choice(name, "guidance", self.guidance, ("dps", "replacement"))
        self.require_counts(("n_particles", "hidden", "n_layers", "train_timesteps", "sample_steps",
                             "batch_size"))
        if self.sample_steps > self.train_timesteps:
            raise ValueError(f"{name}.sample_steps ({self.sample_steps}) must be <= "
                             f"train_timesteps ({self.train_timesteps})")
        for field in ("sigma", "lr"):
            value = getattr(self, field)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name}.{field} must be a positive number, got {value!r}")
        check_range(name, "eta", self.eta, 0, 1)
        if not (self.guidance_scale >= 0 and math.isfinite(self.guidance_scale)):
            raise ValueError(f"{name}.guidance_scale must be >= 0, got {self.guidance_scale!r}")
        check_range(name, "ema_decay", self.ema_decay, 0, 1, open_high=True)


# --------------------------------------------------------------------------- denoiser


class Denoiser(nn.Module):
    """eps_theta(x_t, t): an MLP on the flattened image and a sinusoidal embedding of t / T.

    Args:
        dim: pixels per image (H * W).
        hidden: hidden width.
        n_layers: hidden layers.
        embed: size of the time embedding; default 64.
    """

    def __init__(self, dim: int, hidden: int = 256, n_layers: int = 3, embed: int = 64):
        super().__init__()
        self.embed = embed
        layers: list[nn.Module] = [nn.Linear(dim + embed, hidden), nn.SiLU()]
        for _ in range(n_layers - 1):
            layers += [nn.Linear(hidden, hidden), nn.SiLU()]
        layers.append(nn.Linear(hidden, dim))
        self.net = nn.Sequential(*layers)
        freqs = torch.exp(torch.arange(embed // 2) * (-math.log(1000.0) / max(embed // 2 - 1, 1)))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """x: (B, dim) noisy images; t: (B,) times as fractions t / T in [0, 1]."""
        angles = (t * 1000.0)[:, None] * self.freqs  # (B, embed / 2)
        emb = torch.cat([angles.sin(), angles.cos()], -1)
        return self.net(torch.cat([x, emb], -1))


def _alpha_bar(train_timesteps: int) -> Tensor:
    """Cumulative signal fractions alpha_bar_t of the DDPM linear beta schedule, (T,) float64."""
    betas = torch.linspace(1e-4, 0.02, train_timesteps, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, 0)


# --------------------------------------------------------------------------- the agent


class ADS(Agent):
    """Active Diffusion Subsampling and its fixed-strategy baselines behind one interface.

    ``learn(total_steps)`` takes that many gradient steps on the denoising loss over the
    training images (no environment steps: the model is a prior of images, not of actions).
    ``predict(obs)`` returns the next location (action) for an observation of
    :class:`maxent.envs.subsampling.MeasurementAcquisition`. :meth:`posterior` returns the
    particles given measurements, and :meth:`reconstruct` their mean, the reconstruction that the
    paper scores.

    Args:
        env: an env id (default ``"maxent/MeasurementAcquisition-v0"``) or instance; its
            ``train_images`` train the model and its ``mode`` ("pixel"/"line") fixes the
            locations.
        config: an :class:`ADSConfig`; default ``ADSConfig()``.
        seed: seeds the weights, the training batches and the sampler; default 0.
        images: training images to use instead of ``env.unwrapped.train_images``, (n, H, W)
            uint8 or float in [0, 1], matching the env's image size.
        log_dir: directory for TensorBoard and ``progress.csv`` of the training loss; None
            (default) writes nothing.
    """

    config_cls = ADSConfig
    load_arguments = ("images",)
    default_log_interval = 100

    def __init__(self, env: str | gym.Env = "maxent/MeasurementAcquisition-v0",
                 config: ADSConfig | None = None, seed: int = 0,
                 images: np.ndarray | None = None, log_dir: str | Path | None = None):
        super().__init__(env, config, seed, log_dir)
        base = self.env.unwrapped
        self.mode = getattr(base, "mode", "pixel")
        train = base.train_images if images is None else check_images(images, "images")
        self.height, self.width = int(train.shape[1]), int(train.shape[2])
        obs_shape = base.observation_space["mask"].shape
        if obs_shape != (self.height, self.width):
            raise ValueError(f"images are {self.height}x{self.width} but the env observes "
                             f"{obs_shape}; pass images of the env's size")
        self.dim = self.height * self.width
        self.n_locations = self.dim if self.mode == "pixel" else self.height
        self.losses: list[float] = []

        c = self.config
        with torch.random.fork_rng(devices=[]):  # seeded weight init, global RNG untouched
            torch.manual_seed(self.seed)
            self.model = Denoiser(self.dim, c.hidden, c.n_layers)
        self.ema = Denoiser(self.dim, c.hidden, c.n_layers)
        self.ema.load_state_dict(self.model.state_dict())
        self.ema.requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=c.lr, foreach=True)
        self._params, self._ema_params = list(self.model.parameters()), list(self.ema.parameters())
        self.alpha_bar = _alpha_bar(c.train_timesteps)
        self.train_generator = torch.Generator().manual_seed(self.seed)
        self.sample_generator = torch.Generator().manual_seed(self.seed + 1)
        # Training data on [-1, 1], flattened: (n, H * W).
        self.data = torch.as_tensor(train.reshape(len(train), -1) * 2.0 - 1.0, dtype=torch.float32)
        # Per-location training-set variance (data_variance baseline): pixel, or row sum.
        var = train.var(0)  # (H, W)
        loc_var = var.reshape(-1) if self.mode == "pixel" else var.sum(1)
        self.data_variance = torch.as_tensor(loc_var, dtype=torch.float64)

    # ------------------------------------------------------------------ training

    def _loss(self, x0: Tensor) -> Tensor:
        """DDPM's simple loss ||eps - eps_theta(sqrt(ab) x0 + sqrt(1 - ab) eps, t)||^2."""
        g = self.train_generator
        t = torch.randint(0, self.config.train_timesteps, (len(x0),), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        ab = self.alpha_bar[t].float()[:, None]
        xt = ab.sqrt() * x0 + (1.0 - ab).sqrt() * eps
        pred = self.model(xt, t.float() / self.config.train_timesteps)
        return (pred - eps).square().mean()

    def _on_learn_start(self, end: int) -> None:
        self.model.train()

    def _on_learn_end(self) -> None:
        self.model.eval()

    def _learn_step(self) -> None:
        """One gradient step on the denoising loss (and the EMA update)."""
        n = len(self.data)
        idx = torch.randint(0, n, (min(self.config.batch_size, n),), generator=self.train_generator)
        loss = self._loss(self.data[idx])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(self._ema_params, self._params, 1.0 - self.config.ema_decay)
        self.num_timesteps += 1
        self.logger.record(DIFFUSION_LOSS, loss.detach())

    def _log_metrics(self) -> None:
        # The loss curve kept with the agent (and its checkpoint): one mean per log row. Taken
        # from the logger's running sums, so the row written next has the same value.
        mean = self.logger.peek(DIFFUSION_LOSS)
        if mean is not None:
            self.losses.append(mean)

    def _headline(self) -> dict[str, str]:
        return {"loss": f"{self.losses[-1]:.4f}"} if self.losses else {}

    # ------------------------------------------------------------------ posterior sampling

    def _check_measurement(self, measurements: Any, mask: Any) -> tuple[Tensor, Tensor]:
        y = np.asarray(measurements, dtype=np.float64)
        m = np.asarray(mask, dtype=np.float64)
        shape = (self.height, self.width)
        if y.shape != shape:
            raise ValueError(f"measurements must have shape {shape}, got {y.shape}")
        if m.shape != shape:
            raise ValueError(f"mask must have shape {shape} (1 = measured), got {m.shape}")
        if not np.all((m == 0) | (m == 1)):
            raise ValueError("mask must hold only 0 and 1")
        return (torch.as_tensor(y.reshape(-1) * 2.0 - 1.0, dtype=torch.float32),
                torch.as_tensor(m.reshape(-1), dtype=torch.float32))

    def _step(self, xt: Tensor, t: int, t_prev: int, y: Tensor, m: Tensor, g: torch.Generator
              ) -> Tensor:
        """One guided DDIM step x_t -> x_{t_prev} for all particles, (N, D) -> (N, D)."""
        c = self.config
        ab = float(self.alpha_bar[t])
        ab_prev = float(self.alpha_bar[t_prev]) if t_prev >= 0 else 1.0
        tt = torch.full((len(xt),), t / c.train_timesteps)
        dps = c.guidance == "dps" and c.guidance_scale > 0 and bool(m.any())
        with torch.enable_grad() if dps else torch.no_grad():
            x_in = xt.detach().requires_grad_(dps)
            eps = self.ema(x_in, tt)
            x0 = (x_in - math.sqrt(1.0 - ab) * eps) / math.sqrt(ab)  # Tweedie estimate
            if dps:
                # DPS: x_{t-1} -= zeta * grad_{x_t} ||y - A x0_hat(x_t)||, per particle.
                resid = ((y - x0) * m).square().sum(-1).sqrt()  # (N,)
                grad = torch.autograd.grad(resid.sum(), x_in)[0]
        eps, x0 = eps.detach(), x0.detach().clamp(-1.0, 1.0)
        eps = (xt - math.sqrt(ab) * x0) / math.sqrt(1.0 - ab)  # consistent with the clamped x0
        s = c.eta * math.sqrt(max((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev), 0.0))
        x_prev = math.sqrt(ab_prev) * x0 + math.sqrt(max(1 - ab_prev - s * s, 0.0)) * eps
        if s > 0:
            x_prev = x_prev + s * torch.randn(xt.shape, generator=g)
        if dps:
            x_prev = x_prev - c.guidance_scale * grad
        if c.guidance == "replacement":
            noise = torch.randn(xt.shape, generator=g)
            known = math.sqrt(ab_prev) * y + math.sqrt(1 - ab_prev) * noise
            x_prev = torch.where(m > 0, known, x_prev)
        return x_prev

    def posterior(self, measurements: Any, mask: Any, n_particles: int | None = None,
                  generator: torch.Generator | None = None) -> np.ndarray:
        """N posterior samples of the image given measured values, shape (N, H, W) in [0, 1].

        Args:
            measurements: (H, W) measured values (ignored where ``mask`` is 0).
            mask: (H, W) of 0/1, 1 where measured.
            n_particles: N; default ``config.n_particles``.
            generator: torch generator for the noise; default the agent's own sampler stream.
        """
        n = self.config.n_particles if n_particles is None else n_particles
        if isinstance(n, bool) or int(n) != n or n < 1:
            raise ValueError(f"n_particles must be an integer >= 1, got {n!r}")
        y, m = self._check_measurement(measurements, mask)
        g = self.sample_generator if generator is None else generator
        c = self.config
        steps = np.linspace(c.train_timesteps - 1, 0, c.sample_steps).round().astype(int)
        x = torch.randn((int(n), self.dim), generator=g)
        self.ema.eval()
        for i, t in enumerate(steps):
            t_prev = int(steps[i + 1]) if i + 1 < len(steps) else -1
            x = self._step(x, int(t), t_prev, y, m, g)
        x = x.clamp(-1.0, 1.0)
        if c.hard_consistency:
            x = torch.where(m > 0, y, x)
        return ((x.numpy().astype(np.float64) + 1.0) / 2.0).reshape(-1, self.height, self.width)

    def reconstruct(self, measurements: Any, mask: Any, n_particles: int | None = None,
                    generator: torch.Generator | None = None) -> np.ndarray:
        """Posterior mean of :meth:`posterior`'s particles, (H, W) in [0, 1]."""
        return self.posterior(measurements, mask, n_particles, generator).mean(0)

    # ------------------------------------------------------------------ acquisition

    def location_scores(self, particles: np.ndarray) -> np.ndarray:
        """Score of every location from particles (N, H, W) under the entropy strategies,
        shape (n_locations,): ``"ads"`` the paper's score, ``"gmm"`` the pairwise-KL mixture
        entropy (both with ``config.sigma``)."""
        p = torch.as_tensor(np.asarray(particles), dtype=torch.float64)
        if p.ndim != 3 or p.shape[1:] != (self.height, self.width):
            raise ValueError(f"particles must have shape (N, {self.height}, {self.width}), got "
                             f"{tuple(p.shape)}")
        if self.mode == "pixel":
            y = p.reshape(len(p), self.dim, 1).transpose(0, 1)  # (L, N, 1)
        else:
            y = p.transpose(0, 1)  # (H, N, W): a row is one W-dim measurement
        if self.config.strategy == "gmm":
            return gaussian_mixture_entropy(y, self.config.sigma).numpy()
        return ads_entropy_score(y, self.config.sigma).numpy()

    def measured_locations(self, mask: np.ndarray) -> np.ndarray:
        """Boolean (n_locations,): locations whose every pixel is measured."""
        m = np.asarray(mask) > 0.5
        return m.reshape(-1) if self.mode == "pixel" else m.all(1)

    def choose(self, measurements: Any, mask: Any) -> tuple[int, np.ndarray | None]:
        """The next location and, for entropy strategies, the particles it was chosen from.

        When every location is already measured, location 0 is returned (the env then counts
        a repeat)."""
        self._check_measurement(measurements, mask)
        taken = self.measured_locations(mask)
        if taken.all():
            return 0, None
        strategy = self.config.strategy
        if strategy == "random":
            free = np.flatnonzero(~taken)
            pick = int(torch.randint(len(free), (1,), generator=self.sample_generator))
            return int(free[pick]), None
        if strategy == "data_variance":
            score = self.data_variance.numpy().copy()
            score[taken] = -np.inf
            return int(np.argmax(score)), None
        particles = self.posterior(measurements, mask)
        score = self.location_scores(particles)
        score[taken] = -np.inf
        return int(np.argmax(score)), particles

    def predict(self, observation: Any, deterministic: bool = True) -> int | np.ndarray:
        """The next location to measure for an observation dict ``{"measurements", "mask"}``
        (arrays (H, W), or (B, H, W) for a batch, which returns an int64 array of B actions).
        ``deterministic`` is accepted for the interface; the particles are always sampled
        (from the agent's seeded stream)."""
        if not isinstance(observation, dict) or not {"measurements", "mask"} <= set(observation):
            raise ValueError("observation must be a dict with 'measurements' and 'mask' arrays, "
                             f"got {type(observation).__name__}")
        y, m = np.asarray(observation["measurements"]), np.asarray(observation["mask"])
        if y.ndim == 3 and m.ndim == 3:
            return np.array([self.choose(yi, mi)[0] for yi, mi in zip(y, m)], dtype=np.int64)
        return self.choose(y, m)[0]

    # ------------------------------------------------------------------ checkpoints

    def _saved(self):
        """Config, denoiser, EMA weights, optimizer and generator states, and the loss history."""
        return [
            Check("image_shape", [self.height, self.width], "image shape",
                  fix="load it with an env of that image size"),
            Module("model", self.model), Module("ema", self.ema),
            Optimizer("optim", self.optimizer, key="optimizer"),
            Generator("rng.train", self.train_generator),
            Generator("rng.sample", self.sample_generator),
            Value("losses", self, "losses", save=list, load=list),
        ]
