"""LP-rounding planner versus the exact planner on random small recharging bandits
(Papadigenopoulos et al., NeurIPS 2022: LP relaxation + randomized interleaved rounding,
(1 - 1/e)-approximate in expectation for non-negative non-decreasing payoffs).

For each random instance (K arms, cap d, sorted uniform payoffs) this computes the exact optimal
long-run average (maximum mean cycle of the counter-state graph), the LP upper bound, the best
of ``--samples`` roundings and their mean, and reports the ratios, the worst ratio over all
instances and whether it clears 1 - 1/e. Writes ``ratios.csv`` and ``lsd_planner.png`` into
``--out``.

    python examples/lsd_planner.py --instances 200 --samples 16
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--samples", type=int, default=16, help="roundings per instance")
    parser.add_argument("--max-arms", type=int, default=4)
    parser.add_argument("--max-d", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/lsd_planner"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    from maxent.agents.lsd import LPConfig, LPPlanner
    from maxent.agents.planners import solve_long_run
    from maxent.envs.lsd import LSDBandit

    rng = np.random.default_rng(args.seed)
    bound = 1.0 - 1.0 / math.e
    rows = []
    start = time.perf_counter()
    for i in range(args.instances):
        k = int(rng.integers(2, args.max_arms + 1))
        d = int(rng.integers(2, args.max_d + 1))
        env = LSDBandit.random_recharging(k, d, rng)
        exact = solve_long_run(env.model, env.initial_index).gain
        lp = LPPlanner(env, config=LPConfig(n_samples=args.samples), seed=args.seed + i)
        rows.append({"instance": i, "K": k, "d": d, "exact": exact, "lp_bound": lp.lp_value,
                     "lp_planner": lp.long_run_average,
                     "ratio_best": lp.long_run_average / exact,
                     "ratio_mean_rounding": float(np.mean(lp.sample_averages)) / exact,
                     "ratio_worst_rounding": float(np.min(lp.sample_averages)) / exact,
                     "lp_gap": lp.lp_value / exact})
    elapsed = time.perf_counter() - start
    with open(args.out / "ratios.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    best = np.array([r["ratio_best"] for r in rows])
    mean = np.array([r["ratio_mean_rounding"] for r in rows])
    worst_single = np.array([r["ratio_worst_rounding"] for r in rows])
    gap = np.array([r["lp_gap"] for r in rows])

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    bins = np.linspace(min(bound, worst_single.min()) - 0.02, 1.0, 40)
    ax.hist(worst_single, bins=bins, alpha=0.5, label="worst single rounding")
    ax.hist(mean, bins=bins, alpha=0.5, label="mean rounding")
    ax.hist(best, bins=bins, alpha=0.6, label=f"LP planner (best of {args.samples})")
    ax.axvline(bound, color="k", ls="--", label="1 - 1/e")
    ax.set(xlabel="long-run average / exact optimum", ylabel="instances",
           title=f"{args.instances} random recharging instances (K<={args.max_arms}, "
                 f"d<={args.max_d})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "lsd_planner.png", dpi=120)

    print(f"{args.instances} instances in {elapsed:.1f} s")
    print(f"{'ratio to exact':<30}{'worst':>8}{'mean':>8}{'median':>8}")
    for name, v in (("LP planner (best rounding)", best), ("mean rounding", mean),
                    ("worst single rounding", worst_single), ("LP bound / exact", gap)):
        print(f"{name:<30}{v.min():>8.4f}{v.mean():>8.4f}{np.median(v):>8.4f}")
    print(f"worst LP-planner ratio {best.min():.4f} vs 1 - 1/e = {bound:.4f}: "
          f"{'OK' if best.min() >= bound else 'BELOW'}; instances with every rounding >= "
          f"1 - 1/e: {np.mean(worst_single >= bound):.1%}")
    print(f"wrote {args.out / 'ratios.csv'}, {args.out / 'lsd_planner.png'}")


if __name__ == "__main__":
    main()
