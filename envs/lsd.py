"""Last-switch-dependent (LSD) bandits and recharging bandits as the special case
(Laforgue, Clerici, Cesa-Bianchi & Gilad-Bachrach, AISTATS 2022, "A Last Switch Dependent
Analysis of Satiation and Seasonality in Bandits"; Kleinberg & Immorlica 2018 and
Papadigenopoulos et al., NeurIPS 2022, for recharging bandits).

Each arm i carries a counter tau_i that the player sees; pulling arm i pays a Bernoulli or
Gaussian reward of mean mu_i(tau_i). Two forms share one class:

* ``form="lsd"``: tau counts consecutive plays negatively (-1, -2, ..., -d) and idle rounds since
  the arm was last switched away from positively (1, 2, ..., d); both capped at +-d. Satiation is
  mu_i decreasing along -1, -2, ...; recovery is mu_i increasing along 1, 2, ...
* ``form="recharging"`` (the authors' code convention): the pulled arm's counter is set to 1 and
  every other arm's grows by 1, capped at d, so mu_i(tau >= d) = mu_i(d).

Pure helpers at the top (state indexing, transition tables, instance constructors) are what the
planners in :mod:`maxent.agents.planners` build their state graphs from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import batch_space

from maxent.training.limits import check_memory

__all__ = [
    "FORMS",
    "LSDBandit",
    "LSDBanditVector",
    "LSDModel",
    "make_recharging",
    "make_recharging_vector",
    "random_lsd_table",
    "random_recharging_table",
    "recharging_to_lsd",
    "reference_recharging_table",
]

FORMS = ("lsd", "recharging")
REWARDS = ("bernoulli", "gaussian")

# The supplementary instance of Laforgue et al. (GiuliaClerici/LSD_bandits, run_exp_sup.py):
# K = 2, d = 10, T = 3300; arm 0 pays 0.05 always, arm 1 pays 0.06 right after a pull and 0.95
# once it has rested one round. Greedy is trapped on arm 1 at 0.06; alternating earns 0.5.
REFERENCE_K, REFERENCE_D, REFERENCE_T = 2, 10, 3300


# --------------------------------------------------------------------------- the model


def reference_recharging_table(d: int = REFERENCE_D) -> np.ndarray:
    """The authors' K = 2 step instance as a recharging table mu[i, tau - 1], shape (2, d)."""
    d = _check_d(d)
    _check_size(REFERENCE_K, d, "lsd")  # the LSD copy made from it has 2d columns
    table = np.empty((2, d))
    table[0] = 0.05
    table[1] = 0.95
    table[1, 0] = 0.06
    return table


def recharging_to_lsd(table: np.ndarray) -> np.ndarray:
    """The LSD-form table that plays exactly like recharging ``table`` (K, d), shape (K, 2d).

    A recharging counter k + 1 (pulled k + 1 rounds ago) is an LSD idle counter k, and every
    consecutive play (LSD counters -1..-d) is a recharging counter 1. Start the LSD copy at
    counter tau - 1 where the recharging one starts at tau >= 2 (at -1 where it starts at 1).
    """
    table = np.asarray(table, dtype=np.float64)
    k, d = table.shape
    out = np.empty((k, 2 * d))
    out[:, :d] = table[:, :1]  # tau = -d..-1: just pulled
    out[:, d:] = table[:, np.minimum(np.arange(1, d + 1), d - 1)]  # tau = 1..d -> mu(tau + 1)
    return out


def random_recharging_table(n_arms: int, d: int, rng: np.random.Generator | int | None = None,
                            low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """A random non-decreasing recharging table, shape (n_arms, d), values in [low, high].

    Each row is d sorted uniform draws on [low, high]: mu_i(1) <= ... <= mu_i(d).
    """
    n_arms, d = _check_n_arms(n_arms), _check_d(d)
    _check_size(n_arms, d, "recharging")
    if not low <= high:
        raise ValueError(f"need low <= high, got low={low}, high={high}")
    rng = np.random.default_rng(rng)
    return np.sort(rng.uniform(low, high, size=(n_arms, d)), axis=1)


def random_lsd_table(n_arms: int, d: int, rng: np.random.Generator | int | None = None,
                     satiation_rate: float = 0.5, recovery_rate: float = 0.5) -> np.ndarray:
    """A random monotone LSD table, shape (n_arms, 2d), columns tau = -d..-1, 1..d, in [0, 1].

    Arm i has a base payoff b_i ~ U(0.2, 1), a satiation rate s_i ~ U(0, satiation_rate) and a
    recovery rate r_i ~ U(0, recovery_rate): mu_i(-k) = b_i exp(-s_i (k - 1)) after k
    consecutive plays and mu_i(+k) = f_i + (b_i - f_i)(1 - exp(-r_i k)) after k idle rounds,
    with f_i = mu_i(-d) the fully satiated level: payoffs fall with consecutive plays and
    recover towards b_i with rest.
    """
    n_arms, d = _check_n_arms(n_arms), _check_d(d)
    _check_size(n_arms, d, "lsd")
    for name, v in (("satiation_rate", satiation_rate), ("recovery_rate", recovery_rate)):
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    rng = np.random.default_rng(rng)
    base = rng.uniform(0.2, 1.0, size=(n_arms, 1))
    sat = rng.uniform(0.0, satiation_rate, size=(n_arms, 1))
    rec = rng.uniform(0.0, recovery_rate, size=(n_arms, 1)) + 1e-3
    k = np.arange(1, d + 1)[None, :]
    consecutive = base * np.exp(-sat * (k - 1))  # (K, d): k = 1..d consecutive plays
    floor = consecutive[:, -1:]
    idle = floor + (base - floor) * (1.0 - np.exp(-rec * k))  # (K, d): k = 1..d idle rounds
    return np.concatenate([consecutive[:, ::-1], idle], axis=1)


class LSDModel:
    """The known part of an LSD bandit: form, d, payoff table and counter dynamics.

    Counters tau are stored as state indices 0..S-1: recharging tau = 1..d -> tau - 1 (S = d);
    LSD tau = -d..-1 -> tau + d, tau = 1..d -> tau + d - 1 (S = 2d).

    Args:
        table: expected payoffs, shape (K, S), columns in state-index order.
        d: counter cap, >= 1.
        form: "lsd" or "recharging".
    """

    def __init__(self, table: np.ndarray, d: int, form: str):
        self.form = _check_form(form)
        self.d = _check_d(d)
        self.table = np.asarray(table, dtype=np.float64)
        self.n_arms = self.table.shape[0]
        self.n_states = self.d if self.form == "recharging" else 2 * self.d
        if self.table.shape != (self.n_arms, self.n_states):
            raise ValueError(f"table must have shape (K, {self.n_states}), got {self.table.shape}")
        # Lookup tables: next state index of a pulled arm and of an idle arm, and tau per index.
        s = np.arange(self.n_states)
        if self.form == "recharging":
            self.next_pulled = np.zeros(self.n_states, dtype=np.int64)
            self.next_idle = np.minimum(s + 1, self.d - 1)
            self.taus = s + 1
        else:
            d = self.d
            self.next_pulled = np.where(s < d, np.maximum(s - 1, 0), d - 1)
            self.next_idle = np.where(s >= d, np.minimum(s + 1, 2 * d - 1), d)
            self.taus = np.where(s < d, s - d, s - d + 1)

    def index(self, tau: Any) -> np.ndarray:
        """State indices of counters ``tau`` (any shape), validated."""
        tau = np.asarray(tau, dtype=np.int64)
        if self.form == "recharging":
            if np.any((tau < 1) | (tau > self.d)):
                raise ValueError(f"recharging counters must lie in [1, {self.d}], got {tau}")
            return tau - 1
        if np.any((tau == 0) | (np.abs(tau) > self.d)):
            raise ValueError(f"LSD counters must lie in [-{self.d}, -1] or [1, {self.d}], got {tau}")
        return np.where(tau < 0, tau + self.d, tau + self.d - 1)

    def step_indices(self, idx: np.ndarray, arm: int) -> np.ndarray:
        """Counter state indices (K,) after pulling ``arm`` (a new array)."""
        out = self.next_idle[idx]
        out[arm] = self.next_pulled[idx[arm]]
        return out

    def payoff(self, idx: np.ndarray, arm: int) -> float:
        """Expected payoff of pulling ``arm`` at counter indices ``idx``."""
        return float(self.table[arm, idx[arm]])


# --------------------------------------------------------------------------- validation


def _check_n_arms(n_arms: Any) -> int:
    if isinstance(n_arms, bool) or int(n_arms) != n_arms or n_arms < 1:
        raise ValueError(f"n_arms (K) must be an integer >= 1, got {n_arms!r}")
    return int(n_arms)


def _check_d(d: Any) -> int:
    if isinstance(d, bool) or not np.isscalar(d) or int(d) != d or d < 1:
        raise ValueError(f"d (the counter cap / maximal delay) must be an integer >= 1, got {d!r}")
    return int(d)


def _check_size(n_arms: int, d: int, form: str) -> None:
    """Refuse, before allocating, an instance whose tables cannot fit in memory: the (K, S) payoff
    table and about eight S-long int64 arrays (counter dynamics, the vector env's copies)."""
    n_states = d if form == "recharging" else 2 * d
    check_memory(8 * n_states * (n_arms + 8), f"a bandit with K={n_arms} arms and counter cap d={d:,}",
                 "choose a smaller d or fewer arms")


def _check_form(form: Any) -> str:
    if form not in FORMS:
        raise ValueError(f"form must be one of {list(FORMS)}, got {form!r}")
    return form


def _build_table(payoff: Any, d: int | None, form: str, n_arms: int | None) -> tuple[np.ndarray, int]:
    """The (K, S) payoff table from an array or callable(s); returns (table, d)."""
    if callable(payoff) or (isinstance(payoff, Sequence) and len(payoff) > 0
                            and all(callable(f) for f in payoff)):
        if d is None:
            raise ValueError("a callable payoff needs d=... (the counter cap) to be tabulated")
        d = _check_d(d)
        funcs = list(payoff) if not callable(payoff) else None
        if funcs is None:
            if n_arms is None:
                raise ValueError("a single callable payoff mu(arm, tau) needs n_arms=...")
            k = _check_n_arms(n_arms)
            funcs = [lambda tau, i=i: payoff(i, tau) for i in range(k)]
        elif n_arms is not None and n_arms != len(funcs):
            raise ValueError(f"n_arms={n_arms} but {len(funcs)} payoff callables were given")
        _check_size(len(funcs), d, form)
        taus = LSDModel(np.zeros((1, d if form == "recharging" else 2 * d)), d, form).taus
        table = np.array([[float(f(int(t))) for t in taus] for f in funcs], dtype=np.float64)
        return table, d
    table = np.array(payoff, dtype=np.float64)
    if table.ndim != 2:
        raise ValueError(f"payoff table must have shape (K, d) (recharging) or (K, 2d) (lsd), "
                         f"got shape {table.shape}")
    if table.shape[0] < 1:
        raise ValueError(f"n_arms (K) must be >= 1, got a payoff table with shape {table.shape}")
    if n_arms is not None and table.shape[0] != n_arms:
        raise ValueError(f"n_arms={n_arms} but the payoff table has {table.shape[0]} rows")
    width = table.shape[1]
    inferred = width if form == "recharging" else width // 2
    if form == "lsd" and width % 2:
        raise ValueError(f"an LSD payoff table needs 2d columns (tau = -d..-1, 1..d), got shape "
                         f"{table.shape}")
    if inferred < 1:
        raise ValueError(f"payoff table has no columns, got shape {table.shape}")
    if d is not None and _check_d(d) != inferred:
        want = (table.shape[0], d if form == "recharging" else 2 * d)
        raise ValueError(f"payoff table for form={form!r}, d={d} must have shape {want}, "
                         f"got {table.shape}")
    return table, inferred


# --------------------------------------------------------------------------- single env


class LSDBandit(gym.Env):
    """K arms whose expected payoff depends on each arm's last-switch counter.

    ==============  ==========================================================================
    Action          ``Discrete(K)``: the arm to pull
    Observation     ``Box(int64, (K,))``: every arm's counter tau_i (the player knows them);
                    recharging: tau in [1, d]; lsd: tau in [-d, -1] U [1, d]
    Reward          Bernoulli(mu_a(tau_a)) (one uniform draw), or mu_a(tau_a) + N(0, noise_std^2)
    Termination     never; truncated after ``horizon`` pulls
    Info            ``expected_reward`` mu_a(tau_a) of the pull (for regret)
    ==============  ==========================================================================

    Args:
        payoff: expected payoffs: a table of shape (K, d) (recharging, column tau - 1) or (K, 2d)
            (lsd, columns tau = -d..-1, 1..d); or a callable ``mu(arm, tau)`` (with ``n_arms``);
            or a list of K callables ``mu_i(tau)``. Default: the authors' K = 2, d = 10 instance
            (in LSD form for ``form="lsd"`` via :func:`recharging_to_lsd`).
        d: counter cap; inferred from a table, required for callables.
        form: "lsd" (default) or "recharging".
        reward: "bernoulli" (default; payoffs must lie in [0, 1]) or "gaussian".
        noise_std: Gaussian noise standard deviation, >= 0; default 0.1.
        horizon: pulls per episode before truncation, >= 1; default 3300 (the authors' T).
        initial_counters: counters at reset, shape (K,); default all 1 in the recharging form (the
            authors' start) and all -1 in the LSD form (the same start, see
            :func:`recharging_to_lsd`).
        n_arms: K, needed only for a single callable payoff.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, payoff: Any = None, d: int | None = None, form: str = "lsd",
                 reward: str = "bernoulli", noise_std: float = 0.1, horizon: int = REFERENCE_T,
                 initial_counters: Any = None, n_arms: int | None = None,
                 render_mode: str | None = None):
        self.form = _check_form(form)
        if payoff is None:
            table = reference_recharging_table(REFERENCE_D if d is None else d)
            payoff = table if form == "recharging" else recharging_to_lsd(table)
        table, d = _build_table(payoff, d, form, n_arms)
        if not np.all(np.isfinite(table)):
            raise ValueError(f"payoff values must be finite, got {table[~np.isfinite(table)][:4]}")
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {list(REWARDS)}, got {reward!r}")
        if reward == "bernoulli" and (table.min() < 0 or table.max() > 1):
            bad = table[(table < 0) | (table > 1)]
            raise ValueError(f"Bernoulli payoffs must lie in [0, 1] (they are probabilities), got "
                             f"{bad[:4].tolist()}; use reward='gaussian' for other values")
        if not np.isfinite(noise_std) or noise_std < 0:
            raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std!r}")
        if isinstance(horizon, bool) or int(horizon) != horizon or horizon < 1:
            raise ValueError(f"horizon must be an integer >= 1, got {horizon!r}")
        if render_mode is not None:
            raise ValueError(f"LSDBandit does not render, got render_mode={render_mode!r}")
        self.render_mode = render_mode
        self.model = LSDModel(table, d, form)
        self.payoff_table = self.model.table  # (K, S)
        self.d = d
        self.n_arms = self.model.n_arms
        self.reward_kind = reward
        self.noise_std = float(noise_std)
        self.horizon = int(horizon)
        if initial_counters is None:
            initial_counters = np.full(self.n_arms, 1 if form == "recharging" else -1)
        initial_counters = np.asarray(initial_counters, dtype=np.int64)
        if initial_counters.shape != (self.n_arms,):
            raise ValueError(f"initial_counters must have shape ({self.n_arms},), got "
                             f"{initial_counters.shape}")
        self.initial_index = self.model.index(initial_counters)  # validates the range
        self.initial_counters = initial_counters

        self.action_space = spaces.Discrete(self.n_arms)
        low = 1 if form == "recharging" else -d
        self.observation_space = spaces.Box(low, d, shape=(self.n_arms,), dtype=np.int64)
        self._idx = self.initial_index.copy()
        self._steps = 0

    # ------------------------------------------------------------------ constructors

    @classmethod
    def reference(cls, form: str = "recharging", **kwargs: Any) -> LSDBandit:
        """The authors' K = 2, d = 10, T = 3300 Bernoulli instance (see module constants)."""
        table = reference_recharging_table()
        if form == "lsd":
            table = recharging_to_lsd(table)
        return cls(table, form=form, **kwargs)

    @classmethod
    def random_recharging(cls, n_arms: int = 3, d: int = 4,
                          rng: np.random.Generator | int | None = None, **kwargs: Any) -> LSDBandit:
        """A recharging bandit with a random non-decreasing table (:func:`random_recharging_table`)."""
        return cls(random_recharging_table(n_arms, d, rng), form="recharging", **kwargs)

    @classmethod
    def random_lsd(cls, n_arms: int = 3, d: int = 4, rng: np.random.Generator | int | None = None,
                   satiation_rate: float = 0.5, recovery_rate: float = 0.5,
                   **kwargs: Any) -> LSDBandit:
        """An LSD bandit with random satiation and recovery (:func:`random_lsd_table`)."""
        return cls(random_lsd_table(n_arms, d, rng, satiation_rate, recovery_rate), form="lsd",
                   **kwargs)

    # ------------------------------------------------------------------ helpers

    @property
    def counters(self) -> np.ndarray:
        """The current counters tau, shape (K,), int64."""
        return self.model.taus[self._idx]

    def expected_payoffs(self) -> np.ndarray:
        """mu_i(tau_i) of every arm at the current counters, shape (K,)."""
        return self.payoff_table[np.arange(self.n_arms), self._idx]

    # ------------------------------------------------------------------ gym API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._idx = self.initial_index.copy()
        self._steps = 0
        return self.counters, {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        arm = _check_action(action, self.n_arms)
        mu = float(self.payoff_table[arm, self._idx[arm]])
        if self.reward_kind == "bernoulli":
            reward = float(self.np_random.random() < mu)
        else:
            reward = mu + self.noise_std * float(self.np_random.standard_normal())
        self._idx = self.model.step_indices(self._idx, arm)
        self._steps += 1
        return self.counters, reward, False, self._steps >= self.horizon, {"expected_reward": mu}


def _check_action(action: Any, n_arms: int) -> int:
    a = np.asarray(action)
    if a.size != 1 or not (np.issubdtype(a.dtype, np.integer)) or a.dtype == np.bool_:
        raise ValueError(f"action must be one integer arm index in [0, {n_arms}), got {action!r}")
    arm = int(a.reshape(()))
    if not 0 <= arm < n_arms:
        raise ValueError(f"action must be an arm in [0, {n_arms}), got {arm}")
    return arm


def make_recharging(**kwargs: Any) -> LSDBandit:
    """Entry point of ``maxent/RechargingBandit-v0``: an :class:`LSDBandit` in recharging form
    (default: the authors' K = 2, d = 10 instance). Keyword arguments go to :class:`LSDBandit`."""
    if kwargs.get("form", "recharging") != "recharging":
        raise ValueError(f"make_recharging builds form='recharging', got form={kwargs['form']!r}")
    kwargs["form"] = "recharging"
    return LSDBandit(**kwargs)


# --------------------------------------------------------------------------- vector env


class LSDBanditVector(gym.vector.VectorEnv):
    """``num_envs`` copies of :class:`LSDBandit` stepped together in numpy, no per-copy Python.

    Counters live as a flat int64 state-index array (num_envs * K,); a step is a few lookups:
    the payoff table flattened to (K * S,), Bernoulli rewards from one uniform draw per copy.
    All copies share one ``np_random`` generator; with ``num_envs=1`` and the same seed the
    stream equals the single env's exactly. Autoreset follows Gymnasium's NEXT_STEP mode: the
    step after a copy is truncated resets it and returns its first observation with reward 0.

    Args:
        num_envs: number of copies, >= 1.
        max_episode_steps: accepted from ``gymnasium.make_vec``; overrides ``horizon`` if given.
        **kwargs: as for :class:`LSDBandit`.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": [],
                                          "autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, max_episode_steps: int | None = None, **kwargs: Any):
        if isinstance(num_envs, bool) or int(num_envs) != num_envs or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        if max_episode_steps is not None:
            kwargs["horizon"] = max_episode_steps
        self.single_env = LSDBandit(**kwargs)  # validates everything once
        self.num_envs = int(num_envs)
        self.model = self.single_env.model
        self.n_arms, self.d = self.model.n_arms, self.model.d
        self.horizon = self.single_env.horizon
        self.reward_kind = self.single_env.reward_kind
        self.noise_std = self.single_env.noise_std
        self.single_action_space = self.single_env.action_space
        self.single_observation_space = self.single_env.observation_space
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.render_mode = None
        s = self.model.n_states
        self._flat_table = self.model.table.ravel()  # (K * S,)
        self._taus = self.model.taus.astype(np.int64)  # (S,)
        self._next_pulled = self.model.next_pulled.astype(np.int64)
        self._next_idle = self.model.next_idle.astype(np.int64)
        self._s = s
        self._rows = np.arange(self.num_envs)
        self._idx = np.tile(self.single_env.initial_index, self.num_envs)  # (n * K,) flat
        self._row_base = self._rows * self.n_arms  # (n,) flat offset of each copy's first arm
        self._steps = np.zeros(self.num_envs, dtype=np.int64)
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._terminated = np.zeros(self.num_envs, dtype=bool)
        self._mask = np.ones(self.num_envs, dtype=bool)
        self._np_random, _ = gym.utils.seeding.np_random(None)

    @property
    def counters(self) -> np.ndarray:
        """Current counters tau, shape (num_envs, K), int64."""
        return self._taus[self._idx].reshape(self.num_envs, self.n_arms)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict]:
        """Reset all copies (or those in ``options["reset_mask"]``); ``seed`` is one int or None."""
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
                raise ValueError(f"LSDBanditVector.reset takes one int seed (all copies share a "
                                 f"generator), got {seed!r}")
            self._np_random, _ = gym.utils.seeding.np_random(int(seed))
        mask = None if options is None else options.get("reset_mask")
        if mask is None:
            mask = self._mask
        mask = np.asarray(mask, dtype=bool)
        self._idx.reshape(self.num_envs, self.n_arms)[mask] = self.single_env.initial_index
        self._steps[mask] = 0
        self._autoreset[mask] = False
        return self.counters, {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or actions.dtype.kind not in "iu":
            raise ValueError(f"actions must be {self.num_envs} integer arm indices, got "
                             f"dtype {actions.dtype} and shape {actions.shape}")
        # One comparison checks both ends: negative ints wrap to huge unsigned values.
        if (actions.view(f"u{actions.itemsize}") >= self.n_arms).any():
            bad = actions[(actions < 0) | (actions >= self.n_arms)]
            raise ValueError(f"actions must be arms in [0, {self.n_arms}), got {bad[:4].tolist()}")
        idx = self._idx  # (n * K,) flat counter state indices
        pos = self._row_base + actions  # (n,) flat position of each pulled arm
        played = idx[pos]  # (n,) state index of each pulled arm
        mu = self._flat_table[actions * self._s + played]  # (n,)
        if self.reward_kind == "bernoulli":
            rewards = (self._np_random.random(self.num_envs) < mu).astype(np.float64)
        else:
            rewards = mu + self.noise_std * self._np_random.standard_normal(self.num_envs)
        # Every arm moves as idle, then the pulled one is overwritten.
        new = self._next_idle[idx]
        new[pos] = self._next_pulled[played]
        self._steps += 1
        if self._autoreset.any():  # NEXT_STEP: copies truncated last step restart now
            ar = self._autoreset
            new.reshape(self.num_envs, self.n_arms)[ar] = self.single_env.initial_index
            rewards[ar] = 0.0
            mu = mu.copy()
            mu[ar] = 0.0
            self._steps[ar] = 0
        self._idx = new
        truncated = self._steps >= self.horizon
        self._autoreset = truncated
        info = {"expected_reward": mu, "_expected_reward": self._mask}
        obs = self._taus[new].reshape(self.num_envs, self.n_arms)
        return obs, rewards, self._terminated.copy(), truncated, info


def make_recharging_vector(num_envs: int = 1, **kwargs: Any) -> LSDBanditVector:
    """Vector entry point of ``maxent/RechargingBandit-v0``: :class:`LSDBanditVector` in recharging
    form."""
    if kwargs.get("form", "recharging") != "recharging":
        raise ValueError(f"make_recharging_vector builds form='recharging', got "
                         f"form={kwargs['form']!r}")
    kwargs["form"] = "recharging"
    return LSDBanditVector(num_envs=num_envs, **kwargs)
