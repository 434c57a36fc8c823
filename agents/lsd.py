"""Agents for last-switch-dependent (LSD) and recharging bandits (:mod:`maxent.envs.lsd`),
planning with the solvers of :mod:`maxent.agents.planners`.

* Planners that know the payoffs: :class:`ExactPlanner` (the exact long-run optimal cycle, Karp
  1978), :class:`LPPlanner` (LP relaxation and interleaved rounding for recharging bandits, after
  Papadigenopoulos et al., NeurIPS 2022) and :class:`GreedyOracle`.
* Online learners: :class:`ISICombUCB1` and :class:`CombUCB1` (Laforgue et al., AISTATS 2022:
  blocks chosen by an LP over (arm, delay) base arms with UCB indices mean + sqrt(1.5 ln t / n))
  and :class:`OptimisticPlanner` (plans the exact long-run optimum on upper confidence bounds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import maxent.envs  # noqa: F401  (registers maxent/... ids, so load() can gym.make a saved id)
from maxent.agents.bandit_base import _Bandit, _pos_int
from maxent.agents.planners import (
    BlockOracle, StateGraph, _schedule_arm, check_planner_memory, exact_block_plan,
    recharging_lp, sample_schedule, schedule_long_run_average, solve_long_run,
)
from maxent.training.agent import AgentConfig
from maxent.training.saved import Tensor
from maxent.envs.lsd import LSDModel

__all__ = [
    "CombUCB1",
    "CombUCBConfig",
    "ExactPlanner",
    "GreedyConfig",
    "GreedyOracle",
    "ISICombUCB1",
    "LPConfig",
    "LPPlanner",
    "OptimisticConfig",
    "OptimisticPlanner",
    "PlannerConfig",
]


def _lsd_model(env: gym.Env, who: str) -> LSDModel:
    model = getattr(env.unwrapped, "model", None)
    if not isinstance(model, LSDModel):
        raise TypeError(f"{who} needs an LSD bandit (maxent.envs.lsd.LSDBandit, e.g. "
                        f"'maxent/RechargingBandit-v0'), got {type(env.unwrapped).__name__}")
    return model


class _LSDAgent(_Bandit):
    """An agent on an :class:`~maxent.envs.lsd.LSDBandit`: observations are the counters."""

    needs_recharging = False

    def __init__(self, env: str | gym.Env, config: Any = None, seed: int = 0,
                 log_dir: str | Path | None = None):
        super().__init__(env, config, seed, log_dir)
        self.model = _lsd_model(self.env, type(self).__name__)
        if self.needs_recharging and self.model.form != "recharging":
            raise ValueError(f"{type(self).__name__} plans recharging bandits (form='recharging'), "
                             f"got form={self.model.form!r}; use ExactPlanner or "
                             "OptimisticPlanner for the LSD form")
        self.d = self.model.d
        self.start_index = np.asarray(self.env.unwrapped.initial_index, dtype=np.int64)

    def _index(self, obs: Any) -> np.ndarray:
        if obs is None:
            raise ValueError(f"{type(self).__name__}.predict needs the observation (the counters)")
        return self.model.index(np.asarray(obs).reshape(self.model.n_arms))


@dataclass
class GreedyConfig(AgentConfig):
    """:class:`GreedyOracle` has no settings."""


class GreedyOracle(_LSDAgent):
    """Knows the payoffs and pulls the arm with the highest current mu_i(tau_i) (ties: lowest)."""

    kind = "GreedyOracle"
    config_cls = GreedyConfig

    def _act(self, obs) -> int:
        idx = self._index(obs)
        return int(np.argmax(self.model.table[np.arange(self.model.n_arms), idx]))

    def _policy_action(self, obs, deterministic) -> int:
        return self._act(obs)


@dataclass
class PlannerConfig(AgentConfig):
    """Settings of :class:`ExactPlanner`.

    Attributes:
        max_states: the largest counter-state graph to plan on.
        max_memory_gb: memory the exact solver may use; ``None`` = half of the machine's. An
            instance that needs more is refused up front with the estimate.
    """

    max_states: int = 200_000
    max_memory_gb: float | None = None

    def __post_init__(self) -> None:
        self.max_states = _pos_int("max_states", type(self).__name__, self.max_states)
        if self.max_memory_gb is not None and not self.max_memory_gb > 0:
            raise ValueError(f"PlannerConfig.max_memory_gb must be > 0 or None, got {self.max_memory_gb}")


class ExactPlanner(_LSDAgent):
    """Knows the payoffs and follows the optimal long-run policy (:func:`solve_long_run`).

    Attributes:
        plan: the :class:`ExactPlan` (``plan.gain`` is the optimal long-run average).
    """

    kind = "ExactPlanner"
    config_cls = PlannerConfig

    def __init__(self, env: str | gym.Env, config: PlannerConfig | None = None, seed: int = 0,
                 log_dir: str | Path | None = None):
        super().__init__(env, config, seed, log_dir)
        self.plan = solve_long_run(self.model, self.start_index, max_states=self.config.max_states,
                                   max_memory_gb=self.config.max_memory_gb)

    def _act(self, obs) -> int:
        key = tuple(int(i) for i in self._index(obs))
        if key not in self.plan.policy:  # a start state outside the graph: plan from it
            self.plan = solve_long_run(self.model, np.asarray(key), max_states=self.config.max_states,
                                       max_memory_gb=self.config.max_memory_gb)
        return self.plan.policy[key]

    def _policy_action(self, obs, deterministic) -> int:
        return self._act(obs)


@dataclass
class LPConfig(AgentConfig):
    """Settings of :class:`LPPlanner`.

    Attributes:
        n_samples: independent roundings drawn; the one with the best exact long-run average
            (:func:`schedule_long_run_average`) is kept (their mean is >= (1 - 1/e) LP in
            expectation).
        max_eval_steps: step cap of each rounding's long-run evaluation.
    """

    n_samples: int = 16
    max_eval_steps: int = 200_000

    def __post_init__(self) -> None:
        self.n_samples = _pos_int("n_samples", "LPConfig", self.n_samples)
        self.max_eval_steps = _pos_int("max_eval_steps", "LPConfig", self.max_eval_steps)


class LPPlanner(_LSDAgent):
    """Knows the payoffs of a recharging bandit; plays a rounded LP schedule
    (:func:`recharging_lp`, :func:`sample_schedule`, :func:`_schedule_arm`).

    Attributes:
        lp_value: the LP upper bound on the optimal long-run average.
        long_run_average: the kept schedule's exact long-run average.
        sample_averages: the long-run average of every rounding drawn.
        periods, offsets: the kept schedule.
    """

    kind = "LPPlanner"
    config_cls = LPConfig
    needs_recharging = True

    def __init__(self, env: str | gym.Env, config: LPConfig | None = None, seed: int = 0,
                 log_dir: str | Path | None = None):
        super().__init__(env, config, seed, log_dir)
        self.lp_value, self.lp_solution = recharging_lp(self.model.table)
        best = None
        self.sample_averages = []
        for _ in range(self.config.n_samples):
            periods, offsets = sample_schedule(self.lp_solution, self.np_rng)
            avg = schedule_long_run_average(self.model, periods, offsets, self.start_index,
                                            self.config.max_eval_steps)
            self.sample_averages.append(avg)
            if best is None or avg > best[0]:
                best = (avg, periods, offsets)
        self.long_run_average, self.periods, self.offsets = best
        self.clock = 0  # rounds since the episode started

    def _on_episode_start(self, obs) -> None:
        self.clock = 0

    def _act(self, obs) -> int:
        return _schedule_arm(self.model, self.periods, self.offsets, self.clock, self._index(obs))

    def _observe(self, obs, arm, reward, next_obs) -> None:
        self.clock += 1

    def _policy_action(self, obs, deterministic) -> int:
        return self._act(obs)

    def _extra_state(self):
        return {"clock": self.clock}

    def _load_extra_state(self, state) -> None:
        self.clock = int(state["clock"])


# --------------------------------------------------------------------------- online learners


class _StateStatsAgent(_LSDAgent):
    """Per-(arm, counter state) pull counts and reward sums, and UCB indices on them."""

    def __init__(self, env: str | gym.Env, config: Any = None, seed: int = 0,
                 log_dir: str | Path | None = None):
        super().__init__(env, config, seed, log_dir)
        shape = (self.model.n_arms, self.model.n_states)
        self.counts = np.zeros(shape, dtype=np.float64)
        self.sums = np.zeros(shape, dtype=np.float64)
        self.upper = 1.0 if self.env.unwrapped.reward_kind == "bernoulli" else None

    def mean_table(self) -> np.ndarray:
        """Empirical mean payoff per (arm, state), 0 where unseen, shape (K, S)."""
        return self.sums / np.maximum(self.counts, 1)

    def ucb_table(self, c: float, unseen: float, cap: bool) -> np.ndarray:
        """mean + sqrt(c ln t / n) per (arm, state); ``unseen`` where n = 0; optionally capped at
        the known upper reward (1 for Bernoulli)."""
        t = max(self.num_timesteps, 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            u = self.mean_table() + np.sqrt(c * math.log(t) / self.counts)
        u = np.where(self.counts > 0, u, unseen)
        if cap and self.upper is not None:
            u = np.minimum(u, self.upper)
        return u

    def _record(self, idx: np.ndarray, arm: int, reward: float) -> None:
        self.counts[arm, idx[arm]] += 1
        self.sums[arm, idx[arm]] += reward

    def _policy_action(self, obs, deterministic) -> int:
        """Deterministic: the exact long-run plan on the mean estimates (unseen pairs count as
        the known upper payoff, so the plan does not shun them); otherwise on the UCB indices."""
        idx = self._index(obs)
        unseen = 1.0 if self.upper is not None else float(self.mean_table().max())
        table = np.where(self.counts > 0, self.mean_table(), unseen) if deterministic \
            else self.ucb_table(1.5, unseen, cap=True)
        plan = solve_long_run(self.model, idx, table=table)
        return plan.policy[tuple(int(i) for i in idx)]

    def _saved(self):
        return [*super()._saved(), Tensor("counts", self, "counts"), Tensor("sums", self, "sums")]


_ORACLES = ("lp", "exact")


@dataclass
class CombUCBConfig(AgentConfig):
    """Settings of :class:`ISICombUCB1` and :class:`CombUCB1`.

    Attributes:
        c: exploration coefficient of the index mean + sqrt(c ln t / n); 1.5 as in the paper.
        oracle: block solver: "lp" (the LP relaxation with sequential rounding,
            :class:`BlockOracle`) or "exact" (:func:`exact_block_plan`, exponential in K).
        unseen_value: index of an (arm, delay) pair never observed; None means the authors'
            d sqrt(c ln(K d)) (large, so every pair is tried).
    """

    c: float = 1.5
    oracle: str = "lp"
    unseen_value: float | None = None

    def __post_init__(self) -> None:
        if not (np.isfinite(self.c) and self.c >= 0):
            raise ValueError(f"{type(self).__name__}.c must be a finite number >= 0, got {self.c!r}")
        if self.oracle not in _ORACLES:
            raise ValueError(f"{type(self).__name__}.oracle must be one of {list(_ORACLES)}, got "
                             f"{self.oracle!r}")
        if self.unseen_value is not None and not np.isfinite(self.unseen_value):
            raise ValueError(f"{type(self).__name__}.unseen_value must be finite or None, got "
                             f"{self.unseen_value!r}")


class _BlockLearner(_StateStatsAgent):
    """CombUCB1 on blocks of pulls: at each block start, compute UCB indices of the (arm, delay)
    base arms, let the oracle choose the block, play it, update the indices' statistics."""

    config_cls = CombUCBConfig
    needs_recharging = True
    isi = True

    def __init__(self, env: str | gym.Env, config: CombUCBConfig | None = None, seed: int = 0,
                 log_dir: str | Path | None = None):
        super().__init__(env, config, seed, log_dir)
        self.block_length = self.d + 1 if self.isi else self.d
        self.oracle = BlockOracle(self.model.n_arms, self.block_length, self.d) \
            if self.config.oracle == "lp" else None
        self.plan: list[int] = []
        self._block_pos = 0
        self._pulled_in_block: set[int] = set()

    def _unseen(self) -> float:
        if self.config.unseen_value is not None:
            return float(self.config.unseen_value)
        return self.d * math.sqrt(self.config.c * math.log(max(self.model.n_arms * self.d, 2)))

    def _plan_block(self, idx: np.ndarray) -> list[int]:
        value = self.ucb_table(self.config.c, self._unseen(), cap=False)  # (K, d)
        first = None
        if not self.isi:  # first pulls paid at the counters they will have: min(tau0 + t, d)
            tau0 = self.model.taus[idx]
            cols = np.minimum(tau0[:, None] + np.arange(self.block_length)[None, :], self.d) - 1
            first = value[np.arange(self.model.n_arms)[:, None], cols]  # (K, L)
        if self.oracle is not None:
            return self.oracle.plan(value, first)
        return exact_block_plan(value, self.block_length, first)[1]

    def _on_episode_start(self, obs) -> None:
        self.plan, self._block_pos = [], 0

    def _act(self, obs) -> int:
        if self._block_pos >= len(self.plan):
            self.plan = self._plan_block(self._index(obs))
            self._block_pos = 0
            self._pulled_in_block = set()
        return self.plan[self._block_pos]

    def _observe(self, obs, arm, reward, next_obs) -> None:
        first = arm not in self._pulled_in_block
        self._pulled_in_block.add(arm)
        self._block_pos += 1
        if self.isi and first:
            return  # ISI: a first pull's counter comes from outside the block; ignore it
        self._record(self._index(obs), arm, reward)

    def _extra_state(self):
        return {"plan": list(self.plan), "block_pos": self._block_pos,
                "pulled_in_block": sorted(self._pulled_in_block)}

    def _load_extra_state(self, state) -> None:
        # The saved block was cut by save(); learn() after load starts a new episode and block.
        self.plan, self._block_pos = [], 0
        self._pulled_in_block = set()


class ISICombUCB1(_BlockLearner):
    """ISI-CombUCB1 (Laforgue et al., AISTATS 2022) for recharging bandits with cap d: blocks of
    d + 1 pulls in which first pulls are paid nothing and their rewards are not used, so every
    later pull's delay lies inside the block and each block is a combinatorial semi-bandit round
    over (arm, delay) base arms with UCB indices mean + sqrt(1.5 ln t / n).

    Args:
        env: a recharging :class:`~maxent.envs.lsd.LSDBandit` (or its id).
        config: a :class:`CombUCBConfig`.
        seed: seeds resets.
    """

    kind = "ISICombUCB1"
    isi = True


class CombUCB1(_BlockLearner):
    """Vanilla CombUCB1 on blocks of d pulls: first pulls are paid the index at the counter they
    will actually have and every pull updates its (arm, counter) statistics (the paper's
    baseline without the ISI idea). Arguments as :class:`ISICombUCB1`."""

    kind = "CombUCB1"
    isi = False


@dataclass
class OptimisticConfig(AgentConfig):
    """Settings of :class:`OptimisticPlanner`.

    Attributes:
        c: exploration coefficient of mean + sqrt(c ln t / n).
        replan_every: steps between replans, >= 1.
        max_states: the largest counter-state graph to plan on.
    """

    c: float = 1.5
    replan_every: int = 10
    max_states: int = 200_000

    def __post_init__(self) -> None:
        if not (np.isfinite(self.c) and self.c >= 0):
            raise ValueError(f"OptimisticConfig.c must be a finite number >= 0, got {self.c!r}")
        self.replan_every = _pos_int("replan_every", "OptimisticConfig", self.replan_every)
        self.max_states = _pos_int("max_states", "OptimisticConfig", self.max_states)


class OptimisticPlanner(_StateStatsAgent):
    """Optimism in the face of uncertainty on the whole schedule: every ``replan_every`` steps,
    plan the exact long-run optimum (:func:`solve_long_run`) on upper confidence bounds of every
    mu_i(tau) (capped at 1 for Bernoulli rewards; unseen pairs at the cap), and follow it. Works
    in both forms; every pull updates its (arm, counter) statistics.

    Args:
        env: an :class:`~maxent.envs.lsd.LSDBandit` (or its id).
        config: an :class:`OptimisticConfig`.
        seed: seeds resets.
    """

    kind = "OptimisticPlanner"
    config_cls = OptimisticConfig

    def __init__(self, env: str | gym.Env, config: OptimisticConfig | None = None, seed: int = 0,
                 log_dir: str | Path | None = None):
        super().__init__(env, config, seed, log_dir)
        self.graph = StateGraph(self.model, self.start_index, self.config.max_states)
        check_planner_memory(len(self.graph), self.model.n_arms, self.model.d, None)
        self.policy: dict[tuple[int, ...], int] | None = None
        self._since_plan = 0

    def _act(self, obs) -> int:
        idx = self._index(obs)
        key = tuple(int(i) for i in idx)
        if self.policy is None or self._since_plan >= self.config.replan_every \
                or key not in self.policy:
            unseen = self.upper if self.upper is not None else \
                float(self.mean_table().max()) + 1.0
            table = self.ucb_table(self.config.c, unseen, cap=True)
            graph = self.graph if key in self.graph.node_of else None
            self.policy = solve_long_run(self.model, idx, table=table, graph=graph,
                                         max_states=self.config.max_states).policy
            self._since_plan = 0
        return self.policy[key]

    def _observe(self, obs, arm, reward, next_obs) -> None:
        self._record(self._index(obs), arm, reward)
        self._since_plan += 1

    def _load_extra_state(self, state) -> None:
        self.policy = None
