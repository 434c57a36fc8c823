"""Bandit agents: UCB1, Thompson sampling and a Boltzmann player whose temperature comes from
the maxent layer; and planners and online learners for last-switch-dependent (LSD) and
recharging bandits (:mod:`maxent.envs.lsd`).

* UCB1 (Auer, Cesa-Bianchi & Fischer 2002), Thompson sampling (Beta-Bernoulli or Gaussian) and
  :class:`Boltzmann` (pi proportional to exp(Q / alpha), alpha from
  :mod:`maxent.entropy.temperature`, e.g. ``AutoTemperature`` steering the policy entropy to a target,
  the same controller SAC uses). They treat any discrete-action env as a K-armed bandit.
* Planners that know the payoffs: :class:`ExactPlanner` (maximum-mean cycle of the deterministic
  counter-state graph, Karp 1978: the exact long-run average, the ground truth for small
  instances), :class:`LPPlanner` (LP relaxation and randomized interleaved rounding for
  recharging bandits, after Papadigenopoulos et al., NeurIPS 2022: (1 - 1/e) of the optimum in
  expectation for non-negative non-decreasing payoffs), :class:`GreedyOracle`.
* Online learners: :class:`ISICombUCB1` and :class:`CombUCB1` (Laforgue et al., AISTATS 2022:
  blocks chosen by an LP over (arm, delay) base arms with UCB indices mean + sqrt(1.5 ln t / n))
  and :class:`OptimisticPlanner` (plans the exact long-run optimum on upper confidence bounds).
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import scipy.sparse as sp
import torch
from scipy.optimize import linprog

import maxent.envs  # noqa: F401  (registers maxent/... ids, so load() can gym.make a saved id)
from maxent.training import logging as mlog
from maxent.training.agent import Agent, AgentConfig, restore_arm_counts, setup_arms_agent
from maxent.entropy import categorical_entropy
from maxent.envs.lsd import LSDModel
from maxent.entropy.temperature import AutoTemperature, FixedTemperature, ScheduledTemperature
from maxent.training.vector import check_finite

__all__ = [
    "UCB1",
    "BlockOracle",
    "Boltzmann",
    "BoltzmannConfig",
    "CombUCB1",
    "CombUCBConfig",
    "ExactPlan",
    "ExactPlanner",
    "GreedyConfig",
    "GreedyOracle",
    "ISICombUCB1",
    "LPConfig",
    "LPPlanner",
    "OptimisticConfig",
    "OptimisticPlanner",
    "PlannerConfig",
    "StateGraph",
    "Thompson",
    "ThompsonConfig",
    "UCB1Config",
    "check_planner_memory",
    "exact_block_plan",
    "finite_horizon_values",
    "karp_memory_bytes",
    "max_mean_cycle",
    "recharging_lp",
    "sample_schedule",
    "schedule_long_run_average",
    "solve_long_run",
]


def _pos_int(name: str, owner: str, v: Any, minimum: int = 1) -> int:
    if isinstance(v, bool) or int(v) != v or v < minimum:
        raise ValueError(f"{owner}.{name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


# =========================================================================== planning: exact


class StateGraph:
    """The deterministic graph of counter states reachable from ``start`` (state indices, (K,)).

    Node v holds the counters ``nodes[v]`` (K,); pulling arm a moves to ``nxt[v, a]`` and pays
    ``table[a, nodes[v, a]]`` in expectation. Built by breadth-first search.

    Args:
        model: the :class:`~maxent.envs.lsd.LSDModel` (dynamics and K).
        start: counter state indices of the start state, shape (K,).
        max_states: refuse graphs larger than this (planning is NP-hard; exact planning is for
            small instances).
    """

    def __init__(self, model: LSDModel, start: np.ndarray, max_states: int = 200_000):
        self.model = model
        start = tuple(int(i) for i in np.asarray(start).ravel())
        self.node_of: dict[tuple[int, ...], int] = {start: 0}
        nodes, nxt = [start], []
        queue = deque([start])
        while queue:
            s = queue.popleft()
            arr = np.asarray(s)
            row = []
            for a in range(model.n_arms):
                t = tuple(int(i) for i in model.step_indices(arr, a))
                if t not in self.node_of:
                    if len(nodes) >= max_states:
                        raise ValueError(
                            f"more than max_states={max_states} counter states are reachable "
                            f"(K={model.n_arms}, d={model.d}); exact planning is for small "
                            "instances, use LPPlanner or raise max_states")
                    self.node_of[t] = len(nodes)
                    nodes.append(t)
                    queue.append(t)
                row.append(self.node_of[t])
            nxt.append(row)
        self.nodes = np.asarray(nodes, dtype=np.int64)  # (V, K)
        self.nxt = np.asarray(nxt, dtype=np.int64)  # (V, K)

    def __len__(self) -> int:
        return len(self.nodes)

    def weights(self, table: np.ndarray) -> np.ndarray:
        """Expected payoff of each edge (v, a) under ``table`` (K, S), shape (V, K)."""
        return np.asarray(table)[np.arange(self.model.n_arms)[None, :], self.nodes]


def karp_memory_bytes(n_states: int, n_arms: int) -> int:
    """Peak memory of :func:`max_mean_cycle` on a graph of ``n_states`` nodes, ``n_arms`` edges
    each: the predecessor table of V + 1 rows of V entries dominates."""
    itemsize = 4 if n_arms * n_states < 2**31 else 8
    return itemsize * (n_states + 1) * n_states + 64 * n_states * max(n_arms, 1)


def _memory_budget(max_memory_gb: float | None) -> float:
    """Bytes the exact planner may use: ``max_memory_gb``, or half of the machine's memory."""
    if max_memory_gb is not None:
        return max_memory_gb * 2**30
    try:
        return 0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 4 * 2**30


def check_planner_memory(n_states: int, n_arms: int, d: int, max_memory_gb: float | None) -> None:
    """Refuse, before allocating, an exact plan whose memory would exceed the budget."""
    need, budget = karp_memory_bytes(n_states, n_arms), _memory_budget(max_memory_gb)
    if need > budget:
        raise MemoryError(
            f"exact planning on this instance (K={n_arms}, d={d}: {n_states} counter states) needs "
            f"about {need / 2**30:.1f} GB (memory grows with the square of the state count), more "
            f"than the {budget / 2**30:.1f} GB allowed. Use LPPlanner (recharging bandits), a "
            "smaller d or fewer arms, or raise PlannerConfig.max_memory_gb")


def max_mean_cycle(nxt: np.ndarray, w: np.ndarray) -> tuple[float, list[int], list[int]]:
    """Karp's maximum mean cycle of a graph with out-edges (v, a) -> nxt[v, a] of weight w[v, a].

    D_k(v) is the heaviest walk of exactly k edges ending at v (from any start); the optimal mean
    is max_v min_{k < V} (D_V(v) - D_k(v)) / (V - k) (Karp 1978). The cycle is read off the
    heaviest V-edge walk to the maximising v.

    Returns:
        (mean, cycle nodes, cycle actions): pulling ``actions[j]`` at ``nodes[j]`` leads to
        ``nodes[j + 1]`` (cyclically).
    """
    n, k = nxt.shape
    # In-edges of each node, padded with -1: (V, max in-degree) of flat edge ids v * K + a.
    targets = nxt.ravel()
    order = np.argsort(targets, kind="stable")
    counts = np.bincount(targets, minlength=n)
    width = max(int(counts.max()), 1)
    in_edges = np.full((n, width), -1, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(len(order)) - np.repeat(starts, counts)
    in_edges[targets[order], pos] = order
    valid = in_edges >= 0
    src = np.where(valid, in_edges // k, 0)
    wflat = w.ravel()
    win = np.where(valid, wflat[np.where(valid, in_edges, 0)], -np.inf)  # (V, width)
    rows = np.arange(n)

    def relax(previous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cand = previous[src] + win  # (V, width)
        j = np.argmax(cand, axis=1)
        return cand[rows, j], j

    # Memory is O(V) besides the int32 predecessor table (4 V^2 bytes): D_k rows are computed
    # twice (once up to D_V, once more for the ratios) instead of stored, an (V+1, V) float64
    # table that made large instances exhaust memory (see karp_memory_bytes).
    pred = np.zeros((n + 1, n), dtype=np.int32 if k * n < 2**31 else np.int64)
    row = np.zeros(n)
    for step in range(1, n + 1):
        row, j = relax(row)
        pred[step] = in_edges[rows, j]
    final = row
    per_node = np.full(n, np.inf)
    row = np.zeros(n)
    for step in range(n):
        if step:
            row, _ = relax(row)
        with np.errstate(invalid="ignore"):
            ratio = (final - row) / (n - step)
        per_node = np.minimum(per_node, np.where(np.isfinite(row), ratio, np.inf))
    per_node = np.where(np.isfinite(final), per_node, -np.inf)
    v = int(np.argmax(per_node))
    best = float(per_node[v])
    # The heaviest walk of V edges ending at v repeats a node; its cycles include an optimal one.
    walk_nodes, walk_edges = [v], []
    node = v
    for step in range(n, 0, -1):
        e = int(pred[step, node])
        walk_edges.append(e)
        node = e // k
        walk_nodes.append(node)
    walk_nodes.reverse()
    walk_edges.reverse()  # walk_edges[i] goes walk_nodes[i] -> walk_nodes[i + 1]
    found: tuple[float, list[int], list[int]] | None = None
    last_seen: dict[int, int] = {}
    for i, u in enumerate(walk_nodes):
        if u in last_seen:
            j = last_seen[u]
            edges = walk_edges[j:i]
            mean = float(np.mean(wflat[edges]))
            if found is None or mean > found[0] + 1e-12:
                found = (mean, [e // k for e in edges], [e % k for e in edges])
        last_seen[u] = i
    if found is None or found[0] < best - 1e-9 * max(1.0, abs(best)):
        raise RuntimeError(f"Karp cycle extraction failed: best cycle mean "
                           f"{None if found is None else found[0]} below the optimum {best}")
    return best, found[1], found[2]


@dataclass
class ExactPlan:
    """An optimal stationary policy over counter states and its long-run average ``gain``.

    Attributes:
        gain: optimal long-run average expected payoff from the start state.
        policy: counter state indices (tuple) -> arm, for every reachable state.
        cycle: the optimal cycle as (state tuple, arm) pairs.
    """

    gain: float
    policy: dict[tuple[int, ...], int]
    cycle: list[tuple[tuple[int, ...], int]]


def solve_long_run(model: LSDModel, start: np.ndarray, table: np.ndarray | None = None,
                   graph: StateGraph | None = None, max_states: int = 200_000,
                   max_memory_gb: float | None = None) -> ExactPlan:
    """The optimal long-run average payoff and a policy reaching it (exact; small instances).

    Every policy from ``start`` ends on a cycle of the deterministic state graph, so the optimum
    is its maximum mean cycle (:func:`max_mean_cycle`); the policy follows that cycle and, off it,
    the shortest path to it.

    Args:
        model: the instance's dynamics.
        start: counter state indices (K,) to plan from.
        table: payoffs to plan on (K, S); default ``model.table`` (planners on estimates pass
            theirs).
        graph: a prebuilt :class:`StateGraph` containing ``start`` (reused across replans).
        max_states: passed to :class:`StateGraph`.
        max_memory_gb: the memory the solver may use (default half the machine's); a larger need
            raises ``MemoryError`` with the estimate before anything large is allocated.
    """
    graph = StateGraph(model, start, max_states) if graph is None else graph
    check_planner_memory(len(graph), model.n_arms, model.d, max_memory_gb)
    w = graph.weights(model.table if table is None else table)
    gain, cyc_nodes, cyc_arms = max_mean_cycle(graph.nxt, w)
    arm_of = np.full(len(graph), -1, dtype=np.int64)
    arm_of[cyc_nodes] = cyc_arms
    # Reverse breadth-first search from the cycle: each other node steps towards it.
    reverse: list[list[tuple[int, int]]] = [[] for _ in range(len(graph))]
    for v in range(len(graph)):
        for a in range(model.n_arms):
            reverse[graph.nxt[v, a]].append((v, a))
    queue = deque(cyc_nodes)
    while queue:
        u = queue.popleft()
        for v, a in reverse[u]:
            if arm_of[v] < 0:
                arm_of[v] = a
                queue.append(v)
    # States that cannot reach the cycle (none in LSD/recharging graphs): best immediate payoff.
    lost = arm_of < 0
    arm_of[lost] = np.argmax(w[lost], axis=1)
    nodes = [tuple(int(i) for i in s) for s in graph.nodes]
    policy = dict(zip(nodes, arm_of.tolist()))
    return ExactPlan(gain, policy, [(nodes[v], a) for v, a in zip(cyc_nodes, cyc_arms)])


def finite_horizon_values(model: LSDModel, start: np.ndarray, horizon: int,
                          table: np.ndarray | None = None) -> np.ndarray:
    """Optimal expected total payoff of the first T pulls from ``start``, for T = 1..horizon.

    Backward induction on the state graph: V_T(s) = max_a mu_a(s_a) + V_{T-1}(next(s, a)).

    Returns:
        Shape (horizon,): entry T - 1 is the best expected total of T pulls.
    """
    graph = StateGraph(model, start)
    w = graph.weights(model.table if table is None else table)
    val = np.zeros(len(graph))
    out = np.empty(horizon)
    for t in range(horizon):
        val = (w + val[graph.nxt]).max(axis=1)
        out[t] = val[0]
    return out


# =========================================================================== planning: LP


def recharging_lp(table: np.ndarray) -> tuple[float, np.ndarray]:
    """LP relaxation of recharging-bandit planning (Papadigenopoulos et al., NeurIPS 2022).

    x[i, tau] is the long-run fraction of rounds in which arm i is pulled with delay tau since
    its previous pull (tau = d standing for delays >= d, paid mu_i(d)):

        max  sum_{i,tau} mu_i(tau) x[i, tau]
        s.t. sum_{i,tau} x[i, tau] = 1               (one pull per round)
             sum_tau tau * x[i, tau] <= 1  for all i  (an arm's delays add up to at most time)
             x >= 0.

    Any schedule's frequencies are feasible (its capped delays sum to at most the elapsed time),
    so the LP value bounds the optimal long-run average from above.

    Args:
        table: recharging payoffs mu[i, tau - 1], shape (K, d).

    Returns:
        (LP value, x of shape (K, d)).
    """
    table = np.asarray(table, dtype=np.float64)
    k, d = table.shape
    taus = np.arange(1, d + 1, dtype=np.float64)
    a_ub = sp.kron(sp.eye(k), taus[None, :]).tocsr()  # (K, K*d)
    a_eq = np.ones((1, k * d))
    res = linprog(-table.ravel(), A_ub=a_ub, b_ub=np.ones(k), A_eq=a_eq, b_eq=[1.0],
                  bounds=(0, None), method="highs")
    if res.status != 0:
        raise RuntimeError(f"the recharging LP failed: {res.message}")
    return float(-res.fun), np.maximum(res.x.reshape(k, d), 0.0)


def sample_schedule(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Randomized rounding of the LP solution into periodic intentions.

    Arm i draws its period tau with probability tau * x[i, tau] (inactive with the rest) and a
    uniform offset in [0, tau): it is a *candidate* at rounds offset + m * tau. Candidacies are
    independent across arms and arm i is a candidate in a round with probability
    sum_tau x[i, tau], so these sum to 1 over arms.

    Returns:
        (periods (K,), 0 for inactive arms; offsets (K,)).
    """
    k, d = x.shape
    taus = np.arange(1, d + 1)
    periods = np.zeros(k, dtype=np.int64)
    offsets = np.zeros(k, dtype=np.int64)
    for i in range(k):
        p = taus * x[i]
        total = p.sum()
        if total > 1.0:  # LP round-off
            p = p / total
        u = rng.random()
        c = np.cumsum(p)
        j = int(np.searchsorted(c, u, side="right"))
        if j < d:
            periods[i] = taus[j]
            offsets[i] = rng.integers(taus[j])
    return periods, offsets


def _schedule_arm(model: LSDModel, periods: np.ndarray, offsets: np.ndarray, t: int,
                  idx: np.ndarray) -> int:
    """The arm the rounded schedule pulls at round t with counter indices ``idx``.

    Among candidates (arms whose intended round is t) the one paying most now wins: with
    independent candidacies summing to 1 per round, E[max over candidates] >= (1 - 1/e) times the
    LP value (correlation gap), and monotone payoffs only grow while a loser waits. A round with
    no candidate goes to an arm that loses nothing by it: an inactive arm, or one whose payoff
    after resting until its next intended round is already its planned mu_i(tau_i); failing
    that, to the arm with the largest immediate payoff minus the planned payoff it gives up.
    """
    table = model.table
    arms = np.arange(model.n_arms)
    active = periods > 0
    now = table[arms, idx]
    cand = active & ((t - offsets) % np.maximum(periods, 1) == 0)
    if cand.any():
        return int(np.argmax(np.where(cand, now, -np.inf)))
    per = np.maximum(periods, 1)
    gap = (offsets - t) % per  # rounds until the next intended pull (>= 1 here)
    planned = table[arms, np.minimum(per, model.d) - 1]
    after_fill = table[arms, np.minimum(gap, model.d) - 1]
    loss = np.where(active, np.maximum(planned - after_fill, 0.0), 0.0)
    return int(np.argmax(now - loss))


def schedule_long_run_average(model: LSDModel, periods: np.ndarray, offsets: np.ndarray,
                              start: np.ndarray, max_steps: int = 200_000) -> float:
    """Exact long-run average expected payoff of a rounded schedule from ``start``.

    The schedule is deterministic in (counters, t mod lcm(periods)), so it becomes periodic; the
    average over the detected cycle is returned (over the second half of ``max_steps`` if no
    repeat is found).
    """
    active = periods[periods > 0]
    period = math.lcm(*active.tolist()) if active.size else 1
    idx = np.asarray(start, dtype=np.int64).copy()
    seen: dict[tuple, int] = {}
    payoffs: list[float] = []
    for t in range(max_steps):
        key = (t % period, *idx.tolist())
        if key in seen:
            return float(np.mean(payoffs[seen[key]:]))
        seen[key] = t
        a = _schedule_arm(model, periods, offsets, t, idx)
        payoffs.append(model.payoff(idx, a))
        idx = model.step_indices(idx, a)
    return float(np.mean(payoffs[max_steps // 2:]))


# =========================================================================== planning: blocks


class BlockOracle:
    """LP relaxation of the block problem of (ISI-)CombUCB1 (Laforgue et al., AISTATS 2022).

    A block is L consecutive pulls. Base arms are (arm i, delay tau): x[i, t] marks arm i's first
    pull of the block at position t (paid ``first[i, t]``), y[i, tau, t] a later pull at t whose
    previous pull was at t - tau (paid ``value[i, tau - 1]``). Constraints (one pull per
    position; at most one first pull per arm; a later pull needs the pull tau positions before
    and none in between; a pull has at most one successor) are exact for 0/1 points. The
    relaxation is solved with HiGHS and rounded by conditional re-solves: at the first fractional
    position each arm the LP gives mass to is fixed in turn with the prefix, the LP re-solved,
    and the best kept, until the solution is integral.

    Args:
        n_arms: K.
        length: L, the block length (d + 1 for ISI-CombUCB1, d for CombUCB1), >= 1.
        d: the largest delay paid by ``value`` (delays within a block are < L <= d + 1).
    """

    def __init__(self, n_arms: int, length: int, d: int):
        self.k, self.L, self.d = n_arms, length, d
        k, L = n_arms, length
        self.n_x = k * L
        taus = np.arange(1, d + 1)
        self.n_var = self.n_x + k * d * L

        def xv(i: int, t: int) -> int:
            return i * L + t

        def yv(i: int, tau: int, t: int) -> int:
            return self.n_x + (i * d + tau - 1) * L + t

        self._xv, self._yv = xv, yv
        # Variables at each position (for fixing prefixes and decoding).
        self.at_position = [[xv(i, t) for i in range(k)]
                            + [yv(i, tau, t) for i in range(k) for tau in taus] for t in range(L)]
        self.arm_of_var = np.empty(self.n_var, dtype=np.int64)
        for i in range(k):
            self.arm_of_var[[xv(i, t) for t in range(L)]] = i
            self.arm_of_var[[yv(i, tau, t) for tau in taus for t in range(L)]] = i
        ub = np.ones(self.n_var)
        for i in range(k):
            for tau in taus:
                for t in range(L):
                    if tau > t:
                        ub[yv(i, tau, t)] = 0.0  # the previous pull would precede the block
        self.ub = ub

        def pulls(i: int, t: int) -> list[int]:
            return [xv(i, t)] + [yv(i, tau, t) for tau in taus]

        rows, cols, vals = [], [], []
        r = 0
        b_ub: list[float] = []
        eq_rows, eq_cols = [], []
        for t in range(L):
            for v in self.at_position[t]:
                eq_rows.append(t)
                eq_cols.append(v)
        for i in range(k):  # at most one first pull
            for t in range(L):
                rows.append(r)
                cols.append(xv(i, t))
                vals.append(1.0)
            r += 1
            b_ub.append(1.0)
        for i in range(k):
            for t in range(L):
                # a later pull only after a first pull
                for tau in taus:
                    rows.append(r), cols.append(yv(i, tau, t)), vals.append(1.0)
                for s in range(t):
                    rows.append(r), cols.append(xv(i, s)), vals.append(-1.0)
                r += 1
                b_ub.append(0.0)
                # y[i, tau, t] <= pulled(i, t - tau): the previous pull happened
                for tau in taus:
                    if tau > t:
                        continue
                    rows.append(r), cols.append(yv(i, tau, t)), vals.append(1.0)
                    for v in pulls(i, t - tau):
                        rows.append(r), cols.append(v), vals.append(-1.0)
                    r += 1
                    b_ub.append(0.0)
                # sum_tau y[i, tau, t + tau] <= pulled(i, t): a pull has at most one successor
                succ = [int(tau) for tau in taus if t + tau < L]
                if succ:
                    for tau in succ:
                        rows.append(r), cols.append(yv(i, tau, t + tau)), vals.append(1.0)
                    for v in pulls(i, t):
                        rows.append(r), cols.append(v), vals.append(-1.0)
                    r += 1
                    b_ub.append(0.0)
                # sum_{tau > t - s} y[i, tau, t] + pulled(i, s) <= 1: no pull in between
                for s in range(t):
                    for tau in taus[taus > t - s]:
                        rows.append(r), cols.append(yv(i, int(tau), t)), vals.append(1.0)
                    for v in pulls(i, s):
                        rows.append(r), cols.append(v), vals.append(1.0)
                    r += 1
                    b_ub.append(1.0)
        self.a_ub = sp.csr_matrix((vals, (rows, cols)), shape=(r, self.n_var))
        self.b_ub = np.array(b_ub)
        self.a_eq = sp.csr_matrix((np.ones(len(eq_rows)), (eq_rows, eq_cols)),
                                  shape=(L, self.n_var))
        self.b_eq = np.ones(L)
        self.lp_solves = 0

    def encode(self, seq: Sequence[int]) -> np.ndarray:
        """0/1 variable values of a (partial) pull sequence, shape (n_var,)."""
        z = np.zeros(self.n_var)
        last = [-1] * self.k
        for t, a in enumerate(seq):
            z[self._xv(a, t) if last[a] < 0 else self._yv(a, t - last[a], t)] = 1.0
            last[a] = t
        return z

    def _solve(self, c: np.ndarray, lb: np.ndarray, ub: np.ndarray):
        self.lp_solves += 1
        res = linprog(c, A_ub=self.a_ub, b_ub=self.b_ub, A_eq=self.a_eq, b_eq=self.b_eq,
                      bounds=np.stack([lb, ub], axis=1), method="highs-ds",
                      options={"presolve": False})  # presolve costs more than it saves here
        return res if res.status == 0 else None

    def _decode(self, z: np.ndarray) -> list[int]:
        return [int(self.arm_of_var[p[int(np.argmax(z[p]))]]) for p in self.at_position]

    def plan(self, value: np.ndarray, first: np.ndarray | None = None) -> list[int]:
        """Choose the block's L pulls.

        Args:
            value: (K, d) payoff (e.g. UCB index) of a later pull with delay tau, column tau - 1.
            first: (K, L) payoff of a first pull at each position; None pays 0 (ISI).
        """
        c = np.zeros(self.n_var)
        if first is not None:
            c[:self.n_x] = -np.asarray(first, dtype=np.float64).ravel()
        c[self.n_x:] = -np.repeat(np.asarray(value, dtype=np.float64).ravel(), self.L)
        c = np.where(self.ub > 0, c, 0.0)
        lb = np.zeros(self.n_var)
        res = self._solve(c, lb, self.ub)
        if res is None:
            raise RuntimeError("the block LP is infeasible; this is a bug")
        while not _integral(res.x):
            # Positions before the first fractional one are integral: fix them as they are (the
            # LP optimum stays feasible); at that position try each arm the LP gives mass to.
            t = next(t for t, p in enumerate(self.at_position) if not _integral(res.x[p]))
            prefix = self._decode(res.x)[:t]
            mass = np.zeros(self.k)
            np.add.at(mass, self.arm_of_var[self.at_position[t]], res.x[self.at_position[t]])
            fixed_vars = [v for p in self.at_position[:t + 1] for v in p]
            best = None
            for a in np.flatnonzero(mass > 1e-9):
                z = self.encode(prefix + [int(a)])
                lo, hi = lb.copy(), self.ub.copy()
                lo[fixed_vars] = z[fixed_vars]
                hi[fixed_vars] = z[fixed_vars]
                if np.any(lo > hi):  # the fixed value is outside a zero bound
                    continue
                r = self._solve(c, lo, hi)
                if r is not None and (best is None or r.fun < best.fun - 1e-12):
                    best = r
            if best is None:
                raise RuntimeError("block LP rounding found no feasible extension; this is a bug")
            res = best
        return self._decode(res.x)


def _integral(z: np.ndarray, tol: float = 1e-6) -> bool:
    return bool(np.all(np.abs(z - np.round(z)) < tol))


def exact_block_plan(value: np.ndarray, length: int, first: np.ndarray | None = None
                     ) -> tuple[float, list[int]]:
    """The best block of ``length`` pulls by dynamic programming over the last-pull positions
    (exact; exponential in K). Same payoffs as :meth:`BlockOracle.plan`; returns (value, seq)."""
    k = value.shape[0]
    frontier: dict[tuple[int, ...], tuple[float, list[int]]] = {(-1,) * k: (0.0, [])}
    for t in range(length):
        nxt: dict[tuple[int, ...], tuple[float, list[int]]] = {}
        for last, (val, seq) in frontier.items():
            for a in range(k):
                gain = (0.0 if first is None else float(first[a, t])) if last[a] < 0 \
                    else float(value[a, t - last[a] - 1])
                key = tuple(t if i == a else last[i] for i in range(k))
                if key not in nxt or val + gain > nxt[key][0]:
                    nxt[key] = (val + gain, seq + [a])
        frontier = nxt
    return max(frontier.values(), key=lambda vs: vs[0])


# =========================================================================== agents: shared


class _Bandit(Agent):
    """Bookkeeping and checkpointing shared by every agent here (the loop itself is
    :class:`maxent.training.agent.Agent`'s); subclasses supply ``_act(obs)`` (the arm to pull),
    ``_observe(...)`` (after a step), their tensors and state. One ``learn`` step is one pull."""

    config_cls: type = AgentConfig

    def __init__(self, env: str | gym.Env, config: Any = None, seed: int = 0,
                 log_dir: str | Path | None = None):
        setup_arms_agent(self, env, config, seed, log_dir)
        self.rewards: list[float] = []  # realised reward of every pull
        self.expected_rewards: list[float] = []  # info["expected_reward"] when the env gives it

    # -- to override
    def _act(self, obs: np.ndarray) -> int:
        raise NotImplementedError

    def _observe(self, obs: np.ndarray, arm: int, reward: float, next_obs: np.ndarray) -> None:
        pass

    def _on_episode_start(self, obs: np.ndarray) -> None:
        pass

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def _load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        pass

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def _policy_action(self, obs: np.ndarray, deterministic: bool) -> int:
        raise NotImplementedError

    # -- the Agent surface
    def _learn_step(self) -> None:
        if self._obs is None:
            self._obs, _ = self.env.reset(seed=int(self.np_rng.integers(2**31 - 1)))
            self._on_episode_start(np.asarray(self._obs))
        obs = np.asarray(self._obs)
        arm = self._act(obs)
        next_obs, reward, terminated, truncated, info = self.env.step(arm)
        reward = float(reward)
        check_finite(np.asarray(reward), "reward", self.num_timesteps + 1)
        self.num_timesteps += 1
        self.arm_counts[arm] += 1
        self.rewards.append(reward)
        if "expected_reward" in info:
            self.expected_rewards.append(float(info["expected_reward"]))
        self._episode_return += reward
        self._observe(obs, arm, reward, np.asarray(next_obs))
        if terminated or truncated:
            self.episode_returns.append(self._episode_return)
            self._episode_return = 0.0
            self._obs = None
        else:
            self._obs = next_obs

    def _log_metrics(self) -> None:
        if self.rewards:
            self.logger.record(mlog.REWARD, float(np.mean(self.rewards[-self._log_interval:])))

    def predict(self, observation: Any = None, deterministic: bool = True) -> int | np.ndarray:
        """The arm to pull at ``observation``; an array of arms for a batch (leading dim)."""
        space = self.env.observation_space
        obs = None if observation is None else np.asarray(observation)
        if obs is not None and space.shape is not None and obs.ndim == len(space.shape) + 1:
            return np.array([self._policy_action(o, deterministic) for o in obs], dtype=np.int64)
        return self._policy_action(obs, deterministic)

    def _checkpoint(self):
        """Config, statistics, bookkeeping and RNG state. The episode in flight is not saved:
        ``learn`` after ``load`` starts a new one."""
        tensors = self._tensors()
        tensors["arm_counts"] = torch.from_numpy(self.arm_counts.copy())
        state = {
            "n_arms": self.n_arms,
            "episode_returns": list(self.episode_returns),
            "rng_numpy": self.np_rng.bit_generator.state,
            **self._extra_state(),
        }
        arrays = {"rewards": np.asarray(self.rewards, dtype=np.float64),
                  "expected_rewards": np.asarray(self.expected_rewards, dtype=np.float64)}
        return tensors, state, arrays

    def _restore(self, ckpt: Any, path: Path) -> None:
        restore_arm_counts(self, ckpt, path)
        if ckpt.arrays is not None:
            self.rewards = ckpt.arrays["rewards"].tolist()
            self.expected_rewards = ckpt.arrays["expected_rewards"].tolist()
        self._load_extra_state(ckpt.state)


class _MeanBandit(_Bandit):
    """Keeps per-arm pull counts and reward sums; the observation is ignored (a K-armed bandit)."""

    def __init__(self, env: str | gym.Env, config: Any = None, seed: int = 0,
                 log_dir: str | Path | None = None):
        super().__init__(env, config, seed, log_dir)
        self.reward_sums = np.zeros(self.n_arms, dtype=np.float64)
        self.reward_sq_sums = np.zeros(self.n_arms, dtype=np.float64)

    def means(self) -> np.ndarray:
        """Empirical mean reward per arm (0 for arms never pulled), shape (K,)."""
        return self.reward_sums / np.maximum(self.arm_counts, 1)

    def _observe(self, obs, arm, reward, next_obs) -> None:
        self.reward_sums[arm] += reward
        self.reward_sq_sums[arm] += reward * reward

    def _best_mean_arm(self) -> int:
        if not np.any(self.arm_counts):
            return 0
        return int(np.argmax(np.where(self.arm_counts > 0, self.means(), -np.inf)))

    def _policy_action(self, obs, deterministic) -> int:
        return self._best_mean_arm() if deterministic else self._act(obs)

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {"reward_sums": torch.from_numpy(self.reward_sums.copy()),
                "reward_sq_sums": torch.from_numpy(self.reward_sq_sums.copy())}

    def _load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        for name in ("reward_sums", "reward_sq_sums"):
            v = tensors[name].numpy().astype(np.float64)
            if v.shape != (self.n_arms,):
                raise ValueError(f"saved {name} has shape {v.shape}, env has {self.n_arms} arms")
            setattr(self, name, v.copy())


# =========================================================================== UCB1, Thompson


@dataclass
class UCB1Config(AgentConfig):
    """Settings of :class:`UCB1`.

    Attributes:
        c: exploration coefficient; index mean_a + sqrt(c ln t / n_a); 2.0 is UCB1.
    """

    c: float = 2.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.c) and self.c >= 0):
            raise ValueError(f"UCB1Config.c must be a finite number >= 0, got {self.c!r}")


class UCB1(_MeanBandit):
    """UCB1 (Auer et al. 2002): every arm once, then argmax mean + sqrt(c ln t / n); ties go to
    the lowest index. ``predict(deterministic=True)`` plays the best empirical mean.

    Args:
        env: any env with a ``Discrete`` action space (an id or an instance).
        config: a :class:`UCB1Config`; default ``UCB1Config()``.
        seed: seeds the episode resets.
    """

    kind = "UCB1"
    config_cls = UCB1Config

    def index(self) -> np.ndarray:
        """The UCB index of each arm (+inf for arms never pulled), shape (K,)."""
        n = self.arm_counts
        t = max(int(n.sum()), 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            bonus = np.sqrt(self.config.c * math.log(t) / n)
        return np.where(n > 0, self.means() + bonus, np.inf)

    def _act(self, obs) -> int:
        return int(np.argmax(self.index()))


_LIKELIHOODS = ("auto", "bernoulli", "gaussian")


@dataclass
class ThompsonConfig(AgentConfig):
    """Settings of :class:`Thompson`.

    Attributes:
        likelihood: "bernoulli" (Beta posterior; rewards in [0, 1], non-binary rewards are
            binarised by a Bernoulli(r) draw, Agrawal & Goyal 2012), "gaussian" (normal posterior
            with known noise) or "auto" (Bernoulli when the env says its rewards are Bernoulli,
            ``env.unwrapped.reward_kind``, else Gaussian).
        prior_alpha: Beta prior successes, > 0.
        prior_beta: Beta prior failures, > 0.
        noise_std: Gaussian reward noise standard deviation, > 0.
        prior_std: standard deviation of the Gaussian prior on each mean (centred at 0), > 0.
    """

    likelihood: str = "auto"
    prior_alpha: float = 1.0
    prior_beta: float = 1.0
    noise_std: float = 1.0
    prior_std: float = 10.0

    def __post_init__(self) -> None:
        if self.likelihood not in _LIKELIHOODS:
            raise ValueError(f"ThompsonConfig.likelihood must be one of {list(_LIKELIHOODS)}, "
                             f"got {self.likelihood!r}")
        for name in ("prior_alpha", "prior_beta", "noise_std", "prior_std"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"ThompsonConfig.{name} must be a finite number > 0, got {v!r}")


class Thompson(_MeanBandit):
    """Thompson sampling: draw a mean for every arm from its posterior, pull the largest.

    Args:
        env: any env with a ``Discrete`` action space.
        config: a :class:`ThompsonConfig`; default ``ThompsonConfig()``.
        seed: seeds posterior draws and resets.
    """

    kind = "Thompson"
    config_cls = ThompsonConfig

    def __init__(self, env: str | gym.Env, config: ThompsonConfig | None = None, seed: int = 0,
                 log_dir: str | Path | None = None):
        super().__init__(env, config, seed, log_dir)
        lik = self.config.likelihood
        if lik == "auto":
            lik = "bernoulli" if getattr(self.env.unwrapped, "reward_kind", None) == "bernoulli" \
                else "gaussian"
        self.likelihood = lik
        self.successes = np.zeros(self.n_arms)  # Bernoulli posterior counts

    def posterior_samples(self) -> np.ndarray:
        """One draw of every arm's mean from its posterior, shape (K,)."""
        cfg = self.config
        if self.likelihood == "bernoulli":
            a = cfg.prior_alpha + self.successes
            b = cfg.prior_beta + self.arm_counts - self.successes
            return self.np_rng.beta(a, b)
        prec = 1.0 / cfg.prior_std**2 + self.arm_counts / cfg.noise_std**2
        mean = (self.reward_sums / cfg.noise_std**2) / prec
        return mean + self.np_rng.standard_normal(self.n_arms) / np.sqrt(prec)

    def _act(self, obs) -> int:
        return int(np.argmax(self.posterior_samples()))

    def _observe(self, obs, arm, reward, next_obs) -> None:
        super()._observe(obs, arm, reward, next_obs)
        if self.likelihood == "bernoulli":
            if not 0.0 <= reward <= 1.0:
                raise ValueError(f"Bernoulli Thompson sampling needs rewards in [0, 1], got "
                                 f"{reward}; use ThompsonConfig(likelihood='gaussian')")
            # Binary rewards count as they are; others by a Bernoulli(r) draw.
            self.successes[arm] += reward if reward in (0.0, 1.0) else \
                float(self.np_rng.random() < reward)

    def _tensors(self):
        return {**super()._tensors(), "successes": torch.from_numpy(self.successes.copy())}

    def _load_tensors(self, tensors) -> None:
        super()._load_tensors(tensors)
        self.successes = tensors["successes"].numpy().astype(np.float64).copy()


# =========================================================================== Boltzmann


_TEMPERATURES = ("fixed", "scheduled", "auto")


@dataclass
class BoltzmannConfig(AgentConfig):
    """Settings of :class:`Boltzmann`.

    Attributes:
        temperature: "auto" (``AutoTemperature``: alpha by dual descent towards
            ``target_entropy`` of the policy), "fixed" (``FixedTemperature(alpha)``) or
            "scheduled" (``ScheduledTemperature(alpha, alpha_end, schedule_steps)``).
        alpha: the fixed alpha, the initial alpha of "auto", the start of "scheduled"; > 0.
        target_entropy: target policy entropy in nats for "auto", in (0, ln K); None means
            0.5 ln K.
        lr: Adam learning rate of log alpha for "auto", > 0.
        alpha_end: alpha at the end of the schedule, > 0.
        schedule_steps: length of the schedule in steps, >= 1.
        schedule: "linear", "exponential" or "cosine".
    """

    temperature: str = "auto"
    alpha: float = 1.0
    target_entropy: float | None = None
    lr: float = 0.02
    alpha_end: float = 0.01
    schedule_steps: int = 1000
    schedule: str = "exponential"

    def __post_init__(self) -> None:
        if self.temperature not in _TEMPERATURES:
            raise ValueError(f"BoltzmannConfig.temperature must be one of {list(_TEMPERATURES)}, "
                             f"got {self.temperature!r}")
        for name in ("alpha", "lr", "alpha_end"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"BoltzmannConfig.{name} must be a finite number > 0, got {v!r}")
        if self.target_entropy is not None and not (np.isfinite(self.target_entropy)
                                                    and self.target_entropy > 0):
            raise ValueError(f"BoltzmannConfig.target_entropy must be > 0 nats or None, got "
                             f"{self.target_entropy!r}")
        self.schedule_steps = _pos_int("schedule_steps", "BoltzmannConfig", self.schedule_steps)


class Boltzmann(_MeanBandit):
    """Softmax player pi(a) proportional to exp(Q_a / alpha), Q the empirical means, with alpha
    from a :mod:`maxent.entropy.temperature` controller: the layer that sets SAC's temperature sets this
    one. With ``temperature="auto"`` each step calls ``AutoTemperature.update(entropy=H(pi))``, which
    raises alpha while the policy entropy H(pi) (:func:`maxent.entropy.categorical_entropy`) is
    below the target and lowers it above.

    Args:
        env: any env with a ``Discrete`` action space.
        config: a :class:`BoltzmannConfig`; default ``BoltzmannConfig()``.
        seed: seeds the action draws and resets.

    Attributes:
        entropy_history: policy entropy at every step; ``alpha_history``: alpha at every step.
    """

    kind = "Boltzmann"
    config_cls = BoltzmannConfig

    def __init__(self, env: str | gym.Env, config: BoltzmannConfig | None = None, seed: int = 0,
                 log_dir: str | Path | None = None):
        super().__init__(env, config, seed, log_dir)
        cfg = self.config
        max_h = math.log(self.n_arms)
        self.target_entropy = 0.5 * max_h if cfg.target_entropy is None else cfg.target_entropy
        if cfg.temperature == "auto":
            if self.n_arms < 2 or not self.target_entropy < max_h:
                raise ValueError(f"BoltzmannConfig.target_entropy must lie in (0, ln K = "
                                 f"{max_h:.4f}) for K={self.n_arms} arms, got {self.target_entropy}")
            self.controller: Any = AutoTemperature(self.target_entropy, initial_alpha=cfg.alpha,
                                                   lr=cfg.lr)
        elif cfg.temperature == "fixed":
            self.controller = FixedTemperature(cfg.alpha)
        else:
            self.controller = ScheduledTemperature(cfg.alpha, cfg.alpha_end, cfg.schedule_steps,
                                                   schedule=cfg.schedule)
        self.entropy_history: list[float] = []
        self.alpha_history: list[float] = []

    @property
    def alpha(self) -> float:
        """The current temperature."""
        return float(self.controller.value)

    def logits(self) -> torch.Tensor:
        """Q / alpha, shape (K,), float64."""
        return torch.from_numpy(self.means()) / self.alpha

    def policy(self) -> np.ndarray:
        """pi = softmax(Q / alpha), shape (K,)."""
        return torch.softmax(self.logits(), -1).numpy()

    def policy_entropy(self) -> float:
        """H(pi) in nats."""
        return float(categorical_entropy(self.logits()))

    def _act(self, obs) -> int:
        p = self.policy()
        return int(min(np.searchsorted(np.cumsum(p), self.np_rng.random() * p.sum(),
                                       side="right"), self.n_arms - 1))

    def _observe(self, obs, arm, reward, next_obs) -> None:
        super()._observe(obs, arm, reward, next_obs)
        h = self.policy_entropy()
        self.entropy_history.append(h)
        self.alpha_history.append(self.alpha)
        if self.config.temperature == "auto":
            self.controller.update(entropy=torch.tensor(h))
        elif self.config.temperature == "scheduled":
            self.controller.update(step=self.num_timesteps)

    def _extra_state(self) -> dict[str, Any]:
        ctrl = {k: (float(v) if torch.is_tensor(v) else v)
                for k, v in self.controller.state_dict().items()}
        return {"controller": ctrl, "entropy_history": self.entropy_history,
                "alpha_history": self.alpha_history}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.controller.load_state_dict(state["controller"])
        self.entropy_history = [float(h) for h in state["entropy_history"]]
        self.alpha_history = [float(a) for a in state["alpha_history"]]


# =========================================================================== LSD agents


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

    def _tensors(self):
        return {"counts": torch.from_numpy(self.counts.copy()),
                "sums": torch.from_numpy(self.sums.copy())}

    def _load_tensors(self, tensors) -> None:
        for name in ("counts", "sums"):
            v = tensors[name].numpy().astype(np.float64)
            if v.shape != self.counts.shape:
                raise ValueError(f"saved {name} has shape {v.shape}, env needs {self.counts.shape}")
            setattr(self, name, v.copy())


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
