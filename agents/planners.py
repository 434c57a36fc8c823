"""Planning solvers for last-switch-dependent (LSD) and recharging bandits
(:mod:`maxent.envs.lsd`) that know the payoffs; no agent here, only the maths the agents in
:mod:`maxent.agents.lsd` plan with.

* Exact: the maximum-mean cycle of the deterministic counter-state graph (Karp 1978), the exact
  long-run average and the ground truth for small instances; finite-horizon values.
* LP: the recharging LP relaxation and randomized interleaved rounding (Papadigenopoulos et al.,
  NeurIPS 2022: (1 - 1/e) of the optimum in expectation for non-negative non-decreasing payoffs).
* Blocks: the LP over (arm, delay) base arms that picks a block of pulls (Laforgue et al.,
  AISTATS 2022), and its exact dynamic-programming counterpart.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from maxent.envs.lsd import LSDModel

__all__ = [
    "BlockOracle",
    "ExactPlan",
    "StateGraph",
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
