"""Entropy diagnostics for RL on language models (Cui et al. 2025, "The Entropy Mechanism of
Reinforcement Learning for Reasoning Language Models"): the covariance between token log-prob
and advantage that drives the change of policy entropy (Sec. 3), and an online fit of the
entropy-performance law R = -a exp(H) + b (Sec. 2, Eq. 1) with its predicted ceiling at H = 0.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from torch import Tensor

from maxent.entropy.token import token_covariance

__all__ = ["EntropyPerformanceLaw", "LawFit", "logprob_advantage_covariance"]


def logprob_advantage_covariance(log_probs: Tensor, advantages: Tensor, mask: Tensor) -> Tensor:
    """Cov(log pi(o_t), A_t) over the valid tokens of a batch (Cui et al. 2025, Eq. 5/11):

        C = (1/N) sum_t (log pi_t - mean log pi)(A_t - mean A),

    the masked mean of ``maxent.entropy.token.token_covariance``. Under natural policy gradient the
    entropy changes by about -eta * C per step: a positive covariance (the policy grows more
    confident on what is rewarded) is what collapses entropy.

    Args:
        log_probs: (B, T) token log-probs (detached here).
        advantages: (B,), (B, 1) or (B, T).
        mask: (B, T) valid tokens.

    Returns:
        0-dim tensor (0 for an empty mask), no gradient.
    """
    cov = token_covariance(log_probs, advantages, mask)  # checks shapes, 0 at masked tokens
    return cov.sum() / (mask != 0).sum().clamp(min=1)


@dataclass(frozen=True)
class LawFit:
    """Least-squares fit of R = -a exp(H) + b.

    Attributes:
        a, b: coefficients; ``a > 0`` when reward rises as entropy falls.
        ceiling: predicted reward at H = 0 (entropy exhausted), -a + b.
        ceiling_std: its standard error, sqrt([1, 1] Cov(b, -a) [1, 1]^T) with the residual
            variance RSS / (n - 2) (ordinary least squares).
        a_std, b_std: standard errors of a and b.
        r2: coefficient of determination of the fit.
        n_points: number of (H, R) pairs used.
    """

    a: float
    b: float
    ceiling: float
    ceiling_std: float
    a_std: float
    b_std: float
    r2: float
    n_points: int


class EntropyPerformanceLaw:
    """Online fit of the entropy-performance law R = -a exp(H) + b (Cui et al. 2025, Eq. 1).

    Linear least squares in x = exp(H): R = b + beta1 x with a = -beta1, in closed form
    (centred normal equations, float64). Feed one (entropy, reward) pair per training step, e.g.
    the batch's mean token entropy and mean reward (or validation accuracy).

    Args:
        min_points: pairs needed before ``fit`` returns a fit (>= 3: two coefficients and a
            residual variance); default 3.
        window: keep only the last ``window`` pairs (None: all); the law is fitted on a run's
            whole history in the paper.
    """

    def __init__(self, *, min_points: int = 3, window: int | None = None) -> None:
        if isinstance(min_points, bool) or not isinstance(min_points, int) or min_points < 3:
            raise ValueError(f"min_points must be an int >= 3, got {min_points!r}")
        if window is not None and (not isinstance(window, int) or window < min_points):
            raise ValueError(f"window must be None or an int >= min_points ({min_points}), "
                             f"got {window!r}")
        self.min_points = min_points
        self.window = window
        self._h: list[float] = []
        self._r: list[float] = []

    def __len__(self) -> int:
        return len(self._h)

    def update(self, entropy: float, reward: float) -> None:
        """Add one (mean token entropy in nats, mean reward) pair; both must be finite."""
        h, r = float(entropy), float(reward)
        if not (math.isfinite(h) and math.isfinite(r)):
            raise ValueError(f"entropy and reward must be finite, got entropy={entropy!r}, "
                             f"reward={reward!r}")
        if h > 700:  # exp overflows float64
            raise ValueError(f"entropy {h} nats is too large for exp(H); token entropies are "
                             "at most log(vocabulary size)")
        self._h.append(h)
        self._r.append(r)
        if self.window is not None and len(self._h) > self.window:
            del self._h[0], self._r[0]

    def fit(self) -> LawFit | None:
        """The least-squares fit, or None with fewer than ``min_points`` pairs or when all
        entropies are equal (the slope is then not identified)."""
        n = len(self._h)
        if n < self.min_points:
            return None
        x = np.exp(np.asarray(self._h, dtype=np.float64))
        y = np.asarray(self._r, dtype=np.float64)
        xm, ym = x.mean(), y.mean()
        sxx = float(((x - xm) ** 2).sum())
        if not sxx > 1e-12 * max(1.0, float((x**2).sum())):
            return None
        beta1 = float(((x - xm) * (y - ym)).sum()) / sxx
        beta0 = float(ym - beta1 * xm)
        resid = y - (beta0 + beta1 * x)
        rss = float((resid**2).sum())
        syy = float(((y - ym) ** 2).sum())
        sigma2 = rss / (n - 2)
        # OLS covariance of (beta0, beta1): sigma^2 (X^T X)^-1 in centred form.
        var_b1 = sigma2 / sxx
        var_b0 = sigma2 * (1.0 / n + xm**2 / sxx)
        cov_b0b1 = -sigma2 * xm / sxx
        # ceiling = beta0 + beta1 * exp(0) = b - a
        var_ceiling = max(var_b0 + var_b1 + 2.0 * cov_b0b1, 0.0)
        return LawFit(a=-beta1, b=beta0, ceiling=beta0 + beta1, ceiling_std=math.sqrt(var_ceiling),
                      a_std=math.sqrt(var_b1), b_std=math.sqrt(var_b0),
                      r2=1.0 - rss / syy if syy > 0 else 1.0, n_points=n)

    def predict(self, entropy: float | np.ndarray) -> float | np.ndarray | None:
        """Predicted reward -a exp(H) + b at ``entropy`` (None before a fit exists)."""
        f = self.fit()
        return None if f is None else -f.a * np.exp(entropy) + f.b

    def state_dict(self) -> dict:
        """JSON-able state: the stored pairs and the settings."""
        return {"entropy": list(self._h), "reward": list(self._r),
                "min_points": self.min_points, "window": self.window}

    def load_state_dict(self, state: dict) -> None:
        """Restore from ``state_dict`` output (checks keys and lengths)."""
        missing = {"entropy", "reward", "min_points", "window"} - set(state)
        if missing:
            raise KeyError(f"EntropyPerformanceLaw state is missing {sorted(missing)}")
        if len(state["entropy"]) != len(state["reward"]):
            raise ValueError("EntropyPerformanceLaw state has different numbers of entropies "
                             f"({len(state['entropy'])}) and rewards ({len(state['reward'])})")
        fresh = EntropyPerformanceLaw(min_points=state["min_points"], window=state["window"])
        for h, r in zip(state["entropy"], state["reward"]):
            fresh.update(h, r)
        self.min_points, self.window = fresh.min_points, fresh.window
        self._h, self._r = fresh._h, fresh._r

    def __repr__(self) -> str:
        f = self.fit()
        tail = "" if f is None else ", " + ", ".join(
            f"{k}={v:.4g}" for k, v in asdict(f).items() if k in ("a", "b", "ceiling"))
        return f"EntropyPerformanceLaw(n_points={len(self)}{tail})"
