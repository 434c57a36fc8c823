"""Online learning on the reference LSD instance (Laforgue et al., AISTATS 2022, supplementary
experiment: recharging form, K = 2, d = 10, T = 3300, Bernoulli rewards).

Runs ISI-CombUCB1, CombUCB1, the optimistic planner, the greedy oracle, UCB1, Thompson sampling
and the Boltzmann player over several seeds; reports mean cumulative reward, regret against the
exact finite-horizon optimum (dynamic programming over counter states), and the exponent p of a
fit regret(t) ~ c t^p over the second half of the horizon. Writes ``results.csv``,
``curves.csv`` and ``lsd_online.png`` into ``--out``.

    python examples/lsd_online.py --seeds 10 --horizon 3300
"""

from __future__ import annotations

import argparse
import csv
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ALGOS = ("ISICombUCB1", "CombUCB1", "OptimisticPlanner", "GreedyOracle", "UCB1", "Thompson",
         "Boltzmann")
LSD_AWARE = ("ISICombUCB1", "CombUCB1", "OptimisticPlanner")


def run_one(args: tuple[str, int, int, str]) -> tuple[str, int, np.ndarray, float]:
    """One (algorithm, seed) run; returns the per-step expected rewards and the wall time."""
    import torch

    import maxent.agents
    from maxent.agents import lsd
    from maxent.envs.lsd import LSDBandit

    torch.set_num_threads(1)
    name, seed, horizon, oracle = args
    env = LSDBandit.reference(form="recharging", horizon=horizon)
    cls = getattr(maxent.agents, name)  # UCB1 is a K-armed agent, the rest LSD learners
    config = lsd.CombUCBConfig(oracle=oracle) if name in ("ISICombUCB1", "CombUCB1") else None
    start = time.perf_counter()
    agent = cls(env, config=config, seed=seed).learn(horizon)
    return name, seed, np.asarray(agent.expected_rewards), time.perf_counter() - start


def fit_exponent(t: np.ndarray, regret: np.ndarray) -> tuple[float, float]:
    """Least-squares fit of log regret = log c + p log t; returns (p, c)."""
    keep = regret > 0
    p, logc = np.polyfit(np.log(t[keep]), np.log(regret[keep]), 1)
    return float(p), float(np.exp(logc))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--horizon", type=int, default=3300)
    parser.add_argument("--oracle", choices=("lp", "exact"), default="lp",
                        help="block oracle of (ISI-)CombUCB1: the LP relaxation or exact DP")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/lsd_online"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    from maxent.agents.planners import finite_horizon_values, solve_long_run
    from maxent.envs.lsd import LSDBandit

    env = LSDBandit.reference(form="recharging", horizon=args.horizon)
    gain = solve_long_run(env.model, env.initial_index).gain
    best = finite_horizon_values(env.model, env.initial_index, args.horizon)  # (T,)

    jobs = [(name, seed, args.horizon, args.oracle) for name in ALGOS for seed in range(args.seeds)]
    curves: dict[str, list[np.ndarray]] = {name: [] for name in ALGOS}
    times: dict[str, list[float]] = {name: [] for name in ALGOS}
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for name, _seed, exp_rewards, wall in pool.map(run_one, jobs):
            curves[name].append(np.cumsum(exp_rewards))
            times[name].append(wall)

    t = np.arange(1, args.horizon + 1)
    second_half = t > args.horizon // 2
    rows = []
    for name in ALGOS:
        cum = np.stack(curves[name])  # (seeds, T) cumulative expected reward
        regret = best[None, :] - cum
        mean_regret = regret.mean(axis=0)
        p, c = fit_exponent(t[second_half], mean_regret[second_half])
        rows.append({"algorithm": name, "lsd_aware": name in LSD_AWARE,
                     "mean_cumulative_reward": float(cum[:, -1].mean()),
                     "std_cumulative_reward": float(cum[:, -1].std()),
                     "regret_at_T": float(mean_regret[-1]), "regret_exponent_p": p,
                     "regret_coef_c": c, "seconds_per_run": float(np.mean(times[name]))})
    with open(args.out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(args.out / "curves.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["t", "optimal"] + list(ALGOS))
        means = {n: np.stack(curves[n]).mean(axis=0) for n in ALGOS}
        for i in range(0, args.horizon, 10):
            writer.writerow([i + 1, best[i]] + [means[n][i] for n in ALGOS])

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    axes[0].plot(t, best, "k--", label="optimal (DP)")
    for name in ALGOS:
        cum = np.stack(curves[name])
        m, s = cum.mean(axis=0), cum.std(axis=0)
        axes[0].plot(t, m, label=name)
        axes[0].fill_between(t, m - s, m + s, alpha=0.15)
        axes[1].loglog(t, np.maximum(best - m, 1e-1), label=name)
    axes[0].set(xlabel="t", ylabel="cumulative expected reward",
                title=f"K=2, d=10 reference instance, {args.seeds} seeds")
    axes[1].set(xlabel="t", ylabel="regret vs exact optimum", title="regret (log-log)")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "lsd_online.png", dpi=120)

    print(f"optimal long-run average {gain:.4f}; optimal total over T={args.horizon}: "
          f"{best[-1]:.1f}")
    print(f"{'algorithm':<18}{'LSD-aware':>10}{'mean reward':>13}{'std':>8}{'regret(T)':>11}"
          f"{'p':>7}{'s/run':>8}")
    for r in rows:
        print(f"{r['algorithm']:<18}{r['lsd_aware']!s:>10}{r['mean_cumulative_reward']:>13.1f}"
              f"{r['std_cumulative_reward']:>8.1f}{r['regret_at_T']:>11.1f}"
              f"{r['regret_exponent_p']:>7.2f}{r['seconds_per_run']:>8.1f}")
    print(f"wrote {args.out / 'results.csv'}, {args.out / 'curves.csv'}, "
          f"{args.out / 'lsd_online.png'}")


if __name__ == "__main__":
    main()
