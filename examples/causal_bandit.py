"""Causal bandits by string-diagram surgery (Jacobs, Kissinger & Zanasi 2019): how fast surgery
on free observational data learns the interventional arm values, and what it buys in regret.

    python examples/causal_bandit.py [--out runs/causal_bandit] [--seeds 20]   # ~1 min, 2-core CPU

Part 1 estimates E[R | do(S = s)] from N observational samples (N = 100 ... 100000) on the smoking
world and random confounded worlds, and fits the slope of log(error) against log(N); sampling
error predicts -0.5. Part 2 runs SurgeryAgent, NaiveAgent (trusts P(t, c | S = s)) and UCB1 on
random worlds, ordinary and misleading (the confounded conditional ranks the arms wrongly), and
compares their cumulative regret. Writes ``estimation.csv``, ``regret.csv`` and ``causal_bandit.png``.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from maxent.agents.causal import NaiveAgent, SurgeryAgent, UCBAgent
from maxent.envs.causal import ConfoundedCausalBandit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import save_figure  # noqa: E402  (a sibling module of this script)


def estimation_errors(worlds, sizes, seeds):
    """Max-over-arms absolute error of the surgery estimate, shape (len(sizes), worlds*seeds)."""
    errors = np.zeros((len(sizes), len(worlds) * seeds))
    for w, env in enumerate(worlds):
        for seed in range(seeds):
            env.reset(seed=1000 * w + seed)
            samples = env.observational_samples(max(sizes))  # nested prefixes: one path per seed
            for i, n in enumerate(sizes):
                agent = SurgeryAgent(env, seed=seed)
                agent.observe(samples[:n])
                errors[i, w * seeds + seed] = np.abs(agent.estimated_values() - env.arm_values()).max()
    return errors


def regret_curves(worlds, horizon, seeds):
    """Mean cumulative regret per agent, each shape (horizon,)."""
    curves = {}
    for cls in (SurgeryAgent, NaiveAgent, UCBAgent):
        runs = [cls(env, seed=seed).learn(horizon).regret_curve
                for env in worlds for seed in range(seeds)]
        curves[cls.__name__] = np.mean(runs, axis=0)
    return curves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/causal_bandit"))
    parser.add_argument("--seeds", type=int, default=20, help="seeds per world in part 1")
    parser.add_argument("--horizon", type=int, default=1000, help="steps per bandit run in part 2")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()

    # ---- part 1: estimation error vs N
    sizes = np.unique(np.logspace(2, 5, 10).astype(int))
    worlds = [ConfoundedCausalBandit.smoking()] + [ConfoundedCausalBandit.random(i)
                                                   for i in range(4)]
    errors = estimation_errors(worlds, sizes, args.seeds)
    mean_err = errors.mean(axis=1)
    slope, intercept = np.polyfit(np.log(sizes), np.log(mean_err), 1)
    print("observational samples N -> mean max-arm error of the surgery estimate")
    for n, e in zip(sizes, mean_err):
        print(f"  N = {n:6d}: {e:.4f}")
    print(f"fitted slope of log(error) vs log(N): {slope:.3f} (sampling error predicts -0.5)")
    with open(args.out / "estimation.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["n_samples", "mean_error", "std_error", "n_runs"])
        for n, row in zip(sizes, errors):
            writer.writerow([int(n), row.mean(), row.std(), row.size])

    # ---- part 2: regret on random confounded worlds
    families = {
        "random": [ConfoundedCausalBandit.random(100 + i, horizon=args.horizon) for i in range(6)],
        "misleading": [ConfoundedCausalBandit.random(200 + i, misleading=True, horizon=args.horizon)
                       for i in range(6)],
    }
    results = {name: regret_curves(ws, args.horizon, seeds=3) for name, ws in families.items()}
    print(f"mean cumulative regret after {args.horizon} steps (6 worlds x 3 seeds each)")
    for name, curves in results.items():
        print(f"  {name:10s} " + "  ".join(f"{agent}: {c[-1]:7.2f}" for agent, c in curves.items()))
    with open(args.out / "regret.csv", "w", newline="") as f:
        writer = csv.writer(f)
        agents = list(next(iter(results.values())))
        writer.writerow(["worlds", "step", *agents])
        for name, curves in results.items():
            for t in range(args.horizon):
                writer.writerow([name, t + 1, *(curves[a][t] for a in agents)])

    # ---- plot
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    ax.loglog(sizes, mean_err, "o-", label="surgery estimate")
    ax.loglog(sizes, np.exp(intercept) * sizes ** slope, "--", label=f"fit, slope {slope:.2f}")
    ax.loglog(sizes, mean_err[0] * np.sqrt(sizes[0] / sizes), ":", label="1/sqrt(N)")
    ax.set(xlabel="observational samples N", ylabel="max-arm |error|",
           title="Interventional values by surgery")
    ax.legend()
    for ax, (name, curves) in zip(axes[1:], results.items()):
        for agent, curve in curves.items():
            ax.plot(np.arange(1, args.horizon + 1), curve, label=agent)
        ax.set(xlabel="step", ylabel="cumulative regret", title=f"{name} confounded worlds")
        ax.legend()
    save_figure(fig, args.out / "causal_bandit.png", args.out / "estimation.csv",
                args.out / "regret.csv", note=f" in {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
